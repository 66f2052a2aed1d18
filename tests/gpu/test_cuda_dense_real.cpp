// GPU dense ops at GPT-2 small's real sizes (B = 2, T = 1024, so N = 2048
// rows; C = 768; V = 50257; the MLP's OC = 3072), against the CPU reference
// on the whole arrays: the fused classifier with the GPU's chunk sizing (two
// chunks, the second partial), and matmul forward, backward and the GELU
// epilogue. Outputs start from zero here; the small-size tests in
// test_cuda_dense.cpp check that every backward accumulates.
//
// Inputs are rounded to bf16 once, so the fp32 and bf16 runs and the CPU see
// the same values. Tolerances (norm-wise relative):
//   kTolF32 (1e-5) where the longest fp32 sum has at most ~3000 terms (the
//     matmuls: sqrt(3072) u = 3.3e-6).
//   kTolLongF32 (5e-5) for the classifier: each row's softmax normaliser sums
//     V = 50257 exponentials and dx sums 50257 products, in different orders
//     on the two sides; fp32 rounding there grows like sqrt(V) u = 1.3e-5.
//     A wrong index, chunk offset or term errs by 1e-3 or more.
//   kTolBf16 (1e-2) for bf16: dlogits and each output rounded once (~5e-3).
// dweight is checked separately on the vocabulary rows some position
// targets and on the rows none does: the first carry almost all of the norm,
// so only the second can show that the non-target softmax terms are right.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "ops/classifier.h"
#include "ops/cuda/classifier.h"
#include "ops/cuda/matmul.h"
#include "ops/matmul.h"
#include "ops/mlp.h"

namespace {

using namespace zt_gpu_test;
namespace cpu = zt::cpu;
namespace gpu = zt::cuda;

constexpr double kTolLongF32 = 5e-5;
constexpr int64_t kN = 2048;  // B = 2, T = 1024
constexpr int kC = 768, kV = 50257, kOC = 3072;

std::vector<float> randn_bf16(size_t n, uint64_t stream, float scale) {
    auto v = randn(n, stream, scale);
    for (float& x : v) x = from_bf16(to_bf16(x));
    return v;
}

// ---- classifier ----------------------------------------------------------------

struct ClassifierReference {
    std::vector<float> x, w;  // (N, C), (V, C), bf16 values
    std::vector<int32_t> targets;
    std::vector<float> losses, dx, dw;
    std::vector<char> targeted;  // (V) some position has this target
};

const ClassifierReference& classifier_reference() {
    static const ClassifierReference ref = [] {
        ClassifierReference r;
        r.x = randn_bf16(size_t(kN) * kC, 201, 1.0f);
        r.w = randn_bf16(size_t(kV) * kC, 202, 0.05f);
        r.targets.resize(kN);
        zt::Rng rng(203);
        for (auto& t : r.targets) t = int32_t(rng.below(kV));
        r.targets[7] = r.targets[1280] = -1;  // ignored, one in each chunk
        r.targets[2047] = kV - 1;
        r.targeted.assign(kV, 0);
        for (int32_t t : r.targets)
            if (t >= 0) r.targeted[size_t(t)] = 1;
        r.losses.resize(kN);
        r.dx.assign(size_t(kN) * kC, 0.0f);
        r.dw.assign(size_t(kV) * kC, 0.0f);
        const int chunk = 256;
        std::vector<float> scratch(size_t(chunk) * kV);
        cpu::classifier_forward_backward(r.losses.data(), r.dx.data(), r.dw.data(), r.x.data(),
                                         r.w.data(), r.targets.data(), kN, kC, kV, 1.0f / kN,
                                         scratch.data(), chunk);
        return r;
    }();
    return ref;
}

// dweight rows split by whether any position targets them.
void expect_dweight_close(const char* what, const std::vector<float>& got,
                          const ClassifierReference& ref, double tol) {
    std::vector<float> got_t, want_t, got_n, want_n;
    for (int v = 0; v < kV; v++) {
        auto& g = ref.targeted[v] ? got_t : got_n;
        auto& w = ref.targeted[v] ? want_t : want_n;
        g.insert(g.end(), got.begin() + int64_t(v) * kC, got.begin() + int64_t(v + 1) * kC);
        w.insert(w.end(), ref.dw.begin() + int64_t(v) * kC, ref.dw.begin() + int64_t(v + 1) * kC);
    }
    SCOPED_TRACE(what);
    expect_close("dweight, targeted vocabulary rows", got_t, want_t, tol);
    expect_close("dweight, untargeted vocabulary rows", got_n, want_n, tol);
}

// E: x, weight and dx type; G: dweight type.
template <class E, class G>
void classifier_real_case(cudaStream_t s, double tol) {
    const ClassifierReference& ref = classifier_reference();
    const int chunk_rows = gpu::classifier_chunk_rows(kN, kV);
    ASSERT_EQ(chunk_rows, 1280);  // two chunks: 1280 rows and 768
    auto x = ref.x, w = ref.w;
    auto d_x = to_device<E>(x, s), d_w = to_device<E>(w, s);
    auto d_t = upload(ref.targets, s);
    DeviceBuffer<E> d_dx(kN * kC);
    DeviceBuffer<G> d_dw(int64_t(kV) * kC);
    DeviceBuffer<float> d_losses(kN), d_scratch(int64_t(chunk_rows) * kV);
    d_dx.zero_async(s);
    d_dw.zero_async(s);
    gpu::classifier_forward_backward(d_losses.data(), d_dx.data(), d_dw.data(), d_x.data(),
                                     d_w.data(), d_t.data(), kN, kC, kV, 1.0f / kN,
                                     d_scratch.data(), chunk_rows, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    const auto losses = to_host(d_losses, s);
    EXPECT_EQ(losses[7], 0.0f);
    EXPECT_EQ(losses[1280], 0.0f);
    expect_close("classifier losses", losses, ref.losses, tol);
    expect_close("classifier dx", to_host(d_dx, s), ref.dx, tol);
    expect_dweight_close("classifier", to_host(d_dw, s), ref, tol);
}

TEST_F(CudaTest, ClassifierGpt2SizeF32) {
    classifier_real_case<float, float>(stream_, kTolLongF32);
}
TEST_F(CudaTest, ClassifierGpt2SizeBf16F32Dweight) {
    classifier_real_case<bf16, float>(stream_, kTolBf16);
}
TEST_F(CudaTest, ClassifierGpt2SizeBf16) {
    classifier_real_case<bf16, bf16>(stream_, kTolBf16);
}

// ---- matmul ----------------------------------------------------------------------

struct MatmulReference {
    std::vector<float> inp, w, b, dout;
    std::vector<float> out, gelu_out, dinp, dw, db;
};

const MatmulReference& matmul_reference() {
    static const MatmulReference ref = [] {
        MatmulReference r;
        r.inp = randn_bf16(size_t(kN) * kC, 211, 1.0f);
        r.w = randn_bf16(size_t(kOC) * kC, 212, 0.02f);
        r.b = randn_bf16(kOC, 213, 0.1f);
        r.dout = randn_bf16(size_t(kN) * kOC, 214, 1.0f);
        r.out.resize(size_t(kN) * kOC);
        cpu::matmul_forward(r.out.data(), r.inp.data(), r.w.data(), r.b.data(), kN, kC, kOC);
        r.gelu_out.resize(r.out.size());
        cpu::gelu_forward(r.gelu_out.data(), r.out.data(), int64_t(r.out.size()));
        r.dinp.assign(size_t(kN) * kC, 0.0f);
        r.dw.assign(size_t(kOC) * kC, 0.0f);
        r.db.assign(kOC, 0.0f);
        cpu::matmul_backward(r.dinp.data(), r.dw.data(), r.db.data(), r.dout.data(), r.inp.data(),
                             r.w.data(), kN, kC, kOC);
        return r;
    }();
    return ref;
}

// E: activations and weights; G: weight-gradient type. gelu_tol bounds the
// GELU epilogue's activated output (cuBLASLt does not document its GELU's
// accuracy: 1e-4 in fp32, still 40x finer than bf16; kTolBf16 in bf16).
template <class E, class G>
void matmul_real_case(cudaStream_t s, double tol, double gelu_tol) {
    const MatmulReference& ref = matmul_reference();
    auto inp = ref.inp, w = ref.w, b = ref.b, dout = ref.dout;
    auto d_inp = to_device<E>(inp, s), d_w = to_device<E>(w, s), d_b = to_device<E>(b, s);
    auto d_dout = to_device<E>(dout, s);
    DeviceBuffer<E> d_out(kN * kOC), d_gelu(kN * kOC), d_pre(kN * kOC), d_dinp(kN * kC);
    DeviceBuffer<G> d_dw(int64_t(kOC) * kC), d_db(kOC);
    d_dinp.zero_async(s);
    d_dw.zero_async(s);
    d_db.zero_async(s);
    gpu::matmul_forward(d_out.data(), d_inp.data(), d_w.data(), d_b.data(), kN, kC, kOC, s);
    gpu::matmul_gelu_forward(d_gelu.data(), d_pre.data(), d_inp.data(), d_w.data(), d_b.data(), kN,
                             kC, kOC, s);
    gpu::matmul_backward(d_dinp.data(), d_dw.data(), d_db.data(), d_dout.data(), d_inp.data(),
                         d_w.data(), kN, kC, kOC, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    expect_close("matmul out", to_host(d_out, s), ref.out, tol);
    expect_close("matmul_gelu pre_gelu", to_host(d_pre, s), ref.out, tol);
    expect_close("matmul_gelu out", to_host(d_gelu, s), ref.gelu_out, gelu_tol);
    expect_close("matmul dinp", to_host(d_dinp, s), ref.dinp, tol);
    expect_close("matmul dweight", to_host(d_dw, s), ref.dw, tol);
    expect_close("matmul dbias", to_host(d_db, s), ref.db, tol);
}

TEST_F(CudaTest, MatmulGpt2MlpSizeF32) {
    matmul_real_case<float, float>(stream_, kTolF32, 1e-4);
}
TEST_F(CudaTest, MatmulGpt2MlpSizeBf16) {
    matmul_real_case<bf16, bf16>(stream_, kTolBf16, kTolBf16);
}
TEST_F(CudaTest, MatmulGpt2MlpSizeBf16F32Grads) {
    matmul_real_case<bf16, float>(stream_, kTolBf16, kTolBf16);
}

}  // namespace
