// DeviceHooks (train/device_hooks.h) between the engine and a model on
// another device, checked on the host copier (ops/backend.h): the same
// copies the GPU path makes, into host memory. A run through the hooks must
// be the engine's own run: bit for bit at one micro-batch a step, and to
// fp32 rounding of the summation order with gradient accumulation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/rng.h"
#include "model/model.h"
#include "ops/backend.h"
#include "train/device_hooks.h"
#include "zero/engine.h"

namespace {

using namespace zt;

struct Trained {
    std::vector<double> losses, norms;
    std::vector<float> params;
};

Trained train(const char* preset, int stage, DType dtype, int accum, bool through_hooks) {
    ModelConfig cfg = model_preset(preset);
    EngineOptions opt;
    opt.stage = stage;
    opt.compute_dtype = dtype;
    opt.grad_dtype = dtype;
    Engine engine(cfg, opt, nullptr, nullptr);
    engine.init_params(7);
    const int B = 2, T = 16;
    Model model(cfg, B, T, nullptr, dtype);
    std::unique_ptr<DeviceCopier> copier = make_host_copier();
    DeviceHooks hooks(engine, *copier);
    UnitHooks& h = through_hooks ? static_cast<UnitHooks&>(hooks) : engine;
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    Rng rng(11);
    Trained r;
    for (int s = 1; s <= 4; s++) {
        engine.zero_grads();
        double loss = 0;
        for (int m = 0; m < accum; m++) {
            for (size_t i = 0; i < in.size(); i++) {
                in[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
                tgt[i] = int32_t(rng.below(uint64_t(cfg.vocab_size)));
            }
            engine.begin_micro(m, accum);
            loss += model.forward_backward(h, in.data(), tgt.data(), 1.0f / float(B * T * accum));
        }
        StepResult res = engine.step(1e-2f, s);
        hooks.params_changed();
        r.losses.push_back(loss);
        r.norms.push_back(res.grad_norm);
    }
    r.losses.push_back(model.forward_loss(h, in.data(), tgt.data()));
    r.params = engine.full_params();
    return r;
}

TEST(DeviceHooks, OneMicroBatchIsTheEnginesRunBitForBit) {
    for (const char* preset : {"test-tiny", "test-tiny-gpt2"}) {
        for (DType dtype : {DType::f32, DType::bf16}) {
            for (int stage = 0; stage <= 3; stage++) {
                const Trained a = train(preset, stage, dtype, 1, false);
                const Trained b = train(preset, stage, dtype, 1, true);
                SCOPED_TRACE(std::string(preset) + " " + dtype_name(dtype) + " stage " +
                             std::to_string(stage));
                EXPECT_EQ(a.losses, b.losses);
                EXPECT_EQ(a.norms, b.norms);
                EXPECT_EQ(a.params, b.params);
            }
        }
    }
}

// With two micro-batches the engine's gradient is (0 + g1) + g2 directly and
// (0 + g1) + (0 + g2) through the hooks: the same sum, one rounding apart
// per element, so the fp32 losses agree to ~1e-6 relative after 4 steps.
TEST(DeviceHooks, AccumulatedMicroBatchesSumAsTheEngineDoes) {
    const Trained a = train("test-tiny", 2, DType::f32, 2, false);
    const Trained b = train("test-tiny", 2, DType::f32, 2, true);
    ASSERT_EQ(a.losses.size(), b.losses.size());
    for (size_t i = 0; i < a.losses.size(); i++) {
        const double rel = std::fabs(a.losses[i] - b.losses[i]) / std::fabs(a.losses[i]);
        EXPECT_TRUE(rel <= 1e-5) << "step " << i + 1 << ": " << a.losses[i] << " vs "
                                 << b.losses[i];
    }
    EXPECT_NE(a.losses[0], 0.0);
}

}  // namespace
