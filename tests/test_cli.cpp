// The zerotrain binary end to end: a short run writes the metrics DESIGN.md
// defines, and bad input gets a clear message and a non-zero exit, never a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/shard.h"
#include "test_util.h"

namespace {

using zt_test::CommandResult;
using zt_test::TempDir;

CommandResult zerotrain(const std::string& args) {
    return zt_test::run_command(zt_test::zerotrain_binary() + " " + args);
}

// Exit status 1 (our error path, not a signal) and every expected fragment in the message.
void expect_refused(const CommandResult& r, std::initializer_list<const char*> fragments) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("zerotrain: error:"), std::string::npos) << r.output;
    for (const char* f : fragments)
        EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
}

TEST(Cli, ShortRunWritesMetrics) {
    TempDir dir;
    std::string out = dir / "run";
    auto r = zerotrain(
        "train --data synthetic --steps 40 --eval-every 20 --eval-tokens 4096 --out " + out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream f(out + "/metrics.jsonl");
    std::string line;
    std::vector<nlohmann::json> lines;
    while (std::getline(f, line)) lines.push_back(nlohmann::json::parse(line));
    ASSERT_GE(lines.size(), 43u);
    EXPECT_EQ(lines.front()["kind"], "run");
    EXPECT_EQ(lines.front()["world_size"], 1);
    EXPECT_EQ(lines.front()["zero_stage"], 0);
    EXPECT_EQ(lines.front()["config"]["micro_batch"], 16);
    EXPECT_GT(lines.front()["n_params"].get<int64_t>(), 0);
    int steps = 0, evals = 0;
    double first = 0, last = 0;
    for (const auto& j : lines) {
        if (j["kind"] == "step") {
            for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens", "step_s",
                                  "tokens_per_s", "time_s", "comm_bytes", "mem_bytes", "mfu"})
                EXPECT_TRUE(j.contains(k)) << "step line lacks " << k;
            for (const char* k :
                 {"data", "forward", "backward", "comm", "comm_exposed", "optimizer"})
                EXPECT_TRUE(j["time_s"].contains(k)) << k;
            for (const char* k : {"params", "grads", "optimizer", "activations", "buffers", "peak"})
                EXPECT_TRUE(j["mem_bytes"].contains(k)) << k;
            EXPECT_EQ(j["mem_bytes"]["params"].get<int64_t>() * 2,
                      j["mem_bytes"]["optimizer"].get<int64_t>());
            if (steps == 0) first = j["loss"];
            last = j["loss"];
            steps++;
        }
        if (j["kind"] == "eval") {
            evals++;
            EXPECT_EQ(j["tokens"], 4096);
        }
    }
    EXPECT_EQ(steps, 40);
    EXPECT_EQ(evals, 2);
    EXPECT_EQ(lines.back()["kind"], "summary");
    EXPECT_EQ(lines.back()["ranks"].size(), 1u);
    EXPECT_LT(last, first - 1.0) << "synthetic data must be learnable: loss " << first << " -> "
                                 << last;

    // The same run directory is never overwritten.
    expect_refused(zerotrain("train --data synthetic --steps 1 --out " + out),
                   {"already holds a run"});
}

TEST(Cli, RefusesBadFlags) {
    TempDir dir;
    std::string out = " --out " + (dir / "r");
    expect_refused(zerotrain("train --model no-such-model" + out),
                   {"unknown model preset", "no-such-model", "test-tiny"});
    expect_refused(zerotrain("train --seq-len 257" + out), {"--seq-len 257", "256"});
    expect_refused(zerotrain("train --seq-len 0" + out), {"--seq-len 0"});
    expect_refused(zerotrain("train --micro-batch -2" + out), {"--micro-batch -2"});
    expect_refused(zerotrain("train --steps 0" + out), {"--steps 0"});
    expect_refused(zerotrain("train --grad-accum 0" + out), {"--grad-accum 0"});
    expect_refused(zerotrain("train --lr -1" + out), {"--lr -1"});
    expect_refused(zerotrain("train --zero-stage 5" + out), {"--zero-stage 5", "0 to 3"});
    expect_refused(zerotrain("train --offload-optimizer disk" + out),
                   {"--offload-optimizer 'disk'", "none, cpu or nvme"});
    expect_refused(zerotrain("train --offload-optimizer nvme" + out), {"--offload-dir DIR"});
    expect_refused(zerotrain("train --offload-dir " + (dir / "o") + out),
                   {"--offload-dir", "only used with --offload-optimizer nvme"});
    expect_refused(zerotrain("train --offload-params cpu" + out), {"--zero-stage 3"});
    expect_refused(zerotrain("train --zero-stage 3 --offload-params nvme" + out),
                   {"--offload-params nvme", "--offload-dir DIR"});
    expect_refused(zerotrain("train --recompute selective" + out),
                   {"'selective'", "none, attn or full"});
    expect_refused(zerotrain("train --comm nccl" + out), {"--comm nccl"});
    expect_refused(zerotrain("train --device tpu" + out), {"--device 'tpu'"});
    expect_refused(zerotrain("train --data " + (dir / "nothing-here") + out), {"nothing-here"});
    std::ofstream(dir / "conf.json") << R"({"micro_batch": 2, "learning_rate": 1})";
    expect_refused(zerotrain("train --config " + (dir / "conf.json") + out),
                   {"learning_rate", "conf.json"});
    std::ofstream(dir / "broken.json") << "{not json";
    expect_refused(zerotrain("train --config " + (dir / "broken.json") + out), {"broken.json"});
    EXPECT_FALSE(std::filesystem::exists(dir / "r"))
        << "a refused run must not create its run directory";
}

TEST(Cli, ConfigFileAndFlagsCombine) {
    TempDir dir;
    std::ofstream(dir / "conf.json")
        << R"({"micro_batch": 2, "seq_len": 16, "steps": 3, "eval_every": 0, "eval_tokens": 512})";
    auto r = zerotrain("train --config " + (dir / "conf.json") +
                       " --data synthetic --steps 2 --out " + (dir / "r"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream f(dir / "r/config.json");
    auto j = nlohmann::json::parse(f);
    EXPECT_EQ(j["micro_batch"], 2);  // from the file
    EXPECT_EQ(j["seq_len"], 16);     // from the file
    EXPECT_EQ(j["steps"], 2);        // the flag wins
}

TEST(Cli, RefusesBadShards) {
    TempDir dir;
    std::string data = dir / "data";
    std::filesystem::create_directories(data);
    std::vector<uint32_t> tokens(5000);
    for (size_t i = 0; i < tokens.size(); i++) tokens[i] = uint32_t(i % 200);
    tokens[1234] = 300;  // test-tiny's vocabulary is 256
    zt::write_shard(data + "/shard_train_000.bin", tokens, 1);
    std::string args =
        "train --seq-len 32 --micro-batch 2 --steps 2 --data " + data + " --out " + (dir / "r");
    expect_refused(zerotrain(args), {"shard_train_000.bin", "300", "256"});

    // Wrong magic.
    tokens[1234] = 5;
    zt::write_shard(data + "/shard_train_000.bin", tokens, 1);
    {
        std::fstream f(data + "/shard_train_000.bin",
                       std::ios::in | std::ios::out | std::ios::binary);
        int32_t bad = 12345;
        f.write(reinterpret_cast<const char*>(&bad), 4);
    }
    expect_refused(zerotrain(args), {"shard_train_000.bin", "magic"});

    // Truncated: the header promises more tokens than the file holds.
    zt::write_shard(data + "/shard_train_000.bin", tokens, 1);
    std::filesystem::resize_file(data + "/shard_train_000.bin", 256 * 4 + 1000);
    expect_refused(zerotrain(args), {"shard_train_000.bin"});

    // A good shard trains.
    zt::write_shard(data + "/shard_train_000.bin", tokens, 1);
    auto r = zerotrain(args);
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, HelpListsTrainFlags) {
    auto r = zerotrain("train --help");
    EXPECT_EQ(r.exit_code, 0);
    for (const char* f : {"--model", "--data", "--seq-len", "--micro-batch", "--grad-accum",
                          "--steps", "--lr", "--min-lr", "--warmup", "--weight-decay",
                          "--grad-clip", "--seed", "--eval-every", "--out"})
        EXPECT_NE(r.output.find(f), std::string::npos) << f;
}

}  // namespace

namespace {

TEST(Cli, AcceptsDeepSpeedKeys) {
    TempDir dir;
    std::ofstream(dir / "ds.json")
        << R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2,
        "train_batch_size": 4, "gradient_clipping": 0.7, "steps_per_print": 10, "steps": 2,
        "seq_len": 16, "eval_tokens": 256,
        "zero_optimization": {"stage": 2, "reduce_bucket_size": 5e8, "stage3_prefetch_bucket_size": 1e6,
                              "stage3_param_persistence_threshold": 1e4, "contiguous_gradients": true}})";
    auto r =
        zerotrain("train --data synthetic --config " + (dir / "ds.json") + " --out " + (dir / "r"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("'steps_per_print' is ignored"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("'zero_optimization.contiguous_gradients' is ignored"),
              std::string::npos);
    std::ifstream f(dir / "r/config.json");
    auto j = nlohmann::json::parse(f);
    EXPECT_EQ(j["micro_batch"], 2);
    EXPECT_EQ(j["grad_accum"], 2);
    EXPECT_EQ(j["zero_stage"], 2);
    EXPECT_DOUBLE_EQ(j["grad_clip"].get<double>(), 0.7);
    EXPECT_EQ(j["reduce_bucket_size"], 500000000);
    EXPECT_EQ(j["prefetch_bucket_size"], 1000000);
    EXPECT_EQ(j["param_persistence_threshold"], 10000);

    std::ofstream(dir / "bad.json") << R"({"zero_optimization": {"stage": 1, "sub_groups": 3}})";
    r = zerotrain("train --config " + (dir / "bad.json") + " --out " + (dir / "r2"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("zero_optimization.sub_groups"), std::string::npos) << r.output;
}

}  // namespace
