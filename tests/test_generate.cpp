// Generation: the KV-cached decoder against the full-sequence forward (every
// position, LLaMA with GQA and GPT-2), greedy decoding against argmax of the
// full forward, the sampler's distribution (temperature, top-k, top-p in
// Hugging Face's order) exactly and by empirical frequencies, determinism
// under a seed, and the refusals (context overflow, bad options); through
// the binary, a prompt longer than the context and tokenizers that do not
// match the model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "ckpt/checkpoint.h"
#include "core/check.h"
#include "core/rng.h"
#include "data/tokenizer.h"
#include "model/config.h"
#include "model/model.h"
#include "test_util.h"
#include "train/generate.h"
#include "zero/engine.h"

using namespace zt;

namespace {

// test-tiny with 4 query heads per kv head (test-tiny has 2), tied
// embeddings and a large RoPE theta: the Llama-3 shape in miniature.
ModelConfig gqa4_config() {
    ModelConfig c = model_preset("test-tiny");
    c.name = "test-tiny-gqa4";
    c.n_head = 8;
    c.n_kv_head = 2;
    c.tie_embeddings = true;
    c.rope_theta = 500000.0f;
    return c;
}

ModelConfig config_named(const std::string& name) {
    return name == "test-tiny-gqa4" ? gqa4_config() : model_preset(name);
}

// A single-process stage-0 engine holding a non-trivial random model (the
// initial norms of 1 and biases of 0 perturbed too, so every tensor matters).
struct RandomModel {
    ModelConfig cfg;
    Engine engine;
    std::vector<float> params;  // model order, as Generator takes them
    RandomModel(const ModelConfig& c, uint64_t seed)
        : cfg(c), engine(c, EngineOptions{}, nullptr, nullptr) {
        engine.init_params(seed);
        float* p = engine.all_params();
        for (int64_t i = 0; i < engine.numel(); i++)
            p[i] += 0.05f * rng_normal(seed, 9, uint64_t(i));
        params = engine.full_params();
    }
};

std::vector<int32_t> random_tokens(int n, int V, uint64_t seed) {
    Rng rng(seed);
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = int32_t(rng.below(uint64_t(V)));
    return t;
}

// logits (T, V) of the whole sequence through the training forward.
std::vector<float> full_logits(RandomModel& m, const std::vector<int32_t>& tokens) {
    const int T = int(tokens.size());
    Model model(m.cfg, 1, T, nullptr);
    std::vector<float> logits(size_t(T) * size_t(m.cfg.vocab_size));
    model.forward_logits(m.engine, tokens.data(), logits.data());
    return logits;
}

// Runs fn, which must throw zt::Error whose message contains every needle.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& needles) {
    try {
        fn();
        ADD_FAILURE() << "expected an error mentioning " << needles.front();
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const auto& n : needles)
            EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
    }
}

// The larger error, NaN winning (std::max drops a NaN second argument).
double worse(double a, double b) {
    return std::isnan(a) || b <= a ? a : b;
}

class GenerateArch : public ::testing::TestWithParam<std::string> {};

// Same fp32 ops on the same weights; only the summation order differs (GEMV
// versus blocked GEMM, attention over the cache versus the full causal
// matrix), which moves logits by a few ulp of their dot products: measured
// under 1e-6 relative on all three models, so 1e-5 leaves a 10x margin and
// still fails a wrong RoPE position, kv-head mapping or causal range.
constexpr double kCacheTol = 1e-5;

// Logits at every position: one token at a time (every position through
// step), and in uneven chunks (prefill longer than one internal pass of 128
// rows, a second prefill appended at a non-zero position, then steps).
TEST_P(GenerateArch, CachedLogitsEqualFullForward) {
    RandomModel m(config_named(GetParam()), 5);
    const int T = 150, V = m.cfg.vocab_size;
    const std::vector<int32_t> tokens = random_tokens(T, V, 21);
    const std::vector<float> ref = full_logits(m, tokens);
    auto err_at = [&](std::span<const float> got, int t) {
        EXPECT_EQ(got.size(), size_t(V));
        return zt_test::rel_error(got.data(), ref.data() + size_t(t) * size_t(V), size_t(V));
    };

    Generator gen(m.cfg, m.params.data(), T);
    double worst_step = err_at(gen.prefill(std::span(tokens).first(1)), 0);
    for (int t = 1; t < T; t++)
        worst_step = worse(worst_step, err_at(gen.step(tokens[size_t(t)]), t));
    EXPECT_EQ(gen.position(), T);
    EXPECT_TRUE(worst_step <= kCacheTol) << "one token at a time: worst rel error " << worst_step;

    gen.reset();
    const std::span<const int32_t> all(tokens);
    double worst_chunk = err_at(gen.prefill(all.subspan(0, 140)), 139);
    worst_chunk = worse(worst_chunk, err_at(gen.prefill(all.subspan(140, 5)), 144));
    for (int t = 145; t < T; t++)
        worst_chunk = worse(worst_chunk, err_at(gen.step(tokens[size_t(t)]), t));
    EXPECT_TRUE(worst_chunk <= kCacheTol) << "chunked prefill: worst rel error " << worst_chunk;
}

// Greedy decoding picks, at each length, the argmax of the full forward's last row.
TEST_P(GenerateArch, GreedyEqualsArgmaxOfFullForward) {
    RandomModel m(config_named(GetParam()), 8);
    const int V = m.cfg.vocab_size, n_new = 6;
    const std::vector<int32_t> prompt = random_tokens(5, V, 3);

    std::vector<int32_t> seq = prompt, expected;
    for (int i = 0; i < n_new; i++) {
        const std::vector<float> logits = full_logits(m, seq);
        const float* last = logits.data() + (seq.size() - 1) * size_t(V);
        std::vector<float> sorted(last, last + V);
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
        // The comparison means something only when the winner is clear by far
        // more than the cache's rounding (kCacheTol of logits of order 1).
        ASSERT_TRUE(sorted[0] - sorted[1] > 1e-4f)
            << "near tie at step " << i << "; change the seed";
        const int32_t best = int32_t(std::max_element(last, last + V) - last);
        expected.push_back(best);
        seq.push_back(best);
    }

    Generator gen(m.cfg, m.params.data(), 16);
    SamplingOptions greedy;
    greedy.temperature = 0.0f;
    std::vector<int32_t> streamed;
    const GenerationResult r = generate(gen, prompt, n_new, greedy, [&](int32_t t) {
        streamed.push_back(t);
        return true;
    });
    EXPECT_EQ(r.tokens, expected);
    EXPECT_EQ(streamed, expected);
    EXPECT_FALSE(r.stopped_at_eos);
    EXPECT_EQ(r.prompt_tokens, 5);
    EXPECT_EQ(r.decode_steps, n_new - 1);
    EXPECT_EQ(gen.position(), 5 + n_new - 1);

    // Stops after emitting the eos id, or when the callback says so.
    const int32_t eos = expected[2];
    const size_t eos_at =
        size_t(std::find(expected.begin(), expected.end(), eos) - expected.begin());
    const GenerationResult re = generate(gen, prompt, n_new, greedy, {}, eos);
    EXPECT_TRUE(re.stopped_at_eos);
    EXPECT_EQ(re.tokens,
              std::vector<int32_t>(expected.begin(), expected.begin() + long(eos_at) + 1));
    int calls = 0;
    const GenerationResult rs =
        generate(gen, prompt, n_new, greedy, [&](int32_t) { return ++calls < 2; });
    EXPECT_EQ(rs.tokens, std::vector<int32_t>(expected.begin(), expected.begin() + 2));
}

INSTANTIATE_TEST_SUITE_P(Models, GenerateArch,
                         ::testing::Values("test-tiny", "test-tiny-gpt2", "test-tiny-gqa4"),
                         [](const auto& info) {
                             std::string s = info.param;
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

TEST(GenerateContext, OverflowIsRefused) {
    RandomModel m(model_preset("test-tiny"), 2);
    const int V = m.cfg.vocab_size;
    expect_error([&] { Generator(m.cfg, m.params.data(), m.cfg.max_seq + 1); },
                 {std::to_string(m.cfg.max_seq + 1), std::to_string(m.cfg.max_seq)});
    expect_error([&] { Generator(m.cfg, m.params.data(), 0); }, {"context of 0"});

    Generator gen(m.cfg, m.params.data(), 8);
    const std::vector<int32_t> six = random_tokens(6, V, 1);
    gen.prefill(six);
    expect_error([&] { gen.prefill(random_tokens(3, V, 2)); }, {"position 6", "context of 8"});
    EXPECT_EQ(gen.position(), 6) << "a refused feed must leave the cache as it was";
    gen.step(1);
    gen.step(2);
    expect_error([&] { gen.step(3); }, {"position 8", "context of 8"});
    expect_error([&] { gen.prefill({}); }, {"no tokens"});

    gen.reset();
    expect_error([&] { gen.step(V); }, {"token id " + std::to_string(V), "vocabulary"});
    expect_error([&] { gen.step(-1); }, {"token id -1"});
    EXPECT_EQ(gen.position(), 0);

    // prompt + n_new - 1 positions are fed: 5 + 4 - 1 = 8 fits, 5 + 5 - 1 does not.
    SamplingOptions greedy;
    greedy.temperature = 0.0f;
    const std::vector<int32_t> prompt = random_tokens(5, V, 4);
    EXPECT_EQ(generate(gen, prompt, 4, greedy).tokens.size(), 4u);
    expect_error([&] { generate(gen, prompt, 5, greedy); }, {"needs 9 positions", "context of 8"});
    expect_error([&] { generate(gen, {}, 1, greedy); }, {"prompt is empty"});
    expect_error([&] { generate(gen, prompt, 1, greedy, {}, V); }, {"eos id"});
}

// A prompt too long for the context keeps its last tokens: as many as leave
// room for every new token (prompt + n_new - 1 positions are fed).
TEST(GenerateContext, FitPromptKeepsTheLastTokensThatFit) {
    std::vector<int32_t> prompt(10);
    std::iota(prompt.begin(), prompt.end(), 1);
    EXPECT_EQ(fit_prompt_to_context(prompt, 4, 8), 5);
    EXPECT_EQ(prompt, (std::vector<int32_t>{6, 7, 8, 9, 10}));
    EXPECT_EQ(fit_prompt_to_context(prompt, 4, 8), 0) << "a prompt that fits is left as it is";
    EXPECT_EQ(prompt.size(), 5u);
    EXPECT_EQ(fit_prompt_to_context(prompt, 8, 8), 4);
    EXPECT_EQ(prompt, (std::vector<int32_t>{10}));
    EXPECT_EQ(fit_prompt_to_context(prompt, 0, 8), 0);
    std::vector<int32_t> nine(9, 1);
    EXPECT_EQ(fit_prompt_to_context(nine, 0, 8), 1) << "no new token: the prompt alone must fit";
    expect_error([&] { fit_prompt_to_context(prompt, 9, 8); }, {"9 new tokens", "context of 8"});

    RandomModel m(model_preset("test-tiny"), 3);
    Generator gen(m.cfg, m.params.data(), 8);
    SamplingOptions greedy;
    greedy.temperature = 0.0f;
    std::vector<int32_t> long_prompt = random_tokens(20, m.cfg.vocab_size, 5);
    const std::vector<int32_t> tail(long_prompt.end() - 5, long_prompt.end());
    EXPECT_EQ(fit_prompt_to_context(long_prompt, 4, gen.max_context()), 15);
    const std::vector<int32_t> got = generate(gen, long_prompt, 4, greedy).tokens;
    EXPECT_EQ(got, generate(gen, tail, 4, greedy).tokens);
    EXPECT_EQ(got.size(), 4u);
}

// Through the binary: byte-tokenized text (a tokenizer recorded with the
// checkpoint) and synthetic data (none recorded), test-tiny, two steps each.
class GenerateCli : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new zt_test::TempDir();
        const std::string z = zt_test::zerotrain_binary();
        {
            std::ofstream f(*dir_ / "text.txt");
            for (int i = 0; i < 200; i++) f << "line " << i << ": a few words of text to learn\n\n";
        }
        const std::string common =
            " --model test-tiny --seq-len 32 --micro-batch 2 --steps 2 --eval-every 0 "
            "--sample-tokens 0 --threads 1 --out ";
        for (const std::string& cmd :
             {z + " prepare --input " + (*dir_ / "text.txt") + " --out " + (*dir_ / "data") +
                  " --tokenizer byte --doc-separator '' --val-fraction 0.1",
              z + " train --data " + (*dir_ / "data") + common + (*dir_ / "text-run"),
              z + " train --data synthetic" + common + (*dir_ / "synthetic-run")}) {
            auto r = zt_test::run_command(cmd);
            ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
        }
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static zt_test::CommandResult generate_cli(const std::string& args) {
        return zt_test::run_command(zt_test::zerotrain_binary() + " generate " + args);
    }
    static zt_test::TempDir* dir_;
};

zt_test::TempDir* GenerateCli::dir_ = nullptr;

TEST_F(GenerateCli, APromptLongerThanTheContextKeepsItsEnd) {
    const std::string run = *dir_ / "text-run";
    const int max_seq = Checkpoint::open(run).model_config().max_seq;
    const int n_new = 8;
    // Byte tokens: BOS and one per character.
    const std::string text(size_t(max_seq) + 40, 'a');
    const int prompt_tokens = int(text.size()) + 1;
    const int kept = max_seq - n_new + 1;
    auto r = generate_cli("--checkpoint " + run + " --prompt " + text + " --tokens " +
                          std::to_string(n_new) + " --temperature 0");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string note = "dropped its first " + std::to_string(prompt_tokens - kept) +
                             " tokens and kept the last " + std::to_string(kept);
    EXPECT_NE(r.output.find(note), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("generate: " + std::to_string(n_new) + " tokens"), std::string::npos)
        << r.output;

    // A prompt that fits drops nothing; --tokens beyond the context cannot fit at all.
    r = generate_cli("--checkpoint " + run + " --prompt hello --tokens 4");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output.find("dropped"), std::string::npos) << r.output;
    r = generate_cli("--checkpoint " + run + " --prompt hello --tokens " +
                     std::to_string(max_seq + 1));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--tokens " + std::to_string(max_seq + 1)), std::string::npos)
        << r.output;
}

TEST_F(GenerateCli, ATokenizerThatDoesNotFitTheModelIsRefused) {
    // Synthetic data records no tokenizer and test-tiny keeps its 256 ids:
    // the byte tokenizer's 258 do not fit.
    auto r = generate_cli("--checkpoint " + (*dir_ / "synthetic-run") +
                          " --tokenizer byte --prompt hi --tokens 2");
    EXPECT_NE(r.exit_code, 0) << r.output;
    for (const char* size : {"vocabulary of 258", "vocabulary of 256"})
        EXPECT_NE(r.output.find(size), std::string::npos) << size << " in: " << r.output;

    // A SentencePiece model of another size than the recorded byte tokenizer,
    // though within the model's vocabulary (258 padded to 320).
    std::string words;
    Rng rng(7);
    for (int i = 0; i < 3000; i++) {
        for (uint64_t n = 3 + rng.below(5); n > 0; n--) words += char('a' + rng.below(26));
        words += i % 12 == 11 ? '\n' : ' ';
    }
    std::istringstream in(words);
    SentencePieceTrainOptions o;
    o.vocab_size = 300;
    o.threads = 1;
    const std::string sp = train_sentencepiece(
        [&](std::string* line) { return bool(std::getline(in, *line)); }, *dir_ / "sp", o);
    ASSERT_EQ(load_sentencepiece(sp)->vocab_size(), 300);
    r = generate_cli("--checkpoint " + (*dir_ / "text-run") + " --tokenizer " + sp +
                     " --prompt hi --tokens 2");
    EXPECT_NE(r.exit_code, 0) << r.output;
    for (const char* size : {"vocabulary of 300", "tokenizer of 258"})
        EXPECT_NE(r.output.find(size), std::string::npos) << size << " in: " << r.output;
    // The recorded tokenizer itself is accepted.
    r = generate_cli("--checkpoint " + (*dir_ / "text-run") +
                     " --tokenizer byte --prompt hi --tokens 2");
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

// ---- sampling ----

std::vector<float> log_probs(const std::vector<double>& p) {
    std::vector<float> l;
    for (double x : p) l.push_back(float(std::log(x)));
    return l;
}

// The nucleus by brute force: full sort, descending, ties by id.
std::vector<TokenProb> reference_distribution(const std::vector<float>& logits, float temperature,
                                              int top_k, float top_p) {
    const int V = int(logits.size());
    const double mx = *std::max_element(logits.begin(), logits.end());
    std::vector<double> w(static_cast<size_t>(V));
    for (int v = 0; v < V; v++)
        w[size_t(v)] = std::exp((double(logits[size_t(v)]) - mx) / temperature);
    std::vector<int32_t> ids(static_cast<size_t>(V));
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(),
                     [&](int32_t a, int32_t b) { return w[size_t(a)] > w[size_t(b)]; });
    if (top_k > 0 && top_k < V) ids.resize(size_t(top_k));
    double base = 0;
    for (int32_t id : ids) base += w[size_t(id)];
    double mass = 0;
    size_t keep = 0;
    while (keep < ids.size() && (top_p >= 1.0f || mass < double(top_p) * base))
        mass += w[size_t(ids[keep++])];
    std::vector<TokenProb> out;
    for (size_t i = 0; i < keep; i++) out.push_back({ids[i], w[size_t(ids[i])] / mass});
    return out;
}

void expect_distribution(const std::vector<TokenProb>& got, const std::vector<TokenProb>& want,
                         double tol, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); i++) {
        EXPECT_EQ(got[i].token, want[i].token) << what << " rank " << i;
        EXPECT_TRUE(std::fabs(got[i].prob - want[i].prob) <= tol)
            << what << " rank " << i << ": " << got[i].prob << " vs " << want[i].prob;
    }
}

SamplingOptions sampling(float temperature, int top_k, float top_p) {
    SamplingOptions o;
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    return o;
}

TEST(GenerateSampling, GreedyAndTopK1AreArgmax) {
    const int V = 1000;
    std::vector<float> logits(V);
    Rng draws(17);
    for (int trial = 0; trial < 20; trial++) {
        for (int v = 0; v < V; v++) logits[size_t(v)] = 3.0f * rng_normal(trial, 1, uint64_t(v));
        const int32_t best =
            int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        EXPECT_EQ(sample_token(logits.data(), V, sampling(0.0f, 0, 1.0f), draws), best);
        EXPECT_EQ(sample_token(logits.data(), V, sampling(1.0f, 1, 1.0f), draws), best);
        EXPECT_EQ(sample_token(logits.data(), V, sampling(5.0f, 1, 0.5f), draws), best);
    }
    // Ties go to the lowest id, as torch.argmax does.
    const std::vector<float> tied = {0.0f, 2.0f, -1.0f, 2.0f};
    EXPECT_EQ(sample_token(tied.data(), 4, sampling(0.0f, 0, 1.0f), draws), 1);
}

// p = (0.15, 0.5, 0.05, 0.3) over ids 0..3: the nucleus is chosen by
// probability, not by id.
TEST(GenerateSampling, TopPKeepsTheSmallestSetReachingP) {
    const std::vector<float> logits = log_probs({0.15, 0.5, 0.05, 0.3});
    auto dist = [&](int k, float p) {
        return sampling_distribution(logits.data(), 4, sampling(1.0f, k, p));
    };
    // float logits of log p carry ~1e-7 relative error into the probabilities.
    const double tol = 1e-6;
    expect_distribution(dist(0, 0.4f), {{1, 1.0}}, tol, "top_p 0.4");
    expect_distribution(dist(0, 0.75f), {{1, 0.625}, {3, 0.375}}, tol, "top_p 0.75");
    expect_distribution(dist(0, 0.85f), {{1, 0.5 / 0.95}, {3, 0.3 / 0.95}, {0, 0.15 / 0.95}}, tol,
                        "top_p 0.85");
    expect_distribution(dist(0, 1.0f), {{1, 0.5}, {3, 0.3}, {0, 0.15}, {2, 0.05}}, tol, "top_p 1");
    // Hugging Face's order: top-k renormalises first, so top_k 2 then top_p 0.6
    // keeps one token (0.625 >= 0.6); top-p first would have kept two.
    expect_distribution(dist(2, 0.6f), {{1, 1.0}}, tol, "top_k 2, top_p 0.6");
    expect_distribution(dist(3, 1.0f), {{1, 0.5 / 0.95}, {3, 0.3 / 0.95}, {0, 0.15 / 0.95}}, tol,
                        "top_k 3");
    // Temperature sharpens before truncation: p^2 normalised = (0.0225, 0.25, 0.0025, 0.09) /
    // 0.365.
    expect_distribution(sampling_distribution(logits.data(), 4, sampling(0.5f, 0, 0.7f)),
                        {{1, 0.25 / 0.34}, {3, 0.09 / 0.34}}, tol, "temperature 0.5, top_p 0.7");
}

// A long-tailed vocabulary, where only the head is sorted, and a nucleus so
// wide it reaches into the tail (the full sort), both against brute force.
TEST(GenerateSampling, NucleusOverALargeVocabularyMatchesFullSort) {
    const int V = 4096;
    std::vector<float> logits(V);
    // Ten head tokens with logits 0 .. 2; a tail of weight ~2e-7 each relative to
    // the top (under the 1e-3 / V cut) holding ~1.5e-4 of the mass.
    for (int v = 0; v < V; v++)
        logits[size_t(v)] = v % 409 == 7 ? 0.5f * float(v % 5) : -13.5f - 0.1f * float(v % 3);
    for (float p : {0.3f, 0.9f, 0.99999f}) {
        for (int k : {0, 5, 2000}) {
            const std::string what = "top_p " + std::to_string(p) + " top_k " + std::to_string(k);
            expect_distribution(sampling_distribution(logits.data(), V, sampling(1.0f, k, p)),
                                reference_distribution(logits, 1.0f, k, p), 1e-12, what);
        }
    }
    // The widest nucleus must reach into the tail, or the test misses that path.
    EXPECT_GT(sampling_distribution(logits.data(), V, sampling(1.0f, 0, 0.99999f)).size(), 11u);
}

// Empirical frequencies of N draws from p = (0.1, 0.2, 0.3, 0.4) under
// several options. Each count is Binomial(N, q); a 5-sigma bound fails a
// correct sampler with probability under 6e-7 per count, and the draws are
// seeded, so the test is deterministic. Tokens outside the kept set must
// never appear.
TEST(GenerateSampling, FrequenciesMatchTheDistribution) {
    const std::vector<float> logits = log_probs({0.1, 0.2, 0.3, 0.4});
    const int N = 20000;
    struct Case {
        SamplingOptions opts;
        std::vector<double> expected;
    };
    const double s2 = 0.01 + 0.04 + 0.09 + 0.16;
    const std::vector<Case> cases = {
        {sampling(1.0f, 0, 1.0f), {0.1, 0.2, 0.3, 0.4}},
        {sampling(0.5f, 0, 1.0f), {0.01 / s2, 0.04 / s2, 0.09 / s2, 0.16 / s2}},
        {sampling(1.0f, 2, 1.0f), {0, 0, 3.0 / 7, 4.0 / 7}},
        {sampling(1.0f, 0, 0.65f), {0, 0, 3.0 / 7, 4.0 / 7}},
    };
    for (size_t ci = 0; ci < cases.size(); ci++) {
        Rng rng(1000 + ci);
        std::vector<int> counts(4, 0);
        for (int i = 0; i < N; i++)
            counts[size_t(sample_token(logits.data(), 4, cases[ci].opts, rng))]++;
        for (int v = 0; v < 4; v++) {
            const double q = cases[ci].expected[size_t(v)];
            const double sigma = std::sqrt(N * q * (1 - q));
            const double dev = std::fabs(counts[size_t(v)] - N * q);
            EXPECT_TRUE(dev <= 5 * sigma)
                << "case " << ci << " token " << v << ": " << counts[size_t(v)]
                << " draws, expected " << N * q << " +- " << 5 * sigma;
        }
    }
}

TEST(GenerateSampling, SameSeedSameSequence) {
    RandomModel m(model_preset("test-tiny"), 4);
    Generator gen(m.cfg, m.params.data(), 64);
    const std::vector<int32_t> prompt = random_tokens(4, m.cfg.vocab_size, 6);
    SamplingOptions opts = sampling(1.2f, 50, 0.95f);
    opts.seed = 7;
    const std::vector<int32_t> a = generate(gen, prompt, 24, opts).tokens;
    const std::vector<int32_t> b = generate(gen, prompt, 24, opts).tokens;
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.size(), 24u);
    opts.seed = 8;
    EXPECT_NE(generate(gen, prompt, 24, opts).tokens, a) << "the seed must matter";
}

// A tokenizer smaller than the model's padded vocabulary: ids at or above
// vocab_limit are never drawn, at any temperature, and greedy picks the best
// allowed id.
TEST(GenerateSampling, VocabLimitKeepsIdsInsideTheTokenizer) {
    RandomModel m(model_preset("test-tiny"), 5);
    Generator gen(m.cfg, m.params.data(), 64);
    const std::vector<int32_t> prompt = random_tokens(4, 10, 3);
    for (float temperature : {0.0f, 1.0f, 3.0f}) {
        SamplingOptions opts = sampling(temperature, 0, 1.0f);
        opts.seed = 11;
        opts.vocab_limit = 10;
        for (int32_t id : generate(gen, prompt, 48, opts).tokens)
            EXPECT_LT(id, 10) << "temperature " << temperature;
    }
    SamplingOptions bad = sampling(1.0f, 0, 1.0f);
    bad.vocab_limit = -1;
    EXPECT_THROW(validate_sampling(bad), zt::Error);
}

TEST(GenerateSampling, BadOptionsAndLogitsAreRefused) {
    const std::vector<float> logits = {0.0f, 1.0f};
    Rng rng(1);
    auto draw = [&](SamplingOptions o) { sample_token(logits.data(), 2, o, rng); };
    expect_error([&] { draw(sampling(-1.0f, 0, 1.0f)); }, {"temperature", "-1"});
    expect_error([&] { draw(sampling(std::nanf(""), 0, 1.0f)); }, {"temperature"});
    expect_error([&] { draw(sampling(1.0f, -3, 1.0f)); }, {"top_k", "-3"});
    expect_error([&] { draw(sampling(1.0f, 0, 0.0f)); }, {"top_p", "(0, 1]"});
    expect_error([&] { draw(sampling(1.0f, 0, 1.5f)); }, {"top_p", "1.5"});
    const std::vector<float> nan_logits = {0.0f, std::nanf("")};
    expect_error([&] { sample_token(nan_logits.data(), 2, sampling(1.0f, 0, 1.0f), rng); },
                 {"token 1", "NaN"});
}

}  // namespace
