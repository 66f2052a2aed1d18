// GPU op tests, part 2: the layer ops (RMSNorm, LayerNorm, RoPE, causal GQA
// attention, SwiGLU, GELU), each against the CPU reference (zt::cpu) on random
// inputs, forward and backward, in fp32 and bf16 (tolerances and their reasons
// in gpu_test_util.h). Shapes are deliberately not multiples of any tile or
// warp: N = 37 rows, C = 100, T = 67, GQA with NH = 6 query heads on NKV = 2
// kv heads of HD = 32. Backward outputs are pre-filled with random values on
// both sides, so every "+=" is checked to accumulate.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpu_test_util.h"
#include "ops/attention.h"
#include "ops/cuda/attention.h"
#include "ops/cuda/mlp.h"
#include "ops/cuda/norm.h"
#include "ops/cuda/rope.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace {

using namespace zt_gpu_test;
namespace cpu = zt::cpu;
namespace gpu = zt::cuda;

constexpr int64_t kN = 37;
constexpr int kC = 100;

// ---- norms -------------------------------------------------------------------

template <class E>
void rmsnorm_case(cudaStream_t s, int64_t N, int C) {
    auto x = randn(size_t(N) * C, 101, 2.0f, 0.5f), w = randn(C, 102, 0.2f, 1.0f);
    auto dout = randn(size_t(N) * C, 103);
    auto dx = randn(size_t(N) * C, 104, 0.1f), dw = randn(C, 105, 0.1f);
    auto d_x = to_device<E>(x, s), d_w = to_device<E>(w, s), d_dout = to_device<E>(dout, s);
    auto d_dx = to_device<E>(dx, s), d_dw = to_device<E>(dw, s);
    DeviceBuffer<E> d_out(N * C);
    DeviceBuffer<float> d_rstd(N);
    gpu::rmsnorm_forward(d_out.data(), d_rstd.data(), d_x.data(), d_w.data(), N, C, 1e-5f, s);
    gpu::rmsnorm_backward(d_dx.data(), d_dw.data(), d_dout.data(), d_x.data(), d_w.data(),
                          d_rstd.data(), N, C, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out(size_t(N) * C), rstd(N);
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    cpu::rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    expect_close("rmsnorm out", to_host(d_out, s), out, tol<E>());
    expect_close("rmsnorm rstd", to_host(d_rstd, s), rstd, kTolF32);  // fp32 statistics always
    expect_close("rmsnorm dinp", to_host(d_dx, s), dx, tol<E>());
    expect_close("rmsnorm dweight", to_host(d_dw, s), dw, tol<E>());
}

template <class E>
void layernorm_case(cudaStream_t s, int64_t N, int C) {
    auto x = randn(size_t(N) * C, 111, 2.0f, 3.0f), w = randn(C, 112, 0.2f, 1.0f);
    auto b = randn(C, 113, 0.1f), dout = randn(size_t(N) * C, 114);
    auto dx = randn(size_t(N) * C, 115, 0.1f), dw = randn(C, 116, 0.1f), db = randn(C, 117, 0.1f);
    auto d_x = to_device<E>(x, s), d_w = to_device<E>(w, s), d_b = to_device<E>(b, s);
    auto d_dout = to_device<E>(dout, s), d_dx = to_device<E>(dx, s), d_dw = to_device<E>(dw, s),
         d_db = to_device<E>(db, s);
    DeviceBuffer<E> d_out(N * C);
    DeviceBuffer<float> d_mean(N), d_rstd(N);
    gpu::layernorm_forward(d_out.data(), d_mean.data(), d_rstd.data(), d_x.data(), d_w.data(),
                           d_b.data(), N, C, 1e-5f, s);
    gpu::layernorm_backward(d_dx.data(), d_dw.data(), d_db.data(), d_dout.data(), d_x.data(),
                            d_w.data(), d_mean.data(), d_rstd.data(), N, C, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out(size_t(N) * C), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C,
                           1e-5f);
    cpu::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                            mean.data(), rstd.data(), N, C);
    expect_close("layernorm out", to_host(d_out, s), out, tol<E>());
    expect_close("layernorm mean", to_host(d_mean, s), mean, kTolF32);
    expect_close("layernorm rstd", to_host(d_rstd, s), rstd, kTolF32);
    expect_close("layernorm dinp", to_host(d_dx, s), dx, tol<E>());
    expect_close("layernorm dweight", to_host(d_dw, s), dw, tol<E>());
    expect_close("layernorm dbias", to_host(d_db, s), db, tol<E>());
}

TEST_F(CudaTest, RmsNormF32) {
    rmsnorm_case<float>(stream_, kN, kC);
}
TEST_F(CudaTest, RmsNormBf16) {
    rmsnorm_case<bf16>(stream_, kN, kC);
}
TEST_F(CudaTest, LayerNormF32) {
    layernorm_case<float>(stream_, kN, kC);
}
TEST_F(CudaTest, LayerNormBf16) {
    layernorm_case<bf16>(stream_, kN, kC);
}
// Many rows: the weight-gradient reduction uses several row splits; C > 32 * 32.
TEST_F(CudaTest, RmsNormManyRowsWideF32) {
    rmsnorm_case<float>(stream_, 1031, 1100);
}
TEST_F(CudaTest, LayerNormManyRowsWideF32) {
    layernorm_case<float>(stream_, 1031, 1100);
}

// ---- RoPE --------------------------------------------------------------------------

constexpr int kB = 2, kT = 67, kNH = 6, kNKV = 2, kHD = 32;
constexpr int64_t kQkvRow = int64_t(kNH + 2 * kNKV) * kHD;

// The device table follows the CPU's float arithmetic with cos/sin in double
// on both sides: equal up to one float ulp where CUDA's double cos/sin (2 ulp
// in double) lands on the other side of a float rounding boundary.
TEST_F(CudaTest, RopeTableMatchesCpu) {
    const int half = kHD / 2;
    DeviceBuffer<float> d_cos(int64_t(kT) * half), d_sin(int64_t(kT) * half);
    gpu::rope_table(d_cos.data(), d_sin.data(), kT, kHD, 10000.0f, stream_);
    sync();
    std::vector<float> c(size_t(kT) * half), sn(size_t(kT) * half);
    cpu::rope_table(c.data(), sn.data(), kT, kHD, 10000.0f);
    const auto gc = to_host(d_cos, stream_), gs = to_host(d_sin, stream_);
    for (size_t i = 0; i < c.size(); i++) {
        const double dc = std::fabs(double(gc[i]) - c[i]), ds = std::fabs(double(gs[i]) - sn[i]);
        ASSERT_TRUE(dc <= 1.2e-7 && ds <= 1.2e-7) << "entry " << i << ": cos " << gc[i] << " vs "
                                                  << c[i] << ", sin " << gs[i] << " vs " << sn[i];
    }
}

// q and k heads (the first NH + NKV heads of each qkv row) are rotated; v is not.
template <class E>
void rope_case(cudaStream_t s) {
    const int half = kHD / 2, heads = kNH + kNKV;
    std::vector<float> c(size_t(kT) * half), sn(size_t(kT) * half);
    cpu::rope_table(c.data(), sn.data(), kT, kHD, 10000.0f);
    auto d_cos = upload(c, s), d_sin = upload(sn, s);
    const size_t n = size_t(kB) * kT * kQkvRow;
    auto x = randn(n, 121), dout = randn(n, 122), dx = randn(n, 123, 0.1f);
    auto d_x = to_device<E>(x, s), d_dout = to_device<E>(dout, s), d_dx = to_device<E>(dx, s);
    DeviceBuffer<E> d_out{int64_t(n)};
    ASSERT_EQ(cudaMemcpyAsync(d_out.data(), d_x.data(), n * sizeof(E), cudaMemcpyDeviceToDevice, s),
              cudaSuccess);  // v heads pass through untouched
    gpu::rope_forward(d_out.data(), d_x.data(), d_cos.data(), d_sin.data(), kB, kT, heads, kHD,
                      kQkvRow, s);
    gpu::rope_forward(d_x.data(), d_x.data(), d_cos.data(), d_sin.data(), kB, kT, heads, kHD,
                      kQkvRow, s);  // in place
    gpu::rope_backward(d_dx.data(), d_dout.data(), d_cos.data(), d_sin.data(), kB, kT, heads, kHD,
                       kQkvRow, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out = x;
    cpu::rope_forward(out.data(), x.data(), c.data(), sn.data(), kB, kT, heads, kHD, kQkvRow);
    cpu::rope_backward(dx.data(), dout.data(), c.data(), sn.data(), kB, kT, heads, kHD, kQkvRow);
    expect_close("rope out", to_host(d_out, s), out, tol<E>());
    expect_close("rope out (in place)", to_host(d_x, s), out, tol<E>());
    expect_close("rope dinp", to_host(d_dx, s), dx, tol<E>());
}

TEST_F(CudaTest, RopeF32) {
    rope_case<float>(stream_);
}
TEST_F(CudaTest, RopeBf16) {
    rope_case<bf16>(stream_);
}

TEST_F(CudaTest, RopeBackwardRefusesAliasing) {
    DeviceBuffer<float> buf(kT * kQkvRow), tab(kT * kHD / 2);
    EXPECT_THROW(gpu::rope_backward(buf.data(), buf.data(), tab.data(), tab.data(), 1, kT, kNH, kHD,
                                    kQkvRow, stream_),
                 zt::Error);
}

// ---- attention ---------------------------------------------------------------------

template <class E>
void attention_case(cudaStream_t s, int B, int T, int NH, int NKV, int HD) {
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const size_t n_qkv = size_t(B) * T * R, n_out = size_t(B) * T * NH * HD;
    const size_t n_att = size_t(B) * NH * T * T;
    auto qkv = randn(n_qkv, 131), dout = randn(n_out, 132), dqkv = randn(n_qkv, 133, 0.1f);
    auto d_qkv = to_device<E>(qkv, s), d_dout = to_device<E>(dout, s),
         d_dqkv = to_device<E>(dqkv, s);
    DeviceBuffer<E> d_out{int64_t(n_out)}, d_att{int64_t(n_att)};
    gpu::attention_forward(d_out.data(), d_att.data(), d_qkv.data(), B, T, NH, NKV, HD, s);
    gpu::attention_backward(d_dqkv.data(), d_dout.data(), d_qkv.data(), d_att.data(), B, T, NH, NKV,
                            HD, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out(n_out), att(n_att);
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, NH, NKV, HD);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), B, T, NH, NKV, HD);
    const auto got_att = to_host(d_att, s);
    expect_close("attention out", to_host(d_out, s), out, tol<E>());
    expect_close("attention probabilities", got_att, att, tol<E>());
    expect_close("attention dqkv", to_host(d_dqkv, s), dqkv, tol<E>());
    // Causal: exactly zero above the diagonal.
    size_t nonzero = 0;
    for (int bh = 0; bh < B * NH; bh++) {
        for (int t = 0; t < T; t++) {
            for (int j = t + 1; j < T; j++)
                nonzero += got_att[(size_t(bh) * T + t) * T + j] != 0.0f;
        }
    }
    EXPECT_EQ(nonzero, 0u);
}

TEST_F(CudaTest, AttentionGqaF32) {
    attention_case<float>(stream_, kB, kT, kNH, kNKV, kHD);
}
TEST_F(CudaTest, AttentionGqaBf16) {
    attention_case<bf16>(stream_, kB, kT, kNH, kNKV, kHD);
}
// Multi-head (NKV = NH), head_dim above the block size, T above the key tile.
TEST_F(CudaTest, AttentionMhaLongF32) {
    attention_case<float>(stream_, 1, 300, 3, 3, 136);
}
TEST_F(CudaTest, AttentionMqaBf16) {
    attention_case<bf16>(stream_, 2, 45, 4, 1, 64);
}

// ---- SwiGLU, GELU ------------------------------------------------------------------

template <class E>
void swiglu_case(cudaStream_t s) {
    const int H = 100;
    const size_t n = size_t(kN) * H;
    auto gu = randn(2 * n, 141, 2.0f), dout = randn(n, 142), dgu = randn(2 * n, 143, 0.1f);
    auto d_gu = to_device<E>(gu, s), d_dout = to_device<E>(dout, s), d_dgu = to_device<E>(dgu, s);
    DeviceBuffer<E> d_out{int64_t(n)};
    gpu::swiglu_forward(d_out.data(), d_gu.data(), kN, H, s);
    gpu::swiglu_backward(d_dgu.data(), d_dout.data(), d_gu.data(), kN, H, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out(n);
    cpu::swiglu_forward(out.data(), gu.data(), kN, H);
    cpu::swiglu_backward(dgu.data(), dout.data(), gu.data(), kN, H);
    expect_close("swiglu out", to_host(d_out, s), out, tol<E>());
    expect_close("swiglu dgate_up", to_host(d_dgu, s), dgu, tol<E>());
}

template <class E>
void gelu_case(cudaStream_t s) {
    const int64_t n = kN * kC + 1;
    auto x = randn(size_t(n), 151, 3.0f), dout = randn(size_t(n), 152), dx = randn(size_t(n), 153);
    auto d_x = to_device<E>(x, s), d_dout = to_device<E>(dout, s), d_dx = to_device<E>(dx, s);
    DeviceBuffer<E> d_out(n);
    gpu::gelu_forward(d_out.data(), d_x.data(), n, s);
    gpu::gelu_backward(d_dx.data(), d_dout.data(), d_x.data(), n, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<float> out(n);
    cpu::gelu_forward(out.data(), x.data(), n);
    cpu::gelu_backward(dx.data(), dout.data(), x.data(), n);
    expect_close("gelu out", to_host(d_out, s), out, tol<E>());
    expect_close("gelu dinp", to_host(d_dx, s), dx, tol<E>());
}

TEST_F(CudaTest, SwigluF32) {
    swiglu_case<float>(stream_);
}
TEST_F(CudaTest, SwigluBf16) {
    swiglu_case<bf16>(stream_);
}
TEST_F(CudaTest, GeluF32) {
    gelu_case<float>(stream_);
}
TEST_F(CudaTest, GeluBf16) {
    gelu_case<bf16>(stream_);
}

}  // namespace
