// GradReducer: gradients in the reduce dtype, and their reduction across ranks.
//
// Grads not sharded (stages 0/1): one full gradient buffer; at the last
// micro-batch of a step each unit is reduced as soon as its backward ends
// (stage 0 all-reduces; stage 1 reduce-scatters in place, since it needs only
// its own block: half the bytes). Grads sharded (stages 2/3): a unit's full
// gradient lives in a transient buffer from unit_grads(u) to grads_ready(u),
// is reduce-scattered at every micro-batch, and its reduced block is added to
// this rank's gradient shard; one reduction is in flight at a time, so the
// transient memory stays two units' gradients whatever the network speed.
// Invariant: gradients accumulate (+=) across micro-batches until zero().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "core/tensor.h"
#include "prof/memory.h"
#include "zero/layout.h"
#include "zero/policy.h"

namespace zt {

class GradReducer {
public:
    GradReducer(const ZeroLayout& zl, const StagePolicy& policy, DType dtype, bool overlap_comm,
                Communicator* comm, int rank, MemoryLedger* ledger);
    ~GradReducer();

    DType dtype() const { return dtype_; }
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
    struct PendingReduce;
    void finish_in_flight();

    const ZeroLayout& zl_;
    StagePolicy policy_;
    DType dtype_;
    bool overlap_comm_;
    Communicator* comm_;
    MemoryLedger* ledger_;
    int rank_, world_;
    int micro_ = 0, grad_accum_ = 1;

    TypedLedgerBuffer grads_;  // (full_padded) grads not sharded, (shard_total) sharded
    std::vector<Work> pending_;                // not sharded: this step's reductions
    std::unique_ptr<PendingReduce> in_flight_;  // sharded: at most one at a time
    std::vector<std::unique_ptr<TypedLedgerBuffer>> unit_bufs_;  // sharded, by unit
};

}  // namespace zt
