// ShardOptimizer: the fp32 master weights and AdamW moments of the elements
// this rank updates, and the update that writes the compute copy back.
//
// The range of unit u a rank updates is the whole unit when the optimizer is
// not sharded (stage 0) and its owned block otherwise. With an f32 compute
// copy the master IS the compute copy (ParamStore's), so fp32 training holds
// 4 + 8 bytes a parameter; with a bf16 compute copy the master is a separate
// fp32 array here, so the optimizer holds 12 (DESIGN.md's ledger rule).
// Where the state lives: host memory, or (offload_dir set: the NVMe tier) a
// file streamed tile by tile through a small window (zero/offload.h), with the
// update of one tile overlapping the reads ahead and the writes behind. The
// f32 compute copy, being the model's weights, stays in memory either way.
// The update is one fused pass per tensor range (ops/adamw.h's adamw_step),
// which writes the bf16 compute copy in the same pass.
// Invariant: after step(), the compute copy of every updated element equals
// its master rounded to the compute dtype.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/layout.h"
#include "ops/adamw.h"
#include "prof/memory.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/offload.h"
#include "zero/param_store.h"
#include "zero/policy.h"

namespace zt {

struct ShardOptimizerOptions {
    float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
    bool decay_all = false;  // decay norms, biases and embeddings too
    // Non-empty: the state lives in `offload_file` (created, preallocated and
    // removed by the optimizer), streamed in tiles of this many elements
    // through this many host buffers.
    std::string offload_file;
    int64_t offload_tile_elements = int64_t(1) << 20;
    int offload_window = 4;
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
    // every range is rewritten and published, unit by unit in forward order.
    void step(float lr, int64_t step, GradReducer& grads, float grad_scale, ParamStore& params);

    // Copies n elements of unit u's range from element range(u).begin + skip:
    // master weights, exp_avg, exp_avg_sq (any may be null). Between steps.
    void read_state(int unit, int64_t skip, int64_t n, float* master, float* exp_avg,
                    float* exp_avg_sq, ParamStore& params);
    // Sets range(u) of master and moments from full-unit fp32 arrays (n_u,)
    // (exp_avg and exp_avg_sq may be null: zeros). The compute copy is set by
    // the caller through ParamStore::load_unit, and is the master itself with
    // an f32 copy.
    void load_unit(int unit, const float* params, const float* exp_avg, const float* exp_avg_sq);
    // Sets range(u) of the master only (bf16 compute copy; the moments stay).
    void load_master(int unit, const float* params, ParamStore& store);

    // The NVMe tier's file, or null when the state is in memory.
    const OffloadFile* offload() const { return file_.get(); }

  private:
    // A tensor's part of one unit's range, at `flat` in the state arrays.
    struct Segment {
        int unit;
        int64_t element;  // first element of the unit
        int64_t flat;     // its index in the state arrays
        int64_t size;
        bool decay;
    };
    int64_t offset(int unit) const;  // of range(u).begin in the state arrays
    // AdamW on elements [flat, flat + n) of segment s, whose master and
    // moments are at master / m / v (null master: the f32 compute copy).
    void update(const Segment& s, int64_t flat, int64_t n, float* master, float* m, float* v,
                GradReducer& grads, float grad_scale, ParamStore& params, const cpu::AdamWHyper& h);

    const ModelLayout& layout_;
    const ZeroLayout& zl_;
    StagePolicy policy_;
    ShardOptimizerOptions opt_;
    DType compute_dtype_;
    int rank_;
    int64_t n_;                          // elements of each state array
    std::vector<Segment> segments_;      // in flat order
    LedgerBuffer<float> master_;         // in memory, bf16 compute copy only
    LedgerBuffer<float> m_, v_;          // in memory
    std::unique_ptr<OffloadFile> file_;  // offloaded: [master,] m, v
};

}  // namespace zt
