// Rank discovery from launcher variables, and `--nproc N` through mpiexec:
// starting the ranks, watching them, and naming the rank that died or that
// the others waited for when the job fails (see launch.h).
#include "comm/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "comm/flight.h"
#include "comm/job.h"
#include "comm/tcp/socket.h"
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

std::string default_comm_backend(const RankInfo& ranks) {
    if (ranks.world <= 1) return "local";
    return ZT_HAVE_MPI && ranks.source != "torchrun" ? "mpi" : "tcp";
}

bool under_launcher() {
    for (const LauncherVars& l : launchers())
        if (std::getenv(l.rank) || first_set(l.world)) return true;
    return false;
}

namespace {

volatile pid_t g_launcher_child = 0;
volatile std::sig_atomic_t g_launcher_group = 0;    // g_launcher_child leads the ranks' group
volatile std::sig_atomic_t g_launcher_signal = 0;   // the first stop signal
volatile std::sig_atomic_t g_launcher_signals = 0;  // how many came

// mpirun runs in its own process group, so a terminal's Ctrl-C reaches this
// process alone, and each stop signal is passed on here. The first asks the
// ranks to stop cleanly: mpirun passes SIGUSR1 and SIGUSR2 to every rank,
// which take them for SIGINT and SIGTERM (train/stop_signal.h), where a
// SIGINT or SIGTERM would make mpirun end the ranks a second later, in the
// middle of their checkpoint. The second ends the job through mpirun; the
// third kills its process group. Ranks started without mpirun (one process
// group, led by g_launcher_child) get the same three, all of them.
extern "C" void forward_stop_signal(int sig, siginfo_t*, void*) {
    const int n = g_launcher_signals + 1;
    g_launcher_signals = n;
    if (g_launcher_signal == 0) g_launcher_signal = sig;
    const pid_t child = g_launcher_child;
    if (child <= 0) return;
    const pid_t target = g_launcher_group ? -child : child;
    if (n == 1)
        kill(target, sig == SIGINT ? SIGUSR1 : SIGUSR2);
    else if (n == 2)
        kill(target, SIGTERM);
    else
        kill(-child, SIGKILL);
}

// While it lives, SIGINT and SIGTERM to this process go to forward_stop_signal
// for `child` (with `group`: the process group it leads); restore() (or the
// destructor) puts the old handlers back.
class StopForwarding {
  public:
    StopForwarding(pid_t child, bool group) {
        g_launcher_child = child;
        g_launcher_group = group ? 1 : 0;
        g_launcher_signal = 0;
        g_launcher_signals = 0;
        struct sigaction sa {};
        sa.sa_sigaction = forward_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGINT, &sa, &old_int_);
        sigaction(SIGTERM, &sa, &old_term_);
    }
    ~StopForwarding() { restore(); }
    StopForwarding(const StopForwarding&) = delete;
    StopForwarding& operator=(const StopForwarding&) = delete;
    void restore() {
        if (restored_) return;
        restored_ = true;
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
        g_launcher_child = 0;
        g_launcher_group = 0;
    }
    // The first stop signal that came, 0 for none.
    int first_signal() const { return g_launcher_signal; }

  private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
    bool restored_ = false;
};

double monotonic_now() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// "SIGKILL"; "signal 64" for one without a name.
std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : strprintf("signal %d", sig);
}

#if ZT_HAVE_MPI
// A rank's death as mpirun reports it (Open MPI: "mpirun noticed that
// process rank 2 with PID 1234 on node h exited on signal 9 (Killed).").
struct ReportedDeath {
    int rank = -1;
    long pid = 0;
    int signal = 0;
};

// Copies mpirun's stderr (its own messages and the ranks') to ours a line at
// a time, and picks out the deaths mpirun reports. What would repeat is said
// once: an error that several ranks report alike prints from the first rank
// to report it, and the rest are named at the end; when a rank says why the
// job ended (or the user stopped it), mpirun's own banners about the abort or
// the non-zero exits it caused are dropped, also those it printed before the
// rank's line reached it (held until mpirun exits, and printed then if no
// rank said why). mpirun's notes of deaths and anything else pass unchanged.
class StderrRelay {
  public:
    explicit StderrRelay(int fd) : fd_(fd), thread_([this] { run(); }) {}
    ~StderrRelay() {
        if (thread_.joinable()) finish();
    }
    // After mpirun exited: copies what is left and stops; a process that
    // outlived mpirun and still holds the pipe does not hold the launcher.
    std::vector<ReportedDeath> finish() {
        done_ = true;
        thread_.join();
        ::close(fd_);
        if (!block_.empty()) emit(block_);  // a banner mpirun did not close
        block_.clear();
        if (!line_.empty()) emit(line_);
        line_.clear();
        if (!said_why()) emit(held_);  // no rank said why: mpirun's words are all there is
        held_.clear();
        for (auto& [message, ranks] : repeated_) {
            if (ranks.empty()) continue;
            std::sort(ranks.begin(), ranks.end());
            std::string who;
            for (size_t i = 0; i < ranks.size(); i++)
                who += strprintf("%s%d",
                                 i == 0                  ? ""
                                 : i + 1 == ranks.size() ? " and "
                                                         : ", ",
                                 ranks[i]);
            emit(strprintf("zerotrain: (rank%s %s reported the same error)\n",
                           ranks.size() > 1 ? "s" : "", who.c_str()));
        }
        return deaths_;
    }
    // After finish(): mpirun said a rank aborted the job or exited non-zero.
    bool rank_failed() const { return rank_failed_; }

  private:
    void run() {
        char buf[4096];
        for (;;) {
            pollfd p{fd_, POLLIN, 0};
            int r = ::poll(&p, 1, 100);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return;
            if (r == 0) {
                flush_partial_line();
                if (done_) return;
                continue;
            }
            ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return;  // every writer closed it
            for (ssize_t i = 0; i < n; i++) {
                line_ += buf[i];
                if (buf[i] == '\n') {
                    on_line(line_);
                    line_.clear();
                    partial_ = false;
                }
            }
        }
    }

    static void emit(const std::string& text) {
        for (size_t off = 0; off < text.size();) {
            ssize_t w = ::write(2, text.data() + off, text.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            off += size_t(w);
        }
    }

    static bool starts_with(const std::string& s, const char* prefix) {
        return s.rfind(prefix, 0) == 0;
    }

    // A line still without its end after a pause (a rank's progress without
    // a newline) is passed on as it is, unless it may be one to hold back.
    void flush_partial_line() {
        if (line_.empty() || !block_.empty()) return;
        if (!partial_ && (starts_with(line_, "zerotrain: error") || starts_with(line_, "-") ||
                          starts_with(line_, "[") || starts_with(line_, "mpirun") ||
                          starts_with(line_, "Set MCA")))
            return;
        emit(line_);
        line_.clear();
        partial_ = true;
    }

    // Open MPI's banners are framed by lines of dashes.
    static bool is_rule(const std::string& line) {
        return line.size() >= 21 && line.find_first_not_of('-') == line.size() - 1 &&
               line.back() == '\n';
    }

    void on_line(const std::string& line) {
        scan(line);
        if (partial_) {  // the rest of a line already passed on
            emit(line);
            return;
        }
        if (!block_.empty()) {
            block_ += line;
            if (is_rule(line)) {
                // mpirun can print the abort before it relays the line in
                // which the rank said why, so an abort banner seen first is
                // held until the end and dropped if the reason follows.
                if (!is_abort_banner(block_))
                    emit(block_);
                else if (!said_why())
                    held_ += block_;
                block_.clear();
            }
            return;
        }
        if (is_rule(line)) {
            block_ = line;
            return;
        }
        // mpirun says it passed on the launcher's stop signal; the ranks say
        // they stopped.
        if (line.find(": Forwarding signal ") != std::string::npos &&
            (starts_with(line, "mpi") || starts_with(line, "orterun")))
            return;
        // Its notes on help messages it aggregated, and the errors its
        // helper logs when several ranks abort at once.
        if (said_why() && (line.find("sent help message") != std::string::npos ||
                           line.find("orte_base_help_aggregate") != std::string::npos ||
                           line.find("ORTE_ERROR_LOG") != std::string::npos))
            return;
        if (starts_with(line, "zerotrain: error: rank ")) {
            // "zerotrain: error: rank R: message" or "... rank R, file:line: message".
            const char* rest = line.c_str() + std::strlen("zerotrain: error: rank ");
            char* end = nullptr;
            const long rank = std::strtol(rest, &end, 10);
            const size_t colon = line.find(": ", size_t(end - line.c_str()));
            if (end != rest && colon != std::string::npos) {
                error_seen_ = true;
                const std::string message = line.substr(colon + 2);
                auto it = repeated_.find(message);
                if (it != repeated_.end()) {
                    it->second.push_back(int(rank));
                    return;
                }
                repeated_[message] = {};
            }
        }
        emit(line);
    }

    // A rank printed its error, or the user asked the job to stop.
    bool said_why() const { return error_seen_ || g_launcher_signal != 0; }

    // The abort a rank's error caused, or the job ending on the ranks'
    // non-zero exits (a stop ends each rank with 128 + signal), or, after the
    // user's stop, a rank that the stop signal ended.
    static bool is_abort_banner(const std::string& block) {
        return block.find("MPI_ABORT was invoked") != std::string::npos ||
               block.find("returned\na non-zero exit code") != std::string::npos ||
               block.find("exited with non-zero status") != std::string::npos ||
               (g_launcher_signal != 0 &&
                (block.find("exited on signal 2 ") != std::string::npos ||
                 block.find("exited on signal 15 ") != std::string::npos));
    }

    void scan(const std::string& line) {
        size_t at = line.find("process rank ");
        ReportedDeath d;
        if (at != std::string::npos &&
            std::sscanf(line.c_str() + at,
                        "process rank %d with PID %ld on node %*s exited on signal %d", &d.rank,
                        &d.pid, &d.signal) == 3)
            deaths_.push_back(d);
        // A rank ended the job itself (and printed why).
        if (line.find("MPI_ABORT was invoked") != std::string::npos ||
            line.find("non-zero") != std::string::npos)
            rank_failed_ = true;
    }

    int fd_;
    std::atomic<bool> done_{false};
    // Relay thread until finish(), then finish()'s.
    std::string line_;      // the line being read
    bool partial_ = false;  // line_'s start was passed on already
    std::string block_;     // a banner being read, from its first rule
    std::string held_;      // abort banners that came before any rank said why
    bool error_seen_ = false;
    std::map<std::string, std::vector<int>> repeated_;  // message -> the other ranks reporting it
    std::vector<ReportedDeath> deaths_;
    bool rank_failed_ = false;
    std::thread thread_;
};

#endif  // ZT_HAVE_MPI

// The ranks' processes, from the pids they note in the job directory,
// looked at while they run: which vanished first, which were stopped.
class RankWatch {
  public:
    RankWatch(std::string job_dir, int nproc) : dir_(std::move(job_dir)), nproc_(nproc) {}

    void tick() {
        if (dir_.empty()) return;
        if (int(watched_.size()) < nproc_)
            for (const JobRank& r : job_read_ranks(dir_))
                if (r.rank < nproc_ && !watched_.count(r.rank)) watched_[r.rank] = Watched{r.pid};
        const double now = monotonic_now();
        std::vector<int> gone_now;
        int alive = 0;
        for (auto& [rank, w] : watched_) {
            if (w.gone) continue;
            char state = process_state(w.pid);
            if (state == 0 || state == 'Z' || state == 'X') {
                w.gone = true;
                gone_now.push_back(rank);
                continue;
            }
            alive++;
            if (state == 'T') {
                if (w.stopped_since == 0) w.stopped_since = now;
                w.stopped_for = std::max(w.stopped_for, now - w.stopped_since);
            } else {
                w.stopped_since = 0;
            }
        }
        // Ranks that vanished while others still ran died first; mpirun ends
        // the rest afterwards.
        if (first_gone_.empty() && !gone_now.empty() && alive > 0) first_gone_ = gone_now;
    }

    const std::vector<int>& first_gone() const { return first_gone_; }
    int64_t pid_of(int rank) const {
        auto it = watched_.find(rank);
        return it == watched_.end() ? 0 : it->second.pid;
    }
    // The longest time a rank was seen stopped (state T), in seconds.
    double stopped_for(int rank) const {
        auto it = watched_.find(rank);
        return it == watched_.end() ? 0 : it->second.stopped_for;
    }
    int rank_of_pid(long pid) const {
        for (const auto& [rank, w] : watched_)
            if (w.pid == pid) return rank;
        return -1;
    }

  private:
    struct Watched {
        int64_t pid = 0;
        bool gone = false;
        double stopped_since = 0;
        double stopped_for = 0;
    };

    // The state letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...); 0 when gone.
    static char process_state(int64_t pid) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
        std::string text;
        if (!std::getline(f, text)) return 0;
        size_t paren = text.rfind(')');  // the command name may hold spaces
        return paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : 0;
    }

    std::string dir_;
    int nproc_;
    std::map<int, Watched> watched_;  // by rank, once its note is there
    std::vector<int> first_gone_;
};

// The private directory the ranks leave their notes in (comm/job.h),
// TMPDIR/zerotrain-job-<launcher pid>-XXXXXX, removed with the object; path()
// is "" when it could not be made (the job runs, its launcher names less).
// A launcher that was killed cannot remove its own: the next one removes
// those whose launcher is gone.
class JobDir {
  public:
    JobDir() {
        const char* tmp = std::getenv("TMPDIR");
        const std::string parent = tmp && *tmp ? tmp : "/tmp";
        remove_orphans(parent);
        std::string tmpl = parent + strprintf("/zerotrain-job-%d-XXXXXX", int(getpid()));
        if (mkdtemp(tmpl.data())) {
            path_ = tmpl;
        } else {
            std::fprintf(stderr,
                         "zerotrain: warning: --nproc: cannot create %s (%s); a rank that dies "
                         "or hangs will be named less precisely\n",
                         tmpl.c_str(), std::strerror(errno));
        }
    }
    ~JobDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    JobDir(const JobDir&) = delete;
    JobDir& operator=(const JobDir&) = delete;
    const std::string& path() const { return path_; }

  private:
    static void remove_orphans(const std::string& parent) {
        std::error_code ec;
        for (std::filesystem::directory_iterator it(parent, ec), end; !ec && it != end;
             it.increment(ec)) {
            int pid = 0;
            const std::string name = it->path().filename().string();
            if (std::sscanf(name.c_str(), "zerotrain-job-%d-", &pid) != 1 || pid <= 0) continue;
            if (kill(pid, 0) != 0 && errno == ESRCH) {
                std::error_code rm_ec;
                std::filesystem::remove_all(it->path(), rm_ec);
            }
        }
    }

    std::string path_;
};

// A rank that died: the signal (0: not known) and its pid (0: not known).
struct RankDeath {
    int signal = 0;
    int64_t pid = 0;
};

// After a job failed: names each rank that died (by rank), with `then`
// (who ended the others; "" for nobody), or the one the others waited for
// (the run directory's hang records, with the ranks `watch` saw stopped),
// then what the caller adds about the run (train: step, checkpoint, resume
// command). Nothing for a job whose ranks failed by themselves: each
// printed its own error.
void report_failed_ranks(int nproc, const std::string& job_dir, const RankWatch& watch,
                         const std::map<int, RankDeath>& dead, const std::string& then,
                         const LaunchNotes& notes) {
    const std::string run_dir = job_dir.empty() ? "" : job_read_run_dir(job_dir);
    HangEvidence evidence;
    for (const auto& [r, d] : dead) evidence.dead.push_back(r);
    for (int r = 0; r < nproc; r++)
        if (watch.stopped_for(r) >= 0.5) evidence.stopped.emplace_back(r, watch.stopped_for(r));
    // A death is the cause; hang records (the others timed out before they
    // were ended) only add where they waited.
    std::string out;
    for (const auto& [r, d] : dead) {
        std::string who = d.pid > 0 ? strprintf("rank %d (pid %lld)", r, (long long)d.pid)
                                    : strprintf("rank %d", r);
        std::string how = d.signal > 0 ? strprintf("killed by signal %d (%s)", d.signal,
                                                   signal_name(d.signal).c_str())
                                       : "its process ended first (mpirun did not say how)";
        out += strprintf("zerotrain: %s died: %s%s\n", who.c_str(), how.c_str(),
                         then.empty() ? "" : ("; " + then).c_str());
    }
    out += run_dir.empty() ? "" : diagnose_hang(run_dir, nproc, evidence);
    if (out.empty()) return;
    if (!run_dir.empty() && notes) out += notes(run_dir);
    std::fflush(stdout);
    std::fputs(out.c_str(), stderr);
    std::fflush(stderr);
}

#if ZT_HAVE_MPI
// After mpirun failed: who died, and of what, from mpirun's report; when it
// said nothing about the end at all, the ranks whose processes the watch saw
// vanish first (report_failed_ranks says the rest).
void report_failed_job(int nproc, const std::string& job_dir, const RankWatch& watch,
                       const std::vector<ReportedDeath>& reported, bool rank_failed,
                       const LaunchNotes& notes) {
    std::map<int, RankDeath> dead;
    for (const ReportedDeath& d : reported) {
        int rank = d.rank >= 0 ? d.rank : watch.rank_of_pid(d.pid);
        if (rank >= 0) dead[rank] = RankDeath{d.signal, watch.pid_of(rank)};
    }
    if (dead.empty() && !rank_failed)
        for (int r : watch.first_gone()) dead[r] = RankDeath{0, watch.pid_of(r)};
    report_failed_ranks(nproc, job_dir, watch, dead, "mpirun then ended the other ranks", notes);
}

#endif  // ZT_HAVE_MPI

// The cores this process may run on (its affinity mask, as OpenMP counts them).
int usable_cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? int(n) : 1;
}

// The threads each rank will run, as the ranks choose them: --threads T, else
// OMP_NUM_THREADS, else an even share of the cores (train/resolve.cpp).
int threads_per_rank(int nproc, int cores, int argc, char** argv) {
    for (int i = 1; i < argc; i++) {
        const char* v = nullptr;
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) v = argv[i + 1];
        if (!std::strncmp(argv[i], "--threads=", 10)) v = argv[i] + 10;
        if (v && std::atoi(v) > 0) return std::atoi(v);
    }
    const char* env = std::getenv("OMP_NUM_THREADS");
    if (env && std::atoi(env) > 0) return std::atoi(env);
    return std::max(1, cores / nproc);
}

// More ranks or threads than cores run, but they take turns on the cores, so
// a step is slower and its timings say little about the machine: say so once.
void warn_if_oversubscribed(int nproc, int argc, char** argv) {
    const int cores = usable_cores();
    const int threads = threads_per_rank(nproc, cores, argc, argv);
    if (nproc <= cores && int64_t(nproc) * threads <= cores) return;
    std::fflush(stdout);
    std::fprintf(stderr,
                 "zerotrain: warning: --nproc %d oversubscribes this machine: %d ranks x %d "
                 "threads per rank = %lld threads on %d cores; the ranks will take turns on the "
                 "cores (slower, and timings are not representative)\n",
                 nproc, nproc, threads, (long long)nproc * threads, cores);
}

// This executable's path and argv without --nproc: what each rank runs.
std::vector<std::string> rank_command(int argc, char** argv) {
    std::vector<char> exe(PATH_MAX + 1, '\0');
    ssize_t n = readlink("/proc/self/exe", exe.data(), PATH_MAX);
    ZT_CHECK(n > 0, "--nproc: cannot find this executable (/proc/self/exe): %s",
             std::strerror(errno));
    exe[size_t(n)] = '\0';
    std::vector<std::string> rank_args = {exe.data()};
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--nproc")) {
            i++;  // and its value
            continue;
        }
        if (!std::strncmp(argv[i], "--nproc=", 8)) continue;
        rank_args.emplace_back(argv[i]);
    }
    return rank_args;
}

// The ranks' environment: ours, less what a launcher sets, with the job
// directory (comm/job.h) and `extra`.
std::vector<std::string> rank_environment(const std::string& job_dir,
                                          const std::vector<std::string>& extra) {
    const std::vector<std::string> drop = {
        std::string(kJobDirEnv) + "=", "RANK=",        "WORLD_SIZE=", "LOCAL_RANK=",
        "LOCAL_WORLD_SIZE=",           "MASTER_ADDR=", "MASTER_PORT="};
    std::vector<std::string> env;
    for (char** e = environ; *e; e++) {
        bool keep = true;
        for (const std::string& d : drop) keep = keep && std::strncmp(*e, d.c_str(), d.size()) != 0;
        if (keep) env.emplace_back(*e);
    }
    if (!job_dir.empty()) env.push_back(std::string(kJobDirEnv) + "=" + job_dir);
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
    std::vector<char*> c;
    for (auto& s : v) c.push_back(s.data());
    c.push_back(nullptr);
    return c;
}

// A TCP port nothing listens on now, for rank 0 (the kernel's pick).
int free_local_port() {
    std::string err;
    Socket s = socket_listen("0", 1, &err);
    ZT_CHECK(s.fd() >= 0, "--nproc: cannot find a free TCP port for the ranks: %s", err.c_str());
    return socket_local_port(s.fd());
}

// --nproc without mpirun: the ranks are started here as torchrun starts
// them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR
// 127.0.0.1 and a free MASTER_PORT), in one process group of their own led
// by rank 0, each ended when this process dies. Stop signals reach them as
// through mpirun (forward_stop_signal). When a rank fails, the others get
// 10 s to fail by themselves (their connections to it closed) and are then
// killed. Returns the first failed rank's status (128 + signal for a
// signal), after naming a rank a signal ended and the hang diagnosis (with
// the ranks seen stopped, as under mpirun).
int launch_direct_ranks(int nproc, std::vector<std::string> rank_args, const LaunchNotes& notes) {
    const JobDir job;
    const int port = free_local_port();
    std::vector<char*> cargs = c_strings(rank_args);
    std::vector<pid_t> pids;
    std::fflush(stdout);
    std::fflush(stderr);
    auto kill_started = [&] {
        if (!pids.empty()) kill(-pids[0], SIGKILL);
        for (pid_t p : pids) waitpid(p, nullptr, 0);
    };
    for (int k = 0; k < nproc; k++) {
        std::vector<std::string> env = rank_environment(
            job.path(),
            {"RANK=" + std::to_string(k), "WORLD_SIZE=" + std::to_string(nproc),
             "LOCAL_RANK=" + std::to_string(k), "LOCAL_WORLD_SIZE=" + std::to_string(nproc),
             "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)});
        std::vector<char*> cenv = c_strings(env);
        const pid_t group = pids.empty() ? 0 : pids[0];
        pid_t pid = fork();
        if (pid < 0) {
            int fork_errno = errno;
            kill_started();
            ZT_FAIL("--nproc: fork of rank %d failed: %s", k, std::strerror(fork_errno));
        }
        if (pid == 0) {
            setpgid(0, group);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() == 1) std::_Exit(127);  // the launcher died before the line above
            execve(cargs[0], cargs.data(), cenv.data());
            std::fprintf(stderr, "zerotrain: error: --nproc: cannot run %s: %s\n", cargs[0],
                         std::strerror(errno));
            std::_Exit(127);
        }
        setpgid(pid, group == 0 ? pid : group);  // as the child does, whichever runs first
        pids.push_back(pid);
    }
    StopForwarding forwarding(pids[0], /*group=*/true);
    RankWatch watch(job.path(), nproc);

    std::vector<int> status(size_t(nproc), -1);  // exit status, 128 + signal; -1: running
    std::vector<int> by_signal(size_t(nproc), 0);
    int first_failed = -1, running = nproc;
    double failed_at = 0;
    bool killed = false;
    while (running > 0) {
        for (int k = 0; k < nproc; k++) {
            if (status[size_t(k)] >= 0) continue;
            int st = 0;
            pid_t w = waitpid(pids[size_t(k)], &st, WNOHANG);
            if (w == 0 || (w < 0 && errno == EINTR)) continue;
            running--;
            status[size_t(k)] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (w > 0 && WIFSIGNALED(st)) by_signal[size_t(k)] = WTERMSIG(st);
            if (status[size_t(k)] != 0 && first_failed < 0) {
                first_failed = k;
                failed_at = monotonic_now();
            }
        }
        watch.tick();
        if (running > 0 && first_failed >= 0 && !killed && monotonic_now() - failed_at > 10) {
            kill(-pids[0], SIGKILL);
            killed = true;
        }
        struct timespec ts {
            0, 50 * 1000 * 1000
        };
        if (running > 0) nanosleep(&ts, nullptr);
    }
    forwarding.restore();
    const int stop = forwarding.first_signal();
    if (first_failed < 0) return 0;
    if (stop) return 128 + stop;
    // A rank that exits with an error printed why; one a signal ended could not.
    std::map<int, RankDeath> dead;
    for (int k = 0; k < nproc; k++) {
        const int sig = by_signal[size_t(k)];
        if (sig != 0 && !(killed && sig == SIGKILL && k != first_failed))
            dead[k] = RankDeath{sig, pids[size_t(k)]};
    }
    report_failed_ranks(nproc, job.path(), watch, dead,
                        killed ? "the launcher then ended the other ranks" : "", notes);
    return status[size_t(first_failed)];
}

}  // namespace

int launch_local_ranks(int nproc, int argc, char** argv, const LaunchNotes& notes,
                       const LaunchNetwork* network, const std::string& comm) {
    ZT_CHECK(nproc >= 1, "--nproc %d: expected a number of ranks >= 1", nproc);
    ZT_CHECK(!under_launcher(),
             "--nproc %d: this process already runs under a launcher (%s); drop --nproc and let "
             "the launcher start the ranks",
             nproc, discover_ranks().source.c_str());
    warn_if_oversubscribed(nproc, argc, argv);
    std::vector<std::string> rank_args = rank_command(argc, argv);
#if ZT_HAVE_MPI
    if (comm != "tcp") {
        std::vector<std::string> args;
        if (network) args = network->mpirun_prefix;
        args.insert(args.end(),
                    {ZT_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                     // In its own process group mpirun must not read the terminal.
                     "--stdin", "none"});
        if (!network) {
            args.insert(args.end(), {"-np", std::to_string(nproc)});
            args.insert(args.end(), rank_args.begin(), rank_args.end());
        } else {
            ZT_CHECK(int(network->rank_prefix.size()) == nproc,
                     "--nproc %d: the network was made for %zu ranks", nproc,
                     network->rank_prefix.size());
            args.insert(args.end(), network->mpirun_args.begin(), network->mpirun_args.end());
            // One program per rank (mpirun's MPMD form), each run by its prefix.
            for (int k = 0; k < nproc; k++) {
                if (k > 0) args.emplace_back(":");
                args.insert(args.end(), {"-np", "1"});
                args.insert(args.end(), network->rank_prefix[size_t(k)].begin(),
                            network->rank_prefix[size_t(k)].end());
                args.insert(args.end(), rank_args.begin(), rank_args.end());
            }
            std::printf("zerotrain: %s\n", network->description.c_str());
        }
        std::vector<char*> cargs = c_strings(args);

        // The ranks' environment: ours, and where they leave their notes.
        const JobDir job;
        const std::string& job_dir = job.path();
        std::vector<std::string> env_strings =
            rank_environment(job_dir, network ? network->env : std::vector<std::string>{});
        std::vector<char*> cenv = c_strings(env_strings);

        int err_pipe[2] = {-1, -1};
        ZT_CHECK(pipe2(err_pipe, O_CLOEXEC) == 0, "--nproc: pipe failed: %s", std::strerror(errno));

        std::fflush(stdout);
        std::fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            int fork_errno = errno;
            ::close(err_pipe[0]);
            ::close(err_pipe[1]);
            ZT_FAIL("--nproc: fork failed: %s", std::strerror(fork_errno));
        }
        if (pid == 0) {
            setpgid(0, 0);
            // mpirun, and with it the ranks, end when this process dies.
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() == 1) std::_Exit(127);  // it died before the line above
            dup2(err_pipe[1], 2);                 // dup2 clears O_CLOEXEC on the copy
            execve(cargs[0], cargs.data(), cenv.data());
            std::fprintf(stderr, "zerotrain: error: --nproc: cannot run %s: %s\n", cargs[0],
                         std::strerror(errno));
            std::_Exit(127);
        }
        setpgid(pid, pid);  // as the child does, whichever runs first
        ::close(err_pipe[1]);
        StderrRelay relay(err_pipe[0]);
        RankWatch watch(job_dir, nproc);
        // While the ranks run, SIGINT/SIGTERM sent to this process (a terminal's
        // Ctrl-C included) reach every rank as a clean stop: it finishes the step
        // and saves a checkpoint (forward_stop_signal).
        StopForwarding forwarding(pid, /*group=*/false);
        // Waits for mpirun, looking at the ranks every 50 ms meanwhile.
        int status = 0;
        int wait_rc;
        for (;;) {
            wait_rc = waitpid(pid, &status, WNOHANG);
            if (wait_rc != 0 && !(wait_rc < 0 && errno == EINTR)) break;
            watch.tick();
            struct timespec ts {
                0, 50 * 1000 * 1000
            };
            nanosleep(&ts, nullptr);
        }
        int wait_errno = errno;
        forwarding.restore();
        const std::vector<ReportedDeath> reported = relay.finish();
        ZT_CHECK(wait_rc >= 0, "--nproc: waiting for %s failed: %s", ZT_MPIEXEC,
                 std::strerror(wait_errno));
        const int stop = forwarding.first_signal();
        int rc = 1;
        if (WIFEXITED(status)) rc = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) rc = 128 + WTERMSIG(status);
        if (stop && rc != 0) {
            // Stopped on request: the shell's 128 + signal, whatever mpirun made of
            // the ranks' own 128 + signal exits.
            rc = 128 + stop;
        } else if (rc != 0) {
            report_failed_job(nproc, job_dir, watch, reported, relay.rank_failed(), notes);
        }
        return rc;
    }
#endif
    ZT_CHECK(network == nullptr,
             "--nproc %d with --netns: the namespaces' ranks start under mpirun, but %s", nproc,
             comm == "tcp" ? "--comm tcp starts them without it" : "this build has no MPI");
    return launch_direct_ranks(nproc, std::move(rank_args), notes);
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
