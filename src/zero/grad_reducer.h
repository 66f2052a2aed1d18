// GradReducer: gradients in the reduce dtype, and their reduction across ranks.
//
// Reductions travel in buckets (zero/bucket.h) of up to `bucket_elements`
// full elements, planned over the units in backward order; a bucket is
// issued as soon as the last unit it holds is ready.
//   stage 0: one full gradient buffer; at the last micro-batch of a step
//            each bucket is all-reduced in place (its units are contiguous).
//   stage 1: the same buffer; each bucket is packed rank-major into a staging
//            slot, reduce-scattered, and the reduced block copied back into
//            this rank's block of the units (it needs only its own block).
//   stage 2/3: a unit's full gradient lives in a transient buffer from
//            unit_grads(u) to grads_ready(u), when it is packed into the
//            staging slot of its bucket(s) and the buffer is free again; at
//            every micro-batch the reduced blocks are added to this rank's
//            gradient shard.
// Staging is a fixed ring of slots allocated once (several reductions in
// flight; packing into a slot still in flight first completes it), and the
// transient unit buffers are two, allocated once: one for the embedding unit
// (with tied embeddings its gradient is written from the head onwards, so it
// lives through the whole backward) and one for every other unit.
// Invariant: gradients accumulate (+=) across micro-batches until zero().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "core/tensor.h"
#include "prof/memory.h"
#include "zero/bucket.h"
#include "zero/layout.h"
#include "zero/policy.h"

namespace zt {

struct GradReducerOptions {
    DType dtype = DType::f32;
    bool overlap_comm = true;
    int64_t bucket_elements = int64_t(1) << 20;  // reduce_bucket_size
    int staging_slots = 3;                       // reductions in flight at most
};

// The reduction plan of a stage at a world size: what GradReducer issues and
// what `estimate` sizes. Sharded stages (1-3) plan per-rank spans s_u with
// the per-rank capacity; stage 0 plans the padded units themselves.
BucketPlan reduce_plan(const ZeroLayout& zl, const StagePolicy& policy, int64_t bucket_elements);
// Staging slots a reducer of this plan allocates (0 when nothing is staged).
int reduce_staging_slots(const BucketPlan& plan, const StagePolicy& policy, int world,
                         int max_slots);
// The transient buffers' elements: staging slots (world + 1) x largest bucket,
// plus, when grads are sharded, the embedding's and the largest other unit's
// gradient buffers.
int64_t reduce_transient_elements(const ZeroLayout& zl, const StagePolicy& policy,
                                  int64_t bucket_elements, int max_slots);

class GradReducer {
  public:
    GradReducer(const ZeroLayout& zl, const StagePolicy& policy, const GradReducerOptions& opt,
                Communicator* comm, int rank, MemoryLedger* ledger);
    ~GradReducer();

    DType dtype() const { return opt_.dtype; }
    const BucketPlan& plan() const { return plan_; }
    // Collectives one step issues with grad_accum micro-batches.
    int64_t collectives_per_step(int grad_accum) const;

    void begin_micro(int micro, int grad_accum);
    // The unit's full gradient, (n_u,) in the reduce dtype, to accumulate into.
    Tensor unit_grads(int unit);
    void grads_ready(int unit);
    // Waits for every reduction in flight; after it, block(u) is final.
    void finish();
    void zero();

    // This rank's block of unit u's reduced gradient: (s_u,) elements
    // starting at element rank * s_u. With grads not sharded, the whole
    // reduced gradient of unit u starts at full(u).
    void* block(int unit);
    void* full(int unit);
    // Every gradient this rank holds, for clipping in place: (size(),).
    void* all() { return grads_.data(); }
    int64_t size() const { return grads_.size(); }

  private:
    bool communicates_now() const;
    void pack(int unit, const void* src);
    void issue(int bucket);
    void unpack(int bucket, StagingRing::Slot& slot);

    const ZeroLayout& zl_;
    StagePolicy policy_;
    GradReducerOptions opt_;
    Communicator* comm_;
    int rank_, world_;
    int micro_ = 0, grad_accum_ = 1;
    size_t esize_;

    BucketPlan plan_;
    TypedLedgerBuffer grads_;     // (full_padded) grads not sharded, (shard_total) sharded
    std::vector<Work> in_place_;  // stage 0: this step's all-reduces
    StagingRing ring_;            // stages 1-3
    StagingRing::Slot* filling_ = nullptr;  // slot of the bucket being packed
    // Stages 2/3: transient unit gradients (embedding, every other unit) and
    // which unit holds each (-1: free).
    TypedLedgerBuffer unit_buf_[2];
    int holder_[2] = {-1, -1};
};

}  // namespace zt
