// A clean stop on SIGINT/SIGTERM: the step in progress finishes, every rank
// agrees on it, a checkpoint is saved, and the run ends. A second signal
// kills as usual (SA_RESETHAND). A rank of `--nproc N` also takes SIGUSR1 for
// SIGINT and SIGUSR2 for SIGTERM: its launcher stops the job with those,
// which mpirun passes to every rank without ending them (comm/launch.h).
#pragma once

#include <csignal>

namespace zt {

// While one exists, SIGINT and SIGTERM are recorded instead of ending the
// process; the destructor puts the previous handlers back.
class StopSignals {
  public:
    StopSignals();
    ~StopSignals();
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

    // The signal received since construction (0: none).
    static int received();

  private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
    struct sigaction old_usr1_ {};
    struct sigaction old_usr2_ {};
    bool launched_ = false;  // a rank of --nproc N: SIGUSR1/2 handled too
};

// "SIGINT", "SIGTERM" or "a signal".
const char* signal_name(int sig);

}  // namespace zt
