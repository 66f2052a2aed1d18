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
    int64_t offset = 0;          // elements from the start of the unit
    int64_t numel = 0;
    bool decay = true;  // weight decay applies (matrices; not norms, biases, embeddings)
    ParamInit init = ParamInit::normal;
};

struct UnitSpec {
    std::string name;  // "embed", "block.3", "head"
    int64_t numel = 0;
    std::vector<TensorSpec> tensors;

    const TensorSpec& tensor(const std::string& name) const;
};

struct ModelLayout {
    std::vector<UnitSpec> units;
    int64_t total_numel = 0;

    int n_units() const { return int(units.size()); }
    static int embed_unit() { return 0; }
    static int block_unit(int layer) { return 1 + layer; }
    int head_unit() const { return n_units() - 1; }
};

ModelLayout model_layout(const ModelConfig& c);

// Deterministic initialisation (GPT-2's: normal(0, 0.02), residual output
// projections scaled by 1/sqrt(2L), norms 1, biases 0). Element e of tensor t
// of unit u depends only on (seed, u, t, e), so any slice can be initialised
// on its own and every world size starts from identical weights.
void init_unit_params(const ModelConfig& c, const UnitSpec& unit, int unit_index, uint64_t seed,
                      float* out);

}  // namespace zt
