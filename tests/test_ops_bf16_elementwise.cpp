// Tests for the bf16-storage overloads of the row-wise and element-wise CPU
// ops: RMSNorm, LayerNorm, SwiGLU, GELU, RoPE, embedding and add_inplace.
//
// Each bf16 op is compared with the op's double overload run on the same
// inputs: the inputs are drawn in double, rounded to bf16, and the double path
// gets those bf16 values widened (exactly), so the only differences left are
// the bf16 path's fp32 arithmetic and its one rounding per stored element.
// Every gradient buffer starts non-zero, and the reference adds to the same
// starting values, so each check also checks accumulation (+=). Sizes are
// small and deliberately not powers of two.
//
// The bound used throughout, per element: a value the bf16 path computes in
// fp32 and rounds once to bf16 is off from the exact value w by at most
//   half_ulp(w) + kSlack max|w|
// half_ulp(w) is half a bf16 ulp in w's binade, 2^(ilogb(w) - 8) <= 2^-8 |w|
// (bf16 has 8 significand bits, so its spacing is 2^-7 relative to the
// binade's bottom): the most round-to-nearest can move a value. kSlack covers
// the fp32 arithmetic before that rounding (see its comment). An fp32 result
// (statistics, float gradients) gets the slack alone. A second rounding (a
// gradient rounded per row instead of once, an intermediate rounded to bf16)
// or truncation instead of rounding overshoots the bound by 2x to 60x (tried);
// a wrong term errs by far more.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "ops/embedding.h"
#include "ops/mlp.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace {

using zt::bf16;
using Vec = std::vector<double>;
using VecF = std::vector<float>;
using VecH = std::vector<bf16>;

constexpr uint64_t kSeed = 20240923;

// fp32 error before the bf16 rounding, relative to the largest output: fp32's
// unit roundoff is u = 6e-8, the longest reduction here has C = 203 terms of
// random sign (error ~ sqrt(203) u = 9e-7 of the terms' scale, which is the
// output's scale), the float exp_v adds < 2 ulp, and the norms' backward
// combines a few such terms: ~1e-6 at worst. Measured on the fp32 results
// (statistics, float gradients): at most 1.2e-7. 1e-5 leaves a 10x margin over
// the estimate and is still 390x below bf16's half ulp at the output's scale
// (3.9e-3), so the bf16 rounding, not the slack, sets the bound for all but the
// smallest elements.
constexpr double kSlack = 1e-5;

Vec randn(size_t n, uint64_t stream, double scale = 1.0, double shift = 0.0) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = shift + scale * double(zt::rng_normal(kSeed, stream, i));
    return v;
}

VecH to_bf16(const Vec& v) {
    VecH h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = zt::f32_to_bf16(float(v[i]));
    return h;
}
Vec widen(const VecH& h) {
    Vec v(h.size());
    for (size_t i = 0; i < h.size(); i++) v[i] = double(zt::bf16_to_f32(h[i]));
    return v;
}
Vec widen(const VecF& f) {
    return Vec(f.begin(), f.end());
}
VecF to_f32(const Vec& v) {
    return VecF(v.begin(), v.end());
}

// Draws n values and rounds them to bf16: `h` for the bf16 op, `d` (the same
// values, exactly) for the double reference.
struct Bf16Input {
    VecH h;
    Vec d;
    Bf16Input(size_t n, uint64_t stream, double scale = 1.0, double shift = 0.0)
        : h(to_bf16(randn(n, stream, scale, shift))), d(widen(h)) {}
};

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::isnan(x) ? x : std::max(m, std::fabs(x));
    return m;
}

double bf16_half_ulp(double x) {
    return x == 0 ? 0.0 : std::ldexp(1.0, std::ilogb(x) - 8);
}

// max_i |got_i - want_i| / (half_ulp(want_i) + kSlack max|want|), with the
// half ulp left out for fp32 results; <= 1 passes, and any NaN makes it NaN.
double worst_ratio(const Vec& got, const Vec& want, bool rounded_to_bf16) {
    if (got.size() != want.size()) return std::numeric_limits<double>::quiet_NaN();
    const double slack = kSlack * max_abs(want);
    double worst = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double tol = (rounded_to_bf16 ? bf16_half_ulp(want[i]) : 0.0) + slack;
        const double r = std::fabs(got[i] - want[i]) / tol;
        if (std::isnan(r)) return r;
        worst = std::max(worst, r);
    }
    return worst;
}

// A bf16 result against the exact one: half a bf16 ulp plus the fp32 slack.
void expect_bf16_close(const VecH& got, const Vec& want, const std::string& what) {
    // A reference of all zeros would make the bound meaningless; none here is.
    EXPECT_GT(max_abs(want), 1e-2) << what;
    const double r = worst_ratio(widen(got), want, true);
    if (!(r <= 1.0)) ADD_FAILURE() << what << ": error is " << r << "x the bf16 bound";
}

// An fp32 result (statistics, float gradients) against the exact one: the slack alone.
void expect_f32_close(const VecF& got, const Vec& want, const std::string& what) {
    EXPECT_GT(max_abs(want), 1e-2) << what;
    const double r = worst_ratio(widen(got), want, false);
    if (!(r <= 1.0)) ADD_FAILURE() << what << ": error is " << r << "x the fp32 bound";
}

bool same_bits(const VecH& a, const VecH& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

Vec plus(const Vec& a, const Vec& b) {
    Vec s(a.size());
    for (size_t i = 0; i < a.size(); i++) s[i] = a[i] + b[i];
    return s;
}

// ---------------------------------------------------------------- norms

struct NormCase {
    int64_t N = 37;
    int C = 203;
    float eps = 1e-5f;
    Bf16Input inp{size_t(N * C), 1, 1.0, 0.5};  // non-zero mean exercises LayerNorm's centring
    Bf16Input weight{size_t(C), 2, 0.2, 1.0};
    Bf16Input bias{size_t(C), 3, 0.2};
    Bf16Input dout{size_t(N * C), 4};
    // Starting values of the gradients: backward must add to them.
    Bf16Input dinp0{size_t(N * C), 5, 0.5};
    Vec dweight0 = randn(size_t(C), 6, 3.0), dbias0 = randn(size_t(C), 7, 3.0);
};

TEST(OpsBf16Elementwise, RmsNormForwardMatchesDouble) {
    NormCase c;
    Vec out(c.inp.d.size()), rstd(size_t(c.N));
    zt::cpu::rmsnorm_forward(out.data(), rstd.data(), c.inp.d.data(), c.weight.d.data(), c.N, c.C,
                             c.eps);
    VecH outh(out.size());
    VecF rstdf(rstd.size());
    zt::cpu::rmsnorm_forward(outh.data(), rstdf.data(), c.inp.h.data(), c.weight.h.data(), c.N, c.C,
                             c.eps);
    expect_bf16_close(outh, out, "rmsnorm out");
    expect_f32_close(rstdf, rstd, "rmsnorm rstd (fp32)");
}

TEST(OpsBf16Elementwise, RmsNormBackwardAccumulatesIntoFloatAndBf16Grads) {
    NormCase c;
    Vec out(c.inp.d.size()), rstd(size_t(c.N)), dinp(out.size()), dweight(size_t(c.C));
    zt::cpu::rmsnorm_forward(out.data(), rstd.data(), c.inp.d.data(), c.weight.d.data(), c.N, c.C,
                             c.eps);
    zt::cpu::rmsnorm_backward(dinp.data(), dweight.data(), c.dout.d.data(), c.inp.d.data(),
                              c.weight.d.data(), rstd.data(), c.N, c.C);
    VecH outh(out.size());
    VecF rstdf(rstd.size());
    zt::cpu::rmsnorm_forward(outh.data(), rstdf.data(), c.inp.h.data(), c.weight.h.data(), c.N, c.C,
                             c.eps);
    {
        VecH dinph = c.dinp0.h;
        VecF dweightf = to_f32(c.dweight0);
        zt::cpu::rmsnorm_backward(dinph.data(), dweightf.data(), c.dout.h.data(), c.inp.h.data(),
                                  c.weight.h.data(), rstdf.data(), c.N, c.C);
        expect_bf16_close(dinph, plus(c.dinp0.d, dinp), "dinp (G = float)");
        expect_f32_close(dweightf, plus(widen(to_f32(c.dweight0)), dweight), "dweight float");
    }
    {
        VecH dinph = c.dinp0.h, dweighth = to_bf16(c.dweight0);
        const Vec dweight0 = widen(dweighth);
        zt::cpu::rmsnorm_backward(dinph.data(), dweighth.data(), c.dout.h.data(), c.inp.h.data(),
                                  c.weight.h.data(), rstdf.data(), c.N, c.C);
        expect_bf16_close(dinph, plus(c.dinp0.d, dinp), "dinp (G = bf16)");
        expect_bf16_close(dweighth, plus(dweight0, dweight), "dweight bf16");
    }
}

TEST(OpsBf16Elementwise, LayerNormForwardMatchesDouble) {
    NormCase c;
    Vec out(c.inp.d.size()), mean(size_t(c.N)), rstd(size_t(c.N));
    zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), c.inp.d.data(),
                               c.weight.d.data(), c.bias.d.data(), c.N, c.C, c.eps);
    VecH outh(out.size());
    VecF meanf(mean.size()), rstdf(rstd.size());
    zt::cpu::layernorm_forward(outh.data(), meanf.data(), rstdf.data(), c.inp.h.data(),
                               c.weight.h.data(), c.bias.h.data(), c.N, c.C, c.eps);
    expect_bf16_close(outh, out, "layernorm out");
    expect_f32_close(meanf, mean, "layernorm mean (fp32)");
    expect_f32_close(rstdf, rstd, "layernorm rstd (fp32)");
}

TEST(OpsBf16Elementwise, LayerNormBackwardAccumulatesIntoFloatAndBf16Grads) {
    NormCase c;
    Vec out(c.inp.d.size()), mean(size_t(c.N)), rstd(size_t(c.N));
    Vec dinp(out.size()), dweight(size_t(c.C)), dbias(size_t(c.C));
    zt::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), c.inp.d.data(),
                               c.weight.d.data(), c.bias.d.data(), c.N, c.C, c.eps);
    zt::cpu::layernorm_backward(dinp.data(), dweight.data(), dbias.data(), c.dout.d.data(),
                                c.inp.d.data(), c.weight.d.data(), mean.data(), rstd.data(), c.N,
                                c.C);
    VecH outh(out.size());
    VecF meanf(mean.size()), rstdf(rstd.size());
    zt::cpu::layernorm_forward(outh.data(), meanf.data(), rstdf.data(), c.inp.h.data(),
                               c.weight.h.data(), c.bias.h.data(), c.N, c.C, c.eps);
    {
        VecH dinph = c.dinp0.h;
        VecF dweightf = to_f32(c.dweight0), dbiasf = to_f32(c.dbias0);
        zt::cpu::layernorm_backward(dinph.data(), dweightf.data(), dbiasf.data(), c.dout.h.data(),
                                    c.inp.h.data(), c.weight.h.data(), meanf.data(), rstdf.data(),
                                    c.N, c.C);
        expect_bf16_close(dinph, plus(c.dinp0.d, dinp), "dinp (G = float)");
        expect_f32_close(dweightf, plus(widen(to_f32(c.dweight0)), dweight), "dweight float");
        expect_f32_close(dbiasf, plus(widen(to_f32(c.dbias0)), dbias), "dbias float");
    }
    {
        VecH dinph = c.dinp0.h, dweighth = to_bf16(c.dweight0), dbiash = to_bf16(c.dbias0);
        const Vec dweight0 = widen(dweighth), dbias0 = widen(dbiash);
        zt::cpu::layernorm_backward(dinph.data(), dweighth.data(), dbiash.data(), c.dout.h.data(),
                                    c.inp.h.data(), c.weight.h.data(), meanf.data(), rstdf.data(),
                                    c.N, c.C);
        expect_bf16_close(dinph, plus(c.dinp0.d, dinp), "dinp (G = bf16)");
        expect_bf16_close(dweighth, plus(dweight0, dweight), "dweight bf16");
        expect_bf16_close(dbiash, plus(dbias0, dbias), "dbias bf16");
    }
}

// ---------------------------------------------------------------- activations

TEST(OpsBf16Elementwise, SwiGLUForwardAndBackwardMatchDouble) {
    const int64_t N = 37;
    const int H = 101;
    Bf16Input gate_up(size_t(N * 2 * H), 11, 2.0), dout(size_t(N * H), 12);
    Bf16Input dgate_up0(size_t(N * 2 * H), 13, 0.5);
    Vec out(size_t(N * H)), dgate_up(gate_up.d.size());
    zt::cpu::swiglu_forward(out.data(), gate_up.d.data(), N, H);
    zt::cpu::swiglu_backward(dgate_up.data(), dout.d.data(), gate_up.d.data(), N, H);
    VecH outh(out.size()), dgate_uph = dgate_up0.h;
    zt::cpu::swiglu_forward(outh.data(), gate_up.h.data(), N, H);
    zt::cpu::swiglu_backward(dgate_uph.data(), dout.h.data(), gate_up.h.data(), N, H);
    expect_bf16_close(outh, out, "swiglu out");
    expect_bf16_close(dgate_uph, plus(dgate_up0.d, dgate_up), "swiglu dgate_up");
}

TEST(OpsBf16Elementwise, GeluForwardAndBackwardMatchDouble) {
    const int64_t n = 1001;
    Bf16Input inp(size_t(n), 21, 2.5), dout(size_t(n), 22), dinp0(size_t(n), 23, 0.5);
    Vec out(inp.d.size()), dinp(inp.d.size());
    zt::cpu::gelu_forward(out.data(), inp.d.data(), n);
    zt::cpu::gelu_backward(dinp.data(), dout.d.data(), inp.d.data(), n);
    VecH outh(inp.d.size()), dinph = dinp0.h;
    zt::cpu::gelu_forward(outh.data(), inp.h.data(), n);
    zt::cpu::gelu_backward(dinph.data(), dout.h.data(), inp.h.data(), n);
    expect_bf16_close(outh, out, "gelu out");
    expect_bf16_close(dinph, plus(dinp0.d, dinp), "gelu dinp");
}

// add_inplace rounds y + x to fp32 (exact for all but far-apart exponents) and
// then once to bf16; the reference rounds the exact sum the same two ways, so
// the bits must agree.
TEST(OpsBf16Elementwise, AddInplaceRoundsTheFp32SumOnce) {
    const int64_t n = 1001;
    Bf16Input y(size_t(n), 31), x(size_t(n), 32);
    VecH yh = y.h;
    zt::cpu::add_inplace(yh.data(), x.h.data(), n);
    size_t wrong = 0;
    for (size_t i = 0; i < size_t(n); i++) {
        const bf16 want = zt::f32_to_bf16(float(y.d[i] + x.d[i]));
        wrong += yh[i].bits != want.bits;
    }
    EXPECT_EQ(wrong, 0u) << "elements not equal to round(y + x)";

    VecF yf = to_f32(y.d), xf = to_f32(x.d);
    zt::cpu::add_inplace(yf.data(), xf.data(), n);
    wrong = 0;
    for (size_t i = 0; i < size_t(n); i++) wrong += yf[i] != float(y.d[i] + x.d[i]);
    EXPECT_EQ(wrong, 0u) << "float elements not equal to y + x";
}

// ---------------------------------------------------------------- RoPE

// q and k heads rotated inside packed qkv rows; the v heads are left alone.
// head_dim 10 gives an odd half (5).
struct RopeCase {
    int B = 2, T = 7, NH = 5, NKV = 3, HD = 10;
    int heads = NH + NKV;
    int64_t stride = int64_t(NH + 2 * NKV) * HD;
    VecF cosf = VecF(size_t(T * HD / 2)), sinf = VecF(size_t(T * HD / 2));
    Vec cosd, sind;  // the float table widened: the ops see the same angles
    Bf16Input x{size_t(B * T * stride), 41};
    RopeCase() {
        zt::cpu::rope_table(cosf.data(), sinf.data(), T, HD, 10000.0f);
        cosd = widen(cosf);
        sind = widen(sinf);
    }
    bool rotated(size_t i) const { return int64_t(i) % stride < int64_t(heads) * HD; }
};

TEST(OpsBf16Elementwise, RopeForwardMatchesDoubleAndRunsInPlace) {
    RopeCase c;
    Vec out = c.x.d;
    zt::cpu::rope_forward(out.data(), c.x.d.data(), c.cosd.data(), c.sind.data(), c.B, c.T, c.heads,
                          c.HD, c.stride);
    VecH outh = c.x.h;
    zt::cpu::rope_forward(outh.data(), c.x.h.data(), c.cosf.data(), c.sinf.data(), c.B, c.T,
                          c.heads, c.HD, c.stride);
    expect_bf16_close(outh, out, "rope out");

    VecH inplace = c.x.h;
    zt::cpu::rope_forward(inplace.data(), inplace.data(), c.cosf.data(), c.sinf.data(), c.B, c.T,
                          c.heads, c.HD, c.stride);
    EXPECT_TRUE(same_bits(inplace, outh)) << "in place differs from out of place";
    size_t touched = 0;
    for (size_t i = 0; i < inplace.size(); i++) {
        touched += !c.rotated(i) && inplace[i].bits != c.x.h[i].bits;
    }
    EXPECT_EQ(touched, 0u) << "elements of the v heads changed";
}

TEST(OpsBf16Elementwise, RopeBackwardAccumulatesAndMatchesDouble) {
    RopeCase c;
    Bf16Input dout(c.x.d.size(), 42), dinp0(c.x.d.size(), 43, 0.5);
    Vec dinp = dinp0.d;
    zt::cpu::rope_backward(dinp.data(), dout.d.data(), c.cosd.data(), c.sind.data(), c.B, c.T,
                           c.heads, c.HD, c.stride);
    VecH dinph = dinp0.h;
    zt::cpu::rope_backward(dinph.data(), dout.h.data(), c.cosf.data(), c.sinf.data(), c.B, c.T,
                           c.heads, c.HD, c.stride);
    expect_bf16_close(dinph, dinp, "rope dinp");
    size_t touched = 0;
    for (size_t i = 0; i < dinph.size(); i++) {
        touched += !c.rotated(i) && dinph[i].bits != dinp0.h[i].bits;
    }
    EXPECT_EQ(touched, 0u) << "gradient of the v heads changed";
}

// ---------------------------------------------------------------- embedding

struct EmbeddingCase {
    int B = 3, T = 7, C = 203, V = 29, maxT = 11;
    // Token ids repeat within and across rows, so the scatter sums several rows.
    std::vector<int32_t> tokens;
    Bf16Input wte{size_t(V * C), 51}, wpe{size_t(maxT * C), 52}, dout{size_t(B * T * C), 53};
    Vec dwte0 = randn(size_t(V * C), 54, 0.5), dwpe0 = randn(size_t(maxT * C), 55, 0.5);
    EmbeddingCase() {
        for (int i = 0; i < B * T; i++) tokens.push_back(int32_t((i * 7) % 5 * 3 + i % 2));
    }
};

// The op rounds wte + wpe to fp32 and then once to bf16, as the reference does
// from the exact sum, so the bits must agree; without wpe it copies the wte row.
TEST(OpsBf16Elementwise, EmbeddingForwardRoundsTheSumOnce) {
    EmbeddingCase e;
    for (bool with_wpe : {true, false}) {
        VecH out(size_t(e.B * e.T * e.C));
        zt::cpu::embedding_forward(out.data(), e.tokens.data(), e.wte.h.data(),
                                   with_wpe ? e.wpe.h.data() : nullptr, e.B, e.T, e.C);
        size_t wrong = 0;
        for (int r = 0; r < e.B * e.T; r++) {
            for (int c = 0; c < e.C; c++) {
                const double want = e.wte.d[size_t(e.tokens[size_t(r)] * e.C + c)] +
                                    (with_wpe ? e.wpe.d[size_t((r % e.T) * e.C + c)] : 0.0);
                wrong += out[size_t(r * e.C + c)].bits != zt::f32_to_bf16(float(want)).bits;
            }
        }
        EXPECT_EQ(wrong, 0u) << (with_wpe ? "with wpe" : "without wpe");
    }
}

TEST(OpsBf16Elementwise, EmbeddingBackwardAccumulatesIntoFloatAndBf16Grads) {
    EmbeddingCase e;
    Vec dwte(e.wte.d.size()), dwpe(e.wpe.d.size());
    zt::cpu::embedding_backward(dwte.data(), dwpe.data(), e.dout.d.data(), e.tokens.data(), e.B,
                                e.T, e.C);
    {
        VecF dwtef = to_f32(e.dwte0), dwpef = to_f32(e.dwpe0);
        zt::cpu::embedding_backward(dwtef.data(), dwpef.data(), e.dout.h.data(), e.tokens.data(),
                                    e.B, e.T, e.C);
        expect_f32_close(dwtef, plus(widen(to_f32(e.dwte0)), dwte), "dwte float");
        expect_f32_close(dwpef, plus(widen(to_f32(e.dwpe0)), dwpe), "dwpe float");
    }
    {
        VecH dwteh = to_bf16(e.dwte0), dwpeh = to_bf16(e.dwpe0);
        const Vec dwte0 = widen(dwteh), dwpe0 = widen(dwpeh);
        zt::cpu::embedding_backward(dwteh.data(), dwpeh.data(), e.dout.h.data(), e.tokens.data(),
                                    e.B, e.T, e.C);
        expect_bf16_close(dwteh, plus(dwte0, dwte), "dwte bf16");
        expect_bf16_close(dwpeh, plus(dwpe0, dwpe), "dwpe bf16");
    }
}

// Each token's rows are summed in position order whatever the thread count,
// so one thread and three give the same bits.
TEST(OpsBf16Elementwise, EmbeddingBackwardDoesNotDependOnThreadCount) {
    EmbeddingCase e;
    const int saved = omp_get_max_threads();
    std::vector<VecH> dwte, dwpe;
    for (int threads : {1, 3}) {
        omp_set_num_threads(threads);
        dwte.push_back(to_bf16(e.dwte0));
        dwpe.push_back(to_bf16(e.dwpe0));
        zt::cpu::embedding_backward(dwte.back().data(), dwpe.back().data(), e.dout.h.data(),
                                    e.tokens.data(), e.B, e.T, e.C);
    }
    omp_set_num_threads(saved);
    EXPECT_TRUE(same_bits(dwte[0], dwte[1])) << "dwte";
    EXPECT_TRUE(same_bits(dwpe[0], dwpe[1])) << "dwpe";
}

}  // namespace
