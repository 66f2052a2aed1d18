// zerotrain supervise: restarts under an outside launcher. It runs the
// launcher's command line (`mpirun -np 4 zerotrain train ... --out RUN`) as
// its child and, when the job fails from a rank's death or a hang, runs it
// again with --resume auto --out RUN, as `train --nproc N --max-restarts K`
// does for the ranks it starts itself (cli/restart.h decides which failures
// are restarted and records each restart in RUN/metrics.jsonl).
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/restart.h"
#include "comm/launch.h"
#include "comm/spawn.h"
#include "core/check.h"

namespace zt::cli {

namespace {

struct SuperviseArgs {
    int max_restarts = 3;
    std::vector<std::string> command;
};

volatile pid_t g_supervised = 0;
volatile std::sig_atomic_t g_supervisor_stop = 0;

// A terminal's Ctrl-C reaches the launcher too (one process group); a signal
// sent to this process alone is passed on. Either way the job is not
// restarted: the user stopped it.
extern "C" void on_supervisor_stop(int sig, siginfo_t* info, void*) {
    if (g_supervisor_stop == 0) g_supervisor_stop = sig;
    if (info && info->si_code <= 0 && g_supervised > 0) kill(g_supervised, sig);
}

// The run directory the command writes: the value of its last --out.
std::string command_run_dir(const std::vector<std::string>& cmd) {
    std::string out;
    for (size_t i = 0; i < cmd.size(); i++) {
        if (cmd[i] == "--out" && i + 1 < cmd.size()) out = cmd[i + 1];
        if (cmd[i].rfind("--out=", 0) == 0) out = cmd[i].substr(6);
    }
    return out;
}

// While it lives, SIGINT and SIGTERM reach on_supervisor_stop for `child`.
class StopForwarding {
  public:
    explicit StopForwarding(pid_t child) {
        g_supervised = child;
        g_supervisor_stop = 0;
        struct sigaction sa {};
        sa.sa_sigaction = on_supervisor_stop;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGINT, &sa, &old_int_);
        sigaction(SIGTERM, &sa, &old_term_);
    }
    ~StopForwarding() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
        g_supervised = 0;
    }
    StopForwarding(const StopForwarding&) = delete;
    StopForwarding& operator=(const StopForwarding&) = delete;

  private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

// One attempt: the command as a child, its exit status (128 + signal when a
// signal ended it, or when the user stopped the job).
int run_command_once(char** argv) {
    std::vector<std::string> args;
    for (char** a = argv; *a; a++) args.emplace_back(*a);
    const pid_t pid = spawn_process(args);
    int rc;
    {
        StopForwarding forward(pid);
        rc = wait_process(pid);
    }
    if (g_supervisor_stop && rc != 0) rc = 128 + g_supervisor_stop;
    return rc;
}

void run_supervise(const SuperviseArgs& a) {
    ZT_CHECK(!a.command.empty(),
             "supervise: give the launcher's command after --, e.g. zerotrain supervise "
             "--max-restarts 3 -- mpirun -np 4 zerotrain train --out RUN");
    ZT_CHECK(a.max_restarts >= 0, "--max-restarts %d: expected a number of restarts >= 0",
             a.max_restarts);
    const std::string run_dir = command_run_dir(a.command);
    ZT_CHECK(!run_dir.empty(),
             "supervise: the command names no --out: a restart resumes the run directory, so "
             "give the run's --out RUN");
    ZT_CHECK(!under_launcher(),
             "supervise runs the launcher, not under it (this process is a rank of %s)",
             discover_ranks().source.c_str());
    RestartOptions opt;
    opt.max_restarts = a.max_restarts;
    opt.nproc = 0;  // the world the run line of RUN/metrics.jsonl records
    opt.run_dir = run_dir;
    std::vector<std::string> cmd = a.command;
    std::vector<char*> argv;
    for (std::string& s : cmd) argv.push_back(s.data());
    argv.push_back(nullptr);
    const LaunchAttempt launch = [](int, char** av,
                                    const std::function<void(const std::string&)>&) {
        return run_command_once(av);
    };
    const int status = run_with_restarts(opt, int(cmd.size()), argv.data(), launch);
    if (status != 0) throw CLI::RuntimeError(status);
}

}  // namespace

void add_supervise_command(CLI::App& app) {
    auto args = std::make_shared<SuperviseArgs>();
    CLI::App* c = app.add_subcommand(
        "supervise",
        "run an outside launcher's training command (after --) and run it again with --resume "
        "auto when a rank dies or a collective times out");
    c->add_option("--max-restarts", args->max_restarts,
                  "restarts at most; a divergence, an error of the run's own and SIGINT/SIGTERM "
                  "are never restarted")
        ->capture_default_str();
    c->add_option("command", args->command,
                  "the launcher's command line, after --: mpirun -np 4 zerotrain train ... --out "
                  "RUN (it must name its --out)")
        ->required();
    c->callback([args] { run_supervise(*args); });
}

}  // namespace zt::cli
