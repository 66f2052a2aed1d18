// Activation recompute (none | attn | full): the same training as none, bit
// for bit, in less memory. Every op is deterministic for a fixed thread count
// and recompute reruns the same ops on the same inputs, so losses, every
// gradient, logits and eval losses must match none's exactly (memcmp), not
// within a tolerance; and the arena must shrink by exactly what a mode stops
// keeping, as activation_bytes_for predicts.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/check.h"
#include "core/rng.h"
#include "model/activations.h"
#include "model/config.h"
#include "model/model.h"
#include "prof/memory.h"
#include "test_util.h"
#include "zero/engine.h"

namespace {

using namespace zt;

const Recompute kModes[] = {Recompute::none, Recompute::attn, Recompute::full};

// The test presets with a third layer, so the shared buffers are reused
// across more than one neighbour. test-tiny is LLaMA with GQA (4 query heads,
// 2 key/value heads); test-tiny-gpt2 has LayerNorm, biases and GELU.
ModelConfig three_layer(const std::string& preset) {
    ModelConfig c = model_preset(preset);
    c.n_layer = 3;
    validate_model_config(c);
    return c;
}

struct Precision {
    const char* name;
    DType compute, grads;
};
const Precision kPrecisions[] = {
    {"fp32", DType::f32, DType::f32},
    {"bf16", DType::bf16, DType::bf16},
    {"bf16-fp32-grads", DType::bf16, DType::f32},
};

// What one run produced, to be compared byte for byte.
struct Trace {
    std::vector<double> losses;                     // every micro-batch's, then the eval loss
    std::vector<std::vector<unsigned char>> grads;  // every unit's, after each step's backward
    std::vector<float> logits;                      // (B, T, V) after the last step
};

// Two optimizer steps of two accumulated micro-batches each, then an eval
// loss and logits, at single-process stage 0.
Trace train(const ModelConfig& cfg, const Precision& p, Recompute mode) {
    const int B = 2, T = 20, K = 2;  // T is not a multiple of attention's row block
    EngineOptions opt;
    opt.compute_dtype = p.compute;
    opt.grad_dtype = p.grads;
    Engine e(cfg, opt, nullptr, nullptr);
    e.init_params(5);
    Model m(cfg, B, T, nullptr, p.compute, mode);
    EXPECT_EQ(m.recompute(), mode);
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    auto fill = [&](uint64_t seed) {
        Rng rng(seed);
        for (size_t i = 0; i < in.size(); i++) {
            in[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
            tgt[i] = i % 7 == 3 ? -1 : int32_t(rng.below(uint64_t(cfg.vocab_size)));
        }
    };
    Trace t;
    for (int s = 1; s <= 2; s++) {
        e.zero_grads();
        for (int k = 0; k < K; k++) {
            fill(uint64_t(100 * s + k));
            e.begin_micro(k, K);
            t.losses.push_back(
                m.forward_backward(e, in.data(), tgt.data(), 1.0f / float(B * T * K)));
        }
        for (int u = 0; u < e.layout().n_units(); u++) {
            Tensor g = e.unit_grads(u);
            const auto* b = static_cast<const unsigned char*>(g.data);
            t.grads.emplace_back(b, b + g.bytes());
        }
        e.step(1e-2f, s);
    }
    fill(7);
    t.losses.push_back(m.forward_loss(e, in.data(), tgt.data()));
    t.logits.resize(size_t(B) * T * size_t(cfg.vocab_size));
    m.forward_logits(e, in.data(), t.logits.data());
    return t;
}

bool same_bytes(const void* a, const void* b, size_t n) {
    return std::memcmp(a, b, n) == 0;
}

class RecomputeBitIdentity : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(RecomputeBitIdentity, LossesGradientsLogitsAndEvalMatchNone) {
    const ModelConfig cfg = three_layer(std::get<0>(GetParam()));
    const Precision& p = kPrecisions[std::get<1>(GetParam())];
    const Trace ref = train(cfg, p, Recompute::none);
    // A reference that learned nothing would make the comparison vacuous.
    ASSERT_EQ(ref.losses.size(), 5u);
    EXPECT_NE(ref.losses[0], ref.losses[2]) << "the step did not change the model";
    for (Recompute mode : {Recompute::attn, Recompute::full}) {
        SCOPED_TRACE(std::string("recompute ") + recompute_name(mode));
        const Trace t = train(cfg, p, mode);
        ASSERT_EQ(t.losses.size(), ref.losses.size());
        for (size_t i = 0; i < ref.losses.size(); i++)
            EXPECT_TRUE(same_bytes(&t.losses[i], &ref.losses[i], sizeof(double)))
                << "loss " << i << ": " << t.losses[i] << " vs none's " << ref.losses[i];
        ASSERT_EQ(t.grads.size(), ref.grads.size());
        for (size_t u = 0; u < ref.grads.size(); u++) {
            ASSERT_EQ(t.grads[u].size(), ref.grads[u].size());
            EXPECT_TRUE(same_bytes(t.grads[u].data(), ref.grads[u].data(), ref.grads[u].size()))
                << "gradient of unit " << u % size_t(cfg.n_layer + 2) << " after step "
                << 1 + u / size_t(cfg.n_layer + 2);
        }
        EXPECT_TRUE(
            same_bytes(t.logits.data(), ref.logits.data(), ref.logits.size() * sizeof(float)))
            << "logits differ";
    }
}

INSTANTIATE_TEST_SUITE_P(PresetsAndPrecisions, RecomputeBitIdentity,
                         ::testing::Combine(::testing::Values("test-tiny", "test-tiny-gpt2"),
                                            ::testing::Values(0, 1, 2)),
                         [](const auto& info) {
                             std::string n = std::get<0>(info.param) + "_" +
                                             kPrecisions[std::get<1>(info.param)].name;
                             for (char& ch : n)
                                 if (ch == '-') ch = '_';
                             return n;
                         });

// Bytes of one arena allocation of n elements of size elem.
int64_t arena_bytes(int64_t n, size_t elem) {
    return int64_t(Arena::aligned(size_t(n) * elem));
}

// The exact savings, rounded as the arena rounds each allocation up to 64 bytes:
//   none - attn = (L-1) * a(B*NH*T*T*s)
//   none - full = (L-1) * [4 a(N*C*s) + a(N*QKV*s) + a(B*NH*T*T*s) + a(N*fc*s) + a(N*H*s)
//                          + k a(N*4)]
// with a(x) = ceil(x / 64) * 64, s the storage size, N = B*T, fc = 2H (LLaMA)
// or H (GPT-2), and k = 2 row statistics (rstd of both norms, LLaMA) or 4
// (mean and rstd, GPT-2): what a layer keeps beyond its input.
TEST(RecomputeMemory, ArenaShrinksByExactlyWhatIsNotKept) {
    for (const std::string preset : {"test-tiny", "test-tiny-gpt2"}) {
        const ModelConfig c = three_layer(preset);
        for (DType dtype : {DType::f32, DType::bf16}) {
            // (1, 5): the probabilities are 200 or 400 bytes, not a multiple of 64.
            for (auto [B, T] : {std::pair{2, 20}, std::pair{1, 5}}) {
                SCOPED_TRACE(preset + " " + dtype_name(dtype) + " B=" + std::to_string(B) +
                             " T=" + std::to_string(T));
                const size_t s = dtype_size(dtype);
                const int64_t N = int64_t(B) * T, L = c.n_layer, H = c.d_ff;
                const bool gpt2 = c.arch == Arch::gpt2;
                const int64_t att = arena_bytes(int64_t(B) * c.n_head * T * T, s);
                const int64_t layer = 4 * arena_bytes(N * c.d_model, s) +
                                      arena_bytes(N * c.qkv_dim(), s) + att +
                                      arena_bytes(N * (gpt2 ? H : 2 * H), s) +
                                      arena_bytes(N * H, s) + (gpt2 ? 4 : 2) * arena_bytes(N, 4);
                int64_t bytes[3];
                for (int i = 0; i < 3; i++) {
                    MemoryLedger ledger;
                    Model m(c, B, T, &ledger, dtype, kModes[i]);
                    bytes[i] = m.activation_bytes();
                    EXPECT_EQ(activation_bytes_for(c, B, T, dtype, kModes[i]), bytes[i])
                        << recompute_name(kModes[i]);
                    EXPECT_EQ(ledger.current(MemCategory::activations), bytes[i]);
                }
                EXPECT_EQ(activation_bytes_for(c, B, T, dtype), bytes[0]) << "default is none";
                EXPECT_GT(bytes[0], bytes[1]);
                EXPECT_GT(bytes[1], bytes[2]);
                EXPECT_EQ(bytes[0] - bytes[1], (L - 1) * att);
                EXPECT_EQ(bytes[0] - bytes[2], (L - 1) * layer);
            }
        }
    }
}

TEST(RecomputeNames, ParseAndNameRoundTrip) {
    for (Recompute r : kModes) EXPECT_EQ(parse_recompute(recompute_name(r)), r);
    EXPECT_STREQ(recompute_name(Recompute::none), "none");
    EXPECT_STREQ(recompute_name(Recompute::attn), "attn");
    EXPECT_STREQ(recompute_name(Recompute::full), "full");
}

TEST(RecomputeNames, RefusesAnUnknownModeNamingTheValidOnes) {
    zt_test::expect_error([] { parse_recompute("selective"); },
                          {"'selective'", "none", "attn", "full"});
    zt_test::expect_error([] { parse_recompute(""); }, {"''", "expected none, attn or full"});
    zt_test::expect_error([] { parse_recompute("Full"); }, {"'Full'"});
}

// Through `zerotrain train`: every mode trains the same losses at world 1
// and, stage 3, world 2, and each run's ledger holds exactly the activation
// bytes `estimate --recompute` predicts.
TEST(RecomputeRuns, TrainMatchesNoneAndTheEstimate) {
    for (int world : {1, 2}) {
        if (world > 1 && !ZT_HAVE_MPI) continue;
        const int stage = world == 1 ? 0 : 3;
        zt_test::TempDir dir;
        std::vector<double> ref;
        for (Recompute r : kModes) {
            const std::string name = recompute_name(r);
            SCOPED_TRACE("world " + std::to_string(world) + " recompute " + name);
            const std::string out = dir / name;
            auto res = zt_test::run_command(
                zt_test::zerotrain_binary() +
                " train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2 --steps 3"
                " --eval-every 0 --eval-tokens 512 --sample-tokens 0 --threads 1 --zero-stage " +
                std::to_string(stage) + (world > 1 ? " --nproc 2" : "") + " --recompute " + name +
                " --out " + out);
            ASSERT_EQ(res.exit_code, 0) << res.output;
            zt_test::RunLog run = zt_test::read_run(out);
            ASSERT_EQ(run.steps.size(), 3u);
            std::vector<double> losses;
            for (const auto& [step, line] : run.steps) losses.push_back(line["loss"].get<double>());
            if (r == Recompute::none) ref = losses;
            EXPECT_EQ(losses, ref);
            auto est = zt_test::run_command(zt_test::zerotrain_binary() +
                                            " estimate --model test-tiny --json --micro-batch 2"
                                            " --seq-len 32 --world-size " +
                                            std::to_string(world) + " --zero-stage " +
                                            std::to_string(stage) + " --recompute " + name);
            ASSERT_EQ(est.exit_code, 0) << est.output;
            const int64_t predicted =
                nlohmann::json::parse(est.output)["mem_bytes"]["activations"].get<int64_t>();
            EXPECT_EQ(predicted,
                      activation_bytes_for(model_preset("test-tiny"), 2, 32, DType::f32, r));
            for (const auto& rk : run.summary["ranks"])
                EXPECT_EQ(rk["mem_bytes"]["activations"].get<int64_t>(), predicted);
        }
    }
}

}  // namespace
