// GPU op tests, part 1: the matrix and buffer ops (matmul with its bias and
// GELU epilogues, the fused classifier, embedding, AdamW, sum of squares,
// scaling, casts) and the device arena, each against the CPU reference
// (zt::cpu) on random inputs, forward and backward, in fp32 and bf16.
// Tolerances and their reasons are in gpu_test_util.h; where the GPU must
// agree bit for bit (casts, embedding in fp32, scaling) the test says so.
// Sizes are deliberately not multiples of any tile: N = 37, C = 100,
// OC = 75, V = 1001, T = 67. Backward outputs are pre-filled with random
// values on both sides, so every "+=" is checked to accumulate; the
// classifier's gradients are compared as increments (see classifier_case).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "ops/adamw.h"
#include "ops/cast.h"
#include "ops/classifier.h"
#include "ops/cuda/adamw.h"
#include "ops/cuda/cast.h"
#include "ops/cuda/classifier.h"
#include "ops/cuda/device_arena.h"
#include "ops/cuda/embedding.h"
#include "ops/cuda/gemm.h"
#include "ops/cuda/matmul.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "prof/memory.h"

namespace {

using namespace zt_gpu_test;
namespace cpu = zt::cpu;
namespace gpu = zt::cuda;

// ---- matmul ------------------------------------------------------------------

// G: the weight-gradient type (E, or fp32 for a bf16 model's mixed overload).
template <class E, class G = E>
void matmul_case(cudaStream_t s, int64_t N, int C, int OC, bool with_bias) {
    auto inp = randn(size_t(N) * C, 1), w = randn(size_t(OC) * C, 2, 0.1f), b = randn(OC, 3);
    auto dout = randn(size_t(N) * OC, 4);
    auto dinp = randn(size_t(N) * C, 5), dw = randn(size_t(OC) * C, 6), db = randn(OC, 7);
    auto d_inp = to_device<E>(inp, s), d_w = to_device<E>(w, s), d_b = to_device<E>(b, s);
    auto d_dout = to_device<E>(dout, s);
    auto d_dinp = to_device<E>(dinp, s), d_dw = to_device<G>(dw, s), d_db = to_device<G>(db, s);
    DeviceBuffer<E> d_out(N * OC);
    gpu::matmul_forward(d_out.data(), d_inp.data(), d_w.data(), with_bias ? d_b.data() : nullptr, N,
                        C, OC, s);
    gpu::matmul_backward(d_dinp.data(), d_dw.data(), with_bias ? d_db.data() : nullptr,
                         d_dout.data(), d_inp.data(), d_w.data(), N, C, OC, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    std::vector<float> out(size_t(N) * OC);
    cpu::matmul_forward(out.data(), inp.data(), w.data(), with_bias ? b.data() : nullptr, N, C, OC);
    cpu::matmul_backward(dinp.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(),
                         inp.data(), w.data(), N, C, OC);
    expect_close("matmul out", to_host(d_out, s), out, tol<E>());
    expect_close("matmul dinp", to_host(d_dinp, s), dinp, tol<E>());
    expect_close("matmul dweight", to_host(d_dw, s), dw, tol<E>());
    expect_close("matmul dbias", to_host(d_db, s), db, tol<E>());  // untouched without bias
}

TEST_F(CudaTest, MatmulBiasF32) {
    matmul_case<float>(stream_, 37, 100, 75, true);
}
TEST_F(CudaTest, MatmulBiasBf16) {
    matmul_case<bf16>(stream_, 37, 100, 75, true);
}
TEST_F(CudaTest, MatmulBiasBf16F32Grads) {
    matmul_case<bf16, float>(stream_, 37, 100, 75, true);
}
TEST_F(CudaTest, MatmulNoBiasF32) {
    matmul_case<float>(stream_, 37, 100, 75, false);
}
TEST_F(CudaTest, MatmulNoBiasBf16) {
    matmul_case<bf16>(stream_, 37, 100, 75, false);
}
// Many rows: the bias reduction uses more than one row split.
TEST_F(CudaTest, MatmulManyRowsF32) {
    matmul_case<float>(stream_, 1237, 64, 33, true);
}

// cuBLASLt's GELU_AUX_BIAS epilogue against matmul + the CPU's tanh GELU.
// cuBLASLt does not document its GELU's accuracy, so the fp32 bound for the
// activated output is 1e-4 (still 40x finer than bf16 resolution, the
// precision this epilogue is used at); the pre-activation is a plain GEMM.
template <class E>
void matmul_gelu_case(cudaStream_t s, bool with_bias) {
    const int64_t N = 37;
    const int C = 100, OC = 104;  // OC: a multiple of 8 (cuBLASLt's aux rule), not of a tile
    auto inp = randn(size_t(N) * C, 21), w = randn(size_t(OC) * C, 22, 0.1f), b = randn(OC, 23);
    auto d_inp = to_device<E>(inp, s), d_w = to_device<E>(w, s), d_b = to_device<E>(b, s);
    DeviceBuffer<E> d_out(N * OC), d_pre(N * OC);
    gpu::matmul_gelu_forward(d_out.data(), d_pre.data(), d_inp.data(), d_w.data(),
                             with_bias ? d_b.data() : nullptr, N, C, OC, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> pre(size_t(N) * OC), out(size_t(N) * OC);
    cpu::matmul_forward(pre.data(), inp.data(), w.data(), with_bias ? b.data() : nullptr, N, C, OC);
    cpu::gelu_forward(out.data(), pre.data(), int64_t(out.size()));
    const double out_tol = std::is_same_v<E, float> ? 1e-4 : kTolBf16;
    expect_close("matmul_gelu pre_gelu", to_host(d_pre, s), pre, tol<E>());
    expect_close("matmul_gelu out", to_host(d_out, s), out, out_tol);
}

TEST_F(CudaTest, MatmulGeluEpilogueF32) {
    matmul_gelu_case<float>(stream_, true);
}
TEST_F(CudaTest, MatmulGeluEpilogueBf16) {
    matmul_gelu_case<bf16>(stream_, true);
}
TEST_F(CudaTest, MatmulGeluEpilogueNoBiasBf16) {
    matmul_gelu_case<bf16>(stream_, false);
}

TEST_F(CudaTest, MatmulGeluRefusesUnalignedWidth) {
    DeviceBuffer<float> a(37 * 75), b(75 * 100), c(37 * 100);
    EXPECT_THROW(gpu::matmul_gelu_forward(a.data(), c.data(), c.data(), b.data(), nullptr, 37, 100,
                                          75, stream_),
                 zt::Error);
}

// ---- classifier --------------------------------------------------------------

// Root mean square of v (the scale the pre-fills below are drawn at).
double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return v.empty() ? 0.0 : std::sqrt(s / double(v.size()));
}

// The gradients are compared as increments (result minus pre-fill, against
// the CPU's increment from zero), as the AdamW test compares parameter
// changes: at loss_scale 1/N the increments are far smaller than a unit
// pre-fill, and a comparison of totals would hide a wrong gradient behind the
// pre-fill. The pre-fills are drawn at half the RMS of the CPU's increment,
// so a kernel that overwrote instead of adding would err by ~0.5, and bf16
// totals keep the increment's bits. G is dweight's type (fp32 or E).
// bf16 budget: dlogits rounded once (2.3e-3 RMS relative), dx rounded once,
// dweight rounded once per chunk (3 chunks of 16 rows: sqrt(3) * 2.3e-3 *
// |pre-fill + increment| ~ 4.5e-3 of the increment), ~5e-3 in all against
// kTolBf16 = 1e-2; dropping the non-target terms of dlogits errs by 0.1+.
template <class E, class G = E>
void classifier_case(cudaStream_t s, int chunk_rows) {
    const int64_t N = 37;
    const int C = 100, V = 1001;
    auto x = randn(size_t(N) * C, 31), w = randn(size_t(V) * C, 32, 0.2f);
    std::vector<int32_t> targets(N);
    zt::Rng rng(35);
    for (auto& t : targets) t = int32_t(rng.below(V));
    targets[3] = -1;  // ignored positions
    targets[20] = -1;
    targets[36] = V - 1;
    const float loss_scale = 1.0f / float(N);
    auto d_x = to_device<E>(x, s), d_w = to_device<E>(w, s);  // x, w now hold the device values

    std::vector<float> losses(N), scratch(size_t(chunk_rows) * V);
    std::vector<float> inc_dx(size_t(N) * C, 0.0f), inc_dw(size_t(V) * C, 0.0f);
    cpu::classifier_forward_backward(losses.data(), inc_dx.data(), inc_dw.data(), x.data(),
                                     w.data(), targets.data(), N, C, V, loss_scale, scratch.data(),
                                     chunk_rows);

    auto dx0 = randn(size_t(N) * C, 33, float(0.5 * rms(inc_dx)));
    auto dw0 = randn(size_t(V) * C, 34, float(0.5 * rms(inc_dw)));
    auto d_dx = to_device<E>(dx0, s);
    auto d_dw = to_device<G>(dw0, s);  // dx0, dw0 now hold the device pre-fills
    auto d_t = upload(targets, s);
    DeviceBuffer<float> d_losses(N), d_losses_fwd(N), d_scratch(int64_t(chunk_rows) * V);
    gpu::classifier_forward_backward(d_losses.data(), d_dx.data(), d_dw.data(), d_x.data(),
                                     d_w.data(), d_t.data(), N, C, V, loss_scale, d_scratch.data(),
                                     chunk_rows, s);
    gpu::classifier_forward_backward(d_losses_fwd.data(), static_cast<E*>(nullptr),
                                     static_cast<G*>(nullptr), d_x.data(), d_w.data(), d_t.data(),
                                     N, C, V, loss_scale, d_scratch.data(), chunk_rows, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    const auto got = to_host(d_losses, s);
    EXPECT_EQ(got[3], 0.0f);
    EXPECT_EQ(got[20], 0.0f);
    expect_close("classifier losses", got, losses, tol<E>());
    expect_close("classifier losses (forward only)", to_host(d_losses_fwd, s), losses, tol<E>());
    auto got_dx = to_host(d_dx, s), got_dw = to_host(d_dw, s);
    for (size_t i = 0; i < got_dx.size(); i++) got_dx[i] -= dx0[i];
    for (size_t i = 0; i < got_dw.size(); i++) got_dw[i] -= dw0[i];
    expect_close("classifier dx increment", got_dx, inc_dx, tol<E>());
    expect_close("classifier dweight increment", got_dw, inc_dw, tol<E>());
}

TEST_F(CudaTest, ClassifierF32) {
    classifier_case<float>(stream_, 16);
}
TEST_F(CudaTest, ClassifierBf16) {
    classifier_case<bf16>(stream_, 16);
}
TEST_F(CudaTest, ClassifierBf16F32Dweight) {
    classifier_case<bf16, float>(stream_, 16);
}
TEST_F(CudaTest, ClassifierOneChunkF32) {
    classifier_case<float>(stream_, 64);
}
TEST_F(CudaTest, ClassifierOneChunkBf16) {
    classifier_case<bf16>(stream_, 64);
}

TEST(CudaClassifierChunkRows, ThousandsOfRowsAtGpt2Vocabulary) {
    // No device needed: pure arithmetic on the shape.
    EXPECT_EQ(gpu::classifier_chunk_rows(8192, 50257), 1280);
    EXPECT_EQ(gpu::classifier_chunk_rows(8192, 50304), 1280);
    EXPECT_EQ(gpu::classifier_chunk_rows(100, 50257), 100);     // never more than N
    EXPECT_EQ(gpu::classifier_chunk_rows(8192, 1 << 22), 128);  // at least 128 rows
    EXPECT_EQ(gpu::classifier_chunk_rows(0, 50257), 1);         // positive even for N = 0
    EXPECT_EQ(gpu::classifier_chunk_rows(1 << 20, 32000) % 128, 0);
    EXPECT_THROW(gpu::classifier_chunk_rows(10, 0), zt::Error);
}

// ---- embedding -----------------------------------------------------------------

// fp32 must match bit for bit: forward is one add per element, and backward
// sums each element's rows in row order, the CPU's order (embedding.cu).
template <class E>
void embedding_case(cudaStream_t s, bool with_wpe) {
    const int B = 2, T = 67, C = 100, V = 1001;
    std::vector<int32_t> tokens(size_t(B) * T);
    zt::Rng rng(41);
    for (auto& t : tokens) t = int32_t(rng.below(V));
    tokens[5] = tokens[70] = tokens[100] = tokens[133] = 7;  // repeats accumulate
    auto wte = randn(size_t(V) * C, 42), wpe = randn(size_t(T) * C, 43);
    auto dout = randn(size_t(B) * T * C, 44);
    auto dwte = randn(size_t(V) * C, 45, 0.1f), dwpe = randn(size_t(T) * C, 46, 0.1f);
    auto d_wte = to_device<E>(wte, s), d_wpe = to_device<E>(wpe, s), d_dout = to_device<E>(dout, s);
    auto d_dwte = to_device<E>(dwte, s), d_dwpe = to_device<E>(dwpe, s);
    auto d_tok = upload(tokens, s);
    DeviceBuffer<E> d_out(int64_t(B) * T * C);
    gpu::embedding_forward(d_out.data(), d_tok.data(), d_wte.data(),
                           with_wpe ? d_wpe.data() : nullptr, B, T, C, s);
    gpu::embedding_backward(d_dwte.data(), with_wpe ? d_dwpe.data() : nullptr, d_dout.data(),
                            d_tok.data(), B, T, C, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    std::vector<float> out(size_t(B) * T * C);
    cpu::embedding_forward(out.data(), tokens.data(), wte.data(), with_wpe ? wpe.data() : nullptr,
                           B, T, C);
    cpu::embedding_backward(dwte.data(), with_wpe ? dwpe.data() : nullptr, dout.data(),
                            tokens.data(), B, T, C);
    if constexpr (std::is_same_v<E, float>) {
        expect_bits_equal("embedding out", to_host(d_out, s), out);
        expect_bits_equal("embedding dwte", to_host(d_dwte, s), dwte);
        expect_bits_equal("embedding dwpe", to_host(d_dwpe, s), dwpe);
    } else {
        expect_close("embedding out", to_host(d_out, s), out, kTolBf16);
        expect_close("embedding dwte", to_host(d_dwte, s), dwte, kTolBf16);
        expect_close("embedding dwpe", to_host(d_dwpe, s), dwpe, kTolBf16);
    }
}

TEST_F(CudaTest, EmbeddingGpt2F32) {
    embedding_case<float>(stream_, true);
}
TEST_F(CudaTest, EmbeddingGpt2Bf16) {
    embedding_case<bf16>(stream_, true);
}
TEST_F(CudaTest, EmbeddingLlamaF32) {
    embedding_case<float>(stream_, false);
}
TEST_F(CudaTest, EmbeddingLlamaBf16) {
    embedding_case<bf16>(stream_, false);
}

// ---- AdamW ---------------------------------------------------------------------

// 40 slices (two launches: 32 + 8) of uneven sizes, some empty, decay on every
// other one, against the CPU update per slice. The parameter change is
// compared, not the parameter: the change is ~lr = 1e-3 of the parameter, so
// comparing parameters would hide an update wrong by 1e-2 behind a 1e-5 bound.
template <class G>
void adamw_case(cudaStream_t s) {
    std::vector<int64_t> sizes;
    zt::Rng rng(51);
    for (int i = 0; i < 40; i++) sizes.push_back(i % 13 == 5 ? 0 : int64_t(rng.below(3000)) + 1);
    sizes[7] = 4097;
    int64_t total = 0;
    for (int64_t n : sizes) total += n;
    auto p0 = randn(size_t(total), 52), g = randn(size_t(total), 53, 0.1f);
    auto m = randn(size_t(total), 54, 0.01f), v = randn(size_t(total), 55, 0.001f);
    for (auto& x : v) x = x * x;
    auto d_p = to_device<float>(p0, s), d_m = to_device<float>(m, s), d_v = to_device<float>(v, s);
    auto d_g = to_device<G>(g, s);  // rounds g to bf16 for the bf16-gradient case
    DeviceBuffer<bf16> d_pb(total);
    std::vector<gpu::AdamWSlice<G>> slices;
    int64_t off = 0;
    for (size_t i = 0; i < sizes.size(); i++) {
        gpu::AdamWSlice<G> sl;
        sl.param = d_p.data() + off, sl.grad = d_g.data() + off;
        sl.m = d_m.data() + off, sl.v = d_v.data() + off;
        sl.param_bf16 = d_pb.data() + off;
        sl.n = sizes[i];
        sl.apply_decay = i % 2 == 0;
        slices.push_back(sl);
        off += sizes[i];
    }
    cpu::AdamWHyper h;
    h.lr = 1e-3f, h.weight_decay = 0.1f, h.step = 3;
    gpu::adamw_update(slices.data(), int(slices.size()), h, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    std::vector<float> p = p0;
    off = 0;
    for (size_t i = 0; i < sizes.size(); i++) {
        cpu::adamw_update(p.data() + off, g.data() + off, m.data() + off, v.data() + off, sizes[i],
                          h, i % 2 == 0);
        off += sizes[i];
    }
    const auto p_gpu = to_host(d_p, s);
    std::vector<float> delta_gpu(p0.size()), delta_cpu(p0.size());
    for (size_t i = 0; i < p0.size(); i++) {
        delta_gpu[i] = p_gpu[i] - p0[i];
        delta_cpu[i] = p[i] - p0[i];
    }
    expect_close("adamw parameter change", delta_gpu, delta_cpu, kTolF32);
    expect_close("adamw m", to_host(d_m, s), m, kTolF32);
    expect_close("adamw v", to_host(d_v, s), v, kTolF32);
    // The bf16 copy is exactly the CPU cast of the GPU's fp32 result.
    std::vector<zt::bf16> pb_cpu(p_gpu.size());
    cpu::cast_f32_to_bf16(pb_cpu.data(), p_gpu.data(), int64_t(p_gpu.size()));
    std::vector<bf16> pb_gpu(p_gpu.size());
    d_pb.copy_to_host(pb_gpu.data(), total, s);
    EXPECT_EQ(std::memcmp(pb_cpu.data(), pb_gpu.data(), pb_gpu.size() * 2), 0);
}

TEST_F(CudaTest, AdamWMultiSliceF32Grad) {
    adamw_case<float>(stream_);
}
TEST_F(CudaTest, AdamWMultiSliceBf16Grad) {
    adamw_case<bf16>(stream_);
}

TEST_F(CudaTest, AdamWSingleRangeMatchesCpuSignature) {
    const int64_t n = 1001;
    auto p0 = randn(n, 56), g = randn(n, 57), m = randn(n, 58, 0.01f), v = randn(n, 59, 0.01f);
    for (auto& x : v) x = x * x;
    auto d_p = to_device<float>(p0, stream_), d_g = to_device<float>(g, stream_),
         d_m = to_device<float>(m, stream_), d_v = to_device<float>(v, stream_);
    cpu::AdamWHyper h;
    h.lr = 3e-3f, h.step = 1;  // no decay requested: apply_decay = false
    gpu::adamw_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, h, false, stream_);
    sync();
    std::vector<float> p = p0;
    cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, h, false);
    const auto p_gpu = to_host(d_p, stream_);
    std::vector<float> dg(n), dc(n);
    for (int64_t i = 0; i < n; i++) dg[i] = p_gpu[i] - p0[i], dc[i] = p[i] - p0[i];
    expect_close("adamw parameter change", dg, dc, kTolF32);
}

// ---- sum of squares, scaling, casts ------------------------------------------------

// Both sides add exact fp64 squares of fp32 values, in different orders: the
// difference is a few fp64 roundings of a 1e5-term sum, ~1e-14 relative.
TEST_F(CudaTest, SumSquares) {
    const int64_t n = 100003;
    auto x = randn(n, 61);
    auto d_x = to_device<float>(x, stream_);
    DeviceBuffer<double> d_out(1);
    gpu::sum_squares(d_out.data(), d_x.data(), n, stream_);
    const double sync_sum = gpu::sum_squares(d_x.data(), n, stream_);
    double got = 0;
    d_out.copy_to_host(&got, 1, stream_);
    const double want = cpu::sum_squares(x.data(), n);
    EXPECT_TRUE(std::fabs(got - want) <= 1e-12 * want) << got << " vs " << want;
    EXPECT_EQ(got, sync_sum);  // same kernels, same order: bit-identical

    auto xb = x;
    auto d_xb = to_device<bf16>(xb, stream_);  // xb now holds the bf16 values
    gpu::sum_squares(d_out.data(), d_xb.data(), n, stream_);
    d_out.copy_to_host(&got, 1, stream_);
    const double want_b = cpu::sum_squares(xb.data(), n);
    EXPECT_TRUE(std::fabs(got - want_b) <= 1e-12 * want_b) << got << " vs " << want_b;
}

// One multiply and one rounding per element on both sides: bit-identical.
TEST_F(CudaTest, ScaleInplace) {
    const int64_t n = 4099;
    const float scale = 0.37f;
    auto x = randn(n, 62);
    auto d_x = to_device<float>(x, stream_);
    gpu::scale_inplace(d_x.data(), n, scale, stream_);
    auto xb = x;
    auto d_xb = to_device<bf16>(xb, stream_);
    gpu::scale_inplace(d_xb.data(), n, scale, stream_);
    sync();
    std::vector<float> want(n), want_b(n);
    for (int64_t i = 0; i < n; i++) {
        want[i] = x[i] * scale;
        want_b[i] = from_bf16(to_bf16(xb[i] * scale));
    }
    expect_bits_equal("scale f32", to_host(d_x, stream_), want);
    expect_bits_equal("scale bf16", to_host(d_xb, stream_), want_b);
}

// Casts agree with the CPU bit for bit, including ties, NaN payloads, Inf,
// overflow to Inf and denormals; bf16 -> f32 over all 65536 patterns.
TEST_F(CudaTest, CastsMatchCpuBitForBit) {
    std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                  0x7f800001u, 0xffc12345u, 0x3f808000u, 0x3f818000u, 0x3f80c000u,
                                  0x7f7fffffu, 0x00012345u, 0x80800000u, 0x3f7fffffu};
    const auto r = randn(5000, 63, 100.0f);
    std::vector<float> f(bits.size());
    std::memcpy(f.data(), bits.data(), bits.size() * 4);
    f.insert(f.end(), r.begin(), r.end());
    auto d_f = upload(f, stream_);
    DeviceBuffer<bf16> d_b(int64_t(f.size()));
    gpu::cast_f32_to_bf16(d_b.data(), d_f.data(), int64_t(f.size()), stream_);
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; i++) all[i] = uint16_t(i);
    auto d_all = upload(all, stream_);
    DeviceBuffer<float> d_back(65536);
    gpu::cast_bf16_to_f32(d_back.data(), reinterpret_cast<const bf16*>(d_all.data()), 65536,
                          stream_);
    sync();

    std::vector<zt::bf16> want_b(f.size());
    cpu::cast_f32_to_bf16(want_b.data(), f.data(), int64_t(f.size()));
    std::vector<bf16> got_b(f.size());
    d_b.copy_to_host(got_b.data(), int64_t(f.size()), stream_);
    for (size_t i = 0; i < f.size(); i++) {
        uint16_t g, w;
        std::memcpy(&g, &got_b[i], 2);
        std::memcpy(&w, &want_b[i], 2);
        uint32_t fb;
        std::memcpy(&fb, &f[i], 4);
        EXPECT_EQ(g, w) << "f32 -> bf16 of bits 0x" << std::hex << fb;
        if (g != w) break;
    }
    std::vector<float> want_f(65536);
    cpu::cast_bf16_to_f32(want_f.data(), reinterpret_cast<const zt::bf16*>(all.data()), 65536);
    expect_bits_equal("bf16 -> f32", to_host(d_back, stream_), want_f);
}

// ---- device arena and buffers ------------------------------------------------------

TEST_F(CudaTest, DeviceArenaCountsInLedgerAndRefusesOverflow) {
    zt::MemoryLedger ledger;
    {
        gpu::DeviceArena arena(&ledger, zt::MemCategory::activations, 1000, stream_,
                               "test-activations");
        EXPECT_EQ(arena.capacity(), 1024u);  // rounded up to 256
        EXPECT_EQ(ledger.current(zt::MemCategory::activations), 1024);
        float* a = arena.alloc<float>(10);
        float* b = arena.alloc_zeroed<float>(3, stream_);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 256, 0u);
        EXPECT_EQ(reinterpret_cast<char*>(b) - reinterpret_cast<char*>(a), 256);
        std::vector<float> z(3, 1.0f);
        ASSERT_EQ(cudaMemcpyAsync(z.data(), b, 12, cudaMemcpyDeviceToHost, stream_), cudaSuccess);
        sync();
        EXPECT_EQ(z, std::vector<float>(3, 0.0f));
        EXPECT_THROW(arena.alloc<float>(200), zt::Error);  // 800 B more do not fit in 512 left
        gpu::DeviceArena moved = std::move(arena);
        EXPECT_EQ(moved.used(), 512u);
        EXPECT_EQ(ledger.current(zt::MemCategory::activations), 1024);
        moved.reset();
        EXPECT_EQ(moved.used(), 0u);
        EXPECT_EQ(moved.high_water(), 512u);
    }
    EXPECT_EQ(ledger.current(zt::MemCategory::activations), 0);
    {
        DeviceBuffer<float> buf(100, &ledger, zt::MemCategory::grads);
        EXPECT_EQ(ledger.current(zt::MemCategory::grads), 400);
    }
    EXPECT_EQ(ledger.current(zt::MemCategory::grads), 0);
    EXPECT_EQ(ledger.peak(), 1024);
}

// The copy and zero helpers order on the stream they are given (here a
// non-blocking one, which the legacy default stream would not order against).
TEST_F(CudaTest, DeviceBufferCopiesOrderOnTheirStream) {
    cudaStream_t nb = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking), cudaSuccess);
    std::vector<float> host(4099), back(4099, -1.0f);
    for (size_t i = 0; i < host.size(); i++) host[i] = float(i) * 0.5f;
    DeviceBuffer<float> buf(4099);
    buf.copy_from_host_async(host.data(), 4099, nb);
    buf.copy_to_host(back.data(), 4099, nb);
    EXPECT_EQ(back, host);
    buf.zero_async(nb);
    buf.copy_to_host_async(back.data(), 100, nb);
    ASSERT_EQ(cudaStreamSynchronize(nb), cudaSuccess);
    EXPECT_EQ(std::vector<float>(back.begin(), back.begin() + 100), std::vector<float>(100, 0.0f));
    EXPECT_EQ(back[100], host[100]);  // only the first 100 were copied back
    EXPECT_THROW(buf.copy_to_host(back.data(), 4100, nb), zt::Error);
    ASSERT_EQ(cudaStreamDestroy(nb), cudaSuccess);
}

// A failed cudaMalloc names the bytes, the category and the device's memory,
// leaves the ledger untouched and clears CUDA's last error, so the next
// launch check does not blame an unrelated kernel.
TEST_F(CudaTest, FailedAllocationNamesBytesAndClearsTheError) {
    zt::MemoryLedger ledger;
    const int64_t n = int64_t(1) << 48;  // 1 PiB of floats
    try {
        DeviceBuffer<float> huge(n, &ledger, zt::MemCategory::activations);
        ADD_FAILURE() << "a 1 PiB allocation succeeded";
    } catch (const zt::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(std::to_string(n * 4) + " bytes"), std::string::npos) << msg;
        EXPECT_NE(msg.find("activations"), std::string::npos) << msg;
        EXPECT_NE(msg.find("free of"), std::string::npos) << msg;
    }
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_THROW(
        gpu::DeviceArena(&ledger, zt::MemCategory::grads, size_t(1) << 50, stream_, "huge-grads"),
        zt::Error);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    EXPECT_EQ(ledger.peak(), 0);
    DeviceBuffer<float> x(16);  // a launch after the failures is checked cleanly
    x.zero_async(stream_);
    gpu::scale_inplace(x.data(), 16, 2.0f, stream_);
    sync();
}

// No cuBLASLt algorithm takes fp32 operands to a bf16 result: the refusal
// names the shape, the types, the transposes, the leading dimensions and the
// pointer alignments, whether cuBLASLt answers NOT_SUPPORTED or 0 results.
TEST_F(CudaTest, GemmWithoutAlgorithmNamesTheProblem) {
    DeviceBuffer<float> a(64), b(64);
    DeviceBuffer<bf16> d(64);
    gpu::GemmDesc g;
    g.m = 4, g.n = 5, g.k = 6;
    g.A = a.data(), g.lda = 4;
    g.B = b.data(), g.ldb = 6;
    g.ab_type = CUDA_R_32F;
    g.D = d.data(), g.ldd = 4;
    g.d_type = CUDA_R_16BF;
    try {
        gpu::gemm(g, stream_);
        ADD_FAILURE() << "fp32 x fp32 -> bf16 found an algorithm";
    } catch (const zt::Error& e) {
        const std::string msg = e.what();
        for (const char* part : {"M=4 N=5 K=6", "f32 -> D bf16", "transa=N transb=N",
                                 "lda=4 ldb=6 ldd=4", "alignment A=256"}) {
            EXPECT_NE(msg.find(part), std::string::npos) << "missing '" << part << "' in " << msg;
        }
    }
}

}  // namespace
