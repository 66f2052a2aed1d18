// Tests for the bf16-storage overloads of causal GQA attention and the fused
// classifier + cross-entropy (ops/attention.h, ops/classifier.h).
//
// Each bf16 op runs on inputs already rounded to bf16, and the double op runs
// on exactly the same values, so every difference comes from the bf16 path's
// own roundings (and its fp32 arithmetic). Tolerances count those roundings:
// bf16 keeps an 8-bit significand, so one round-to-nearest is off by at most
// u = 2^-8 relative to the value rounded, and a chain of k roundings by at
// most about k u; fp32 arithmetic (u = 6e-8 per operation, a few hundred
// terms at most here) is two orders of magnitude below one bf16 rounding.
// Errors are norm-wise, max |got - want| / max |want|, and any NaN fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "ops/attention.h"
#include "ops/classifier.h"

namespace {

using zt::bf16;
using Vec = std::vector<double>;
using VecB = std::vector<bf16>;

constexpr uint64_t kSeed = 20240612;
constexpr double kU = 1.0 / 256;  // bf16 unit roundoff, 2^-8
// fp32 arithmetic under the bf16 path: sums of <= 150 terms of fp32 products,
// sqrt(150) * 6e-8 ~ 1e-6 relative, plus the vectorised exp's 2 ulp; 2e-5
// leaves a 20x margin and is still 200x below one bf16 rounding.
constexpr double kF32Slack = 2e-5;

Vec randn(size_t n, uint64_t stream, double scale = 1.0) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = scale * double(zt::rng_normal(kSeed, stream, i));
    return v;
}

VecB to_bf16(const Vec& v) {
    VecB out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = zt::f32_to_bf16(float(v[i]));
    return out;
}

Vec widen(const VecB& v) {
    Vec out(v.size());
    for (size_t i = 0; i < v.size(); i++) out[i] = double(zt::bf16_to_f32(v[i]));
    return out;
}

// randn values rounded to bf16 (as the double reference sees them).
Vec randn_bf16(size_t n, uint64_t stream, double scale = 1.0) {
    return widen(to_bf16(randn(n, stream, scale)));
}

// max |got - want| / max |want| (absolute when want is all zero); NaN on any NaN.
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

Vec add(const Vec& a, const Vec& b) {
    Vec out(a);
    for (size_t i = 0; i < out.size(); i++) out[i] += b[i];
    return out;
}

// ---------------------------------------------------------------- attention

struct AttnShape {
    int B, T, NH, NKV, HD;
    int64_t row() const { return int64_t(NH + 2 * NKV) * HD; }
    size_t qkv_size() const { return size_t(B * T * row()); }
    size_t out_size() const { return size_t(B * T * NH * HD); }
    size_t att_size() const { return size_t(B * NH * T * T); }
    std::string name() const {
        return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " NH=" + std::to_string(NH) +
               " NKV=" + std::to_string(NKV) + " HD=" + std::to_string(HD);
    }
};

// GQA (NH = 6, NKV = 2: groups of 3) and MHA; T = 37 is odd and within one
// query block of the implementation (64 rows), T = 70 spans two, the second
// partial, so a block's GEMMs that stop at its last key column are exercised.
const AttnShape kAttnShapes[] = {
    {2, 37, 6, 2, 16},
    {1, 70, 6, 2, 8},
    {2, 70, 3, 3, 12},
};

// The bf16 op and the double op on the same bf16 values of qkv and dout.
struct AttnRun {
    AttnShape s;
    Vec qkv, dout;              // bf16 values, widened
    Vec out, att, dqkv;         // double reference, dqkv from zero
    VecB out_b, att_b, dqkv_b;  // bf16 op, dqkv_b from zero

    AttnRun(const AttnShape& shape, uint64_t stream) : s(shape) {
        qkv = randn_bf16(s.qkv_size(), stream);
        dout = randn_bf16(s.out_size(), stream + 1);
        out.assign(s.out_size(), 0.0);
        att.assign(s.att_size(), 0.0);
        dqkv.assign(s.qkv_size(), 0.0);
        zt::cpu::attention_forward(out.data(), att.data(), qkv.data(), s.B, s.T, s.NH, s.NKV, s.HD);
        zt::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), att.data(), s.B, s.T,
                                    s.NH, s.NKV, s.HD);
        out_b.assign(s.out_size(), bf16{0x7fc0});  // NaN: every element must be written
        att_b.assign(s.att_size(), bf16{0x7fc0});
        dqkv_b.assign(s.qkv_size(), bf16{0});
        const VecB qkv_b = to_bf16(qkv), dout_b = to_bf16(dout);
        zt::cpu::attention_forward(out_b.data(), att_b.data(), qkv_b.data(), s.B, s.T, s.NH, s.NKV,
                                   s.HD);
        zt::cpu::attention_backward(dqkv_b.data(), dout_b.data(), qkv_b.data(), att_b.data(), s.B,
                                    s.T, s.NH, s.NKV, s.HD);
    }
};

TEST(OpsBf16Attention, ProbabilitiesAreTheRoundedSoftmax) {
    for (const AttnShape& s : kAttnShapes) {
        SCOPED_TRACE(s.name());
        AttnRun r(s, 101);
        const Vec att = widen(r.att_b);
        // Element-wise: the fp32 softmax is within kF32Slack of the exact one
        // (relative), and storing it rounds once: |P - p| <= (u + slack) p.
        double worst = 0;
        for (size_t i = 0; i < att.size(); i++) {
            const double bound = (kU + kF32Slack) * r.att[i];
            const double err = std::fabs(att[i] - r.att[i]);
            worst = std::max(worst, err / (r.att[i] > 0 ? r.att[i] : 1.0));
            if (!(err <= bound)) {
                ADD_FAILURE() << "att[" << i << "] = " << att[i] << ", want " << r.att[i];
                break;
            }
        }
        EXPECT_GT(worst, 0.0);  // the rounding is real, so the check above could fail
        // Above the diagonal the probabilities are exact zeros (bits 0), not just small.
        for (int bh = 0; bh < s.B * s.NH; bh++) {
            for (int t = 0; t < s.T; t++) {
                for (int u = t + 1; u < s.T; u++) {
                    ASSERT_EQ(r.att_b[size_t((int64_t(bh) * s.T + t) * s.T + u)].bits, 0)
                        << bh << " " << t << " " << u;
                }
            }
        }
    }
}

TEST(OpsBf16Attention, MatchesDoubleOnTheSameBf16Inputs) {
    for (const AttnShape& s : kAttnShapes) {
        SCOPED_TRACE(s.name());
        AttnRun r(s, 111);
        // out = P V: P rounded once (u per term) and the result rounded once on
        // store (u): 2u. max |out| is of the scale of sum_j P |v_j| (row t = 0
        // is its value row), so the norm-wise error is within that; measured
        // <= 1.0u.
        expect_close(rel_err(widen(r.out_b), r.out), 2 * kU, "out");
        // dV = P^T dO: P's rounding and one store (the group's sum stays fp32): 2u.
        // dQ = scale dS K and dK = scale dS^T Q, dS = P (dP - rowsum(P dP)):
        // P's rounding enters twice (the factor and the row sum), dS is rounded
        // for the GEMM, dQ / dK rounded on store: 4u. Measured <= 1.2u.
        expect_close(rel_err(widen(r.dqkv_b), r.dqkv), 4 * kU, "dqkv");
    }
}

TEST(OpsBf16Attention, BackwardAccumulatesIntoDqkv) {
    const AttnShape s = kAttnShapes[0];
    AttnRun r(s, 121);
    // Start from a nonzero gradient of the same scale as dqkv's. The bf16 op
    // adds its fp32 result to the start and rounds the sum once (the store of
    // the fresh case, now relative to start + dqkv): at most the 4u of the
    // fresh gradient plus u of the sum.
    const Vec start = randn_bf16(s.qkv_size(), 123, 0.5);
    VecB dqkv_b = to_bf16(start);
    const VecB qkv_b = to_bf16(r.qkv), dout_b = to_bf16(r.dout);
    zt::cpu::attention_backward(dqkv_b.data(), dout_b.data(), qkv_b.data(), r.att_b.data(), s.B,
                                s.T, s.NH, s.NKV, s.HD);
    // Dropping the start (or overwriting with it) would err by about the
    // start's scale relative to the sum, far above 5u. Measured 0.65u.
    expect_close(rel_err(widen(dqkv_b), add(start, r.dqkv)), 5 * kU, "start + dqkv");
}

// ---------------------------------------------------------------- classifier

struct ClassifierCase {
    int64_t N;
    int C, V, chunk_rows;
    std::vector<int32_t> targets;
    float loss_scale = 0.37f;
    Vec x, weight;  // bf16 values, widened

    ClassifierCase(int64_t n, int c, int v, int chunk, std::vector<int32_t> t, uint64_t stream)
        : N(n), C(c), V(v), chunk_rows(chunk), targets(std::move(t)) {
        x = randn_bf16(size_t(N * C), stream);
        weight = randn_bf16(size_t(V) * C, stream + 1, 0.5);
    }

    // The double op on the same values, onto the given starting gradients.
    void run_double(Vec& losses, Vec& dx, Vec& dweight) const {
        Vec scratch(size_t(chunk_rows) * V);
        losses.assign(size_t(N), -1.0);
        zt::cpu::classifier_forward_backward(losses.data(), dx.data(), dweight.data(), x.data(),
                                             weight.data(), targets.data(), N, C, V, loss_scale,
                                             scratch.data(), chunk_rows);
    }

    // The bf16 op; null dx / dweight are not requested.
    template <class G>
    void run_bf16(std::vector<float>& losses, VecB* dx, std::vector<G>* dweight) const {
        const VecB xb = to_bf16(x), wb = to_bf16(weight);
        std::vector<float> scratch(size_t(chunk_rows) * V, std::numeric_limits<float>::quiet_NaN());
        losses.assign(size_t(N), std::numeric_limits<float>::quiet_NaN());
        zt::cpu::classifier_forward_backward(
            losses.data(), dx ? dx->data() : nullptr, dweight ? dweight->data() : nullptr,
            xb.data(), wb.data(), targets.data(), N, C, V, loss_scale, scratch.data(), chunk_rows);
    }
};

// N = 37 rows in chunks of 8 (the last partial), ignored rows among them, V =
// 150 so a row's bf16 dlogits are packed in three blocks of the
// implementation (64, 64, 22) with targets on both sides of each block edge;
// and a vocabulary smaller than one block.
ClassifierCase big_case() {
    std::vector<int32_t> t(37);
    const int32_t edges[] = {0, 63, 64, 127, 128, 149, -1};
    for (size_t i = 0; i < t.size(); i++) t[i] = i % 5 == 2 ? -1 : edges[i % 7];
    return ClassifierCase(37, 24, 150, 8, t, 201);
}
ClassifierCase small_case() {
    return ClassifierCase(7, 13, 17, 3, {3, -1, 16, 0, 5, -1, 9}, 211);
}

// loss = logsumexp(logits) - logit[target], with the logits from bf16 inputs
// accumulated in fp32 (each product of two bf16 values is exact in fp32) and
// the softmax in fp32: no bf16 rounding anywhere, so fp32 accuracy.
constexpr double kLossTol = kF32Slack;

template <class G>
void check_classifier_against_double(const ClassifierCase& k, double dweight_tol,
                                     const std::string& what) {
    SCOPED_TRACE(what + " N=" + std::to_string(k.N) + " V=" + std::to_string(k.V));
    // Start from nonzero gradients so += is checked along with the values.
    const Vec dx0 = randn_bf16(size_t(k.N * k.C), 221, 0.05);
    const Vec dw0 = randn_bf16(size_t(k.V) * k.C, 222, 0.05);
    Vec losses, dx(dx0), dweight(dw0);
    k.run_double(losses, dx, dweight);
    std::vector<float> losses_b;
    VecB dx_b = to_bf16(dx0);
    std::vector<G> dw_b(dw0.size());
    for (size_t i = 0; i < dw0.size(); i++) {
        if constexpr (std::is_same_v<G, float>)
            dw_b[i] = float(dw0[i]);
        else
            dw_b[i] = zt::f32_to_bf16(float(dw0[i]));
    }
    k.run_bf16(losses_b, &dx_b, &dw_b);
    for (int64_t n = 0; n < k.N; n++) {
        const double want = losses[size_t(n)], got = losses_b[size_t(n)];
        if (!(std::fabs(got - want) <= kLossTol * (1 + std::fabs(want))))
            ADD_FAILURE() << "loss[" << n << "] = " << got << ", want " << want;
    }
    // dx = dlogits W: dlogits rounded once, which errs by u of
    // sum_v |dlogits| |w_v| = 2 loss_scale (1 - p_target) |w|, about twice
    // |dx| because each dlogits row sums to zero (dx = E_p[w] - w_target); and
    // dx rounded once when the fp32 sum is added to the bf16 start (u): 3u.
    // Measured <= 1.15u.
    expect_close(rel_err(widen(dx_b), dx), 3 * kU, "dx");
    Vec dw_got(dw_b.size());
    for (size_t i = 0; i < dw_b.size(); i++) {
        if constexpr (std::is_same_v<G, float>)
            dw_got[i] = dw_b[i];
        else
            dw_got[i] = zt::bf16_to_f32(dw_b[i]);
    }
    expect_close(rel_err(dw_got, dweight), dweight_tol, "dweight");
}

TEST(OpsBf16Classifier, MatchesDoubleWithFp32Dweight) {
    // dweight = dlogits^T x summed in fp32 onto an fp32 start: only the
    // dlogits rounding, u of each term; over rows of random sign the terms'
    // sum of magnitudes exceeds |dweight| by a small factor: 2u. Measured
    // <= 0.56u.
    check_classifier_against_double<float>(big_case(), 2 * kU, "G=float");
    check_classifier_against_double<float>(small_case(), 2 * kU, "G=float");
}

TEST(OpsBf16Classifier, MatchesDoubleWithBf16Dweight) {
    // A bf16 dweight is rounded once per chunk of rows: 5 chunks (37 rows by
    // 8), 3 (7 by 3), plus the dlogits rounding: 6u and 4u. Measured <= 1.03u.
    check_classifier_against_double<bf16>(big_case(), 6 * kU, "G=bf16");
    check_classifier_against_double<bf16>(small_case(), 4 * kU, "G=bf16");
}

TEST(OpsBf16Classifier, IgnoredTargetsGiveZeroLossAndNoGradient) {
    ClassifierCase k = big_case();
    std::vector<float> losses;
    // Gradients start nonzero; an ignored row adds exact zeros, so its dx row
    // keeps its bits, and when every row is ignored nothing changes at all.
    const VecB dx0 = to_bf16(randn(size_t(k.N * k.C), 231));
    const VecB dw0 = to_bf16(randn(size_t(k.V) * k.C, 232));
    VecB dx = dx0, dw = dw0;
    k.run_bf16(losses, &dx, &dw);
    int ignored = 0;
    for (int64_t n = 0; n < k.N; n++) {
        if (k.targets[size_t(n)] >= 0) continue;
        ignored++;
        EXPECT_EQ(losses[size_t(n)], 0.0f) << n;
        for (int c = 0; c < k.C; c++)
            ASSERT_EQ(dx[size_t(n * k.C + c)].bits, dx0[size_t(n * k.C + c)].bits) << n << " " << c;
    }
    ASSERT_GT(ignored, 0);
    k.targets.assign(size_t(k.N), -1);
    dx = dx0;
    std::vector<float> dwf(dw0.size());
    for (size_t i = 0; i < dw0.size(); i++) dwf[i] = zt::bf16_to_f32(dw0[i]);
    const std::vector<float> dwf0 = dwf;
    k.run_bf16(losses, &dx, &dwf);
    for (int64_t n = 0; n < k.N; n++) EXPECT_EQ(losses[size_t(n)], 0.0f) << n;
    for (size_t i = 0; i < dx.size(); i++) ASSERT_EQ(dx[i].bits, dx0[i].bits) << i;
    for (size_t i = 0; i < dwf.size(); i++) ASSERT_EQ(dwf[i], dwf0[i]) << i;
}

TEST(OpsBf16Classifier, ForwardOnlyGivesTheSameLosses) {
    const ClassifierCase k = big_case();
    std::vector<float> losses_fb, losses_f, losses_dx;
    VecB dx(size_t(k.N * k.C), bf16{0}), dx_only(dx.size(), bf16{0});
    std::vector<float> dw(size_t(k.V) * k.C, 0.0f);
    k.run_bf16(losses_fb, &dx, &dw);
    k.run_bf16<float>(losses_f, nullptr, nullptr);
    k.run_bf16<float>(losses_dx, &dx_only, nullptr);
    // The loss is computed before, and independently of, the backward: same bits.
    for (int64_t n = 0; n < k.N; n++) {
        ASSERT_EQ(losses_f[size_t(n)], losses_fb[size_t(n)]) << n;
        ASSERT_EQ(losses_dx[size_t(n)], losses_fb[size_t(n)]) << n;
    }
    // dx does not depend on whether dweight is requested.
    for (size_t i = 0; i < dx.size(); i++) ASSERT_EQ(dx_only[i].bits, dx[i].bits) << i;
}

}  // namespace
