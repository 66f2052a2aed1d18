// The fused AdamW step (adamw_step) on every code path against the plain loop
// (adamw_update) it replaces.
//
// What must hold, and why each check can fail:
//  - every vector path equals the scalar path bit for bit (same operations,
//    same fused multiply-adds; an approximate rsqrt, a reciprocal multiply or
//    a tail that skips elements would differ);
//  - each step is within a stated bound of adamw_update from the same state
//    (the two differ only in which products are fused; a missing decay or a
//    wrong bias correction is far outside it, see BoundRejectsAWrongStep);
//  - the bf16 write-back is exactly f32_to_bf16 of the new fp32 param;
//  - nothing outside [0, n) is touched, for odd lengths and unaligned starts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "ops/adamw.h"

namespace zt::cpu {
void PrintTo(AdamWPath path, std::ostream* os) {
    *os << adamw_path_name(path);
}
}  // namespace zt::cpu

namespace {

using zt::bf16;
using zt::cpu::AdamWHyper;
using zt::cpu::AdamWPath;

constexpr AdamWPath kPaths[] = {AdamWPath::avx512, AdamWPath::avx2, AdamWPath::scalar};
constexpr int64_t kLengths[] = {0, 1, 7, 15, 16, 17, 1023, 100003};
constexpr int64_t kOffsets[] = {0, 1, 3};  // elements past a 64-byte aligned start
constexpr int kGuard = 19;                 // elements after the range that must stay untouched
constexpr float kSentinel = -12345.5f;
constexpr uint16_t kSentinelBf16 = 0x7e11;

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Optimizer state of n elements at `offset` inside guarded, 64-byte aligned
// buffers, so the routine sees an unaligned start and a tail it must not pass.
struct State {
    int64_t n, offset;
    std::vector<float> p, g, m, v;
    std::vector<bf16> gb, out;

    State(int64_t n_, int64_t offset_, uint32_t seed) : n(n_), offset(offset_) {
        const size_t size = size_t(offset + n + kGuard);
        for (auto* x : {&p, &g, &m, &v}) x->assign(size, kSentinel);
        gb.assign(size, bf16{kSentinelBf16});
        out.assign(size, bf16{kSentinelBf16});
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) {
            const size_t k = size_t(offset + i);
            p[k] = normal(rng);
            g[k] = normal(rng) * 0.5f;
            gb[k] = zt::f32_to_bf16(normal(rng));
            m[k] = normal(rng) * 0.1f;
            const float s = normal(rng) * 0.03f;
            v[k] = s * s;  // second moments are non-negative
        }
        // Exercise the corners: a zero gradient on a zero moment, a tiny one.
        if (n > 2) {
            g[size_t(offset)] = 0.0f, v[size_t(offset)] = 0.0f, gb[size_t(offset)] = bf16{0};
            g[size_t(offset + 1)] = 1e-30f;
        }
    }
    float* P() { return p.data() + offset; }
    const float* G() const { return g.data() + offset; }
    const bf16* GB() const { return gb.data() + offset; }
    float* M() { return m.data() + offset; }
    float* V() { return v.data() + offset; }
    bf16* Out() { return out.data() + offset; }
};

struct Case {
    bool bf16_grads;
    float grad_scale;
    bool decay;
    bool write_compute;
};

void fused_step(State& s, const Case& c, const AdamWHyper& h, AdamWPath path) {
    bf16* out = c.write_compute ? s.Out() : nullptr;
    if (c.bf16_grads)
        zt::cpu::adamw_step(s.P(), s.GB(), c.grad_scale, s.M(), s.V(), out, s.n, h, c.decay, path);
    else
        zt::cpu::adamw_step(s.P(), s.G(), s.M(), s.V(), out, s.n, h, c.decay, path);
}

void plain_step(State& s, const Case& c, const AdamWHyper& h) {
    if (c.bf16_grads)
        zt::cpu::adamw_update(s.P(), s.GB(), c.grad_scale, s.M(), s.V(), s.n, h, c.decay);
    else
        zt::cpu::adamw_update(s.P(), s.G(), s.M(), s.V(), s.n, h, c.decay);
}

// How far adamw_step may be from adamw_update after one step from the same
// state `before`, per element. Both round each operation of adamw.cpp's
// header in fp32 (unit roundoff u = 2^-24); they differ at most in whether
// a multiply-add rounds its product (adamw_step fuses m's and v's, the plain
// loop what its compiler contracts). From the same g and g - m:
//   m: one product rounding and the sum's rounding landing differently,
//      <= 3u (|m| + |w1 (g - m)|); we allow 4u.
//   v: likewise <= 3u (|v b2| + |w2 g^2|); 4u.
//   p: the step r = neg_step m / denom inherits dm through the numerator
//      (|neg_step| dm / denom) and from dv at most 2u relative through the
//      square root, plus up to 2u relative per operation landing differently
//      (sqrt, divide, add eps, multiply, divide: 10u); 16u|r| covers both.
//      The final p decay + r adds <= 3u (|p decay| + |r|); 4u.
// Tight enough to catch a wrong formula (BoundRejectsAWrongStep); computed
// in double so it does not itself round.
struct Bound {
    double w1, b2, w2, decay, neg_step, bc2_sqrt, eps;
    Bound(const AdamWHyper& h, bool decay_on) {
        const double b1 = h.beta1, t = double(h.step);
        w1 = 1.0 - b1;
        b2 = h.beta2;
        w2 = 1.0 - b2;
        decay = decay_on ? 1.0 - double(h.lr) * double(h.weight_decay) : 1.0;
        neg_step = -double(h.lr) / (1.0 - std::pow(b1, t));
        bc2_sqrt = std::sqrt(1.0 - std::pow(b2, t));
        eps = h.eps;
    }
};

constexpr double kU = 1.0 / 16777216.0;  // 2^-24

// Counts the elements of `got` outside the bound of `want`, both stepped
// from `before`; describes the first few in `why`.
int64_t count_outside_bound(const State& before, const State& got, const State& want, const Case& c,
                            const Bound& b, std::string& why) {
    int64_t bad = 0;
    for (int64_t i = 0; i < before.n; i++) {
        const size_t k = size_t(before.offset + i);
        const double g = c.bf16_grads ? double(zt::bf16_to_f32(before.gb[k]) * c.grad_scale)
                                      : double(before.g[k]);
        const double m0 = before.m[k], v0 = before.v[k], p0 = before.p[k];
        const double d = g - m0;
        const double tol_m = 4 * kU * (std::fabs(m0) + std::fabs(b.w1 * d));
        const double tol_v = 4 * kU * (std::fabs(v0 * b.b2) + b.w2 * g * g);
        const double m1 = m0 + b.w1 * d, v1 = v0 * b.b2 + b.w2 * g * g;
        const double denom = std::sqrt(v1) / b.bc2_sqrt + b.eps;
        const double r = b.neg_step * m1 / denom;
        const double tol_p = std::fabs(b.neg_step) * tol_m / denom + 16 * kU * std::fabs(r) +
                             4 * kU * (std::fabs(p0 * b.decay) + std::fabs(r));
        const double dm = std::fabs(double(got.m[k]) - double(want.m[k]));
        const double dv = std::fabs(double(got.v[k]) - double(want.v[k]));
        const double dp = std::fabs(double(got.p[k]) - double(want.p[k]));
        // !(x <= tol) so a NaN fails.
        if (!(dm <= tol_m) || !(dv <= tol_v) || !(dp <= tol_p)) {
            if (bad++ < 3)
                why += "\n  element " + std::to_string(i) + ": p " + std::to_string(got.p[k]) +
                       " vs " + std::to_string(want.p[k]) + " (|d| " + std::to_string(dp) +
                       ", tol " + std::to_string(tol_p) + "), m |d| " + std::to_string(dm) +
                       " tol " + std::to_string(tol_m) + ", v |d| " + std::to_string(dv) + " tol " +
                       std::to_string(tol_v);
        }
    }
    return bad;
}

// Counts elements of a and b that differ in any bit (p, m, v, the bf16
// output) or in the guards.
int64_t count_bit_differences(const State& a, const State& b) {
    int64_t bad = 0;
    for (size_t k = 0; k < a.p.size(); k++) {
        bad += bits(a.p[k]) != bits(b.p[k]) || bits(a.m[k]) != bits(b.m[k]) ||
               bits(a.v[k]) != bits(b.v[k]) || a.out[k].bits != b.out[k].bits;
    }
    return bad;
}

// The bf16 output equals the rounding of the new param in [0, n); every
// array keeps its sentinel in the guards around it.
int64_t count_bad_writeback(const State& s, bool write_compute) {
    int64_t bad = 0;
    for (size_t k = 0; k < s.p.size(); k++) {
        const bool inside = int64_t(k) >= s.offset && int64_t(k) < s.offset + s.n;
        if (inside) {
            if (write_compute)
                bad += s.out[k].bits != zt::f32_to_bf16(s.p[k]).bits;
            else
                bad += s.out[k].bits != kSentinelBf16;
        } else {
            bad += s.p[k] != kSentinel || s.m[k] != kSentinel || s.v[k] != kSentinel ||
                   s.out[k].bits != kSentinelBf16;
        }
    }
    return bad;
}

AdamWHyper hyper_at(int64_t step) {
    AdamWHyper h;
    h.lr = 1e-2f;  // large, so the step is not lost in p's rounding
    h.beta1 = 0.9f;
    h.beta2 = 0.95f;
    h.eps = 1e-8f;
    h.weight_decay = 0.1f;
    h.step = step;
    return h;
}

class AdamWPathTest : public ::testing::TestWithParam<AdamWPath> {
  protected:
    void SetUp() override {
        if (!zt::cpu::adamw_path_supported(GetParam()))
            GTEST_SKIP() << "this CPU lacks " << zt::cpu::adamw_path_name(GetParam());
    }
};

// Three steps of every case; each compared with the scalar path bitwise and
// with adamw_update from the same state within Bound.
TEST_P(AdamWPathTest, MatchesScalarBitwiseAndPlainLoopWithinBound) {
    const AdamWPath path = GetParam();
    const Case cases[] = {
        {false, 1.0f, false, true},
        {false, 1.0f, true, false},
        {true, 0.37f, false, false},
        {true, 0.37f, true, true},
    };
    uint32_t seed = 1;
    for (const Case& c : cases) {
        for (int64_t n : kLengths) {
            for (int64_t offset : kOffsets) {
                const std::string where =
                    std::string("path ") + zt::cpu::adamw_path_name(path) + " n " +
                    std::to_string(n) + " offset " + std::to_string(offset) +
                    (c.bf16_grads ? " bf16" : " f32") + " grads, decay " + std::to_string(c.decay) +
                    ", write-back " + std::to_string(c.write_compute);
                State s(n, offset, seed++), scalar = s;
                for (int64_t step = 1; step <= 3; step++) {
                    const AdamWHyper h = hyper_at(step * 5 - 4);  // 1, 6, 11
                    State plain = s;
                    const State before = s;
                    fused_step(s, c, h, path);
                    fused_step(scalar, c, h, AdamWPath::scalar);
                    plain_step(plain, c, h);
                    ASSERT_EQ(count_bit_differences(s, scalar), 0) << where << " step " << step;
                    ASSERT_EQ(count_bad_writeback(s, c.write_compute), 0)
                        << where << " step " << step;
                    std::string why;
                    const int64_t bad =
                        count_outside_bound(before, s, plain, c, Bound(h, c.decay), why);
                    ASSERT_EQ(bad, 0) << where << " step " << step << why;
                }
            }
        }
    }
}

// The bf16 write-back on bit patterns that test the rounding: ties to even
// both ways, the largest finite float (rounds to Inf), denormals (kept, not
// flushed), signed zeros, Infs and NaNs (stay NaN, quieted). With lr = 0 and
// no decay the update leaves every param as it was.
TEST_P(AdamWPathTest, WritesBackRoundedToNearestEven) {
    const uint32_t patterns[] = {
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf808000u, 0xbf818000u,
        0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x00008000u, 0x00018000u, 0x807fffffu,
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
        0x7f800001u, 0x3f800000u, 0x12345678u, 0x9abcdef0u, 0x7fffffffu,
    };
    const int64_t n = 3 * int64_t(std::size(patterns)) + 5;  // vector groups and a tail
    State s(n, 1, 99);
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = patterns[size_t(i) % std::size(patterns)];
        std::memcpy(&s.P()[i], &u, 4);
    }
    const State before = s;
    AdamWHyper h = hyper_at(1);
    h.lr = 0.0f;
    zt::cpu::adamw_step(s.P(), s.G(), s.M(), s.V(), s.Out(), n, h, false, GetParam());
    for (int64_t i = 0; i < n; i++) {
        const float p0 = before.p[size_t(before.offset + i)];
        const uint16_t got = s.Out()[i].bits, want = zt::f32_to_bf16(s.P()[i]).bits;
        ASSERT_EQ(got, want) << "element " << i << " param bits 0x" << std::hex << bits(s.P()[i]);
        if (std::isnan(p0)) {
            ASSERT_TRUE(std::isnan(s.P()[i]));
        } else {
            ASSERT_EQ(bits(s.P()[i]) & 0x7fffffffu, bits(p0) & 0x7fffffffu)
                << "lr 0 must leave the param (up to the sign of zero), element " << i;
        }
    }
    ASSERT_EQ(count_bad_writeback(s, true), 0);
}

INSTANTIATE_TEST_SUITE_P(Paths, AdamWPathTest, ::testing::ValuesIn(kPaths), [](const auto& info) {
    return std::string(zt::cpu::adamw_path_name(info.param));
});

// The result does not depend on how many threads split the range.
TEST(AdamWStep, SameBitsForAnyThreadCount) {
    const int saved = omp_get_max_threads();
    const Case c{true, 0.5f, true, true};
    State one(100003, 3, 7);
    State base = one;
    omp_set_num_threads(1);
    fused_step(one, c, hyper_at(2), AdamWPath::automatic);
    for (int threads : {2, 3, 5}) {
        State s = base;
        omp_set_num_threads(threads);
        fused_step(s, c, hyper_at(2), AdamWPath::automatic);
        EXPECT_EQ(count_bit_differences(s, one), 0) << threads << " threads";
    }
    omp_set_num_threads(saved);
}

// The bound of MatchesScalarBitwiseAndPlainLoopWithinBound is not vacuous:
// the plain loop at the wrong step (bias corrections of t = 2 against t = 1)
// or without the decay lands outside it on nearly every element.
TEST(AdamWStep, BoundRejectsAWrongStep) {
    const int64_t n = 1000;
    const Case c{false, 1.0f, true, false};
    const State before(n, 0, 5);
    State fused = before, wrong_step = before, no_decay = before;
    fused_step(fused, c, hyper_at(1), AdamWPath::automatic);
    plain_step(wrong_step, c, hyper_at(2));
    plain_step(no_decay, Case{false, 1.0f, false, false}, hyper_at(1));
    std::string why;
    const Bound b(hyper_at(1), true);
    EXPECT_GT(count_outside_bound(before, wrong_step, fused, c, b, why), n * 9 / 10);
    EXPECT_GT(count_outside_bound(before, no_decay, fused, c, b, why), n * 9 / 10);
}

TEST(AdamWStep, AutomaticNamesASupportedPath) {
    const std::string name = zt::cpu::adamw_path_name();
    EXPECT_TRUE(name == "avx512" || name == "avx2" || name == "scalar") << name;
    for (AdamWPath p : kPaths) {
        if (name == zt::cpu::adamw_path_name(p)) {
            EXPECT_TRUE(zt::cpu::adamw_path_supported(p));
        }
    }
    EXPECT_TRUE(zt::cpu::adamw_path_supported(AdamWPath::scalar));
}

}  // namespace
