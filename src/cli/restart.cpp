// The restart loop of `train --nproc N --max-restarts R` (see restart.h): what
// an attempt left (the launcher's report on stderr, the run directory) decides
// whether it is run again.
#include "cli/restart.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ckpt/checkpoint.h"
#include "comm/flight.h"
#include "core/check.h"
#include "train/metrics.h"

namespace zt::cli {

namespace fs = std::filesystem;

namespace {

// While it lives, this process's stderr goes through a pipe: a thread copies
// everything to the real stderr as it arrives and keeps the lines that start
// with "zerotrain: " (the launcher's report and the ranks' errors).
class StderrTee {
  public:
    StderrTee() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) return;
        std::fflush(stderr);
        saved_ = ::fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (saved_ < 0 || ::dup2(fds[1], 2) < 0) {
            ::close(fds[0]);
            ::close(fds[1]);
            if (saved_ >= 0) ::close(saved_);
            saved_ = -1;
            return;
        }
        ::close(fds[1]);
        read_fd_ = fds[0];
        thread_ = std::thread([this] { run(); });
    }
    ~StderrTee() { finish(); }
    StderrTee(const StderrTee&) = delete;
    StderrTee& operator=(const StderrTee&) = delete;

    // Puts stderr back; returns the lines kept (none when the pipe could not be made).
    std::vector<std::string> finish() {
        if (saved_ < 0) return lines_;
        std::fflush(stderr);
        ::dup2(saved_, 2);  // the pipe's last writer is gone: the thread reads to its end
        if (thread_.joinable()) thread_.join();
        ::close(saved_);
        ::close(read_fd_);
        saved_ = read_fd_ = -1;
        return lines_;
    }

  private:
    void run() {
        char buf[4096];
        for (;;) {
            ssize_t n = ::read(read_fd_, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            for (ssize_t off = 0; off < n;) {
                ssize_t w = ::write(saved_, buf + off, size_t(n - off));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                off += w;
            }
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] != '\n') {
                    if (line_.size() < 8192) line_ += buf[i];
                    continue;
                }
                if (line_.rfind("zerotrain: ", 0) == 0 ||
                    line_.find("exited on signal") != std::string::npos)
                    lines_.push_back(line_);
                line_.clear();
            }
        }
    }

    int saved_ = -1;    // the real stderr
    int read_fd_ = -1;  // the pipe's read end
    std::string line_;
    std::vector<std::string> lines_;  // the thread's until finish()
    std::thread thread_;
};

// "SIGKILL"; "signal 64" for one without a name.
std::string signal_name(int sig) {
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? std::string("SIG") + abbrev : strprintf("signal %d", sig);
}

std::string metrics_path(const std::string& run_dir) {
    return (fs::path(run_dir) / "metrics.jsonl").string();
}

// The size of RUN_DIR/metrics.jsonl now (0 when there is none).
int64_t metrics_size(const std::string& run_dir) {
    std::error_code ec;
    const auto n = run_dir.empty() ? 0 : fs::file_size(metrics_path(run_dir), ec);
    return ec ? 0 : int64_t(n);
}

// What metrics.jsonl says from byte `from` on (the whole file when it is now
// shorter): how many step lines, and the last step number (-1 for none).
struct StepsSeen {
    int64_t lines = 0;
    int64_t last = -1;
};

StepsSeen steps_in_metrics(const std::string& run_dir, int64_t from) {
    StepsSeen seen;
    if (run_dir.empty()) return seen;
    std::ifstream f(metrics_path(run_dir), std::ios::binary);
    if (!f) return seen;
    f.seekg(0, std::ios::end);
    if (int64_t(f.tellg()) < from) from = 0;
    f.seekg(from);
    for (std::string line; std::getline(f, line);) {
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object() || j.value("kind", "") != "step" || !j["step"].is_number_integer())
            continue;
        seen.lines++;
        seen.last = j["step"].get<int64_t>();
    }
    return seen;
}

// The last step any attempt reached, from the whole file.
int64_t last_step(const std::string& run_dir) {
    return steps_in_metrics(run_dir, 0).last;
}

struct Attempt {
    int status = 0;
    std::string run_dir;    // from the launcher's report, else the command's
    bool reported = false;  // the launcher named a rank at fault (its notes were asked for)
    std::vector<std::string> lines;  // stderr lines starting "zerotrain: " or mpirun's deaths
    fs::file_time_type started;
    int64_t metrics_from = 0;  // metrics.jsonl's size when the attempt started
};

Attempt run_attempt(const std::vector<std::string>& args, const std::string& run_dir,
                    const LaunchAttempt& launch) {
    Attempt a;
    a.run_dir = run_dir;
    a.started = fs::file_time_type::clock::now();
    a.metrics_from = metrics_size(run_dir);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& s : copy) argv.push_back(s.data());
    argv.push_back(nullptr);
    StderrTee tee;
    try {
        a.status = launch(int(copy.size()), argv.data(), [&a](const std::string& dir) {
            a.reported = true;
            if (!dir.empty()) a.run_dir = dir;
        });
    } catch (...) {
        tee.finish();
        throw;
    }
    a.lines = tee.finish();
    return a;
}

struct Verdict {
    bool restart = false;
    std::string reason;  // why it failed (restart) or why it is not restarted
};

// "rank 2 died: SIGKILL" from the launcher's line ("zerotrain: rank 2 (pid
// 123) died: killed by signal 9 (SIGKILL); ...") or from mpirun's ("...
// process rank 2 with PID 123 on node h exited on signal 9 (Killed)."); "".
std::string death_of(const std::string& line) {
    int rank = -1, sig = 0;
    if (line.rfind("zerotrain: rank ", 0) == 0 && line.find(" died: ") != std::string::npos &&
        std::sscanf(line.c_str(), "zerotrain: rank %d", &rank) == 1) {
        const size_t at = line.find("killed by signal ");
        if (at != std::string::npos &&
            std::sscanf(line.c_str() + at, "killed by signal %d", &sig) == 1)
            return strprintf("rank %d died: %s", rank, signal_name(sig).c_str());
        return strprintf("rank %d died", rank);
    }
    const size_t at = line.find("process rank ");
    long pid = 0;
    if (at != std::string::npos &&
        std::sscanf(line.c_str() + at,
                    "process rank %d with PID %ld on node %*s exited on signal %d", &rank, &pid,
                    &sig) == 3)
        return strprintf("rank %d died: %s", rank, signal_name(sig).c_str());
    return "";
}

// The world size the newest run line of RUN_DIR/metrics.jsonl records (its
// config's nproc, the resolved world); 1 when there is none.
int world_of_run(const std::string& run_dir) {
    int world = 1;
    std::ifstream f(metrics_path(run_dir), std::ios::binary);
    for (std::string line; std::getline(f, line);) {
        if (line.rfind("{\"kind\":\"run\"", 0) != 0) continue;
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("config") && j["config"].value("nproc", 0) >= 1)
            world = j["config"]["nproc"].get<int>();
    }
    return world;
}

Verdict judge(const Attempt& a, int attempt, int nproc) {
    if (nproc <= 0) nproc = world_of_run(a.run_dir);
    const int s = a.status;
    if (s == 128 + SIGINT || s == 128 + SIGTERM)
        return {false, strprintf("it was stopped by %s", signal_name(s - 128).c_str())};
    for (const std::string& l : a.lines)
        if (l.rfind("zerotrain: error:", 0) == 0 &&
            l.find("training diverged") != std::string::npos)
            return {false,
                    "training diverged (a non-finite gradient); restarting would diverge "
                    "again: resume from an earlier checkpoint with a lower --lr"};
    if (attempt == 1 && steps_in_metrics(a.run_dir, a.metrics_from).lines == 0)
        return {false,
                "the first attempt failed before it finished a step, so a setting, the data or "
                "the machine is at fault and a restart would fail the same way"};

    // A collective timed out during this attempt.
    std::error_code ec;
    const std::string marker = a.run_dir.empty() ? "" : hang_marker_path(a.run_dir);
    if (!marker.empty() && fs::exists(marker, ec) && fs::last_write_time(marker, ec) >= a.started &&
        !ec) {
        for (const std::string& l : a.lines)
            if (l.rfind("zerotrain: hang: ", 0) == 0) return {true, "hang: " + l.substr(17)};
        const std::string d = diagnose_hang(a.run_dir, nproc);
        const std::string first = d.substr(0, d.find('\n'));
        return {true, first.rfind("zerotrain: hang: ", 0) == 0 ? "hang: " + first.substr(17)
                                                               : "a collective timed out"};
    }
    for (const std::string& l : a.lines)
        if (std::string d = death_of(l); !d.empty()) return {true, d};
    if (a.reported && s > 128) return {true, strprintf("a rank died (exit status %d)", s)};
    return {false, strprintf("its ranks failed by themselves (exit status %d; their errors are "
                             "above), not from a rank's death or a hang",
                             s)};
}

// The "restart" lines of a metrics file, in order.
std::vector<nlohmann::ordered_json> restart_lines(const std::string& path) {
    std::vector<nlohmann::ordered_json> out;
    std::ifstream f(path, std::ios::binary);
    for (std::string line; std::getline(f, line);) {
        auto j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("kind", "") == "restart") out.push_back(std::move(j));
    }
    return out;
}

void append_lines(const std::string& path, const std::vector<nlohmann::ordered_json>& lines) {
    MetricsWriter w(path, /*append=*/true);
    for (const auto& l : lines) w.write(l);
}

}  // namespace

void check_restart_launch(const TrainConfig& cfg) {
    if (cfg.max_restarts == 0) return;
    if (under_launcher()) {
        // The ranks our own --nproc started carry the flag too.
        ZT_CHECK(std::getenv("ZT_LAUNCHER_PID") != nullptr,
                 "--max-restarts %d under an outside launcher (%s): a rank cannot restart "
                 "its job; use --nproc N without mpirun/srun, or run the launcher under "
                 "zerotrain supervise --max-restarts K -- mpirun ... zerotrain train ...",
                 cfg.max_restarts, discover_ranks().source.c_str());
        return;
    }
    ZT_CHECK(cfg.nproc >= 1,
             "--max-restarts %d needs --nproc N (N >= 1): the restarts are made by the process "
             "that starts the ranks",
             cfg.max_restarts);
}

std::vector<std::string> restart_args(const std::vector<std::string>& argv,
                                      const std::string& run_dir) {
    std::vector<std::string> out;
    for (size_t i = 0; i < argv.size(); i++) {
        const std::string& a = argv[i];
        if (i > 0 && (a == "--resume" || a == "--out" || a == "--fork")) {
            i++;  // and its value
            continue;
        }
        if (a == "--truncate" || a.rfind("--resume=", 0) == 0 || a.rfind("--out=", 0) == 0 ||
            a.rfind("--fork=", 0) == 0)
            continue;
        out.push_back(a);
    }
    out.insert(out.end(), {"--resume", "auto", "--out", run_dir});
    return out;
}

int run_with_restarts(const RestartOptions& opt, int argc, char** argv,
                      const LaunchAttempt& launch) {
    std::vector<std::string> args(argv, argv + argc);
    std::string run_dir = opt.run_dir;
    // Restart lines for the metrics.jsonl that a fresh attempt creates.
    std::vector<nlohmann::ordered_json> pending;
    for (int attempt = 1;; attempt++) {
        const Attempt a = run_attempt(args, run_dir, launch);
        run_dir = a.run_dir;
        if (!pending.empty() && !run_dir.empty() && fs::exists(metrics_path(run_dir))) {
            append_lines(metrics_path(run_dir), pending);
            pending.clear();
        }
        if (a.status == 0) return 0;
        const Verdict v = judge(a, attempt, opt.nproc);
        std::fflush(stdout);
        if (!v.restart) {
            std::fprintf(stderr, "zerotrain: --max-restarts %d: not restarted: %s\n",
                         opt.max_restarts, v.reason.c_str());
            return a.status;
        }
        if (attempt > opt.max_restarts) {
            std::fprintf(stderr,
                         "zerotrain: --max-restarts %d: every restart is used; the last "
                         "attempt failed too (%s, exit status %d)\n",
                         opt.max_restarts, v.reason.c_str(), a.status);
            return a.status;
        }
        if (run_dir.empty()) {
            std::fprintf(stderr,
                         "zerotrain: --max-restarts %d: not restarted: the run directory is not "
                         "known (give --out)\n",
                         opt.max_restarts);
            return a.status;
        }
        std::optional<SavedCheckpoint> ckpt;
        try {
            ckpt = newest_step_checkpoint(run_dir);
        } catch (const std::exception&) {
        }
        const int64_t after = last_step(run_dir);
        nlohmann::ordered_json line;
        line["kind"] = "restart";
        line["restart"] = attempt;
        line["after_step"] = after;
        line["exit_status"] = a.status;
        line["reason"] = v.reason;
        line["resumed_from"] = ckpt ? nlohmann::ordered_json(ckpt->dir) : nullptr;
        const std::string metrics = metrics_path(run_dir);
        std::string where;
        if (ckpt) {
            append_lines(metrics, {line});
            where =
                strprintf("resuming from %s (step %lld)", ckpt->dir.c_str(), (long long)ckpt->step);
        } else {
            // A fresh start needs a run directory without metrics.jsonl.
            const std::string kept =
                (fs::path(run_dir) / strprintf("metrics-attempt-%d.jsonl", attempt)).string();
            if (fs::exists(metrics)) {
                std::error_code ec;
                fs::rename(metrics, kept, ec);
                ZT_CHECK(!ec, "--max-restarts: cannot move %s to %s: %s", metrics.c_str(),
                         kept.c_str(), ec.message().c_str());
                // The earlier restarts' lines go on into the new file too.
                pending = restart_lines(kept);
                append_lines(kept, {line});
            }
            pending.push_back(line);
            where = strprintf(
                "no complete checkpoint yet, so starting again at step 0 (the "
                "failed attempt's metrics are in %s)",
                kept.c_str());
        }
        std::fprintf(
            stderr, "zerotrain: restart %d of %d after step %lld: %s (exit status %d); %s\n",
            attempt, opt.max_restarts, (long long)after, v.reason.c_str(), a.status, where.c_str());
        std::fflush(stderr);
        args = restart_args(args, run_dir);
    }
}

}  // namespace zt::cli
