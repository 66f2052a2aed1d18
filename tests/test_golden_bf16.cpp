// bf16 mixed-precision golden tests against PyTorch: the test-tiny LLaMA (GQA,
// untied) and GPT-2 (tied) of test_golden.cpp, the same randomised weights and
// tokens, run with a bf16 compute copy and bf16 activations (fp32 master and
// AdamW moments), gradients in bf16 or f32. Compared against two references
// from tests/golden/reference.py on exactly the engine's starting weights:
//   float64   the exact answer (what the bf16 engine approximates);
//   autocast  PyTorch's own CPU bf16 mixed precision (torch.autocast, fp32
//             params): the engine's error should be of the same size as
//             PyTorch's, so the two stay close to each other too.
// The weights are rounded to bf16 before they are loaded, so the fp32 master
// and the bf16 compute copy start equal and both references see the very
// weights the engine computes with: what is measured is the arithmetic, not
// the rounding of the initial weights.
//
// Tolerances come from bf16's 8-bit mantissa (unit roundoff u = 2^-9 ~ 2e-3
// per rounding), measured first and set with a stated margin; the measured
// worst values are printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/model.h"
#include "golden_reference.h"
#include "test_util.h"
#include "zero/engine.h"

namespace {

using namespace zt;
using zt_test::TempDir;

// The run of test_golden.cpp: same batch, steps and optimizer settings.
constexpr int kB = 2, kT = 24, kSteps = 5;
constexpr float kLr = 1e-3f, kClip = 0.5f, kWd = 0.1f;

// The golden weights (golden_reference.h), rounded to bf16 (see the top of the file).
std::vector<float> randomised_bf16_weights(const ModelLayout& layout) {
    std::vector<float> w = zt_test::golden_weights(layout);
    for (float& x : w) x = bf16_to_f32(f32_to_bf16(x));
    return w;
}

struct Reference {
    std::string name;  // "float64" or "autocast"
    std::vector<float> logits, loss, grads, losses;
};

// Runs the reference on the engine's weights: autocast selects PyTorch's
// bf16 autocast with fp32 params, otherwise float64 throughout.
Reference run_reference(const std::string& dir, const ModelConfig& cfg, const EngineOptions& opt,
                        const std::vector<float>& weights, const std::vector<int32_t>& tokens,
                        bool autocast) {
    zt_test::GoldenRun run;
    run.batch = kB;
    run.seq_len = kT;
    run.steps = kSteps;
    run.lr = kLr;
    run.dtype = autocast ? "float32" : "float64";
    run.autocast = autocast;
    zt_test::GoldenReference g =
        zt_test::run_golden_reference(dir, cfg, opt, run, weights.data(), tokens);
    Reference ref;
    ref.name = autocast ? "autocast" : "float64";
    ref.logits = std::move(g.logits);
    ref.loss = std::move(g.loss);
    ref.grads = std::move(g.grads);
    ref.losses = std::move(g.losses);
    return ref;
}

// Direction and size of a gradient tensor a against its reference b, in double.
struct GradError {
    double cosine;    // a.b / (|a| |b|): NaN if either holds a NaN
    double norm_err;  // | |a| - |b| | / |b|
    double rel;       // |a - b| / |b|
};

GradError grad_error(const float* a, const float* b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += double(a[i]) * double(b[i]);
        aa += double(a[i]) * double(a[i]);
        bb += double(b[i]) * double(b[i]);
    }
    GradError e;
    e.cosine = ab / std::sqrt(aa * bb);
    e.norm_err = std::fabs(std::sqrt(aa) - std::sqrt(bb)) / std::sqrt(bb);
    e.rel = zt_test::rel_error(a, b, n);
    return e;
}

// Every parameter tensor on its own, so a small tensor's error is not hidden by a big one.
struct TensorError {
    std::string name;
    GradError e;
};

std::vector<TensorError> tensor_errors(const ModelLayout& layout, const std::vector<float>& grads,
                                       const std::vector<float>& ref) {
    std::vector<TensorError> out;
    int64_t base = 0;
    for (const auto& u : layout.units) {
        for (const auto& t : u.tensors) {
            const size_t o = size_t(base + t.offset);
            out.push_back({t.name, grad_error(grads.data() + o, ref.data() + o, size_t(t.numel))});
        }
        base += u.numel;
    }
    return out;
}

// The worst of each measure over the tensors, and where; a NaN is the worst of all.
struct WorstGrad {
    GradError e{1, 0, 0};
    std::string cos_at, norm_at, rel_at;
};

// Whether cand replaces cur as the worst: NaN beats everything and stays.
bool worse(double cand, double cur, bool lower_is_worse) {
    if (std::isnan(cur)) return false;
    if (std::isnan(cand)) return true;
    return lower_is_worse ? cand < cur : cand > cur;
}

WorstGrad worst_grad(const std::vector<TensorError>& errs) {
    WorstGrad w;
    for (const TensorError& t : errs) {
        if (worse(t.e.cosine, w.e.cosine, true)) w.e.cosine = t.e.cosine, w.cos_at = t.name;
        if (worse(t.e.norm_err, w.e.norm_err, false))
            w.e.norm_err = t.e.norm_err, w.norm_at = t.name;
        if (worse(t.e.rel, w.e.rel, false)) w.e.rel = t.e.rel, w.rel_at = t.name;
    }
    return w;
}

double rel_diff(double a, double b) {
    return std::fabs(a - b) / std::fabs(b);
}

// The gradient of every unit, widened to f32, in model order without padding:
// (total_numel,) into out.
void engine_grads(Engine& engine, std::vector<float>* out) {
    const ModelLayout& layout = engine.layout();
    out->assign(size_t(layout.total_numel), 0.0f);
    int64_t o = 0;
    for (int u = 0; u < layout.n_units(); u++) {
        const int64_t n = layout.units[size_t(u)].numel;
        Tensor g = engine.unit_grads(u);
        ASSERT_EQ(g.dtype, engine.grad_dtype()) << "unit " << u;
        ASSERT_EQ(g.numel(), n) << "unit " << u;
        for (int64_t i = 0; i < n; i++)
            (*out)[size_t(o + i)] = g.dtype == DType::bf16
                                        ? bf16_to_f32(static_cast<const bf16*>(g.data)[i])
                                        : static_cast<const float*>(g.data)[i];
        o += n;
    }
}

void run_golden_bf16(const std::string& preset, DType grad_dtype) {
    ModelConfig cfg = model_preset(preset);
    EngineOptions opt;
    opt.beta1 = 0.9f;
    opt.beta2 = 0.95f;
    opt.adam_eps = 1e-8f;
    opt.weight_decay = kWd;
    opt.grad_clip = kClip;
    opt.compute_dtype = DType::bf16;
    opt.grad_dtype = grad_dtype;
    Engine engine(cfg, opt, nullptr, nullptr);
    const ModelLayout& layout = engine.layout();
    const std::vector<float> weights = randomised_bf16_weights(layout);
    engine.load_full_params(weights.data());
    ASSERT_EQ(engine.full_params(), weights) << "the fp32 master must hold the loaded weights";
    Model model(cfg, kB, kT, nullptr, DType::bf16);
    const std::string what = preset + " (bf16 compute, " + dtype_name(grad_dtype) + " grads)";

    const zt_test::GoldenBatch batch = zt_test::golden_batch(cfg.vocab_size, kB, kT);
    const std::vector<int32_t>&tokens = batch.tokens, &in = batch.inputs, &tgt = batch.targets;

    TempDir dir;
    std::filesystem::create_directories(dir / "float64");
    std::filesystem::create_directories(dir / "autocast");
    std::vector<Reference> refs;
    for (bool autocast : {false, true}) {
        refs.push_back(
            run_reference(dir / (autocast ? "autocast" : "float64"), cfg, opt, weights, tokens, autocast));
        const Reference& r = refs.back();
        ASSERT_EQ(r.logits.size(), size_t(kB) * kT * cfg.vocab_size) << r.name;
        ASSERT_EQ(r.loss.size(), size_t(1)) << r.name;
        ASSERT_EQ(r.grads.size(), size_t(engine.numel())) << r.name;
        ASSERT_EQ(r.losses.size(), size_t(kSteps)) << r.name;
    }

    // PyTorch's own bf16 error, printed for scale: autocast against float64.
    const Reference &f64 = refs[0], &ac = refs[1];
    {
        const WorstGrad w = worst_grad(tensor_errors(layout, ac.grads, f64.grads));
        double worst_step = 0;
        for (int s = 0; s < kSteps; s++)
            worst_step =
                std::max(worst_step, rel_diff(ac.losses[size_t(s)], f64.losses[size_t(s)]));
        std::printf(
            "%s: PyTorch autocast vs float64 (for scale): logits rel %.2e, loss rel %.2e; "
            "grads worst cosine %.5f, norm err %.2e, rel %.2e; worst step loss rel %.2e\n",
            preset.c_str(),
            zt_test::rel_error(ac.logits.data(), f64.logits.data(), ac.logits.size()),
            rel_diff(ac.loss[0], f64.loss[0]), w.e.cosine, w.e.norm_err, w.e.rel, worst_step);
    }

    std::vector<float> logits(f64.logits.size());
    model.forward_logits(engine, in.data(), logits.data());
    engine.zero_grads();
    const double loss =
        model.forward_backward(engine, in.data(), tgt.data(), 1.0f / float(kB * kT));
    std::vector<float> grads;
    ASSERT_NO_FATAL_FAILURE(engine_grads(engine, &grads));

    // The tolerances hold against both references. Measured first (worst over
    // both models, both grad dtypes, both references, PyTorch autocast's own
    // error against float64 included), then set with the margin stated; u = 2^-9.
    for (const Reference& ref : refs) {
        const std::string vs = what + " vs " + ref.name;
        // Logits sit at the end of a chain of ~10 bf16 roundings per layer
        // (norm outputs, q/k/v, probabilities, attention and MLP outputs, the
        // logits themselves), each <= u: sqrt(20) u ~ 9e-3 if independent.
        // Measured <= 1.46e-2 (PyTorch autocast too); bound 3e-2 = 15u, 2x margin.
        const double e_logits = zt_test::rel_error(logits.data(), ref.logits.data(), logits.size());
        EXPECT_TRUE(e_logits <= 3e-2) << vs << " logits rel error " << e_logits;
        // The loss is a mean over B*T = 48 positions, which averages the
        // per-position errors (computed in fp32 from bf16 logits). Measured
        // 1.1e-5 .. 4.0e-4 (PyTorch's own 7.2e-4): it varies 30x between models,
        // so the bound is 2e-3 ~ u, 5x the worst.
        const double e_loss = rel_diff(loss, ref.loss[0]);
        EXPECT_TRUE(e_loss <= 2e-3) << vs << " loss " << loss << " vs " << ref.loss[0];

        // Gradients: the backward chain re-reads the bf16 activations and
        // rounds every input gradient to bf16, about twice the forward's
        // roundings. Measured per tensor: cosine >= 0.99944 (1 - cos <= 5.6e-4),
        // norm error <= 6.7e-3, rel L2 <= 3.4e-2, evenly over all tensors.
        //   cosine >= 0.997: 1 - cos <= 3e-3, 5x the worst (an error orthogonal
        //     to the gradient of sqrt(2 * 3e-3) = 7.7e-2, 2.3x the worst rel);
        //   norm error <= 2e-2 = 10u, 3x the worst;
        //   rel L2 <= 7e-2, 2x the worst.
        const std::vector<TensorError> errs = tensor_errors(layout, grads, ref.grads);
        for (const TensorError& t : errs) {
            EXPECT_TRUE(t.e.cosine >= 0.997)
                << vs << " grad of " << t.name << " cosine " << t.e.cosine;
            EXPECT_TRUE(t.e.norm_err <= 2e-2)
                << vs << " grad of " << t.name << " norm error " << t.e.norm_err;
            EXPECT_TRUE(t.e.rel <= 7e-2) << vs << " grad of " << t.name << " rel error " << t.e.rel;
        }
        const WorstGrad w = worst_grad(errs);
        std::printf(
            "%s: logits rel %.2e (bound 3e-2), loss rel %.2e (2e-3); grads worst cosine "
            "%.5f (>= 0.997, %s), norm err %.2e (2e-2, %s), rel %.2e (7e-2, %s)\n",
            vs.c_str(), e_logits, e_loss, w.e.cosine, w.cos_at.c_str(), w.e.norm_err,
            w.norm_at.c_str(), w.e.rel, w.rel_at.c_str());
    }

    // The references restart from the initial weights; we continue from the
    // gradient just taken (step 1), so losses[0] is the loss above.
    std::vector<double> losses = {loss};
    StepResult first = engine.step(kLr, 1);
    EXPECT_TRUE(first.clipped) << "clipping must be active: grad norm " << first.grad_norm;
    for (int s = 1; s < kSteps; s++) {
        engine.zero_grads();
        losses.push_back(
            model.forward_backward(engine, in.data(), tgt.data(), 1.0f / float(kB * kT)));
        engine.step(kLr, s + 1);
    }
    for (const Reference& ref : refs) {
        // Each loss carries the forward's error plus the weights' drift: Adam's
        // first steps move every weight by ~lr whatever its gradient's size, so
        // a small gradient whose sign bf16 flips moves the other way, and each
        // update is rounded into the bf16 compute copy (ulp 1e-3 at weights of
        // 0.15, as large as lr; PyTorch autocast rounds the same way). Measured
        // <= 7.0e-3 (PyTorch's own 6.1e-3); bound 1.5e-2, 2.1x the worst. A
        // bf16 master, emulated in the float64 reference, misses by 2.7e-2 on
        // the LLaMA model (9e-3 on GPT-2, which this bound cannot tell).
        double worst = 0;
        for (int s = 0; s < kSteps; s++) {
            const double e = rel_diff(losses[size_t(s)], ref.losses[size_t(s)]);
            worst = std::max(worst, e);
            EXPECT_TRUE(e <= 1.5e-2) << what << " vs " << ref.name << " step " << s << " loss "
                                     << losses[size_t(s)] << " vs " << ref.losses[size_t(s)];
        }
        std::printf(
            "%s vs %s: worst of %d step losses rel %.2e (bound 1.5e-2; loss %.4f -> %.4f, "
            "reference %.4f -> %.4f)\n",
            what.c_str(), ref.name.c_str(), kSteps, worst, losses.front(), losses.back(),
            double(ref.losses.front()), double(ref.losses.back()));
    }
    EXPECT_LT(losses.back(), losses.front()) << "5 AdamW steps on one batch must lower the loss";
}

TEST(GoldenBf16, LlamaTestTinyBf16GradsMatchesPyTorch) {
    run_golden_bf16("test-tiny", DType::bf16);
}
TEST(GoldenBf16, LlamaTestTinyF32GradsMatchesPyTorch) {
    run_golden_bf16("test-tiny", DType::f32);
}
TEST(GoldenBf16, Gpt2TestTinyBf16GradsMatchesPyTorch) {
    run_golden_bf16("test-tiny-gpt2", DType::bf16);
}
TEST(GoldenBf16, Gpt2TestTinyF32GradsMatchesPyTorch) {
    run_golden_bf16("test-tiny-gpt2", DType::f32);
}

}  // namespace
