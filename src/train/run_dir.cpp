// The run directory's lock and what a resume may do to its history (see run_dir.h).
#include "train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "ckpt/checkpoint.h"
#include "comm/launch.h"
#include "core/check.h"
#include "train/metrics.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kLockName = ".lock";

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

// Who holds the lock, from what it wrote into the lock file.
std::string describe_holder(int fd) {
    char buf[1024] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    nlohmann::json j = nlohmann::json::parse(std::string(buf, n > 0 ? size_t(n) : 0), nullptr,
                                             /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer())
        return "a process that has not recorded its pid yet";
    std::string s = strprintf("pid %lld on host %s", (long long)j["pid"].get<int64_t>(),
                              j.value("host", std::string("unknown")).c_str());
    if (j.contains("launcher_pid") && j["launcher_pid"].is_number_integer())
        s += strprintf(", started with --nproc by pid %lld",
                       (long long)j["launcher_pid"].get<int64_t>());
    if (j.contains("started") && j["started"].is_string())
        s += ", since " + j["started"].get<std::string>();
    return s;
}

// The run directory holding a checkpoint directory (RUN/ckpt/step-N or RUN/ckpt/best).
fs::path run_dir_of(const std::string& checkpoint) {
    return fs::path(resolve_checkpoint_dir(checkpoint)).parent_path().parent_path();
}

bool same_dir(const fs::path& a, const fs::path& b) {
    std::error_code ec;
    return fs::exists(a) && fs::exists(b) && fs::equivalent(a, b, ec);
}

[[noreturn]] void refuse_locked(const std::string& dir, const std::string& holder,
                                const std::string& lock) {
    ZT_FAIL(
        "--out '%s' is in use by another zerotrain run (%s; lock file %s); wait for it to "
        "finish or stop it, or choose another --out",
        dir.c_str(), holder.c_str(), lock.c_str());
}

}  // namespace

void check_run_dir_not_locked(const std::string& run_dir) {
    const std::string path = (fs::path(run_dir) / kLockName).string();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;  // no lock file: no run has held it
    // A shared lock is refused while a run holds the exclusive one.
    if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
        const std::string holder = describe_holder(fd);
        ::close(fd);
        refuse_locked(run_dir, holder, path);
    }
    ::close(fd);
}

RunDirLock::RunDirLock(const std::string& run_dir)
    : dir_(run_dir), path_((fs::path(run_dir) / kLockName).string()) {
    std::error_code ec;
    for (fs::path p = fs::absolute(dir_, ec); !p.empty() && !fs::exists(p); p = p.parent_path())
        created_dirs_.push_back(p);
    fs::create_directories(dir_, ec);
    ZT_CHECK(!ec, "--out '%s': cannot create the run directory: %s", dir_.c_str(),
             ec.message().c_str());
    // A lock file removed between our open and our flock (a failed run
    // cleaning up, below) is not the directory's lock: open it again.
    for (int attempt = 0; attempt < 10; attempt++) {
        fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        ZT_CHECK(fd_ >= 0, "--out '%s': cannot open its lock file %s: %s", dir_.c_str(),
                 path_.c_str(), std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            const int err = errno;
            if (err == EWOULDBLOCK) {
                const std::string holder = describe_holder(fd_);
                ::close(fd_);
                fd_ = -1;
                refuse_locked(dir_, holder, path_);
            }
            // A file system without flock: say so rather than pretend.
            std::fprintf(stderr,
                         "zerotrain: warning: cannot lock %s (%s): nothing stops a second run "
                         "from writing into %s at the same time\n",
                         path_.c_str(), std::strerror(err), dir_.c_str());
            break;
        }
        struct stat held {
        }, named{};
        if (::fstat(fd_, &held) == 0 && ::stat(path_.c_str(), &named) == 0 &&
            held.st_dev == named.st_dev && held.st_ino == named.st_ino)
            break;
        ::close(fd_);
        fd_ = -1;
        fs::create_directories(dir_, ec);
    }
    ZT_CHECK(fd_ >= 0, "--out '%s': its lock file %s keeps being replaced", dir_.c_str(),
             path_.c_str());
    nlohmann::json who_json = {
        {"pid", int64_t(::getpid())}, {"host", host_name()}, {"started", utc_now()}};
    // Rank 0 of --nproc's ranks: the process to signal is the launcher (cli/cmd_train.cpp).
    const char* launcher = std::getenv("ZT_LAUNCHER_PID");
    if (launcher && under_launcher()) who_json["launcher_pid"] = std::atoll(launcher);
    const std::string who = who_json.dump() + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, who.data(), who.size(), 0) != ssize_t(who.size()))
        std::fprintf(stderr, "zerotrain: warning: cannot record this run's pid in %s: %s\n",
                     path_.c_str(), std::strerror(errno));
}

RunDirLock::~RunDirLock() {
    if (fd_ < 0) return;
    if (!created_dirs_.empty() && !kept_) {
        // Unlinked while still locked, so a run waiting to open it opens a new one.
        ::unlink(path_.c_str());
        std::error_code ec;
        for (const fs::path& p : created_dirs_) fs::remove(p, ec);  // each only when empty
    }
    ::close(fd_);  // releases the lock
}

TrainConfig apply_fork(const TrainConfig& flags, const ResumeActions& actions) {
    if (actions.fork.empty()) return flags;
    ZT_CHECK(!actions.truncate,
             "--fork %s and --truncate exclude each other: --fork leaves the old run directory "
             "as it is, --truncate rewrites it",
             actions.fork.c_str());
    ZT_CHECK(!flags.resume.empty() && flags.resume != "auto",
             "--fork %s continues a checkpoint in a new run directory: give the checkpoint with "
             "--resume CHECKPOINT (a step, ckpt or run directory)",
             actions.fork.c_str());
    const fs::path from = run_dir_of(flags.resume);
    ZT_CHECK(!same_dir(actions.fork, from),
             "--fork %s is the run directory the checkpoint %s is in; fork into a new directory",
             actions.fork.c_str(), flags.resume.c_str());
    ZT_CHECK(flags.out.empty() || same_dir(flags.out, from) || flags.out == actions.fork,
             "--out %s and --fork %s: with --fork the run writes into %s; --out may only name the "
             "run directory the checkpoint is in (%s)",
             flags.out.c_str(), actions.fork.c_str(), actions.fork.c_str(), from.c_str());
    ZT_CHECK(!fs::exists(fs::path(actions.fork) / "metrics.jsonl"),
             "--fork '%s' already holds a run (metrics.jsonl); fork into a new directory",
             actions.fork.c_str());
    TrainConfig cfg = flags;
    cfg.out = actions.fork;
    cfg.given.insert("out");
    return cfg;
}

void check_resume_point(const ResolvedRun& run, const ResumeActions& actions) {
    const std::string& out = run.cfg.out;
    const bool in_place = run.resumed && run.run_dir == RunDirMode::in_place;
    ZT_CHECK(
        !actions.truncate || in_place,
        "--truncate deletes what a run directory holds after the checkpoint it resumes, so "
        "it needs --resume CHECKPOINT with the checkpoint inside --out; %s",
        run.resumed
            ? strprintf("%s is not inside --out %s", run.resumed->dir.c_str(), out.c_str()).c_str()
            : "this run resumes nothing");
    if (!in_place || actions.truncate) return;
    const std::optional<SavedCheckpoint> newest = newest_step_checkpoint(out);
    const int64_t step = run.resumed->step;
    ZT_CHECK(!newest || newest->step <= step,
             "--resume %s is at step %lld, but --out %s already holds a newer checkpoint, %s at "
             "step %lld: continuing there would replace its later steps. Either give --fork "
             "NEW_OUT to continue in a new run directory and leave %s as it is, or --truncate to "
             "delete its checkpoints and metrics lines after step %lld first",
             run.resumed->dir.c_str(), (long long)step, out.c_str(), newest->dir.c_str(),
             (long long)newest->step, out.c_str(), (long long)step);
}

void truncate_run_history(const std::string& run_dir, int64_t step) {
    const std::vector<std::string> removed = remove_checkpoints_after(run_dir, step);
    const int64_t lines =
        truncate_metrics_after((fs::path(run_dir) / "metrics.jsonl").string(), step);
    std::string names;
    for (const std::string& n : removed) names += (names.empty() ? "" : ", ") + n;
    std::printf(
        "zerotrain: --truncate: removed %zu checkpoint(s) after step %lld%s and %lld metrics "
        "line(s) from %s\n",
        removed.size(), (long long)step,
        removed.empty() ? "" : strprintf(" (%s)", names.c_str()).c_str(), (long long)lines,
        run_dir.c_str());
    std::fflush(stdout);
}

}  // namespace zt
