// Runs tests/golden/reference.py (PyTorch, Debian's python3-torch) on a
// model config, optimizer settings, weights and tokens, for the golden tests.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/config.h"
#include "model/layout.h"
#include "test_util.h"
#include "zero/engine.h"

namespace zt_test {

// Weights far from the default init, so attention patterns, norms and biases
// all matter: matrices N(0, 0.3^2)/sqrt-ish, norm gains 1 + N(0, 0.1^2), biases
// N(0, 0.1^2). Model order without padding (layout.total_numel).
inline std::vector<float> golden_weights(const zt::ModelLayout& layout) {
    std::vector<float> w(size_t(layout.total_numel));
    int64_t base = 0;
    for (int u = 0; u < layout.n_units(); u++) {
        const zt::UnitSpec& us = layout.units[size_t(u)];
        for (size_t t = 0; t < us.tensors.size(); t++) {
            const zt::TensorSpec& ts = us.tensors[t];
            float scale = ts.shape.size() == 2 ? 1.0f / std::sqrt(float(ts.shape[1])) * 1.5f : 0.1f;
            float b = ts.init == zt::ParamInit::ones ? 1.0f : 0.0f;
            for (int64_t i = 0; i < ts.numel; i++)
                w[size_t(base + ts.offset + i)] =
                    b + scale * zt::rng_normal(77, uint64_t(u * 100 + int(t)), uint64_t(i));
        }
        base += us.numel;
    }
    return w;
}

// Random tokens (batch, seq_len + 1) and the inputs and targets (batch,
// seq_len) they give: the first seq_len of each row, and the last seq_len.
struct GoldenBatch {
    std::vector<int32_t> tokens, inputs, targets;
};
inline GoldenBatch golden_batch(int vocab_size, int batch, int seq_len) {
    GoldenBatch g;
    g.tokens.resize(size_t(batch) * (seq_len + 1));
    g.inputs.resize(size_t(batch) * seq_len);
    g.targets.resize(size_t(batch) * seq_len);
    zt::Rng rng(5);
    for (auto& t : g.tokens) t = int32_t(rng.below(uint64_t(vocab_size)));
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq_len; t++) {
            g.inputs[size_t(b * seq_len + t)] = g.tokens[size_t(b * (seq_len + 1) + t)];
            g.targets[size_t(b * seq_len + t)] = g.tokens[size_t(b * (seq_len + 1) + t + 1)];
        }
    return g;
}

struct GoldenRun {
    int batch = 0, seq_len = 0, steps = 0;
    float lr = 0;
    std::string dtype = "float64";  // the reference's dtype: float64 or float32
    bool autocast = false;          // forward and loss under CPU bf16 autocast
};

struct GoldenReference {
    bool ok = false;  // the script ran; a failure has been reported
    std::vector<float> logits;  // (B, T, V) of the initial weights
    std::vector<float> loss;    // (1,)
    std::vector<float> grads;   // in the weights' layout
    std::vector<float> losses;  // (steps,) before each AdamW update
};

// Writes reference.py's inputs into dir (see its docstring), runs it and reads
// its outputs. weights: every unit's tensors back to back (layout.total_numel);
// tokens: (batch, seq_len + 1). Weight decay and clipping come from opt.
inline GoldenReference run_golden_reference(const std::string& dir, const zt::ModelConfig& cfg,
                                            const zt::EngineOptions& opt, const GoldenRun& run,
                                            const float* weights,
                                            const std::vector<int32_t>& tokens) {
    nlohmann::json conf = {{"arch", zt::arch_name(cfg.arch)},
                           {"vocab_size", cfg.vocab_size},
                           {"hidden_size", cfg.d_model},
                           {"num_hidden_layers", cfg.n_layer},
                           {"num_attention_heads", cfg.n_head},
                           {"num_key_value_heads", cfg.n_kv_head},
                           {"intermediate_size", cfg.d_ff},
                           {"max_position_embeddings", cfg.max_seq},
                           {"norm_eps", cfg.norm_eps},
                           {"rope_theta", cfg.rope_theta},
                           {"tie_word_embeddings", cfg.tie_embeddings},
                           {"batch", run.batch},
                           {"seq_len", run.seq_len},
                           {"steps", run.steps},
                           {"lr", run.lr},
                           {"beta1", opt.beta1},
                           {"beta2", opt.beta2},
                           {"adam_eps", opt.adam_eps},
                           {"weight_decay", opt.weight_decay},
                           {"grad_clip", opt.grad_clip},
                           {"dtype", run.dtype}};
    if (run.autocast) conf["autocast"] = true;
    if (cfg.rope_scaling.enabled()) conf["rope_scaling"] = zt::rope_scaling_to_hf_json(cfg);
    const zt::ModelLayout layout = zt::model_layout(cfg);
    nlohmann::json specs = nlohmann::json::array();
    int64_t base = 0;
    for (const auto& u : layout.units) {
        for (const auto& t : u.tensors)
            specs.push_back({{"name", t.name},
                             {"shape", t.shape},
                             {"offset", base + t.offset},
                             {"decay", t.decay}});
        base += u.numel;
    }
    std::ofstream(dir + "/config.json") << conf.dump();
    std::ofstream(dir + "/params.json") << specs.dump();
    write_raw(dir + "/params.bin", weights, size_t(layout.total_numel));
    write_raw(dir + "/tokens.bin", tokens.data(), tokens.size());

    GoldenReference ref;
    const std::string out = dir + "/out";
    auto r = run_command("/usr/bin/python3 " + source_dir() + "/tests/golden/reference.py " + dir +
                         " " + out);
    EXPECT_EQ(r.exit_code, 0) << "the PyTorch reference (" << run.dtype
                              << (run.autocast ? ", autocast" : "")
                              << ") failed (is python3-torch installed?):\n"
                              << r.output;
    if (r.exit_code != 0) return ref;
    ref.ok = true;
    ref.logits = read_floats(out + "/logits.bin");
    ref.loss = read_floats(out + "/loss.bin");
    ref.grads = read_floats(out + "/grads.bin");
    ref.losses = read_floats(out + "/losses.bin");
    return ref;
}

}  // namespace zt_test
