// A rank that hangs or dies is named by zerotrain itself.
//
// The flight recorder (comm/flight.h): its ring, and the diagnosis read back
// from hang records crafted so that the rank at fault is known. Then real
// 4-rank runs (`zerotrain train --nproc 4`, --comm mpi and ring): one rank is
// stopped with SIGSTOP, and every process must be gone once the collective
// timeout fires, non-zero, with the diagnosis naming the stopped rank; one
// rank is killed with SIGKILL, and the launcher must name it, its signal, the
// last checkpoint and a resume command that resumes.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "comm/flight.h"
#include "comm/queued.h"
#include "test_jobs.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using zt_test::BackgroundRun;
using zt_test::descendants;
using zt_test::now_s;
using zt_test::rank_pid;
using zt_test::read_text;
using zt_test::running;
using zt_test::TempDir;

// ---- the ring and the diagnosis, from crafted records --------------------------------

zt::CommSignature signature(uint64_t seq, zt::CommOp op, int64_t count) {
    zt::CommSignature s;
    s.seq = seq;
    s.op = uint8_t(op);
    s.count = count;
    s.dtype = uint8_t(zt::DType::f32);
    s.reduce = op == zt::CommOp::all_reduce ? uint8_t(zt::ReduceOp::sum) : 0xff;
    return s;
}

TEST(FlightRecorder, KeepsTheLastCollectivesInOrder) {
    zt::FlightRecorder rec;
    EXPECT_EQ(rec.last_issued(), -1);
    EXPECT_EQ(rec.last_completed(), -1);
    const uint64_t n = zt::kFlightEntries + 10;
    for (uint64_t seq = 0; seq < n; seq++) {
        rec.issue(signature(seq, zt::CommOp::all_reduce, int64_t(seq)), int64_t(seq / 4));
        rec.start(seq);
        if (seq + 1 < n) rec.finish(seq, true);  // the last one stays running
    }
    rec.finish(3, true);  // long gone from the ring: ignored, nothing overwritten
    std::vector<zt::FlightEntry> e = rec.entries();
    ASSERT_EQ(e.size(), zt::kFlightEntries);
    for (size_t i = 0; i < e.size(); i++) {
        EXPECT_EQ(e[i].sig.seq, n - zt::kFlightEntries + i);
        EXPECT_EQ(e[i].sig.count, int64_t(e[i].sig.seq));
        EXPECT_EQ(e[i].step, int64_t(e[i].sig.seq / 4));
        EXPECT_GT(e[i].issued_s, 0);
        EXPECT_GT(e[i].issued_wall, 1e9);  // Unix seconds
        EXPECT_GE(e[i].started_s, e[i].issued_s);
    }
    EXPECT_GT(e.front().completed_s, 0);
    EXPECT_EQ(e.back().completed_s, 0) << "the last collective is still running";
    EXPECT_EQ(rec.last_issued(), int64_t(n - 1));
    EXPECT_EQ(rec.last_completed(), int64_t(n - 2));
}

// Writes rank r's record as a rank that issued collectives 0..last_issued
// (all of step 1) and is running `inflight` (or none: -1).
void write_record(const std::string& run, int rank, int world, int64_t last_issued,
                  int64_t inflight) {
    zt::FlightRecorder rec;
    for (int64_t s = 0; s <= last_issued; s++) {
        rec.issue(signature(uint64_t(s), zt::CommOp::all_reduce, 100 + s), 1);
        rec.start(uint64_t(s));
        if (s != inflight) rec.finish(uint64_t(s), true);
    }
    zt::HangRecordInfo info;
    info.rank = rank;
    info.world = world;
    info.backend = "mpi";
    info.timeout_s = 3;
    info.step = 1;
    info.inflight = inflight >= 0;
    if (inflight >= 0)
        info.inflight_sig = signature(uint64_t(inflight), zt::CommOp::all_reduce, 100 + inflight);
    info.inflight_waited_s = 3.5;
    ASSERT_EQ(zt::write_hang_record(run, info, rec), "");
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

TEST(HangDiagnosis, TheRankWithoutARecordIsTheOneTheOthersWaitedFor) {
    TempDir dir;
    const std::string run = dir / "run";
    for (int r : {0, 1, 3}) write_record(run, r, 4, 7, 7);
    ASSERT_TRUE(zt::claim_hang_marker(run, 1, "all_reduce #7"));
    EXPECT_FALSE(zt::claim_hang_marker(run, 0, "all_reduce #7")) << "one rank times out first";
    EXPECT_EQ(zt::hang_record_ranks(run), (std::vector<int>{0, 1, 3}));
    const std::string d = zt::diagnose_hang(run, 4);
    EXPECT_TRUE(contains(d,
                         "zerotrain: hang: rank 2 is the one the others waited for: ranks 0, "
                         "1 and 3 waited in all_reduce #7 (107 x f32, sum) of step 1, which "
                         "rank 2 did not complete; rank 2 wrote no record in time"))
        << d;
    EXPECT_TRUE(contains(d, "(rank 1 timed out first)")) << d;
    EXPECT_TRUE(contains(d, run + "/hang/rank-K.json")) << d;
    // The launcher's evidence: it saw the rank die, or stopped.
    EXPECT_TRUE(contains(zt::diagnose_hang(run, 4, {{2}, {}}), "; rank 2 died")) << d;
    EXPECT_TRUE(contains(zt::diagnose_hang(run, 4, {{}, {{2, 4.2}}}),
                         "the launcher saw rank 2 stopped (state T) for 4.2 s"));
}

TEST(HangDiagnosis, ARecordWrittenAfterTheOthersGaveUpDoesNotClearItsRank) {
    TempDir dir;
    const std::string run = dir / "run";
    for (int r : {0, 1, 3}) write_record(run, r, 4, 7, 7);
    ASSERT_TRUE(zt::claim_hang_marker(run, 0, "all_reduce #7"));
    zt::seal_hang_marker(run, 0, "all_reduce #7", zt::hang_record_ranks(run));
    write_record(run, 2, 4, 6, 6);  // continued by mpirun's abort, too late
    const std::string d = zt::diagnose_hang(run, 4);
    EXPECT_TRUE(contains(d, "zerotrain: hang: rank 2 is the one the others waited for")) << d;
    EXPECT_TRUE(contains(d, "rank 2, in a record written after the others gave up on it")) << d;
    EXPECT_TRUE(contains(d, "waited 3.5 s in all_reduce #6 (106 x f32, sum) of step 1")) << d;
}

TEST(HangDiagnosis, WithEveryRecordTheLowestIssuedCollectiveIsBehind) {
    TempDir dir;
    const std::string run = dir / "run";
    write_record(run, 0, 3, 9, 9);
    write_record(run, 1, 3, 5, -1);  // computing since #5: never issued #6..#9
    write_record(run, 2, 3, 9, 9);
    const std::string d = zt::diagnose_hang(run, 3);
    EXPECT_TRUE(contains(d,
                         "zerotrain: hang: rank 1 is behind: its last issued collective is "
                         "all_reduce #5 (105 x f32, sum) of step 1 (done), while the others "
                         "issued up to #9; it is in no collective"))
        << d;
    EXPECT_TRUE(contains(d, "ranks 0 and 2 waited 3.5 s in all_reduce #9")) << d;
}

TEST(HangDiagnosis, EveryRankInTheSameCollectiveBlamesNone) {
    TempDir dir;
    const std::string run = dir / "run";
    for (int r = 0; r < 2; r++) write_record(run, r, 2, 4, 4);
    const std::string d = zt::diagnose_hang(run, 2);
    EXPECT_TRUE(contains(d,
                         "no rank is behind: every rank issued up to #4 and all wait in "
                         "all_reduce #4"))
        << d;
    EXPECT_EQ(zt::diagnose_hang(dir / "elsewhere", 2), "") << "no records, no diagnosis";
    zt::clear_hang_records(run);
    EXPECT_FALSE(fs::exists(run + "/hang"));
}

// ---- real runs: a rank stopped, a rank killed -------------------------------------

constexpr double kTimeoutS = 3;  // --comm-timeout-s of the SIGSTOP runs
// The SIGKILL runs': long enough that mpirun, not the watchdog, ends the others.
constexpr double kKillTimeoutS = 30;

int64_t steps_done(const std::string& run) {
    std::ifstream f(run + "/metrics.jsonl");
    int64_t n = 0;
    for (std::string line; std::getline(f, line);)
        if (contains(line, "\"kind\":\"step\"")) n++;
    return n;
}

// timeout_s: --comm-timeout-s.
std::string run_args(const std::string& comm, const std::string& run, double timeout_s,
                     bool nproc = true) {
    return "train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2 --steps 1000000 "
           "--threads 1 --eval-every 0 --save-every 2 --comm " +
           comm + " --comm-timeout-s " + zt::strprintf("%g", timeout_s) + " --out " + run +
           (nproc ? " --nproc 4" : "");
}

// Started by zerotrain's --nproc, or by mpirun itself.
std::string run_command(const std::string& comm, const std::string& run, double timeout_s,
                        bool nproc) {
    std::string zerotrain =
        zt_test::zerotrain_binary() + " " + run_args(comm, run, timeout_s, nproc);
#if ZT_HAVE_MPI
    if (!nproc)
        return std::string(ZT_MPIEXEC) +
               " --allow-run-as-root --oversubscribe --bind-to none -np 4 " + zerotrain;
#endif
    return zerotrain;
}

struct FaultResult {
    int exit_code = -1;
    double exit_s = -1;  // from the signal until every process had exited
    std::string output;
};

// Starts a 4-rank run, sends `sig` to rank 2 once a checkpoint exists and a
// few steps ran, and waits until the launcher, mpirun and every rank exited.
FaultResult run_with_fault(const std::string& comm, const std::string& run, int sig,
                           double timeout_s, bool nproc = true) {
    FaultResult res;
    BackgroundRun job(run_command(comm, run, timeout_s, nproc), run + ".log");
    const double t_start = now_s();
    while ((steps_done(run) < 3 || !fs::exists(run + "/ckpt/step-00000002")) &&
           now_s() - t_start < 120)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pid_t victim = rank_pid(job.pid(), 2);
    EXPECT_GT(victim, 0) << "rank 2's process was not found\n" << job.output();
    if (victim <= 0) return res;
    const std::vector<pid_t> all = descendants(job.pid());
    const double t0 = now_s();
    ::kill(victim, sig);
    res.exit_code = job.wait_exit(120);
    for (;;) {
        bool any = false;
        for (pid_t p : all) any = any || running(p);
        if (!any || now_s() - t0 > 120) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    res.exit_s = now_s() - t0;
    res.output = job.output();
    std::printf(
        "--comm %s%s, %s to rank 2 of 4: every process exited after %.2f s (exit status %d)\n",
        comm.c_str(), nproc ? "" : " under mpirun", sig == SIGSTOP ? "SIGSTOP" : "SIGKILL",
        res.exit_s, res.exit_code);
    return res;
}

// Every process exits because the watchdog fired, not because something else
// ended the job. On a quiet machine that takes the timeout, one watchdog
// tick, the wait for the others' records (0.5 s + two ticks) and mpirun's
// kill: 4.4-5.8 s with a 3 s timeout, printed by run_with_fault. The bound
// asserted is wider, so that a loaded machine cannot fail the test while a
// run that hangs (no bound at all) still does.
constexpr double kHangBoundS = kTimeoutS + 60;

void expect_exit_bounded_by_the_timeout(const FaultResult& r) {
    EXPECT_TRUE(r.exit_s >= 0 && r.exit_s < kHangBoundS)
        << "every process must exit once the " << kTimeoutS << " s timeout fires; took " << r.exit_s
        << " s\n"
        << r.output;
}

// The stopped rank writes no record; the others time out, write theirs and
// end the job, and the launcher names the stopped rank.
void check_stopped_rank_is_named(const std::string& comm) {
    TempDir dir;
    const std::string run = dir / "run";
    FaultResult r = run_with_fault(comm, run, SIGSTOP, kTimeoutS);
    EXPECT_NE(r.exit_code, 0) << r.output;
    expect_exit_bounded_by_the_timeout(r);
    EXPECT_TRUE(contains(r.output, "zerotrain: hang: rank 2 is the one the others waited for"))
        << r.output;
    EXPECT_TRUE(contains(r.output, "the launcher saw rank 2 stopped (state T)")) << r.output;
    for (int k : {0, 1, 3})
        EXPECT_TRUE(fs::exists(run + "/hang/rank-" + std::to_string(k) + ".json"))
            << "rank " << k << " wrote no record\n"
            << r.output;
    json rec = json::parse(read_text(run + "/hang/rank-0.json"));
    EXPECT_EQ(rec["rank"], 0);
    EXPECT_GE(rec["collectives"].size(), 1u);
    EXPECT_TRUE(rec["inflight"].is_object() || rec["reason"] == "peer_timeout") << rec.dump();
    EXPECT_TRUE(contains(r.output, "zerotrain: to resume: ")) << r.output;
}

TEST(RankFaults, StoppedRankIsNamedMpi) {
    REQUIRE_MPI();
    check_stopped_rank_is_named("mpi");
}

TEST(RankFaults, StoppedRankIsNamedRing) {
    REQUIRE_MPI();
    check_stopped_rank_is_named("ring");
}

TEST(RankFaults, StoppedRankIsNamedTcp) {
    check_stopped_rank_is_named("tcp");
}

// Without --nproc no launcher reads the records: the first rank to time out
// prints the diagnosis itself.
TEST(RankFaults, StoppedRankIsNamedUnderMpirun) {
    REQUIRE_MPI();
    TempDir dir;
    const std::string run = dir / "run";
    FaultResult r = run_with_fault("mpi", run, SIGSTOP, kTimeoutS, /*nproc=*/false);
    EXPECT_NE(r.exit_code, 0) << r.output;
    expect_exit_bounded_by_the_timeout(r);
    EXPECT_TRUE(contains(r.output, "zerotrain: hang: rank 2 is the one the others waited for"))
        << r.output;
    size_t first = r.output.find("zerotrain: hang: rank 2 is the one");
    EXPECT_EQ(r.output.find("zerotrain: hang: rank 2 is the one", first + 1), std::string::npos)
        << "one diagnosis, not one per rank\n"
        << r.output;
}

// The killed rank is named with its signal, and the printed command resumes
// from the last complete checkpoint.
void check_killed_rank_is_named(const std::string& comm) {
    TempDir dir;
    const std::string run = dir / "run";
    FaultResult r = run_with_fault(comm, run, SIGKILL, kKillTimeoutS);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: rank 2 (pid ")) << r.output;
    EXPECT_TRUE(contains(r.output, " died: killed by signal 9 (SIGKILL)")) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: the run reached step ")) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: last complete checkpoint: " + run + "/ckpt/step-"))
        << r.output;
    EXPECT_FALSE(fs::exists(run + "/hang")) << "a death is not a hang";
    const std::string expected = zt_test::zerotrain_binary() + " " +
                                 run_args(comm, run, kKillTimeoutS) + " --resume auto --out " + run;
    // run_args' --out moved to the end: the original args without it, then resume's.
    std::string want = expected;
    want.replace(want.find(" --out " + run + " --nproc 4"), (" --out " + run).size(), "");
    size_t at = r.output.find("zerotrain: to resume: ");
    ASSERT_NE(at, std::string::npos) << r.output;
    std::string cmd = r.output.substr(at + 22, r.output.find('\n', at) - at - 22);
    EXPECT_EQ(cmd, want);
    // It resumes: the same command, run for two steps past the checkpoint.
    const std::optional<int64_t> saved = [&]() -> std::optional<int64_t> {
        size_t c = r.output.find("last complete checkpoint: ");
        size_t s = r.output.find("(step ", c);
        if (c == std::string::npos || s == std::string::npos) return std::nullopt;
        return std::atoll(r.output.c_str() + s + 6);
    }();
    ASSERT_TRUE(saved.has_value()) << r.output;
    std::string shorter = cmd;
    shorter.replace(shorter.find("--steps 1000000"), 15, "--steps " + std::to_string(*saved + 2));
    zt_test::CommandResult resumed = zt_test::run_command(shorter);
    EXPECT_EQ(resumed.exit_code, 0) << shorter << "\n" << resumed.output;
    EXPECT_TRUE(contains(resumed.output, "resum")) << resumed.output;
}

TEST(RankFaults, KilledRankIsNamedMpi) {
    REQUIRE_MPI();
    check_killed_rank_is_named("mpi");
}

TEST(RankFaults, KilledRankIsNamedRing) {
    REQUIRE_MPI();
    check_killed_rank_is_named("ring");
}

// tcp: --nproc starts the ranks itself, without mpirun, and names the rank.
TEST(RankFaults, KilledRankIsNamedTcp) {
    check_killed_rank_is_named("tcp");
}

// An error every rank finds alike (here a divergence at step 6, at 4 ranks)
// prints once, from the rank that reported it first, without a source
// location, the other ranks named after it; none of mpirun's banners about
// the abort it caused reach the user.
TEST(RankFaults, AnErrorEveryRankFindsPrintsOnce) {
    REQUIRE_MPI();
    TempDir dir;
    const zt_test::CommandResult r = zt_test::run_command(
        zt_test::zerotrain_binary() +
        " train --nproc 4 --data synthetic --steps 30 --lr 1e4 --grad-clip 0 --eval-every 0 "
        "--sample-tokens 0 --no-save --threads 1 --out " +
        (dir / "run"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    size_t copies = 0;
    for (size_t at = r.output.find("training diverged"); at != std::string::npos;
         at = r.output.find("training diverged", at + 1))
        copies++;
    EXPECT_EQ(copies, 1u) << r.output;
    EXPECT_TRUE(contains(r.output, "zerotrain: error: rank ")) << r.output;
    EXPECT_TRUE(contains(r.output, "reported the same error")) << r.output;
    for (const char* noise : {"engine.cpp", "MPI_ABORT", "help message", "ORTE", "-----"})
        EXPECT_FALSE(contains(r.output, noise)) << noise << " in:\n" << r.output;
}

}  // namespace
