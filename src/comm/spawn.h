// Child processes: the commands the lab, the network setup and the
// supervisor run (the --nproc launcher starts mpirun itself, comm/launch.h).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace zt {

// Starts argv[0] (looked up on PATH when it holds no '/') with argv, its
// stdout and stderr on out_fd (-1: this process's own). Refuses (zt::Error)
// an empty argv and a failed fork; when exec fails, the child prints
// "zerotrain: error: cannot run PROGRAM: why" and exits 127.
pid_t spawn_process(const std::vector<std::string>& argv, int out_fd = -1);

// Waits for the child; its exit status, or 128 + signal when a signal ended
// it. on_interrupt runs each time a signal to this process interrupts the
// wait (to pass a stop on, say).
int wait_process(pid_t pid, const std::function<void()>& on_interrupt = {});

}  // namespace zt
