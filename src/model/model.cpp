#include "model/model.h"

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "ops/backend.h"
#include "prof/timer.h"

namespace zt {

// Saved activations (forward) and gradient scratch (backward), all in one
// arena. S is the storage type (float or bf16); per-row statistics, RoPE
// tables, losses and the classifier's logits are fp32 whatever S is.
// Recompute (activations.h) makes layers alias: with attn every layer's att is
// one shared buffer, with full every layer is one shared set; the residual
// stream is always kept whole.
template <class S>
struct Model::Acts {
    struct Layer {
        S* ln1;         // (N, C) normalised block input
        float* ln1_mu;  // (N) LayerNorm mean (GPT-2 only)
        float* ln1_rs;  // (N) rstd
        S* qkv;         // (N, QKV) projections, q and k rotated (LLaMA)
        S* att;         // (B, NH, T, T) attention probabilities
        S* atty;        // (N, C) attention output before o_proj / c_proj
        S* x_mid;       // (N, C) residual after attention
        S* ln2;         // (N, C)
        float* ln2_mu;  // (N)
        float* ln2_rs;  // (N)
        S* fc;          // (N, 2H) gate|up (LLaMA) or (N, H) pre-GELU (GPT-2)
        S* act;         // (N, H) swiglu / gelu output
    };
    std::vector<S*> residual;  // L + 1 entries of (N, C): block inputs, then final
    std::vector<Layer> layers;
    S* lnf;                     // (N, C) final norm output
    float* lnf_mu;              // (N)
    float* lnf_rs;              // (N)
    float* rope_cos = nullptr;  // (T, D/2)
    float* rope_sin = nullptr;  // (T, D/2)
    float* losses;              // (N)
    float* logits_scratch;      // (chunk_rows, V)
    int chunk_rows;
    // backward scratch
    S* dres;      // (N, C) gradient on the residual stream
    S* dnorm;     // (N, C) gradient at a norm's output
    S* dqkv;      // (N, QKV)
    S* dqkv_rot;  // (N, QKV) gradient before RoPE
    S* datty;     // (N, C)
    S* dfc;       // (N, 2H) or (N, H)
    S* dact;      // (N, H)
};

namespace {

// Arena bytes for one layout pass: every alloc below rounded as the arena does.
struct Sizer {
    size_t bytes = 0;
    void add(int64_t n, size_t elem) { bytes += Arena::aligned(size_t(n) * elem); }
};

// Rows of logits the fused classifier holds at once on `device`.
int classifier_chunk_rows(int64_t N, int V, Device device) {
#if ZT_HAVE_CUDA
    if (device == Device::cuda) return cuda_classifier_chunk_rows(N, V);
#endif
    ZT_CHECK(device == Device::cpu,
             "--device cuda: this build has no CUDA backend (configure "
             "with -DZT_CUDA=ON on a machine with the CUDA toolkit)");
    return cpu_classifier_chunk_rows(N, V);
}

// Sets of per-layer activations (Acts::Layer) a recompute mode allocates.
int layer_sets(const ModelConfig& c, Recompute r) {
    return r == Recompute::full ? 1 : c.n_layer;
}

// The arena's allocations in order: alloc(n, true) for n elements of the
// storage type, alloc(n, false) for n fp32 elements. A zero-sized alloc takes
// no bytes (its pointer is null): with attn each set's att is one, and the
// shared probabilities follow the sets.
template <typename Alloc>
void plan_acts(const ModelConfig& c, int B, int T, Recompute r, int chunk_rows, Alloc&& alloc) {
    int64_t N = int64_t(B) * T, C = c.d_model, H = c.d_ff;
    int64_t fc = c.arch == Arch::llama ? 2 * H : H;
    int64_t att = int64_t(B) * c.n_head * T * T;
    bool gpt2 = c.arch == Arch::gpt2;
    const bool S = true, F = false;
    for (int l = 0; l <= c.n_layer; l++) alloc(N * C, S);
    for (int l = 0; l < layer_sets(c, r); l++) {
        alloc(N * C, S);
        alloc(gpt2 ? N : 0, F);
        alloc(N, F);
        alloc(N * c.qkv_dim(), S);
        alloc(r == Recompute::attn ? 0 : att, S);
        alloc(N * C, S);
        alloc(N * C, S);
        alloc(N * C, S);
        alloc(gpt2 ? N : 0, F);
        alloc(N, F);
        alloc(N * fc, S);
        alloc(N * H, S);
    }
    alloc(r == Recompute::attn ? att : 0, S);
    alloc(N * C, S);
    alloc(gpt2 ? N : 0, F);
    alloc(N, F);
    alloc(gpt2 ? 0 : int64_t(T) * (c.head_dim() / 2), F);
    alloc(gpt2 ? 0 : int64_t(T) * (c.head_dim() / 2), F);
    alloc(N, F);
    alloc(int64_t(chunk_rows) * c.vocab_size, F);
    alloc(N * C, S);
    alloc(N * C, S);
    alloc(N * c.qkv_dim(), S);
    alloc(gpt2 ? 0 : N * c.qkv_dim(), S);
    alloc(N * C, S);
    alloc(N * fc, S);
    alloc(N * H, S);
}

size_t storage_size(DType dtype) {
    ZT_CHECK(dtype == DType::f32 || dtype == DType::bf16, "model dtype %s: expected f32 or bf16",
             dtype_name(dtype));
    return dtype_size(dtype);
}

template <class S>
constexpr DType dtype_of() {
    return std::is_same_v<S, float> ? DType::f32 : DType::bf16;
}

}  // namespace

// One micro-batch's passes over activations of storage type S. Parameter
// gradients are written in G, the dtype of the engine's gradient view: float
// with a float model, float or bf16 with a bf16 model.
template <class S, class Ops>
class Model::Pass {
  public:
    Pass(Model& m, Acts<S>& a, Ops& o) : m_(m), c_(m.cfg_), a_(a), o_(o), B_(m.B_), T_(m.T_) {}

    void forward_blocks(UnitHooks& hooks, const int32_t* inputs);
    // Final norm and classifier; with backward, the head's (and a tied
    // embedding's) gradients are produced and a_.dres holds dLoss/d(last residual).
    double head_loss(UnitHooks& hooks, const int32_t* targets, float loss_scale, bool backward);
    void backward_blocks(UnitHooks& hooks);
    void logits(UnitHooks& hooks, float* out);

  private:
    const S* params(UnitHooks& hooks, int unit) {
        Tensor t = hooks.acquire(unit);
        ZT_CHECK(t.device == Ops::kDevice,
                 "unit %d's compute copy is on the %s, but the model runs on the %s: the engine "
                 "and the model must be built for the same --device",
                 unit, t.device == Device::cpu ? "CPU" : "GPU",
                 Ops::kDevice == Device::cpu ? "CPU" : "GPU");
        ZT_CHECK(t.dtype == dtype_of<S>(),
                 "unit %d's compute copy is %s but the model computes in %s", unit,
                 dtype_name(t.dtype), dtype_name(dtype_of<S>()));
        return static_cast<const S*>(t.data);
    }
    // recompute: rerun for the backward into the layer's activations, without
    // the block's output (the next residual, which the backward never reads).
    void block_forward(int layer, const S* params, bool recompute = false);
    template <class G>
    void block_backward(int layer, const S* params, G* grads);
    // Recompute::attn: the layer's probabilities again, from its saved qkv.
    void recompute_attention(int layer);
    const S* final_norm_forward(const S* head_params);
    template <class G>
    void final_norm_backward(const S* head_params, G* head_grads);
    template <class G>
    void head_grads(UnitHooks& hooks, const S* hp, const S* w_cls, const S* xn,
                    const int32_t* targets, float loss_scale, G* head_grad);
    // From the inputs forward_blocks brought in.
    template <class G>
    void embedding_grads(G* grads);
    // Calls f(G*) with the unit's gradient view in its dtype.
    template <class F>
    void with_grads(UnitHooks& hooks, int unit, F&& f);

    Model& m_;
    const ModelConfig& c_;
    Acts<S>& a_;
    Ops& o_;
    int B_, T_;
    const int32_t* inputs_ = nullptr;  // the micro-batch's inputs where the ops read them
};

template <class S, class Ops>
template <class F>
void Model::Pass<S, Ops>::with_grads(UnitHooks& hooks, int unit, F&& f) {
    Tensor g = hooks.unit_grads(unit);
    if (g.dtype == DType::f32) {
        if constexpr (std::is_same_v<S, float> || Ops::kMixedGrads) {
            f(static_cast<float*>(g.data));
            return;
        } else {
            ZT_FAIL(
                "unit %d: fp32 gradients of a bf16 model are not supported on the GPU yet; "
                "use --grad-accum-dtype bf16 (the default with --precision bf16)",
                unit);
        }
    }
    if constexpr (std::is_same_v<S, bf16>) {
        if (g.dtype == DType::bf16) {
            f(static_cast<bf16*>(g.data));
            return;
        }
    }
    ZT_FAIL("unit %d's gradients are %s, which a %s model cannot write", unit, dtype_name(g.dtype),
            dtype_name(dtype_of<S>()));
}

template <class S, class Ops>
void Model::Pass<S, Ops>::block_forward(int layer, const S* params, bool recompute) {
    const BlockWeights<const S> w = BlockWeights<const S>::at(params, m_.blocks_[size_t(layer)]);
    auto& L = a_.layers[size_t(layer)];
    const S* x = a_.residual[size_t(layer)];
    S* x_out = a_.residual[size_t(layer) + 1];
    int64_t N = int64_t(B_) * T_;
    int C = c_.d_model, H = c_.d_ff, QKV = c_.qkv_dim(), D = c_.head_dim();

    if (c_.arch == Arch::llama) {
        o_.rmsnorm_forward(L.ln1, L.ln1_rs, x, w.attn_norm, N, C, c_.norm_eps);
        o_.matmul_forward(L.qkv, L.ln1, w.wqkv, nullptr, N, C, QKV);
        o_.rope_forward(L.qkv, L.qkv, a_.rope_cos, a_.rope_sin, B_, T_, c_.n_head + c_.n_kv_head, D,
                        QKV);
        o_.attention_forward(L.atty, L.att, L.qkv, B_, T_, c_.n_head, c_.n_kv_head, D);
        o_.matmul_forward(L.x_mid, L.atty, w.wo, nullptr, N, C, C);
        o_.add_inplace(L.x_mid, x, N * C);
        o_.rmsnorm_forward(L.ln2, L.ln2_rs, L.x_mid, w.mlp_norm, N, C, c_.norm_eps);
        o_.matmul_forward(L.fc, L.ln2, w.w_fc, nullptr, N, C, 2 * H);
        o_.swiglu_forward(L.act, L.fc, N, H);
        if (recompute) return;
        o_.matmul_forward(x_out, L.act, w.w_proj, nullptr, N, H, C);
    } else {
        o_.layernorm_forward(L.ln1, L.ln1_mu, L.ln1_rs, x, w.attn_norm, w.attn_norm_bias, N, C,
                             c_.norm_eps);
        o_.matmul_forward(L.qkv, L.ln1, w.wqkv, w.bqkv, N, C, QKV);
        o_.attention_forward(L.atty, L.att, L.qkv, B_, T_, c_.n_head, c_.n_kv_head, D);
        o_.matmul_forward(L.x_mid, L.atty, w.wo, w.bo, N, C, C);
        o_.add_inplace(L.x_mid, x, N * C);
        o_.layernorm_forward(L.ln2, L.ln2_mu, L.ln2_rs, L.x_mid, w.mlp_norm, w.mlp_norm_bias, N, C,
                             c_.norm_eps);
        o_.matmul_forward(L.fc, L.ln2, w.w_fc, w.b_fc, N, C, H);
        o_.gelu_forward(L.act, L.fc, N * H);
        if (recompute) return;
        o_.matmul_forward(x_out, L.act, w.w_proj, w.b_proj, N, H, C);
    }
    o_.add_inplace(x_out, L.x_mid, N * C);
}

// The same call as the forward's on the same qkv, so the same probabilities.
// The attention output is written to a_.datty, free until block_backward
// zeroes it for its own use.
template <class S, class Ops>
void Model::Pass<S, Ops>::recompute_attention(int layer) {
    auto& L = a_.layers[size_t(layer)];
    o_.attention_forward(a_.datty, L.att, L.qkv, B_, T_, c_.n_head, c_.n_kv_head, c_.head_dim());
}

// On entry a_.dres holds dLoss/d(block output); on exit dLoss/d(block input).
template <class S, class Ops>
template <class G>
void Model::Pass<S, Ops>::block_backward(int layer, const S* params, G* grads) {
    const BlockSlots& slots = m_.blocks_[size_t(layer)];
    const BlockWeights<const S> w = BlockWeights<const S>::at(params, slots);
    const BlockWeights<G> g = BlockWeights<G>::at(grads, slots);
    auto& L = a_.layers[size_t(layer)];
    Acts<S>& a = a_;
    const S* x = a.residual[size_t(layer)];
    int64_t N = int64_t(B_) * T_;
    int C = c_.d_model, H = c_.d_ff, QKV = c_.qkv_dim(), D = c_.head_dim();
    if (m_.recompute_ == Recompute::attn) recompute_attention(layer);

    if (c_.arch == Arch::llama) {
        o_.zero(a.dact, N * H);
        o_.matmul_backward(a.dact, g.w_proj, static_cast<G*>(nullptr), a.dres, L.act, w.w_proj, N,
                           H, C);
        o_.zero(a.dfc, N * 2 * H);
        o_.swiglu_backward(a.dfc, a.dact, L.fc, N, H);
        o_.zero(a.dnorm, N * C);
        o_.matmul_backward(a.dnorm, g.w_fc, static_cast<G*>(nullptr), a.dfc, L.ln2, w.w_fc, N, C,
                           2 * H);
        o_.rmsnorm_backward(a.dres, g.mlp_norm, a.dnorm, L.x_mid, w.mlp_norm, L.ln2_rs, N, C);

        o_.zero(a.datty, N * C);
        o_.matmul_backward(a.datty, g.wo, static_cast<G*>(nullptr), a.dres, L.atty, w.wo, N, C, C);
        o_.zero(a.dqkv, N * QKV);
        o_.attention_backward(a.dqkv, a.datty, L.qkv, L.att, B_, T_, c_.n_head, c_.n_kv_head, D);
        // RoPE touched the q and k heads only; v's gradient passes through unchanged.
        o_.zero(a.dqkv_rot, N * QKV);
        o_.rope_backward(a.dqkv_rot, a.dqkv, a.rope_cos, a.rope_sin, B_, T_,
                         c_.n_head + c_.n_kv_head, D, QKV);
        int64_t v_off = int64_t(c_.n_head + c_.n_kv_head) * D, v_len = int64_t(c_.n_kv_head) * D;
        o_.copy_columns(a.dqkv_rot, a.dqkv, N, QKV, v_off, v_len);
        o_.zero(a.dnorm, N * C);
        o_.matmul_backward(a.dnorm, g.wqkv, static_cast<G*>(nullptr), a.dqkv_rot, L.ln1, w.wqkv, N,
                           C, QKV);
        o_.rmsnorm_backward(a.dres, g.attn_norm, a.dnorm, x, w.attn_norm, L.ln1_rs, N, C);
    } else {
        o_.zero(a.dact, N * H);
        o_.matmul_backward(a.dact, g.w_proj, g.b_proj, a.dres, L.act, w.w_proj, N, H, C);
        o_.zero(a.dfc, N * H);
        o_.gelu_backward(a.dfc, a.dact, L.fc, N * H);
        o_.zero(a.dnorm, N * C);
        o_.matmul_backward(a.dnorm, g.w_fc, g.b_fc, a.dfc, L.ln2, w.w_fc, N, C, H);
        o_.layernorm_backward(a.dres, g.mlp_norm, g.mlp_norm_bias, a.dnorm, L.x_mid, w.mlp_norm,
                              L.ln2_mu, L.ln2_rs, N, C);

        o_.zero(a.datty, N * C);
        o_.matmul_backward(a.datty, g.wo, g.bo, a.dres, L.atty, w.wo, N, C, C);
        o_.zero(a.dqkv, N * QKV);
        o_.attention_backward(a.dqkv, a.datty, L.qkv, L.att, B_, T_, c_.n_head, c_.n_kv_head, D);
        o_.zero(a.dnorm, N * C);
        o_.matmul_backward(a.dnorm, g.wqkv, g.bqkv, a.dqkv, L.ln1, w.wqkv, N, C, QKV);
        o_.layernorm_backward(a.dres, g.attn_norm, g.attn_norm_bias, a.dnorm, x, w.attn_norm,
                              L.ln1_mu, L.ln1_rs, N, C);
    }
}

template <class S, class Ops>
const S* Model::Pass<S, Ops>::final_norm_forward(const S* hp) {
    int64_t N = int64_t(B_) * T_;
    const HeadSlots& h = m_.head_;
    const S* x = a_.residual[size_t(c_.n_layer)];
    if (c_.arch == Arch::llama)
        o_.rmsnorm_forward(a_.lnf, a_.lnf_rs, x, hp + h.norm, N, c_.d_model, c_.norm_eps);
    else
        o_.layernorm_forward(a_.lnf, a_.lnf_mu, a_.lnf_rs, x, hp + h.norm, hp + h.norm_bias, N,
                             c_.d_model, c_.norm_eps);
    return a_.lnf;
}

// Reads a_.dnorm (the gradient at the final norm's output); leaves a_.dres.
template <class S, class Ops>
template <class G>
void Model::Pass<S, Ops>::final_norm_backward(const S* hp, G* hg) {
    int64_t N = int64_t(B_) * T_;
    int C = c_.d_model;
    const HeadSlots& h = m_.head_;
    const S* x = a_.residual[size_t(c_.n_layer)];
    o_.zero(a_.dres, N * C);
    if (c_.arch == Arch::llama)
        o_.rmsnorm_backward(a_.dres, hg + h.norm, a_.dnorm, x, hp + h.norm, a_.lnf_rs, N, C);
    else
        o_.layernorm_backward(a_.dres, hg + h.norm, hg + h.norm_bias, a_.dnorm, x, hp + h.norm,
                              a_.lnf_mu, a_.lnf_rs, N, C);
}

template <class S, class Ops>
void Model::Pass<S, Ops>::forward_blocks(UnitHooks& hooks, const int32_t* inputs) {
    m_.check_tokens(inputs, "input", 0);
    inputs_ = o_.tokens(inputs, 0);
    const int E = ModelLayout::embed_unit();
    const S* ep = params(hooks, E);
    const S* wpe = m_.embed_.wpe >= 0 ? ep + m_.embed_.wpe : nullptr;
    o_.embedding_forward(a_.residual[0], inputs_, ep + m_.embed_.wte, wpe, B_, T_, c_.d_model);
    hooks.release(E);
    for (int l = 0; l < c_.n_layer; l++) {
        int u = ModelLayout::block_unit(l);
        block_forward(l, params(hooks, u));
        hooks.release(u);
    }
}

template <class S, class Ops>
template <class G>
void Model::Pass<S, Ops>::head_grads(UnitHooks& hooks, const S* hp, const S* w_cls, const S* xn,
                                     const int32_t* targets, float loss_scale, G* hg) {
    int64_t N = int64_t(B_) * T_;
    const int E = ModelLayout::embed_unit();
    o_.zero(a_.dnorm, N * c_.d_model);
    auto classify = [&](auto* dw_cls) {
        o_.classifier_forward_backward(a_.losses, a_.dnorm, dw_cls, xn, w_cls, targets, N,
                                       c_.d_model, c_.vocab_size, loss_scale, a_.logits_scratch,
                                       a_.chunk_rows);
    };
    if (c_.tie_embeddings)
        with_grads(hooks, E, [&](auto* eg) { classify(eg + m_.embed_.wte); });
    else
        classify(hg + m_.head_.lm_head);
    final_norm_backward(hp, hg);
}

// The head: final norm, then the fused classifier + cross-entropy. With
// backward, the head's gradients are produced here, while its parameters are
// acquired. With tied embeddings the classifier's weight is the embedding's,
// so the embedding unit is acquired too and its gradient view receives the
// head's part.
template <class S, class Ops>
double Model::Pass<S, Ops>::head_loss(UnitHooks& hooks, const int32_t* targets, float loss_scale,
                                      bool backward) {
    m_.check_tokens(targets, "target", -1);
    const int32_t* op_targets = o_.tokens(targets, 1);
    const int HU = m_.layout_.head_unit(), E = ModelLayout::embed_unit();
    int64_t N = int64_t(B_) * T_;
    const S* hp = params(hooks, HU);
    const S* w_cls = c_.tie_embeddings ? params(hooks, E) + m_.embed_.wte : hp + m_.head_.lm_head;
    const S* xn = final_norm_forward(hp);
    if (backward) {
        with_grads(hooks, HU,
                   [&](auto* hg) { head_grads(hooks, hp, w_cls, xn, op_targets, loss_scale, hg); });
        hooks.grads_ready(HU);
    } else {
        o_.classifier_forward_backward(
            a_.losses, static_cast<S*>(nullptr), static_cast<S*>(nullptr), xn, w_cls, op_targets, N,
            c_.d_model, c_.vocab_size, 0.0f, a_.logits_scratch, a_.chunk_rows);
    }
    if (c_.tie_embeddings) hooks.release(E);
    hooks.release(HU);

    const float* losses = o_.to_host(a_.losses, N);
    double sum = 0;
    int64_t counted = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        sum += losses[i];
        counted++;
    }
    return counted ? sum / double(counted) : 0.0;
}

// The embedding's backward is a scatter of dres: it needs no parameters.
template <class S, class Ops>
template <class G>
void Model::Pass<S, Ops>::embedding_grads(G* eg) {
    G* dwpe = m_.embed_.wpe >= 0 ? eg + m_.embed_.wpe : nullptr;
    o_.embedding_backward(eg + m_.embed_.wte, dwpe, a_.dres, inputs_, B_, T_, c_.d_model);
}

template <class S, class Ops>
void Model::Pass<S, Ops>::backward_blocks(UnitHooks& hooks) {
    for (int l = c_.n_layer - 1; l >= 0; l--) {
        int u = ModelLayout::block_unit(l);
        const S* p = params(hooks, u);
        if (m_.recompute_ == Recompute::full) block_forward(l, p, true);
        with_grads(hooks, u, [&](auto* g) { block_backward(l, p, g); });
        hooks.grads_ready(u);
        hooks.release(u);
    }
    const int E = ModelLayout::embed_unit();
    with_grads(hooks, E, [&](auto* eg) { embedding_grads(eg); });
    hooks.grads_ready(E);
}

template <class S, class Ops>
void Model::Pass<S, Ops>::logits(UnitHooks& hooks, float* out) {
    const int HU = m_.layout_.head_unit(), E = ModelLayout::embed_unit();
    const int64_t N = int64_t(B_) * T_;
    const S* hp = params(hooks, HU);
    const S* w_cls = c_.tie_embeddings ? params(hooks, E) + m_.embed_.wte : hp + m_.head_.lm_head;
    const S* xn = final_norm_forward(hp);
    float* logits = o_.host_out(out, N * c_.vocab_size);
    o_.matmul_forward(logits, xn, w_cls, nullptr, N, c_.d_model, c_.vocab_size);  // fp32 logits
    o_.finish_host_out();
    if (c_.tie_embeddings) hooks.release(E);
    hooks.release(HU);
}

// ---- Model ---------------------------------------------------------------------

// The backend a model runs its passes on: the CPU's always, the GPU's when
// built with CUDA and asked for.
struct Model::Backends {
    CpuOps cpu;
#if ZT_HAVE_CUDA
    std::unique_ptr<CudaOps> cuda;
#endif
};

Model::Model(const ModelConfig& cfg, int B, int T, MemoryLedger* ledger, DType dtype,
             Recompute recompute, Device device)
    : cfg_(cfg),
      layout_(model_layout(cfg)),
      B_(B),
      T_(T),
      dtype_(dtype),
      recompute_(recompute),
      device_(device),
      backends_(std::make_unique<Backends>()) {
    ZT_CHECK(B > 0, "micro-batch must be positive, got %d", B);
    ZT_CHECK(T > 0, "seq-len must be positive, got %d", T);
    ZT_CHECK(T <= cfg.max_seq, "seq-len %d exceeds the model's maximum of %d (%s)", T, cfg.max_seq,
             cfg.name.c_str());
    for (int l = 0; l < cfg.n_layer; l++)
        blocks_.push_back(block_slots(cfg, layout_.units[size_t(ModelLayout::block_unit(l))]));
    embed_ = embed_slots(cfg, layout_.units[size_t(ModelLayout::embed_unit())]);
    head_ = head_slots(cfg, layout_.units[size_t(layout_.head_unit())]);

    const int64_t N = int64_t(B) * T;
    const int chunk_rows = classifier_chunk_rows(N, cfg.vocab_size, device);
    const size_t ssize = storage_size(dtype);
    Sizer sizer;
    plan_acts(cfg, B, T, recompute, chunk_rows,
              [&](int64_t n, bool s) { sizer.add(n, s ? ssize : sizeof(float)); });
    // The arena: host memory on the CPU, one device allocation on the GPU,
    // carved in the same order and alignment.
    unsigned char* base = nullptr;
    if (device == Device::cpu) {
        arena_ = Arena(sizer.bytes, "activations");
        base = arena_.alloc<unsigned char>(sizer.bytes);
    } else {
#if ZT_HAVE_CUDA
        backends_->cuda = std::make_unique<CudaOps>(N);
        base = static_cast<unsigned char*>(backends_->cuda->alloc_arena(sizer.bytes));
#endif
    }
    activation_bytes_ = int64_t(sizer.bytes);
    ledger_ = ledger;
    if (ledger_) ledger_->add(MemCategory::activations, activation_bytes_);

    std::vector<void*> ptrs;
    size_t used = 0;
    plan_acts(cfg, B, T, recompute, chunk_rows, [&](int64_t n, bool s) {
        const size_t bytes = size_t(n) * (s ? ssize : sizeof(float));
        ptrs.push_back(n ? base + used : nullptr);
        used += Arena::aligned(bytes);
    });
    ZT_CHECK(used == sizer.bytes, "internal: activation plan of %zu bytes carved as %zu",
             sizer.bytes, used);
    auto build = [&](auto& acts) {
        using A = std::remove_reference_t<decltype(*acts)>;
        using St = std::remove_pointer_t<decltype(A::dres)>;
        size_t i = 0;
        auto s = [&]() { return static_cast<St*>(ptrs[i++]); };
        auto f = [&]() { return static_cast<float*>(ptrs[i++]); };
        A& a = *acts;
        for (int l = 0; l <= cfg.n_layer; l++) a.residual.push_back(s());
        a.layers.resize(size_t(layer_sets(cfg, recompute)));
        for (auto& L : a.layers) {
            L.ln1 = s();
            L.ln1_mu = f();
            L.ln1_rs = f();
            L.qkv = s();
            L.att = s();
            L.atty = s();
            L.x_mid = s();
            L.ln2 = s();
            L.ln2_mu = f();
            L.ln2_rs = f();
            L.fc = s();
            L.act = s();
        }
        if (recompute == Recompute::full) {
            const auto shared = a.layers[0];
            a.layers.assign(size_t(cfg.n_layer), shared);
        }
        if (St* shared_att = s())
            for (auto& L : a.layers) L.att = shared_att;
        a.lnf = s();
        a.lnf_mu = f();
        a.lnf_rs = f();
        a.rope_cos = f();
        a.rope_sin = f();
        a.losses = f();
        a.logits_scratch = f();
        a.chunk_rows = chunk_rows;
        a.dres = s();
        a.dnorm = s();
        a.dqkv = s();
        a.dqkv_rot = s();
        a.datty = s();
        a.dfc = s();
        a.dact = s();
        ZT_CHECK(i == ptrs.size(), "internal: activation plan mismatch");
        if (cfg.arch != Arch::llama) return;
        // The RoPE tables are the CPU's (llama3 frequency scaling included),
        // computed on the host and copied to the device when there.
        const size_t half = size_t(T) * size_t(cfg.head_dim() / 2);
        std::vector<float> cos(half), sin(half);
        cpu::rope_table(cos.data(), sin.data(), T, cfg.head_dim(), cfg.rope_theta,
                        cfg.rope_scaling);
        if (device == Device::cpu) {
            std::memcpy(a.rope_cos, cos.data(), half * sizeof(float));
            std::memcpy(a.rope_sin, sin.data(), half * sizeof(float));
        } else {
#if ZT_HAVE_CUDA
            backends_->cuda->upload(a.rope_cos, cos.data(), half * sizeof(float));
            backends_->cuda->upload(a.rope_sin, sin.data(), half * sizeof(float));
#endif
        }
    };
    if (dtype == DType::f32) {
        acts_f32_ = std::make_unique<Acts<float>>();
        build(acts_f32_);
    } else {
        acts_bf16_ = std::make_unique<Acts<bf16>>();
        build(acts_bf16_);
    }
}

Model::~Model() {
    if (ledger_) ledger_->sub(MemCategory::activations, activation_bytes_);
}

int64_t Model::activation_bytes() const {
    return activation_bytes_;
}

void* Model::stream() const {
#if ZT_HAVE_CUDA
    if (backends_->cuda) return backends_->cuda->stream();
#endif
    return nullptr;
}

DeviceCopier* Model::copier() {
#if ZT_HAVE_CUDA
    if (backends_->cuda) return backends_->cuda.get();
#endif
    return nullptr;
}

int64_t activation_bytes_for(const ModelConfig& cfg, int B, int T, DType dtype, Recompute recompute,
                             Device device) {
    const size_t ssize = storage_size(dtype);
    Sizer sizer;
    plan_acts(cfg, B, T, recompute, classifier_chunk_rows(int64_t(B) * T, cfg.vocab_size, device),
              [&](int64_t n, bool s) { sizer.add(n, s ? ssize : sizeof(float)); });
    return int64_t(Arena::aligned(sizer.bytes));
}

void Model::check_tokens(const int32_t* tokens, const char* what, int32_t min_id) const {
    int64_t N = int64_t(B_) * T_;
    for (int64_t i = 0; i < N; i++) {
        ZT_CHECK(tokens[i] >= min_id && tokens[i] < cfg_.vocab_size,
                 "%s token id %d at position %lld is outside the model's vocabulary [0, %d)", what,
                 tokens[i], (long long)i, cfg_.vocab_size);
    }
}

template <class F>
auto Model::with_pass(F&& f) {
    auto go = [&](auto& acts) {
        using St = std::remove_pointer_t<decltype(acts->dres)>;
#if ZT_HAVE_CUDA
        if (backends_->cuda) {
            Pass<St, CudaOps> pass(*this, *acts, *backends_->cuda);
            return f(pass);
        }
#endif
        Pass<St, CpuOps> pass(*this, *acts, backends_->cpu);
        return f(pass);
    };
    return acts_f32_ ? go(acts_f32_) : go(acts_bf16_);
}

double Model::forward_backward(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets,
                               float loss_scale, PassTimes* times) {
    PassTimes local;
    PassTimes& t = times ? *times : local;
    return with_pass([&](auto& pass) {
        {
            ScopedTimer timer(&t.forward);
            pass.forward_blocks(hooks, inputs);
        }
        ScopedTimer timer(&t.backward);
        double loss = pass.head_loss(hooks, targets, loss_scale, true);
        pass.backward_blocks(hooks);
        return loss;
    });
}

double Model::forward_loss(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets) {
    return with_pass([&](auto& pass) {
        pass.forward_blocks(hooks, inputs);
        return pass.head_loss(hooks, targets, 0.0f, false);
    });
}

void Model::forward_logits(UnitHooks& hooks, const int32_t* inputs, float* logits) {
    with_pass([&](auto& pass) {
        pass.forward_blocks(hooks, inputs);
        pass.logits(hooks, logits);
    });
}

}  // namespace zt
