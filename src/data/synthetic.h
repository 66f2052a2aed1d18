// Learnable synthetic data: a fixed random sparse Markov chain.
//
// Each token has 4 distinct successors, taken with probabilities
// 0.55/0.25/0.12/0.08, so the best possible next-token loss is the chain's
// conditional entropy (about 1.13 nats), far below ln(vocab_size): a model
// that learns shows its loss falling toward that floor within a few hundred
// steps. The chain is fixed by the seed; sequence k is a pure function of
// (seed, k), so any rank, world size or resume sees the same data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace zt {

class SyntheticSource : public TokenSource {
  public:
    static constexpr int kSuccessors = 4;

    SyntheticSource(int vocab_size, uint64_t seed, int64_t n_sequences = 1 << 16);

    // The same count at every T: sequence k at length T is the first T+1
    // tokens of one endless walk that depends only on (seed, k).
    int64_t n_sequences(int T) const override;
    void read_sequence(int64_t k, int T, int32_t* out) const override;
    uint32_t max_token() const override { return uint32_t(vocab_size_ - 1); }
    std::string describe() const override;

    // The chain's conditional entropy H(next | current) in nats: the loss floor.
    double entropy_per_token() const;
    int vocab_size() const { return vocab_size_; }
    // The successors of token t, most likely first (kSuccessors,).
    const int32_t* successors(int t) const { return &successors_[size_t(t) * kSuccessors]; }
    static double successor_prob(int j);

  private:
    int vocab_size_;
    uint64_t seed_;
    int64_t n_sequences_;
    std::vector<int32_t> successors_;  // (vocab_size, kSuccessors)
};

}  // namespace zt
