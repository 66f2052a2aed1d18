// Inference: a KV-cached decoder, token sampling, and the generation loop.
//
// Generator runs the same model as src/model (LLaMA or GPT-2 family, same
// parameter layout, same CPU ops) one new token at a time. Per layer it keeps
// the keys and values of every position seen so far, so position t costs one
// row through the weights plus attention over t cached rows, instead of the
// whole sequence again. Invariant: after tokens x_0..x_{n-1} have been fed
// (in any split between prefill and step calls), the logits returned for the
// last fed position equal row n-1 of Model::forward_logits on x_0..x_{n-1}, up
// to fp32 summation order (tests hold them to a relative 1e-5).
//
// Threads: OpenMP's (OMP_NUM_THREADS). A decode step splits each
// matrix-vector product by output rows and the attention by heads; the
// norms, RoPE and activations of a single row run on the calling thread,
// where a fork/join would cost more than the row. Prefill chunks use the
// training ops' GEMMs.
//
// Sampling follows Hugging Face's order: temperature, then top-k, then top-p
// (nucleus) on the renormalised softmax; every draw comes from zt::Rng, so a
// seed fixes the whole generated sequence.
//
// Typical use (the `generate` subcommand):
//   std::vector<float> params = engine.full_params();  // or loaded from a checkpoint
//   // The cache is sized by max_context: ask for what the prompt and reply need,
//   // not the model's max_seq (131072 positions of Llama-3.2-1B are 8.6 GB).
//   Generator gen(cfg, params.data(), int(prompt_ids.size()) + n_new);
//   SamplingOptions opts{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 1};
//   GenerationResult r = generate(gen, prompt_ids, n_new, opts,
//                                 [&](int32_t id) { print(id); return true; }, eos_id);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "core/rng.h"
#include "model/config.h"
#include "model/layout.h"

namespace zt {

class Generator {
  public:
    // params: every parameter in model order (the units of model_layout(cfg)
    // back to back, layout.total_numel floats, as Engine::full_params() returns).
    // The Generator reads them in place and does not copy them: they must
    // outlive it and not change while it is used. max_context: the most
    // positions the cache holds (1 .. cfg.max_seq); the cache takes
    // 2 * n_layer * max_context * n_kv_head * head_dim floats, allocated here.
    Generator(const ModelConfig& cfg, const float* params, int max_context);

    Generator(const Generator&) = delete;
    Generator& operator=(const Generator&) = delete;

    const ModelConfig& config() const { return cfg_; }
    int max_context() const { return max_context_; }
    // Positions already in the cache: the absolute position of the next token fed.
    int position() const { return pos_; }
    int64_t cache_bytes() const;

    // Forgets every cached position (the next token fed is position 0).
    void reset() { pos_ = 0; }

    // Feeds tokens (n >= 1 ids in [0, vocab)) at positions position() ..
    // position() + n - 1, as batched matrix products (a chunk of rows at a
    // time), and returns the logits (V,) of the last of them. May be called
    // again to append more (a later prompt turn). Refuses, before changing
    // anything, tokens that would run past max_context or an id outside the
    // vocabulary.
    // The returned view is valid until the next prefill, step or destruction.
    std::span<const float> prefill(std::span<const int32_t> tokens);

    // Feeds one token at position() and returns its logits (V,): the decode
    // step, matrix-vector products only. Same refusals and lifetime as prefill.
    std::span<const float> step(int32_t token);

  private:
    // Feeds checked tokens in chunks of chunk_rows_ and leaves the last one's logits in logits_.
    void run(std::span<const int32_t> tokens);
    // Runs positions pos_ .. pos_ + n - 1 (n <= chunk_rows_) through the
    // blocks, leaving the last row's logits in logits_.
    void forward_chunk(const int32_t* tokens, int n);
    void block_forward(int layer, int n);
    // atty (n, NH * HD) for the n query rows in qkv_ at positions pos_ ..
    // pos_ + n - 1, attending to cache rows 0 .. own position.
    void attention_cached(int layer, int n);
    // x (n, C) -> logits_ (V,) of the last row: final norm and classifier.
    void head_forward(int n);
    // out (n, OC) = inp (n, C) @ weight (OC, C)^T + bias; a GEMV when n == 1.
    void linear(float* out, const float* inp, const float* weight, const float* bias, int n, int C,
                int OC);
    void check_feed(std::span<const int32_t> tokens) const;

    ModelConfig cfg_;
    ModelLayout layout_;
    std::vector<const float*> unit_params_;  // by unit: start of its parameters in `params`
    int max_context_;
    int chunk_rows_;  // rows per batched prefill pass
    int pos_ = 0;
    int team_ = 1;  // OpenMP threads the current feed may use (taken at its start)

    std::vector<float> k_cache_;              // (L, max_context, NKV, HD)
    std::vector<float> v_cache_;              // (L, max_context, NKV, HD)
    std::vector<float> rope_cos_, rope_sin_;  // (max_context, HD/2), LLaMA only

    // Scratch for one chunk of rows.
    std::vector<float> x_;       // (chunk, C) residual stream
    std::vector<float> xn_;      // (chunk, C) normalised
    std::vector<float> mean_;    // (chunk) LayerNorm mean (GPT-2)
    std::vector<float> rstd_;    // (chunk)
    std::vector<float> qkv_;     // (chunk, QKV)
    std::vector<float> atty_;    // (chunk, NH * HD)
    std::vector<float> proj_;    // (chunk, C) attention or MLP output projection
    std::vector<float> fc_;      // (chunk, 2H) gate|up (LLaMA) or (chunk, H) (GPT-2)
    std::vector<float> act_;     // (chunk, H)
    std::vector<float> scores_;  // (threads, max_context) attention probabilities
    std::vector<float> logits_;  // (V)
};

struct SamplingOptions {
    float temperature = 1.0f;  // logits are divided by it; 0 = greedy (argmax)
    int top_k = 0;             // keep the k most probable tokens; 0 = off
    float top_p = 1.0f;        // keep the smallest set with mass >= top_p; 1 = off
    uint64_t seed = 0;         // generate() draws from Rng(seed)
    // > 0: generate() samples only ids below it, for a tokenizer smaller than
    // the model's vocabulary (presets pad the vocabulary to a multiple of 64).
    int vocab_limit = 0;
};

// Refuses a negative or non-finite temperature, a negative top_k, or a top_p
// outside (0, 1], naming the field and the value.
void validate_sampling(const SamplingOptions& opts);

struct TokenProb {
    int32_t token;
    double prob;
};

// The distribution sample_token draws from when temperature > 0: the softmax
// of logits / temperature, cut to the top_k most probable tokens, renormalised,
// cut to the smallest most-probable prefix whose mass >= top_p, renormalised
// again. Sorted by descending probability, ties by ascending id. logits (V).
std::vector<TokenProb> sampling_distribution(const float* logits, int V,
                                             const SamplingOptions& opts);

// One token from logits (V): the argmax (lowest id on ties) when temperature
// is 0, otherwise a draw from sampling_distribution using one rng.next_u64().
// The same rng state and inputs give the same token. Refuses NaN logits.
int32_t sample_token(const float* logits, int V, const SamplingOptions& opts, Rng& rng);

// Called with each generated id as soon as it is sampled; return false to stop.
using TokenCallback = std::function<bool(int32_t token)>;

struct GenerationResult {
    std::vector<int32_t>
        tokens;  // generated ids, without the prompt; ends with eos if it stopped there
    bool stopped_at_eos = false;
    int prompt_tokens = 0;
    double prefill_s = 0;  // wall time of prefill(prompt)
    double decode_s = 0;   // wall time of the step() calls
    double sample_s = 0;   // wall time of sample_token
    int decode_steps = 0;  // step() calls: tokens.size() - 1 (the last id is never fed)
    double prefill_tokens_per_s() const { return prefill_s > 0 ? prompt_tokens / prefill_s : 0; }
    double decode_tokens_per_s() const { return decode_s > 0 ? decode_steps / decode_s : 0; }
};

// Resets gen, prefills the prompt (>= 1 token), then samples up to n_new
// tokens with Rng(opts.seed), feeding each back with step(). Stops early after
// emitting eos_id (when given) or when on_token returns false. Refuses, before
// any work, a prompt + n_new that needs more than gen.max_context() positions
// (the last generated id is not fed, so prompt + n_new - 1 must fit).
GenerationResult generate(Generator& gen, std::span<const int32_t> prompt, int n_new,
                          const SamplingOptions& opts, const TokenCallback& on_token = {},
                          std::optional<int32_t> eos_id = std::nullopt);

// Cuts a prompt too long for the context to its last tokens, so that it and
// n_new new tokens fit in max_context positions (prompt + n_new - 1, as
// generate() needs): the newest text is what the continuation depends on.
// Returns how many tokens were dropped from the front (0 when it fits).
// Refuses n_new > max_context, which no cut of the prompt can make fit.
int64_t fit_prompt_to_context(std::vector<int32_t>& prompt, int n_new, int max_context);

}  // namespace zt
