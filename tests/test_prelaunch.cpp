// `train --nproc N` refuses a run that cannot work once, on one process,
// before mpirun starts any rank: one error line without a rank prefix, no
// MPI banner, and no run directory left behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "test_jobs.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using zt_test::TempDir;

int count_of(const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
    return n;
}

// The run is refused with one message holding `expect`, and no rank ran.
void expect_refused_before_launch(const std::string& flags, const std::string& out,
                                  const std::string& expect) {
    const auto r = zt_test::run_command(zt_test::zerotrain_binary() +
                                        " train --model test-tiny --nproc 2 --steps 2 "
                                        "--sample-tokens 0 --threads 1 --out " +
                                        out + " " + flags);
    EXPECT_EQ(r.exit_code, 1) << flags << "\n" << r.output;
    EXPECT_EQ(count_of(r.output, "error"), 1) << flags << "\n" << r.output;
    EXPECT_NE(r.output.find("zerotrain: error: " + expect), std::string::npos) << flags << "\n"
                                                                               << r.output;
    EXPECT_EQ(r.output.find("rank 0"), std::string::npos) << flags << "\n" << r.output;
    EXPECT_EQ(r.output.find("MPI_ABORT"), std::string::npos) << flags << "\n" << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << flags << "\n" << r.output;
}

// A data directory whose validation split holds 2 of 2 x 32 token batches.
std::string small_val_data(const TempDir& dir) {
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 300; i++) f << "line " << i << ": the quick brown fox jumps\n\n";
    }
    const std::string data = dir / "data";
    const auto prep = zt_test::run_command(zt_test::zerotrain_binary() + " prepare --input " +
                                           (dir / "text.txt") + " --out " + data +
                                           " --tokenizer byte --val-fraction 0.015");
    EXPECT_EQ(prep.exit_code, 0) << prep.output;
    return data;
}

TEST(Prelaunch, ValidationTooSmallForTheRanksIsRefusedBeforeStepOne) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    const std::string data = small_val_data(dir);
    const std::string run = dir / "run";
    // Fits at one batch a rank.
    const auto ok = zt_test::run_command(zt_test::zerotrain_binary() +
                                         " train --model test-tiny --nproc 2 --steps 1 --threads 1 "
                                         "--sample-tokens 0 --no-save --seq-len 32 --micro-batch 2 "
                                         "--data " +
                                         data + " --out " + (dir / "fits"));
    ASSERT_EQ(ok.exit_code, 0) << ok.output;
    expect_refused_before_launch("--data " + data + " --seq-len 32 --micro-batch 16", run,
                                 "the validation data");
    EXPECT_FALSE(fs::exists(run)) << run;
}

TEST(Prelaunch, EvalTokensBelowOneBatchARankIsRefused) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    const std::string run = dir / "run";
    expect_refused_before_launch("--data synthetic --seq-len 32 --micro-batch 2 --eval-tokens 16",
                                 run, "--eval-tokens 16 covers fewer than 2 batches");
    EXPECT_FALSE(fs::exists(run));
}

TEST(Prelaunch, AnOutThatHoldsARunIsRefusedOnce) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    const std::string run = dir / "run";
    fs::create_directories(run);
    std::ofstream(run + "/metrics.jsonl") << "{\"kind\":\"run\"}\n";
    expect_refused_before_launch("--data synthetic --seq-len 32 --micro-batch 2", run,
                                 "--out '" + run + "' already holds a run");
}

TEST(Prelaunch, LocalCommWithSeveralRanksIsRefused) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    expect_refused_before_launch("--data synthetic --comm local", dir / "run",
                                 "--comm local runs one process, but --nproc is 2");
}

TEST(Prelaunch, KeepBestWithoutAValidationSplitIsRefused) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 200; i++) f << "line " << i << ": the quick brown fox jumps\n";
    }
    const std::string data = dir / "data";
    const auto prep = zt_test::run_command(zt_test::zerotrain_binary() + " prepare --input " +
                                           (dir / "text.txt") + " --out " + data +
                                           " --tokenizer byte --val-fraction 0");
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    ASSERT_FALSE(fs::exists(data + "/val.bin")) << "the data should have no validation split";
    expect_refused_before_launch("--data " + data + " --seq-len 32 --micro-batch 2 --keep-best",
                                 dir / "run", "--keep-best keeps the checkpoint");
}

// Checkpoints that cannot fit where --out is (a 64 KiB tmpfs; needs root):
// refused before launch, with what they need and what is free.
TEST(Prelaunch, CheckpointsThatCannotFitTheDiskAreRefused) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    zt_test::SmallDisk disk(dir.path(), "size=64k");
    REQUIRE_SMALL_DISK(disk);
    const std::string small = disk.path();
    expect_refused_before_launch(
        "--data synthetic --seq-len 32 --micro-batch 2", small + "/run",
        "--out " + small + "/run: the checkpoints of this run need 2.89 MiB");
    EXPECT_FALSE(fs::exists(small + "/run"));
}

}  // namespace
