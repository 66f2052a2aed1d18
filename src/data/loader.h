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

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
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

// Reads a DataLoader's micro-batches ahead on a background thread, in
// (step, micro) order from a starting step, into a ring of `depth` buffers,
// so next() usually only copies. What next() returns is exactly what
// DataLoader::load returns for the same (step, micro): the loader is a pure
// function of its arguments and the ring only changes when it is computed.
// A call out of order (a skipped or repeated micro-batch) is still served
// correctly: the ring is emptied and reading ahead restarts from there.
// An exception from the loader reaches the caller of next() for the
// micro-batch that raised it, and again on each later call for it; reading
// ahead stops there. The destructor stops and joins the thread, waiting at
// most for the one load in progress.
class PrefetchLoader {
  public:
    // loader must outlive this object. depth >= 1 buffers of one micro-batch.
    PrefetchLoader(const DataLoader& loader, int64_t start_step, int depth = 3);
    ~PrefetchLoader();
    PrefetchLoader(const PrefetchLoader&) = delete;
    PrefetchLoader& operator=(const PrefetchLoader&) = delete;

    // Same contract as DataLoader::load: inputs (B, T), targets (B, T).
    void next(int64_t step, int micro, int32_t* inputs, int32_t* targets);

    const DataLoader& loader() const { return loader_; }
    int depth() const { return depth_; }

  private:
    struct Slot {
        std::vector<int32_t> inputs;   // (B, T)
        std::vector<int32_t> targets;  // (B, T)
        std::exception_ptr error;      // what load() threw for this slot's micro-batch
    };
    void produce();

    const DataLoader& loader_;
    const int depth_;
    std::vector<Slot> ring_;  // micro-batch at linear position p lives in ring_[p % depth]

    // Linear position of (step, micro) is step * K + micro. Guarded by mu_:
    std::mutex mu_;
    std::condition_variable cv_;
    int64_t take_ = 0;         // the position next() expects
    int64_t ready_end_ = 0;    // positions [take_, ready_end_) are loaded
    uint64_t generation_ = 0;  // bumped when next() restarts the stream elsewhere
    bool failed_ = false;      // the slot at ready_end_ - 1 holds an error: stop reading ahead
    bool stop_ = false;
    std::thread worker_;  // last member: starts after everything above exists
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
