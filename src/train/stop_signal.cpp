// A clean stop on SIGINT/SIGTERM (see stop_signal.h). The handler only
// records the signal: the training loop reads it between steps.
#include "train/stop_signal.h"

#include <csignal>
#include <cstdlib>

#include "comm/job.h"

namespace zt {

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int sig) {
    g_stop_signal = sig == SIGUSR1 ? SIGINT : sig == SIGUSR2 ? SIGTERM : sig;
}

}  // namespace

StopSignals::StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = record_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    launched_ = std::getenv(kJobDirEnv) != nullptr;
    if (launched_) {
        sigaction(SIGUSR1, &sa, &old_usr1_);
        sigaction(SIGUSR2, &sa, &old_usr2_);
    }
}

StopSignals::~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    if (launched_) {
        sigaction(SIGUSR1, &old_usr1_, nullptr);
        sigaction(SIGUSR2, &old_usr2_, nullptr);
    }
}

int StopSignals::received() {
    return g_stop_signal;
}

const char* signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

}  // namespace zt
