// Runs tests/golden/reference.py (PyTorch, Debian's python3-torch) on a
// model config, optimizer settings, weights and tokens, for the golden tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/layout.h"
#include "test_util.h"
#include "zero/engine.h"

namespace zt_test {

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
