// The ZeRO engine: one engine, the stage is a policy (zero/policy.h).
//
// Three parts, each a policy-driven piece a later feature changes alone:
//   ParamStore      the compute copy (f32 or bf16) the model reads, replicated
//                   or gathered on acquire with prefetch (param_store.h);
//   GradReducer     gradients in the reduce dtype, reduced as units finish,
//                   accumulated into the shard (grad_reducer.h);
//   ShardOptimizer  fp32 master weights and AdamW moments of this rank's
//                   range, writing the compute copy back (shard_optimizer.h).
// The engine lends the model typed views of one unit at a time (UnitHooks),
// and between backward and update computes the global gradient norm (one
// all-reduce of the ranks' partial sums) and the clipping coefficient.
//
// Every stage moves ZeRO's volume: stages 0-2 2Ψ a step (reduce + gather or
// all-reduce), stage 3 adds the gathers of acquire. Stages 2/3 reduce-scatter
// every micro-batch, so their gradient memory stays Ψ/N whatever the
// accumulation; the cost is K reduce-scatters a step instead of one.
// Invariant: gradients accumulate (+=) across micro-batches until zero_grads().
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "model/config.h"
#include "model/hooks.h"
#include "model/layout.h"
#include "prof/memory.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/param_store.h"
#include "zero/policy.h"
#include "zero/shard_optimizer.h"

namespace zt {

struct EngineOptions {
    int stage = 0;
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float adam_eps = 1e-8f;
    float weight_decay = 0.1f;
    float grad_clip = 1.0f;  // global-norm clip; 0 = off
    bool decay_all = false;  // decay norms, biases and embeddings too
    // false: wait for each reduction as soon as it is issued (no overlap; for measurements).
    bool overlap_comm = true;
    // Stage 3: elements gathered ahead of use, and units small enough to stay gathered.
    int64_t prefetch_elements = int64_t(50) << 20;
    int64_t persistence_threshold = int64_t(1) << 16;
    // Elements per bucket of the gradient reductions (reduce_bucket_size) and
    // of the gathers after a step in stages 1/2 (allgather_bucket_size); see
    // zero/bucket.h.
    int64_t reduce_bucket_elements = int64_t(1) << 20;
    int64_t gather_bucket_elements = int64_t(1) << 20;
    // The compute copy's dtype (f32, or bf16 for mixed precision) and the
    // dtype gradients are accumulated and reduced in (bf16 needs a bf16 copy).
    DType compute_dtype = DType::f32;
    DType grad_dtype = DType::f32;
    // Non-empty: the optimizer state (fp32 master with a bf16 copy, and the
    // moments) lives in a file of this directory, one per rank, streamed
    // through a window of host buffers (zero/offload.h): the NVMe tier.
    std::string offload_dir;
    // A non-finite gradient norm skips the step (StepResult::skipped) instead
    // of failing; either way the first non-finite tensor is named.
    bool skip_nonfinite = false;
    // Non-empty (stage 3): this rank's parameter shards live in a file of this
    // directory instead of memory (zero/param_store.h).
    std::string offload_params_dir;
    int64_t offload_tile_elements = int64_t(1) << 20;
    int offload_window = 4;
};

struct StepResult {
    double grad_norm = 0;  // global norm before clipping
    bool clipped = false;
    // The norm was not finite and, with skip_nonfinite, the step was skipped
    // (no update); `nonfinite` names the tensor whose gradient first went
    // non-finite in backward order.
    bool skipped = false;
    std::string nonfinite;
};

class Engine : public UnitHooks {
  public:
    // comm may be null for a single-process engine (world size 1, no communication).
    Engine(const ModelConfig& cfg, const EngineOptions& opt, Communicator* comm,
           MemoryLedger* ledger);
    ~Engine() override;

    const ModelConfig& config() const { return cfg_; }
    const ModelLayout& layout() const { return layout_; }
    const ZeroLayout& zero_layout() const { return zl_; }
    const StagePolicy& policy() const { return policy_; }
    int64_t numel() const { return layout_.total_numel; }
    int stage() const { return opt_.stage; }
    int rank() const { return rank_; }
    int world() const { return world_; }
    DType compute_dtype() const { return opt_.compute_dtype; }
    DType grad_dtype() const { return opt_.grad_dtype; }

    // The collectives of the reductions and the gathers after the update that
    // one step with grad_accum micro-batches issues, by op: the bucket plans'
    // counts (stage 3's gathers on use are not included), plus the gradient
    // norm's all-reduce.
    std::array<int64_t, size_t(CommOp::count)> planned_calls(int grad_accum) const;

    // Deterministic initialisation from the seed; identical at every world size.
    void init_params(uint64_t seed);

    // Which micro-batch (0..K-1) the next backward belongs to: stages 0/1
    // communicate only at the last one.
    void begin_micro(int micro, int grad_accum);

    // UnitHooks
    Tensor acquire(int unit) override;
    void release(int unit) override;
    Tensor unit_grads(int unit) override;
    void grads_ready(int unit) override;

    void zero_grads();
    // Waits for outstanding reductions, clips by the global norm, AdamW on this
    // rank's range with learning rate lr (step is 1-based), and writes back
    // (and, stages 1/2, all-gathers) the compute copy.
    StepResult step(float lr, int64_t step);
    // Collective: the tensor whose gradient first holds a non-finite value in
    // backward order (the head first), as "unit U, tensor NAME", or "" when
    // every gradient is finite; and the first whose weights do, in forward order.
    std::string first_nonfinite_gradient();
    std::string first_nonfinite_weight();

    // Full fp32 master parameters in model order (no padding): a collective
    // when the optimizer is sharded.
    std::vector<float> full_params();
    // The fp32 parameters in model order where the engine already holds them
    // so (one process, fp32, the compute copy replicated: its units are
    // unpadded and contiguous); null otherwise (use full_params()). Valid
    // until the next step or load.
    const float* resident_params();
    // Replaces all parameters from a model-order fp32 array (every rank passes the same).
    void load_full_params(const float* params);

    // Checkpoint state. Rank r owns elements [r s_u, min((r+1) s_u, n_u)) of
    // unit u at every stage (possibly none): each rank saves exactly its owned
    // elements of the fp32 master parameters and AdamW moments, so the ranks'
    // files of a checkpoint tile every unit once whatever the stage and precision.
    OwnedRange owned_range(int unit) const;
    // Copies this rank's owned elements of unit u: params, exp_avg, exp_avg_sq,
    // each (owned_range(u).size(),). Call between steps.
    void save_owned_state(int unit, float* params, float* exp_avg, float* exp_avg_sq);
    // Sets unit u from the full unit (n_u,) of params and moments; each rank
    // keeps what its stage holds. Call between steps; every rank passes the same.
    void load_unit_state(int unit, const float* params, const float* exp_avg,
                         const float* exp_avg_sq);

    // The NVMe tier's file, or null when the optimizer state is in memory.
    const OffloadFile* optimizer_offload() const { return optimizer_->offload(); }

    // Single-process stage-0 fp32 access to the resident buffers (tests).
    float* unit_params(int unit);
    float* all_params();
    float* all_grads();

  private:
    std::string first_nonfinite(const std::vector<int>& units, DType dtype,
                                const std::function<const void*(int)>& data,
                                const std::function<OwnedRange(int)>& range);
    void check_unit(int unit) const;
    void check_direct_access(const char* what) const;

    ModelConfig cfg_;
    ModelLayout layout_;
    EngineOptions opt_;
    StagePolicy policy_;
    Communicator* comm_;
    int rank_ = 0, world_ = 1;
    ZeroLayout zl_;
    std::unique_ptr<ParamStore> params_;
    std::unique_ptr<GradReducer> grads_;
    std::unique_ptr<ShardOptimizer> optimizer_;
};

}  // namespace zt
