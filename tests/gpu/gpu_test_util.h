// Helpers for the GPU op tests: the no-device skip, host <-> device arrays in
// either element type, and error measures that fail on NaN and Inf.
//
// Every comparison runs the CUDA op and the CPU reference (zt::cpu) on the
// same input values: for bf16 the random inputs are rounded to bf16 first and
// the CPU sees those rounded values in fp32, so the measured difference is the
// GPU's own arithmetic and output rounding, not input quantisation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "ops/cuda/context.h"
#include "ops/cuda/device_arena.h"

namespace zt_gpu_test {

using bf16 = __nv_bfloat16;
using zt::cuda::DeviceBuffer;

// fp32 tolerance (norm-wise relative error, GPU vs CPU). Both sides evaluate
// the same fp32 formulas; they differ in summation order (cuBLASLt tiles and
// warp trees vs OpenBLAS blocks and SIMD lanes) and in exp (CUDA's expf and
// the CPU's Cephes polynomial, each within 2 ulp). Rounding in an n-term fp32
// sum grows like sqrt(n) u, u = 6e-8: about 2e-6 for the longest reductions
// here (V = 1001 logits, C = 100, T = 67). 1e-5 leaves a 5x margin; a wrong
// index, sign or term errs by 1e-3 or more.
constexpr double kTolF32 = 1e-5;
// bf16 tolerance. bf16 keeps 8 significant bits: unit roundoff 2^-8 = 3.9e-3,
// RMS relative rounding error about 2.3e-3 per rounding. Every GPU output is
// rounded once to bf16, and some results pass through one or two saved bf16
// intermediates first (attention probabilities, the classifier's dlogits, a
// bf16 pre-filled gradient), so about 4e-3 norm-wise is expected; 1e-2 leaves
// a 2.5x margin, while a wrong index, sign or term errs by 1e-1 or more.
constexpr double kTolBf16 = 1e-2;

template <class E>
constexpr double tol() {
    return std::is_same_v<E, float> ? kTolF32 : kTolBf16;
}

// Empty when a device is usable, else the reason to print with the skip.
inline std::string no_device_reason() {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return std::string("no CUDA device: ") + cudaGetErrorString(err);
    }
    if (n == 0) return "no CUDA device: cudaGetDeviceCount found 0 devices";
    return "";
}

// Fixture of every GPU test: skips with the reason when there is no device,
// else gives the test a stream and frees the op context afterwards (so
// compute-sanitizer's leak check sees nothing left behind).
class CudaTest : public ::testing::Test {
  protected:
    void SetUp() override {
        const std::string reason = no_device_reason();
        if (!reason.empty()) GTEST_SKIP() << reason;
        ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    }
    void TearDown() override {
        if (!stream_) return;
        EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
        zt::cuda::release_context();
        EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
        stream_ = nullptr;
    }
    void sync() {
        const cudaError_t err = cudaStreamSynchronize(stream_);
        ASSERT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
    }
    cudaStream_t stream_ = nullptr;
};

inline std::vector<float> randn(size_t n, uint64_t stream, float scale = 1.0f, float shift = 0.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = shift + scale * zt::rng_normal(20240611, stream, i);
    return v;
}

// Host conversions through the CPU's rounding (core/dtype.h).
inline bf16 to_bf16(float f) {
    __nv_bfloat16_raw raw;
    raw.x = zt::f32_to_bf16(f).bits;
    return bf16(raw);
}
inline float from_bf16(bf16 h) {
    const __nv_bfloat16_raw raw(h);
    return zt::bf16_to_f32(zt::bf16{raw.x});
}

// A device array of E holding `values`, copied on `stream` (and waited for);
// for bf16, `values` are rounded to bf16 in place first, so the caller's host
// copy is what the device holds.
template <class E>
DeviceBuffer<E> to_device(std::vector<float>& values, cudaStream_t stream) {
    DeviceBuffer<E> buf(int64_t(values.size()));
    if constexpr (std::is_same_v<E, float>) {
        buf.copy_from_host(values.data(), int64_t(values.size()), stream);
    } else {
        std::vector<bf16> h(values.size());
        for (size_t i = 0; i < values.size(); i++) {
            h[i] = to_bf16(values[i]);
            values[i] = from_bf16(h[i]);
        }
        buf.copy_from_host(h.data(), int64_t(h.size()), stream);
    }
    return buf;
}

// The first n elements of buf (all when n < 0) as floats, copied on `stream`
// after the work already enqueued there.
template <class E>
std::vector<float> to_host(const DeviceBuffer<E>& buf, cudaStream_t stream, int64_t n = -1) {
    if (n < 0) n = buf.size();
    std::vector<float> out(static_cast<size_t>(n));
    if constexpr (std::is_same_v<E, float>) {
        buf.copy_to_host(out.data(), n, stream);
    } else {
        std::vector<bf16> h(static_cast<size_t>(n));
        buf.copy_to_host(h.data(), n, stream);
        for (size_t i = 0; i < h.size(); i++) out[i] = from_bf16(h[i]);
    }
    return out;
}

// n elements of E starting at device pointer p, as floats, copied on `stream`.
template <class E>
std::vector<float> slice_to_host(const E* p, int64_t n, cudaStream_t stream) {
    std::vector<E> h(static_cast<size_t>(n));
    std::vector<float> out(static_cast<size_t>(n));
    EXPECT_EQ(cudaMemcpyAsync(h.data(), p, size_t(n) * sizeof(E), cudaMemcpyDeviceToHost, stream),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (size_t i = 0; i < h.size(); i++) {
        if constexpr (std::is_same_v<E, float>) {
            out[i] = h[i];
        } else {
            out[i] = from_bf16(h[i]);
        }
    }
    return out;
}

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& v, cudaStream_t stream) {
    DeviceBuffer<T> buf(int64_t(v.size()));
    buf.copy_from_host(v.data(), int64_t(v.size()), stream);
    return buf;
}

// ||got - want|| / ||want|| in double; NaN if either holds a NaN, Inf/NaN if
// either holds an Inf, so `!(err <= tol)` fails on both.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
    if (got.size() != want.size()) return NAN;
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double d = double(got[i]) - double(want[i]);
        num += d * d;
        den += double(want[i]) * double(want[i]);
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline void expect_close(const char* what, const std::vector<float>& got,
                         const std::vector<float>& want, double tol) {
    const double err = rel_error(got, want);
    if (!(err <= tol)) {
        ADD_FAILURE() << what << ": relative error " << err << " exceeds " << tol
                      << " (n=" << want.size() << ")";
    }
}

inline void expect_bits_equal(const char* what, const std::vector<float>& got,
                              const std::vector<float>& want) {
    ASSERT_EQ(got.size(), want.size()) << what;
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ == 0) first = i;
    }
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " elements differ, first at " << first << " ("
                       << got[first] << " vs " << want[first] << ")";
}

}  // namespace zt_gpu_test
