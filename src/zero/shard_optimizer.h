// ShardOptimizer: the fp32 master weights and AdamW moments of the elements
// this rank updates, and the update that writes the compute copy back.
//
// The range of unit u a rank updates is the whole unit when the optimizer is
// not sharded (stage 0) and its owned block otherwise. With an f32 compute
// copy the master IS the compute copy (ParamStore's), so fp32 training holds
// 4 + 8 bytes a parameter; with a bf16 compute copy the master is a separate
// fp32 array here, so the optimizer holds 12 (DESIGN.md's ledger rule).
// Invariant: after step(), the compute copy of every updated element equals
// its master rounded to the compute dtype.
#pragma once

#include <cstdint>

#include "model/layout.h"
#include "ops/adamw.h"
#include "prof/memory.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/param_store.h"
#include "zero/policy.h"

namespace zt {

struct ShardOptimizerOptions {
    float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
    bool decay_all = false;  // decay norms, biases and embeddings too
};

class ShardOptimizer {
public:
    ShardOptimizer(const ModelLayout& layout, const ZeroLayout& zl, const StagePolicy& policy,
                   const ShardOptimizerOptions& opt, DType compute_dtype, int rank,
                   MemoryLedger* ledger);

    // Elements [begin, end) of unit u that this rank updates.
    OwnedRange range(int unit) const;
    // AdamW with learning rate lr (step 1-based) on every range, from the
    // reduced gradients multiplied by grad_scale (the clipping coefficient,
    // already applied to f32 gradients when != 1), then the compute copy of
    // every range is rewritten and published.
    void step(float lr, int64_t step, GradReducer& grads, float grad_scale, ParamStore& params);

    // Master weights and moments of unit u, element range(u).begin onward.
    float* master(int unit, ParamStore& params);
    float* exp_avg(int unit);
    float* exp_avg_sq(int unit);
    // Sets range(u) of master and moments from full-unit fp32 arrays (n_u,)
    // (exp_avg and exp_avg_sq may be null: zeros). The compute copy is set by
    // the caller through ParamStore::load_unit.
    void load_unit(int unit, const float* params, const float* exp_avg, const float* exp_avg_sq);

private:
    int64_t offset(int unit) const;  // of range(u).begin in the master and moment buffers

    const ModelLayout& layout_;
    const ZeroLayout& zl_;
    StagePolicy policy_;
    ShardOptimizerOptions opt_;
    DType compute_dtype_;
    int rank_;
    LedgerBuffer<float> master_;  // bf16 compute copy only: (full_padded) or (shard_total)
    LedgerBuffer<float> m_, v_;   // (full_padded) not sharded, (shard_total) sharded
};

}  // namespace zt
