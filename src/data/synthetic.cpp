// Synthetic Markov-chain data (see synthetic.h).
//
// Randomness: the chain's table comes from a seed derived from `seed` and a
// tag, so it never shares draws with the sequences; token i of sequence k uses
// exactly rng_u64(seed, k, i), so a sequence is a pure function of (seed, k)
// and a longer T only extends it.
#include "data/synthetic.h"

#include <cmath>

#include "core/check.h"
#include "core/rng.h"

namespace zt {

namespace {

constexpr double kProbs[SyntheticSource::kSuccessors] = {0.55, 0.25, 0.12, 0.08};
constexpr uint64_t kTableTag = 0x73796e7468636861ull;  // "synthcha": the chain table's seed

// Uniform index in [0, n) from the top 32 bits of a draw (n < 2^31).
inline int32_t draw_below(uint64_t r, int32_t n) {
    return int32_t(((r >> 32) * uint64_t(n)) >> 32);
}

// Which successor a draw selects: cumulative probabilities 0.55, 0.80, 0.92, 1.
inline int pick_successor(uint64_t r) {
    const double u = double(r >> 11) * (1.0 / 9007199254740992.0);  // [0, 1), 53 bits
    double cum = 0.0;
    for (int j = 0; j < SyntheticSource::kSuccessors - 1; j++) {
        cum += kProbs[j];
        if (u < cum) return j;
    }
    return SyntheticSource::kSuccessors - 1;
}

}  // namespace

SyntheticSource::SyntheticSource(int vocab_size, uint64_t seed, int64_t n_sequences)
    : vocab_size_(vocab_size), seed_(seed), n_sequences_(n_sequences) {
    ZT_CHECK(vocab_size >= 8,
             "synthetic data: vocab_size %d is too small; it needs at least 8 tokens so each "
             "token has %d distinct successors and the loss floor sits well below ln(vocab)",
             vocab_size, kSuccessors);
    ZT_CHECK(n_sequences > 0, "synthetic data: n_sequences %lld must be positive",
             (long long)n_sequences);
    successors_.resize(size_t(vocab_size) * kSuccessors);
    const uint64_t table_seed = rng_mix64(seed ^ kTableTag);
    for (int t = 0; t < vocab_size; t++) {
        Rng rng(table_seed, uint64_t(t));
        int32_t* succ = &successors_[size_t(t) * kSuccessors];
        for (int j = 0; j < kSuccessors; j++) {
            bool fresh;
            do {  // distinct successors, so every row has the same entropy
                succ[j] = draw_below(rng.next_u64(), vocab_size);
                fresh = true;
                for (int i = 0; i < j; i++) fresh = fresh && succ[i] != succ[j];
            } while (!fresh);
        }
    }
}

int64_t SyntheticSource::n_sequences(int T) const {
    ZT_CHECK(T > 0, "sequence length %d must be positive", T);
    return n_sequences_;
}

void SyntheticSource::read_sequence(int64_t k, int T, int32_t* out) const {
    ZT_CHECK(T > 0, "sequence length %d must be positive", T);
    ZT_CHECK(k >= 0 && k < n_sequences_, "synthetic data: sequence %lld out of range [0, %lld)",
             (long long)k, (long long)n_sequences_);
    int32_t tok = draw_below(rng_u64(seed_, uint64_t(k), 0), vocab_size_);
    out[0] = tok;
    for (int i = 1; i <= T; i++) {
        tok = successors(tok)[pick_successor(rng_u64(seed_, uint64_t(k), uint64_t(i)))];
        out[i] = tok;
    }
}

std::string SyntheticSource::describe() const {
    return strprintf(
        "synthetic Markov chain (vocab %d, seed %llu, %lld sequences, "
        "loss floor %.3f nats)",
        vocab_size_, (unsigned long long)seed_, (long long)n_sequences_, entropy_per_token());
}

double SyntheticSource::entropy_per_token() const {
    // Every row has the same distinct-successor distribution, so the
    // conditional entropy is that row's entropy whatever the stationary law.
    double h = 0.0;
    for (double p : kProbs) h -= p * std::log(p);
    return h;
}

double SyntheticSource::successor_prob(int j) {
    ZT_CHECK(j >= 0 && j < kSuccessors, "successor %d out of range [0, %d)", j, kSuccessors);
    return kProbs[j];
}

}  // namespace zt
