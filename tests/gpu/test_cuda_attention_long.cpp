// GPU attention tests at real sizes: GPT-2 small's T = 1024 (B = 2, 12 heads
// of 64, and a GQA variant), kv-head pairs split over chunks of scores
// (T = 7168, the last chunk partial), and T = 16384, past the 48 KiB of
// dynamic shared memory the scalar path gets without opting in.
//
// Each runs the cuBLAS path and checks sampled rows (out, probabilities,
// dQ rows, and the dK/dV rows of chosen keys) against a double-precision
// reference (attention_reference.h), and, where it fits in the time, the
// whole arrays against the scalar path. Inputs are rounded to bf16 for every
// run, so fp32 and bf16 runs see the same values and the bf16-vs-fp32
// comparison measures only the bf16 arithmetic.
//
// Tolerances (norm-wise relative, as everywhere in tests/gpu):
//   fp32 vs double, T >= 1024: the long sums (P V over up to T = 16384 terms,
//     dS K, dS^T Q over G T terms) carry fp32 rounding that grows like
//     sqrt(n) u, 7.7e-6 at n = 16384; kTolLongF32 = 5e-5 leaves 6x. A wrong
//     index, scale or term errs by 1e-2 or more.
//   bf16 vs double or vs the fp32 path: kTolBf16 (P, dS and each output
//     rounded once to bf16, ~5e-3).
//   fp32 cuBLAS vs fp32 scalar at T = 1024: kTolLongF32 (same formulas,
//     different orders, sums of 1024 terms).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "attention_reference.h"
#include "gpu_test_util.h"
#include "ops/cuda/attention.h"

namespace {

using namespace zt_gpu_test;
namespace gpu = zt::cuda;

constexpr double kTolLongF32 = 5e-5;

struct Shape {
    int B, T, NH, NKV, HD;
    int64_t row() const { return int64_t(NH + 2 * NKV) * HD; }
    size_t n_qkv() const { return size_t(B) * T * row(); }
    size_t n_out() const { return size_t(B) * T * NH * HD; }
    size_t n_att() const { return size_t(B) * NH * T * T; }
};

constexpr zt::DType dtype_of(float*) {
    return zt::DType::f32;
}
constexpr zt::DType dtype_of(bf16*) {
    return zt::DType::bf16;
}

void round_to_bf16(std::vector<float>& v) {
    for (float& x : v) x = from_bf16(to_bf16(x));
}

// What one run leaves on the device: out, att and dqkv (backward from zero).
template <class E>
struct AttnRun {
    DeviceBuffer<E> out, att, dqkv;
};

// The cuBLAS path forward and backward on `qkv` and `dout` (already bf16 values).
template <class E>
AttnRun<E> run_cublas(const Shape& sh, std::vector<float> qkv, std::vector<float> dout,
                      cudaStream_t s) {
    auto d_qkv = to_device<E>(qkv, s), d_dout = to_device<E>(dout, s);
    AttnRun<E> r{DeviceBuffer<E>(int64_t(sh.n_out())), DeviceBuffer<E>(int64_t(sh.n_att())),
                 DeviceBuffer<E>(int64_t(sh.n_qkv()))};
    r.dqkv.zero_async(s);
    const size_t bytes = gpu::attention_cublas_scratch_bytes(sh.B, sh.T, sh.NH, sh.NKV, sh.HD,
                                                             dtype_of(static_cast<E*>(nullptr)));
    DeviceBuffer<uint8_t> scratch{int64_t(bytes)};
    gpu::attention_forward_cublas(r.out.data(), r.att.data(), d_qkv.data(), sh.B, sh.T, sh.NH,
                                  sh.NKV, sh.HD, scratch.data(), bytes, s);
    gpu::attention_backward_cublas(r.dqkv.data(), d_dout.data(), d_qkv.data(), r.att.data(), sh.B,
                                   sh.T, sh.NH, sh.NKV, sh.HD, scratch.data(), bytes, s);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    return r;
}

// The scalar path, forward and (when `backward`) backward, same contract.
template <class E>
AttnRun<E> run_scalar(const Shape& sh, std::vector<float> qkv, std::vector<float> dout,
                      bool backward, cudaStream_t s) {
    auto d_qkv = to_device<E>(qkv, s), d_dout = to_device<E>(dout, s);
    AttnRun<E> r{DeviceBuffer<E>(int64_t(sh.n_out())), DeviceBuffer<E>(int64_t(sh.n_att())),
                 DeviceBuffer<E>(int64_t(sh.n_qkv()))};
    r.dqkv.zero_async(s);
    gpu::attention_forward(r.out.data(), r.att.data(), d_qkv.data(), sh.B, sh.T, sh.NH, sh.NKV,
                           sh.HD, s);
    if (backward) {
        gpu::attention_backward(r.dqkv.data(), d_dout.data(), d_qkv.data(), r.att.data(), sh.B,
                                sh.T, sh.NH, sh.NKV, sh.HD, s);
    }
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    return r;
}

// Sampled rows of a run against the double reference: out and P rows of the
// queries (every b and h, positions ts), their dQ rows, and the dK and dV
// rows of the keys js of the last batch entry's first and last kv head.
struct Sample {
    std::vector<int> ts;  // query positions
    std::vector<int> js;  // key positions
};

template <class E>
void check_rows(const char* what, const AttnRun<E>& r, const Shape& sh,
                const AttentionReference& ref, const Sample& smp, double tol, cudaStream_t s) {
    const auto out = to_host(r.out, s), dqkv = to_host(r.dqkv, s);
    const int64_t R = sh.row(), RO = int64_t(sh.NH) * sh.HD;
    std::vector<float> got_o, want_o, got_p, want_p, got_q, want_q, got_kv, want_kv;
    size_t above = 0;
    for (int b = 0; b < sh.B; b++) {
        for (int h = 0; h < sh.NH; h++) {
            for (int t : smp.ts) {
                const auto o = ref.out_row(b, h, t), dq = ref.dq_row(b, h, t);
                const auto p = ref.probs(b, h, t);
                const auto prow = slice_to_host(
                    r.att.data() + ((int64_t(b) * sh.NH + h) * sh.T + t) * sh.T, sh.T, s);
                for (int d = 0; d < sh.HD; d++) {
                    got_o.push_back(out[(int64_t(b) * sh.T + t) * RO + int64_t(h) * sh.HD + d]);
                    want_o.push_back(float(o[d]));
                    got_q.push_back(dqkv[(int64_t(b) * sh.T + t) * R + int64_t(h) * sh.HD + d]);
                    want_q.push_back(float(dq[d]));
                }
                for (int j = 0; j <= t; j++)
                    got_p.push_back(prow[j]), want_p.push_back(float(p[j]));
                for (int j = t + 1; j < sh.T; j++) above += prow[j] != 0.0f;
            }
        }
        // dK/dV rows cost O((T - j) T HD) each: the last batch entry's first
        // and last kv head only.
        if (b != sh.B - 1) continue;
        std::vector<int> gs = {0};
        if (sh.NKV > 1) gs.push_back(sh.NKV - 1);
        for (int g : gs) {
            for (int j : smp.js) {
                std::vector<double> dk, dv;
                ref.dkv_row(b, g, j, dk, dv);
                const int64_t base = (int64_t(b) * sh.T + j) * R;
                for (int d = 0; d < sh.HD; d++) {
                    got_kv.push_back(dqkv[base + int64_t(sh.NH + g) * sh.HD + d]);
                    want_kv.push_back(float(dk[d]));
                    got_kv.push_back(dqkv[base + int64_t(sh.NH + sh.NKV + g) * sh.HD + d]);
                    want_kv.push_back(float(dv[d]));
                }
            }
        }
    }
    SCOPED_TRACE(what);
    expect_close("out rows", got_o, want_o, tol);
    expect_close("probability rows", got_p, want_p, tol);
    expect_close("dq rows", got_q, want_q, tol);
    expect_close("dk and dv rows", got_kv, want_kv, tol);
    EXPECT_EQ(above, 0u) << "probabilities above the diagonal must be exactly 0";
}

struct Inputs {
    std::vector<float> qkv, dout;
};

Inputs make_inputs(const Shape& sh, uint64_t seed) {
    Inputs in{randn(sh.n_qkv(), seed), randn(sh.n_out(), seed + 1)};
    round_to_bf16(in.qkv);
    round_to_bf16(in.dout);
    return in;
}

// T = 1024 against the scalar oracle (whole arrays) and the double reference
// (rows at both ends and the middle; dK/dV of the first, a middle and the
// last key, which sum over 1024, 513 and 1 queries).
template <class E>
void gpt2_case(cudaStream_t s, const Shape& sh, double tol) {
    const Inputs in = make_inputs(sh, 171);
    const AttentionReference ref(in.qkv, in.dout, sh.B, sh.T, sh.NH, sh.NKV, sh.HD);
    const AttnRun<E> c = run_cublas<E>(sh, in.qkv, in.dout, s);
    check_rows("cublas vs double", c, sh, ref, Sample{{0, 1, 511, sh.T - 1}, {0, 511, sh.T - 1}},
               tol, s);
    const AttnRun<E> o = run_scalar<E>(sh, in.qkv, in.dout, true, s);
    expect_close("cublas vs scalar out", to_host(c.out, s), to_host(o.out, s), tol);
    expect_close("cublas vs scalar probabilities", to_host(c.att, s), to_host(o.att, s), tol);
    expect_close("cublas vs scalar dqkv", to_host(c.dqkv, s), to_host(o.dqkv, s), tol);
}

TEST_F(CudaTest, AttentionGpt2SizeF32) {
    gpt2_case<float>(stream_, Shape{2, 1024, 12, 12, 64}, kTolLongF32);
}
TEST_F(CudaTest, AttentionGpt2SizeBf16) {
    gpt2_case<bf16>(stream_, Shape{2, 1024, 12, 12, 64}, kTolBf16);
}
TEST_F(CudaTest, AttentionGqaT1024Bf16) {
    gpt2_case<bf16>(stream_, Shape{1, 1024, 12, 4, 64}, kTolBf16);
}

// Three kv-head pairs of 7168^2 fp32 scores (196 MiB each) make chunks of two
// pairs and one: the partial last chunk's offsets against the scalar oracle.
TEST_F(CudaTest, AttentionCublasPartialChunkF32) {
    const Shape sh{3, 7168, 1, 1, 64};
    const Inputs in = make_inputs(sh, 181);
    const AttentionReference ref(in.qkv, in.dout, sh.B, sh.T, sh.NH, sh.NKV, sh.HD);
    const AttnRun<float> c = run_cublas<float>(sh, in.qkv, in.dout, stream_);
    check_rows("cublas vs double", c, sh, ref, Sample{{0, 4000, sh.T - 1}, {sh.T - 3, sh.T - 1}},
               kTolLongF32, stream_);
    const AttnRun<float> o = run_scalar<float>(sh, in.qkv, in.dout, true, stream_);
    expect_close("cublas vs scalar out", to_host(c.out, stream_), to_host(o.out, stream_),
                 kTolLongF32);
    expect_close("cublas vs scalar dqkv", to_host(c.dqkv, stream_), to_host(o.dqkv, stream_),
                 kTolLongF32);
}

// T = 16384, B = 1, 4 query heads on 2 kv heads: fp32 scores of 2 GiB per
// pair, so every pair is its own chunk. fp32 and bf16 against the double
// reference on rows, bf16 against fp32 on the whole arrays, and the scalar
// forward (a 65.8 KB score row: past 48 KiB, so it must opt in to more shared
// memory) against the cuBLAS forward.
TEST_F(CudaTest, AttentionCublasT16384) {
    const Shape sh{1, 16384, 4, 2, 64};
    const Inputs in = make_inputs(sh, 191);
    const AttentionReference ref(in.qkv, in.dout, sh.B, sh.T, sh.NH, sh.NKV, sh.HD);
    const Sample smp{{0, 12345, sh.T - 1}, {sh.T - 4, sh.T - 1}};
    std::vector<float> out32, dqkv32;
    {
        const AttnRun<float> c = run_cublas<float>(sh, in.qkv, in.dout, stream_);
        check_rows("fp32 cublas vs double", c, sh, ref, smp, kTolLongF32, stream_);
        out32 = to_host(c.out, stream_);
        dqkv32 = to_host(c.dqkv, stream_);
    }
    std::vector<float> out16;
    {
        const AttnRun<bf16> c = run_cublas<bf16>(sh, in.qkv, in.dout, stream_);
        check_rows("bf16 cublas vs double", c, sh, ref, smp, kTolBf16, stream_);
        out16 = to_host(c.out, stream_);
        expect_close("bf16 vs fp32 out", out16, out32, kTolBf16);
        expect_close("bf16 vs fp32 dqkv", to_host(c.dqkv, stream_), dqkv32, kTolBf16);
    }
    const AttnRun<bf16> o = run_scalar<bf16>(sh, in.qkv, in.dout, false, stream_);
    expect_close("scalar vs cublas out (bf16)", to_host(o.out, stream_), out16, kTolBf16);
}

}  // namespace
