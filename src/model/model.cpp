#include "model/model.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "ops/attention.h"
#include "ops/classifier.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "prof/timer.h"

namespace zt {

using namespace zt::cpu;

// Saved activations (forward) and gradient scratch (backward), all in one arena.
struct Model::Acts {
    struct Layer {
        float* ln1;      // (N, C) normalised block input
        float* ln1_mu;   // (N) LayerNorm mean (GPT-2 only)
        float* ln1_rs;   // (N) rstd
        float* qkv;      // (N, QKV) projections, q and k rotated (LLaMA)
        float* att;      // (B, NH, T, T) attention probabilities
        float* atty;     // (N, C) attention output before o_proj / c_proj
        float* x_mid;    // (N, C) residual after attention
        float* ln2;      // (N, C)
        float* ln2_mu;   // (N)
        float* ln2_rs;   // (N)
        float* fc;       // (N, 2H) gate|up (LLaMA) or (N, H) pre-GELU (GPT-2)
        float* act;      // (N, H) swiglu / gelu output
    };
    std::vector<float*> residual;  // L + 1 entries of (N, C): block inputs, then final
    std::vector<Layer> layers;
    float* lnf;     // (N, C) final norm output
    float* lnf_mu;  // (N)
    float* lnf_rs;  // (N)
    float* rope_cos = nullptr;  // (T, D/2)
    float* rope_sin = nullptr;  // (T, D/2)
    float* losses;              // (N)
    float* logits_scratch;      // (chunk_rows, V)
    int chunk_rows;
    // backward scratch
    float* dres;   // (N, C) gradient on the residual stream
    float* dnorm;  // (N, C) gradient at a norm's output
    float* dqkv;   // (N, QKV)
    float* dqkv_rot;  // (N, QKV) gradient before RoPE
    float* datty;  // (N, C)
    float* dfc;    // (N, 2H) or (N, H)
    float* dact;   // (N, H)
};

namespace {

// Arena bytes for one layout pass: every alloc below rounded as the arena does.
struct Sizer {
    size_t bytes = 0;
    void add(int64_t n_floats) { bytes += Arena::aligned(size_t(n_floats) * sizeof(float)); }
};

// y (n) += x (n): the residual connections.
void add_inplace(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

// Rows of logits held at once by the fused classifier: ~16 MiB of scratch.
int classifier_chunk_rows(int64_t N, int V) {
    int64_t rows = (int64_t(4) << 20) / V;
    if (rows < 16) rows = 16;
    if (rows > N) rows = N;
    return int(rows);
}

template <typename Alloc>
void plan_acts(const ModelConfig& c, int B, int T, Alloc&& alloc) {
    int64_t N = int64_t(B) * T, C = c.d_model, H = c.d_ff;
    int64_t fc = c.arch == Arch::llama ? 2 * H : H;
    bool gpt2 = c.arch == Arch::gpt2;
    for (int l = 0; l <= c.n_layer; l++) alloc(N * C);
    for (int l = 0; l < c.n_layer; l++) {
        alloc(N * C);
        alloc(gpt2 ? N : 0);
        alloc(N);
        alloc(N * c.qkv_dim());
        alloc(int64_t(B) * c.n_head * T * T);
        alloc(N * C);
        alloc(N * C);
        alloc(N * C);
        alloc(gpt2 ? N : 0);
        alloc(N);
        alloc(N * fc);
        alloc(N * H);
    }
    alloc(N * C);
    alloc(gpt2 ? N : 0);
    alloc(N);
    alloc(gpt2 ? 0 : int64_t(T) * (c.head_dim() / 2));
    alloc(gpt2 ? 0 : int64_t(T) * (c.head_dim() / 2));
    alloc(N);
    alloc(int64_t(classifier_chunk_rows(N, c.vocab_size)) * c.vocab_size);
    alloc(N * C);
    alloc(N * C);
    alloc(N * c.qkv_dim());
    alloc(gpt2 ? 0 : N * c.qkv_dim());
    alloc(N * C);
    alloc(N * fc);
    alloc(N * H);
}

}  // namespace

Model::Model(const ModelConfig& cfg, int B, int T, MemoryLedger* ledger)
    : cfg_(cfg), layout_(model_layout(cfg)), B_(B), T_(T) {
    ZT_CHECK(B > 0, "micro-batch must be positive, got %d", B);
    ZT_CHECK(T > 0, "seq-len must be positive, got %d", T);
    ZT_CHECK(T <= cfg.max_seq, "seq-len %d exceeds the model's maximum of %d (%s)", T, cfg.max_seq,
             cfg.name.c_str());
    Sizer sizer;
    plan_acts(cfg, B, T, [&](int64_t n) { sizer.add(n); });
    arena_ = Arena(sizer.bytes, "activations");
    ledger_ = ledger;
    if (ledger_) ledger_->add(MemCategory::activations, int64_t(arena_.capacity()));

    std::vector<float*> ptrs;
    plan_acts(cfg, B, T, [&](int64_t n) { ptrs.push_back(n ? arena_.alloc<float>(size_t(n)) : nullptr); });
    size_t i = 0;
    auto next = [&]() { return ptrs[i++]; };
    acts_ = std::make_unique<Acts>();
    Acts& a = *acts_;
    for (int l = 0; l <= cfg.n_layer; l++) a.residual.push_back(next());
    a.layers.resize(size_t(cfg.n_layer));
    for (auto& L : a.layers) {
        L.ln1 = next();
        L.ln1_mu = next();
        L.ln1_rs = next();
        L.qkv = next();
        L.att = next();
        L.atty = next();
        L.x_mid = next();
        L.ln2 = next();
        L.ln2_mu = next();
        L.ln2_rs = next();
        L.fc = next();
        L.act = next();
    }
    a.lnf = next();
    a.lnf_mu = next();
    a.lnf_rs = next();
    a.rope_cos = next();
    a.rope_sin = next();
    a.losses = next();
    a.logits_scratch = next();
    a.chunk_rows = classifier_chunk_rows(int64_t(B) * T, cfg.vocab_size);
    a.dres = next();
    a.dnorm = next();
    a.dqkv = next();
    a.dqkv_rot = next();
    a.datty = next();
    a.dfc = next();
    a.dact = next();
    ZT_CHECK(i == ptrs.size(), "internal: activation plan mismatch");
    if (cfg.arch == Arch::llama) rope_table(a.rope_cos, a.rope_sin, T, cfg.head_dim(), cfg.rope_theta);
}

Model::~Model() {
    if (ledger_) ledger_->sub(MemCategory::activations, int64_t(arena_.capacity()));
}

int64_t Model::activation_bytes() const { return int64_t(arena_.capacity()); }

int64_t Model::activation_bytes_for(const ModelConfig& cfg, int B, int T) {
    Sizer sizer;
    plan_acts(cfg, B, T, [&](int64_t n) { sizer.add(n); });
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

void Model::block_forward(int layer, const float* params) {
    const ModelConfig& c = cfg_;
    const UnitSpec& u = layout_.units[size_t(ModelLayout::block_unit(layer))];
    Acts::Layer& L = acts_->layers[size_t(layer)];
    const float* x = acts_->residual[size_t(layer)];
    float* x_out = acts_->residual[size_t(layer) + 1];
    int64_t N = int64_t(B_) * T_;
    int C = c.d_model, H = c.d_ff, QKV = c.qkv_dim(), D = c.head_dim();
    auto P = [&](size_t i) { return params + u.tensors[i].offset; };

    if (c.arch == Arch::llama) {
        // tensors: 0 ln1, 1 q, 2 k, 3 v (1-3 one (QKV, C) matrix), 4 o, 5 ln2, 6 gate, 7 up, 8 down
        rmsnorm_forward(L.ln1, L.ln1_rs, x, P(0), N, C, c.norm_eps);
        matmul_forward(L.qkv, L.ln1, P(1), nullptr, N, C, QKV);
        rope_forward(L.qkv, L.qkv, acts_->rope_cos, acts_->rope_sin, B_, T_, c.n_head + c.n_kv_head,
                     D, QKV);
        attention_forward(L.atty, L.att, L.qkv, B_, T_, c.n_head, c.n_kv_head, D);
        matmul_forward(L.x_mid, L.atty, P(4), nullptr, N, C, C);
        add_inplace(L.x_mid, x, N * C);
        rmsnorm_forward(L.ln2, L.ln2_rs, L.x_mid, P(5), N, C, c.norm_eps);
        matmul_forward(L.fc, L.ln2, P(6), nullptr, N, C, 2 * H);
        swiglu_forward(L.act, L.fc, N, H);
        matmul_forward(x_out, L.act, P(8), nullptr, N, H, C);
    } else {
        // tensors: 0/1 ln_1, 2/3 c_attn, 4/5 attn.c_proj, 6/7 ln_2, 8/9 c_fc, 10/11 mlp.c_proj
        layernorm_forward(L.ln1, L.ln1_mu, L.ln1_rs, x, P(0), P(1), N, C, c.norm_eps);
        matmul_forward(L.qkv, L.ln1, P(2), P(3), N, C, QKV);
        attention_forward(L.atty, L.att, L.qkv, B_, T_, c.n_head, c.n_kv_head, D);
        matmul_forward(L.x_mid, L.atty, P(4), P(5), N, C, C);
        add_inplace(L.x_mid, x, N * C);
        layernorm_forward(L.ln2, L.ln2_mu, L.ln2_rs, L.x_mid, P(6), P(7), N, C, c.norm_eps);
        matmul_forward(L.fc, L.ln2, P(8), P(9), N, C, H);
        gelu_forward(L.act, L.fc, N * H);
        matmul_forward(x_out, L.act, P(10), P(11), N, H, C);
    }
    add_inplace(x_out, L.x_mid, N * C);
}

// On entry acts_->dres holds dLoss/d(block output); on exit dLoss/d(block input).
void Model::block_backward(int layer, const float* params, float* grads) {
    const ModelConfig& c = cfg_;
    const UnitSpec& u = layout_.units[size_t(ModelLayout::block_unit(layer))];
    Acts::Layer& L = acts_->layers[size_t(layer)];
    Acts& a = *acts_;
    const float* x = a.residual[size_t(layer)];
    int64_t N = int64_t(B_) * T_;
    int C = c.d_model, H = c.d_ff, QKV = c.qkv_dim(), D = c.head_dim();
    auto P = [&](size_t i) { return params + u.tensors[i].offset; };
    auto G = [&](size_t i) { return grads + u.tensors[i].offset; };
    auto zero = [](float* p, int64_t n) { std::memset(p, 0, size_t(n) * sizeof(float)); };

    if (c.arch == Arch::llama) {
        zero(a.dact, N * H);
        matmul_backward(a.dact, G(8), nullptr, a.dres, L.act, P(8), N, H, C);
        zero(a.dfc, N * 2 * H);
        swiglu_backward(a.dfc, a.dact, L.fc, N, H);
        zero(a.dnorm, N * C);
        matmul_backward(a.dnorm, G(6), nullptr, a.dfc, L.ln2, P(6), N, C, 2 * H);
        rmsnorm_backward(a.dres, G(5), a.dnorm, L.x_mid, P(5), L.ln2_rs, N, C);

        zero(a.datty, N * C);
        matmul_backward(a.datty, G(4), nullptr, a.dres, L.atty, P(4), N, C, C);
        zero(a.dqkv, N * QKV);
        attention_backward(a.dqkv, a.datty, L.qkv, L.att, B_, T_, c.n_head, c.n_kv_head, D);
        // RoPE touched the q and k heads only; v's gradient passes through unchanged.
        zero(a.dqkv_rot, N * QKV);
        rope_backward(a.dqkv_rot, a.dqkv, a.rope_cos, a.rope_sin, B_, T_, c.n_head + c.n_kv_head,
                      D, QKV);
        int64_t v_off = int64_t(c.n_head + c.n_kv_head) * D, v_len = int64_t(c.n_kv_head) * D;
        for (int64_t r = 0; r < N; r++)
            std::memcpy(a.dqkv_rot + r * QKV + v_off, a.dqkv + r * QKV + v_off,
                        size_t(v_len) * sizeof(float));
        zero(a.dnorm, N * C);
        matmul_backward(a.dnorm, G(1), nullptr, a.dqkv_rot, L.ln1, P(1), N, C, QKV);
        rmsnorm_backward(a.dres, G(0), a.dnorm, x, P(0), L.ln1_rs, N, C);
    } else {
        zero(a.dact, N * H);
        matmul_backward(a.dact, G(10), G(11), a.dres, L.act, P(10), N, H, C);
        zero(a.dfc, N * H);
        gelu_backward(a.dfc, a.dact, L.fc, N * H);
        zero(a.dnorm, N * C);
        matmul_backward(a.dnorm, G(8), G(9), a.dfc, L.ln2, P(8), N, C, H);
        layernorm_backward(a.dres, G(6), G(7), a.dnorm, L.x_mid, P(6), L.ln2_mu, L.ln2_rs, N, C);

        zero(a.datty, N * C);
        matmul_backward(a.datty, G(4), G(5), a.dres, L.atty, P(4), N, C, C);
        zero(a.dqkv, N * QKV);
        attention_backward(a.dqkv, a.datty, L.qkv, L.att, B_, T_, c.n_head, c.n_kv_head, D);
        zero(a.dnorm, N * C);
        matmul_backward(a.dnorm, G(2), G(3), a.dqkv, L.ln1, P(2), N, C, QKV);
        layernorm_backward(a.dres, G(0), G(1), a.dnorm, x, P(0), L.ln1_mu, L.ln1_rs, N, C);
    }
}

const float* Model::final_norm_forward(const float* hp) {
    int64_t N = int64_t(B_) * T_;
    const float* x = acts_->residual[size_t(cfg_.n_layer)];
    if (cfg_.arch == Arch::llama)
        rmsnorm_forward(acts_->lnf, acts_->lnf_rs, x, hp, N, cfg_.d_model, cfg_.norm_eps);
    else
        layernorm_forward(acts_->lnf, acts_->lnf_mu, acts_->lnf_rs, x, hp, hp + cfg_.d_model, N,
                          cfg_.d_model, cfg_.norm_eps);
    return acts_->lnf;
}

void Model::final_norm_backward(const float* hp, float* hg, const float* dnorm) {
    int64_t N = int64_t(B_) * T_;
    int C = cfg_.d_model;
    const float* x = acts_->residual[size_t(cfg_.n_layer)];
    std::memset(acts_->dres, 0, size_t(N * C) * sizeof(float));
    if (cfg_.arch == Arch::llama)
        rmsnorm_backward(acts_->dres, hg, dnorm, x, hp, acts_->lnf_rs, N, C);
    else
        layernorm_backward(acts_->dres, hg, hg + C, dnorm, x, hp, acts_->lnf_mu, acts_->lnf_rs, N,
                           C);
}

void Model::forward_blocks(UnitHooks& hooks, const int32_t* inputs) {
    check_tokens(inputs, "input", 0);
    const int E = ModelLayout::embed_unit();
    const float* ep = hooks.acquire(E);
    const UnitSpec& eu = layout_.units[size_t(E)];
    const float* wpe = cfg_.arch == Arch::gpt2 ? ep + eu.tensors[1].offset : nullptr;
    embedding_forward(acts_->residual[0], inputs, ep, wpe, B_, T_, cfg_.d_model);
    hooks.release(E);
    for (int l = 0; l < cfg_.n_layer; l++) {
        int u = ModelLayout::block_unit(l);
        block_forward(l, hooks.acquire(u));
        hooks.release(u);
    }
}

// The head: final norm, then the fused classifier + cross-entropy. With
// backward, the head's gradients are produced here, while its parameters are
// acquired, and acts_->dres is left holding dLoss/d(last residual). With tied
// embeddings the classifier's weight is the embedding's, so the embedding
// unit is acquired too and its gradient buffer receives the head's part.
double Model::head_loss(UnitHooks& hooks, const int32_t* targets, float loss_scale,
                        bool backward) {
    check_tokens(targets, "target", -1);
    const int HU = layout_.head_unit(), E = ModelLayout::embed_unit();
    int64_t N = int64_t(B_) * T_;
    int C = cfg_.d_model, V = cfg_.vocab_size;
    const float* hp = hooks.acquire(HU);
    const float* w_cls = cfg_.tie_embeddings ? hooks.acquire(E)
                                             : hp + layout_.units[size_t(HU)].tensors.back().offset;
    const float* xn = final_norm_forward(hp);
    float* hg = backward ? hooks.unit_grads(HU) : nullptr;
    float* dw_cls = nullptr;
    if (backward) {
        dw_cls = cfg_.tie_embeddings ? hooks.unit_grads(E)
                                     : hg + layout_.units[size_t(HU)].tensors.back().offset;
        std::memset(acts_->dnorm, 0, size_t(N * C) * sizeof(float));
    }
    classifier_forward_backward(acts_->losses, backward ? acts_->dnorm : nullptr, dw_cls, xn, w_cls,
                                targets, N, C, V, loss_scale, acts_->logits_scratch,
                                acts_->chunk_rows);
    if (backward) {
        final_norm_backward(hp, hg, acts_->dnorm);
        hooks.grads_ready(HU);
    }
    if (cfg_.tie_embeddings) hooks.release(E);
    hooks.release(HU);

    double sum = 0;
    int64_t counted = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        sum += acts_->losses[i];
        counted++;
    }
    return counted ? sum / double(counted) : 0.0;
}

double Model::forward_backward(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets,
                               float loss_scale, PassTimes* times) {
    PassTimes local;
    PassTimes& t = times ? *times : local;
    double loss;
    {
        ScopedTimer timer(&t.forward);
        forward_blocks(hooks, inputs);
    }
    ScopedTimer timer(&t.backward);
    loss = head_loss(hooks, targets, loss_scale, true);
    for (int l = cfg_.n_layer - 1; l >= 0; l--) {
        int u = ModelLayout::block_unit(l);
        const float* p = hooks.acquire(u);
        block_backward(l, p, hooks.unit_grads(u));
        hooks.grads_ready(u);
        hooks.release(u);
    }
    // The embedding's backward is a scatter of dres: it needs no parameters.
    const int E = ModelLayout::embed_unit();
    float* eg = hooks.unit_grads(E);
    const UnitSpec& eu = layout_.units[size_t(E)];
    float* dwpe = cfg_.arch == Arch::gpt2 ? eg + eu.tensors[1].offset : nullptr;
    embedding_backward(eg, dwpe, acts_->dres, inputs, B_, T_, cfg_.d_model);
    hooks.grads_ready(E);
    return loss;
}

double Model::forward_loss(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets) {
    forward_blocks(hooks, inputs);
    return head_loss(hooks, targets, 0.0f, false);
}

void Model::forward_logits(UnitHooks& hooks, const int32_t* inputs, float* logits) {
    forward_blocks(hooks, inputs);
    const int HU = layout_.head_unit(), E = ModelLayout::embed_unit();
    const float* hp = hooks.acquire(HU);
    const float* w_cls = cfg_.tie_embeddings ? hooks.acquire(E)
                                             : hp + layout_.units[size_t(HU)].tensors.back().offset;
    const float* xn = final_norm_forward(hp);
    matmul_forward(logits, xn, w_cls, nullptr, int64_t(B_) * T_, cfg_.d_model, cfg_.vocab_size);
    if (cfg_.tie_embeddings) hooks.release(E);
    hooks.release(HU);
}

}  // namespace zt
