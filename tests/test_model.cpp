// Model-level invariants: parameter counts, the causal mask, learning, and
// Hugging Face config import.
#include <gtest/gtest.h>

#include <fstream>

#include "core/check.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/model.h"
#include "test_util.h"
#include "zero/engine.h"

namespace {

using namespace zt;

TEST(ModelConfig, PresetCountsMatchClosedFormAndLayout) {
    for (const auto& name : model_preset_names()) {
        ModelConfig c = model_preset(name);
        ModelLayout l = model_layout(c);  // checks layout == closed form itself
        int64_t sum = 0;
        for (const auto& u : l.units)
            for (const auto& t : u.tensors) sum += t.numel;
        EXPECT_EQ(sum, count_params(c)) << name;
        EXPECT_EQ(l.n_units(), c.n_layer + 2) << name;
    }
}

// Widths that are not multiples of 8 (d_model 100, d_ff 70) would leave
// tensors packed back to back on 8-byte boundaries in bf16. Each tensor starts
// on 16 bytes instead, except k|v after q and up after gate, which the model
// reads as one matrix with the tensor before; the padding stays zero through
// training steps.
TEST(ModelLayoutAlignment, TensorsStartOn16BytesAndPaddingStaysZero) {
    for (const char* arch : {"llama", "gpt2"}) {
        ModelConfig c = model_preset(std::string(arch) == "llama" ? "test-tiny" : "test-tiny-gpt2");
        c.name = std::string(arch) + "-odd";
        c.d_model = 100;
        c.n_head = 5;
        c.n_kv_head = std::string(arch) == "llama" ? 1 : 5;
        c.d_ff = 70;
        c.vocab_size = 250;
        c.max_seq = 36;
        ModelLayout l = model_layout(c);
        bool padded = false;
        int64_t sum = 0;
        for (const auto& u : l.units) {
            EXPECT_EQ(u.numel % 8, 0) << u.name;
            int64_t end = 0;
            for (const auto& t : u.tensors) {
                const bool fused = t.name.find("k_proj") != std::string::npos ||
                                   t.name.find("v_proj") != std::string::npos ||
                                   t.name.find("up_proj") != std::string::npos;
                if (fused) {
                    EXPECT_EQ(t.offset, end) << t.name << " must continue the matrix before it";
                } else {
                    EXPECT_EQ(t.offset % 8, 0) << t.name;
                }
                padded |= t.offset > end;
                end = t.offset + t.numel;
                sum += t.numel;
            }
        }
        EXPECT_TRUE(padded) << arch << ": these widths need padding, or the test shows nothing";
        EXPECT_EQ(sum, count_params(c)) << arch;

        EngineOptions opt;
        opt.decay_all = true;
        Engine engine(c, opt, nullptr, nullptr);
        engine.init_params(3);
        const int B = 2, T = 12;
        Model model(c, B, T, nullptr);
        std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
        Rng rng(5);
        for (size_t i = 0; i < in.size(); i++) {
            in[i] = int32_t(rng.below(uint64_t(c.vocab_size)));
            tgt[i] = int32_t(rng.below(uint64_t(c.vocab_size)));
        }
        double first = 0, loss = 0;
        for (int s = 1; s <= 20; s++) {
            engine.zero_grads();
            loss = model.forward_backward(engine, in.data(), tgt.data(), 1.0f / float(B * T));
            if (s == 1) first = loss;
            engine.step(3e-3f, s);
        }
        EXPECT_TRUE(loss < first - 0.5) << arch << ": loss " << first << " -> " << loss;
        std::vector<bool> covered(size_t(engine.numel()), false);
        int64_t base = 0;
        for (const auto& u : l.units) {
            for (const auto& t : u.tensors)
                for (int64_t e = 0; e < t.numel; e++) covered[size_t(base + t.offset + e)] = true;
            base += u.numel;
        }
        for (int64_t i = 0; i < engine.numel(); i++) {
            if (!covered[size_t(i)]) {
                ASSERT_EQ(engine.all_params()[i], 0.0f) << arch << ": padding element " << i;
            }
        }
    }
}

// Independently written counts of well-known shapes.
TEST(ModelConfig, KnownParameterCounts) {
    EXPECT_EQ(count_params(model_preset("gpt2-124m")), 124439808);  // GPT-2 small, vocab 50257
    EXPECT_EQ(count_params(model_preset("gpt2-1558m")), 1557611200);
    EXPECT_EQ(count_params(model_preset("llama-1b")), 1235814400);  // Llama-3.2-1B
    EXPECT_EQ(count_params(model_preset("llama-7b")), 6738415616);  // Llama-2-7B
    EXPECT_EQ(count_params(model_preset("llama-8b")), 8030261248);  // Llama-3-8B
    int64_t tiny = count_params(model_preset("tiny"));
    EXPECT_GT(tiny, 44000000);
    EXPECT_LT(tiny, 48000000);
    int64_t tt = count_params(model_preset("test-tiny"));
    EXPECT_GT(tt, 100000);
    EXPECT_LT(tt, 1000000);
}

// Integers in a Hugging Face config.json are range-checked in 64 bits before
// they are narrowed: hidden_size 4294967392 used to wrap to 96 and train,
// n_embd 2^31 to overflow, num_hidden_layers 2^31-1 to make `estimate` grow
// without bound. Each is refused naming the key, the value and the bound.
TEST(ModelConfig, HuggingFaceIntegersAreRangeCheckedByName) {
    zt_test::TempDir dir;
    const std::string llama = R"("model_type": "llama", "intermediate_size": 256,
        "num_attention_heads": 4, "vocab_size": 256, "max_position_embeddings": 64)";
    struct Case {
        std::string fields, key, value;
    };
    const Case cases[] = {
        {llama + R"(, "hidden_size": 4294967392, "num_hidden_layers": 2)", "hidden_size",
         "4294967392"},
        {llama + R"(, "hidden_size": 64, "num_hidden_layers": 2147483647)", "num_hidden_layers",
         "2147483647"},
        {llama + R"(, "hidden_size": 64, "num_hidden_layers": -2)", "num_hidden_layers", "-2"},
        {R"("model_type": "gpt2", "n_embd": 2147483648, "n_layer": 2, "n_head": 4,
            "vocab_size": 256)",
         "n_embd", "2147483648"},
        {R"("model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
            "vocab_size": 18446744073709551615)",
         "vocab_size", "18446744073709551615"},
    };
    for (const Case& c : cases) {
        const std::string path = dir / (c.key + c.value + ".json");
        std::ofstream(path) << "{" << c.fields << "}";
        zt_test::expect_error([&] { model_config_from_hf_json(path); },
                              {"'" + c.key + "'", c.value, "expected an integer from 1 to"});
    }
    // In range it loads.
    std::ofstream(dir / "ok.json")
        << "{" << llama << R"(, "hidden_size": 64, "num_hidden_layers": 2})";
    EXPECT_EQ(model_config_from_hf_json(dir / "ok.json").d_model, 64);
}

TEST(ModelConfig, UnknownPresetListsKnownOnes) {
    try {
        model_preset("gpt5");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gpt5"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("test-tiny"), std::string::npos);
    }
}

TEST(ModelConfig, ReadsHuggingFaceConfigs) {
    zt_test::TempDir dir;
    std::ofstream(dir / "llama.json") << R"({"model_type": "llama", "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": true})";
    ModelConfig c = model_config_from_hf_json(dir / "llama.json");
    EXPECT_EQ(count_params(c), count_params(model_preset("llama-1b")));
    EXPECT_EQ(c.n_kv_head, 8);
    EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);

    std::ofstream(dir / "gpt2.json") << R"({"model_type": "gpt2", "n_embd": 768, "n_layer": 12,
        "n_head": 12, "n_positions": 1024, "vocab_size": 50257, "layer_norm_epsilon": 1e-05})";
    ModelConfig g = model_config_from_hf_json(dir / "gpt2.json");
    EXPECT_EQ(count_params(g), 124439808);

    std::ofstream(dir / "bad.json") << R"({"model_type": "llama", "hidden_size": 100,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 3, "vocab_size": 10})";
    EXPECT_THROW(model_config_from_hf_json(dir / "bad.json"), Error);
    std::ofstream(dir / "missing.json") << R"({"model_type": "llama", "hidden_size": 64})";
    EXPECT_THROW(model_config_from_hf_json(dir / "missing.json"), Error);
}

// Fills the engine with a non-trivial random model.
void random_model(Engine& e, uint64_t seed) {
    e.init_params(seed);
    for (int64_t i = 0; i < e.numel(); i++)
        e.all_params()[i] += 0.05f * rng_normal(seed, 9, uint64_t(i));
}

class ModelArch : public ::testing::TestWithParam<std::string> {};

// Changing tokens at positions > t must leave logits at positions <= t unchanged.
TEST_P(ModelArch, CausalMaskHidesTheFuture) {
    ModelConfig cfg = model_preset(GetParam());
    const int B = 2, T = 16, cut = 9;
    Engine engine(cfg, EngineOptions{}, nullptr, nullptr);
    random_model(engine, 3);
    Model model(cfg, B, T, nullptr);
    std::vector<int32_t> a(size_t(B) * T), b;
    Rng rng(11);
    for (auto& t : a) t = int32_t(rng.below(uint64_t(cfg.vocab_size)));
    b = a;
    for (int bb = 0; bb < B; bb++)
        for (int t = cut + 1; t < T; t++)
            b[size_t(bb * T + t)] = (a[size_t(bb * T + t)] + 7) % cfg.vocab_size;
    size_t V = size_t(cfg.vocab_size);
    std::vector<float> la(size_t(B) * T * V), lb(la.size());
    model.forward_logits(engine, a.data(), la.data());
    model.forward_logits(engine, b.data(), lb.data());
    for (int bb = 0; bb < B; bb++) {
        for (int t = 0; t < T; t++) {
            size_t o = (size_t(bb) * T + size_t(t)) * V;
            double diff = 0;
            for (size_t v = 0; v < V; v++)
                diff = std::max(diff, double(std::fabs(la[o + v] - lb[o + v])));
            if (t <= cut) {
                EXPECT_TRUE(diff == 0.0) << "position " << t << " saw the future: " << diff;
            } else {
                EXPECT_GT(diff, 1e-6) << "position " << t << " ignores its own input";
            }
        }
    }
}

// A tiny model memorises one fixed batch: loss from ~ln(V) to near zero.
TEST_P(ModelArch, OverfitsOneBatch) {
    ModelConfig cfg = model_preset(GetParam());
    const int B = 4, T = 32;
    EngineOptions opt;
    opt.weight_decay = 0;
    Engine engine(cfg, opt, nullptr, nullptr);
    engine.init_params(1);
    Model model(cfg, B, T, nullptr);
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    Rng rng(2);
    for (size_t i = 0; i < in.size(); i++) {
        in[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
        tgt[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
    }
    double first = 0, loss = 0;
    for (int s = 1; s <= 300; s++) {
        engine.zero_grads();
        loss = model.forward_backward(engine, in.data(), tgt.data(), 1.0f / float(B * T));
        if (s == 1) first = loss;
        engine.step(3e-3f, s);
    }
    EXPECT_NEAR(first, std::log(double(cfg.vocab_size)), 0.1);
    // Random targets carry no structure: only memorisation brings the loss down.
    EXPECT_TRUE(loss < 0.05) << "final loss " << loss;
}

INSTANTIATE_TEST_SUITE_P(Presets, ModelArch, ::testing::Values("test-tiny", "test-tiny-gpt2"));

TEST(ModelErrors, RefusesSeqLenAboveMaximum) {
    ModelConfig cfg = model_preset("test-tiny");
    EXPECT_THROW(Model(cfg, 1, cfg.max_seq + 1, nullptr), Error);
    EXPECT_THROW(Model(cfg, 0, 8, nullptr), Error);
}

TEST(ModelErrors, RefusesTokensOutsideVocabulary) {
    ModelConfig cfg = model_preset("test-tiny");
    Engine engine(cfg, EngineOptions{}, nullptr, nullptr);
    engine.init_params(1);
    Model model(cfg, 1, 4, nullptr);
    std::vector<int32_t> in = {1, 2, cfg.vocab_size, 3}, tgt = {1, 2, 3, 4};
    EXPECT_THROW(model.forward_backward(engine, in.data(), tgt.data(), 1.0f), Error);
}

TEST(ModelMemory, LedgerCountsEngineAndActivations) {
    ModelConfig cfg = model_preset("test-tiny");
    MemoryLedger ledger;
    {
        Engine engine(cfg, EngineOptions{}, nullptr, &ledger);
        int64_t n = count_params(cfg);
        EXPECT_EQ(ledger.current(MemCategory::params), 4 * n);
        EXPECT_EQ(ledger.current(MemCategory::grads), 4 * n);
        EXPECT_EQ(ledger.current(MemCategory::optimizer), 8 * n);
        Model model(cfg, 2, 16, &ledger);
        EXPECT_EQ(ledger.current(MemCategory::activations), model.activation_bytes());
        EXPECT_GT(model.activation_bytes(), 0);
    }
    EXPECT_EQ(ledger.total(), 0);
}

}  // namespace

namespace {

// With zero gradients AdamW's update is 0, so only decay moves a weight:
// matrices shrink by (1 - lr * wd); norms and embeddings only when asked.
TEST(EngineDecay, NormsBiasesAndEmbeddingsOnlyWhenAsked) {
    ModelConfig cfg = model_preset("test-tiny-gpt2");
    for (bool all : {false, true}) {
        EngineOptions opt;
        opt.weight_decay = 0.5f;
        opt.decay_all = all;
        Engine e(cfg, opt, nullptr, nullptr);
        e.init_params(4);
        std::vector<float> before(e.all_params(), e.all_params() + e.numel());
        e.zero_grads();
        e.step(0.1f, 1);
        int64_t base = 0;
        for (const auto& u : e.layout().units) {
            for (const auto& t : u.tensors) {
                int64_t i = base + t.offset;
                float expect =
                    t.decay || all ? before[size_t(i)] * (1.0f - 0.1f * 0.5f) : before[size_t(i)];
                EXPECT_FLOAT_EQ(e.all_params()[i], expect) << t.name << " decay_all=" << all;
            }
            base += u.numel;
        }
    }
}

}  // namespace
