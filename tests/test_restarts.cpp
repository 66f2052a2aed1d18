// `zerotrain train --nproc N --max-restarts R`: a rank killed with SIGKILL at
// step k of a 4-rank ZeRO stage-3 run is restarted from the last checkpoint
// and the run ends with the losses of an uninterrupted one; a fault in every
// attempt ends after R restarts; a divergence, a user's error and a SIGTERM
// stop are not restarted; and --max-restarts is refused where no launcher of
// ours can restart the job.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_jobs.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using zt_test::BackgroundRun;
using zt_test::now_s;
using zt_test::rank_pid;
using zt_test::read_run;
using zt_test::read_text;
using zt_test::RunLog;
using zt_test::TempDir;

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// The lines of metrics.jsonl of one kind, in file order.
std::vector<json> lines_of_kind(const std::string& run, const std::string& kind) {
    std::vector<json> out;
    std::ifstream f(run + "/metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
        json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("kind", "") == kind) out.push_back(j);
    }
    return out;
}

int64_t step_lines(const std::string& run) {
    return int64_t(lines_of_kind(run, "step").size());
}

// Generous: a loaded 2-core machine runs these few tiny steps in seconds.
constexpr double kRunBoundS = 300;

// Tiny 4-rank runs: test-tiny, 2 sequences of 32 tokens a rank, synthetic data.
// `training` replaces the data and learning-rate flags.
std::string train_cmd(const std::string& out, int nproc, int steps, const std::string& extra,
                      const std::string& training = "--data synthetic --lr 3e-3 --warmup 2") {
    return zt_test::zerotrain_binary() + " train " + training +
           " --model test-tiny --seq-len 32 --micro-batch 2 --zero-stage 3 --eval-every 0 "
           "--eval-tokens 1024 --sample-tokens 0 --threads 1 --steps " +
           std::to_string(steps) + " --nproc " + std::to_string(nproc) + " --out " + out + " " +
           extra;
}

// Waits until the run has at least `steps` step lines in metrics.jsonl (and
// with `saved` a checkpoint) and rank `rank` is running, or the run exited; returns that rank's pid
// (0: none).
pid_t wait_for_rank_at(BackgroundRun& job, const std::string& run, int64_t steps, int rank,
                       const std::set<pid_t>& not_these = {}, bool saved = false) {
    const double t0 = now_s();
    while (now_s() - t0 < kRunBoundS && !job.exited()) {
        if (step_lines(run) >= steps && (!saved || fs::exists(run + "/ckpt/latest"))) {
            pid_t pid = rank_pid(job.pid(), rank);
            if (pid > 0 && !not_these.count(pid)) return pid;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return 0;
}

// Every step of `got` has the loss and gradient norm of the same step of
// `want`, exactly: the same world size and stage resumed from a checkpoint
// repeat the same computation on the same bytes (as the resume tests check).
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

// Kills rank `victim` once `kill_after` steps are done; the run restarts by
// itself and finishes. Returns the launcher's exit status and the output.
struct KilledRun {
    int exit_code = -1;
    std::string output;
};

KilledRun run_and_kill(const std::string& cmd, const std::string& run, int64_t kill_after,
                       int victim) {
    KilledRun r;
    BackgroundRun job(cmd, run + ".log");
    pid_t pid = wait_for_rank_at(job, run, kill_after, victim);
    EXPECT_GT(pid, 0) << "rank " << victim << " was not found running after step " << kill_after
                      << "\n"
                      << job.output();
    if (pid <= 0) return r;
    const int64_t at = step_lines(run);
    const double t0 = now_s();
    ::kill(pid, SIGKILL);
    r.exit_code = job.wait_exit(kRunBoundS);
    std::printf(
        "SIGKILL to rank %d of the run at step %lld: the restarted run finished %.2f s "
        "later (exit status %d)\n",
        victim, (long long)at, now_s() - t0, r.exit_code);
    r.output = job.output();
    return r;
}

TEST(Restarts, AKilledRankIsRestartedAndTheLossesMatchAnUninterruptedRun) {
    REQUIRE_MPI();
    TempDir dir;
    const int steps = 14;
    const std::string ref = dir / "ref", run = dir / "run";
    auto base = zt_test::run_command(train_cmd(ref, 4, steps, "--save-every 3"));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    KilledRun r = run_and_kill(train_cmd(run, 4, steps, "--save-every 3 --max-restarts 1"), run,
                               /*kill_after=*/5, /*victim=*/2);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: restart 1 of 1 after step ")) << r.output;
    EXPECT_TRUE(contains(r.output, "rank 2 died: SIGKILL")) << r.output;

    const std::vector<json> restarts = lines_of_kind(run, "restart");
    ASSERT_EQ(restarts.size(), 1u) << read_text(run + "/metrics.jsonl");
    const json& line = restarts[0];
    EXPECT_EQ(line["restart"], 1);
    EXPECT_GE(line["after_step"].get<int64_t>(), 5);
    EXPECT_EQ(line["exit_status"], 128 + SIGKILL);
    EXPECT_EQ(line["reason"], "rank 2 died: SIGKILL");
    ASSERT_TRUE(line["resumed_from"].is_string()) << line.dump();
    EXPECT_TRUE(contains(line["resumed_from"].get<std::string>(), run + "/ckpt/step-"))
        << line.dump();
    // The second attempt resumed from that checkpoint, in place.
    const std::vector<json> runs = lines_of_kind(run, "run");
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[1]["resumed_from"], line["resumed_from"]);
    EXPECT_GT(runs[1]["start_step"].get<int64_t>(), 0);
    expect_same_steps(read_run(run), read_run(ref), steps);
}

// A rank stopped with SIGSTOP hangs the others until the collective timeout
// (3 s) ends the job; the restart resumes and the run finishes.
TEST(Restarts, AHangIsRestarted) {
    REQUIRE_MPI();
    TempDir dir;
    const int steps = 12;
    const std::string run = dir / "run";
    BackgroundRun job(
        train_cmd(run, 4, steps, "--save-every 3 --comm-timeout-s 3 --max-restarts 1"),
        run + ".log");
    pid_t pid = wait_for_rank_at(job, run, 4, 2, {}, /*saved=*/true);
    ASSERT_GT(pid, 0) << job.output();
    const double t0 = now_s();
    ::kill(pid, SIGSTOP);
    const int code = job.wait_exit(kRunBoundS);
    std::printf("SIGSTOP to rank 2: the restarted run finished %.2f s later (exit status %d)\n",
                now_s() - t0, code);
    const std::string out = job.output();
    ASSERT_EQ(code, 0) << out;
    const std::vector<json> restarts = lines_of_kind(run, "restart");
    ASSERT_EQ(restarts.size(), 1u) << read_text(run + "/metrics.jsonl");
    const std::string reason = restarts[0]["reason"];
    EXPECT_EQ(reason.rfind("hang: rank 2 is the one the others waited for", 0), 0u) << reason;
    EXPECT_TRUE(restarts[0]["resumed_from"].is_string()) << restarts[0].dump();
    EXPECT_EQ(read_run(run).steps.size(), size_t(steps));
}

// No checkpoint before the kill (only the final one is saved): the restart
// starts again at step 0, the first attempt's lines kept aside.
TEST(Restarts, WithoutACheckpointTheRestartStartsAgainFromStepZero) {
    REQUIRE_MPI();
    TempDir dir;
    const int steps = 8;
    const std::string ref = dir / "ref", run = dir / "run";
    auto base = zt_test::run_command(train_cmd(ref, 2, steps, ""));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    KilledRun r = run_and_kill(train_cmd(run, 2, steps, "--max-restarts 1"), run,
                               /*kill_after=*/3, /*victim=*/1);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "starting again at step 0")) << r.output;
    const std::vector<json> restarts = lines_of_kind(run, "restart");
    ASSERT_EQ(restarts.size(), 1u) << read_text(run + "/metrics.jsonl");
    EXPECT_TRUE(restarts[0]["resumed_from"].is_null()) << restarts[0].dump();
    EXPECT_EQ(restarts[0]["reason"], "rank 1 died: SIGKILL");
    const std::string kept = run + "/metrics-attempt-1.jsonl";
    ASSERT_TRUE(fs::exists(kept));
    const std::string first_attempt = read_text(kept);
    EXPECT_TRUE(contains(first_attempt, "\"kind\":\"restart\"")) << first_attempt;
    EXPECT_TRUE(contains(first_attempt, "\"kind\":\"step\",\"step\":3,")) << first_attempt;
    expect_same_steps(read_run(run), read_run(ref), steps);
}

// A rank is killed in every attempt: after --max-restarts 2 the run ends,
// non-zero, with two restart lines.
TEST(Restarts, AFaultInEveryAttemptEndsAfterMaxRestarts) {
    REQUIRE_MPI();
    TempDir dir;
    const std::string run = dir / "run";
    BackgroundRun job(train_cmd(run, 4, 1000000, "--save-every 2 --keep-last 2 --max-restarts 2"),
                      run + ".log");
    std::set<pid_t> killed;
    int64_t steps = 0;
    for (int attempt = 1; attempt <= 3; attempt++) {
        // Each attempt gets one step further than the last before its rank 2
        // dies, the first one to its first checkpoint: every restart resumes.
        pid_t pid = wait_for_rank_at(job, run, steps + 1, 2, killed, /*saved=*/true);
        ASSERT_GT(pid, 0) << "attempt " << attempt << ": rank 2 was not found\n" << job.output();
        steps = step_lines(run);
        ::kill(pid, SIGKILL);
        killed.insert(pid);
    }
    const int code = job.wait_exit(kRunBoundS);
    const std::string out = job.output();
    EXPECT_EQ(code, 128 + SIGKILL) << out;
    EXPECT_TRUE(contains(out, "zerotrain: --max-restarts 2: every restart is used")) << out;
    const std::vector<json> restarts = lines_of_kind(run, "restart");
    ASSERT_EQ(restarts.size(), 2u) << read_text(run + "/metrics.jsonl");
    EXPECT_EQ(restarts[0]["restart"], 1);
    EXPECT_EQ(restarts[1]["restart"], 2);
    EXPECT_EQ(lines_of_kind(run, "run").size(), 3u) << "three attempts";
}

// Errors of the run's own are not restarted: bad data (refused before the
// launch) and a divergence (the non-finite gradient stop at step 2).
TEST(Restarts, AUserErrorOrADivergenceIsNotRestarted) {
    REQUIRE_MPI();
    TempDir dir;
    auto bad = zt_test::run_command(
        train_cmd(dir / "bad", 2, 4, "--max-restarts 3", "--data " + dir / "no-such-data"));
    EXPECT_NE(bad.exit_code, 0) << bad.output;
    EXPECT_TRUE(contains(bad.output, "no-such-data")) << bad.output;
    // Refused before the launch: no attempt is started, so none is restarted.
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_FALSE(contains(bad.output, "rank 0")) << bad.output;
    EXPECT_FALSE(contains(bad.output, "zerotrain: restart ")) << bad.output;

    const std::string div = dir / "div";
    auto r = zt_test::run_command(train_cmd(div, 2, 10, "--max-restarts 3 --grad-clip 0",
                                            "--data synthetic --lr 1e30 --warmup 0"));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "training diverged")) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: --max-restarts 3: not restarted: training diverged"))
        << r.output;
    EXPECT_FALSE(contains(r.output, "zerotrain: restart ")) << r.output;
    EXPECT_GE(step_lines(div), 1) << "the first step finished: the divergence rule decided";
    EXPECT_TRUE(lines_of_kind(div, "restart").empty());
}

// SIGTERM to the launcher stops the run cleanly (128 + SIGTERM): not restarted.
TEST(Restarts, AStopBySigtermIsNotRestarted) {
    REQUIRE_MPI();
    TempDir dir;
    const std::string run = dir / "run";
    BackgroundRun job(train_cmd(run, 2, 1000000, "--max-restarts 2"), run + ".log");
    ASSERT_GT(wait_for_rank_at(job, run, 2, 1), 0) << job.output();
    ::kill(job.pid(), SIGTERM);
    const int code = job.wait_exit(kRunBoundS);
    const std::string out = job.output();
    EXPECT_EQ(code, 128 + SIGTERM) << out;
    EXPECT_TRUE(contains(out, "not restarted: it was stopped by SIGTERM")) << out;
    EXPECT_TRUE(lines_of_kind(run, "restart").empty());
}

// Only zerotrain's own --nproc launcher restarts: refused without it, from
// the flag and from a --config file alike, and under an outside launcher.
TEST(Restarts, MaxRestartsNeedsNproc) {
    TempDir dir;
    const std::string bin =
        zt_test::zerotrain_binary() + " train --data synthetic --steps 1 --sample-tokens 0 --out ";
    auto r = zt_test::run_command(bin + dir / "a" + " --max-restarts 2");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.output, "--max-restarts 2 needs --nproc N")) << r.output;
    EXPECT_FALSE(fs::exists(dir / "a" + "/metrics.jsonl"));

    std::ofstream(dir / "cfg.json") << R"({"max_restarts": 3})";
    r = zt_test::run_command(bin + dir / "b" + " --config " + dir / "cfg.json");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.output, "--max-restarts 3 needs --nproc N")) << r.output;

    r = zt_test::run_command(bin + dir / "c" + " --max-restarts -1 --nproc 2");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.output, "--max-restarts")) << r.output;
    EXPECT_TRUE(contains(r.output, "expected 0 or more")) << r.output;

    r = zt_test::run_command(
        "env -u ZT_LAUNCHER_PID OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=1 " + bin + dir / "d" +
        " --max-restarts 1");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.output, "--max-restarts 1 under an outside launcher (mpirun)"))
        << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain supervise")) << r.output;
}

// Under an outside mpirun, `zerotrain supervise` restarts: rank 1 killed at
// step 5 of a 4-rank stage-3 run, the job runs again with --resume auto, and
// the run ends with the losses of an uninterrupted one.
TEST(Restarts, SuperviseRestartsAnOutsideLaunchersJob) {
    REQUIRE_MPI();
    TempDir dir;
    const int steps = 12;
    const std::string ref = dir / "ref", run = dir / "run";
    auto base = zt_test::run_command(train_cmd(ref, 4, steps, "--save-every 3"));
    ASSERT_EQ(base.exit_code, 0) << base.output;

    std::string train = train_cmd(run, 4, steps, "--save-every 3");
    const std::string nproc = " --nproc 4";
    train.erase(train.find(nproc), nproc.size());
    KilledRun r = run_and_kill(zt_test::zerotrain_binary() +
                                   " supervise --max-restarts 1 -- mpirun --allow-run-as-root "
                                   "--oversubscribe --bind-to none -np 4 " +
                                   train,
                               run, /*kill_after=*/5, /*victim=*/1);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: restart 1 of 1 after step ")) << r.output;
    const std::vector<json> restarts = lines_of_kind(run, "restart");
    ASSERT_EQ(restarts.size(), 1u) << read_text(run + "/metrics.jsonl");
    EXPECT_EQ(restarts[0]["reason"], "rank 1 died: SIGKILL");
    EXPECT_EQ(lines_of_kind(run, "run").size(), 2u);
    expect_same_steps(read_run(run), read_run(ref), steps);

    // Refused: no command, a command without --out.
    auto none = zt_test::run_command(zt_test::zerotrain_binary() + " supervise");
    EXPECT_NE(none.exit_code, 0);
    auto no_out = zt_test::run_command(zt_test::zerotrain_binary() +
                                       " supervise -- mpirun -np 2 zerotrain train");
    EXPECT_NE(no_out.exit_code, 0);
    EXPECT_TRUE(contains(no_out.output, "names no --out")) << no_out.output;
}

}  // namespace
