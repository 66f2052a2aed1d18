// Rank discovery from launcher variables, and `--nproc N` through mpiexec
// (see launch.h).
#include "comm/launch.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/check.h"

#if ZT_HAVE_MPI
#include "comm/mpi/runtime.h"
#endif

namespace zt {

namespace {

struct LauncherVars {
    const char* source;
    const char* rank;
    std::vector<const char*> world;       // first one set wins
    std::vector<const char*> local_rank;  // first one set wins; none: 0
};

const std::vector<LauncherVars>& launchers() {
    static const std::vector<LauncherVars> l = {
        {"mpirun",
         "OMPI_COMM_WORLD_RANK",
         {"OMPI_COMM_WORLD_SIZE"},
         {"OMPI_COMM_WORLD_LOCAL_RANK"}},
        {"pmi", "PMI_RANK", {"PMI_SIZE"}, {"MPI_LOCALRANKID", "PMI_LOCAL_RANK"}},
        {"slurm", "SLURM_PROCID", {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}, {"SLURM_LOCALID"}},
        {"torchrun", "RANK", {"WORLD_SIZE"}, {"LOCAL_RANK"}},
    };
    return l;
}

const char* first_set(const std::vector<const char*>& names) {
    for (const char* n : names)
        if (std::getenv(n)) return n;
    return nullptr;
}

int env_int(const char* name, const char* source) {
    const char* v = std::getenv(name);
    char* end = nullptr;
    errno = 0;
    long x = std::strtol(v, &end, 10);
    ZT_CHECK(*v && *end == '\0' && errno == 0 && x >= 0 && x <= INT_MAX,
             "%s='%s' (set by %s): expected a non-negative integer", name, v, source);
    return int(x);
}

}  // namespace

RankInfo discover_ranks() {
    for (const LauncherVars& l : launchers()) {
        const char* world_var = first_set(l.world);
        bool has_rank = std::getenv(l.rank) != nullptr;
        if (!has_rank && !world_var) continue;
        ZT_CHECK(has_rank && world_var,
                 "launcher variables for %s are half set: %s is %s but %s is %s; both or neither",
                 l.source, l.rank, has_rank ? "set" : "unset", l.world.front(),
                 world_var ? "set" : "unset");
        RankInfo info;
        info.source = l.source;
        info.rank = env_int(l.rank, l.source);
        info.world = env_int(world_var, l.source);
        ZT_CHECK(info.world >= 1, "%s=%d (set by %s): the world size must be at least 1", world_var,
                 info.world, l.source);
        ZT_CHECK(info.rank < info.world, "%s=%d is not below %s=%d (set by %s)", l.rank, info.rank,
                 world_var, info.world, l.source);
        if (const char* local_var = first_set(l.local_rank)) {
            info.local_rank = env_int(local_var, l.source);
            ZT_CHECK(info.local_rank < info.world, "%s=%d is not below %s=%d (set by %s)",
                     local_var, info.local_rank, world_var, info.world, l.source);
        }
        return info;
    }
    RankInfo none;
    none.source = "none";
    return none;
}

bool under_launcher() {
    for (const LauncherVars& l : launchers())
        if (std::getenv(l.rank) || first_set(l.world)) return true;
    return false;
}

#if ZT_HAVE_MPI
namespace {

volatile pid_t g_launcher_child = 0;
volatile std::sig_atomic_t g_launcher_signal = 0;

extern "C" void forward_stop_signal(int sig, siginfo_t* info, void*) {
    g_launcher_signal = sig;
    // Sent by the kernel for a terminal (si_code > 0): mpirun got it too.
    if (info && info->si_code <= 0 && g_launcher_child > 0) kill(g_launcher_child, SIGTERM);
}

}  // namespace
#endif

int launch_local_ranks(int nproc, int argc, char** argv) {
#if !ZT_HAVE_MPI
    (void)argc;
    (void)argv;
    ZT_FAIL(
        "--nproc %d: this build has no MPI, so it cannot start ranks; install an MPI "
        "(Debian: libopenmpi-dev) and rebuild with -DZT_MPI=ON, or start the ranks with an "
        "outside launcher",
        nproc);
#else
    ZT_CHECK(nproc >= 1, "--nproc %d: expected a number of ranks >= 1", nproc);
    ZT_CHECK(!under_launcher(),
             "--nproc %d: this process already runs under a launcher (%s); drop --nproc and let "
             "the launcher start the ranks",
             nproc, discover_ranks().source.c_str());
    std::vector<char> exe(PATH_MAX + 1, '\0');
    ssize_t n = readlink("/proc/self/exe", exe.data(), PATH_MAX);
    ZT_CHECK(n > 0, "--nproc: cannot find this executable (/proc/self/exe): %s",
             std::strerror(errno));
    exe[size_t(n)] = '\0';

    std::string np = std::to_string(nproc);
    std::vector<std::string> args = {
        ZT_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", np,
        exe.data()};
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--nproc")) {
            i++;  // and its value
            continue;
        }
        if (!std::strncmp(argv[i], "--nproc=", 8)) continue;
        args.emplace_back(argv[i]);
    }
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);

    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    ZT_CHECK(pid >= 0, "--nproc: fork failed: %s", std::strerror(errno));
    if (pid == 0) {
        execv(ZT_MPIEXEC, cargs.data());
        std::fprintf(stderr, "zerotrain: error: --nproc: cannot run %s: %s\n", ZT_MPIEXEC,
                     std::strerror(errno));
        std::_Exit(127);
    }
    // While the ranks run, SIGINT/SIGTERM sent to this process are passed to
    // mpirun as SIGTERM, which it forwards to every rank: the ranks stop
    // cleanly (finish the step, save a checkpoint). A terminal's Ctrl-C
    // reaches mpirun itself (same process group) and is not passed twice.
    g_launcher_child = pid;
    g_launcher_signal = 0;
    struct sigaction sa {}, old_int {}, old_term {};
    sa.sa_sigaction = forward_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    int status = 0;
    int wait_rc;
    while ((wait_rc = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    int wait_errno = errno;
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    ZT_CHECK(wait_rc >= 0, "--nproc: waiting for %s failed: %s", ZT_MPIEXEC,
             std::strerror(wait_errno));
    const int stop = g_launcher_signal;
    // Stopped on request: the shell's 128 + signal, whatever mpirun made of
    // the ranks' own 128 + signal exits.
    if (stop && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) return 128 + stop;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 1;
#endif
}

void abort_all_ranks(int exit_code) {
#if ZT_HAVE_MPI
    mpi_abort_job(exit_code);
#else
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(exit_code);
#endif
}

}  // namespace zt
