// Parameter layout: the model as a sequence of units, each one flat buffer.
//
// Unit 0 is the embedding, units 1..L the blocks, unit L+1 the final norm and
// (untied) head. Inside a unit the tensors sit in a fixed order chosen so the
// fused matmuls read contiguous weights: q|k|v projections back to back form
// one (QKV, C) matrix, gate|up one (2H, C) matrix. This layout is what ZeRO
// shards, buckets and checkpoints; tensor names are Hugging Face's, weights
// are (out_features, in_features) in every family (GPT-2 included).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace zt {

enum class ParamInit { normal, normal_residual, ones, zeros };

struct TensorSpec {
    std::string name;            // Hugging Face name, e.g. model.layers.0.self_attn.q_proj.weight
    std::vector<int64_t> shape;  // (out, in) for matrices
    int64_t offset = 0;          // elements from the start of the unit, a multiple of 8
    int64_t numel = 0;
    bool decay = true;  // weight decay applies (matrices; not norms, biases, embeddings)
    ParamInit init = ParamInit::normal;
};

struct UnitSpec {
    std::string name;  // "embed", "block.3", "head"
    // Elements, a multiple of 8: the tensors and the zero padding that starts
    // each of them on 16 bytes (none when every width is a multiple of 8).
    int64_t numel = 0;
    std::vector<TensorSpec> tensors;

    const TensorSpec& tensor(const std::string& name) const;
};

struct ModelLayout {
    std::vector<UnitSpec> units;
    int64_t total_numel = 0;  // the units' numel: count_params plus any alignment padding

    int n_units() const { return int(units.size()); }
    static int embed_unit() { return 0; }
    static int block_unit(int layer) { return 1 + layer; }
    int head_unit() const { return n_units() - 1; }
};

ModelLayout model_layout(const ModelConfig& c);

// Where a unit's named tensors sit inside it: element offsets resolved once
// from the layout by name (-1: the family has no such tensor), so the model
// reads w.wqkv, not tensors[1]. The q|k|v and gate|up tensors are adjacent in
// the layout, so one offset addresses each fused matrix.
struct BlockSlots {
    int64_t attn_norm = -1, attn_norm_bias = -1;  // (C)
    int64_t wqkv = -1, bqkv = -1;                 // (QKV, C), (QKV)
    int64_t wo = -1, bo = -1;                     // (C, NH HD), (C)
    int64_t mlp_norm = -1, mlp_norm_bias = -1;    // (C)
    int64_t w_fc = -1, b_fc = -1;      // (2H, C) gate|up (LLaMA) or (H, C) c_fc (GPT-2), (H)
    int64_t w_proj = -1, b_proj = -1;  // (C, H) down_proj / mlp.c_proj, (C)
};
struct EmbedSlots {
    int64_t wte = -1;  // (V, C)
    int64_t wpe = -1;  // (max_seq, C), GPT-2
};
struct HeadSlots {
    int64_t norm = -1, norm_bias = -1;  // (C) final norm
    int64_t lm_head = -1;               // (V, C); -1 when tied to the embedding
};
BlockSlots block_slots(const ModelConfig& c, const UnitSpec& block);
EmbedSlots embed_slots(const ModelConfig& c, const UnitSpec& embed);
HeadSlots head_slots(const ModelConfig& c, const UnitSpec& head);

// A block's tensors as pointers of element type T (parameters or gradients).
template <class T>
struct BlockWeights {
    T *attn_norm, *attn_norm_bias, *wqkv, *bqkv, *wo, *bo;
    T *mlp_norm, *mlp_norm_bias, *w_fc, *b_fc, *w_proj, *b_proj;

    static BlockWeights at(T* base, const BlockSlots& s) {
        auto p = [base](int64_t off) { return off < 0 ? nullptr : base + off; };
        return {p(s.attn_norm), p(s.attn_norm_bias), p(s.wqkv),          p(s.bqkv), p(s.wo),
                p(s.bo),        p(s.mlp_norm),       p(s.mlp_norm_bias), p(s.w_fc), p(s.b_fc),
                p(s.w_proj),    p(s.b_proj)};
    }
};

// Deterministic initialisation (GPT-2's: normal(0, 0.02), residual output
// projections scaled by 1/sqrt(2L), norms 1, biases 0). Element e of tensor t
// of unit u depends only on (seed, u, t, e), so any slice can be initialised
// on its own and every world size starts from identical weights.
void init_unit_params(const ModelConfig& c, const UnitSpec& unit, int unit_index, uint64_t seed,
                      float* out);

}  // namespace zt
