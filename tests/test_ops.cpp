// Tests for the CPU op kernels in src/ops (namespace zt::cpu).
//
// Every backward is checked against central finite differences in double
// precision (the ops' double overloads) for every input and parameter, and is
// checked to accumulate (+=). Forward passes are checked against naive loops
// written here and against the properties the headers promise (RoPE keeps
// norms, attention is causal and GQA equals MHA with repeated kv heads, the
// classifier ignores target < 0 and does not depend on its chunk size), and
// the float path against the double path at fp32 tolerance. Sizes are small
// and deliberately not powers of two.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "ops/adamw.h"
#include "ops/attention.h"
#include "ops/cast.h"
#include "ops/classifier.h"
#include "ops/cpu/vec_math.h"
#include "ops/embedding.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace {

using zt::bf16;
using Vec = std::vector<double>;
using VecF = std::vector<float>;
using zt::cpu::AdamWHyper;

constexpr uint64_t kSeed = 20240611;

// Central differences: truncation error ~ eps^2 |f'''| ~ 1e-10 and rounding
// error ~ 1e-16 |loss| / eps ~ 1e-10 (|loss| ~ 10 here), i.e. ~1e-9 relative
// to gradients of order 0.1..1. kFdTol leaves a 1000x margin for that, while a
// missing term, wrong sign or wrong index in a backward errs by 1e-2..1.
constexpr double kFdEps = 1e-5;
constexpr double kFdTol = 1e-6;
// Calling backward twice adds the same numbers twice: only the final adds round.
constexpr double kAccumTol = 1e-12;
// Double forward vs naive double loops: same math, different summation order,
// so a few ulps of 1.1e-16 times the reduction length (<= ~200 terms here).
constexpr double kF64Tol = 1e-13;
// Float vs double: fp32 unit roundoff is u = 6e-8; with random signs the
// rounding of an n-term reduction grows like sqrt(n) u, ~7e-7 for the longest
// here (attention at T = 150), and the vectorised float exp adds < 2 ulp.
// Measured errors are <= 2e-7; a real defect is off by 1e-2 or more.
constexpr double kF32Tol = 2e-6;

Vec randn(size_t n, uint64_t stream, double scale = 1.0, double shift = 0.0) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = shift + scale * double(zt::rng_normal(kSeed, stream, i));
    return v;
}

VecF to_f32(const Vec& v) {
    return VecF(v.begin(), v.end());
}
Vec to_f64(const VecF& v) {
    return Vec(v.begin(), v.end());
}

double dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::isnan(x) ? x : std::max(m, std::fabs(x));
    return m;
}

// Norm-wise relative error max|got - want| / max|want| (absolute when want is
// all zero); any NaN makes it NaN so `!(err <= tol)` catches it.
double rel_err(const Vec& got, const Vec& want) {
    if (got.size() != want.size()) return std::numeric_limits<double>::quiet_NaN();
    double diff = 0, ref = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double d = std::fabs(got[i] - want[i]);
        if (std::isnan(d)) return d;
        diff = std::max(diff, d);
        ref = std::max(ref, std::fabs(want[i]));
    }
    return ref > 0 ? diff / ref : diff;
}

void expect_close(double err, double tol, const std::string& what) {
    if (!(err <= tol)) ADD_FAILURE() << what << ": error " << err << " exceeds " << tol;
}

// One input of a backward under test: the tensor finite differences perturb
// and the buffer backward accumulates its gradient into.
struct GradSlot {
    std::string name;
    Vec* x;
    Vec* grad;
};

// Runs backward once on zeroed gradients, checks a second call doubles them,
// then compares the first result with central differences of loss().
void check_backward(const std::vector<GradSlot>& slots, const std::function<double()>& loss,
                    const std::function<void()>& backward) {
    for (const GradSlot& s : slots) std::fill(s.grad->begin(), s.grad->end(), 0.0);
    backward();
    std::vector<Vec> once;
    for (const GradSlot& s : slots) once.push_back(*s.grad);
    backward();
    for (size_t k = 0; k < slots.size(); k++) {
        Vec twice(once[k]);
        for (double& g : twice) g *= 2;
        expect_close(rel_err(*slots[k].grad, twice), kAccumTol,
                     "d" + slots[k].name + " after two backward calls (must accumulate)");
    }
    for (size_t k = 0; k < slots.size(); k++) {
        Vec& x = *slots[k].x;
        Vec numeric(x.size());
        for (size_t i = 0; i < x.size(); i++) {
            const double saved = x[i];
            x[i] = saved + kFdEps;
            const double up = loss();
            x[i] = saved - kFdEps;
            const double down = loss();
            x[i] = saved;
            numeric[i] = (up - down) / (2 * kFdEps);
        }
        // A check against an all-zero gradient could not fail; none of these is zero.
        EXPECT_GT(max_abs(numeric), 1e-3) << slots[k].name;
        expect_close(rel_err(once[k], numeric), kFdTol,
                     "d" + slots[k].name + " vs finite differences");
    }
}

// ---------------------------------------------------------------- matmul

struct MatmulCase {
    int64_t N = 7;
    int C = 13, OC = 11;
    Vec inp = randn(size_t(N * C), 1);
    Vec weight = randn(size_t(OC * C), 2, 0.3);
    Vec bias = randn(size_t(OC), 3);
    Vec w = randn(size_t(N * OC), 4);  // loss = sum(out * w)
};

Vec naive_matmul(const MatmulCase& m, bool with_bias) {
    Vec out(size_t(m.N * m.OC));
    for (int64_t n = 0; n < m.N; n++) {
        for (int o = 0; o < m.OC; o++) {
            double s = with_bias ? m.bias[size_t(o)] : 0.0;
            for (int c = 0; c < m.C; c++)
                s += m.inp[size_t(n * m.C + c)] * m.weight[size_t(o * m.C + c)];
            out[size_t(n * m.OC + o)] = s;
        }
    }
    return out;
}

TEST(OpsMatmul, ForwardWithBiasMatchesNaiveLoops) {
    MatmulCase m;
    for (bool with_bias : {true, false}) {
        Vec out(size_t(m.N * m.OC), -1.0);
        zt::cpu::matmul_forward(out.data(), m.inp.data(), m.weight.data(),
                                with_bias ? m.bias.data() : nullptr, m.N, m.C, m.OC);
        expect_close(rel_err(out, naive_matmul(m, with_bias)), kF64Tol,
                     with_bias ? "matmul with bias" : "matmul without bias");
    }
}

TEST(OpsMatmul, BackwardMatchesFiniteDifferences) {
    MatmulCase m;
    Vec dinp(m.inp.size()), dweight(m.weight.size()), dbias(m.bias.size());
    Vec out(size_t(m.N * m.OC));
    auto loss = [&] {
        zt::cpu::matmul_forward(out.data(), m.inp.data(), m.weight.data(), m.bias.data(), m.N, m.C,
                                m.OC);
        return dot(out, m.w);
    };
    auto backward = [&] {
        zt::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), m.w.data(),
                                 m.inp.data(), m.weight.data(), m.N, m.C, m.OC);
    };
    check_backward(
        {{"inp", &m.inp, &dinp}, {"weight", &m.weight, &dweight}, {"bias", &m.bias, &dbias}}, loss,
        backward);
}

TEST(OpsMatmul, NullGradientPointersAreSkipped) {
    MatmulCase m;
    Vec dinp_all(m.inp.size()), dweight_all(m.weight.size()), dbias_all(m.bias.size());
    zt::cpu::matmul_backward(dinp_all.data(), dweight_all.data(), dbias_all.data(), m.w.data(),
                             m.inp.data(), m.weight.data(), m.N, m.C, m.OC);
    Vec dinp(m.inp.size()), dweight(m.weight.size()), dbias(m.bias.size());
    zt::cpu::matmul_backward(dinp.data(), nullptr, nullptr, m.w.data(), m.inp.data(),
                             m.weight.data(), m.N, m.C, m.OC);
    zt::cpu::matmul_backward(nullptr, dweight.data(), nullptr, m.w.data(), m.inp.data(),
                             m.weight.data(), m.N, m.C, m.OC);
    zt::cpu::matmul_backward(nullptr, nullptr, dbias.data(), m.w.data(), m.inp.data(),
                             m.weight.data(), m.N, m.C, m.OC);
    expect_close(rel_err(dinp, dinp_all), 0.0, "dinp alone");
    expect_close(rel_err(dweight, dweight_all), 0.0, "dweight alone");
    expect_close(rel_err(dbias, dbias_all), 0.0, "dbias alone");
}

TEST(OpsMatmul, FloatMatchesDouble) {
    MatmulCase m;
    const size_t nout = size_t(m.N * m.OC);
    Vec out(nout), dinp(m.inp.size()), dweight(m.weight.size()), dbias(m.bias.size());
    zt::cpu::matmul_forward(out.data(), m.inp.data(), m.weight.data(), m.bias.data(), m.N, m.C,
                            m.OC);
    zt::cpu::matmul_backward(dinp.data(), dweight.data(), dbias.data(), m.w.data(), m.inp.data(),
                             m.weight.data(), m.N, m.C, m.OC);
    VecF inp = to_f32(m.inp), weight = to_f32(m.weight), bias = to_f32(m.bias), w = to_f32(m.w);
    VecF outf(nout), dinpf(inp.size()), dweightf(weight.size()), dbiasf(bias.size());
    zt::cpu::matmul_forward(outf.data(), inp.data(), weight.data(), bias.data(), m.N, m.C, m.OC);
    zt::cpu::matmul_backward(dinpf.data(), dweightf.data(), dbiasf.data(), w.data(), inp.data(),
                             weight.data(), m.N, m.C, m.OC);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(dinpf), dinp), kF32Tol, "dinp");
    expect_close(rel_err(to_f64(dweightf), dweight), kF32Tol, "dweight");
    expect_close(rel_err(to_f64(dbiasf), dbias), kF32Tol, "dbias");
}

// ---------------------------------------------------------------- embedding

struct EmbeddingCase {
    int B = 2, T = 5, C = 13, V = 7, maxT = 6;  // maxT > T: rows t >= T get no gradient
    std::vector<int32_t> tokens{3, 1, 3, 0, 6, 1, 1, 5, 3, 2};  // repeats within and across rows
    Vec wte = randn(size_t(V * C), 11);
    Vec wpe = randn(size_t(maxT * C), 12);
    Vec w = randn(size_t(B * T * C), 13);
};

TEST(OpsEmbedding, ForwardMatchesNaiveLoops) {
    EmbeddingCase e;
    for (bool with_wpe : {true, false}) {
        Vec out(size_t(e.B * e.T * e.C)), want(out.size());
        zt::cpu::embedding_forward(out.data(), e.tokens.data(), e.wte.data(),
                                   with_wpe ? e.wpe.data() : nullptr, e.B, e.T, e.C);
        for (int r = 0; r < e.B * e.T; r++) {
            for (int c = 0; c < e.C; c++) {
                want[size_t(r * e.C + c)] = e.wte[size_t(e.tokens[size_t(r)] * e.C + c)] +
                                            (with_wpe ? e.wpe[size_t((r % e.T) * e.C + c)] : 0.0);
            }
        }
        expect_close(rel_err(out, want), 0.0, with_wpe ? "with wpe" : "without wpe");
    }
}

TEST(OpsEmbedding, BackwardMatchesFiniteDifferences) {
    EmbeddingCase e;
    Vec out(size_t(e.B * e.T * e.C)), dwte(e.wte.size()), dwpe(e.wpe.size());
    auto loss = [&] {
        zt::cpu::embedding_forward(out.data(), e.tokens.data(), e.wte.data(), e.wpe.data(), e.B,
                                   e.T, e.C);
        return dot(out, e.w);
    };
    auto backward = [&] {
        zt::cpu::embedding_backward(dwte.data(), dwpe.data(), e.w.data(), e.tokens.data(), e.B, e.T,
                                    e.C);
    };
    check_backward({{"wte", &e.wte, &dwte}, {"wpe", &e.wpe, &dwpe}}, loss, backward);
}

TEST(OpsEmbedding, FloatMatchesDouble) {
    EmbeddingCase e;
    Vec dwte(e.wte.size()), dwpe(e.wpe.size());
    zt::cpu::embedding_backward(dwte.data(), dwpe.data(), e.w.data(), e.tokens.data(), e.B, e.T,
                                e.C);
    VecF w = to_f32(e.w), dwtef(e.wte.size()), dwpef(e.wpe.size());
    zt::cpu::embedding_backward(dwtef.data(), dwpef.data(), w.data(), e.tokens.data(), e.B, e.T,
                                e.C);
    expect_close(rel_err(to_f64(dwtef), dwte), kF32Tol, "dwte");
    expect_close(rel_err(to_f64(dwpef), dwpe), kF32Tol, "dwpe");
}

// ---------------------------------------------------------------- norms

struct NormCase {
    int64_t N = 7;
    int C = 13;
    float eps = 1e-5f;
    Vec inp = randn(size_t(N * C), 21, 1.0, 0.5);  // non-zero mean exercises LayerNorm's centring
    Vec weight = randn(size_t(C), 22, 0.2, 1.0);
    Vec bias = randn(size_t(C), 23, 0.2);
    Vec w = randn(size_t(N * C), 24);
};

TEST(OpsRMSNorm, ForwardMatchesNaiveLoops) {
    NormCase c;
    Vec out(c.inp.size()), rstd(size_t(c.N)), want(out.size());
    zt::cpu::rmsnorm_forward(out.data(), rstd.data(), c.inp.data(), c.weight.data(), c.N, c.C,
                             c.eps);
    for (int64_t n = 0; n < c.N; n++) {
        double ss = 0;
        for (int k = 0; k < c.C; k++) ss += c.inp[size_t(n * c.C + k)] * c.inp[size_t(n * c.C + k)];
        const double r = 1.0 / std::sqrt(ss / c.C + double(c.eps));
        for (int k = 0; k < c.C; k++)
            want[size_t(n * c.C + k)] = c.inp[size_t(n * c.C + k)] * r * c.weight[size_t(k)];
    }
    expect_close(rel_err(out, want), kF64Tol, "rmsnorm out");
}

TEST(OpsRMSNorm, BackwardMatchesFiniteDifferences) {
    NormCase c;
    Vec out(c.inp.size()), rstd(size_t(c.N)), dinp(c.inp.size()), dweight(c.weight.size());
    auto loss = [&] {
        zt::cpu::rmsnorm_forward(out.data(), rstd.data(), c.inp.data(), c.weight.data(), c.N, c.C,
                                 c.eps);
        return dot(out, c.w);
    };
    auto backward = [&] {
        loss();  // refresh the saved rstd for the unperturbed input
        zt::cpu::rmsnorm_backward(dinp.data(), dweight.data(), c.w.data(), c.inp.data(),
                                  c.weight.data(), rstd.data(), c.N, c.C);
    };
    check_backward({{"inp", &c.inp, &dinp}, {"weight", &c.weight, &dweight}}, loss, backward);
}

TEST(OpsRMSNorm, FloatMatchesDouble) {
    NormCase c;
    Vec out(c.inp.size()), rstd(size_t(c.N)), dinp(c.inp.size()), dweight(c.weight.size());
    zt::cpu::rmsnorm_forward(out.data(), rstd.data(), c.inp.data(), c.weight.data(), c.N, c.C,
                             c.eps);
    zt::cpu::rmsnorm_backward(dinp.data(), dweight.data(), c.w.data(), c.inp.data(),
                              c.weight.data(), rstd.data(), c.N, c.C);
    VecF inp = to_f32(c.inp), weight = to_f32(c.weight), w = to_f32(c.w);
    VecF outf(inp.size()), rstdf(size_t(c.N)), dinpf(inp.size()), dweightf(weight.size());
    zt::cpu::rmsnorm_forward(outf.data(), rstdf.data(), inp.data(), weight.data(), c.N, c.C, c.eps);
    zt::cpu::rmsnorm_backward(dinpf.data(), dweightf.data(), w.data(), inp.data(), weight.data(),
                              rstdf.data(), c.N, c.C);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(rstdf), rstd), kF32Tol, "rstd");
    expect_close(rel_err(to_f64(dinpf), dinp), kF32Tol, "dinp");
    expect_close(rel_err(to_f64(dweightf), dweight), kF32Tol, "dweight");
}

TEST(OpsLayerNorm, ForwardMatchesNaiveLoops) {
    NormCase c;
    Vec out(c.inp.size()), mean(size_t(c.N)), rstd(size_t(c.N)), want(out.size());
    zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), c.inp.data(), c.weight.data(),
                               c.bias.data(), c.N, c.C, c.eps);
    for (int64_t n = 0; n < c.N; n++) {
        const double* x = c.inp.data() + n * c.C;
        double m = 0, v = 0;
        for (int k = 0; k < c.C; k++) m += x[k] / c.C;
        for (int k = 0; k < c.C; k++) v += (x[k] - m) * (x[k] - m) / c.C;  // biased, as PyTorch
        for (int k = 0; k < c.C; k++) {
            want[size_t(n * c.C + k)] =
                (x[k] - m) / std::sqrt(v + double(c.eps)) * c.weight[size_t(k)] + c.bias[size_t(k)];
        }
    }
    expect_close(rel_err(out, want), kF64Tol, "layernorm out");
}

TEST(OpsLayerNorm, BackwardMatchesFiniteDifferences) {
    NormCase c;
    Vec out(c.inp.size()), mean(size_t(c.N)), rstd(size_t(c.N));
    Vec dinp(c.inp.size()), dweight(c.weight.size()), dbias(c.bias.size());
    auto loss = [&] {
        zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), c.inp.data(),
                                   c.weight.data(), c.bias.data(), c.N, c.C, c.eps);
        return dot(out, c.w);
    };
    auto backward = [&] {
        loss();  // refresh the saved mean and rstd for the unperturbed input
        zt::cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), c.w.data(),
                                    c.inp.data(), c.weight.data(), mean.data(), rstd.data(), c.N,
                                    c.C);
    };
    check_backward(
        {{"inp", &c.inp, &dinp}, {"weight", &c.weight, &dweight}, {"bias", &c.bias, &dbias}}, loss,
        backward);
}

TEST(OpsLayerNorm, FloatMatchesDouble) {
    NormCase c;
    Vec out(c.inp.size()), mean(size_t(c.N)), rstd(size_t(c.N));
    Vec dinp(c.inp.size()), dweight(c.weight.size()), dbias(c.bias.size());
    zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), c.inp.data(), c.weight.data(),
                               c.bias.data(), c.N, c.C, c.eps);
    zt::cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), c.w.data(), c.inp.data(),
                                c.weight.data(), mean.data(), rstd.data(), c.N, c.C);
    VecF inp = to_f32(c.inp), weight = to_f32(c.weight), bias = to_f32(c.bias), w = to_f32(c.w);
    VecF outf(inp.size()), meanf(size_t(c.N)), rstdf(size_t(c.N));
    VecF dinpf(inp.size()), dweightf(weight.size()), dbiasf(bias.size());
    zt::cpu::layernorm_forward(outf.data(), meanf.data(), rstdf.data(), inp.data(), weight.data(),
                               bias.data(), c.N, c.C, c.eps);
    zt::cpu::layernorm_backward(dinpf.data(), dweightf.data(), dbiasf.data(), w.data(), inp.data(),
                                weight.data(), meanf.data(), rstdf.data(), c.N, c.C);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(meanf), mean), kF32Tol, "mean");
    expect_close(rel_err(to_f64(rstdf), rstd), kF32Tol, "rstd");
    expect_close(rel_err(to_f64(dinpf), dinp), kF32Tol, "dinp");
    expect_close(rel_err(to_f64(dweightf), dweight), kF32Tol, "dweight");
    expect_close(rel_err(to_f64(dbiasf), dbias), kF32Tol, "dbias");
}

// ---------------------------------------------------------------- RoPE

// q and k heads rotated inside packed qkv rows; the v heads are left alone.
struct RopeCase {
    int B = 2, T = 5, NH = 4, NKV = 2, HD = 6;
    int heads = NH + NKV;
    int64_t stride = int64_t(NH + 2 * NKV) * HD;
    float theta = 10000.0f;
    Vec x = randn(size_t(B * T * stride), 31);
    Vec w = randn(size_t(B * T * stride), 32);
    Vec cos = Vec(size_t(T * HD / 2)), sin = Vec(size_t(T * HD / 2));
    RopeCase() { zt::cpu::rope_table(cos.data(), sin.data(), T, HD, theta); }
};

TEST(OpsRope, TableMatchesFormula) {
    RopeCase r;
    const int half = r.HD / 2;
    for (int t = 0; t < r.T; t++) {
        for (int i = 0; i < half; i++) {
            const double angle = t * std::pow(double(r.theta), -2.0 * i / r.HD);
            EXPECT_NEAR(r.cos[size_t(t * half + i)], std::cos(angle), 1e-15);
            EXPECT_NEAR(r.sin[size_t(t * half + i)], std::sin(angle), 1e-15);
        }
    }
    // The float table rounds like Hugging Face's float32 code: the exponent
    // e = 2i/D, theta^e, its inverse and the angle t * inv_freq are each rounded
    // to float, so the angle is off by <= t inv_freq (e ln(theta) + 3) u,
    // u = 6e-8: largest at i = 1, t = 63 here, ~3e-6, plus the final rounding.
    const int T = 64, HD = 10;
    VecF cf(size_t(T * HD / 2)), sf(cf.size());
    Vec cd(cf.size()), sd(cf.size());
    zt::cpu::rope_table(cf.data(), sf.data(), T, HD, r.theta);
    zt::cpu::rope_table(cd.data(), sd.data(), T, HD, r.theta);
    for (size_t i = 0; i < cf.size(); i++) {
        EXPECT_NEAR(cf[i], cd[i], 5e-6) << i;
        EXPECT_NEAR(sf[i], sd[i], 5e-6) << i;
    }
}

TEST(OpsRope, ForwardMatchesRotateHalf) {
    RopeCase r;
    Vec out(r.x);
    zt::cpu::rope_forward(out.data(), r.x.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                          r.HD, r.stride);
    // Hugging Face: out = x * cat(cos, cos) + rotate_half(x) * cat(sin, sin),
    // rotate_half(x) = cat(-x2, x1).
    Vec want(r.x);
    const int half = r.HD / 2;
    for (int b = 0; b < r.B; b++) {
        for (int t = 0; t < r.T; t++) {
            for (int h = 0; h < r.heads; h++) {
                const size_t o = size_t((b * r.T + t) * r.stride + h * r.HD);
                for (int d = 0; d < r.HD; d++) {
                    const int i = d % half;
                    const double rot =
                        d < half ? -r.x[o + size_t(d + half)] : r.x[o + size_t(d - half)];
                    want[o + size_t(d)] = r.x[o + size_t(d)] * r.cos[size_t(t * half + i)] +
                                          rot * r.sin[size_t(t * half + i)];
                }
            }
        }
    }
    expect_close(rel_err(out, want), kF64Tol, "rope vs rotate_half");
    // In place gives the same result; position 0 is the identity.
    Vec inplace(r.x);
    zt::cpu::rope_forward(inplace.data(), inplace.data(), r.cos.data(), r.sin.data(), r.B, r.T,
                          r.heads, r.HD, r.stride);
    expect_close(rel_err(inplace, out), 0.0, "in place vs out of place");
    for (int64_t k = 0; k < r.stride; k++) EXPECT_EQ(inplace[size_t(k)], r.x[size_t(k)]);
}

TEST(OpsRope, PreservesNormOfEveryHeadAndPair) {
    RopeCase r;
    VecF xf = to_f32(r.x), cosf(r.cos.size()), sinf(r.sin.size());
    zt::cpu::rope_table(cosf.data(), sinf.data(), r.T, r.HD, r.theta);
    Vec out(r.x);
    VecF outf(xf);
    zt::cpu::rope_forward(out.data(), r.x.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                          r.HD, r.stride);
    zt::cpu::rope_forward(outf.data(), xf.data(), cosf.data(), sinf.data(), r.B, r.T, r.heads, r.HD,
                          r.stride);
    const int half = r.HD / 2;
    auto norm2 = [](double a, double b) { return a * a + b * b; };
    for (int64_t row = 0; row < int64_t(r.B) * r.T; row++) {
        for (int h = 0; h < r.heads; h++) {
            const size_t o = size_t(row * r.stride + h * r.HD);
            double head_in = 0, head_out = 0, head_outf = 0;
            for (int i = 0; i < half; i++) {
                const size_t a = o + size_t(i), b = a + size_t(half);
                const double in = norm2(r.x[a], r.x[b]);
                // Double: a few roundings of 1.1e-16. Float: products and sums
                // of fp32 values and a table with cos^2 + sin^2 = 1 +- 2 ulp, so
                // the squared norm is within ~8 ulp = 5e-7 relative.
                EXPECT_NEAR(norm2(out[a], out[b]), in, 1e-14 * (1 + in))
                    << row << " " << h << " " << i;
                EXPECT_NEAR(norm2(outf[a], outf[b]), in, 1e-6 * (1 + in))
                    << row << " " << h << " " << i;
                head_in += in;
                head_out += norm2(out[a], out[b]);
                head_outf += norm2(outf[a], outf[b]);
            }
            EXPECT_NEAR(head_out, head_in, 1e-14 * (1 + head_in));
            EXPECT_NEAR(head_outf, head_in, 1e-6 * (1 + head_in));
        }
    }
}

TEST(OpsRope, BackwardMatchesFiniteDifferences) {
    RopeCase r;
    Vec out(r.x.size()), dx(r.x.size());
    auto loss = [&] {
        zt::cpu::rope_forward(out.data(), r.x.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                              r.HD, r.stride);
        double s = 0;  // only the rotated part of each row is an output
        for (int64_t row = 0; row < int64_t(r.B) * r.T; row++) {
            for (int64_t k = 0; k < int64_t(r.heads) * r.HD; k++) {
                s += out[size_t(row * r.stride + k)] * r.w[size_t(row * r.stride + k)];
            }
        }
        return s;
    };
    auto backward = [&] {
        zt::cpu::rope_backward(dx.data(), r.w.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                               r.HD, r.stride);
    };
    check_backward({{"x", &r.x, &dx}}, loss, backward);
    // The v heads at the end of each row get no gradient.
    for (int64_t row = 0; row < int64_t(r.B) * r.T; row++) {
        for (int64_t k = int64_t(r.heads) * r.HD; k < r.stride; k++) {
            EXPECT_EQ(dx[size_t(row * r.stride + k)], 0.0);
        }
    }
}

TEST(OpsRope, FloatMatchesDouble) {
    RopeCase r;
    Vec out(r.x), dx(r.x.size());
    zt::cpu::rope_forward(out.data(), r.x.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                          r.HD, r.stride);
    zt::cpu::rope_backward(dx.data(), r.w.data(), r.cos.data(), r.sin.data(), r.B, r.T, r.heads,
                           r.HD, r.stride);
    VecF xf = to_f32(r.x), wf = to_f32(r.w), cosf(r.cos.size()), sinf(r.sin.size());
    zt::cpu::rope_table(cosf.data(), sinf.data(), r.T, r.HD, r.theta);
    VecF outf(xf), dxf(xf.size());
    zt::cpu::rope_forward(outf.data(), xf.data(), cosf.data(), sinf.data(), r.B, r.T, r.heads, r.HD,
                          r.stride);
    zt::cpu::rope_backward(dxf.data(), wf.data(), cosf.data(), sinf.data(), r.B, r.T, r.heads, r.HD,
                           r.stride);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(dxf), dx), kF32Tol, "dx");
}

// ---------------------------------------------------------------- attention

struct AttnShape {
    int B, T, NH, NKV, HD;
    int64_t row() const { return int64_t(NH + 2 * NKV) * HD; }
    size_t qkv_size() const { return size_t(B * T * row()); }
    size_t out_size() const { return size_t(B * T * NH * HD); }
    size_t att_size() const { return size_t(B * NH * T * T); }
};

// Textbook multi-head causal attention (NKV == NH), one (b, h, t) at a time.
void naive_mha(Vec& out, Vec& att, const Vec& qkv, const AttnShape& s) {
    const int64_t R = s.row();
    for (int b = 0; b < s.B; b++) {
        for (int h = 0; h < s.NH; h++) {
            for (int t = 0; t < s.T; t++) {
                const double* q = qkv.data() + (b * s.T + t) * R + h * s.HD;
                Vec score(size_t(s.T), 0.0);
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u <= t; u++) {
                    const double* k = qkv.data() + (b * s.T + u) * R + (s.NH + h) * s.HD;
                    double d = 0;
                    for (int i = 0; i < s.HD; i++) d += q[i] * k[i];
                    score[size_t(u)] = d / std::sqrt(double(s.HD));
                    mx = std::max(mx, score[size_t(u)]);
                }
                for (int u = 0; u <= t; u++) sum += std::exp(score[size_t(u)] - mx);
                double* o = out.data() + (b * s.T + t) * s.NH * s.HD + h * s.HD;
                std::fill(o, o + s.HD, 0.0);
                for (int u = 0; u < s.T; u++) {
                    const double p = u <= t ? std::exp(score[size_t(u)] - mx) / sum : 0.0;
                    att[size_t(((b * s.NH + h) * s.T + t) * s.T + u)] = p;
                    const double* v = qkv.data() + (b * s.T + u) * R + (2 * s.NH + h) * s.HD;
                    for (int i = 0; i < s.HD; i++) o[i] += p * v[i];
                }
            }
        }
    }
}

// The MHA equivalent of a GQA qkv: every query head gets its own copy of its kv head.
Vec repeat_kv(const Vec& qkv, const AttnShape& g) {
    const AttnShape m{g.B, g.T, g.NH, g.NH, g.HD};
    const int group = g.NH / g.NKV;
    Vec out(m.qkv_size());
    for (int64_t r = 0; r < int64_t(g.B) * g.T; r++) {
        const double* src = qkv.data() + r * g.row();
        double* dst = out.data() + r * m.row();
        for (int h = 0; h < g.NH; h++) {
            for (int i = 0; i < g.HD; i++) {
                dst[h * g.HD + i] = src[h * g.HD + i];
                dst[(g.NH + h) * g.HD + i] = src[(g.NH + h / group) * g.HD + i];
                dst[(2 * g.NH + h) * g.HD + i] = src[(g.NH + g.NKV + h / group) * g.HD + i];
            }
        }
    }
    return out;
}

TEST(OpsAttention, MatchesNaiveMultiHeadAttention) {
    // T = 150 spans three query blocks of the implementation, the last partial.
    for (AttnShape s : {AttnShape{2, 5, 3, 3, 6}, AttnShape{1, 150, 2, 2, 5}}) {
        Vec qkv = randn(s.qkv_size(), 41);
        Vec out(s.out_size()), att(s.att_size()), want_out(out.size()), want_att(att.size());
        zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HD);
        naive_mha(want_out, want_att, qkv, s);
        expect_close(rel_err(out, want_out), kF64Tol, "out at T=" + std::to_string(s.T));
        expect_close(rel_err(att, want_att), kF64Tol, "att at T=" + std::to_string(s.T));
    }
}

TEST(OpsAttention, ProbabilitiesAreCausalAndNormalised) {
    const AttnShape s{2, 70, 4, 2, 6};
    VecF qkv = to_f32(randn(s.qkv_size(), 42));
    VecF out(s.out_size()), att(s.att_size());
    zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HD);
    for (int bh = 0; bh < s.B * s.NH; bh++) {
        for (int t = 0; t < s.T; t++) {
            const float* p = att.data() + (int64_t(bh) * s.T + t) * s.T;
            double sum = 0;
            for (int u = 0; u <= t; u++) sum += p[u];
            EXPECT_NEAR(sum, 1.0, 1e-5);  // fp32 sum of <= 70 terms
            for (int u = t + 1; u < s.T; u++) ASSERT_EQ(p[u], 0.0f) << bh << " " << t << " " << u;
        }
    }
}

TEST(OpsAttention, GqaEqualsMhaWithRepeatedKvHeads) {
    const AttnShape g{2, 5, 4, 2, 6};
    const AttnShape m{g.B, g.T, g.NH, g.NH, g.HD};
    Vec qkv = randn(g.qkv_size(), 43), dout = randn(g.out_size(), 44);
    Vec qkv_m = repeat_kv(qkv, g);
    Vec out(g.out_size()), att(g.att_size()), out_m(out.size()), att_m(att.size());
    zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), g.B, g.T, g.NH, g.NKV, g.HD);
    zt::cpu::attention_forward(out_m.data(), att_m.data(), qkv_m.data(), m.B, m.T, m.NH, m.NKV,
                               m.HD);
    expect_close(rel_err(out, out_m), kF64Tol, "out");
    expect_close(rel_err(att, att_m), kF64Tol, "att");
    // Backward: dq equal; a shared kv head's gradient is the sum over its group.
    Vec dqkv(qkv.size()), dqkv_m(qkv_m.size());
    zt::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), g.B, g.T, g.NH,
                                g.NKV, g.HD);
    zt::cpu::attention_backward(dqkv_m.data(), dout.data(), qkv_m.data(), att_m.data(), m.B, m.T,
                                m.NH, m.NKV, m.HD);
    Vec want(qkv.size(), 0.0);
    const int group = g.NH / g.NKV;
    for (int64_t r = 0; r < int64_t(g.B) * g.T; r++) {
        const double* src = dqkv_m.data() + r * m.row();
        double* dst = want.data() + r * g.row();
        for (int h = 0; h < g.NH; h++) {
            for (int i = 0; i < g.HD; i++) {
                dst[h * g.HD + i] += src[h * g.HD + i];
                dst[(g.NH + h / group) * g.HD + i] += src[(g.NH + h) * g.HD + i];
                dst[(g.NH + g.NKV + h / group) * g.HD + i] += src[(2 * g.NH + h) * g.HD + i];
            }
        }
    }
    expect_close(rel_err(dqkv, want), kF64Tol, "dqkv");
}

TEST(OpsAttention, OutputAtTDoesNotSeeLaterPositions) {
    const AttnShape s{2, 70, 4, 2, 6};  // 70 > one query block
    const int t0 = 40;
    VecF qkv = to_f32(randn(s.qkv_size(), 45));
    VecF out(s.out_size()), att(s.att_size());
    zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HD);
    VecF changed(qkv);
    for (int b = 0; b < s.B; b++) {
        for (int t = t0 + 1; t < s.T; t++) {
            for (int64_t k = 0; k < s.row(); k++)
                changed[size_t((b * s.T + t) * s.row() + k)] *= -30.0f;
        }
    }
    VecF out2(out.size()), att2(att.size());
    zt::cpu::attention_forward(out2.data(), att2.data(), changed.data(), s.B, s.T, s.NH, s.NKV,
                               s.HD);
    int later_changed = 0;
    for (int b = 0; b < s.B; b++) {
        for (int t = 0; t < s.T; t++) {
            for (int k = 0; k < s.NH * s.HD; k++) {
                const size_t i = size_t((b * s.T + t) * s.NH * s.HD + k);
                // Masked positions enter only as exact zeros, so bits cannot change.
                if (t <= t0)
                    ASSERT_EQ(out2[i], out[i]) << b << " " << t << " " << k;
                else
                    later_changed += out2[i] != out[i];
            }
        }
    }
    EXPECT_GT(later_changed, 0);  // the perturbation is real
}

TEST(OpsAttention, BackwardMatchesFiniteDifferences) {
    // GQA, MHA, MQA, and a T spanning two query blocks of the implementation.
    for (AttnShape s : {AttnShape{2, 5, 4, 2, 6}, AttnShape{1, 5, 3, 3, 5},
                        AttnShape{2, 4, 3, 1, 4}, AttnShape{1, 67, 2, 1, 3}}) {
        SCOPED_TRACE("B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) +
                     " NH=" + std::to_string(s.NH) + " NKV=" + std::to_string(s.NKV) +
                     " HD=" + std::to_string(s.HD));
        Vec qkv = randn(s.qkv_size(), 46), w = randn(s.out_size(), 47);
        Vec out(s.out_size()), att(s.att_size()), dqkv(qkv.size());
        auto loss = [&] {
            zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV,
                                       s.HD);
            return dot(out, w);
        };
        auto backward = [&] {
            loss();  // refresh the saved probabilities for the unperturbed qkv
            zt::cpu::attention_backward(dqkv.data(), w.data(), qkv.data(), att.data(), s.B, s.T,
                                        s.NH, s.NKV, s.HD);
        };
        check_backward({{"qkv", &qkv, &dqkv}}, loss, backward);
    }
}

TEST(OpsAttention, FloatMatchesDouble) {
    const AttnShape s{2, 150, 4, 2, 6};
    Vec qkv = randn(s.qkv_size(), 48), dout = randn(s.out_size(), 49);
    Vec out(s.out_size()), att(s.att_size()), dqkv(qkv.size());
    zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HD);
    zt::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), s.B, s.T, s.NH,
                                s.NKV, s.HD);
    VecF qkvf = to_f32(qkv), doutf = to_f32(dout);
    VecF outf(out.size()), attf(att.size()), dqkvf(qkv.size());
    zt::cpu::attention_forward(outf.data(), attf.data(), qkvf.data(), s.B, s.T, s.NH, s.NKV, s.HD);
    zt::cpu::attention_backward(dqkvf.data(), doutf.data(), qkvf.data(), attf.data(), s.B, s.T,
                                s.NH, s.NKV, s.HD);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(attf), att), kF32Tol, "att");
    expect_close(rel_err(to_f64(dqkvf), dqkv), kF32Tol, "dqkv");
}

// ---------------------------------------------------------------- MLP activations

TEST(OpsSwiGLU, ForwardMatchesNaiveLoops) {
    const int64_t N = 7;
    const int H = 9;
    Vec gu = randn(size_t(N * 2 * H), 51, 2.0), out(size_t(N * H)), want(out.size());
    zt::cpu::swiglu_forward(out.data(), gu.data(), N, H);
    for (int64_t n = 0; n < N; n++) {
        for (int i = 0; i < H; i++) {
            const double g = gu[size_t(n * 2 * H + i)], u = gu[size_t(n * 2 * H + H + i)];
            want[size_t(n * H + i)] = g / (1 + std::exp(-g)) * u;
        }
    }
    expect_close(rel_err(out, want), kF64Tol, "swiglu");
}

TEST(OpsSwiGLU, BackwardMatchesFiniteDifferences) {
    const int64_t N = 7;
    const int H = 9;
    Vec gu = randn(size_t(N * 2 * H), 52, 2.0), w = randn(size_t(N * H), 53);
    Vec out(w.size()), dgu(gu.size());
    auto loss = [&] {
        zt::cpu::swiglu_forward(out.data(), gu.data(), N, H);
        return dot(out, w);
    };
    auto backward = [&] { zt::cpu::swiglu_backward(dgu.data(), w.data(), gu.data(), N, H); };
    check_backward({{"gate_up", &gu, &dgu}}, loss, backward);
}

TEST(OpsSwiGLU, FloatMatchesDouble) {
    const int64_t N = 7;
    const int H = 9;
    Vec gu = randn(size_t(N * 2 * H), 54, 4.0), w = randn(size_t(N * H), 55);
    Vec out(w.size()), dgu(gu.size());
    zt::cpu::swiglu_forward(out.data(), gu.data(), N, H);
    zt::cpu::swiglu_backward(dgu.data(), w.data(), gu.data(), N, H);
    VecF guf = to_f32(gu), wf = to_f32(w), outf(out.size()), dguf(gu.size());
    zt::cpu::swiglu_forward(outf.data(), guf.data(), N, H);
    zt::cpu::swiglu_backward(dguf.data(), wf.data(), guf.data(), N, H);
    expect_close(rel_err(to_f64(outf), out), kF32Tol, "out");
    expect_close(rel_err(to_f64(dguf), dgu), kF32Tol, "dgate_up");
}

TEST(OpsGelu, ForwardMatchesTanhFormula) {
    Vec x = randn(101, 56, 3.0);
    x.insert(x.end(), {0.0, -12.0, 12.0, -40.0, 40.0});  // saturated tails
    Vec out(x.size());
    zt::cpu::gelu_forward(out.data(), x.data(), int64_t(x.size()));
    for (size_t i = 0; i < x.size(); i++) {
        const double v = x[i];
        const double want =
            0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v)));
        EXPECT_NEAR(out[i], want, 1e-15 * (1 + std::fabs(v))) << v;
    }
}

TEST(OpsGelu, BackwardMatchesFiniteDifferences) {
    Vec x = randn(29, 57, 2.0), w = randn(29, 58), out(29), dx(29);
    auto loss = [&] {
        zt::cpu::gelu_forward(out.data(), x.data(), int64_t(x.size()));
        return dot(out, w);
    };
    auto backward = [&] {
        zt::cpu::gelu_backward(dx.data(), w.data(), x.data(), int64_t(x.size()));
    };
    check_backward({{"inp", &x, &dx}}, loss, backward);
}

TEST(OpsGelu, FloatMatchesDouble) {
    Vec x = randn(1001, 59, 4.0), w = randn(1001, 60);
    x.insert(x.end(), {-12.0, 12.0, -40.0, 40.0, -100.0, 100.0});
    w.insert(w.end(), {1.0, 1.0, 1.0, 1.0, 1.0, 1.0});
    const int64_t n = int64_t(x.size());
    Vec out(x.size()), dx(x.size());
    zt::cpu::gelu_forward(out.data(), x.data(), n);
    zt::cpu::gelu_backward(dx.data(), w.data(), x.data(), n);
    VecF xf = to_f32(x), wf = to_f32(w), outf(x.size()), dxf(x.size());
    zt::cpu::gelu_forward(outf.data(), xf.data(), n);
    zt::cpu::gelu_backward(dxf.data(), wf.data(), xf.data(), n);
    // Element-wise, no reductions: a few fp32 roundings relative to each element's scale.
    for (size_t i = 0; i < x.size(); i++) {
        EXPECT_NEAR(outf[i], out[i], 1e-6 * (1 + std::fabs(out[i]))) << x[i];
        EXPECT_NEAR(dxf[i], dx[i], 1e-6 * (1 + std::fabs(dx[i]))) << x[i];
    }
}

// exp_v<float> is what every float softmax and activation relies on.
TEST(OpsVecMath, FloatExpIsWithinTwoUlpAndHandlesTheEnds) {
    double worst = 0;
    for (float x = -87.0f; x < 88.5f; x += 0.00173f) {
        const double want = std::exp(double(x));
        worst = std::max(worst, std::fabs(double(zt::cpu::exp_v(x)) - want) / want);
    }
    expect_close(worst, 2.4e-7, "exp_v relative error (2 ulp = 2^-22)");
    EXPECT_EQ(zt::cpu::exp_v(0.0f), 1.0f);
    EXPECT_EQ(zt::cpu::exp_v(-INFINITY), 0.0f);
    EXPECT_EQ(zt::cpu::exp_v(-1000.0f), 0.0f);
    EXPECT_TRUE(std::isnan(zt::cpu::exp_v(std::numeric_limits<float>::quiet_NaN())));
    EXPECT_TRUE(std::isfinite(zt::cpu::exp_v(1000.0f)));
}

// ---------------------------------------------------------------- classifier

struct ClassifierCase {
    int64_t N = 7;
    int C = 13, V = 17;
    float loss_scale = 0.37f;
    Vec x = randn(size_t(N * C), 61);
    Vec weight = randn(size_t(V * C), 62, 0.5);
    std::vector<int32_t> targets{3, -1, 16, 0, 5, -1, 9};

    // Runs the op in double with the given chunk size; null outputs are not requested.
    void run(Vec& losses, Vec* dx, Vec* dweight, int chunk_rows) const {
        Vec scratch(size_t(chunk_rows * V));
        losses.assign(size_t(N), -1.0);
        zt::cpu::classifier_forward_backward(
            losses.data(), dx ? dx->data() : nullptr, dweight ? dweight->data() : nullptr, x.data(),
            weight.data(), targets.data(), N, C, V, loss_scale, scratch.data(), chunk_rows);
    }
};

TEST(OpsClassifier, LossesEqualLogsumexpMinusTargetLogit) {
    ClassifierCase k;
    Vec losses;
    k.run(losses, nullptr, nullptr, 3);
    VecF xf = to_f32(k.x), wf = to_f32(k.weight), lossesf(size_t(k.N)), scratch(size_t(3 * k.V));
    zt::cpu::classifier_forward_backward(lossesf.data(), nullptr, nullptr, xf.data(), wf.data(),
                                         k.targets.data(), k.N, k.C, k.V, k.loss_scale,
                                         scratch.data(), 3);
    for (int64_t n = 0; n < k.N; n++) {
        const int32_t tgt = k.targets[size_t(n)];
        double want = 0;
        if (tgt >= 0) {
            Vec logit(size_t(k.V));
            for (int v = 0; v < k.V; v++) {
                for (int c = 0; c < k.C; c++)
                    logit[size_t(v)] += k.x[size_t(n * k.C + c)] * k.weight[size_t(v * k.C + c)];
            }
            double sum = 0;
            for (double l : logit) sum += std::exp(l);  // logits are O(1): no overflow
            want = std::log(sum) - logit[size_t(tgt)];
        }
        EXPECT_NEAR(losses[size_t(n)], want, kF64Tol * (1 + std::fabs(want))) << n;
        EXPECT_NEAR(lossesf[size_t(n)], want, kF32Tol * (1 + std::fabs(want))) << n;
    }
}

TEST(OpsClassifier, BackwardMatchesFiniteDifferences) {
    ClassifierCase k;
    Vec losses, dx(k.x.size()), dweight(k.weight.size());
    auto loss = [&] {
        k.run(losses, nullptr, nullptr, 3);
        double s = 0;
        for (double l : losses) s += double(k.loss_scale) * l;
        return s;
    };
    auto backward = [&] { k.run(losses, &dx, &dweight, 3); };
    check_backward({{"x", &k.x, &dx}, {"weight", &k.weight, &dweight}}, loss, backward);
}

TEST(OpsClassifier, IgnoredTargetsGiveZeroLossAndNoGradient) {
    ClassifierCase k;
    Vec losses, dx(k.x.size()), dweight(k.weight.size());
    k.run(losses, &dx, &dweight, 3);
    // The same batch without the ignored rows.
    ClassifierCase kept;
    kept.N = 0;
    kept.x.clear();
    kept.targets.clear();
    for (int64_t n = 0; n < k.N; n++) {
        if (k.targets[size_t(n)] < 0) {
            EXPECT_EQ(losses[size_t(n)], 0.0);
            for (int c = 0; c < k.C; c++) EXPECT_EQ(dx[size_t(n * k.C + c)], 0.0);
            continue;
        }
        kept.N++;
        kept.targets.push_back(k.targets[size_t(n)]);
        kept.x.insert(kept.x.end(), k.x.begin() + n * k.C, k.x.begin() + (n + 1) * k.C);
    }
    ASSERT_EQ(kept.N, 5);
    Vec losses_kept, dx_kept(kept.x.size()), dweight_kept(k.weight.size());
    kept.run(losses_kept, &dx_kept, &dweight_kept, 3);
    expect_close(rel_err(dweight, dweight_kept), kF64Tol, "dweight without the ignored rows");
}

TEST(OpsClassifier, ResultsDoNotDependOnChunkRows) {
    ClassifierCase k;
    Vec losses_ref, dx_ref(k.x.size()), dweight_ref(k.weight.size());
    k.run(losses_ref, &dx_ref, &dweight_ref, int(k.N));
    for (int chunk : {1, 2, 3, 6, 100}) {
        Vec losses, dx(k.x.size()), dweight(k.weight.size());
        k.run(losses, &dx, &dweight, chunk);
        // Per-row values only change with BLAS blocking; dweight sums rows in a
        // different grouping: both a few ulps.
        expect_close(rel_err(losses, losses_ref), kF64Tol,
                     "losses, chunk " + std::to_string(chunk));
        expect_close(rel_err(dx, dx_ref), kF64Tol, "dx, chunk " + std::to_string(chunk));
        expect_close(rel_err(dweight, dweight_ref), kF64Tol,
                     "dweight, chunk " + std::to_string(chunk));
    }
    // Forward only, and dx only, leave the other outputs as they were.
    Vec losses, dx(k.x.size());
    k.run(losses, nullptr, nullptr, 2);
    expect_close(rel_err(losses, losses_ref), kF64Tol, "losses without backward");
    k.run(losses, &dx, nullptr, 2);
    expect_close(rel_err(dx, dx_ref), kF64Tol, "dx without dweight");
}

TEST(OpsClassifier, FloatMatchesDouble) {
    ClassifierCase k;
    Vec losses, dx(k.x.size()), dweight(k.weight.size());
    k.run(losses, &dx, &dweight, 4);
    VecF xf = to_f32(k.x), wf = to_f32(k.weight), scratch(size_t(4 * k.V));
    VecF lossesf(size_t(k.N)), dxf(k.x.size()), dweightf(k.weight.size());
    zt::cpu::classifier_forward_backward(lossesf.data(), dxf.data(), dweightf.data(), xf.data(),
                                         wf.data(), k.targets.data(), k.N, k.C, k.V, k.loss_scale,
                                         scratch.data(), 4);
    expect_close(rel_err(to_f64(lossesf), losses), kF32Tol, "losses");
    expect_close(rel_err(to_f64(dxf), dx), kF32Tol, "dx");
    expect_close(rel_err(to_f64(dweightf), dweight), kF32Tol, "dweight");
}

// ---------------------------------------------------------------- AdamW

// The update of adamw.h, written out once in double from the same float hyperparameters.
void adamw_reference(double& p, double g, double& m, double& v, const AdamWHyper& h, bool decay) {
    const double lr = h.lr, b1 = h.beta1, b2 = h.beta2, t = double(h.step);
    if (decay) p -= lr * double(h.weight_decay) * p;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    p -= lr / (1 - std::pow(b1, t)) * m /
         (std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + double(h.eps));
}

TEST(OpsAdamW, FirstStepByHand) {
    // Step 1 from m = v = 0: the bias-corrected moments are g and g^2, so the
    // update is lr * g / (|g| + eps), and decay first scales p by 1 - lr wd.
    AdamWHyper h;
    h.lr = 0.125f;  // exact in binary, so the expected values are exact to ~1e-16
    h.weight_decay = 0.5f;
    h.step = 1;
    for (bool decay : {false, true}) {
        double p = 1.0, m = 0.0, v = 0.0;
        const double g = -0.5;
        zt::cpu::adamw_update(&p, &g, &m, &v, 1, h, decay);
        const double want = (decay ? 1.0 - 0.125 * 0.5 : 1.0) + 0.125 * 0.5 / (0.5 + double(h.eps));
        EXPECT_NEAR(p, want, 1e-15) << "decay " << decay;
        EXPECT_NEAR(m, (1 - double(h.beta1)) * g, 1e-16);
        EXPECT_NEAR(v, (1 - double(h.beta2)) * g * g, 1e-16);
    }
}

TEST(OpsAdamW, LaterStepMatchesFormula) {
    AdamWHyper h;
    h.lr = 1e-3f;
    h.weight_decay = 0.1f;
    h.step = 7;  // bias corrections well away from 1
    const int64_t n = 37;
    Vec p0 = randn(size_t(n), 71), g = randn(size_t(n), 72), m0 = randn(size_t(n), 73, 0.1);
    Vec v0 = randn(size_t(n), 74, 0.01);
    for (double& x : v0) x = x * x;  // second moments are non-negative
    for (bool decay : {false, true}) {
        Vec p(p0), m(m0), v(v0), want_p(p0), want_m(m0), want_v(v0);
        zt::cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, h, decay);
        for (int64_t i = 0; i < n; i++)
            adamw_reference(want_p[size_t(i)], g[size_t(i)], want_m[size_t(i)], want_v[size_t(i)],
                            h, decay);
        // Double: the same formula associated differently, a few ulps.
        expect_close(rel_err(p, want_p), 1e-14, "double param");
        expect_close(rel_err(m, want_m), 1e-14, "double m");
        expect_close(rel_err(v, want_v), 1e-14, "double v");
        // Float: a handful of fp32 roundings per element; params are O(1) and
        // the update O(lr), so 1e-6 relative is ~10 ulps.
        VecF pf = to_f32(p0), gf = to_f32(g), mf = to_f32(m0), vf = to_f32(v0);
        zt::cpu::adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), n, h, decay);
        expect_close(rel_err(to_f64(pf), want_p), 1e-6, "float param");
        expect_close(rel_err(to_f64(mf), want_m), 1e-6, "float m");
        expect_close(rel_err(to_f64(vf), want_v), 1e-6, "float v");
    }
}

TEST(OpsAdamW, SumSquaresAndScale) {
    const int64_t n = 100003;
    VecF x = to_f32(randn(size_t(n), 75));
    double want = 0;
    for (float f : x) want += double(f) * double(f);
    const double got = zt::cpu::sum_squares(x.data(), n);
    expect_close(std::fabs(got - want) / want, 1e-12, "sum_squares");  // double sums of 1e5 terms
    EXPECT_EQ(zt::cpu::sum_squares(x.data(), n), got);                 // deterministic
    EXPECT_EQ(zt::cpu::sum_squares(x.data(), 0), 0.0);
    VecF y(x);
    zt::cpu::scale_inplace(y.data(), n, 0.75f);
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(y[size_t(i)], x[size_t(i)] * 0.75f);
}

// ---------------------------------------------------------------- casts

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

TEST(OpsCast, F32ToBf16RoundsToNearestEven) {
    struct Case {
        uint32_t f32;
        uint16_t bf16;
        const char* what;
    };
    const Case cases[] = {
        {0x3F800000u, 0x3F80u, "1.0"},
        {0xBF800000u, 0xBF80u, "-1.0"},
        {0x00000000u, 0x0000u, "+0"},
        {0x80000000u, 0x8000u, "-0"},
        {0x3F808000u, 0x3F80u, "halfway 1.0|1.0078: tie goes to even 1.0"},
        {0x3F818000u, 0x3F82u, "halfway 1.0078|1.0156: tie goes to even 1.0156"},
        {0x3F808001u, 0x3F81u, "just above halfway rounds up"},
        {0x3F807FFFu, 0x3F80u, "just below halfway rounds down"},
        {0xBF818000u, 0xBF82u, "negative tie goes to even"},
        {0x7F800000u, 0x7F80u, "+Inf"},
        {0xFF800000u, 0xFF80u, "-Inf"},
        {0x7F7FFFFFu, 0x7F80u, "FLT_MAX rounds to +Inf"},
        {0x00010000u, 0x0001u, "smallest bf16 denormal"},
    };
    std::vector<float> in;
    for (const Case& c : cases) in.push_back(from_bits(c.f32));
    std::vector<bf16> out(in.size());
    zt::cpu::cast_f32_to_bf16(out.data(), in.data(), int64_t(in.size()));
    for (size_t i = 0; i < in.size(); i++) {
        EXPECT_EQ(out[i].bits, cases[i].bf16) << cases[i].what;
    }
    // NaNs stay NaN, including one whose payload sits only in the low bits
    // (truncation plus rounding would turn it into Inf).
    const float nans[] = {from_bits(0x7FC00000u), from_bits(0x7F800001u), from_bits(0xFF80FFFFu)};
    std::vector<bf16> nan_out(3);
    zt::cpu::cast_f32_to_bf16(nan_out.data(), nans, 3);
    for (bf16 h : nan_out) {
        EXPECT_EQ(h.bits & 0x7F80u, 0x7F80u) << std::hex << h.bits;
        EXPECT_NE(h.bits & 0x007Fu, 0u) << std::hex << h.bits;
    }
}

TEST(OpsCast, Bf16RoundTripsExactly) {
    // Every non-NaN bf16 widens to f32 exactly and narrows back to itself.
    std::vector<bf16> all;
    for (uint32_t b = 0; b < 0x10000u; b++) {
        const bool nan = (b & 0x7F80u) == 0x7F80u && (b & 0x7Fu);
        if (!nan) all.push_back(bf16{uint16_t(b)});
    }
    const int64_t n = int64_t(all.size());
    std::vector<float> wide(all.size());
    std::vector<bf16> back(all.size());
    zt::cpu::cast_bf16_to_f32(wide.data(), all.data(), n);
    zt::cpu::cast_f32_to_bf16(back.data(), wide.data(), n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        std::memcpy(&u, &wide[size_t(i)], 4);
        ASSERT_EQ(u, uint32_t(all[size_t(i)].bits) << 16) << i;
        ASSERT_EQ(back[size_t(i)].bits, all[size_t(i)].bits) << i;
    }
    const bf16 inf_nan[] = {bf16{0x7F80u}, bf16{0xFF80u}, bf16{0x7FC1u}};
    float wide3[3];
    zt::cpu::cast_bf16_to_f32(wide3, inf_nan, 3);
    EXPECT_EQ(wide3[0], INFINITY);
    EXPECT_EQ(wide3[1], -INFINITY);
    EXPECT_TRUE(std::isnan(wide3[2]));
}

}  // namespace
