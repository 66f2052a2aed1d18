// Tests for the bf16 GEMMs (ops/cpu/gemm_bf16.h: oneDNN, or the widened-fp32
// fallback) and the bf16 linear layer built on them (ops/matmul.h).
//
// Every product runs on inputs already rounded to bf16, and the reference is
// the exact product of the same values in double, so every difference comes
// from the bf16 path's own roundings. Each output element is checked against
// its own bound (elem_tol): a product of two bf16 values is exact in fp32 (8 +
// 8 significant bits), so the fp32 accumulation of n roundings (K - 1
// additions, the alpha scale, the beta or bias add) is off by at most
// gamma_n * sum |terms| with gamma_n ~ n 2^-24, whatever the summation order
// or blocking; a bf16 output adds one round-to-nearest, at most 2^-8 of the
// value. A wrong transpose, stride, alpha, beta or dropped term errs by O(1)
// relative to the output, far above both. NaN fails every comparison.
//
// Operand padding (lda, ldb beyond the stored columns) holds NaN, so a kernel
// that reads it poisons its output; C's padding holds a sentinel that must
// survive; with beta = 0 C starts as NaN, which must never be read.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/matmul.h"

namespace {

using zt::bf16;
using Vec = std::vector<double>;
using VecB = std::vector<bf16>;
using VecF = std::vector<float>;

constexpr uint64_t kSeed = 20240613;
constexpr double kU = 1.0 / 256;           // bf16 unit roundoff, 2^-8
constexpr double kU32 = 1.0 / 16777216.0;  // fp32 unit roundoff, 2^-24
const bf16 kNaNBf16{0x7fc0};
constexpr float kSentinel = 12345.0f;  // exact in bf16 too

// The bound for one output element against the exact result `want`, when the
// fp32 computation made `roundings` roundings over terms of absolute sum
// `mag`. The factor 2 on the fp32 part covers gamma_n = n u / (1 - n u) > n u
// and the bf16 rounding of the fp32 error itself (|v| <= |want| + e32).
double elem_tol(double want, double mag, int64_t roundings, bool bf16_out) {
    const double e32 = 2.0 * double(roundings) * kU32 * mag;
    return bf16_out ? kU * std::fabs(want) + e32 : e32;
}

template <class T>
double widen(T x) {
    if constexpr (std::is_same_v<T, bf16>)
        return double(zt::bf16_to_f32(x));
    else
        return double(x);
}
template <class T>
T narrow(double x) {
    if constexpr (std::is_same_v<T, bf16>)
        return zt::f32_to_bf16(float(x));
    else
        return float(x);
}
template <class T>
bool same_bits(T a, T b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// n normal values (times scale), rounded to T.
template <class T>
std::vector<T> randn(size_t n, uint64_t stream, double scale = 1.0) {
    std::vector<T> v(n);
    for (size_t i = 0; i < n; i++) v[i] = narrow<T>(scale * zt::rng_normal(kSeed, stream, i));
    return v;
}

// Checks got[i] against want[i] within tol[i] for every i; reports the first
// few failures with their index.
template <class T>
void expect_within(const std::vector<T>& got, const Vec& want, const Vec& tol,
                   const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    int failures = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double err = std::fabs(widen(got[i]) - want[i]);
        if (!(err <= tol[i]) && failures++ < 5)
            ADD_FAILURE() << what << ": element " << i << " is " << widen(got[i]) << ", want "
                          << want[i] << " (error " << err << " exceeds " << tol[i] << ")";
    }
}

// ---------------------------------------------------------------- gemm_bf16

struct GemmCase {
    bool ta, tb;
    int64_t M, N, K;
    int64_t a_pad, b_pad, c_pad;  // leading dimension minus the stored columns
    float alpha, beta;
};

std::string name(const GemmCase& c) {
    return zt::strprintf("ta=%d tb=%d M=%lld N=%lld K=%lld pads=(%lld,%lld,%lld) alpha=%g beta=%g",
                         c.ta, c.tb, (long long)c.M, (long long)c.N, (long long)c.K,
                         (long long)c.a_pad, (long long)c.b_pad, (long long)c.c_pad, c.alpha,
                         c.beta);
}

// One product with its inputs, the exact answer and a bound per element.
template <class Out>
struct GemmProblem {
    GemmCase c;
    int64_t lda, ldb, ldc;
    VecB A, B;           // as stored, padding NaN
    std::vector<Out> C;  // (M, ldc), padding kSentinel
    Vec want, tol;       // (M, N)

    GemmProblem(const GemmCase& gc, uint64_t stream) : c(gc) {
        const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
        const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
        lda = a_cols + c.a_pad;
        ldb = b_cols + c.b_pad;
        ldc = c.N + c.c_pad;
        A = randn<bf16>(size_t(a_rows * lda), 3 * stream);
        B = randn<bf16>(size_t(b_rows * ldb), 3 * stream + 1);
        C = randn<Out>(size_t(c.M * ldc), 3 * stream + 2);
        for (int64_t i = 0; i < a_rows; i++)
            for (int64_t j = a_cols; j < lda; j++) A[size_t(i * lda + j)] = kNaNBf16;
        for (int64_t i = 0; i < b_rows; i++)
            for (int64_t j = b_cols; j < ldb; j++) B[size_t(i * ldb + j)] = kNaNBf16;
        for (int64_t i = 0; i < c.M; i++)
            for (int64_t j = 0; j < ldc; j++) {
                Out& x = C[size_t(i * ldc + j)];
                if (j >= c.N)
                    x = narrow<Out>(kSentinel);
                else if (c.beta == 0.0f)
                    x = narrow<Out>(std::numeric_limits<double>::quiet_NaN());
            }
        want.resize(size_t(c.M * c.N));
        tol.resize(want.size());
        for (int64_t i = 0; i < c.M; i++)
            for (int64_t j = 0; j < c.N; j++) {
                double sum = 0, mag = 0;
                for (int64_t k = 0; k < c.K; k++) {
                    const double a = widen(c.ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)]);
                    const double b = widen(c.tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)]);
                    sum += a * b;
                    mag += std::fabs(a * b);
                }
                double w = double(c.alpha) * sum;
                mag *= std::fabs(double(c.alpha));
                if (c.beta != 0.0f) {
                    const double old = double(c.beta) * widen(C[size_t(i * ldc + j)]);
                    w += old;
                    mag += std::fabs(old);
                }
                want[size_t(i * c.N + j)] = w;
                tol[size_t(i * c.N + j)] =
                    elem_tol(w, mag, c.K + 2, std::is_same_v<Out, bf16>);  // K-1 adds, alpha, beta
            }
    }

    void run(bool serial) {
        if (serial)
            zt::cpu::gemm_bf16_serial(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(),
                                      ldb, c.beta, C.data(), ldc);
        else
            zt::cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb,
                               c.beta, C.data(), ldc);
    }

    void check(const std::string& what) const {
        std::vector<Out> got(want.size());
        int padding_changed = 0;
        for (int64_t i = 0; i < c.M; i++) {
            for (int64_t j = 0; j < c.N; j++) got[size_t(i * c.N + j)] = C[size_t(i * ldc + j)];
            for (int64_t j = c.N; j < ldc; j++)
                padding_changed += !same_bits(C[size_t(i * ldc + j)], narrow<Out>(kSentinel));
        }
        const std::string label =
            what + " " + name(c) + (std::is_same_v<Out, bf16> ? " C=bf16" : " C=f32");
        EXPECT_EQ(padding_changed, 0) << label << ": wrote C's padding";
        expect_within(got, want, tol, label);
    }
};

template <class Out>
void check_cases(const std::vector<GemmCase>& cases, bool serial, const std::string& what) {
    uint64_t stream = serial ? 1000 : 0;
    for (const GemmCase& c : cases) {
        GemmProblem<Out> p(c, stream++);
        p.run(serial);
        p.check(what);
    }
}

// Every transpose combination at the given shape and paddings, for
// (alpha, beta) = (1, 0), (1, 1) and (0.37, 0.5).
std::vector<GemmCase> all_transposes(int64_t M, int64_t N, int64_t K, int64_t a_pad, int64_t b_pad,
                                     int64_t c_pad) {
    constexpr float kAlphaBeta[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.37f, 0.5f}};
    std::vector<GemmCase> cases;
    for (int t = 0; t < 4; t++)
        for (const auto& ab : kAlphaBeta)
            cases.push_back({bool(t & 1), bool(t & 2), M, N, K, a_pad, b_pad, c_pad, ab[0], ab[1]});
    return cases;
}

TEST(OpsBf16Matmul, GemmOddSizesAllTransposesMatchDouble) {
    const auto cases = all_transposes(37, 53, 29, 0, 0, 0);
    for (bool serial : {false, true}) {
        check_cases<float>(cases, serial, serial ? "serial" : "parallel");
        check_cases<bf16>(cases, serial, serial ? "serial" : "parallel");
    }
}

TEST(OpsBf16Matmul, GemmStridedOperandsMatchDouble) {
    // Leading dimensions beyond the columns, as for one head inside packed qkv rows.
    const auto cases = all_transposes(37, 53, 29, 3 * 29 + 5, 11, 7);
    for (bool serial : {false, true}) {
        check_cases<float>(cases, serial, serial ? "serial" : "parallel");
        check_cases<bf16>(cases, serial, serial ? "serial" : "parallel");
    }
}

TEST(OpsBf16Matmul, GemmBlockedShapesMatchDouble) {
    // Big enough for oneDNN's blocked (AMX / AVX512-BF16) kernels, and a long
    // reduction that is split into several K blocks.
    std::vector<GemmCase> cases = all_transposes(128, 96, 160, 0, 0, 0);
    for (const GemmCase& c : all_transposes(40, 24, 1500, 8, 0, 16)) cases.push_back(c);
    for (bool serial : {false, true}) {
        check_cases<float>(cases, serial, serial ? "serial" : "parallel");
        check_cases<bf16>(cases, serial, serial ? "serial" : "parallel");
    }
}

TEST(OpsBf16Matmul, GemmRepeatedCallsReuseTheirPlanCorrectly) {
    // The second call of a shape runs the cached primitive on new data.
    const GemmCase c{false, true, 37, 53, 29, 2, 0, 1, 1.0f, 1.0f};
    for (uint64_t s = 0; s < 3; s++) {
        GemmProblem<bf16> p(c, 2000 + s);
        p.run(true);
        p.check("repeat " + std::to_string(s));
    }
}

TEST(OpsBf16Matmul, GemmSerialInsideParallelRegionMatchesDouble) {
    // Attention's pattern: one GEMM per thread, each on its own data, shapes
    // mixed so several threads build and use plans concurrently. The region
    // asks for 4 threads whatever the core count, so calls really overlap.
    std::vector<GemmProblem<float>> f32;
    std::vector<GemmProblem<bf16>> b16;
    uint64_t stream = 3000;
    for (int round = 0; round < 2; round++)
        for (int t = 0; t < 4; t++) {
            const int64_t pad = round ? 5 : 0;
            f32.emplace_back(GemmCase{bool(t & 1), bool(t & 2), 37 + t, 29, 53, pad, 0, pad, 0.125f,
                                      float(t & 1)},
                             stream++);
            b16.emplace_back(GemmCase{bool(t & 2), bool(t & 1), 64, 48 + t, 80, 0, pad, pad, 1.0f,
                                      float(t >> 1)},
                             stream++);
        }
    const int n = int(f32.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(4)
    for (int i = 0; i < 2 * n; i++) {
        if (i < n)
            f32[size_t(i)].run(true);
        else
            b16[size_t(i - n)].run(true);
    }
    for (const auto& p : f32) p.check("serial in a parallel region");
    for (const auto& p : b16) p.check("serial in a parallel region");

    // gemm_bf16 called inside a region runs on the calling thread too.
    std::vector<GemmProblem<float>> nested;
    for (int t = 0; t < 4; t++)
        nested.emplace_back(GemmCase{false, bool(t & 1), 33, 41, 47, 0, 0, 0, 1.0f, 0.0f},
                            stream++);
#pragma omp parallel for num_threads(4)
    for (int i = 0; i < 4; i++) nested[size_t(i)].run(false);
    for (const auto& p : nested) p.check("gemm_bf16 in a parallel region");
}

TEST(OpsBf16Matmul, GemmEmptyReductionScalesC) {
    // K = 0: C = beta C exactly, and beta = 0 overwrites a NaN C with 0.
    VecF C{1.5f, -2.0f, 3.25f, 0.5f};
    const bf16 dummy{0};
    zt::cpu::gemm_bf16(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 0.5f, C.data(), 2);
    EXPECT_EQ(C, (VecF{0.75f, -1.0f, 1.625f, 0.25f}));
    VecB D(4, kNaNBf16);
    zt::cpu::gemm_bf16_serial(true, true, 2, 2, 0, 1.0f, &dummy, 2, &dummy, 1, 0.0f, D.data(), 2);
    for (bf16 d : D) EXPECT_EQ(zt::bf16_to_f32(d), 0.0f);
}

TEST(OpsBf16Matmul, GemmRefusesShortLeadingDimensions) {
    const VecB A(64, bf16{0}), B(64, bf16{0});
    VecF C(64);
    // A stored (M=4, K=8) needs lda >= 8.
    EXPECT_THROW(zt::cpu::gemm_bf16(false, false, 4, 4, 8, 1.0f, A.data(), 4, B.data(), 4, 0.0f,
                                    C.data(), 4),
                 zt::Error);
    // B stored (N=4, K=8) under trans_b needs ldb >= 8.
    EXPECT_THROW(zt::cpu::gemm_bf16_serial(false, true, 4, 4, 8, 1.0f, A.data(), 8, B.data(), 4,
                                           0.0f, C.data(), 4),
                 zt::Error);
    // C (4, 4) needs ldc >= 4.
    EXPECT_THROW(zt::cpu::gemm_bf16(false, false, 4, 4, 8, 1.0f, A.data(), 8, B.data(), 4, 0.0f,
                                    C.data(), 3),
                 zt::Error);
}

TEST(OpsBf16Matmul, PathNamesTheImplementation) {
    const std::string path = zt::cpu::gemm_bf16_path();
    std::printf("gemm_bf16 path: %s\n", path.c_str());
#if ZT_HAVE_DNNL
    // oneDNN, or the widened path on a CPU for which oneDNN has no bf16 matmul.
    EXPECT_TRUE(path.rfind("onednn ", 0) == 0 ||
                path.find("has no bf16 matmul for this CPU") != std::string::npos)
        << path;
#else
    EXPECT_EQ(path.rfind("fallback", 0), 0u) << path;
#endif
}

// ---------------------------------------------------------------- matmul

struct LinearShape {
    int64_t N;
    int C, OC;
};
constexpr LinearShape kLinearShapes[] = {{37, 53, 29}, {130, 96, 72}};

struct LinearData {
    LinearShape s;
    VecB inp, weight, bias, dout;  // (N, C), (OC, C), (OC), (N, OC)
    LinearData(const LinearShape& shape, uint64_t stream)
        : s(shape),
          inp(randn<bf16>(size_t(s.N * s.C), 10 * stream)),
          weight(randn<bf16>(size_t(s.OC) * s.C, 10 * stream + 1, 0.2)),
          bias(randn<bf16>(size_t(s.OC), 10 * stream + 2)),
          dout(randn<bf16>(size_t(s.N * s.OC), 10 * stream + 3)) {}
};

TEST(OpsBf16Matmul, ForwardWithAndWithoutBiasMatchesDouble) {
    uint64_t stream = 0;
    for (const LinearShape& s : kLinearShapes)
        for (bool with_bias : {true, false}) {
            const LinearData d(s, stream++);
            VecB out(size_t(s.N * s.OC), kNaNBf16);  // forward overwrites
            zt::cpu::matmul_forward(out.data(), d.inp.data(), d.weight.data(),
                                    with_bias ? d.bias.data() : nullptr, s.N, s.C, s.OC);
            Vec want(out.size()), tol(out.size());
            for (int64_t n = 0; n < s.N; n++)
                for (int o = 0; o < s.OC; o++) {
                    double sum = with_bias ? widen(d.bias[size_t(o)]) : 0.0, mag = std::fabs(sum);
                    for (int c = 0; c < s.C; c++) {
                        const double t = widen(d.inp[size_t(n * s.C + c)]) *
                                         widen(d.weight[size_t(o) * s.C + c]);
                        sum += t;
                        mag += std::fabs(t);
                    }
                    want[size_t(n * s.OC + o)] = sum;
                    tol[size_t(n * s.OC + o)] =
                        elem_tol(sum, mag, s.C + 2, true);  // C-1 adds, bias
                }
            expect_within(out, want, tol,
                          zt::strprintf("forward N=%lld C=%d OC=%d bias=%d", (long long)s.N, s.C,
                                        s.OC, with_bias));
        }
}

// Runs backward twice on nonzero starting gradients, checking after each call
// that every gradient grew by exactly one batch's contribution: += semantics,
// with the bf16 gradients' one rounding per call.
template <class Grad>
void check_backward_accumulates(const LinearShape& s, uint64_t stream) {
    const LinearData d(s, stream);
    VecB dinp = randn<bf16>(size_t(s.N * s.C), 10 * stream + 4);
    std::vector<Grad> dweight = randn<Grad>(size_t(s.OC) * s.C, 10 * stream + 5);
    std::vector<Grad> dbias = randn<Grad>(size_t(s.OC), 10 * stream + 6);
    const bool bf16_grad = std::is_same_v<Grad, bf16>;
    const std::string shape = zt::strprintf("N=%lld C=%d OC=%d%s", (long long)s.N, s.C, s.OC,
                                            bf16_grad ? " bf16" : " f32");
    for (int call = 1; call <= 2; call++) {
        // Expected values from the gradients as they stand before this call.
        Vec want_inp(dinp.size()), tol_inp(dinp.size());
        for (int64_t n = 0; n < s.N; n++)
            for (int c = 0; c < s.C; c++) {
                double sum = 0, mag = 0;
                for (int o = 0; o < s.OC; o++) {
                    const double t =
                        widen(d.dout[size_t(n * s.OC + o)]) * widen(d.weight[size_t(o) * s.C + c]);
                    sum += t;
                    mag += std::fabs(t);
                }
                const double old = widen(dinp[size_t(n * s.C + c)]);
                want_inp[size_t(n * s.C + c)] = old + sum;
                tol_inp[size_t(n * s.C + c)] =
                    elem_tol(old + sum, mag + std::fabs(old), s.OC + 1, true);  // OC-1 adds, +=
            }
        Vec want_w(dweight.size()), tol_w(dweight.size());
        for (int o = 0; o < s.OC; o++)
            for (int c = 0; c < s.C; c++) {
                double sum = 0, mag = 0;
                for (int64_t n = 0; n < s.N; n++) {
                    const double t =
                        widen(d.dout[size_t(n * s.OC + o)]) * widen(d.inp[size_t(n * s.C + c)]);
                    sum += t;
                    mag += std::fabs(t);
                }
                const double old = widen(dweight[size_t(o) * s.C + c]);
                want_w[size_t(o) * s.C + c] = old + sum;
                tol_w[size_t(o) * s.C + c] =
                    elem_tol(old + sum, mag + std::fabs(old), s.N + 1, bf16_grad);  // N-1 adds, +=
            }
        Vec want_b(dbias.size()), tol_b(dbias.size());
        for (int o = 0; o < s.OC; o++) {
            double sum = 0, mag = 0;
            for (int64_t n = 0; n < s.N; n++) {
                sum += widen(d.dout[size_t(n * s.OC + o)]);
                mag += std::fabs(widen(d.dout[size_t(n * s.OC + o)]));
            }
            const double old = widen(dbias[size_t(o)]);
            want_b[size_t(o)] = old + sum;
            tol_b[size_t(o)] = elem_tol(old + sum, mag + std::fabs(old), s.N + 1, bf16_grad);
        }

        zt::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), d.dout.data(),
                                 d.inp.data(), d.weight.data(), s.N, s.C, s.OC);
        const std::string what = shape + " call " + std::to_string(call);
        expect_within(dinp, want_inp, tol_inp, "dinp " + what);
        expect_within(dweight, want_w, tol_w, "dweight " + what);
        expect_within(dbias, want_b, tol_b, "dbias " + what);
    }
}

TEST(OpsBf16Matmul, BackwardFloatGradsAccumulateAndMatchDouble) {
    uint64_t stream = 100;
    for (const LinearShape& s : kLinearShapes) check_backward_accumulates<float>(s, stream++);
}

TEST(OpsBf16Matmul, BackwardBf16GradsAccumulateAndMatchDouble) {
    uint64_t stream = 200;
    for (const LinearShape& s : kLinearShapes) check_backward_accumulates<bf16>(s, stream++);
}

TEST(OpsBf16Matmul, BackwardNullGradientPointersAreSkipped) {
    // Each gradient alone equals that gradient computed with all three.
    const LinearShape s{37, 53, 29};
    const LinearData d(s, 300);
    VecB dinp(size_t(s.N * s.C), bf16{0});
    VecF dweight(size_t(s.OC) * s.C, 0.0f), dbias(size_t(s.OC), 0.0f);
    zt::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), d.dout.data(), d.inp.data(),
                             d.weight.data(), s.N, s.C, s.OC);
    VecB dinp_only(dinp.size(), bf16{0});
    VecF dweight_only(dweight.size(), 0.0f), dbias_only(dbias.size(), 0.0f);
    zt::cpu::matmul_backward(dinp_only.data(), static_cast<float*>(nullptr), nullptr, d.dout.data(),
                             d.inp.data(), d.weight.data(), s.N, s.C, s.OC);
    zt::cpu::matmul_backward(nullptr, dweight_only.data(), nullptr, d.dout.data(), d.inp.data(),
                             d.weight.data(), s.N, s.C, s.OC);
    zt::cpu::matmul_backward(nullptr, static_cast<float*>(nullptr), dbias_only.data(),
                             d.dout.data(), d.inp.data(), d.weight.data(), s.N, s.C, s.OC);
    // The same primitives on the same data: bit-identical.
    for (size_t i = 0; i < dinp.size(); i++)
        ASSERT_TRUE(same_bits(dinp[i], dinp_only[i])) << "dinp " << i;
    EXPECT_EQ(dweight, dweight_only);
    EXPECT_EQ(dbias, dbias_only);
}

}  // namespace
