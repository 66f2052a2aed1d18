#include "model/layout.h"

#include <cmath>

#include "core/check.h"
#include "core/rng.h"

namespace zt {

const TensorSpec& UnitSpec::tensor(const std::string& tensor_name) const {
    for (const auto& t : tensors)
        if (t.name == tensor_name) return t;
    ZT_FAIL("unit %s has no tensor %s", name.c_str(), tensor_name.c_str());
}

namespace {

// Every tensor starts at a multiple of kTensorAlignElements elements (16 bytes
// in bf16, 32 in fp32), so weight and bias pointers suit vector loads and the
// GPU's GEMM alignment whatever the widths; the gap before it is padding, zero
// like the ZeRO padding. A tensor added with `fused` continues the one before
// it without a gap: q|k|v and gate|up are read as one matrix.
constexpr int64_t kTensorAlignElements = 8;

struct UnitBuilder {
    UnitSpec unit;
    void add(std::string name, std::vector<int64_t> shape, bool decay, ParamInit init,
             bool fused = false) {
        TensorSpec t;
        t.name = std::move(name);
        t.shape = std::move(shape);
        t.numel = 1;
        for (int64_t s : t.shape) t.numel *= s;
        if (!fused)
            unit.numel = (unit.numel + kTensorAlignElements - 1) / kTensorAlignElements *
                         kTensorAlignElements;
        t.offset = unit.numel;
        t.decay = decay;
        t.init = init;
        unit.numel += t.numel;
        unit.tensors.push_back(std::move(t));
    }
};

constexpr bool kDecay = true, kNoDecay = false;

UnitSpec llama_block(const ModelConfig& c, int i) {
    int64_t C = c.d_model, D = c.head_dim(), H = c.d_ff;
    std::string p = "model.layers." + std::to_string(i) + ".";
    UnitBuilder b;
    b.unit.name = "block." + std::to_string(i);
    b.add(p + "input_layernorm.weight", {C}, kNoDecay, ParamInit::ones);
    b.add(p + "self_attn.q_proj.weight", {c.n_head * D, C}, kDecay, ParamInit::normal);
    b.add(p + "self_attn.k_proj.weight", {c.n_kv_head * D, C}, kDecay, ParamInit::normal, true);
    b.add(p + "self_attn.v_proj.weight", {c.n_kv_head * D, C}, kDecay, ParamInit::normal, true);
    b.add(p + "self_attn.o_proj.weight", {C, c.n_head * D}, kDecay, ParamInit::normal_residual);
    b.add(p + "post_attention_layernorm.weight", {C}, kNoDecay, ParamInit::ones);
    b.add(p + "mlp.gate_proj.weight", {H, C}, kDecay, ParamInit::normal);
    b.add(p + "mlp.up_proj.weight", {H, C}, kDecay, ParamInit::normal, true);
    b.add(p + "mlp.down_proj.weight", {C, H}, kDecay, ParamInit::normal_residual);
    return b.unit;
}

UnitSpec gpt2_block(const ModelConfig& c, int i) {
    int64_t C = c.d_model, H = c.d_ff;
    std::string p = "transformer.h." + std::to_string(i) + ".";
    UnitBuilder b;
    b.unit.name = "block." + std::to_string(i);
    b.add(p + "ln_1.weight", {C}, kNoDecay, ParamInit::ones);
    b.add(p + "ln_1.bias", {C}, kNoDecay, ParamInit::zeros);
    b.add(p + "attn.c_attn.weight", {3 * C, C}, kDecay, ParamInit::normal);
    b.add(p + "attn.c_attn.bias", {3 * C}, kNoDecay, ParamInit::zeros);
    b.add(p + "attn.c_proj.weight", {C, C}, kDecay, ParamInit::normal_residual);
    b.add(p + "attn.c_proj.bias", {C}, kNoDecay, ParamInit::zeros);
    b.add(p + "ln_2.weight", {C}, kNoDecay, ParamInit::ones);
    b.add(p + "ln_2.bias", {C}, kNoDecay, ParamInit::zeros);
    b.add(p + "mlp.c_fc.weight", {H, C}, kDecay, ParamInit::normal);
    b.add(p + "mlp.c_fc.bias", {H}, kNoDecay, ParamInit::zeros);
    b.add(p + "mlp.c_proj.weight", {C, H}, kDecay, ParamInit::normal_residual);
    b.add(p + "mlp.c_proj.bias", {C}, kNoDecay, ParamInit::zeros);
    return b.unit;
}

}  // namespace

ModelLayout model_layout(const ModelConfig& c) {
    validate_model_config(c);
    int64_t C = c.d_model, V = c.vocab_size;
    bool llama = c.arch == Arch::llama;
    ModelLayout layout;

    UnitBuilder embed;
    embed.unit.name = "embed";
    if (llama) {
        embed.add("model.embed_tokens.weight", {V, C}, kNoDecay, ParamInit::normal);
    } else {
        embed.add("transformer.wte.weight", {V, C}, kNoDecay, ParamInit::normal);
        embed.add("transformer.wpe.weight", {c.max_seq, C}, kNoDecay, ParamInit::normal);
    }
    layout.units.push_back(embed.unit);

    for (int i = 0; i < c.n_layer; i++)
        layout.units.push_back(llama ? llama_block(c, i) : gpt2_block(c, i));

    UnitBuilder head;
    head.unit.name = "head";
    if (llama) {
        head.add("model.norm.weight", {C}, kNoDecay, ParamInit::ones);
    } else {
        head.add("transformer.ln_f.weight", {C}, kNoDecay, ParamInit::ones);
        head.add("transformer.ln_f.bias", {C}, kNoDecay, ParamInit::zeros);
    }
    if (!c.tie_embeddings) head.add("lm_head.weight", {V, C}, kDecay, ParamInit::normal);
    layout.units.push_back(head.unit);

    int64_t params = 0;
    for (auto& u : layout.units) {
        u.numel =
            (u.numel + kTensorAlignElements - 1) / kTensorAlignElements * kTensorAlignElements;
        layout.total_numel += u.numel;
        for (const auto& t : u.tensors) params += t.numel;
    }
    ZT_CHECK(params == count_params(c),
             "internal: layout holds %lld parameters but the closed form gives %lld",
             (long long)params, (long long)count_params(c));
    return layout;
}

void init_unit_params(const ModelConfig& c, const UnitSpec& unit, int unit_index, uint64_t seed,
                      float* out) {
    const float std_normal = 0.02f;
    const float std_residual = 0.02f / std::sqrt(2.0f * float(c.n_layer));
    for (size_t t = 0; t < unit.tensors.size(); t++) {
        const TensorSpec& ts = unit.tensors[t];
        float* p = out + ts.offset;
        uint64_t stream = (uint64_t(unit_index) << 16) | uint64_t(t);
        switch (ts.init) {
            case ParamInit::ones:
                for (int64_t e = 0; e < ts.numel; e++) p[e] = 1.0f;
                break;
            case ParamInit::zeros:
                for (int64_t e = 0; e < ts.numel; e++) p[e] = 0.0f;
                break;
            case ParamInit::normal:
            case ParamInit::normal_residual: {
                float s = ts.init == ParamInit::normal ? std_normal : std_residual;
#pragma omp parallel for schedule(static)
                for (int64_t e = 0; e < ts.numel; e++)
                    p[e] = s * rng_normal(seed, stream, uint64_t(e));
                break;
            }
        }
    }
}

namespace {

// Offset of the tensor whose name ends with `suffix`, or -1 if `optional` and absent.
int64_t slot(const UnitSpec& u, const std::string& suffix, bool optional = false) {
    for (const auto& t : u.tensors)
        if (t.name.size() >= suffix.size() &&
            t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0)
            return t.offset;
    ZT_CHECK(optional, "unit %s has no tensor named *%s", u.name.c_str(), suffix.c_str());
    return -1;
}

}  // namespace

BlockSlots block_slots(const ModelConfig& c, const UnitSpec& b) {
    BlockSlots s;
    if (c.arch == Arch::llama) {
        s.attn_norm = slot(b, "input_layernorm.weight");
        s.wqkv = slot(b, "self_attn.q_proj.weight");
        s.wo = slot(b, "self_attn.o_proj.weight");
        s.mlp_norm = slot(b, "post_attention_layernorm.weight");
        s.w_fc = slot(b, "mlp.gate_proj.weight");
        s.w_proj = slot(b, "mlp.down_proj.weight");
        // The fused matrices read q|k|v and gate|up as one: they must be adjacent.
        int64_t q_numel = int64_t(c.n_head) * c.head_dim() * c.d_model;
        int64_t kv_numel = int64_t(c.n_kv_head) * c.head_dim() * c.d_model;
        int64_t k = slot(b, "self_attn.k_proj.weight");
        ZT_CHECK(k == s.wqkv + q_numel && slot(b, "self_attn.v_proj.weight") == k + kv_numel &&
                     slot(b, "mlp.up_proj.weight") == s.w_fc + int64_t(c.d_ff) * c.d_model,
                 "internal: unit %s does not keep q|k|v and gate|up adjacent", b.name.c_str());
    } else {
        s.attn_norm = slot(b, "ln_1.weight");
        s.attn_norm_bias = slot(b, "ln_1.bias");
        s.wqkv = slot(b, "attn.c_attn.weight");
        s.bqkv = slot(b, "attn.c_attn.bias");
        s.wo = slot(b, "attn.c_proj.weight");
        s.bo = slot(b, "attn.c_proj.bias");
        s.mlp_norm = slot(b, "ln_2.weight");
        s.mlp_norm_bias = slot(b, "ln_2.bias");
        s.w_fc = slot(b, "mlp.c_fc.weight");
        s.b_fc = slot(b, "mlp.c_fc.bias");
        s.w_proj = slot(b, "mlp.c_proj.weight");
        s.b_proj = slot(b, "mlp.c_proj.bias");
    }
    return s;
}

EmbedSlots embed_slots(const ModelConfig& c, const UnitSpec& e) {
    EmbedSlots s;
    s.wte = slot(e, c.arch == Arch::llama ? "embed_tokens.weight" : "wte.weight");
    if (c.arch == Arch::gpt2) s.wpe = slot(e, "wpe.weight");
    return s;
}

HeadSlots head_slots(const ModelConfig& c, const UnitSpec& h) {
    HeadSlots s;
    if (c.arch == Arch::llama) {
        s.norm = slot(h, "model.norm.weight");
    } else {
        s.norm = slot(h, "ln_f.weight");
        s.norm_bias = slot(h, "ln_f.bias");
    }
    s.lm_head = slot(h, "lm_head.weight", /*optional=*/true);
    ZT_CHECK((s.lm_head < 0) == c.tie_embeddings,
             "internal: unit %s %s an lm_head but tie_word_embeddings is %s", h.name.c_str(),
             s.lm_head < 0 ? "lacks" : "has", c.tie_embeddings ? "true" : "false");
    return s;
}

}  // namespace zt
