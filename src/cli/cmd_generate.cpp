// zerotrain generate: sample text from a checkpoint or a Hugging Face folder,
// printing each token as it comes and the speed at the end.
#include <omp.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "core/check.h"
#include "prof/timer.h"
#include "train/generate.h"
#include "train/weights.h"

namespace zt::cli {

namespace {

struct GenerateArgs {
    std::string checkpoint, hf, prompt, tokenizer;
    int tokens = 128;
    float temperature = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    uint64_t seed = 1;
    std::string device = "cpu";
    int threads = 0;
};

void run_generate(const GenerateArgs& a) {
    ZT_CHECK(a.device == "cpu",
             "--device %s: generation runs on the CPU backend; the CUDA backend is not wired into "
             "generation yet",
             a.device.c_str());
    ZT_CHECK(a.tokens > 0, "--tokens %d: must be a positive number of tokens", a.tokens);
    if (a.threads > 0) omp_set_num_threads(a.threads);
    SamplingOptions opts;
    opts.temperature = a.temperature;
    opts.top_k = a.top_k;
    opts.top_p = a.top_p;
    opts.seed = a.seed;
    validate_sampling(opts);

    LoadedWeights w = load_weights(a.checkpoint, a.hf);
    if (!a.tokenizer.empty()) {
        std::unique_ptr<Tokenizer> given = load_tokenizer(a.tokenizer);
        // Another tokenizer of the same size may be a deliberate choice; one of
        // another size maps ids to other pieces for certain.
        ZT_CHECK(!w.tokenizer || given->vocab_size() == w.tokenizer->vocab_size(),
                 "--tokenizer %s has a vocabulary of %d, but %s was trained with a tokenizer of "
                 "%d: its ids would decode to other text; leave --tokenizer out to use the "
                 "recorded one",
                 a.tokenizer.c_str(), given->vocab_size(), w.source.c_str(),
                 w.tokenizer->vocab_size());
        w.tokenizer = std::move(given);
    }
    ZT_CHECK(w.tokenizer != nullptr,
             "%s records no tokenizer (trained on synthetic data or bare shards?); give one with "
             "--tokenizer byte|M.model",
             w.source.c_str());
    ZT_CHECK(w.tokenizer->vocab_size() <= w.config.vocab_size,
             "the tokenizer's vocabulary of %d exceeds the model's vocabulary of %d (%s): it "
             "would produce ids the model has no embedding for",
             w.tokenizer->vocab_size(), w.config.vocab_size, w.source.c_str());
    opts.vocab_limit = w.tokenizer->vocab_size();
    std::vector<uint32_t> ids = w.tokenizer->encode_prompt(a.prompt);
    ZT_CHECK(!ids.empty(),
             "the prompt is empty and the tokenizer has no BOS to start from; give --prompt TEXT");
    std::vector<int32_t> prompt(ids.begin(), ids.end());
    ZT_CHECK(a.tokens <= w.config.max_seq,
             "--tokens %d exceeds the model's context of %d positions; ask for at most %d",
             a.tokens, w.config.max_seq, w.config.max_seq);
    const size_t prompt_given = prompt.size();
    const int64_t dropped = fit_prompt_to_context(prompt, a.tokens, w.config.max_seq);
    if (dropped > 0)
        std::fprintf(stderr,
                     "generate: the prompt's %zu tokens and --tokens %d exceed the model's "
                     "context of %d; dropped its first %lld tokens and kept the last %zu\n",
                     prompt_given, a.tokens, w.config.max_seq, (long long)dropped, prompt.size());
    int context = std::min<int64_t>(w.config.max_seq, int64_t(prompt.size()) + a.tokens);
    Generator gen(w.config, w.params.data(), context);

    std::printf("%s", a.prompt.c_str());
    std::fflush(stdout);
    int eos = w.tokenizer->eos_id();
    GenerationResult r = generate(
        gen, prompt, a.tokens, opts,
        [&](int32_t id) {
            std::string piece = w.tokenizer->decode_piece(uint32_t(id));
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
            return true;
        },
        eos >= 0 ? std::optional<int32_t>(eos) : std::nullopt);
    std::printf("\n");
    std::fprintf(stderr,
                 "generate: %zu tokens%s | prompt %d tokens at %.0f tokens/s | decode %.1f "
                 "tokens/s | %s\n",
                 r.tokens.size(), r.stopped_at_eos ? " (stopped at EOS)" : "", r.prompt_tokens,
                 r.prefill_tokens_per_s(), r.decode_tokens_per_s(), w.source.c_str());
}

}  // namespace

void add_generate_command(CLI::App& app) {
    auto args = std::make_shared<GenerateArgs>();
    CLI::App* c = app.add_subcommand(
        "generate", "sample text from a checkpoint or a Hugging Face folder (KV-cached)");
    add_weights_options(c, &args->checkpoint, &args->hf);
    c->add_option("--prompt", args->prompt, "text to continue")->capture_default_str();
    c->add_option("--tokens", args->tokens, "tokens to generate at most")->capture_default_str();
    c->add_option("--temperature", args->temperature, "0: greedy")->capture_default_str();
    c->add_option("--top-k", args->top_k, "keep the k most probable tokens (0: off)")
        ->capture_default_str();
    c->add_option("--top-p", args->top_p, "nucleus: keep the smallest set of mass >= p (1: off)")
        ->capture_default_str();
    c->add_option("--seed", args->seed, "sampling seed")->capture_default_str();
    c->add_option("--tokenizer", args->tokenizer,
                  "byte or a SentencePiece .model (default: the one saved with the weights)");
    c->add_option("--device", args->device, "cpu")->capture_default_str();
    c->add_option("--threads", args->threads, "CPU threads (0: OpenMP's default)");
    c->callback([args] { run_generate(*args); });
}

}  // namespace zt::cli
