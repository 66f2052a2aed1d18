// Llama 3's RoPE frequency rescaling (config.json rope_scaling, rope_type
// "llama3") against PyTorch: the frequencies and tables bit for bit against
// transformers' float32 arithmetic (tests/rope/llama3_reference.py), a scaled
// model's logits and every gradient against the float64 golden reference, the
// exported folder read back by an independent PyTorch reading; and the record
// of the scaling in checkpoints, exports and the presets.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ckpt/hf.h"
#include "core/rng.h"
#include "golden_reference.h"
#include "model/config.h"
#include "model/model.h"
#include "ops/rope.h"
#include "test_util.h"
#include "zero/engine.h"

namespace {

using namespace zt;
using zt_test::TempDir;

bool python_torch_available(std::string* why) {
    auto r = zt_test::run_command("/usr/bin/python3 -c 'import torch, numpy'");
    if (r.exit_code != 0) *why = "/usr/bin/python3 cannot import torch and numpy: " + r.output;
    return r.exit_code == 0;
}

struct ScalingCase {
    const char* what;
    int head_dim;
    float theta;
    RopeScaling scaling;
};

// Llama 3.2 1B's and 3.1 8B's published settings, test-tiny's head with a short
// original context (all three regions within 12 frequencies), and factors that
// are not small integers.
const ScalingCase kCases[] = {
    {"Llama-3.2-1B", 64, 500000.0f, {32.0f, 1.0f, 4.0f, 8192}},
    {"Llama-3.1-8B", 128, 500000.0f, {8.0f, 1.0f, 4.0f, 8192}},
    {"test-tiny head", 24, 10000.0f, {4.0f, 1.0f, 4.0f, 64}},
    {"odd factors", 32, 10000.0f, {6.5f, 1.5f, 3.7f, 100}},
};

TEST(RopeLlama3, FrequenciesAndTablesMatchPyTorchFloat32) {
    std::string why;
    if (!python_torch_available(&why)) GTEST_SKIP() << why;
    const std::vector<int> positions = {0, 1, 17, 2047, 8191, 131071};
    nlohmann::json cases = nlohmann::json::array();
    for (const ScalingCase& c : kCases)
        cases.push_back({{"head_dim", c.head_dim},
                         {"rope_theta", c.theta},
                         {"factor", c.scaling.factor},
                         {"low_freq_factor", c.scaling.low_freq_factor},
                         {"high_freq_factor", c.scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.scaling.original_max_position},
                         {"positions", positions}});
    TempDir dir;
    std::ofstream(dir / "cases.json") << cases.dump();
    auto r = zt_test::run_command("/usr/bin/python3 " + zt_test::source_dir() +
                                  "/tests/rope/llama3_reference.py " + (dir / "cases.json") + " " +
                                  (dir / "out.json"));
    ASSERT_EQ(r.exit_code, 0) << "tests/rope/llama3_reference.py failed:\n" << r.output;
    std::ifstream f(dir / "out.json");
    const nlohmann::json ref = nlohmann::json::parse(f);
    ASSERT_EQ(ref.size(), std::size(kCases));

    for (size_t k = 0; k < std::size(kCases); ++k) {
        const ScalingCase& c = kCases[k];
        const int half = c.head_dim / 2;
        std::vector<float> inv(static_cast<size_t>(half)), plain(static_cast<size_t>(half));
        cpu::rope_inv_freq(inv.data(), c.head_dim, c.theta, c.scaling);
        cpu::rope_inv_freq(plain.data(), c.head_dim, c.theta, RopeScaling{});
        ASSERT_EQ(ref[k]["inv_freq"].size(), size_t(half));
        int scaled = 0;
        for (int i = 0; i < half; ++i) {
            // Bit for bit: both follow transformers' float32 steps, and one ulp
            // at i = 0 (w = 1) moves the angle at position 131071 by 1e-2 rad.
            const float want = ref[k]["inv_freq"][size_t(i)].get<float>();
            EXPECT_EQ(inv[size_t(i)], want) << c.what << " inv_freq[" << i << "]";
            scaled += inv[size_t(i)] != plain[size_t(i)];
        }
        EXPECT_GT(scaled, 0) << c.what << ": the scaling changed no frequency";
        EXPECT_LT(scaled, half) << c.what << ": the scaling changed every frequency";

        // The table at the listed positions: cos/sin of the same float angle,
        // evaluated in double by both, then rounded to float here (<= 6e-8).
        const int T = positions.back() + 1;
        std::vector<float> cos(size_t(T) * half), sin(cos.size());
        cpu::rope_table(cos.data(), sin.data(), T, c.head_dim, c.theta, c.scaling);
        double worst = 0;
        for (size_t p = 0; p < positions.size(); ++p)
            for (int i = 0; i < half; ++i) {
                const size_t at = size_t(positions[p]) * half + size_t(i);
                const double ec = std::fabs(cos[at] - ref[k]["cos"][p][size_t(i)].get<double>());
                const double es = std::fabs(sin[at] - ref[k]["sin"][p][size_t(i)].get<double>());
                worst = std::max({worst, ec, es});
                EXPECT_TRUE(ec <= 1e-7 && es <= 1e-7)
                    << c.what << " position " << positions[p] << " pair " << i;
            }
        std::printf("%s: %d of %d frequencies rescaled; worst table error %.2g\n", c.what, scaled,
                    half, worst);
    }
}

// The rule itself in exact arithmetic, region by region, and the float
// frequencies within float rounding of it.
TEST(RopeLlama3, FrequenciesFollowTheLlama3Rule) {
    for (const ScalingCase& c : kCases) {
        const int half = c.head_dim / 2;
        const RopeScaling& s = c.scaling;
        std::vector<double> exact(static_cast<size_t>(half)), plain(static_cast<size_t>(half));
        std::vector<float> f(static_cast<size_t>(half));
        cpu::rope_inv_freq(exact.data(), c.head_dim, c.theta, s);
        cpu::rope_inv_freq(plain.data(), c.head_dim, c.theta, RopeScaling{});
        cpu::rope_inv_freq(f.data(), c.head_dim, c.theta, s);
        const double L = s.original_max_position;
        for (int i = 0; i < half; ++i) {
            const double w = std::pow(double(c.theta), -2.0 * i / c.head_dim);
            EXPECT_DOUBLE_EQ(plain[size_t(i)], w);
            const double wavelen = 2 * M_PI / w;
            double want;
            if (wavelen < L / s.high_freq_factor) {
                want = w;  // high frequency: kept
            } else if (wavelen > L / s.low_freq_factor) {
                want = w / s.factor;  // low frequency: slowed by the factor
            } else {
                const double sm =
                    (L / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                want = (1 - sm) * w / s.factor + sm * w;
                EXPECT_TRUE(want >= w / s.factor && want <= w) << c.what << " " << i;
            }
            EXPECT_NEAR(exact[size_t(i)], want, 1e-15 * want) << c.what << " " << i;
            // Float: a handful of roundings of ~6e-8 each.
            EXPECT_TRUE(std::fabs(f[size_t(i)] - want) <= 4e-7 * want)
                << c.what << " " << i << ": " << f[size_t(i)] << " vs " << want;
        }
    }
}

// test-tiny with the scaling: its regions are kCases[2]'s.
ModelConfig scaled_test_tiny() {
    ModelConfig cfg = model_preset("test-tiny");
    cfg.rope_scaling = kCases[2].scaling;
    return cfg;
}

// Forward and backward of a scaled model against the float64 golden
// reference, which applies the rule to its float64 frequencies: logits, loss
// and every gradient tensor; and the unscaled model measurably differs, so the
// comparison can fail.
TEST(RopeLlama3, ModelLogitsAndGradientsMatchGoldenReference) {
    std::string why;
    if (!python_torch_available(&why)) GTEST_SKIP() << why;
    constexpr int kB = 2, kT = 32;
    const ModelConfig cfg = scaled_test_tiny();
    EngineOptions opt;
    Engine engine(cfg, opt, nullptr, nullptr);
    engine.load_full_params(zt_test::golden_weights(engine.layout()).data());
    const zt_test::GoldenBatch batch = zt_test::golden_batch(cfg.vocab_size, kB, kT);
    TempDir dir;
    zt_test::GoldenRun run;
    run.batch = kB;
    run.seq_len = kT;
    run.steps = 0;
    run.lr = 1e-3f;
    const zt_test::GoldenReference ref =
        zt_test::run_golden_reference(dir.path(), cfg, opt, run, engine.all_params(), batch.tokens);
    ASSERT_TRUE(ref.ok);
    ASSERT_EQ(ref.logits.size(), size_t(kB) * kT * cfg.vocab_size);
    ASSERT_EQ(ref.grads.size(), size_t(engine.numel()));

    // fp32 against float64 over a 2-layer model: ~1e-6 (test_golden's bound, 1e-5).
    Model model(cfg, kB, kT, nullptr);
    std::vector<float> logits(ref.logits.size());
    model.forward_logits(engine, batch.inputs.data(), logits.data());
    const double e_logits = zt_test::rel_error(logits.data(), ref.logits.data(), logits.size());
    EXPECT_TRUE(e_logits <= 1e-5) << "logits rel error " << e_logits;

    engine.zero_grads();
    const double loss = model.forward_backward(engine, batch.inputs.data(), batch.targets.data(),
                                               1.0f / float(kB * kT));
    EXPECT_TRUE(std::fabs(loss - ref.loss[0]) <= 1e-5 * std::fabs(ref.loss[0]))
        << loss << " vs " << ref.loss[0];
    int64_t base = 0;
    for (const auto& u : engine.layout().units) {
        for (const auto& t : u.tensors) {
            const size_t o = size_t(base + t.offset);
            const double e =
                zt_test::rel_error(engine.all_grads() + o, ref.grads.data() + o, size_t(t.numel));
            EXPECT_TRUE(e <= 1e-5) << "grad of " << t.name << " rel error " << e;
        }
        base += u.numel;
    }

    // Without the scaling the same weights give other logits, far beyond the bound.
    const ModelConfig unscaled = model_preset("test-tiny");
    Model plain(unscaled, kB, kT, nullptr);
    std::vector<float> plain_logits(logits.size());
    plain.forward_logits(engine, batch.inputs.data(), plain_logits.data());
    const double e_plain =
        zt_test::rel_error(plain_logits.data(), ref.logits.data(), plain_logits.size());
    EXPECT_TRUE(e_plain > 1e-3) << "the scaling does not change the logits: " << e_plain;
    std::printf("llama3-scaled test-tiny vs float64: logits %.2e (unscaled model: %.2e)\n",
                e_logits, e_plain);
}

// Export writes rope_scaling into config.json as transformers reads it; an
// independent PyTorch reading of the folder gives our logits; reading the
// folder back and our own record (checkpoint manifests) give the same config.
TEST(RopeLlama3, ExportAndRecordsRoundTripTheScaling) {
    const ModelConfig cfg = scaled_test_tiny();
    const nlohmann::json rec = model_config_to_json(cfg);
    ASSERT_TRUE(rec["rope_scaling"].is_object()) << rec.dump();
    EXPECT_EQ(rec["rope_scaling"]["rope_type"], "llama3");
    const ModelConfig back = model_config_from_json(rec, "record");
    EXPECT_EQ(model_config_difference(cfg, back), "");
    EXPECT_EQ(back.rope_scaling.original_max_position, 64);
    // A record written before rope_scaling existed reads as unscaled, and the
    // difference names the field.
    nlohmann::json old = rec;
    old.erase("rope_scaling");
    const ModelConfig old_cfg = model_config_from_json(old, "old record");
    EXPECT_FALSE(old_cfg.rope_scaling.enabled());
    EXPECT_NE(model_config_difference(cfg, old_cfg).find("rope_scaling"), std::string::npos);

    EngineOptions opt;
    Engine engine(cfg, opt, nullptr, nullptr);
    engine.init_params(5);
    for (int64_t i = 0; i < engine.numel(); i++)
        engine.all_params()[i] += 0.05f * rng_normal(5, 9, uint64_t(i));
    TempDir dir;
    export_hf(
        cfg,
        [&](int u, float* dst) {
            std::memcpy(dst, engine.unit_params(u),
                        size_t(engine.layout().units[size_t(u)].numel) * sizeof(float));
        },
        dir / "hf");
    std::ifstream f(dir / "hf/config.json");
    const nlohmann::json hf = nlohmann::json::parse(f);
    EXPECT_EQ(hf["rope_scaling"], nlohmann::json({{"rope_type", "llama3"},
                                                  {"factor", 4.0},
                                                  {"low_freq_factor", 1.0},
                                                  {"high_freq_factor", 4.0},
                                                  {"original_max_position_embeddings", 64}}))
        << hf.dump();
    EXPECT_EQ(model_config_difference(cfg, hf_model_config(dir / "hf")), "");

    std::string why;
    if (!python_torch_available(&why)) GTEST_SKIP() << why;
    constexpr int kB = 2, kT = 40;
    Model model(cfg, kB, kT, nullptr);
    std::vector<int32_t> tokens(size_t(kB) * kT);
    Rng rng(9);
    for (auto& t : tokens) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
    std::vector<float> logits(tokens.size() * size_t(cfg.vocab_size));
    model.forward_logits(engine, tokens.data(), logits.data());
    const std::vector<float> ref = zt_test::hf_reference_logits(dir / "hf", dir.path(), tokens, kB);
    ASSERT_EQ(ref.size(), logits.size());
    // As test_hf's interop: fp32 against float64 on the same weights, ~1e-6.
    const double e = zt_test::rel_error(logits.data(), ref.data(), ref.size());
    EXPECT_TRUE(e <= 1e-5) << "logits vs the PyTorch reading of the export: " << e;
}

// The presets of Llama 3.2 1B and 3.1 8B carry their published rope_scaling,
// so each equals its model's config.json read from disk.
TEST(RopeLlama3, PresetsMatchThePublishedConfigs) {
    TempDir dir;
    std::ofstream(dir / "llama-3.2-1b.json") << R"({
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256})";
    std::ofstream(dir / "llama-3.1-8b.json") << R"({
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
        "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";
    testing::internal::CaptureStderr();
    const ModelConfig c1 = model_config_from_hf_json(dir / "llama-3.2-1b.json");
    const ModelConfig c8 = model_config_from_hf_json(dir / "llama-3.1-8b.json");
    const std::string warnings = testing::internal::GetCapturedStderr();
    EXPECT_EQ(warnings, "") << "the published configs hold only known fields";
    EXPECT_EQ(model_config_difference(model_preset("llama-1b"), c1), "");
    EXPECT_EQ(model_config_difference(model_preset("llama-8b"), c8), "");
    EXPECT_FLOAT_EQ(c1.rope_scaling.factor, 32.0f);
    EXPECT_FLOAT_EQ(c8.rope_scaling.factor, 8.0f);
    EXPECT_EQ(c8.rope_scaling.original_max_position, 8192);
    for (const char* unscaled : {"test-tiny", "tiny", "small", "medium", "llama-7b"})
        EXPECT_FALSE(model_preset(unscaled).rope_scaling.enabled()) << unscaled;
}

// ---- config.json fields that change the math -------------------------------------

const std::string kLlama = R"("model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256,
    "max_position_embeddings": 128)";
const std::string kGpt2 = R"("model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
    "vocab_size": 256, "n_positions": 128)";
const std::string kLlama3 = R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 64)";

TEST(HfModelConfig, RefusesUnsupportedMathByName) {
    TempDir dir;
    using Case = zt_test::JsonErrorCase;
    const std::vector<Case> cases = {
        {R"("hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "vocab_size": 256)",
         {"no 'model_type' field", "\"llama\" or \"gpt2\""}},
        {R"("model_type": "mistral", "hidden_size": 64)", {"model_type 'mistral'"}},
        {kLlama + R"(, "hidden_act": "gelu")", {"hidden_act \"gelu\"", "silu"}},
        {kLlama + R"(, "hidden_act": "relu")", {"hidden_act \"relu\""}},
        {kLlama + R"(, "attention_bias": true)", {"attention_bias true", "no biases"}},
        {kLlama + R"(, "mlp_bias": true)", {"mlp_bias true"}},
        {kLlama + R"(, "head_dim": 32)", {"head_dim 32", "64 / 4"}},
        {kLlama + R"(, "rope_scaling": {"rope_type": "linear", "factor": 2.0})",
         {"rope_scaling.rope_type 'linear'", "llama3"}},
        {kLlama + R"(, "rope_scaling": {"type": "dynamic", "factor": 2.0})",
         {"rope_type 'dynamic'"}},
        {kLlama + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
            "original_max_position_embeddings": 32})",
         {"rope_type 'yarn'"}},
        {kLlama + R"(, "rope_scaling": {"rope_type": "llama3", "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})",
         {"rope_scaling (llama3) has no 'factor'"}},
        {kLlama + R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0})",
         {"original_max_position_embeddings"}},
        {kLlama +
             R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
            "high_freq_factor": 1.0, "original_max_position_embeddings": 64})",
         {"high_freq_factor 1 must exceed low_freq_factor 4"}},
        {kLlama +
             R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64, "attention_factor": 2})",
         {"rope_scaling.attention_factor"}},
        {kLlama + R"(, "rope_scaling": "llama3")", {"'rope_scaling' must be an object"}},
        {kLlama + R"(, "attention_bias": "no")", {"'attention_bias' must be true or false"}},
        {kLlama + R"(, "quantization_config": {"quant_method": "gptq"})", {"quantization_config"}},
        {kGpt2 + R"(, "activation_function": "relu")",
         {"activation_function \"relu\"", "gelu_new"}},
        {kGpt2 + R"(, "activation_function": "gelu")", {"activation_function \"gelu\""}},
        {kGpt2 + R"(, "scale_attn_by_inverse_layer_idx": true)",
         {"scale_attn_by_inverse_layer_idx true"}},
        {kGpt2 + R"(, "scale_attn_weights": false)", {"scale_attn_weights false"}},
        {kGpt2 + R"(, "rope_scaling": )" + kLlama3 + "}", {"rope_scaling", "no RoPE"}},
    };
    zt_test::expect_json_errors(dir.path(), cases,
                                [&](const std::string& p) { model_config_from_hf_json(p); });
}

TEST(HfModelConfig, AcceptsWhatMeansTheSame) {
    TempDir dir;
    auto load = [&](const std::string& name, const std::string& json, std::string* err) {
        std::ofstream(dir / name) << "{" << json << "}";
        testing::internal::CaptureStderr();
        ModelConfig c = model_config_from_hf_json(dir / name);
        *err = testing::internal::GetCapturedStderr();
        return c;
    };
    std::string err;
    // The values zerotrain computes, written out, and llama3 scaling.
    ModelConfig l = load("llama.json",
                         kLlama + R"(, "hidden_act": "silu", "attention_bias": false,
        "mlp_bias": false, "head_dim": 16, "rope_scaling": )" +
                             kLlama3 + R"(}, "torch_dtype": "bfloat16", "bos_token_id": 1,
        "eos_token_id": 2, "pad_token_id": null, "architectures": ["LlamaForCausalLM"],
        "transformers_version": "4.45.0", "use_cache": true, "tie_word_embeddings": true,
        "initializer_range": 0.02, "pretraining_tp": 1, "attention_dropout": 0.0)",
                         &err);
    EXPECT_EQ(err, "");
    EXPECT_TRUE(l.tie_embeddings);
    EXPECT_FLOAT_EQ(l.rope_scaling.factor, 8.0f);
    EXPECT_EQ(l.rope_scaling.original_max_position, 64);
    // rope_type default is no scaling; null is none.
    l = load("default.json", kLlama + R"(, "rope_scaling": {"rope_type": "default"})", &err);
    EXPECT_FALSE(l.rope_scaling.enabled());
    l = load("null.json", kLlama + R"(, "rope_scaling": null)", &err);
    EXPECT_FALSE(l.rope_scaling.enabled());

    // GPT-2's tanh GELU under both names; openai-community/gpt2's own fields.
    for (const char* act : {"gelu_new", "gelu_pytorch_tanh"}) {
        ModelConfig g = load(std::string(act) + ".json",
                             kGpt2 + R"(, "activation_function": ")" + act + "\"", &err);
        EXPECT_EQ(g.arch, Arch::gpt2);
        EXPECT_EQ(err, "") << act;
    }
    ModelConfig g = load("gpt2.json", R"("activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 50256,
        "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
        "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
        "summary_activation": null, "summary_first_dropout": 0.1, "summary_proj_to_labels": true,
        "summary_type": "cls_index", "summary_use_proj": true,
        "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
        "vocab_size": 50257)",
                         &err);
    EXPECT_EQ(count_params(g), 124439808);
    // GPT-2's dropout is named, not silently dropped: zerotrain trains without it.
    for (const char* k : {"attn_pdrop 0.1", "embd_pdrop 0.1", "resid_pdrop 0.1", "without dropout"})
        EXPECT_NE(err.find(k), std::string::npos) << err;

    // A field zerotrain does not know is reported by name, not silently skipped.
    load("unknown.json", kLlama + R"(, "sliding_window": 4096)", &err);
    EXPECT_NE(err.find("'sliding_window'"), std::string::npos) << err;
    EXPECT_NE(err.find("not read"), std::string::npos) << err;
}

}  // namespace
