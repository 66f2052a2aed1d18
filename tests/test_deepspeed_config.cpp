// DeepSpeed --config files behave as DeepSpeed would: three files users copy
// (tests/deepspeed: ZeRO-2 with explicit values, the Hugging Face Trainer's
// ZeRO-3 with "auto" everywhere, ZeRO-3 with optimizer and parameter offload)
// resolve to the settings DeepSpeed would train with; each scheduler's lr at
// chosen steps equals deepspeed/runtime/lr_schedules.py's formula worked by
// hand; train_batch_size infers the missing batch key; a bad key is refused
// by its JSON name; and one run end to end trains with the schedule's lr.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "test_util.h"
#include "train/config.h"

namespace {

using namespace zt;
using zt_test::TempDir;

std::string data_file(const std::string& name) {
    return zt_test::source_dir() + "/tests/deepspeed/" + name;
}

// What `zerotrain train --config F [flags]` resolves before the world and the
// model: the file, then the flags given (as JSON keys) on top.
TrainConfig load(const std::string& path, const nlohmann::json& flags = nlohmann::json::object()) {
    TrainConfig c;
    testing::internal::CaptureStderr();  // warnings about ignored DeepSpeed keys
    try {
        load_train_config_file(c, path);
    } catch (...) {
        testing::internal::GetCapturedStderr();
        throw;
    }
    testing::internal::GetCapturedStderr();
    apply_train_config_json(c, flags, "the command line");
    for (auto it = flags.begin(); it != flags.end(); ++it) c.given.insert(it.key());
    validate_train_config(c);
    return c;
}

TEST(DeepSpeedConfig, Zero2FileWithExplicitValues) {
    TrainConfig c = load(data_file("zero2.json"));
    EXPECT_EQ(c.zero_stage, 2);
    EXPECT_EQ(c.precision, "bf16");
    EXPECT_DOUBLE_EQ(c.grad_clip, 1.0);
    EXPECT_TRUE(c.overlap_comm);
    EXPECT_EQ(c.reduce_bucket_size, 500000000);
    EXPECT_EQ(c.allgather_bucket_size, 500000000);
    // optimizer AdamW with its params.
    EXPECT_DOUBLE_EQ(c.lr, 3e-4);
    EXPECT_DOUBLE_EQ(c.beta1, 0.9);
    EXPECT_DOUBLE_EQ(c.beta2, 0.95);
    EXPECT_DOUBLE_EQ(c.adam_eps, 1e-8);
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.1);
    // scheduler WarmupDecayLR with its params.
    EXPECT_EQ(c.lr_schedule, "WarmupDecayLR");
    EXPECT_EQ(c.warmup, 100);
    EXPECT_EQ(c.resolved_warmup_type(), "linear");
    EXPECT_DOUBLE_EQ(c.warmup_min_lr, 0.0);
    EXPECT_EQ(c.lr_total_steps, 1000);
    // train_batch_size 32 = 2 ranks x micro-batch 4 x accumulation, inferred: 4.
    EXPECT_NE(resolve_train_batch_size(c, 2).find("gradient_accumulation_steps 4"),
              std::string::npos);
    EXPECT_EQ(c.micro_batch, 4);
    EXPECT_EQ(c.grad_accum, 4);
    EXPECT_TRUE(describe_auto_values(c, 2).empty());
    // The run config records what the file set.
    const nlohmann::ordered_json j = train_config_to_json(c);
    EXPECT_EQ(j["lr_schedule"], "WarmupDecayLR");
    EXPECT_EQ(j["warmup_type"], "linear");
    EXPECT_EQ(j["lr_total_steps"], 1000);
    EXPECT_DOUBLE_EQ(j["adam_eps"].get<double>(), 1e-8);
}

// The Hugging Face Trainer's ZeRO-3 file: every "auto" takes zerotrain's
// setting (the flags here, else the defaults), and each is printed.
TEST(DeepSpeedConfig, Zero3AutoFileTakesTheFlags) {
    TrainConfig c = load(data_file("zero3_auto.json"), {{"lr", 2e-4},
                                                        {"warmup", 30},
                                                        {"steps", 500},
                                                        {"micro_batch", 4},
                                                        {"grad_accum", 2},
                                                        {"weight_decay", 0.05},
                                                        {"grad_clip", 0.5}});
    EXPECT_EQ(c.zero_stage, 3);
    EXPECT_EQ(c.precision, "fp32");  // bf16.enabled auto: --precision's default
    EXPECT_DOUBLE_EQ(c.lr, 2e-4);
    EXPECT_DOUBLE_EQ(c.beta1, 0.9);
    EXPECT_DOUBLE_EQ(c.beta2, 0.95);  // betas auto: zerotrain's beta2, not DeepSpeed's 0.999
    EXPECT_DOUBLE_EQ(c.adam_eps, 1e-8);
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.05);
    EXPECT_DOUBLE_EQ(c.grad_clip, 0.5);
    EXPECT_EQ(c.lr_schedule, "WarmupLR");
    EXPECT_EQ(c.resolved_warmup_type(), "log");  // DeepSpeed's default
    EXPECT_EQ(c.warmup, 30);
    EXPECT_DOUBLE_EQ(c.warmup_min_lr, 0.0);
    EXPECT_EQ(resolve_train_batch_size(c, 4), "");  // auto: no constraint
    EXPECT_EQ(c.train_batch_size, 0);
    resolve_auto_bucket_sizes(c, 768);
    EXPECT_EQ(c.reduce_bucket_size, 768 * 768);
    EXPECT_EQ(c.prefetch_bucket_size, 530841);  // int(0.9 * 768^2 = 530841.6)
    EXPECT_EQ(c.param_persistence_threshold, 7680);
    const std::vector<std::string> lines = describe_auto_values(c, 4);
    EXPECT_EQ(lines.size(), 16u);
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    for (const char* want :
         {"optimizer.params.lr \"auto\" -> 0.0002 (--lr)",
          "optimizer.params.betas \"auto\" -> [0.9, 0.95]",
          "optimizer.params.weight_decay \"auto\" -> 0.05 (--weight-decay)",
          "scheduler.params.warmup_max_lr \"auto\" -> 0.0002 (--lr)",
          "scheduler.params.warmup_num_steps \"auto\" -> 30 (--warmup)",
          "scheduler.params.warmup_min_lr \"auto\" -> 0",
          "train_batch_size \"auto\" -> 32 (4 ranks x micro-batch 4 x grad-accum 2)",
          "train_micro_batch_size_per_gpu \"auto\" -> 4 (--micro-batch)",
          "gradient_accumulation_steps \"auto\" -> 2 (--grad-accum)",
          "gradient_clipping \"auto\" -> 0.5 (--grad-clip)", "bf16.enabled \"auto\" -> false",
          "fp16.enabled \"auto\" -> false",
          "zero_optimization.reduce_bucket_size \"auto\" -> 589824 (hidden_size^2)",
          "zero_optimization.stage3_prefetch_bucket_size \"auto\" -> 530841",
          "zero_optimization.stage3_param_persistence_threshold \"auto\" -> 7680",
          "zero3_auto.json"})
        EXPECT_NE(all.find(want), std::string::npos) << "missing '" << want << "' in\n" << all;
    // The flags' lr is the peak: WarmupLR reaches it after 30 steps.
    EXPECT_DOUBLE_EQ(lr_at_step(c, 31), 2e-4);
}

TEST(DeepSpeedConfig, Zero3OffloadFile) {
    TrainConfig c = load(data_file("zero3_offload.json"));
    EXPECT_EQ(c.zero_stage, 3);
    EXPECT_EQ(c.offload_optimizer, "cpu");
    EXPECT_EQ(c.offload_params, "cpu");
    EXPECT_EQ(c.precision, "bf16");
    EXPECT_EQ(c.micro_batch, 2);
    EXPECT_EQ(c.grad_accum, 8);
    EXPECT_EQ(c.reduce_bucket_size, 10000000);
    EXPECT_EQ(c.prefetch_bucket_size, 10000000);
    EXPECT_EQ(c.param_persistence_threshold, 100000);
    // Adam with DeepSpeed's default adam_w_mode true: decoupled weight decay, AdamW.
    EXPECT_DOUBLE_EQ(c.lr, 2e-4);
    EXPECT_DOUBLE_EQ(c.beta2, 0.999);
    EXPECT_DOUBLE_EQ(c.adam_eps, 1e-6);
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.01);
    EXPECT_EQ(c.lr_schedule, "WarmupCosineLR");
    EXPECT_EQ(c.warmup, 50);
    EXPECT_EQ(c.resolved_warmup_type(), "linear");
    EXPECT_DOUBLE_EQ(c.warmup_min_ratio, 0.01);
    EXPECT_DOUBLE_EQ(c.cos_min_ratio, 0.1);
    EXPECT_EQ(c.lr_total_steps, 2000);
    EXPECT_EQ(resolve_train_batch_size(c, 8), "");
}

// A block's parameter left out takes DeepSpeed's default, not zerotrain's.
TEST(DeepSpeedConfig, OmittedParametersTakeDeepSpeedDefaults) {
    TempDir dir;
    std::ofstream(dir / "a.json") << R"({"optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
        "scheduler": {"type": "WarmupLR"}})";
    TrainConfig c = load(dir / "a.json");
    EXPECT_DOUBLE_EQ(c.lr, 1e-4);  // WarmupLR's warmup_max_lr: the optimizer's lr
    EXPECT_DOUBLE_EQ(c.beta1, 0.9);
    EXPECT_DOUBLE_EQ(c.beta2, 0.999);
    EXPECT_DOUBLE_EQ(c.adam_eps, 1e-8);
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.0);  // FusedAdam's and DeepSpeedCPUAdam's
    EXPECT_EQ(c.warmup, 1000);
    EXPECT_EQ(c.resolved_warmup_type(), "log");
    EXPECT_DOUBLE_EQ(c.warmup_min_lr, 0.0);
    // torch_adam: torch.optim.AdamW's weight decay default.
    std::ofstream(dir / "b.json")
        << R"({"optimizer": {"type": "adamw", "params": {"torch_adam": true}}})";
    c = load(dir / "b.json");
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.01);
    EXPECT_DOUBLE_EQ(c.lr, 1e-3);
    EXPECT_EQ(c.lr_schedule, "cosine");  // no scheduler block: zerotrain's own
    // WarmupDecayLR's own warmup_max_lr default is 0.001, over the optimizer's lr.
    std::ofstream(dir / "c.json") << R"({"optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
        "scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 100}}})";
    c = load(dir / "c.json");  // with a warning: the optimizer's lr 1e-4 is not the one used
    EXPECT_DOUBLE_EQ(c.lr, 1e-3);
    // The flags still come on top of the file.
    c = load(dir / "a.json", {{"lr", 5e-4}, {"weight_decay", 0.2}, {"warmup", 7}});
    EXPECT_DOUBLE_EQ(c.lr, 5e-4);
    EXPECT_DOUBLE_EQ(c.weight_decay, 0.2);
    EXPECT_EQ(c.warmup, 7);
}

TrainConfig schedule(const std::string& type, int warmup, const std::string& warmup_type) {
    TrainConfig c;
    c.lr_schedule = type;
    c.warmup = warmup;
    c.warmup_type = warmup_type;
    c.lr = 1e-3;
    c.steps = 100;
    validate_train_config(c);
    return c;
}

// Step s trains with DeepSpeed's get_lr() at last_batch_iteration s - 1 (its
// engine steps the scheduler after each optimizer step). Expected values are
// the formulas of deepspeed/runtime/lr_schedules.py worked by hand.
TEST(DeepSpeedSchedule, WarmupLR) {
    TrainConfig c = schedule("WarmupLR", 10, "log");
    c.warmup_min_lr = 1e-5;
    const double d = 1e-3 - 1e-5;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 0), 1e-5);  // the scheduler's start: warmup_min_lr
    EXPECT_DOUBLE_EQ(lr_at_step(c, 1), 1e-5);  // log(1) / log(10) = 0
    EXPECT_DOUBLE_EQ(lr_at_step(c, 2), 1e-5 + d * std::log(2.0) / std::log(10.0));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 5), 1e-5 + d * std::log(5.0) / std::log(10.0));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 10), 1e-5 + d * std::log(10.0) / std::log(10.0));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 11), 1e-3);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 99), 1e-3);
    c.warmup_type = "linear";
    EXPECT_DOUBLE_EQ(lr_at_step(c, 1), 1e-5);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 5), 1e-5 + d * 4 / 10.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 10), 1e-5 + d * 9 / 10.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 11), 1e-3);
    // warmup_num_steps 1 is max(2, 1) = 2 steps.
    c = schedule("WarmupLR", 1, "log");
    EXPECT_DOUBLE_EQ(lr_at_step(c, 1), 0.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 2), 1e-3);
}

TEST(DeepSpeedSchedule, WarmupDecayLR) {
    TrainConfig c = schedule("WarmupDecayLR", 10, "linear");
    c.lr_total_steps = 100;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 0), 0.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 6), 1e-3 * 5 / 10.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 11), 1e-3);  // (100 - 10) / (100 - 10)
    EXPECT_DOUBLE_EQ(lr_at_step(c, 56), 1e-3 * 45 / 90.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 100), 1e-3 * 1 / 90.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 101), 0.0);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 150), 0.0);  // max(0, ...)
    // total_num_steps 0 ("auto") is --steps.
    c.lr_total_steps = 0;
    c.steps = 50;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 31), 1e-3 * (50 - 30) / 40.0);
    // With a floor and log warmup.
    c = schedule("WarmupDecayLR", 20, "log");
    c.warmup_min_lr = 1e-4;
    c.lr_total_steps = 220;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 8), 1e-4 + 9e-4 * std::log(8.0) / std::log(20.0));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 121), 1e-4 + 9e-4 * (220 - 120) / 200.0);
}

TEST(DeepSpeedSchedule, WarmupCosineLR) {
    TrainConfig c = schedule("WarmupCosineLR", 10, "linear");
    c.lr_total_steps = 110;
    c.warmup_min_ratio = 0.1;
    c.cos_min_ratio = 0.01;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 0), 0.0);  // DeepSpeed's WarmupCosineLR starts at 0
    EXPECT_DOUBLE_EQ(lr_at_step(c, 1), 1e-3 * 0.1);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 6), 1e-3 * (0.1 + 0.5 * 0.9));
    // After warmup: progress (it - W + 1) / (total - W).
    EXPECT_DOUBLE_EQ(lr_at_step(c, 11), 1e-3 * (0.01 + 0.99 * (1 + std::cos(M_PI * 0.01)) / 2));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 60), 1e-3 * (0.01 + 0.99 * 0.5));
    EXPECT_DOUBLE_EQ(lr_at_step(c, 110), 1e-3 * 0.01);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 200), 1e-3 * 0.01);  // clamped at the end
    c.warmup_type = "log";
    EXPECT_DOUBLE_EQ(lr_at_step(c, 4), 1e-3 * (0.1 + 0.9 * std::log(4.0) / std::log(10.0)));
}

// zerotrain's own schedule is unchanged, and lr_total_steps stretches it.
TEST(DeepSpeedSchedule, CosineUnchanged) {
    TrainConfig c = schedule("cosine", 10, "auto");
    c.min_lr = 1e-4;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 0), 1e-3 / 10);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 9), 1e-3);
    EXPECT_DOUBLE_EQ(lr_at_step(c, 99), 1e-4);
    c.lr_total_steps = 190;
    EXPECT_DOUBLE_EQ(lr_at_step(c, 99), 1e-4 + 0.5 * 9e-4 * (1 + std::cos(M_PI * 89.0 / 179.0)));
    EXPECT_EQ(c.resolved_warmup_type(), "linear");
}

TEST(DeepSpeedConfig, TrainBatchSizeInfersTheMissingKey) {
    TempDir dir;
    auto infer = [&](const std::string& json, int world, const nlohmann::json& flags = {}) {
        std::ofstream(dir / "b.json") << json;
        TrainConfig c = load(dir / "b.json", flags.is_null() ? nlohmann::json::object() : flags);
        resolve_train_batch_size(c, world);
        return std::make_pair(c.micro_batch, c.grad_accum);
    };
    using P = std::pair<int, int>;
    EXPECT_EQ(infer(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 4})", 2),
              P(4, 8));
    EXPECT_EQ(infer(R"({"train_batch_size": 64, "gradient_accumulation_steps": 2})", 2), P(16, 2));
    EXPECT_EQ(infer(R"({"train_batch_size": 32})", 2), P(16, 1));
    // A flag counts as given: --micro-batch 8.
    EXPECT_EQ(infer(R"({"train_batch_size": 64})", 2, {{"micro_batch", 8}}), P(8, 4));
    // "auto" micro-batch is --micro-batch's value (16 by default).
    EXPECT_EQ(infer(R"({"train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto"})", 1),
              P(16, 4));
    // Given twice over and inconsistent, or not dividing: refused by name.
    std::ofstream(dir / "x.json")
        << R"({"train_batch_size": 30, "train_micro_batch_size_per_gpu": 4})";
    TrainConfig c = load(dir / "x.json");
    zt_test::expect_error([&] { resolve_train_batch_size(c, 2); },
                          {"train_batch_size 30", "world size 2 x micro-batch 4", "divide"});
    std::ofstream(dir / "y.json") << R"({"train_batch_size": 64,
        "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 2})";
    c = load(dir / "y.json");
    zt_test::expect_error([&] { resolve_train_batch_size(c, 2); }, {"train_batch_size 64", "= 16"});
}

TEST(DeepSpeedConfig, RefusesByJsonKey) {
    TempDir dir;
    using Case = zt_test::JsonErrorCase;
    const std::string sched = R"("scheduler": {"type": )";
    const std::vector<Case> cases = {
        {R"("optimizer": {"type": "Lamb", "params": {"lr": 1e-3}})",
         {"optimizer.type 'Lamb'", "AdamW"}},
        {R"("optimizer": {"type": "AdamW", "params": {"momentum": 0.9}})",
         {"optimizer.params.momentum"}},
        {R"("optimizer": {"type": "AdamW", "params": {"betas": [0.9]}})",
         {"optimizer.params.betas", "[beta1, beta2]"}},
        {R"("optimizer": {"type": "AdamW", "params": {"lr": "fast"}})", {"optimizer.params.lr"}},
        {R"("optimizer": {"type": "Adam", "params": {"adam_w_mode": false}})",
         {"adam_w_mode false", "decoupled"}},
        {R"("optimizer": {"type": "AdamW", "params": {"amsgrad": true}})", {"amsgrad"}},
        {R"("optimizer": {"params": {"lr": 1e-3}})", {"optimizer.type"}},
        {R"("optimizer": {"type": "AdamW", "extra": 1})", {"optimizer.extra"}},
        {sched + R"("OneCycle", "params": {}})", {"scheduler.type 'OneCycle'", "WarmupLR"}},
        {sched + R"("WarmupLR", "params": {"total_num_steps": 10}})",
         {"scheduler.params.total_num_steps is not a parameter of WarmupLR"}},
        {sched + R"("WarmupCosineLR", "params": {"total_num_steps": 10, "warmup_max_lr": 1e-3}})",
         {"scheduler.params.warmup_max_lr is not a parameter of WarmupCosineLR"}},
        {sched + R"("WarmupDecayLR", "params": {"warmup_num_steps": 10}})",
         {"scheduler.params.total_num_steps is required by WarmupDecayLR", "\"auto\""}},
        {sched + R"("WarmupLR", "params": {"warmup_num_steps": 0}})",
         {"scheduler.params.warmup_num_steps is 0"}},
        {sched + R"("WarmupLR", "params": {"warmup_num_steps": 1e3}})",
         {"scheduler.params.warmup_num_steps is 1000.0", "whole number"}},
        {sched + R"("WarmupLR", "params": {"warmup_type": "exp"}})",
         {"scheduler.params.warmup_type 'exp'", "log or linear"}},
        {sched + R"("WarmupCosineLR", "params": {"total_num_steps": 10, "cos_min_ratio": 2}})",
         {"scheduler.params.cos_min_ratio 2"}},
        {sched + R"("WarmupLR", "params": {"warmup_min_lr": -1}})",
         {"scheduler.params.warmup_min_lr is -1"}},
        {sched + R"("WarmupLR", "params": {"last_batch_iteration": 5}})",
         {"scheduler.params.last_batch_iteration 5"}},
        {R"("zero_optimization": {"stage": 2, "allgather_bucket_size": "auto"})",
         {"zero_optimization.allgather_bucket_size"}},
        {R"("fp16": {"enabled": true})", {"fp16.enabled true"}},
        {R"("fp16": {"enabled": false, "scale": 1})", {"fp16.scale"}},
        {R"("bf16": {"enabled": "yes"})", {"bf16.enabled"}},
        {R"("gradient_clipping": "max")", {"gradient_clipping"}},
        {R"("train_batch_size": 0)", {"train_batch_size 0"}},
        // Integers are range-checked before narrowing: 2^32 + 1 steps is not 1.
        {R"("steps": 4294967297)", {"'steps' is 4294967297", "2147483647"}},
        {R"("train_micro_batch_size_per_gpu": 18446744073709551615)",
         {"18446744073709551615", "outside"}},
        {R"("seed": -1)", {"'seed' is -1", "outside [0,"}},
    };
    zt_test::expect_json_errors(dir.path(), cases, [&](const std::string& p) { load(p); });
    // zerotrain's own keys, validated by name.
    zt_test::expect_error([&] { schedule("cosine", 10, "log"); }, {"warmup_type log", "linearly"});
    zt_test::expect_error([&] { schedule("WarmupLR", 0, "log"); }, {"--warmup 0", "WarmupLR"});
    zt_test::expect_error([&] { schedule("OneCycle", 10, "auto"); }, {"lr_schedule 'OneCycle'"});
    std::ofstream(dir / "s.json")
        << R"({"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 5}}})";
    zt_test::expect_error(
        [&] {
            load(dir / "s.json", {{"min_lr", 1e-5}});
        },
        {"--min-lr", "WarmupLR ends at warmup_min_lr"});
}

// End to end: the Hugging Face ZeRO-3 file with flags; the run prints each
// "auto" value and the schedule, records them, and every step's lr is the
// schedule's (WarmupLR, log warmup over --warmup 4 steps to --lr).
TEST(DeepSpeedConfig, TrainRunUsesTheFileSchedule) {
    TempDir dir;
    const std::string out = dir / "r";
    auto r = zt_test::run_command(zt_test::zerotrain_binary() + " train --config " +
                                  data_file("zero3_auto.json") +
                                  " --data synthetic --steps 6 --warmup 4 --lr 2e-3 --seq-len 16 "
                                  "--micro-batch 2 --eval-every 0 --eval-tokens 256 --no-save "
                                  "--sample-tokens 0 --out " +
                                  out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* want : {"optimizer.params.lr \"auto\" -> 0.002 (--lr)",
                             "scheduler.params.warmup_num_steps \"auto\" -> 4 (--warmup)",
                             "train_batch_size \"auto\" -> 2 (1 rank x micro-batch 2",
                             "zero_optimization.reduce_bucket_size \"auto\" -> 9216",
                             "lr schedule WarmupLR: log warmup from 0 to 0.002 over 4 steps"})
        EXPECT_NE(r.output.find(want), std::string::npos) << "missing '" << want << "' in\n"
                                                          << r.output;
    std::ifstream f(out + "/config.json");
    const nlohmann::json saved = nlohmann::json::parse(f);
    EXPECT_EQ(saved["lr_schedule"], "WarmupLR");
    EXPECT_EQ(saved["zero_stage"], 3);
    EXPECT_EQ(saved["reduce_bucket_size"], 96 * 96);
    // The run config holds the TrainConfig keys (and a record of the model beside them).
    nlohmann::json keys = nlohmann::json::object();
    const nlohmann::ordered_json defaults = train_config_to_json(TrainConfig{});
    for (auto it = defaults.begin(); it != defaults.end(); ++it)
        keys[it.key()] = saved.at(it.key());
    TrainConfig c;
    apply_train_config_json(c, keys, "config.json");
    const zt_test::RunLog log = zt_test::read_run(out);
    ASSERT_EQ(log.steps.size(), 6u);
    for (const auto& [step, line] : log.steps) {
        const double want = 2e-3 * (step <= 1   ? 0.0
                                    : step >= 5 ? 1.0
                                                : std::log(double(step - 1)) / std::log(4.0));
        EXPECT_NEAR(line["lr"].get<double>(), want, 1e-15) << "step " << step;
        EXPECT_DOUBLE_EQ(line["lr"].get<double>(), lr_at_step(c, step - 1));
    }
}

}  // namespace
