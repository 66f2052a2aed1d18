// Checkpoints through the zerotrain binary: bit-identical resume at every
// stage, resharding to other world sizes and stages, a kill in the middle of
// a save, corruption, pruning, clean stops on SIGTERM, and the round trip
// through a Hugging Face export.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "ckpt/checkpoint.h"
#include "core/check.h"
#include "core/sha256.h"
#include "model/config.h"
#include "model/layout.h"
#include "test_jobs.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using zt_test::read_run;
using zt_test::RunLog;
using zt_test::start_and_wait_for;
using zt_test::TempDir;
using zt_test::wait_exit_code;

// Small, fast runs: test-tiny, 2 sequences of 32 tokens a rank, synthetic data.
std::string train_cmd(const std::string& out, int nproc, int stage, int micro_batch, int steps,
                      const std::string& extra = "") {
    return zt_test::zerotrain_binary() +
           " train --data synthetic --model test-tiny --seq-len 32 --micro-batch " +
           std::to_string(micro_batch) + " --steps " + std::to_string(steps) + " --zero-stage " +
           std::to_string(stage) +
           " --lr 3e-3 --warmup 2 --grad-clip 0.5 --eval-every 0 --eval-tokens 1024 --threads 1 "
           "--out " +
           out + (nproc > 1 ? " --nproc " + std::to_string(nproc) : "") + " " + extra;
}

RunLog run_ok(const std::string& cmd, const std::string& out) {
    auto res = zt_test::run_command(cmd);
    EXPECT_EQ(res.exit_code, 0) << cmd << "\n" << res.output;
    return read_run(out);
}

// Every step line of `got` equals the same step of `want` exactly.
void expect_same_steps(const RunLog& got, const RunLog& want) {
    for (const auto& [step, line] : got.steps) {
        ASSERT_TRUE(want.steps.count(step)) << "step " << step;
        EXPECT_EQ(line["loss"].get<double>(), want.steps.at(step)["loss"].get<double>())
            << "step " << step;
        EXPECT_EQ(line["grad_norm"].get<double>(), want.steps.at(step)["grad_norm"].get<double>())
            << "step " << step;
    }
}

// Every step's loss in `got` is within fp32 rounding (1e-5 relative, as
// for the ZeRO parity test) of the same step in `want`; returns the worst
// relative difference (NaN if any is NaN).
double expect_close_losses(const RunLog& got, const RunLog& want) {
    double worst = 0;
    for (const auto& [step, line] : got.steps) {
        EXPECT_TRUE(want.steps.count(step)) << "step " << step;
        if (!want.steps.count(step)) continue;
        double w = want.steps.at(step)["loss"].get<double>();
        double rel = std::abs(line["loss"].get<double>() - w) / std::abs(w);
        EXPECT_TRUE(rel <= 1e-5) << "step " << step << ": relative loss difference " << rel;
        worst = std::isnan(rel) || std::isnan(worst) ? NAN : std::max(worst, rel);
    }
    return worst;
}

// Resumed at the same world size and stage, every later step is the same
// computation on the same bytes: loss and grad-norm equal exactly.
TEST(Checkpoint, ResumeIsBitIdenticalAtEveryStage) {
    REQUIRE_MPI();
    for (int stage = 0; stage <= 3; stage++) {
        SCOPED_TRACE("stage " + std::to_string(stage));
        TempDir dir;
        std::string full = dir / "full", resumed = dir / "resumed";
        RunLog a = run_ok(train_cmd(full, 2, stage, 2, 20, "--save-every 10"), full);
        RunLog b =
            run_ok(train_cmd(resumed, 2, stage, 2, 20, "--resume " + full + "/ckpt/step-00000010"),
                   resumed);
        ASSERT_EQ(b.steps.size(), 10u);
        EXPECT_EQ(b.steps.begin()->first, 11);
        expect_same_steps(b, a);
    }
}

// Keeps the lines of metrics.jsonl up to step `last` (what a run that died
// after that step had written), and points ckpt/latest at that step.
void rewind_run(const std::string& run, int64_t last) {
    std::ifstream in(run + "/metrics.jsonl");
    std::string line, kept;
    while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line);
        if (j["kind"] == "summary" || (j.contains("step") && j["step"].get<int64_t>() > last))
            continue;
        kept += line + "\n";
    }
    std::ofstream(run + "/metrics.jsonl") << kept;
    for (const auto& e : fs::directory_iterator(run + "/ckpt"))
        if (e.path().filename() > fs::path(zt::checkpoint_dir_name(last))) fs::remove_all(e.path());
    std::ofstream(run + "/ckpt/latest") << zt::checkpoint_dir_name(last) << "\n";
}

// Gradient accumulation and an in-place resume: --resume auto with no other
// setting continues the run directory with the checkpoint's settings, and
// the step lines carry on the original numbering.
TEST(Checkpoint, ResumeAutoContinuesTheRunDirectory) {
    TempDir dir;
    std::string ref = dir / "ref", run = dir / "run";
    RunLog a = run_ok(train_cmd(ref, 1, 0, 2, 12, "--grad-accum 2 --save-every 6"), ref);
    fs::copy(ref, run, fs::copy_options::recursive);
    rewind_run(run, 6);
    std::string cmd = zt_test::zerotrain_binary() + " train --resume auto --threads 1 --out " + run;
    RunLog b = run_ok(cmd, run);
    ASSERT_EQ(b.steps.size(), 12u);
    EXPECT_EQ(b.summary["start_step"], 6);
    expect_same_steps(b, a);
}

// A stale ckpt/latest.tmp (here a directory, as a crash or an odd tool can
// leave) used to make writing `latest` fail after the step directory was in
// place: the run died and --resume auto then started over. Saves clear stale
// *.tmp entries, and resume finds the newest complete step directory with
// `latest` only a hint: missing, or naming an older step.
TEST(Checkpoint, ResumeFindsTheNewestCompleteCheckpointWithoutLatest) {
    TempDir dir;
    std::string run = dir / "run";
    fs::create_directories(run + "/ckpt/latest.tmp/junk");
    fs::create_directories(run + "/ckpt/step-00000003.tmp");
    RunLog first = run_ok(train_cmd(run, 1, 0, 2, 10, "--save-every 5"), run);
    EXPECT_EQ(first.steps.size(), 10u);
    EXPECT_FALSE(fs::exists(run + "/ckpt/latest.tmp"));
    EXPECT_FALSE(fs::exists(run + "/ckpt/step-00000003.tmp"));
    // The window the fault opened: step 10 complete, `latest` gone; then
    // `latest` naming the older step 5.
    for (const char* latest : {"", "step-00000005\n"}) {
        std::string copy = dir / (std::string("copy") + (latest[0] ? "-old" : "-none"));
        fs::copy(run, copy, fs::copy_options::recursive);
        rewind_run(copy, 10);
        if (latest[0])
            std::ofstream(copy + "/ckpt/latest") << latest;
        else
            fs::remove(copy + "/ckpt/latest");
        std::string cmd = zt_test::zerotrain_binary() +
                          " train --resume auto --steps 12 --threads 1 --out " + copy;
        RunLog b = run_ok(cmd, copy);
        EXPECT_EQ(b.summary["start_step"], 10) << "latest '" << latest << "'";
        // A step directory missing a rank file is not complete: step 5 is used.
        if (!latest[0]) {
            std::string third = dir / "copy-broken";
            fs::copy(run, third, fs::copy_options::recursive);
            rewind_run(third, 10);
            fs::remove(third + "/ckpt/step-00000010/rank-00000-of-00001.safetensors");
            RunLog c = run_ok(zt_test::zerotrain_binary() +
                                  " train --resume auto --steps 12 --threads 1 --out " + third,
                              third);
            EXPECT_EQ(c.summary["start_step"], 5);
        }
    }
}

// Every line of metrics.jsonl parses; returns how many there are.
size_t count_whole_lines(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(text.empty() || text.back() == '\n') << path << " ends mid-line";
    size_t n = 0, start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        EXPECT_NO_THROW((void)nlohmann::json::parse(text.substr(start, end - start)))
            << path << " line " << n + 1 << ": " << text.substr(start, end - start);
        n++;
        start = end + 1;
    }
    return n;
}

// A run that died mid-line left half a record at the end of metrics.jsonl;
// the resumed run drops it (and says so) instead of gluing its first line on.
TEST(Checkpoint, ResumeDropsATornLastMetricsLine) {
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 1, 0, 2, 6, "--save-every 3"), run);
    rewind_run(run, 3);
    std::ofstream(run + "/metrics.jsonl", std::ios::app) << R"({"kind":"step","step":4,"lo)";
    auto res = zt_test::run_command(zt_test::zerotrain_binary() +
                                    " train --resume auto --threads 1 --out " + run);
    ASSERT_EQ(res.exit_code, 0) << res.output;
    EXPECT_NE(res.output.find("torn line"), std::string::npos) << res.output;
    count_whole_lines(run + "/metrics.jsonl");
    RunLog b = read_run(run);
    EXPECT_EQ(b.steps.size(), 6u);
}

// The disk fills while the run writes its metrics (a 64 KiB tmpfs; needs
// root; --no-save, since a checkpoint would not fit and the run would be
// refused before it starts): the run stops with an error naming the file,
// which holds only whole lines.
TEST(Checkpoint, FullDiskLeavesOnlyWholeMetricsLines) {
    TempDir dir;
    zt_test::SmallDisk disk(dir.path(), "size=64k");
    REQUIRE_SMALL_DISK(disk);
    const std::string small = disk.path();
    const std::string run = small + "/run";
    auto res = zt_test::run_command(train_cmd(run, 1, 0, 2, 2000, "--sample-tokens 0 --no-save"));
    EXPECT_NE(res.exit_code, 0) << res.output;
    EXPECT_NE(res.output.find("metrics file"), std::string::npos) << res.output;
    EXPECT_GT(count_whole_lines(run + "/metrics.jsonl"), 10u);
}

// --resume auto on a run directory without a checkpoint starts from step 0.
TEST(Checkpoint, ResumeAutoWithoutCheckpointStartsFresh) {
    TempDir dir;
    std::string run = dir / "run";
    RunLog b = run_ok(train_cmd(run, 1, 0, 2, 3, "--resume auto"), run);
    EXPECT_EQ(b.steps.size(), 3u);
    EXPECT_EQ(b.steps.begin()->first, 1);
}

// Saved at (world 4, stage 3) and (world 2, stage 2), resumed at (1, 0),
// (2, 1), (3, 3) and (4, 2) with the same global batch of 12 sequences: the
// optimizer state is re-cut through the layout and the data position carries
// over, so the losses follow the uninterrupted run up to fp32 rounding of
// sums taken over other rank splits (1e-5 relative, as for the ZeRO parity test).
TEST(Checkpoint, ReshardsToAnyWorldSizeAndStage) {
    REQUIRE_MPI();
    const int G = 12, steps = 8, save_at = 4;
    struct Shape {
        int world, stage;
    };
    for (Shape saved : {Shape{4, 3}, Shape{2, 2}}) {
        TempDir dir;
        std::string full = dir / "full";
        RunLog a = run_ok(train_cmd(full, saved.world, saved.stage, G / saved.world, steps,
                                    "--save-every " + std::to_string(save_at)),
                          full);
        ASSERT_EQ(a.steps.size(), size_t(steps));
        for (Shape target : {Shape{1, 0}, Shape{2, 1}, Shape{3, 3}, Shape{4, 2}}) {
            SCOPED_TRACE(testing::Message()
                         << "saved at world " << saved.world << " stage " << saved.stage
                         << ", resumed at world " << target.world << " stage " << target.stage);
            std::string out = dir / zt::strprintf("r%d", target.world);
            RunLog b =
                run_ok(train_cmd(out, target.world, target.stage, G / target.world, steps,
                                 "--resume " + full + "/ckpt/" + zt::checkpoint_dir_name(save_at)),
                       out);
            ASSERT_EQ(b.steps.size(), size_t(steps - save_at));
            const double worst = expect_close_losses(b, a);
            std::printf(
                "saved (world %d, stage %d) -> resumed (world %d, stage %d): worst "
                "relative loss difference %.2e\n",
                saved.world, saved.stage, target.world, target.stage, worst);
        }
    }
}

// The global batch decides the data order: a resume that changes it is refused.
TEST(Checkpoint, RefusesAResumeThatWouldChangeTheDataOrder) {
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 1, 0, 2, 4, "--save-every 2"), run);
    auto res = zt_test::run_command(train_cmd(dir / "other", 1, 0, 3, 4, "--resume " + run));
    EXPECT_NE(res.exit_code, 0);
    EXPECT_NE(res.output.find("global batch"), std::string::npos) << res.output;
    res = zt_test::run_command(
        train_cmd(dir / "other2", 1, 0, 2, 4, "--resume " + run + " --seq-len 16"));
    EXPECT_NE(res.exit_code, 0);
    EXPECT_NE(res.output.find("--seq-len"), std::string::npos) << res.output;
}

// --keep-last K leaves the newest K step directories, and latest names the newest.
TEST(Checkpoint, KeepLastPrunesOlderCheckpoints) {
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 1, 1, 2, 10, "--save-every 2 --keep-last 2"), run);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(run + "/ckpt"))
        names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-00000008", "step-00000010"}));
    std::ifstream latest(run + "/ckpt/latest");
    std::string name;
    std::getline(latest, name);
    EXPECT_EQ(name, "step-00000010");
}

// Flipping a byte in a rank file, truncating one or deleting one: loading
// names the file and exits non-zero, before anything is trained or written.
TEST(Checkpoint, CorruptionIsAClearErrorNamingTheFile) {
    REQUIRE_MPI();
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 2, 3, 2, 2, "--save-every 2"), run);
    const std::string step = run + "/ckpt/step-00000002";
    struct Case {
        const char* what;
        std::function<void(const std::string&)> damage;
        const char* expect;
    };
    std::vector<Case> cases = {
        {"flipped byte",
         [](const std::string& f) {
             std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
             io.seekg(-5, std::ios::end);
             char c;
             io.get(c);
             io.seekp(-5, std::ios::end);
             io.put(char(c ^ 0x40));
         },
         "corrupt"},
        {"truncated", [](const std::string& f) { fs::resize_file(f, fs::file_size(f) - 100); },
         "bytes"},
        {"deleted", [](const std::string& f) { fs::remove(f); }, "missing"},
    };
    for (size_t i = 0; i < cases.size(); i++) {
        const Case& c = cases[i];
        SCOPED_TRACE(c.what);
        std::string copy = dir / ("copy" + std::to_string(i));
        fs::copy(step, copy, fs::copy_options::recursive);
        c.damage(copy + "/rank-00001-of-00002.safetensors");
        for (const std::string& cmd : {zt_test::zerotrain_binary() + " export --checkpoint " +
                                           copy + " --out " + copy + "-hf",
                                       train_cmd(copy + "-run", 1, 0, 4, 4, "--resume " + copy)}) {
            auto res = zt_test::run_command(cmd);
            EXPECT_NE(res.exit_code, 0) << cmd;
            EXPECT_NE(res.output.find("rank-00001-of-00002.safetensors"), std::string::npos)
                << res.output;
            EXPECT_NE(res.output.find(c.expect), std::string::npos) << res.output;
        }
        EXPECT_FALSE(fs::exists(copy + "-hf"));
        EXPECT_FALSE(fs::exists(copy + "-run/metrics.jsonl"));
    }
}

// The manifest carries its own SHA-256 (manifest.sha256): any edit of it is
// refused. A manifest whose hash is made to match is still validated field
// by field against the layout it describes and itself, each refusal naming
// the field. A version-1 manifest (written before the hash) still loads.
TEST(Checkpoint, ManifestIsHashedAndValidatedFieldByField) {
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 1, 0, 2, 2, "--save-every 2"), run);
    const std::string step = run + "/ckpt/step-00000002";
    ASSERT_TRUE(fs::exists(step + "/manifest.sha256"));
    using Edit = std::function<void(nlohmann::json&)>;
    struct Case {
        const char* what;
        Edit edit;
        bool rehash;  // write a matching manifest.sha256 after the edit
        const char* expect;
    };
    std::vector<Case> cases = {
        {"norm_eps changed", [](nlohmann::json& m) { m["model_config"]["norm_eps"] = 1e-3; }, false,
         "manifest.json was changed"},
        {"zero_stage 65536", [](nlohmann::json& m) { m["zero_stage"] = 65536; }, true,
         "'zero_stage' is 65536"},
        {"data.seq_len 0", [](nlohmann::json& m) { m["data"]["seq_len"] = 0; }, true,
         "'data.seq_len' is 0"},
        {"garbage layout.units",
         [](nlohmann::json& m) {
             m["layout"]["units"] = {1, 2, 3};
         },
         true, "layout.units"},
        {"a unit's shard", [](nlohmann::json& m) { m["layout"]["units"][1]["shard"] = 7; }, true,
         "layout.units[1]."},
        {"tokens_seen", [](nlohmann::json& m) { m["tokens_seen"] = 5; }, true, "'tokens_seen' 5"},
        {"stage differs from train_config",
         [](nlohmann::json& m) { m["train_config"]["zero_stage"] = 2; }, true,
         "'train_config.zero_stage' 2"},
        {"hash deleted", [](nlohmann::json&) {}, false, "manifest.sha256"},
    };
    auto rewrite = [](const std::string& d, const Edit& edit, bool rehash) {
        nlohmann::json m = nlohmann::json::parse(std::ifstream(d + "/manifest.json"));
        edit(m);
        const std::string text = m.dump(2) + "\n";
        std::ofstream(d + "/manifest.json") << text;
        if (rehash)
            std::ofstream(d + "/manifest.sha256")
                << zt::sha256_hex(text.data(), text.size()) << "  manifest.json\n";
    };
    for (size_t i = 0; i < cases.size(); i++) {
        const Case& c = cases[i];
        SCOPED_TRACE(c.what);
        std::string copy = dir / ("copy" + std::to_string(i));
        fs::copy(step, copy, fs::copy_options::recursive);
        rewrite(copy, c.edit, c.rehash);
        if (std::string(c.what) == "hash deleted") fs::remove(copy + "/manifest.sha256");
        for (const std::string& cmd : {zt_test::zerotrain_binary() + " export --checkpoint " +
                                           copy + " --out " + copy + "-hf",
                                       train_cmd(copy + "-run", 1, 0, 2, 4, "--resume " + copy)}) {
            auto res = zt_test::run_command(cmd);
            EXPECT_NE(res.exit_code, 0) << cmd;
            EXPECT_NE(res.output.find(c.expect), std::string::npos) << res.output;
        }
        EXPECT_FALSE(fs::exists(copy + "-hf"));
    }
    // Version 1: no hash to check; the rank files still are.
    std::string v1 = dir / "v1";
    fs::copy(step, v1, fs::copy_options::recursive);
    rewrite(
        v1, [](nlohmann::json& m) { m["version"] = 1; }, false);
    fs::remove(v1 + "/manifest.sha256");
    auto res = zt_test::run_command(zt_test::zerotrain_binary() + " export --checkpoint " + v1 +
                                    " --out " + v1 + "-hf");
    EXPECT_EQ(res.exit_code, 0) << res.output;
    EXPECT_NE(res.output.find("version-1 manifest"), std::string::npos) << res.output;
}

// A NaN in one weight tensor (written into a checkpoint whose hashes are
// then made to match): the resumed run stops at its first step naming that
// tensor; with --on-nonfinite skip it skips the steps (no update, marked in
// the step lines) and stops after --max-nonfinite-skips in a row.
TEST(Checkpoint, NonFiniteWeightsAreNamedAndSkippedStepsCounted) {
    TempDir dir;
    std::string run = dir / "run";
    run_ok(train_cmd(run, 1, 0, 2, 2, "--save-every 2"), run);
    const std::string step = dir / "spoiled";
    fs::copy(run + "/ckpt/step-00000002", step, fs::copy_options::recursive);
    const zt::ModelLayout layout = zt::model_layout(zt::model_preset("test-tiny"));
    const zt::UnitSpec& unit = layout.units[2];  // block.1
    const zt::TensorSpec& victim = unit.tensors[3];
    const std::string file = step + "/rank-00000-of-00001.safetensors";
    {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        uint64_t n = 0;
        f.read(reinterpret_cast<char*>(&n), 8);
        std::string header(size_t(n), '\0');
        f.read(header.data(), std::streamsize(n));
        const auto h = nlohmann::json::parse(header);
        const int64_t begin = h.at(unit.name + ".params").at("data_offsets")[0].get<int64_t>();
        const float nan = NAN;
        f.seekp(std::streamoff(8 + n + uint64_t(begin) + uint64_t(victim.offset + 5) * 4));
        f.write(reinterpret_cast<const char*>(&nan), 4);
    }
    nlohmann::json m = nlohmann::json::parse(std::ifstream(step + "/manifest.json"));
    m["files"][0]["sha256"] = zt::sha256_file_hex(file);
    const std::string text = m.dump(2) + "\n";
    std::ofstream(step + "/manifest.json") << text;
    std::ofstream(step + "/manifest.sha256")
        << zt::sha256_hex(text.data(), text.size()) << "  manifest.json\n";

    auto stop = zt_test::run_command(train_cmd(dir / "stop", 1, 0, 2, 4, "--resume " + step));
    EXPECT_NE(stop.exit_code, 0) << stop.output;
    EXPECT_NE(stop.output.find("gradient norm is nan at step 3"), std::string::npos) << stop.output;
    EXPECT_NE(stop.output.find("the weights of unit " + unit.name + ", tensor " + victim.name +
                               " hold a non-finite value"),
              std::string::npos)
        << stop.output;

    const std::string skip_dir = dir / "skip";
    auto skip = zt_test::run_command(train_cmd(
        skip_dir, 1, 0, 2, 8, "--resume " + step + " --on-nonfinite skip --max-nonfinite-skips 3"));
    EXPECT_NE(skip.exit_code, 0) << skip.output;
    EXPECT_NE(skip.output.find("3 steps in a row (to step 5)"), std::string::npos) << skip.output;
    RunLog r = read_run(skip_dir);
    for (int s = 3; s <= 5; s++) {
        ASSERT_TRUE(r.steps.count(s)) << "step " << s;
        EXPECT_TRUE(r.steps.at(s).value("skipped", false)) << "step " << s;
        EXPECT_NE(r.steps.at(s).value("nonfinite", "").find(victim.name), std::string::npos);
    }
    EXPECT_EQ(r.steps.count(6), 0u);
}

// SIGKILL to every process of the job while the second checkpoint is being
// written (the test hook ZT_CKPT_TEST_DELAY=STEP:MS holds the ranks between their
// files and the rename): the first checkpoint still loads, and resuming from
// it reproduces the uninterrupted run exactly.
TEST(Checkpoint, KillDuringSaveLeavesThePreviousCheckpoint) {
    REQUIRE_MPI();
    TempDir dir;
    std::string ref = dir / "ref", run = dir / "run";
    RunLog a = run_ok(train_cmd(ref, 2, 2, 2, 8), ref);
    std::string tmp_file = run + "/ckpt/step-00000008.tmp/rank-00001-of-00002.safetensors";
    ASSERT_TRUE(start_and_wait_for(
        "ZT_CKPT_TEST_DELAY=8:60000 " + train_cmd(run, 2, 2, 2, 8, "--save-every 4"), dir / "log",
        [&] { return fs::exists(tmp_file); }, 300))
        << "the save of step 8 never started";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let both ranks finish writing
    // Every process whose command line names this run: the launcher, mpirun and the ranks.
    zt_test::run_command("pkill -9 -f -- '--out " + run + "'");
    wait_exit_code(dir / "log", 60);
    EXPECT_TRUE(fs::exists(run + "/ckpt/step-00000008.tmp"));
    EXPECT_FALSE(fs::exists(run + "/ckpt/step-00000008"));
    zt::Checkpoint ck = zt::Checkpoint::open(run);
    EXPECT_EQ(ck.step(), 4);
    RunLog b = run_ok(train_cmd(dir / "resumed", 1, 0, 4, 8, "--resume " + run), dir / "resumed");
    ASSERT_EQ(b.steps.size(), 4u);
    expect_close_losses(b, a);
}

// SIGTERM: the step in progress finishes, a checkpoint is saved, the exit
// status is 128 + 15, and --resume auto finishes the run as if uninterrupted.
// With --nproc the signal goes to the launching process only, which passes it
// to the ranks through mpirun.
TEST(Checkpoint, SigtermStopsCleanlyWithACheckpoint) {
    for (int nproc : {1, 2}) {
        if (nproc > 1 && !ZT_HAVE_MPI) continue;
        SCOPED_TRACE("nproc " + std::to_string(nproc));
        TempDir dir;
        std::string ref = dir / "ref", run = dir / "run";
        const int steps = 1000;
        RunLog a = run_ok(train_cmd(ref, nproc, 1, 2, steps), ref);
        ASSERT_TRUE(start_and_wait_for(
            train_cmd(run, nproc, 1, 2, steps), dir / "log",
            [&] { return read_run(run).steps.size() >= 1; }, 120));
        std::string launcher = "--out " + run + (nproc > 1 ? " --nproc 2" : "");
        zt_test::run_command("pkill -TERM -f -- '" + launcher + "'");
        EXPECT_EQ(wait_exit_code(dir / "log", 60), 128 + SIGTERM);
        RunLog stopped = read_run(run);
        ASSERT_EQ(stopped.summary["stopped_by"], "SIGTERM");
        int64_t at = stopped.summary["steps"].get<int64_t>();
        ASSERT_LT(at, steps) << "the run finished before the signal arrived";
        EXPECT_EQ(zt::Checkpoint::open(run).step(), at);
        RunLog b = run_ok(zt_test::zerotrain_binary() + " train --resume auto --out " + run +
                              (nproc > 1 ? " --nproc 2" : ""),
                          run);
        EXPECT_EQ(b.steps.size(), size_t(steps));
        expect_same_steps(b, a);
    }
}

}  // namespace

namespace {

// Export, then evaluate the export, then fine-tune from it: every route sees
// the same weights bit for bit, so the validation losses are equal exactly.
TEST(Checkpoint, HuggingFaceRoundTripKeepsTheEvalLossExactly) {
    TempDir dir;
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 400; i++)
            f << "line " << i << ": the quick brown fox jumps over the lazy dog "
              << (i * 7919) % 1000 << "\n\n";
    }
    const std::string z = zt_test::zerotrain_binary(), data = dir / "data";
    auto prep =
        zt_test::run_command(z + " prepare --input " + (dir / "text.txt") + " --out " + data +
                             " --tokenizer byte --doc-separator '' --val-fraction 0.1");
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    const std::string eval_shape = " --seq-len 32 --micro-batch 2 --eval-tokens 1024";
    std::string run = dir / "run", hf = dir / "hf";
    run_ok(z + " train --data " + data + eval_shape +
               " --steps 6 --save-every 6 --eval-every 0 --threads 1 --out " + run,
           run);
    auto ex = zt_test::run_command(z + " export --checkpoint " + run + " --out " + hf);
    ASSERT_EQ(ex.exit_code, 0) << ex.output;
    auto eval_loss = [&](const std::string& source) {
        auto r = zt_test::run_command(z + " eval " + source + " --data " + data + eval_shape +
                                      " --json");
        EXPECT_EQ(r.exit_code, 0) << r.output;
        return nlohmann::json::parse(r.output.substr(r.output.find('{')))["loss"].get<double>();
    };
    double from_ckpt = eval_loss("--checkpoint " + run);
    EXPECT_EQ(eval_loss("--hf " + hf), from_ckpt);
    std::string tuned = dir / "tuned";
    RunLog t = run_ok(z + " train --init-from " + hf + " --data " + data + eval_shape +
                          " --steps 1 --eval-every 0 --out " + tuned,
                      tuned);
    ASSERT_FALSE(t.evals.empty());
    EXPECT_EQ(t.evals.front()["step"], 0);
    EXPECT_EQ(t.evals.front()["loss"].get<double>(), from_ckpt);
}

// The JSON line among a command's output (stderr may carry other lines).
nlohmann::json json_line(const std::string& output) {
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line);
    ADD_FAILURE() << "no JSON line in: " << output;
    return nlohmann::json::object();
}

// DIR/data: 200 short lines of text, byte-tokenized, 10% of documents for validation.
void prepare_small_text(const TempDir& dir, const std::string& data) {
    {
        std::ofstream f(dir / "text.txt");
        for (int i = 0; i < 200; i++) f << "line " << i << ": a few words of text to learn\n\n";
    }
    auto prep = zt_test::run_command(zt_test::zerotrain_binary() + " prepare --input " +
                                     (dir / "text.txt") + " --out " + data +
                                     " --tokenizer byte --doc-separator '' --val-fraction 0.1");
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
}

// `eval --checkpoint RUN` alone takes the run's data, sequence length and
// micro-batch from its recorded training config, says so, and equals the eval
// with them given; a Hugging Face folder records none, and a recorded data
// directory that is gone is named with the flag to pass.
TEST(Checkpoint, EvalTakesDataAndShapeFromTheCheckpoint) {
    TempDir dir;
    const std::string z = zt_test::zerotrain_binary(), data = dir / "data";
    ASSERT_NO_FATAL_FAILURE(prepare_small_text(dir, data));
    std::string run = dir / "run", hf = dir / "hf";
    run_ok(z + " train --model test-tiny --data " + data +
               " --seq-len 32 --micro-batch 3 --steps 2 --eval-every 0 --sample-tokens 0"
               " --threads 1 --out " +
               run,
           run);

    auto implicit = zt_test::run_command(z + " eval --checkpoint " + run + " --json");
    ASSERT_EQ(implicit.exit_code, 0) << implicit.output;
    for (const std::string& f :
         {std::string("from the checkpoint's training config"), "--data " + data,
          std::string("--seq-len 32"), std::string("--micro-batch 3")})
        EXPECT_NE(implicit.output.find(f), std::string::npos) << f << " in: " << implicit.output;
    auto explicit_ = zt_test::run_command(z + " eval --checkpoint " + run + " --data " + data +
                                          " --seq-len 32 --micro-batch 3 --json");
    ASSERT_EQ(explicit_.exit_code, 0) << explicit_.output;
    EXPECT_EQ(explicit_.output.find("from the checkpoint"), std::string::npos) << explicit_.output;
    const nlohmann::json a = json_line(implicit.output), b = json_line(explicit_.output);
    EXPECT_EQ(a.value("seq_len", 0), 32);
    EXPECT_EQ(a.value("micro_batch", 0), 3);
    EXPECT_EQ(a.value("data", ""), data);
    EXPECT_EQ(a.value("loss", -1.0), b.value("loss", -2.0));
    EXPECT_EQ(a.value("tokens", -1), b.value("tokens", -2));

    auto ex = zt_test::run_command(z + " export --checkpoint " + run + " --out " + hf);
    ASSERT_EQ(ex.exit_code, 0) << ex.output;
    auto no_data = zt_test::run_command(z + " eval --hf " + hf);
    EXPECT_NE(no_data.exit_code, 0) << no_data.output;
    EXPECT_NE(no_data.output.find("--data"), std::string::npos) << no_data.output;
    EXPECT_NE(no_data.output.find(hf), std::string::npos) << no_data.output;

    fs::rename(data, dir / "moved");
    auto gone = zt_test::run_command(z + " eval --checkpoint " + run);
    EXPECT_NE(gone.exit_code, 0) << gone.output;
    for (const std::string& f : {data, std::string("no longer exists"), std::string("--data DIR")})
        EXPECT_NE(gone.output.find(f), std::string::npos) << f << " in: " << gone.output;
    auto given = zt_test::run_command(z + " eval --checkpoint " + run + " --data " +
                                      (dir / "moved") + " --json");
    ASSERT_EQ(given.exit_code, 0) << given.output;
    EXPECT_EQ(json_line(given.output).value("loss", -1.0), b.value("loss", -2.0));
}

// Weights that hold NaN evaluate to a non-finite loss: `eval` refuses it
// (non-zero exit, the reason named) rather than printing `loss nan`.
TEST(Checkpoint, EvalOfNonFiniteWeightsIsAnError) {
    TempDir dir;
    const std::string z = zt_test::zerotrain_binary(), data = dir / "data";
    ASSERT_NO_FATAL_FAILURE(prepare_small_text(dir, data));
    const std::string shape = " --data " + data + " --seq-len 32 --micro-batch 2 --eval-tokens 512";
    std::string run = dir / "run", hf = dir / "hf";
    run_ok(z + " train" + shape +
               " --steps 2 --save-every 2 --eval-every 0 --sample-tokens 0"
               " --threads 1 --out " +
               run,
           run);
    auto ex = zt_test::run_command(z + " export --checkpoint " + run + " --out " + hf);
    ASSERT_EQ(ex.exit_code, 0) << ex.output;
    auto ok = zt_test::run_command(z + " eval --hf " + hf + shape);
    ASSERT_EQ(ok.exit_code, 0) << ok.output;
    // 0xFF bytes are NaN in f32: spoil the last 64 KiB of tensor data.
    const std::string st = hf + "/model.safetensors";
    const auto size = std::filesystem::file_size(st);
    ASSERT_GT(size, 65536u);
    {
        std::fstream f(st, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(std::streamoff(size - 65536));
        std::string nan(65536, char(0xFF));
        f.write(nan.data(), std::streamsize(nan.size()));
    }
    auto bad = zt_test::run_command(z + " eval --hf " + hf + shape);
    EXPECT_NE(bad.exit_code, 0) << bad.output;
    EXPECT_NE(bad.output.find("non-finite"), std::string::npos) << bad.output;
}

}  // namespace
