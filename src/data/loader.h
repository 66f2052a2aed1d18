// The distributed sampler: which sequences each rank reads at each step.
//
// Data order is global. An epoch is a seeded permutation of all N sequences
// of the source; optimizer step s consumes global positions s*G .. s*G+G-1
// (G = world * micro_batch * grad_accum), and the B sequences of (rank r,
// micro m) are positions s*G + (r*K + m)*B + b. So world size, stage and
// accumulation never change what a step sees, and a resumed or resharded run
// sees exactly the sequences of the uninterrupted one: the position is a pure
// function of (step, micro, rank), with no state carried between calls.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "data/shard.h"

namespace zt {

class DataLoader {
  public:
    // src must outlive the loader. T = seq-len, micro_batch = B, grad_accum = K.
    DataLoader(const TokenSource& src, int T, int micro_batch, int grad_accum, int rank, int world,
               uint64_t seed);

    // Fills this rank's micro-batch `micro` (0..K-1) of optimizer step `step`
    // (0-based): inputs (B, T) and targets (B, T), targets shifted by one.
    // Safe to call from several threads at once (the permutation cache is
    // guarded by a mutex; sequences are read outside the lock).
    void load(int64_t step, int micro, int32_t* inputs, int32_t* targets) const;

    // The global position of row b of (step, micro) on this rank, and the
    // sequence it maps to: exposed so tests and checkpoints can name them.
    int64_t global_position(int64_t step, int micro, int b) const;
    int64_t sequence_at(int64_t position) const;

    int64_t sequences_per_epoch() const { return n_; }  // N
    int64_t global_batch() const { return g_; }         // G, in sequences
    int seq_len() const { return T_; }
    int micro_batch() const { return B_; }
    int grad_accum() const { return K_; }

  private:
    // The epoch's permutation, recomputed when the epoch changes. Caller holds mu_.
    const std::vector<uint32_t>& permutation(int64_t epoch) const;

    const TokenSource& src_;
    int T_, B_, K_, rank_, world_;
    uint64_t seed_;
    int64_t n_;  // sequences per epoch at T
    int64_t g_;  // world * B * K

    mutable std::mutex mu_;
    mutable int64_t cached_epoch_ = -1;
    mutable std::vector<uint32_t> perm_;  // (N,) sequence index at each epoch position
};

// Fisher-Yates permutation of 0..n-1 seeded by (seed, epoch); the loader's order.
std::vector<uint32_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Evaluation reads sequences in order, no shuffle: batch `index` holds
// sequences index*B .. index*B+B-1; inputs (B, T), targets (B, T). A batch
// past the end of the source is an error (evaluation never wraps).
void load_eval(const TokenSource& src, int T, int64_t index, int B, int32_t* inputs,
               int32_t* targets);

// How many full B-sequence batches fit both in the source and in max_tokens
// (B*T target tokens a batch; max_tokens <= 0 means all of the source).
int64_t eval_batches(const TokenSource& src, int T, int B, int64_t max_tokens);

}  // namespace zt
