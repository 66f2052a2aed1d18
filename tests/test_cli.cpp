// The zerotrain binary end to end: a short run writes the metrics DESIGN.md
// defines, and bad input gets a clear message and a non-zero exit, never a crash.
#include <gtest/gtest.h>
#include <sched.h>

#include <cctype>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

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

// Multi-rank and the command line (issue #14): one spelling per concept,
// typed help, --version, suggestions for typos, --nproc's range and
// oversubscription, and user errors without source locations.
namespace {

// The lines of `zerotrain ARGS --help`.
std::vector<std::string> help_lines(const std::string& subcommand) {
    auto r = zerotrain(subcommand + " --help");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::vector<std::string> lines;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// The help line of a flag ("" when the help lists no such flag).
std::string help_line(const std::vector<std::string>& lines, const std::string& flag) {
    for (const std::string& line : lines) {
        size_t at = line.find_first_not_of(' ');
        if (at != std::string::npos && line.compare(at, flag.size() + 1, flag + " ") == 0)
            return line.substr(at);
    }
    return "";
}

// The value type the help shows after a flag: "INT" in "--warmup INT=5 ...".
std::string help_type(const std::vector<std::string>& lines, const std::string& flag) {
    std::istringstream words(help_line(lines, flag));
    std::string name, type;
    words >> name >> type;
    return type.substr(0, type.find('='));
}

TEST(Cli, EstimateTakesNprocForWorldSize) {
    const std::string base = "estimate --model test-tiny --json --zero-stage 2 ";
    auto world = zerotrain(base + "--world-size 4");
    ASSERT_EQ(world.exit_code, 0) << world.output;
    EXPECT_NE(world.output.find("\"world_size\":4"), std::string::npos) << world.output;
    auto nproc = zerotrain(base + "--nproc 4");
    ASSERT_EQ(nproc.exit_code, 0) << nproc.output;
    EXPECT_EQ(nproc.output, world.output);
    auto both = zerotrain(base + "--world-size 4 --nproc 4");
    ASSERT_EQ(both.exit_code, 0) << both.output;
    EXPECT_EQ(both.output, world.output);
    expect_refused(zerotrain(base + "--world-size 4 --nproc 2"), {"--world-size 4", "--nproc 2"});
    expect_refused(zerotrain(base), {"--world-size N is required", "--nproc"});
    expect_refused(zerotrain(base + "--nproc 0"), {"--nproc 0", ">= 1"});
}

// estimate describes the run train would make: the vocabulary of --data's
// meta.json (padded as train pads it) or --vocab-size, a DeepSpeed --config's
// stage, precision, micro-batch and offload, the flags over both; the table's
// columns are the JSON's keys, each cell in a unit that shows it.
TEST(Cli, EstimateDescribesTheRunOfDataConfigAndFlags) {
    TempDir dir;
    const std::string text = dir / "in.txt";
    {
        std::ofstream f(text);
        for (int i = 0; i < 200; i++) f << "line " << i << " of some text\n\n";
    }
    const std::string data = dir / "data";
    auto prep = zerotrain("prepare --input " + text + " --out " + data);
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    auto json_of = [](const CommandResult& r) {
        return nlohmann::ordered_json::parse(r.output.substr(r.output.find('{')));
    };
    const std::string base = "estimate --model tiny --nproc 2 --zero-stage 1 --json ";
    // The byte tokenizer's 258 tokens, padded to a multiple of 64.
    auto with_data = zerotrain(base + "--data " + data);
    ASSERT_EQ(with_data.exit_code, 0) << with_data.output;
    EXPECT_EQ(json_of(with_data)["vocab_size"], 320) << with_data.output;
    auto with_vocab = zerotrain(base + "--vocab-size 320");
    ASSERT_EQ(with_vocab.exit_code, 0) << with_vocab.output;
    EXPECT_EQ(json_of(with_vocab)["mem_bytes"], json_of(with_data)["mem_bytes"]);
    auto preset = zerotrain(base);
    ASSERT_EQ(preset.exit_code, 0) << preset.output;
    EXPECT_EQ(json_of(preset)["vocab_size"], 32000);
    expect_refused(zerotrain(base + "--data " + data + " --vocab-size 320"),
                   {"--data and --vocab-size"});
    expect_refused(zerotrain(base + "--data " + (dir / "none")), {"--data", "none"});
    expect_refused(zerotrain(base + "--vocab-size 0"), {"--vocab-size 0"});

    // ZeRO-3 with both offloads, bf16, micro-batch 2: from the file alone.
    const std::string zero3 = zt_test::source_dir() + "/tests/deepspeed/zero3_offload.json";
    auto ds = zerotrain("estimate --model tiny --nproc 4 --seq-len 64 --json --config " + zero3);
    ASSERT_EQ(ds.exit_code, 0) << ds.output;
    auto j = json_of(ds);
    EXPECT_EQ(j["zero_stage"], 3);
    EXPECT_EQ(j["precision"], "bf16");
    EXPECT_EQ(j["micro_batch"], 2);
    EXPECT_EQ(j["offload_optimizer"], "cpu");
    EXPECT_EQ(j["offload_params"], "cpu");
    EXPECT_EQ(j["mem_bytes"]["optimizer"], 0);
    EXPECT_GT(j["offload_bytes"]["host_optimizer"].get<int64_t>(), 0);
    // A flag overrides the file.
    auto flagged = zerotrain("estimate --model tiny --nproc 4 --seq-len 64 --json --config " +
                             zero3 + " --zero-stage 2 --offload-params none --precision fp32");
    ASSERT_EQ(flagged.exit_code, 0) << flagged.output;
    EXPECT_EQ(json_of(flagged)["zero_stage"], 2);
    EXPECT_EQ(json_of(flagged)["precision"], "fp32");
    expect_refused(zerotrain("estimate --model tiny --nproc 4 --config " + zero3),
                   {"micro-batch of --config", "--seq-len"});

    // The table: a header of the JSON's keys, every cell a number and a unit.
    auto table = zerotrain("estimate --model tiny --nproc 4 --seq-len 64 --config " + zero3);
    ASSERT_EQ(table.exit_code, 0) << table.output;
    std::istringstream lines(table.output);
    std::string line, header, row;
    while (std::getline(lines, line)) {
        if (line.rfind("stage ", 0) == 0) header = line;
        if (line.rfind("3 ", 0) == 0) row = line;
    }
    std::vector<std::string> keys;
    for (const auto& [k, v] : j["mem_bytes"].items()) keys.push_back(k);
    for (const auto& [k, v] : j["offload_bytes"].items()) keys.push_back(k);
    std::istringstream hs(header);
    std::vector<std::string> columns;
    for (std::string w; hs >> w;) columns.push_back(w);
    ASSERT_EQ(columns.size(), keys.size() + 1) << table.output;
    for (size_t i = 0; i < keys.size(); i++) EXPECT_EQ(columns[i + 1], keys[i]);
    std::istringstream rs(row);
    std::vector<std::string> words;
    for (std::string w; rs >> w;) words.push_back(w);
    ASSERT_EQ(words.size(), 1 + 2 * keys.size()) << row;
    std::vector<std::string> units;
    for (size_t i = 0; i < keys.size(); i++) {
        const std::string& unit = words[2 + 2 * i];
        EXPECT_TRUE(unit == "B" || unit == "KiB" || unit == "MiB" || unit == "GiB") << row;
        units.push_back(unit);
    }
    EXPECT_EQ(units[2], "B") << "the optimizer is offloaded: " << row;
    EXPECT_EQ(units[6], "MiB") << "host_optimizer: " << row;
}

TEST(Cli, ExportDtypeSpelledLikePrecision) {
    TempDir dir;
    auto r = zerotrain(
        "train --data synthetic --steps 1 --seq-len 16 --micro-batch 2 "
        "--eval-tokens 256 --out " +
        (dir / "run"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto read_file = [](const std::string& path) {
        std::ifstream f(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    };
    for (const char* dtype : {"fp32", "f32", "bf16"}) {
        auto e = zerotrain("export --checkpoint " + (dir / "run") + " --out " + (dir / dtype) +
                           " --dtype " + dtype);
        ASSERT_EQ(e.exit_code, 0) << dtype << ": " << e.output;
    }
    const std::string fp32 = read_file(dir / "fp32/model.safetensors");
    EXPECT_FALSE(fp32.empty());
    EXPECT_EQ(fp32, read_file(dir / "f32/model.safetensors")) << "fp32 and f32 are one dtype";
    EXPECT_LT(read_file(dir / "bf16/model.safetensors").size(), fp32.size());
    expect_refused(zerotrain("export --checkpoint " + (dir / "run") + " --out " + (dir / "x") +
                             " --dtype fp16"),
                   {"--dtype 'fp16'", "fp32", "bf16"});
}

TEST(Cli, CommHelpSaysWhereNcclRuns) {
    for (const char* sub : {"train", "bench-comm"}) {
        const std::string line = help_line(help_lines(sub), "--comm");
        EXPECT_NE(line.find("nccl"), std::string::npos) << sub << ": " << line;
        EXPECT_NE(line.find("GPU-only"), std::string::npos) << sub << ": " << line;
    }
}

TEST(Cli, HelpShowsValueTypesAndRequiredOptions) {
    const std::map<std::string, std::vector<std::string>> numeric = {
        {"train",
         {"--zero-stage",
          "--nproc",
          "--sim-bandwidth-gbps",
          "--sim-latency-us",
          "--comm-timeout-s",
          "--seq-len",
          "--micro-batch",
          "--grad-accum",
          "--steps",
          "--lr",
          "--min-lr",
          "--warmup",
          "--weight-decay",
          "--grad-clip",
          "--seed",
          "--max-nonfinite-skips",
          "--eval-every",
          "--eval-tokens",
          "--save-every",
          "--keep-last",
          "--sample-tokens",
          "--threads"}},
        {"bench-comm",
         {"--nproc", "--min-bytes", "--max-bytes", "--warmup", "--iters", "--sim-bandwidth-gbps",
          "--sim-latency-us", "--comm-timeout-s"}},
        {"estimate",
         {"--world-size", "--nproc", "--vocab-size", "--zero-stage", "--micro-batch", "--seq-len",
          "--reduce-bucket-size", "--allgather-bucket-size"}},
        {"export", {}},
    };
    const std::set<std::string> number_types = {"INT", "UINT", "FLOAT", "SIZE", "SECONDS"};
    for (const auto& [sub, flags] : numeric) {
        const std::vector<std::string> lines = help_lines(sub);
        for (const std::string& flag : flags)
            EXPECT_TRUE(number_types.count(help_type(lines, flag)))
                << sub << " " << flag << ": '" << help_line(lines, flag) << "'";
    }
    const std::map<std::string, std::vector<std::string>> required = {
        {"bench-comm", {"--op"}},
        {"export", {"--checkpoint", "--out"}},
        {"supervise", {"command"}},
    };
    for (const auto& [sub, flags] : required) {
        const std::vector<std::string> lines = help_lines(sub);
        for (const std::string& flag : flags)
            EXPECT_NE(help_line(lines, flag).find("REQUIRED"), std::string::npos)
                << sub << " " << flag << ": '" << help_line(lines, flag) << "'";
    }
    // A --config may name the model instead.
    const std::vector<std::string> lines = help_lines("estimate");
    EXPECT_NE(help_line(lines, "--model").find("required unless --config names one"),
              std::string::npos)
        << help_line(lines, "--model");
}

TEST(Cli, VersionPrintsTheVersion) {
    auto r = zerotrain("--version");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // "zerotrain 0.1.0", then " (git DESCRIBE)" when configured in a checkout.
    ASSERT_EQ(r.output.rfind("zerotrain ", 0), 0u) << r.output;
    EXPECT_TRUE(r.output.size() > 10 && std::isdigit(static_cast<unsigned char>(r.output[10])))
        << r.output;
}

TEST(Cli, TyposGetTheNearestName) {
    TempDir dir;
    auto r = zerotrain("trian");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("unknown subcommand 'trian'; did you mean 'train'?"), std::string::npos)
        << r.output;
    expect_refused(zerotrain("xyzzy"), {"unknown subcommand 'xyzzy'", "train", "bench-comm"});
    expect_refused(zerotrain("train --stpes 3 --out " + (dir / "r")),
                   {"unknown option --stpes; did you mean --steps?"});
    EXPECT_FALSE(std::filesystem::exists(dir / "r")) << "a refused command line must not train";
    expect_refused(zerotrain("bench-comm --op all --iter=3"),
                   {"unknown option --iter; did you mean --iters?"});
    expect_refused(zerotrain("estimate --model tiny --wrold-size 2"),
                   {"did you mean --world-size?"});
    expect_refused(zerotrain("export --checkpoint a --out b --no-such-flag"),
                   {"unknown option --no-such-flag", "export --help"});
}

TEST(Cli, RefusesNprocOutOfRange) {
    TempDir dir;
    expect_refused(zerotrain("train --nproc 0 --out " + (dir / "r")), {"--nproc", "1 or more"});
    expect_refused(zerotrain("train --nproc -3 --out " + (dir / "r")), {"--nproc", "1 or more"});
    EXPECT_FALSE(std::filesystem::exists(dir / "r"));
    expect_refused(zerotrain("bench-comm --op all --nproc 0"), {"--nproc '0'", ">= 1"});
}

// The cores this process may use, as the launcher counts them.
int usable_cores() {
    cpu_set_t set;
    return sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
}

TEST(Cli, OversubscribedLaunchSaysSo) {
#if !ZT_HAVE_MPI
    GTEST_SKIP() << "--nproc needs a build with MPI";
#endif
    TempDir dir;
    const int cores = usable_cores();
    const std::string run =
        "train --data synthetic --steps 1 --seq-len 16 --micro-batch 2 "
        "--eval-tokens 256 --nproc 2 --out ";
    // Two ranks of `cores` threads each: twice the cores, on any machine.
    auto r = zerotrain(run + (dir / "over") + " --threads " + std::to_string(cores));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string warning = "zerotrain: warning: --nproc 2 oversubscribes";
    const size_t at = r.output.find(warning);
    ASSERT_NE(at, std::string::npos) << r.output;
    EXPECT_EQ(r.output.find(warning, at + 1), std::string::npos) << "one warning: " << r.output;
    const std::string numbers = "2 ranks x " + std::to_string(cores) +
                                " threads per rank = " + std::to_string(2 * cores) +
                                " threads on " + std::to_string(cores) + " cores";
    EXPECT_NE(r.output.find(numbers), std::string::npos) << r.output;
    if (cores >= 2) {
        r = zerotrain(run + (dir / "fits") + " --threads 1");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(r.output.find("oversubscribes"), std::string::npos) << r.output;
    }
}

TEST(Cli, UserErrorsCarryNoSourceLocation) {
    TempDir dir;
    const std::string out = " --out " + (dir / "r");
    for (const std::string& cmd : std::vector<std::string>{
             "train --zero-stage 7" + out, "train --model nosuch" + out, "train --seq-len 0" + out,
             "train --config " + (dir / "missing.json") + out,
             "estimate --model nosuch --world-size 2", "bench-comm --op all --iters 0",
             "export --checkpoint " + (dir / "missing") + " --out " + (dir / "hf")}) {
        auto r = zerotrain(cmd);
        EXPECT_EQ(r.exit_code, 1) << cmd << "\n" << r.output;
        EXPECT_NE(r.output.find("zerotrain: error: rank 0: "), std::string::npos) << cmd << "\n"
                                                                                  << r.output;
        EXPECT_EQ(r.output.find("src/"), std::string::npos) << cmd << "\n" << r.output;
        EXPECT_EQ(r.output.find(".cpp:"), std::string::npos) << cmd << "\n" << r.output;
    }
}

// Which failures keep their file:line (core/check.h): by layer, or as marked.
TEST(Cli, InternalInvariantsKeepTheirLocation) {
    auto message = [](const std::function<void()>& f) {
        try {
            f();
        } catch (const zt::Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    using zt::FailKind;
    const int saved_rank = zt::error_rank();
    zt::set_error_rank(0);
    EXPECT_EQ(
        message([] { zt::fail(FailKind::by_layer, "/b/src/train/config.cpp", 9, "bad %d", 7); }),
        "rank 0: bad 7");
    EXPECT_EQ(message([] { zt::fail(FailKind::by_layer, "/home/u/src/zt/src/cli/x.cpp", 3, "m"); }),
              "rank 0: m");
    EXPECT_EQ(message([] { zt::fail(FailKind::by_layer, "/b/src/ops/cpu/matmul.cpp", 12, "m"); }),
              "rank 0, src/ops/cpu/matmul.cpp:12: m");
    EXPECT_EQ(message([] { zt::fail(FailKind::internal, "/b/src/train/trainer.cpp", 5, "m"); }),
              "rank 0, src/train/trainer.cpp:5: m");
    EXPECT_EQ(message([] { ZT_USER_CHECK(1 + 1 == 3, "flag %s", "--x"); }), "rank 0: flag --x");
    const std::string internal = message([] { ZT_CHECK(1 + 1 == 3, "invariant"); });
    EXPECT_NE(internal.find("tests/test_cli.cpp:"), std::string::npos) << internal;
    zt::set_error_rank(saved_rank);
}

}  // namespace
