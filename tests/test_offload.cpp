// The NVMe tier of the optimizer state (--offload-optimizer nvme) and of
// stage 3's parameter shards (--offload-params nvme): the file
// streams every tile through its window, training with it is the same
// training as in memory (same losses, same checkpoint files, at every stage
// and world size, across resumes), the state really leaves RAM, and a disk too
// small is refused before training, naming the path.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "model/config.h"
#include "model/layout.h"
#include "test_jobs.h"
#include "test_util.h"
#include "zero/layout.h"
#include "zero/offload.h"

namespace {

using zt_test::read_run;
using zt_test::RunLog;
using zt_test::TempDir;

TEST(Offload, FileRoundTripsRangesAndStreamsEveryTile) {
    TempDir dir;
    const int64_t n = 10000, tile = 1024;  // 10 tiles, the last partial
    zt::MemoryLedger ledger;
    zt::OffloadFile f(dir / "state.bin", 3, n, tile, 4, &ledger);
    EXPECT_EQ(f.file_bytes(), 10 * 3 * tile * 4);
    EXPECT_EQ(f.file_bytes(), zt::offload_file_bytes(3, n, tile));
    EXPECT_EQ(ledger.current(zt::MemCategory::optimizer),
              zt::offload_window_ledger_bytes(3, n, tile, 4));
    std::vector<float> a(n), b(n), c(n);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int64_t i = 0; i < n; i++)
        a[size_t(i)] = u(rng), b[size_t(i)] = u(rng), c[size_t(i)] = u(rng);
    // Unaligned pieces across tile boundaries; array 1 written as zeros in one of them.
    const float* all[3] = {a.data(), b.data(), c.data()};
    f.write(0, 1500, all);
    const float* tail[3] = {a.data() + 1500, b.data() + 1500, c.data() + 1500};
    f.write(1500, n - 1500, tail);
    const float* zeros_b[3] = {a.data() + 3000, nullptr, c.data() + 3000};
    f.write(3000, 77, zeros_b);
    for (int64_t i = 3000; i < 3077; i++) b[size_t(i)] = 0;
    std::vector<float> ra(n), rb(n), rc(n);
    float* out[3] = {ra.data(), rb.data(), rc.data()};
    f.read(0, n, out);
    EXPECT_EQ(ra, a);
    EXPECT_EQ(rb, b);
    EXPECT_EQ(rc, c);
    // stream: every tile once, in order, with the data in place; its writes persist.
    int64_t next = 0;
    f.stream([&](int64_t begin, int64_t count, float* const* arr) {
        EXPECT_EQ(begin, next);
        EXPECT_EQ(count, std::min(tile, n - begin));
        for (int64_t i = 0; i < count; i++) {
            ASSERT_EQ(arr[0][i], a[size_t(begin + i)]);
            ASSERT_EQ(arr[2][i], c[size_t(begin + i)]);
            arr[1][i] = float(begin + i);
        }
        next = begin + count;
    });
    EXPECT_EQ(next, n);
    float* only_b[3] = {nullptr, rb.data(), nullptr};
    f.read(0, n, only_b);
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(rb[size_t(i)], float(i));
    const std::string path = f.path();
    EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(Offload, FileIsRemovedAndBadDirectoryRefused) {
    TempDir dir;
    std::string path;
    {
        zt::OffloadFile f(dir / "s.bin", 2, 5000, 1024, 2, nullptr);
        path = f.path();
        EXPECT_TRUE(std::filesystem::exists(path));
    }
    EXPECT_FALSE(std::filesystem::exists(path));
    zt_test::expect_error(
        [&] { zt::OffloadFile f(dir / "missing/s.bin", 2, 5000, 1024, 2, nullptr); },
        {"--offload-dir", "missing/s.bin"});
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

RunLog train(const std::string& out, int nproc, int stage, const std::string& extra, int steps = 4,
             const std::string& model = "test-tiny", int micro_batch = 2) {
    std::string cmd = zt_test::zerotrain_binary() + " train --data synthetic --model " + model +
                      " --seq-len 32 --micro-batch " + std::to_string(micro_batch) + " --steps " +
                      std::to_string(steps) +
                      " --lr 3e-3 --eval-every 0 --eval-tokens 512 --sample-tokens 0 --threads 1"
                      " --zero-stage " +
                      std::to_string(stage) +
                      (nproc > 1 ? " --nproc " + std::to_string(nproc) : "") + " --out " + out +
                      " " + extra;
    auto res = zt_test::run_command(cmd);
    EXPECT_EQ(res.exit_code, 0) << cmd << "\n" << res.output;
    return read_run(out);
}

void expect_same_losses(const RunLog& a, const RunLog& b, const std::string& what) {
    ASSERT_EQ(a.steps.size(), b.steps.size()) << what;
    for (const auto& [s, line] : a.steps)
        EXPECT_EQ(line["loss"].get<double>(), b.steps.at(s)["loss"].get<double>())
            << what << " step " << s;
}

// Every rank file of the step-4 checkpoints of runs a and b is there and equal.
void expect_same_step4_files(const std::string& a, const std::string& b, int world,
                             const std::string& what) {
    for (int r = 0; r < world; r++) {
        const std::string f = "/ckpt/step-00000004/rank-0000" + std::to_string(r) + "-of-0000" +
                              std::to_string(world) + ".safetensors";
        const std::string x = read_file(a + f), y = read_file(b + f);
        EXPECT_FALSE(x.empty()) << what << f;
        EXPECT_TRUE(x == y) << what << ": " << f << " differs";
    }
}

// Same losses and byte-identical checkpoint files with the state in memory
// and on disk, stages 0-3 at world 1 and 2 (fp32), and bf16 at stage 3; the
// ledger's optimizer bytes are the window, and both sizes are estimate's.
TEST(Offload, TrainingMatchesTheInMemoryRunAndItsCheckpoints) {
    for (int world : {1, 2}) {
        if (world > 1 && !ZT_HAVE_MPI) continue;
        for (int stage = 0; stage <= 3; stage++) {
            for (const char* precision : {"fp32", "bf16"}) {
                if (std::string(precision) == "bf16" && stage != 3) continue;
                const std::string what = std::string(precision) + " world " +
                                         std::to_string(world) + " stage " + std::to_string(stage);
                TempDir dir;
                const std::string common = std::string("--save-every 4 --precision ") + precision;
                RunLog mem = train(dir / "mem", world, stage, common);
                RunLog off =
                    train(dir / "off", world, stage,
                          common + " --offload-optimizer nvme --offload-dir " + (dir / "nvme"));
                expect_same_losses(mem, off, what);
                expect_same_step4_files(dir / "mem", dir / "off", world, what);
                // The files are gone with the run.
                EXPECT_TRUE(std::filesystem::is_empty(dir / "nvme")) << what;
                auto est = zt_test::run_command(
                    zt_test::zerotrain_binary() +
                    " estimate --model test-tiny --json --world-size " + std::to_string(world) +
                    " --zero-stage " + std::to_string(stage) +
                    " --micro-batch 2 --seq-len 32 --offload-optimizer nvme --precision " +
                    precision);
                ASSERT_EQ(est.exit_code, 0) << est.output;
                auto e = nlohmann::json::parse(est.output);
                ASSERT_TRUE(off.summary.contains("offload")) << what;
                EXPECT_EQ(off.summary["offload"]["file_bytes"].get<int64_t>(),
                          e["offload_bytes"]["nvme_optimizer"].get<int64_t>())
                    << what;
                for (const auto& rk : off.summary["ranks"])
                    EXPECT_EQ(rk["mem_bytes"]["optimizer"].get<int64_t>(),
                              e["mem_bytes"]["optimizer"].get<int64_t>())
                        << what;
            }
        }
    }
}

// Stage 3 with the parameter shards in a file (--offload-params nvme), alone
// and with the optimizer state there too: the same losses and checkpoint
// files as in memory, fp32 and bf16, world 1 and 2. The ledger's params are
// the one-unit buffer and the file is the shards, both as estimate says, and
// a checkpoint taken so resumes at another world size in memory.
TEST(Offload, ParameterShardsInAFileTrainAsInMemory) {
    for (int world : {1, 2}) {
        if (world > 1 && !ZT_HAVE_MPI) continue;
        for (const char* precision : {"fp32", "bf16"}) {
            for (const char* optimizer : {"none", "nvme"}) {
                const std::string what = std::string(precision) + " world " +
                                         std::to_string(world) + " optimizer " + optimizer;
                TempDir dir;
                const std::string common = std::string("--save-every 4 --precision ") + precision +
                                           " --offload-optimizer " + optimizer;
                const std::string nvme_dir = " --offload-dir " + (dir / "nvme");
                RunLog mem = train(dir / "mem", world, 3,
                                   common + (std::string(optimizer) == "nvme" ? nvme_dir : ""));
                RunLog off =
                    train(dir / "off", world, 3, common + " --offload-params nvme" + nvme_dir);
                expect_same_losses(mem, off, what);
                expect_same_step4_files(dir / "mem", dir / "off", world, what);
                EXPECT_TRUE(std::filesystem::is_empty(dir / "nvme")) << what;
                auto est = zt_test::run_command(
                    zt_test::zerotrain_binary() +
                    " estimate --model test-tiny --json --zero-stage 3 --micro-batch 2 --seq-len 32"
                    " --offload-params nvme --world-size " +
                    std::to_string(world) + " --precision " + precision + " --offload-optimizer " +
                    optimizer);
                ASSERT_EQ(est.exit_code, 0) << est.output;
                auto e = nlohmann::json::parse(est.output);
                const zt::ZeroLayout zl =
                    zt::make_zero_layout(zt::model_layout(zt::model_preset("test-tiny")), world);
                int64_t largest = 0;
                for (const auto& u : zl.units) largest = std::max(largest, u.shard);
                const int64_t esize = std::string(precision) == "bf16" ? 2 : 4;
                EXPECT_EQ(e["offload_bytes"]["nvme_params"].get<int64_t>(), esize * zl.shard_total)
                    << what;
                EXPECT_EQ(e["mem_bytes"]["params"].get<int64_t>(), esize * largest) << what;
                for (const auto& rk : off.summary["ranks"])
                    EXPECT_EQ(rk["mem_bytes"]["params"].get<int64_t>(),
                              e["mem_bytes"]["params"].get<int64_t>())
                        << what;
            }
        }
    }
    if (!ZT_HAVE_MPI) return;
    TempDir dir;
    const std::string nvme = " --offload-params nvme --offload-dir " + (dir / "nvme");
    train(dir / "a_mem", 2, 3, "--save-every 3", 3);
    train(dir / "a_off", 2, 3, "--save-every 3" + nvme, 3);
    const std::string ck = "/ckpt/step-00000003";
    RunLog ref = train(dir / "ref", 1, 3, "--resume " + (dir / "a_mem") + ck, 6, "test-tiny", 4);
    RunLog off =
        train(dir / "b", 1, 3, "--resume " + (dir / "a_off") + ck + nvme, 6, "test-tiny", 4);
    RunLog back = train(dir / "c", 1, 3, "--resume " + (dir / "a_off") + ck, 6, "test-tiny", 4);
    ASSERT_EQ(ref.steps.size(), 3u);
    expect_same_losses(ref, off, "parameter-offloaded checkpoint resumed offloaded");
    expect_same_losses(ref, back, "parameter-offloaded checkpoint resumed in memory");
}

// A checkpoint taken with the state on disk resumes without offload at
// another world size, and the other way round, exactly as a checkpoint
// taken and resumed in memory.
TEST(Offload, ResumeCrossesOffloadAndWorldSize) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    TempDir dir;
    const std::string nvme = " --offload-optimizer nvme --offload-dir " + (dir / "nvme");
    train(dir / "a_mem", 2, 2, "--save-every 3", 3);
    train(dir / "a_off", 2, 2, "--save-every 3" + nvme, 3);
    const std::string ck = "/ckpt/step-00000003";
    // One rank continues the two ranks' global batch of 2 x 2 sequences.
    RunLog ref = train(dir / "ref", 1, 1, "--resume " + (dir / "a_mem") + ck, 6, "test-tiny", 4);
    RunLog off_to_mem =
        train(dir / "b", 1, 1, "--resume " + (dir / "a_off") + ck, 6, "test-tiny", 4);
    RunLog mem_to_off =
        train(dir / "c", 1, 1, "--resume " + (dir / "a_mem") + ck + nvme, 6, "test-tiny", 4);
    ASSERT_EQ(ref.steps.size(), 3u);
    expect_same_losses(ref, off_to_mem, "offloaded checkpoint resumed in memory");
    expect_same_losses(ref, mem_to_off, "in-memory checkpoint resumed offloaded");
}

// fp32 `tiny` (46.8M parameters): the moments (8 bytes a parameter, 375 MB)
// live in the file, so the process's peak resident set is lower than the
// in-memory run's by nearly that much, and the ledger holds only the window.
TEST(Offload, OptimizerStateLeavesRam) {
    TempDir dir;
    RunLog mem = train(dir / "mem", 1, 0, "", 2, "tiny");
    RunLog off = train(dir / "off", 1, 0,
                       "--offload-optimizer nvme --offload-dir " + (dir / "nvme"), 2, "tiny");
    expect_same_losses(mem, off, "tiny");
    const int64_t psi = zt::count_params(zt::model_preset("tiny"));
    const int64_t moments = 8 * psi;
    const auto &rm = mem.summary["ranks"][0], &ro = off.summary["ranks"][0];
    EXPECT_GE(rm["mem_bytes"]["optimizer"].get<int64_t>(), moments);
    EXPECT_LT(ro["mem_bytes"]["optimizer"].get<int64_t>(), moments / 10);
    const int64_t rss_mem = rm["peak_rss_bytes"], rss_off = ro["peak_rss_bytes"];
    std::printf("peak RSS: in memory %.0f MB, offloaded %.0f MB; moments %.0f MB\n", rss_mem / 1e6,
                rss_off / 1e6, moments / 1e6);
    EXPECT_GE(rss_mem - rss_off, int64_t(0.8 * double(moments)));
}

// A file system too small for the state (a 1 MiB tmpfs; needs root) is
// refused before the first step, naming the path, and leaves the run's last
// checkpoint as it was: it resumes afterwards.
TEST(Offload, DiskTooSmallIsRefusedBeforeTraining) {
    TempDir dir;
    // test-tiny's optimizer state (its fp32 moments, 2 MB) does not fit 1 MiB.
    zt_test::SmallDisk disk(dir.path(), "size=1m");
    REQUIRE_SMALL_DISK(disk);
    const std::string small = disk.path();
    train(dir / "run", 1, 0, "--save-every 2", 2);
    const std::string ck = dir / "run/ckpt/step-00000002";
    const std::string before = read_file(ck + "/rank-00000-of-00001.safetensors");
    auto res = zt_test::run_command(
        zt_test::zerotrain_binary() +
        " train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2"
        " --steps 4 --eval-every 0 --sample-tokens 0 --threads 1 --out " +
        (dir / "run") + " --resume " + ck + " --offload-optimizer nvme --offload-dir " + small);
    EXPECT_NE(res.exit_code, 0) << res.output;
    EXPECT_NE(res.output.find("cannot reserve"), std::string::npos) << res.output;
    EXPECT_NE(res.output.find(small), std::string::npos) << res.output;
    EXPECT_EQ(read_run(dir / "run").steps.count(3), 0u) << "no step ran";
    EXPECT_TRUE(std::filesystem::is_empty(small));
    EXPECT_EQ(read_file(ck + "/rank-00000-of-00001.safetensors"), before);
    RunLog resumed = train(dir / "run", 1, 0, "--resume " + ck, 4);
    EXPECT_EQ(resumed.steps.count(4), 1u);
}

}  // namespace
