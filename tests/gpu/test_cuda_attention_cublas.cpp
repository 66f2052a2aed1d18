// GPU tests of the tensor-core attention path (attention_forward_cublas,
// attention_backward_cublas) against the scalar CUDA path, which
// test_cuda_layers.cpp checks against the CPU: out, the saved probabilities
// and the dqkv increment, fp32 and bf16, GQA, MQA and plain multi-head, at
// small T. Plus the refusals of both paths (bad scratch, too much shared
// memory), some of which need no device.
//
// Tolerances: fp32 uses kTolF32 (gpu_test_util.h): both paths evaluate the
// same fp32 formulas in different summation orders (cuBLASLt tiles against
// per-thread loops) over at most T = 300 terms. bf16 uses kTolBf16: both
// paths round P once to bf16 and every output once; the cuBLAS path also
// rounds dS once to bf16 before the dQ and dK GEMMs, one more 2.3e-3 RMS
// rounding on those two, ~5e-3 in all against 1e-2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "ops/cuda/attention.h"

namespace {

using namespace zt_gpu_test;
namespace gpu = zt::cuda;

constexpr zt::DType dtype_of(float*) {
    return zt::DType::f32;
}
constexpr zt::DType dtype_of(bf16*) {
    return zt::DType::bf16;
}

double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return v.empty() ? 0.0 : std::sqrt(s / double(v.size()));
}

// Fills a device buffer with all-ones bytes (NaN in fp32 and bf16), so a
// result the kernels forget to write cannot pass.
template <class T>
void poison(DeviceBuffer<T>& buf, cudaStream_t s) {
    ASSERT_EQ(cudaMemsetAsync(buf.data(), 0xff, buf.bytes(), s), cudaSuccess);
}

template <class E>
void cublas_vs_scalar_case(cudaStream_t s, int B, int T, int NH, int NKV, int HD) {
    const int64_t R = int64_t(NH + 2 * NKV) * HD;
    const size_t n_qkv = size_t(B) * T * R, n_out = size_t(B) * T * NH * HD;
    const size_t n_att = size_t(B) * NH * T * T;
    auto qkv = randn(n_qkv, 161), dout = randn(n_out, 162);
    auto d_qkv = to_device<E>(qkv, s), d_dout = to_device<E>(dout, s);

    // Oracle: the scalar path, backward from zero, so its dqkv is the increment.
    DeviceBuffer<E> o_out{int64_t(n_out)}, o_att{int64_t(n_att)}, o_dqkv{int64_t(n_qkv)};
    o_dqkv.zero_async(s);
    gpu::attention_forward(o_out.data(), o_att.data(), d_qkv.data(), B, T, NH, NKV, HD, s);
    gpu::attention_backward(o_dqkv.data(), d_dout.data(), d_qkv.data(), o_att.data(), B, T, NH, NKV,
                            HD, s);
    const auto want_out = to_host(o_out, s), want_att = to_host(o_att, s);
    const auto want_inc = to_host(o_dqkv, s);

    // cuBLAS path: outputs and scratch poisoned, dqkv pre-filled at half the
    // increment's RMS (an overwrite instead of "+=" errs by ~0.5).
    auto dqkv0 = randn(n_qkv, 163, float(0.5 * rms(want_inc)));
    auto d_dqkv = to_device<E>(dqkv0, s);
    const size_t bytes =
        gpu::attention_cublas_scratch_bytes(B, T, NH, NKV, HD, dtype_of(static_cast<E*>(nullptr)));
    DeviceBuffer<uint8_t> scratch{int64_t(bytes)};
    DeviceBuffer<E> c_out{int64_t(n_out)}, c_att{int64_t(n_att)};
    poison(scratch, s);
    poison(c_out, s);
    poison(c_att, s);
    gpu::attention_forward_cublas(c_out.data(), c_att.data(), d_qkv.data(), B, T, NH, NKV, HD,
                                  scratch.data(), bytes, s);
    poison(scratch, s);  // backward must not depend on what forward left there
    gpu::attention_backward_cublas(d_dqkv.data(), d_dout.data(), d_qkv.data(), c_att.data(), B, T,
                                   NH, NKV, HD, scratch.data(), bytes, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);

    const auto got_att = to_host(c_att, s);
    auto got_inc = to_host(d_dqkv, s);
    for (size_t i = 0; i < n_qkv; i++) got_inc[i] -= dqkv0[i];
    expect_close("cublas attention out", to_host(c_out, s), want_out, tol<E>());
    expect_close("cublas attention probabilities", got_att, want_att, tol<E>());
    expect_close("cublas attention dqkv increment", got_inc, want_inc, tol<E>());
    size_t nonzero = 0;  // causal: exactly zero above the diagonal
    for (size_t bh = 0; bh < size_t(B) * NH; bh++) {
        for (int t = 0; t < T; t++) {
            for (int j = t + 1; j < T; j++) nonzero += got_att[(bh * T + t) * T + j] != 0.0f;
        }
    }
    EXPECT_EQ(nonzero, 0u);
}

TEST_F(CudaTest, AttentionCublasGqaF32) {
    cublas_vs_scalar_case<float>(stream_, 2, 67, 6, 2, 32);
}
TEST_F(CudaTest, AttentionCublasGqaBf16) {
    cublas_vs_scalar_case<bf16>(stream_, 2, 67, 6, 2, 32);
}
TEST_F(CudaTest, AttentionCublasMhaF32) {
    cublas_vs_scalar_case<float>(stream_, 1, 300, 3, 3, 136);
}
TEST_F(CudaTest, AttentionCublasMhaBf16) {
    cublas_vs_scalar_case<bf16>(stream_, 1, 300, 3, 3, 136);
}
TEST_F(CudaTest, AttentionCublasMqaBf16) {
    cublas_vs_scalar_case<bf16>(stream_, 2, 45, 4, 1, 64);
}
TEST_F(CudaTest, AttentionCublasSingleTokenF32) {
    cublas_vs_scalar_case<float>(stream_, 3, 1, 2, 1, 16);
}

// ---- refusals ----------------------------------------------------------------

// Checked before any CUDA call, so these run without a device: fake, aligned,
// never dereferenced pointers.
template <class T>
T* fake(uintptr_t a) {
    return reinterpret_cast<T*>(a);
}

TEST(CudaAttentionCublasChecks, ScratchBytesCoverForwardAndBackward) {
    const size_t f32 = gpu::attention_cublas_scratch_bytes(2, 1024, 12, 12, 64, zt::DType::f32);
    const size_t b16 = gpu::attention_cublas_scratch_bytes(2, 1024, 12, 12, 64, zt::DType::bf16);
    // Backward holds dq, dk, dv in fp32 (3 x 2*12*1024*64 floats) and the fp32
    // dP of every pair (24 x 1024^2 floats: one chunk, under 512 MiB).
    const size_t heads = size_t(2) * 12 * 1024 * 64;
    EXPECT_GE(f32, 3 * heads * 4 + size_t(24) * 1024 * 1024 * 4);
    EXPECT_GE(b16, 3 * heads * 4 + size_t(24) * 1024 * 1024 * (4 + 2));
    EXPECT_THROW(gpu::attention_cublas_scratch_bytes(2, 1024, 12, 12, 64, zt::DType::f16),
                 zt::Error);
    EXPECT_THROW(gpu::attention_cublas_scratch_bytes(2, 1024, 12, 5, 64, zt::DType::f32),
                 zt::Error);
}

TEST(CudaAttentionCublasChecks, RefusesSmallScratchNamingTheShape) {
    const int B = 1, T = 64, NH = 4, NKV = 2, HD = 32;
    const size_t need = gpu::attention_cublas_scratch_bytes(B, T, NH, NKV, HD, zt::DType::bf16);
    auto* p = fake<bf16>(1 << 20);
    try {
        gpu::attention_forward_cublas(p, p, p, B, T, NH, NKV, HD, fake<void>(1 << 20), need / 2,
                                      nullptr);
        ADD_FAILURE() << "a scratch of half the size was accepted";
    } catch (const zt::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("attention_cublas_scratch_bytes"), std::string::npos) << msg;
        EXPECT_NE(msg.find("T=64"), std::string::npos) << msg;
    }
    EXPECT_THROW(gpu::attention_backward_cublas(p, p, fake<bf16>(2 << 20), p, B, T, NH, NKV, HD,
                                                fake<void>(1 << 20), need / 2, nullptr),
                 zt::Error);
    EXPECT_THROW(gpu::attention_backward_cublas(p, p, p, p, B, T, NH, NKV, HD, fake<void>(1 << 20),
                                                need, nullptr),
                 zt::Error);  // dqkv aliases qkv
    EXPECT_THROW(gpu::attention_forward_cublas(p, p, p, B, T, NH, NKV, HD, nullptr, need, nullptr),
                 zt::Error);  // null scratch
}

// The scalar path keeps a whole score row in shared memory: static plus
// dynamic bytes past the device's opt-in limit are refused with T, head_dim
// and both numbers, before anything is launched.
TEST_F(CudaTest, AttentionScalarRefusesRowsPastSharedMemory) {
    int optin = 0;
    ASSERT_EQ(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                                     gpu::current_device()),
              cudaSuccess);
    const int HD = 64, T = optin / 4;  // (HD + T) floats > optin bytes
    auto* p = fake<float>(1 << 20);
    try {
        gpu::attention_forward(p, p, p, 1, T, 1, 1, HD, stream_);
        ADD_FAILURE() << "T=" << T << " was accepted";
    } catch (const zt::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("T=" + std::to_string(T)), std::string::npos) << msg;
        EXPECT_NE(msg.find("head_dim=64"), std::string::npos) << msg;
        EXPECT_NE(msg.find(std::to_string(optin)), std::string::npos) << msg;
    }
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // nothing was launched
}

}  // namespace
