#include "comm/spawn.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace zt {

pid_t spawn_process(const std::vector<std::string>& argv, int out_fd) {
    ZT_CHECK(!argv.empty(), "spawn_process: no program to run");
    std::vector<std::string> copy = argv;
    std::vector<char*> args;
    for (std::string& a : copy) args.push_back(a.data());
    args.push_back(nullptr);
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    ZT_CHECK(pid >= 0, "cannot run %s: fork failed: %s", argv[0].c_str(), std::strerror(errno));
    if (pid == 0) {
        if (out_fd >= 0) {
            dup2(out_fd, 1);  // dup2 clears close-on-exec on the copies
            dup2(out_fd, 2);
        }
        execvp(args[0], args.data());
        std::fprintf(stderr, "zerotrain: error: cannot run %s: %s\n", args[0],
                     std::strerror(errno));
        std::_Exit(127);
    }
    return pid;
}

int wait_process(pid_t pid, const std::function<void()>& on_interrupt) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        ZT_CHECK(errno == EINTR, "waiting for process %d failed: %s", int(pid),
                 std::strerror(errno));
        if (on_interrupt) on_interrupt();
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

}  // namespace zt
