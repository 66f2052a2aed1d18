// Deterministic counter-based RNG.
//
// Every random number is a pure function of (seed, stream, counter), so a
// parameter's initial value depends only on the seed and its position in the
// model, never on thread count, world size or the order of calls.
#pragma once

#include <cmath>
#include <cstdint>

namespace zt {

// SplitMix64 finaliser: a bijective 64-bit mix with full avalanche.
inline uint64_t rng_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

inline uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return rng_mix64(rng_mix64(seed ^ rng_mix64(stream)) + counter);
}

// Uniform in [0, 1) with 24 random bits.
inline float rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return float(rng_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}

// Standard normal via Box-Muller on one 64-bit draw split into two 32-bit halves.
inline float rng_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t r = rng_u64(seed, stream, counter);
    double u1 = (double((r >> 32) & 0xffffffffull) + 1.0) / 4294967297.0;  // (0, 1)
    double u2 = double(r & 0xffffffffull) / 4294967296.0;                  // [0, 1)
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// A small sequential generator for samplers and shuffles, seeded from a counter.
class Rng {
public:
    explicit Rng(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
    uint64_t next_u64() { return rng_u64(seed_, stream_, counter_++); }
    // Uniform integer in [0, n) without modulo bias worth caring about (n < 2^32).
    uint64_t below(uint64_t n) { return (next_u64() >> 32) * n >> 32; }
    float uniform() { return rng_uniform(seed_, stream_, counter_++); }
    uint64_t counter() const { return counter_; }
    void set_counter(uint64_t c) { counter_ = c; }

private:
    uint64_t seed_, stream_, counter_ = 0;
};

}  // namespace zt
