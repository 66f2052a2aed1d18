// The portable GEMM/GEMV (ops/cpu/portable_gemm.h), the BLAS of builds without
// OpenBLAS, against a double-precision triple loop at sizes that cross its
// blocks (64 rows, 256 of K, 256 columns) by a few, with padded leading
// dimensions, every transpose pair and the alpha/beta cases the ops use; in a
// build with OpenBLAS, also against cblas_sgemm/dgemm/sgemv on the same data.
//
// Tolerance: a fp32 sum of K products differs from the exact one by at most
// about K * 2^-24 * sum_k |a_ik b_kj| (plus |beta c| once); the tests allow
// 2 * K * eps of that bound per element, which a wrong index or a dropped
// block exceeds by orders of magnitude (the checker is shown to refuse one).
#include <gtest/gtest.h>

#if ZT_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "ops/cpu/portable_gemm.h"

namespace {

struct Shape {
    int64_t M, N, K;
};

// Sizes below, at and past each block edge, and degenerate ones.
const Shape kShapes[] = {{1, 1, 1},      {3, 5, 7},     {4, 4, 4},     {17, 33, 65}, {64, 256, 256},
                         {65, 257, 257}, {130, 3, 300}, {5, 300, 513}, {67, 129, 1}, {1, 517, 260}};

template <class Real>
std::vector<Real> random_matrix(int64_t rows, int64_t ld, uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    std::vector<Real> m(size_t(rows * ld));
    for (Real& x : m) x = Real(u(gen));
    return m;
}

// A stored as op(A) (M, K): (M, K) with ld >= K, or (K, M) with ld >= M when transposed.
struct Operand {
    int64_t rows, cols, ld;
};
Operand stored(bool trans, int64_t r, int64_t c, int64_t pad) {
    return trans ? Operand{c, r, r + pad} : Operand{r, c, c + pad};
}

template <class Real>
struct Case {
    bool ta, tb;
    Shape s;
    Real alpha, beta;
    int64_t lda, ldb, ldc;
    std::vector<Real> A, B, C0;  // C0: C before the call
};

template <class Real>
Case<Real> make_case(bool ta, bool tb, Shape s, Real alpha, Real beta, uint32_t seed) {
    const int64_t pad = 3;
    const Operand a = stored(ta, s.M, s.K, pad), b = stored(tb, s.K, s.N, pad);
    Case<Real> c{ta, tb, s, alpha, beta, a.ld, b.ld, s.N + pad, {}, {}, {}};
    c.A = random_matrix<Real>(a.rows, a.ld, seed);
    c.B = random_matrix<Real>(b.rows, b.ld, seed + 1);
    c.C0 = random_matrix<Real>(s.M, c.ldc, seed + 2);
    // beta == 0 must not read C: a NaN there would otherwise survive.
    if (beta == Real(0))
        for (Real& x : c.C0) x = std::numeric_limits<Real>::quiet_NaN();
    return c;
}

template <class Real>
double op_at(const std::vector<Real>& m, bool trans, int64_t ld, int64_t r, int64_t c) {
    return double(trans ? m[size_t(c * ld + r)] : m[size_t(r * ld + c)]);
}

// Max over C's elements of |got - exact| / (bound on fp32/fp64 rounding), and
// whether the padding columns of C were left as they were. NaN propagates.
template <class Real>
double scaled_error(const Case<Real>& c, const std::vector<Real>& got, bool* padding_kept) {
    const double eps = std::numeric_limits<Real>::epsilon();
    double worst = 0.0;
    *padding_kept = true;
    for (int64_t i = 0; i < c.s.M; i++) {
        for (int64_t j = 0; j < c.ldc; j++) {
            const size_t at = size_t(i * c.ldc + j);
            if (j >= c.s.N) {
                const bool same = std::isnan(double(c.C0[at])) ? std::isnan(double(got[at]))
                                                               : got[at] == c.C0[at];
                if (!same) *padding_kept = false;
                continue;
            }
            double exact = 0.0, magnitude = 0.0;
            for (int64_t p = 0; p < c.s.K; p++) {
                const double prod = op_at(c.A, c.ta, c.lda, i, p) * op_at(c.B, c.tb, c.ldb, p, j);
                exact += prod;
                magnitude += std::abs(prod);
            }
            exact *= double(c.alpha);
            magnitude *= std::abs(double(c.alpha));
            if (c.beta != Real(0)) {
                exact += double(c.beta) * double(c.C0[at]);
                magnitude += std::abs(double(c.beta) * double(c.C0[at]));
            }
            const double bound = 2.0 * double(c.s.K + 2) * eps * magnitude + 1e-30;
            const double err = std::abs(double(got[at]) - exact) / bound;
            if (!(err <= worst)) worst = err;  // keeps a NaN
        }
    }
    return worst;
}

template <class Real>
std::vector<Real> run_portable(const Case<Real>& c) {
    std::vector<Real> C = c.C0;
    zt::cpu::portable_gemm(c.ta, c.tb, c.s.M, c.s.N, c.s.K, c.alpha, c.A.data(), c.lda, c.B.data(),
                           c.ldb, c.beta, C.data(), c.ldc);
    return C;
}

std::string describe(bool ta, bool tb, Shape s, double alpha, double beta) {
    return std::string(ta ? "T" : "N") + (tb ? "T" : "N") + " M=" + std::to_string(s.M) +
           " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K) +
           " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta);
}

// The (alpha, beta) pairs of the ops: plain products, accumulation into
// gradients, attention's scale, and a general pair.
const double kScalars[][2] = {{1.0, 0.0}, {1.0, 1.0}, {0.125, 0.0}, {-0.5, 0.75}};

template <class Real>
void check_every_case() {
    uint32_t seed = 1;
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (const Shape& s : kShapes)
                for (const auto& ab : kScalars) {
                    const auto c = make_case<Real>(ta, tb, s, Real(ab[0]), Real(ab[1]), seed += 3);
                    bool kept = false;
                    const double err = scaled_error(c, run_portable(c), &kept);
                    EXPECT_TRUE(err <= 1.0) << describe(ta, tb, s, ab[0], ab[1]) << ": error "
                                            << err << " of the rounding bound";
                    EXPECT_TRUE(kept)
                        << describe(ta, tb, s, ab[0], ab[1]) << ": wrote past N into C's padding";
                }
}

TEST(PortableGemm, FloatMatchesExactProductAtEveryTransposeAndBlockEdge) {
    check_every_case<float>();
}

TEST(PortableGemm, DoubleMatchesExactProductAtEveryTransposeAndBlockEdge) {
    check_every_case<double>();
}

// The checker above can fail: a product computed with A's transpose flag
// flipped (a square A, so the call is valid) is refused.
TEST(PortableGemm, CheckerRefusesAWrongProduct) {
    const Shape s{65, 33, 65};
    auto c = make_case<float>(false, false, s, 1.0f, 0.0f, 7);
    std::vector<float> C = c.C0;
    zt::cpu::portable_gemm(true, false, s.M, s.N, s.K, 1.0f, c.A.data(), c.lda, c.B.data(), c.ldb,
                           0.0f, C.data(), c.ldc);
    bool kept = false;
    EXPECT_GT(scaled_error(c, C, &kept), 100.0);
}

TEST(PortableGemm, KZeroOnlyScalesC) {
    std::vector<float> C = {1.0f, 2.0f, 3.0f, 4.0f};
    zt::cpu::portable_gemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2);
    EXPECT_EQ(C, (std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f}));
}

// GEMV as matmul_forward_row and attention_cached_row call it.
TEST(PortableGemm, GemvMatchesExactProductBothWays) {
    uint32_t seed = 100;
    for (bool ta : {false, true})
        for (int64_t M : {1, 7, 64, 301})
            for (int64_t N : {1, 5, 128, 259})
                for (const auto& ab : kScalars) {
                    const int64_t lda = N + 2, ny = ta ? N : M, nx = ta ? M : N;
                    const auto A = random_matrix<float>(M, lda, seed++);
                    const auto x = random_matrix<float>(1, nx, seed++);
                    auto y0 = random_matrix<float>(1, ny, seed++);
                    if (ab[1] == 0.0)
                        for (float& v : y0) v = std::numeric_limits<float>::quiet_NaN();
                    std::vector<float> y = y0;
                    zt::cpu::portable_gemv(ta, M, N, float(ab[0]), A.data(), lda, x.data(),
                                           float(ab[1]), y.data());
                    double worst = 0.0;
                    for (int64_t r = 0; r < ny; r++) {
                        double exact = 0.0, mag = 0.0;
                        for (int64_t k = 0; k < nx; k++) {
                            const double a = ta ? A[size_t(k * lda + r)] : A[size_t(r * lda + k)];
                            exact += ab[0] * a * x[size_t(k)];
                            mag += std::abs(ab[0] * a * x[size_t(k)]);
                        }
                        if (ab[1] != 0.0) {
                            exact += ab[1] * y0[size_t(r)];
                            mag += std::abs(ab[1] * y0[size_t(r)]);
                        }
                        const double bound = 2.0 * double(nx + 2) * 0x1p-23 * mag + 1e-30;
                        const double err = std::abs(double(y[size_t(r)]) - exact) / bound;
                        if (!(err <= worst)) worst = err;
                    }
                    EXPECT_TRUE(worst <= 1.0)
                        << (ta ? "T" : "N") << " M=" << M << " N=" << N << " alpha=" << ab[0]
                        << " beta=" << ab[1] << ": error " << worst << " of the rounding bound";
                }
}

#if ZT_HAVE_OPENBLAS
CBLAS_TRANSPOSE cblas_t(bool t) {
    return t ? CblasTrans : CblasNoTrans;
}

// The portable GEMM and OpenBLAS on the same data: both within the rounding
// bound of the exact product, and so within twice it of each other.
template <class Real>
void check_against_cblas() {
    uint32_t seed = 500;
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (const Shape& s : kShapes)
                for (const auto& ab : kScalars) {
                    const auto c = make_case<Real>(ta, tb, s, Real(ab[0]), Real(ab[1]), seed += 3);
                    std::vector<Real> ref = c.C0;
                    if constexpr (std::is_same_v<Real, float>)
                        cblas_sgemm(CblasRowMajor, cblas_t(ta), cblas_t(tb), blasint(s.M),
                                    blasint(s.N), blasint(s.K), c.alpha, c.A.data(), blasint(c.lda),
                                    c.B.data(), blasint(c.ldb), c.beta, ref.data(), blasint(c.ldc));
                    else
                        cblas_dgemm(CblasRowMajor, cblas_t(ta), cblas_t(tb), blasint(s.M),
                                    blasint(s.N), blasint(s.K), c.alpha, c.A.data(), blasint(c.lda),
                                    c.B.data(), blasint(c.ldb), c.beta, ref.data(), blasint(c.ldc));
                    const std::vector<Real> got = run_portable(c);
                    bool kept = false;
                    const double err_ref = scaled_error(c, ref, &kept);
                    ASSERT_TRUE(err_ref <= 1.0)
                        << "cblas itself, " << describe(ta, tb, s, ab[0], ab[1]);
                    // Element by element against cblas, in the same units.
                    const double eps = std::numeric_limits<Real>::epsilon();
                    double worst = 0.0;
                    for (int64_t i = 0; i < s.M; i++)
                        for (int64_t j = 0; j < s.N; j++) {
                            const size_t at = size_t(i * c.ldc + j);
                            const double scale =
                                4.0 * double(s.K + 2) * eps *
                                (std::abs(double(ref[at])) +
                                 std::abs(double(c.alpha)) * double(s.K) +
                                 (c.beta != Real(0) ? std::abs(double(c.beta * c.C0[at])) : 0.0));
                            const double d = std::abs(double(got[at]) - double(ref[at])) / scale;
                            if (!(d <= worst)) worst = d;
                        }
                    EXPECT_TRUE(worst <= 1.0)
                        << describe(ta, tb, s, ab[0], ab[1]) << ": differs from cblas by " << worst
                        << " of the bound";
                }
}

TEST(PortableGemm, FloatAgreesWithCblas) {
    check_against_cblas<float>();
}
TEST(PortableGemm, DoubleAgreesWithCblas) {
    check_against_cblas<double>();
}

TEST(PortableGemm, GemvAgreesWithCblas) {
    uint32_t seed = 900;
    for (bool ta : {false, true})
        for (int64_t M : {1, 9, 300})
            for (int64_t N : {1, 17, 257}) {
                const int64_t lda = N + 1, ny = ta ? N : M, nx = ta ? M : N;
                const auto A = random_matrix<float>(M, lda, seed++);
                const auto x = random_matrix<float>(1, nx, seed++);
                const auto y0 = random_matrix<float>(1, ny, seed++);
                std::vector<float> ref = y0, got = y0;
                cblas_sgemv(CblasRowMajor, cblas_t(ta), blasint(M), blasint(N), 0.5f, A.data(),
                            blasint(lda), x.data(), 1, 0.25f, ref.data(), 1);
                zt::cpu::portable_gemv(ta, M, N, 0.5f, A.data(), lda, x.data(), 0.25f, got.data());
                for (int64_t r = 0; r < ny; r++) {
                    // |x|, |A| <= 1: the sum's magnitude is at most 0.5 nx + 0.25.
                    const double bound = 4.0 * double(nx + 2) * 0x1p-24 * (0.5 * double(nx) + 0.25);
                    const double d = std::abs(double(got[size_t(r)]) - double(ref[size_t(r)]));
                    EXPECT_TRUE(d <= bound)
                        << (ta ? "T" : "N") << " M=" << M << " N=" << N << " row " << r << ": "
                        << got[size_t(r)] << " vs " << ref[size_t(r)];
                }
            }
}
#endif

}  // namespace
