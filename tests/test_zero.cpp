// The ZeRO engine in one process: the flat layout's arithmetic, every stage
// reproducing stage 0 exactly at world size 1 (same math, only the storage
// moves), the ledger's bytes against ZeRO's formulas, and the estimator.
#include <gtest/gtest.h>

#include "core/check.h"
#include "core/rng.h"
#include "model/model.h"
#include "zero/engine.h"
#include "zero/estimate.h"
#include "zero/layout.h"

namespace {

using namespace zt;

TEST(ZeroLayout, PadsAndShardsEveryUnit) {
    ModelLayout ml = model_layout(model_preset("test-tiny"));
    for (int world : {1, 2, 3, 4, 7}) {
        ZeroLayout z = make_zero_layout(ml, world);
        int64_t full = 0, shard = 0;
        for (size_t u = 0; u < z.units.size(); u++) {
            const UnitShard& s = z.units[u];
            EXPECT_EQ(s.numel, ml.units[u].numel);
            EXPECT_EQ(s.padded % world, 0);
            EXPECT_GE(s.padded, s.numel);
            EXPECT_LT(s.padded - s.numel, world);
            EXPECT_EQ(s.shard * world, s.padded);
            EXPECT_EQ(s.full_offset, full);
            EXPECT_EQ(s.shard_offset, shard);
            full += s.padded;
            shard += s.shard;
        }
        EXPECT_EQ(z.full_padded, full);
        EXPECT_EQ(z.shard_total, shard);
    }
}

TEST(ZeroLayout, RefusesWorldLargerThanAUnit) {
    // Tied embeddings leave the head unit only the final norm: 2 x 96 elements.
    ModelLayout ml = model_layout(model_preset("test-tiny-gpt2"));
    EXPECT_NO_THROW(make_zero_layout(ml, 192));
    try {
        make_zero_layout(ml, 193);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("193"), std::string::npos) << e.what();
    }
}

// Trains a few steps with accumulation and clipping; returns losses and final params.
std::pair<std::vector<double>, std::vector<float>> train_world1(const std::string& preset,
                                                                int stage, int K) {
    ModelConfig cfg = model_preset(preset);
    EngineOptions opt;
    opt.stage = stage;
    opt.grad_clip = 0.5f;
    opt.persistence_threshold = 100;  // make the blocks gather and free each time
    opt.prefetch_elements = 200000;
    Engine e(cfg, opt, nullptr, nullptr);
    e.init_params(3);
    const int B = 2, T = 16;
    Model m(cfg, B, T, nullptr);
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    std::vector<double> losses;
    for (int s = 1; s <= 4; s++) {
        e.zero_grads();
        double loss = 0;
        for (int k = 0; k < K; k++) {
            Rng rng(uint64_t(s * 10 + k));
            for (size_t i = 0; i < in.size(); i++) {
                in[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
                tgt[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
            }
            e.begin_micro(k, K);
            loss += m.forward_backward(e, in.data(), tgt.data(), 1.0f / float(B * T * K));
        }
        losses.push_back(loss);
        StepResult r = e.step(1e-2f, s);
        EXPECT_TRUE(r.clipped);
    }
    return {losses, e.full_params()};
}

// One micro-batch a step: every stage performs the same floating-point
// operations in the same order, so results are bit-identical.
TEST(ZeroEngine, EveryStageMatchesStageZeroExactlyInOneProcess) {
    for (const char* preset : {"test-tiny", "test-tiny-gpt2"}) {
        auto ref = train_world1(preset, 0, 1);
        for (int stage = 1; stage <= 3; stage++) {
            auto got = train_world1(preset, stage, 1);
            EXPECT_EQ(got.first, ref.first) << preset << " stage " << stage;
            EXPECT_TRUE(got.second == ref.second)
                << preset << " stage " << stage << " params differ";
        }
    }
}

// With accumulation, stages 0/1 add the second micro-batch into the first
// inside the backward GEMMs (beta = 1), stages 2/3 add two finished gradients:
// the same sum rounded in a different order, so agreement is to fp32 rounding
// (a few ulps, amplified a little by 4 Adam steps): 1e-6 relative.
TEST(ZeroEngine, EveryStageMatchesStageZeroWithAccumulation) {
    auto ref = train_world1("test-tiny", 0, 2);
    for (int stage = 1; stage <= 3; stage++) {
        auto got = train_world1("test-tiny", stage, 2);
        for (size_t s = 0; s < ref.first.size(); s++) {
            double e = std::fabs(got.first[s] - ref.first[s]) / std::fabs(ref.first[s]);
            EXPECT_TRUE(e <= 1e-6) << "stage " << stage << " step " << s << " rel error " << e;
        }
    }
}

TEST(ZeroEngine, LedgerMatchesZeroFormulas) {
    ModelConfig cfg = model_preset("test-tiny");
    int64_t psi = count_params(cfg);
    for (int stage = 0; stage <= 3; stage++) {
        MemoryLedger ledger;
        EngineOptions opt;
        opt.stage = stage;
        Engine e(cfg, opt, nullptr, &ledger);
        // World size 1: no padding, every stage holds the full model states.
        EXPECT_EQ(ledger.current(MemCategory::params), 4 * psi);
        EXPECT_EQ(ledger.current(MemCategory::grads), 4 * psi);
        EXPECT_EQ(ledger.current(MemCategory::optimizer), 8 * psi);
        EstimateInput in;
        in.model = cfg;
        in.stage = stage;
        MemoryEstimate est = estimate_memory(in);
        EXPECT_EQ(est.params, 4 * psi);
        EXPECT_EQ(est.grads, 4 * psi);
        EXPECT_EQ(est.optimizer, 8 * psi);
    }
}

TEST(ZeroEstimate, ShardsByStageAndPrecision) {
    ModelConfig cfg = model_preset("llama-7b");
    EstimateInput in;
    in.model = cfg;
    in.world = 8;
    double psi = double(count_params(cfg));
    auto near = [&](int64_t got, double want) { EXPECT_NEAR(double(got), want, 1e-4 * want); };
    in.precision = "bf16";
    in.stage = 0;
    MemoryEstimate e0 = estimate_memory(in);
    near(e0.params, 2 * psi);
    near(e0.grads, 2 * psi);
    near(e0.optimizer, 12 * psi);
    in.stage = 1;
    MemoryEstimate e1 = estimate_memory(in);
    near(e1.optimizer, 12 * psi / 8);
    near(e1.grads, 2 * psi);
    in.stage = 2;
    near(estimate_memory(in).grads, 2 * psi / 8);
    in.stage = 3;
    MemoryEstimate e3 = estimate_memory(in);
    near(e3.params, 2 * psi / 8);
    near(e3.params + e3.grads + e3.optimizer, 16 * psi / 8);  // ZeRO paper: (2+2+K)Ψ/N, K=12
    in.offload_optimizer = "cpu";
    MemoryEstimate off = estimate_memory(in);
    EXPECT_EQ(off.optimizer, 0);
    near(off.host_optimizer, 12 * psi / 8);
}

TEST(ZeroEstimate, ActivationsMatchTheModel) {
    ModelConfig cfg = model_preset("test-tiny");
    EstimateInput in;
    in.model = cfg;
    in.micro_batch = 4;
    in.seq_len = 32;
    Model m(cfg, 4, 32, nullptr);
    EXPECT_EQ(estimate_memory(in).activations, m.activation_bytes());
}

}  // namespace
