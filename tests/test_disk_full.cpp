// A disk that fills up in the middle of a run, on a small tmpfs (needs root;
// skipped with the reason otherwise): when the ranks' files of a checkpoint
// do not fit, when `ckpt/latest` cannot be written after the step directory
// was renamed into place, and when a metrics.jsonl line cannot be written. Either way the run stops
// with an error, leaves only complete checkpoints and whole metrics lines, and --resume auto, once
// there is space again, continues from the newest complete step with the
// losses of an uninterrupted run.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_jobs.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using zt_test::read_run;
using zt_test::read_text;
using zt_test::RunLog;
using zt_test::SmallDisk;
using zt_test::TempDir;

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// One rank, test-tiny, synthetic data: a few milliseconds a step.
std::string train_cmd(const std::string& out, int steps, const std::string& extra) {
    return zt_test::zerotrain_binary() +
           " train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2 --lr 3e-3 "
           "--warmup 2 --eval-every 0 --eval-tokens 1024 --sample-tokens 0 --threads 1 --steps " +
           std::to_string(steps) + " --out " + out + " " + extra;
}

// Every line of the file parses and it ends in a newline; returns how many.
size_t expect_whole_lines(const std::string& path) {
    const std::string text = read_text(path);
    EXPECT_TRUE(text.empty() || text.back() == '\n') << path << " ends mid-line";
    size_t n = 0, start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        EXPECT_TRUE(json::accept(line)) << path << " line " << n + 1 << ": " << line;
        n++;
        start = end + 1;
    }
    return n;
}

// The resumed run's steps equal the uninterrupted run's exactly: one rank
// resumed from a checkpoint repeats the same computation on the same bytes.
void expect_same_steps(const RunLog& got, const RunLog& want, int64_t steps) {
    ASSERT_EQ(int64_t(got.steps.size()), steps);
    for (const auto& [step, line] : want.steps) {
        ASSERT_TRUE(got.steps.count(step)) << "step " << step;
        EXPECT_EQ(got.steps.at(step)["loss"].get<double>(), line["loss"].get<double>())
            << "step " << step;
        EXPECT_EQ(got.steps.at(step)["grad_norm"].get<double>(), line["grad_norm"].get<double>())
            << "step " << step;
    }
}

int64_t last_start_step(const std::string& run) {
    int64_t start = -1;
    std::ifstream f(run + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
        json j = json::parse(line, nullptr, false);
        if (j.is_object() && j.value("kind", "") == "run") start = j.value("start_step", -1);
    }
    return start;
}

// The tmpfs runs out of inodes while the save of step 4 waits between its rank
// file and the rename (the ZT_CKPT_TEST_DELAY hook): two are left, for
// manifest.json and manifest.sha256, so the step directory is renamed into
// place complete and `latest` (a new latest.tmp) is what cannot be written.
TEST(DiskFull, LatestCannotBeWrittenAfterTheStepDirectoryIsInPlace) {
    TempDir dir;
    SmallDisk disk(dir.path(), "size=16m,nr_inodes=256");
    REQUIRE_SMALL_DISK(disk);
    const int steps = 8;
    const std::string ref = dir / "ref", run = disk.path() + "/run";
    auto base = zt_test::run_command(train_cmd(ref, steps, "--save-every 2"));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    const std::string log = dir / "full.log";
    const std::string rank_file = run + "/ckpt/step-00000004.tmp/rank-00000-of-00001.safetensors";
    // The hook's wait is long beside the few files the test creates in it.
    const std::string cmd =
        "env ZT_CKPT_TEST_DELAY=4:5000 " + train_cmd(run, steps, "--save-every 2");
    ASSERT_TRUE(zt_test::start_and_wait_for(
        cmd, log, [&] { return fs::exists(rank_file); }, 300))
        << read_text(log);
    std::vector<std::string> fillers;
    for (int k = 0;; k++) {
        const std::string f = disk.path() + "/fill-" + std::to_string(k);
        int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) {
            ASSERT_EQ(errno, ENOSPC) << f << ": " << std::strerror(errno);
            break;
        }
        ::close(fd);
        fillers.push_back(f);
    }
    ASSERT_GE(fillers.size(), 2u);
    for (int k = 0; k < 2; k++) {
        fs::remove(fillers.back());
        fillers.pop_back();
    }
    const int code = zt_test::wait_exit_code(log, 300);
    const std::string out = read_text(log);
    EXPECT_NE(code, 0) << out;
    EXPECT_TRUE(contains(out, run + "/ckpt/latest")) << "the error names latest\n" << out;
    ASSERT_TRUE(fs::exists(run + "/ckpt/step-00000004/manifest.json"))
        << "the step directory was renamed in before latest\n"
        << out;
    EXPECT_EQ(read_text(run + "/ckpt/latest"), "step-00000002\n")
        << "latest still names the save before";
    expect_whole_lines(run + "/metrics.jsonl");

    // Space again: --resume auto takes the newest complete step, not latest's.
    for (const std::string& f : fillers) fs::remove(f);
    auto resumed = zt_test::run_command(train_cmd(run, steps, "--save-every 2 --resume auto"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_TRUE(contains(resumed.output,
                         "names 'step-00000002', but the newest complete "
                         "checkpoint is " +
                             run + "/ckpt/step-00000004"))
        << resumed.output;
    EXPECT_EQ(last_start_step(run), 4);
    EXPECT_EQ(read_text(run + "/ckpt/latest"), "step-00000008\n");
    expect_whole_lines(run + "/metrics.jsonl");
    expect_same_steps(read_run(run), read_run(ref), steps);
}

// metrics.jsonl is on a 12 KiB tmpfs (RUN_DIR/metrics.jsonl a link there)
// and the rest of the run directory on the big disk, so what fills up is
// metrics.jsonl: the line that does not fit is cut back, the run stops naming
// the file, and the file holds only whole lines. With space again, --resume
// auto continues from the last checkpoint and the run ends with the
// uninterrupted run's losses.
TEST(DiskFull, AMetricsLineThatDoesNotFitLeavesWholeLinesAndTheRunResumes) {
    TempDir dir;
    SmallDisk disk(dir.path(), "size=12k");
    REQUIRE_SMALL_DISK(disk);
    const int steps = 60;
    const std::string ref = dir / "ref", run = dir / "run";
    auto base = zt_test::run_command(train_cmd(ref, steps, "--save-every 3"));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    fs::create_directories(run);
    fs::create_symlink(disk.path() + "/metrics.jsonl", run + "/metrics.jsonl");
    auto full = zt_test::run_command(train_cmd(run, steps, "--save-every 3"));
    EXPECT_NE(full.exit_code, 0) << full.output;
    EXPECT_TRUE(contains(full.output, "writing metrics file '" + run + "/metrics.jsonl' failed"))
        << full.output;
    EXPECT_TRUE(contains(full.output, "No space left on device")) << full.output;
    const size_t lines = expect_whole_lines(run + "/metrics.jsonl");
    const RunLog partial = read_run(run);
    ASSERT_GE(partial.steps.size(), 3u) << "the disk filled before the first checkpoint";
    EXPECT_LT(partial.steps.size(), size_t(steps)) << "the disk never filled";
    std::printf("the 12 KiB disk filled at step %zu, after %zu whole metrics lines\n",
                partial.steps.size() + 1, lines);

    ASSERT_EQ(disk.remount("size=4m"), "");
    auto resumed = zt_test::run_command(train_cmd(run, steps, "--save-every 3 --resume auto"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_EQ(last_start_step(run), int64_t(partial.steps.size()) / 3 * 3);
    expect_whole_lines(run + "/metrics.jsonl");
    expect_same_steps(read_run(run), read_run(ref), steps);
}

// Two ranks on an 8 MiB tmpfs with a checkpoint of about 3 MiB every 2
// steps: the third save runs out of space while the ranks write their rank
// files. Every rank exits (none waits out the collective timeout: no
// watchdog message, no hang records), non-zero, naming the file and the
// error; the half-written step is neither in place nor left behind, `latest`
// names the save before, and with space again --resume auto continues with
// the uninterrupted losses.
TEST(DiskFull, ARankFileThatDoesNotFitStopsEveryRankAndTheRunResumes) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    SmallDisk disk(dir.path(), "size=8m");
    REQUIRE_SMALL_DISK(disk);
    const int steps = 8;
    const std::string ref = dir / "ref", run = disk.path() + "/run";
    const std::string two = "--save-every 2 --nproc 2 --comm-timeout-s 60";
    auto base = zt_test::run_command(train_cmd(ref, steps, two));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    const auto t0 = std::chrono::steady_clock::now();
    auto full = zt_test::run_command(train_cmd(run, steps, two));
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(full.exit_code, 0) << full.output;
    EXPECT_TRUE(contains(full.output, "No space left on device")) << full.output;
    EXPECT_TRUE(contains(full.output, "rank-0000")) << "the error names the rank file\n"
                                                    << full.output;
    // No rank waited out the collective timeout: the watchdog said nothing
    // and left no hang records.
    EXPECT_FALSE(contains(full.output, "timed out")) << full.output;
    EXPECT_FALSE(contains(full.output, "watchdog:")) << full.output;
    EXPECT_FALSE(fs::exists(run + "/hang")) << full.output;
    std::printf("the 8 MiB disk filled in a rank file; every rank had exited %.1f s after start\n",
                took);
    EXPECT_FALSE(fs::exists(run + "/ckpt/step-00000006")) << full.output;
    EXPECT_FALSE(fs::exists(run + "/ckpt/step-00000006.tmp"))
        << "the failed save gives its space back\n"
        << full.output;
    EXPECT_EQ(read_text(run + "/ckpt/latest"), "step-00000004\n") << full.output;
    expect_whole_lines(run + "/metrics.jsonl");

    ASSERT_EQ(disk.remount("size=64m"), "");
    auto resumed = zt_test::run_command(train_cmd(run, steps, two + " --resume auto"));
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_EQ(last_start_step(run), 4);
    EXPECT_EQ(read_text(run + "/ckpt/latest"), "step-00000008\n");
    EXPECT_FALSE(fs::exists(run + "/ckpt/step-00000006.tmp")) << "the stale save is cleaned up";
    expect_same_steps(read_run(run), read_run(ref), steps);
}

}  // namespace
