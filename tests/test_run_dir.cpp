// Runs a user can trust, through the zerotrain binary: every run keeps its
// model (a final checkpoint unless --no-save, and with --keep-best the one of
// the lowest validation loss, which retention and resume leave alone); one
// run at a time writes a run directory (RUN_DIR/.lock); a resume never
// silently rewrites a newer history (--fork, --truncate); and every failing
// subcommand exits non-zero.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "ckpt/checkpoint.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using zt_test::CommandResult;
using zt_test::read_run;
using zt_test::RunLog;
using zt_test::TempDir;

CommandResult zerotrain(const std::string& args) {
    return zt_test::run_command(zt_test::zerotrain_binary() + " " + args);
}

// Small, fast runs: test-tiny, 2 sequences of 32 tokens, synthetic data.
std::string train_args(const std::string& out, int steps, const std::string& extra = "",
                       const std::string& schedule = "--lr 3e-3 --warmup 2 --eval-every 0") {
    return "train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2 --steps " +
           std::to_string(steps) + " " + schedule +
           " --eval-tokens 1024 --sample-tokens 0 --threads 1 --out " + out + " " + extra;
}

// A run that diverges (lr 1, constant, no clipping), evaluated after every
// step: its validation loss goes up, then (from step 4) down again.
const char* kDiverging = "--eval-every 1 --lr 1 --min-lr 1 --warmup 0 --grad-clip 0";

RunLog train_ok(const std::string& args, const std::string& out) {
    auto r = zerotrain(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output;
    return read_run(out);
}

void expect_refused(const CommandResult& r, std::initializer_list<std::string> fragments) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("zerotrain: error:"), std::string::npos) << r.output;
    for (const std::string& f : fragments)
        EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
}

// The names in a directory, sorted.
std::vector<std::string> names_in(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
}

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<nlohmann::json> metrics_lines(const std::string& run) {
    std::vector<nlohmann::json> lines;
    std::ifstream f(run + "/metrics.jsonl");
    std::string line;
    while (std::getline(f, line)) lines.push_back(nlohmann::json::parse(line));
    return lines;
}

int count_kind(const std::vector<nlohmann::json>& lines, const std::string& kind) {
    int n = 0;
    for (const auto& j : lines) n += j["kind"] == kind;
    return n;
}

// A prepared data directory with the byte tokenizer and a validation split.
std::string prepare_text(const TempDir& dir) {
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 200; i++) f << "line " << i << ": a few words of text to learn\n\n";
    }
    const std::string data = dir / "data";
    auto prep = zerotrain("prepare --input " + (dir / "text.txt") + " --out " + data +
                          " --tokenizer byte --doc-separator '' --val-fraction 0.1");
    EXPECT_EQ(prep.exit_code, 0) << prep.output;
    return data;
}

// ---- every run keeps its model --------------------------------------------------

// With the default --save-every 0 the run ends with a checkpoint of its last
// step, which generate and eval read from the run directory. --no-save keeps
// none, and generate from that run directory fails with a non-zero exit
// that says why.
TEST(RunDir, EveryRunSavesAFinalCheckpointUnlessNoSave) {
    TempDir dir;
    const std::string data = prepare_text(dir);
    const std::string shape = " --data " + data + " --seq-len 32 --micro-batch 2 ";
    const std::string run = dir / "run";
    RunLog log = train_ok("train" + shape +
                              "--steps 3 --eval-every 0 --eval-tokens 512 --sample-tokens 0 "
                              "--threads 1 --out " +
                              run,
                          run);
    EXPECT_EQ(names_in(run + "/ckpt"), (std::vector<std::string>{"latest", "step-00000003"}));
    EXPECT_EQ(log.summary["last_checkpoint"], run + "/ckpt/step-00000003");
    auto gen = zerotrain("generate --checkpoint " + run + " --prompt line --tokens 4");
    EXPECT_EQ(gen.exit_code, 0) << gen.output;
    auto ev = zerotrain("eval --checkpoint " + run + shape + "--eval-tokens 512 --json");
    EXPECT_EQ(ev.exit_code, 0) << ev.output;

    const std::string bare = dir / "bare";
    train_ok("train" + shape +
                 "--steps 3 --eval-every 0 --eval-tokens 512 --sample-tokens 0 --no-save "
                 "--threads 1 --out " +
                 bare,
             bare);
    EXPECT_FALSE(fs::exists(bare + "/ckpt"));
    auto r = zerotrain("generate --checkpoint " + bare + " --prompt line --tokens 4");
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("holds no checkpoint"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(bare), std::string::npos) << r.output;
}

TEST(RunDir, RefusesContradictorySaveFlags) {
    TempDir dir;
    const std::string out = dir / "r";
    expect_refused(zerotrain(train_args(out, 2, "--no-save --save-every 1")),
                   {"--no-save", "--save-every 1"});
    expect_refused(zerotrain(train_args(out, 2, "--no-save --keep-best")),
                   {"--no-save", "--keep-best"});
    // Data without a validation split has nothing to pick the best by.
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 100; i++) f << "line " << i << ": a few words of text\n\n";
    }
    auto prep = zerotrain("prepare --input " + (dir / "text.txt") + " --out " + (dir / "d") +
                          " --tokenizer byte --doc-separator '' --val-fraction 0");
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    expect_refused(zerotrain("train --data " + (dir / "d") +
                             " --seq-len 32 --micro-batch 2 --steps 2 --keep-best --out " + out),
                   {"--keep-best", "validation"});
    EXPECT_FALSE(fs::exists(out)) << "a refused run must not create its run directory";
}

// A diverging run (lr 1, constant) whose validation loss is lowest after
// step 1: ckpt/best holds step 1 with that loss, --keep-last 1 removes the
// step directories but never best, and --resume auto continues from the
// newest step, not from best.
TEST(RunDir, KeepBestSurvivesPruningAndResumeTakesTheNewestStep) {
    TempDir dir;
    const std::string run = dir / "run";
    RunLog a =
        train_ok(train_args(run, 3, "--save-every 1 --keep-last 1 --keep-best", kDiverging), run);
    ASSERT_EQ(a.evals.size(), 3u);
    int64_t best_step = 0;
    double best_loss = INFINITY;
    for (const auto& e : a.evals)
        if (e["loss"].get<double>() < best_loss) {
            best_loss = e["loss"].get<double>();
            best_step = e["step"].get<int64_t>();
        }
    ASSERT_LT(best_step, 3) << "the run must diverge for this test to mean anything";
    EXPECT_EQ(names_in(run + "/ckpt"),
              (std::vector<std::string>{"best", "latest", "step-00000003"}));
    zt::Checkpoint best = zt::Checkpoint::open(run + "/ckpt/best");
    EXPECT_EQ(best.step(), best_step);
    EXPECT_EQ(best.manifest()["eval_loss"].get<double>(), best_loss);
    EXPECT_EQ(a.summary["best_checkpoint"]["step"], best_step);
    EXPECT_EQ(zt::Checkpoint::open(run).step(), 3) << "a run directory resolves to its newest step";

    auto r = zerotrain("train --resume auto --steps 4 --threads 1 --out " + run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    RunLog b = read_run(run);
    EXPECT_EQ(b.summary["start_step"], 3);
    EXPECT_TRUE(fs::exists(run + "/ckpt/best/manifest.json"));
    EXPECT_EQ(zt::Checkpoint::open(run + "/ckpt/best").step(),
              b.summary["best_checkpoint"]["step"].get<int64_t>());
    // Best of the whole history: the resumed run compared against the kept one.
    double lowest = INFINITY;
    for (const auto& e : b.evals) lowest = std::min(lowest, e["loss"].get<double>());
    EXPECT_EQ(b.summary["best_checkpoint"]["eval_loss"].get<double>(), lowest);
}

// ---- one run at a time ---------------------------------------------------------

// Holds RUN_DIR/.lock as a run would, recording pid and host.
struct HeldLock {
    int fd = -1;
    HeldLock(const std::string& dir, const std::string& host) {
        fs::create_directories(dir);
        fd = ::open((dir + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
        EXPECT_GE(fd, 0);
        EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
        std::string who = nlohmann::json{{"pid", ::getpid()}, {"host", host}}.dump() + "\n";
        EXPECT_EQ(::pwrite(fd, who.data(), who.size(), 0), ssize_t(who.size()));
    }
    ~HeldLock() {
        if (fd >= 0) ::close(fd);
    }
};

TEST(RunDir, ASecondRunIntoTheSameDirectoryIsRefused) {
    TempDir dir;
    const std::string run = dir / "run";
    {
        HeldLock held(run, "lock-test-host");
        for (const std::string extra : {"", "--resume auto"})
            expect_refused(zerotrain(train_args(run, 2, extra)),
                           {"in use by another zerotrain run", "pid " + std::to_string(::getpid()),
                            "lock-test-host", run});
        EXPECT_FALSE(fs::exists(run + "/metrics.jsonl"));
        EXPECT_FALSE(fs::exists(run + "/ckpt"));
    }
    // Released: the run goes ahead, and records itself in the lock file.
    train_ok(train_args(run, 2), run);
    auto who = nlohmann::json::parse(read_text(run + "/.lock"));
    EXPECT_TRUE(who["pid"].is_number_integer());
    EXPECT_TRUE(who["host"].is_string());
}

// The kernel drops the lock of a killed process: SIGKILL leaves no stale lock.
TEST(RunDir, AKilledRunLeavesNoStaleLock) {
    TempDir dir;
    const std::string run = dir / "run";
    fs::create_directories(run);
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        int fd = ::open((run + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
        if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) std::_Exit(1);
        std::string who = nlohmann::json{{"pid", ::getpid()}, {"host", "h"}}.dump() + "\n";
        if (::pwrite(fd, who.data(), who.size(), 0) < 0) std::_Exit(1);
        char c = 1;
        if (::write(ready[1], &c, 1) != 1) std::_Exit(1);
        for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child could not take the lock";
    ::close(ready[0]);
    expect_refused(zerotrain(train_args(run, 2)), {"pid " + std::to_string(child)});
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    train_ok(train_args(run, 2), run);
}

// Starts `args` in the background; true once `ready` holds (or false after timeout_s).
bool start_in_background(const std::string& args, const std::string& log,
                         const std::function<bool()>& ready, double timeout_s) {
    return zt_test::start_and_wait_for(zt_test::zerotrain_binary() + " " + args, log, ready,
                                       timeout_s);
}

// A real run with --nproc 2 holds the lock through its rank 0 (the launching
// process takes none, so its ranks never wait on it): a second run is refused
// naming rank 0's pid and the launcher's, and the launcher stops the first
// run cleanly on SIGTERM.
TEST(RunDir, ARunningMultiRankRunRefusesASecond) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    const std::string run = dir / "run";
    const std::string log = dir / "log";
    ASSERT_TRUE(start_in_background(
        train_args(run, 1000000, "--nproc 2"), log, [&] { return read_run(run).steps.size() >= 1; },
        120))
        << read_text(log);
    auto who = nlohmann::json::parse(read_text(run + "/.lock"));
    ASSERT_TRUE(who.contains("launcher_pid")) << who.dump();
    const int64_t rank0 = who["pid"], launcher = who["launcher_pid"];
    for (const std::string extra : {"", "--nproc 2"}) {
        auto r = zerotrain(train_args(run, 2, extra));
        EXPECT_NE(r.exit_code, 0) << r.output;
        EXPECT_NE(r.output.find("in use by another zerotrain run (pid " + std::to_string(rank0)),
                  std::string::npos)
            << r.output;
        EXPECT_NE(r.output.find("by pid " + std::to_string(launcher)), std::string::npos)
            << r.output;
    }
    ::kill(pid_t(launcher), SIGTERM);
    EXPECT_EQ(zt_test::wait_exit_code(log, 120), 128 + SIGTERM) << read_text(log);
    EXPECT_EQ(read_run(run).summary["stopped_by"], "SIGTERM");
}

// A terminal's Ctrl-C reaches the launcher's whole process group (here made
// with setsid, as a shell makes one for a job). The ranks still stop cleanly:
// the step finishes, a checkpoint is saved, the run says SIGINT, and none of
// mpirun's notes about forwarding the signal or the ranks' non-zero exits
// reach the user. So with --comm tcp, whose ranks --nproc starts itself.
void check_ctrl_c_stops_cleanly(const std::string& launch) {
    TempDir dir;
    const std::string run = dir / "run";
    const std::string log = dir / "log";
    ASSERT_TRUE(zt_test::start_and_wait_for(
        "setsid " + zt_test::zerotrain_binary() + " " + train_args(run, 1000000, launch), log,
        [&] { return read_run(run).steps.size() >= 1; }, 120))
        << read_text(log);
    const int64_t launcher = nlohmann::json::parse(read_text(run + "/.lock"))["launcher_pid"];
    ASSERT_EQ(::getpgid(pid_t(launcher)), pid_t(launcher)) << "setsid made no process group";
    ::kill(-pid_t(launcher), SIGINT);
    EXPECT_EQ(zt_test::wait_exit_code(log, 120), 128 + SIGINT) << read_text(log);
    const RunLog stopped = read_run(run);
    EXPECT_EQ(stopped.summary["stopped_by"], "SIGINT");
    EXPECT_TRUE(
        fs::exists(stopped.summary["last_checkpoint"].get<std::string>() + "/manifest.json"))
        << stopped.summary.dump();
    const std::string out = read_text(log);
    EXPECT_NE(out.find("stopped by SIGINT after step"), std::string::npos) << out;
    for (const char* noise : {"Forwarding signal", "non-zero", "-----"})
        EXPECT_EQ(out.find(noise), std::string::npos) << noise << " in:\n" << out;
}

TEST(RunDir, CtrlCOnAMultiRankLauncherStopsCleanlyAsSigint) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    check_ctrl_c_stops_cleanly("--nproc 2");
}

TEST(RunDir, CtrlCOnATcpLauncherStopsCleanlyAsSigint) {
    check_ctrl_c_stops_cleanly("--nproc 2 --comm tcp");
}

// ---- a resume never rewrites a newer history silently -----------------------------

struct SixSteps {
    TempDir dir;
    std::string run = dir / "rd";
    RunLog log;
    std::string metrics;  // metrics.jsonl's bytes after the run
    SixSteps() {
        log = train_ok(train_args(run, 6, "--save-every 2"), run);
        metrics = read_text(run + "/metrics.jsonl");
    }
    std::string step(int s) const { return run + "/ckpt/" + zt::checkpoint_dir_name(s); }
    void expect_untouched() const {
        EXPECT_EQ(names_in(run + "/ckpt"),
                  (std::vector<std::string>{"latest", "step-00000002", "step-00000004",
                                            "step-00000006"}));
        EXPECT_EQ(read_text(run + "/ckpt/latest"), "step-00000006\n");
        EXPECT_EQ(read_text(run + "/metrics.jsonl"), metrics);
    }
};

// Every step line of `got` equals the same step of `want` exactly.
void expect_same_steps(const RunLog& got, const RunLog& want) {
    for (const auto& [step, line] : got.steps) {
        ASSERT_TRUE(want.steps.count(step)) << "step " << step;
        EXPECT_EQ(line["loss"].get<double>(), want.steps.at(step)["loss"].get<double>())
            << "step " << step;
    }
}

TEST(RunDir, ResumeFromAnOlderCheckpointInPlaceIsRefused) {
    SixSteps six;
    for (const std::string& from : {six.step(2), six.step(4)}) {
        const std::string s = from == six.step(2) ? "2" : "4";
        expect_refused(zerotrain("train --resume " + from + " --threads 1 --out " + six.run),
                       {"at step " + s, "newer checkpoint", "step-00000006", "at step 6",
                        "--fork NEW_OUT", "--truncate"});
        six.expect_untouched();
    }
    // The newest, or the run directory itself, continues in place as before.
    auto r = zerotrain("train --resume " + six.step(6) + " --steps 7 --threads 1 --out " + six.run);
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(RunDir, ForkContinuesInANewRunDirectoryAndLeavesTheOldOne) {
    SixSteps six;
    const std::string fork = six.dir / "fork";
    RunLog f = train_ok(
        "train --resume " + six.step(2) + " --threads 1 --out " + six.run + " --fork " + fork,
        fork);
    six.expect_untouched();
    ASSERT_EQ(f.steps.size(), 4u);
    EXPECT_EQ(f.steps.begin()->first, 3);
    expect_same_steps(f, six.log);  // the same continuation, bit for bit
    EXPECT_EQ(names_in(fork + "/ckpt"),
              (std::vector<std::string>{"latest", "step-00000004", "step-00000006"}));
    EXPECT_TRUE(fs::exists(fork + "/config.json"));

    expect_refused(zerotrain("train --resume " + six.step(2) + " --fork " + fork),
                   {"--fork", fork, "already holds a run"});
    expect_refused(zerotrain("train --resume " + six.step(2) + " --fork " + six.run),
                   {"--fork", "is the run directory the checkpoint"});
    expect_refused(zerotrain("train --fork " + (six.dir / "f2")), {"--fork", "--resume"});
    expect_refused(
        zerotrain("train --resume " + six.step(2) + " --fork " + (six.dir / "f3") + " --truncate"),
        {"--fork", "--truncate"});
    expect_refused(zerotrain("train --resume " + six.step(2) + " --out " + (six.dir / "elsewhere") +
                             " --fork " + (six.dir / "f4")),
                   {"--out", "--fork"});
    six.expect_untouched();
}

TEST(RunDir, TruncateDeletesTheNewerHistoryThenContinues) {
    SixSteps six;
    auto r =
        zerotrain("train --resume " + six.step(2) + " --truncate --threads 1 --out " + six.run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("removed 2 checkpoint(s) after step 2 (step-00000004, step-00000006)"),
              std::string::npos)
        << r.output;
    EXPECT_EQ(read_text(six.run + "/ckpt/latest"), "step-00000006\n");
    // One line per step, one summary: the history reads as one run resumed at step 2.
    const std::vector<nlohmann::json> lines = metrics_lines(six.run);
    EXPECT_EQ(count_kind(lines, "step"), 6);
    EXPECT_EQ(count_kind(lines, "summary"), 1);
    EXPECT_EQ(count_kind(lines, "run"), 2);
    RunLog b = read_run(six.run);
    EXPECT_EQ(b.summary["start_step"], 2);
    expect_same_steps(b, six.log);

    // Truncating to step 2 and stopping at step 3: nothing after step 3 is left.
    SixSteps again;
    r = zerotrain("train --resume " + again.step(2) + " --truncate --steps 3 --threads 1 --out " +
                  again.run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(names_in(again.run + "/ckpt"),
              (std::vector<std::string>{"latest", "step-00000002", "step-00000003"}));
    EXPECT_EQ(read_text(again.run + "/ckpt/latest"), "step-00000003\n");
    for (const auto& j : metrics_lines(again.run)) {
        if (j.contains("step")) {
            EXPECT_LE(j["step"].get<int64_t>(), 3) << j.dump();
        }
    }

    // --truncate applies only to a resume inside --out.
    TempDir other;
    expect_refused(zerotrain(train_args(other / "new", 2, "--truncate")),
                   {"--truncate", "resumes nothing"});
    expect_refused(
        zerotrain("train --resume " + again.step(2) + " --truncate --out " + (other / "elsewhere")),
        {"--truncate", "is not inside --out"});
}

// --truncate also removes a best checkpoint from after the resumed step.
TEST(RunDir, TruncateRemovesALaterBestCheckpoint) {
    TempDir dir;
    const std::string run = dir / "run";
    train_ok(train_args(run, 4, "--save-every 1 --keep-best", kDiverging), run);
    const int64_t best = zt::Checkpoint::open(run + "/ckpt/best").step();
    ASSERT_GT(best, 2) << "the loss must come down again by the end for this test";
    auto r = zerotrain("train --resume " + run +
                       "/ckpt/step-00000002 --truncate --steps 2 "
                       "--threads 1 --out " +
                       run);
    // --steps 2: nothing left to train, refused before anything is removed.
    expect_refused(r, {"nothing left to train"});
    EXPECT_TRUE(fs::exists(run + "/ckpt/best"));
    r = zerotrain("train --resume " + run + "/ckpt/step-00000002 --truncate --threads 1 --out " +
                  run);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("best (step " + std::to_string(best) + ")"), std::string::npos)
        << r.output;
    RunLog b = read_run(run);
    // The best of what is left: the continued run's own evaluations after step 2.
    double lowest = INFINITY;
    for (const auto& e : b.evals)
        if (e["step"].get<int64_t>() > 2) lowest = std::min(lowest, e["loss"].get<double>());
    EXPECT_EQ(b.summary["best_checkpoint"]["eval_loss"].get<double>(), lowest);
}

// ---- every failure exits non-zero ---------------------------------------------------

// The step numbers of the printed step lines ("step     3/7 | loss ..."), and
// whether every one carries the elapsed time and an ETA.
std::vector<int> printed_steps(const std::string& output, bool* all_timed) {
    std::vector<int> steps;
    *all_timed = true;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) {
        int step = 0, total = 0;
        if (line.find("| loss ") == std::string::npos ||
            std::sscanf(line.c_str(), "step %d/%d", &step, &total) != 2)
            continue;
        steps.push_back(step);
        if (line.find("| elapsed ") == std::string::npos ||
            line.find("| eta ") == std::string::npos)
            *all_timed = false;
    }
    return steps;
}

// --log-every N prints every N-th step line and always the first and the last;
// metrics.jsonl keeps every step. Each line says how long the run has taken
// and how long it still needs.
TEST(RunDir, LogEveryThinsTheStepLinesButNotTheMetrics) {
    TempDir dir;
    const std::string run = dir / "run";
    auto r = zerotrain(train_args(run, 7, "--log-every 3"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    bool timed = false;
    EXPECT_EQ(printed_steps(r.output, &timed), (std::vector<int>{1, 3, 6, 7})) << r.output;
    EXPECT_TRUE(timed) << r.output;
    EXPECT_EQ(read_run(run).steps.size(), 7u);

    const std::string every = dir / "every";
    r = zerotrain(train_args(every, 3, "--log-every 1"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(printed_steps(r.output, &timed), (std::vector<int>{1, 2, 3})) << r.output;
    EXPECT_NE(r.output.find("| eta 0.0s"), std::string::npos) << "the last step has none left";
    expect_refused(zerotrain(train_args(dir / "bad", 3, "--log-every -1")), {"--log-every -1"});
}

TEST(RunDir, EveryFailingSubcommandExitsNonZero) {
    TempDir dir;
    const std::string missing = dir / "missing";
    fs::create_directories(dir / "empty-run");
    std::ofstream(dir / "empty-run/metrics.jsonl") << "{\"kind\":\"run\"}\n";
    for (const std::string& cmd : std::vector<std::string>{
             "generate --checkpoint " + missing + " --prompt a",
             "generate --checkpoint " + (dir / "empty-run") + " --prompt a",
             "eval --checkpoint " + (dir / "empty-run") + " --data " + missing,
             "export --checkpoint " + (dir / "empty-run") + " --out " + (dir / "hf"),
             "prepare --input " + missing + " --out " + (dir / "p"),
             "estimate --model no-such-model --world-size 2",
             "estimate --model tiny --world-size 0",
             "train --data " + missing + " --out " + (dir / "t"), "train --steps 0",
             "no-such-command", "train --no-such-flag"}) {
        auto r = zerotrain(cmd);
        EXPECT_NE(r.exit_code, 0) << cmd << "\n" << r.output;
    }
    EXPECT_FALSE(fs::exists(dir / "hf"));
    EXPECT_FALSE(fs::exists(dir / "t"));
}

}  // namespace
