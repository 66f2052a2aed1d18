// KV-cached decoding, sampling and the generation loop (see generate.h).
//
// Invariant: cache row p of layer l holds the key and value (RoPE already
// applied to the key, LLaMA) of absolute position p, for p < pos_; rows at or
// past pos_ are stale and never read. A position's projections, norms and MLP
// go through the same CPU ops as the training forward (src/ops/cpu), so the
// only difference from Model::forward_logits is summation order: GEMV instead
// of GEMM for a single row, and attention over the cache instead of the full
// causal matrix.
#include "train/generate.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/check.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"
#include "prof/timer.h"

namespace zt {

using namespace zt::cpu;

namespace {

// Rows of a prefill pass: enough for GEMM efficiency, small scratch.
constexpr int kPrefillChunk = 128;

// Below this many multiply-adds per thread, a fork/join costs more than it saves.
constexpr int64_t kMinMacsPerThread = int64_t(1) << 15;

int threads_for(int64_t macs, int team) {
    return int(std::clamp<int64_t>(macs / kMinMacsPerThread, 1, team));
}

// While alive, OpenMP regions opened on this thread without a num_threads
// clause run on it alone. A decode step pushes one row through norms, RoPE
// and activations: a fork/join costs more than that work, and on a busy
// machine each join waits for a time slice (measured: 100x slower end to end
// on 2 loaded cores).
class OmpSerialScope {
  public:
    OmpSerialScope() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
    ~OmpSerialScope() { omp_set_num_threads(saved_); }
    OmpSerialScope(const OmpSerialScope&) = delete;
    OmpSerialScope& operator=(const OmpSerialScope&) = delete;

  private:
    int saved_;
};

// out (OC) = weight (OC, C) @ x (C) + bias (OC) as a GEMV on as many of the
// team's threads as the product is worth.
void gemv(float* out, const float* x, const float* weight, const float* bias, int C, int OC,
          int team) {
    matmul_forward_row(out, x, weight, bias, C, OC, threads_for(int64_t(OC) * C, team));
}

// y (n) += x (n): the residual connections.
void residual_add(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= (int64_t(1) << 16))
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

}  // namespace

Generator::Generator(const ModelConfig& cfg, const float* params, int max_context)
    : cfg_(cfg), layout_(model_layout(cfg)), max_context_(max_context) {
    ZT_CHECK(params != nullptr, "generator: no parameters given for model %s", cfg.name.c_str());
    ZT_CHECK(max_context >= 1 && max_context <= cfg.max_seq,
             "generator: context of %d positions is outside [1, %d], the model's maximum "
             "sequence length (%s, max_position_embeddings)",
             max_context, cfg.max_seq, cfg.name.c_str());
    int64_t offset = 0;
    for (const UnitSpec& u : layout_.units) {
        unit_params_.push_back(params + offset);
        offset += u.numel;
    }
    chunk_rows_ = std::min(max_context, kPrefillChunk);

    const int C = cfg.d_model, HD = cfg.head_dim(), H = cfg.d_ff;
    const size_t rows = size_t(chunk_rows_);
    const size_t kv_row = size_t(cfg.n_kv_head) * size_t(HD);
    k_cache_.assign(size_t(cfg.n_layer) * size_t(max_context) * kv_row, 0.0f);
    v_cache_.assign(k_cache_.size(), 0.0f);
    if (cfg.arch == Arch::llama) {
        rope_cos_.resize(size_t(max_context) * size_t(HD / 2));
        rope_sin_.resize(rope_cos_.size());
        rope_table(rope_cos_.data(), rope_sin_.data(), max_context, HD, cfg.rope_theta,
                   cfg.rope_scaling);
    }
    x_.resize(rows * size_t(C));
    xn_.resize(rows * size_t(C));
    mean_.resize(rows);
    rstd_.resize(rows);
    qkv_.resize(rows * size_t(cfg.qkv_dim()));
    atty_.resize(rows * size_t(cfg.n_head) * size_t(HD));
    proj_.resize(rows * size_t(C));
    fc_.resize(rows * size_t(cfg.arch == Arch::llama ? 2 * H : H));
    act_.resize(rows * size_t(H));
    scores_.resize(size_t(omp_get_max_threads()) * size_t(max_context));
    logits_.resize(size_t(cfg.vocab_size));
    // The attention GEMVs take the cache row as an int stride.
    ZT_CHECK(kv_row <= size_t(INT_MAX), "generator: a cache row of %zu floats exceeds INT_MAX",
             kv_row);
}

int64_t Generator::cache_bytes() const {
    return int64_t(k_cache_.size() + v_cache_.size()) * int64_t(sizeof(float));
}

void Generator::check_feed(std::span<const int32_t> tokens) const {
    ZT_CHECK(!tokens.empty(), "generator: no tokens to feed (need at least one)");
    ZT_CHECK(int64_t(pos_) + int64_t(tokens.size()) <= max_context_,
             "generator: %zu token(s) at position %d would run past the context of %d positions "
             "(max_context; the model %s allows at most %d)",
             tokens.size(), pos_, max_context_, cfg_.name.c_str(), cfg_.max_seq);
    for (size_t i = 0; i < tokens.size(); i++) {
        ZT_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.vocab_size,
                 "generator: token id %d (input %zu) is outside the model's vocabulary [0, %d)",
                 tokens[i], i, cfg_.vocab_size);
    }
}

std::span<const float> Generator::prefill(std::span<const int32_t> tokens) {
    check_feed(tokens);
    run(tokens);
    return logits_;
}

std::span<const float> Generator::step(int32_t token) {
    const std::span<const int32_t> one(&token, 1);
    check_feed(one);
    run(one);
    return logits_;
}

void Generator::run(std::span<const int32_t> tokens) {
    team_ = omp_get_max_threads();
    const int n = int(tokens.size());
    // The widest row a norm, RoPE or activation touches.
    const int64_t widest = std::max<int64_t>(
        {cfg_.d_model, cfg_.qkv_dim(), int64_t(cfg_.d_ff) * (cfg_.arch == Arch::llama ? 2 : 1)});
    int last = 0;
    for (int i = 0; i < n; i += chunk_rows_) {
        last = std::min(chunk_rows_, n - i);
        std::optional<OmpSerialScope> serial;
        if (threads_for(last * widest, team_) == 1) serial.emplace();
        forward_chunk(tokens.data() + i, last);
    }
    OmpSerialScope serial;  // the head normalises one row
    head_forward(last);
}

void Generator::forward_chunk(const int32_t* tokens, int n) {
    const UnitSpec& eu = layout_.units[size_t(ModelLayout::embed_unit())];
    const float* ep = unit_params_[size_t(ModelLayout::embed_unit())];
    // Learned positions: rows pos_ .. pos_ + n - 1 of wpe (max_seq, C).
    const float* wpe = cfg_.arch == Arch::gpt2
                           ? ep + eu.tensors[1].offset + int64_t(pos_) * cfg_.d_model
                           : nullptr;
    embedding_forward(x_.data(), tokens, ep, wpe, 1, n, cfg_.d_model);
    for (int l = 0; l < cfg_.n_layer; l++) block_forward(l, n);
    pos_ += n;
}

void Generator::linear(float* out, const float* inp, const float* weight, const float* bias, int n,
                       int C, int OC) {
    if (n == 1)
        gemv(out, inp, weight, bias, C, OC, team_);
    else
        matmul_forward(out, inp, weight, bias, n, C, OC);
}

void Generator::block_forward(int layer, int n) {
    const ModelConfig& c = cfg_;
    const UnitSpec& u = layout_.units[size_t(ModelLayout::block_unit(layer))];
    const float* params = unit_params_[size_t(ModelLayout::block_unit(layer))];
    auto P = [&](size_t i) { return params + u.tensors[i].offset; };
    const int C = c.d_model, H = c.d_ff, QKV = c.qkv_dim(), HD = c.head_dim();
    const int64_t NC = int64_t(n) * C;
    float *x = x_.data(), *xn = xn_.data(), *qkv = qkv_.data();

    if (c.arch == Arch::llama) {
        // tensors: 0 ln1, 1 q, 2 k, 3 v (1-3 one (QKV, C) matrix), 4 o, 5 ln2, 6 gate, 7 up, 8 down
        rmsnorm_forward(xn, rstd_.data(), x, P(0), n, C, c.norm_eps);
        linear(qkv, xn, P(1), nullptr, n, C, QKV);
        const int64_t table_off = int64_t(pos_) * (HD / 2);  // rows of the absolute positions
        rope_forward(qkv, qkv, rope_cos_.data() + table_off, rope_sin_.data() + table_off, 1, n,
                     c.n_head + c.n_kv_head, HD, QKV);
        attention_cached(layer, n);
        linear(proj_.data(), atty_.data(), P(4), nullptr, n, C, C);
        residual_add(x, proj_.data(), NC);
        rmsnorm_forward(xn, rstd_.data(), x, P(5), n, C, c.norm_eps);
        linear(fc_.data(), xn, P(6), nullptr, n, C, 2 * H);
        swiglu_forward(act_.data(), fc_.data(), n, H);
        linear(proj_.data(), act_.data(), P(8), nullptr, n, H, C);
    } else {
        // tensors: 0/1 ln_1, 2/3 c_attn, 4/5 attn.c_proj, 6/7 ln_2, 8/9 c_fc, 10/11 mlp.c_proj
        layernorm_forward(xn, mean_.data(), rstd_.data(), x, P(0), P(1), n, C, c.norm_eps);
        linear(qkv, xn, P(2), P(3), n, C, QKV);
        attention_cached(layer, n);
        linear(proj_.data(), atty_.data(), P(4), P(5), n, C, C);
        residual_add(x, proj_.data(), NC);
        layernorm_forward(xn, mean_.data(), rstd_.data(), x, P(6), P(7), n, C, c.norm_eps);
        linear(fc_.data(), xn, P(8), P(9), n, C, H);
        gelu_forward(act_.data(), fc_.data(), int64_t(n) * H);
        linear(proj_.data(), act_.data(), P(10), P(11), n, H, C);
    }
    residual_add(x, proj_.data(), NC);
}

void Generator::attention_cached(int layer, int n) {
    const int NH = cfg_.n_head, NKV = cfg_.n_kv_head, HD = cfg_.head_dim();
    const int group = NH / NKV;
    const int64_t R = cfg_.qkv_dim();                                  // qkv row
    const int64_t KVR = int64_t(NKV) * HD;                             // cache row
    const int64_t RO = int64_t(NH) * HD;                               // atty row
    float* K = k_cache_.data() + int64_t(layer) * max_context_ * KVR;  // (max_context, NKV, HD)
    float* V = v_cache_.data() + int64_t(layer) * max_context_ * KVR;  // (max_context, NKV, HD)

    // The chunk's keys and values go in first: row i attends to rows <= pos_ + i.
    for (int i = 0; i < n; i++) {
        const float* row = qkv_.data() + i * R;
        std::memcpy(K + (pos_ + i) * KVR, row + RO, size_t(KVR) * sizeof(float));
        std::memcpy(V + (pos_ + i) * KVR, row + RO + KVR, size_t(KVR) * sizeof(float));
    }

    const float scale = 1.0f / std::sqrt(float(HD));
    const int64_t pairs = int64_t(n) * NH;  // (query row, head)
    const int64_t macs = pairs * (int64_t(pos_) + n) * HD * 2;
    const int threads =
        std::min(threads_for(macs, team_), int(scores_.size() / size_t(max_context_)));
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float* s = scores_.data() + int64_t(omp_get_thread_num()) * max_context_;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < pairs; p++) {
            const int i = int(p / NH), h = int(p % NH), g = h / group;
            const int len = pos_ + i + 1;  // keys 0 .. own position
            const float* q = qkv_.data() + i * R + int64_t(h) * HD;
            attention_cached_row(atty_.data() + i * RO + int64_t(h) * HD, q, K + int64_t(g) * HD,
                                 V + int64_t(g) * HD, len, HD, int(KVR), scale, s);
        }
    }
}

void Generator::head_forward(int n) {
    const int HU = layout_.head_unit(), C = cfg_.d_model;
    const float* hp = unit_params_[size_t(HU)];
    const float* w_cls = cfg_.tie_embeddings ? unit_params_[size_t(ModelLayout::embed_unit())]
                                             : hp + layout_.units[size_t(HU)].tensors.back().offset;
    const float* last = x_.data() + int64_t(n - 1) * C;
    if (cfg_.arch == Arch::llama)
        rmsnorm_forward(xn_.data(), rstd_.data(), last, hp, 1, C, cfg_.norm_eps);
    else
        layernorm_forward(xn_.data(), mean_.data(), rstd_.data(), last, hp, hp + C, 1, C,
                          cfg_.norm_eps);
    gemv(logits_.data(), xn_.data(), w_cls, nullptr, C, cfg_.vocab_size, team_);
}

// ---- sampling ----

namespace {

// Refuses NaN logits and a distribution with no finite maximum; returns the
// argmax (lowest id on ties).
int32_t checked_argmax(const float* logits, int V) {
    ZT_CHECK(V > 0, "sampling: vocabulary size must be positive, got %d", V);
    int32_t best = 0;
    for (int v = 0; v < V; v++) {
        ZT_CHECK(!std::isnan(logits[v]), "sampling: logit of token %d is NaN", v);
        if (logits[v] > logits[best]) best = v;
    }
    ZT_CHECK(std::isfinite(logits[best]),
             "sampling: the largest logit (token %d) is %g; need a finite maximum", best,
             double(logits[best]));
    return best;
}

// Unnormalised softmax weights exp((l - max) / temperature) in double.
std::vector<double> softmax_weights(const float* logits, int V, float max_logit,
                                    float temperature) {
    std::vector<double> w(static_cast<size_t>(V));
    const double inv_t = 1.0 / double(temperature);
    for (int v = 0; v < V; v++) w[size_t(v)] = std::exp((double(logits[v]) - max_logit) * inv_t);
    return w;
}

// Uniform in [0, 1) with 53 random bits: one rng draw.
double uniform53(Rng& rng) {
    return double(rng.next_u64() >> 11) * 0x1.0p-53;
}

}  // namespace

void validate_sampling(const SamplingOptions& opts) {
    ZT_CHECK(std::isfinite(opts.temperature) && opts.temperature >= 0.0f,
             "sampling temperature must be a finite number >= 0 (0 = greedy), got %g",
             double(opts.temperature));
    ZT_CHECK(opts.top_k >= 0, "sampling top_k must be >= 0 (0 = off), got %d", opts.top_k);
    ZT_CHECK(opts.vocab_limit >= 0, "sampling vocab_limit must be >= 0 (0 = off), got %d",
             opts.vocab_limit);
    ZT_CHECK(opts.top_p > 0.0f && opts.top_p <= 1.0f,
             "sampling top_p must be in (0, 1] (1 = off), got %g", double(opts.top_p));
}

std::vector<TokenProb> sampling_distribution(const float* logits, int V,
                                             const SamplingOptions& opts) {
    validate_sampling(opts);
    const int32_t best = checked_argmax(logits, V);
    if (opts.temperature == 0.0f) return {{best, 1.0}};
    const std::vector<double> w = softmax_weights(logits, V, logits[best], opts.temperature);
    auto more_probable = [&](int32_t a, int32_t b) {
        return w[size_t(a)] > w[size_t(b)] || (w[size_t(a)] == w[size_t(b)] && a < b);
    };

    // Candidates, most probable first, and the mass top_p is measured against.
    std::vector<int32_t> ids;
    double base = 0;
    if (opts.top_k > 0 && opts.top_k < V) {
        ids.resize(size_t(V));
        for (int v = 0; v < V; v++) ids[size_t(v)] = v;
        std::partial_sort(ids.begin(), ids.begin() + opts.top_k, ids.end(), more_probable);
        ids.resize(size_t(opts.top_k));
        for (int32_t id : ids) base += w[size_t(id)];
    } else {
        // Only the head of the distribution can be in a nucleus: sort the tokens
        // whose weight is at least 1e-3 / V of the top one (the rest hold under
        // 1e-3 of the mass), and all of them when the head falls short of top_p.
        const double cut = opts.top_p < 1.0f ? 1e-3 / V : 0.0;
        double head = 0;
        for (int v = 0; v < V; v++) {
            base += w[size_t(v)];
            if (w[size_t(v)] >= cut) {
                ids.push_back(v);
                head += w[size_t(v)];
            }
        }
        if (head < double(opts.top_p) * base) {
            ids.resize(size_t(V));
            for (int v = 0; v < V; v++) ids[size_t(v)] = v;
        }
        std::sort(ids.begin(), ids.end(), more_probable);
    }

    // The nucleus: the shortest prefix whose mass reaches top_p of the base
    // (all of it at top_p = 1, whatever the rounding of the running sum).
    double mass = 0;
    size_t keep = 0;
    while (keep < ids.size() && (opts.top_p >= 1.0f || mass < double(opts.top_p) * base))
        mass += w[size_t(ids[keep++])];
    ids.resize(keep);
    std::vector<TokenProb> out;
    out.reserve(ids.size());
    for (int32_t id : ids) out.push_back({id, w[size_t(id)] / mass});
    return out;
}

int32_t sample_token(const float* logits, int V, const SamplingOptions& opts, Rng& rng) {
    validate_sampling(opts);
    if (opts.temperature == 0.0f) return checked_argmax(logits, V);
    const bool truncated = (opts.top_k > 0 && opts.top_k < V) || opts.top_p < 1.0f;
    if (!truncated) {
        // The plain softmax needs no sort: walk the weights in id order.
        const int32_t best = checked_argmax(logits, V);
        const std::vector<double> w = softmax_weights(logits, V, logits[best], opts.temperature);
        double total = 0;
        for (double x : w) total += x;
        const double u = uniform53(rng) * total;
        double cum = 0;
        for (int v = 0; v < V; v++) {
            cum += w[size_t(v)];
            if (u < cum) return v;
        }
        return best;  // only rounding puts u past the running sum
    }
    const std::vector<TokenProb> dist = sampling_distribution(logits, V, opts);
    const double u = uniform53(rng);
    double cum = 0;
    for (const TokenProb& tp : dist) {
        cum += tp.prob;
        if (u < cum) return tp.token;
    }
    return dist.back().token;
}

GenerationResult generate(Generator& gen, std::span<const int32_t> prompt, int n_new,
                          const SamplingOptions& opts, const TokenCallback& on_token,
                          std::optional<int32_t> eos_id) {
    const ModelConfig& c = gen.config();
    validate_sampling(opts);
    ZT_CHECK(!prompt.empty(), "generate: the prompt is empty; need at least one token");
    ZT_CHECK(n_new >= 0, "generate: number of new tokens must be >= 0, got %d", n_new);
    if (eos_id) {
        ZT_CHECK(*eos_id >= 0 && *eos_id < c.vocab_size,
                 "generate: eos id %d is outside the model's vocabulary [0, %d)", *eos_id,
                 c.vocab_size);
    }
    const int64_t needed = int64_t(prompt.size()) + std::max(n_new - 1, 0);
    ZT_CHECK(needed <= gen.max_context(),
             "generate: a prompt of %zu tokens plus %d new tokens needs %lld positions, more than "
             "the context of %d (max_context; the model %s allows at most %d)",
             prompt.size(), n_new, (long long)needed, gen.max_context(), c.name.c_str(), c.max_seq);

    GenerationResult r;
    r.prompt_tokens = int(prompt.size());
    Rng rng(opts.seed);
    gen.reset();
    std::span<const float> logits;
    {
        ScopedTimer t(&r.prefill_s);
        logits = gen.prefill(prompt);
    }
    for (int i = 0; i < n_new; i++) {
        int32_t token;
        {
            ScopedTimer t(&r.sample_s);
            token = sample_token(
                logits.data(),
                opts.vocab_limit > 0 ? std::min(opts.vocab_limit, c.vocab_size) : c.vocab_size,
                opts, rng);
        }
        r.tokens.push_back(token);
        const bool go_on = !on_token || on_token(token);
        if (eos_id && token == *eos_id) {
            r.stopped_at_eos = true;
            break;
        }
        if (!go_on || i + 1 == n_new) break;
        ScopedTimer t(&r.decode_s);
        logits = gen.step(token);
        r.decode_steps++;
    }
    return r;
}

int64_t fit_prompt_to_context(std::vector<int32_t>& prompt, int n_new, int max_context) {
    ZT_CHECK(n_new >= 0 && n_new <= max_context,
             "%d new tokens do not fit in the context of %d positions, whatever the prompt; ask "
             "for at most %d",
             n_new, max_context, max_context);
    // The last new token is never fed; n_new <= max_context leaves at least
    // one prompt token.
    const int64_t keep = int64_t(max_context) - std::max(n_new - 1, 0);
    if (int64_t(prompt.size()) <= keep) return 0;
    const int64_t dropped = int64_t(prompt.size()) - keep;
    prompt.erase(prompt.begin(), prompt.begin() + dropped);
    return dropped;
}

}  // namespace zt
