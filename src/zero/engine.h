// The ZeRO engine: one engine, the stage is a policy.
//
// It owns parameters, gradients and AdamW state, lends the model full views
// of one unit at a time (UnitHooks), reduces each unit's gradient as soon as
// its backward finishes, and runs the optimizer on this rank's shard.
//
//   stage | params          | grads                     | AdamW m, v | after backward
//   0     | full            | full, all-reduce (avg)    | full       | every rank updates all
//   1     | full            | full, reduce-scatter      | shard      | update shard, all-gather params
//   2     | full            | shard, reduce-scatter     | shard      | update shard, all-gather params
//   3     | shard           | shard, reduce-scatter     | shard      | update shard; acquire gathers
//
// Stages 1/2 issue the all-gather of updated parameters at the end of step()
// and wait for a unit's only when the next forward acquires it.
// Stages 0/1 keep full gradients and reduce once, at the last micro-batch of a
// step; stage 1 reduce-scatters in place (its other blocks are then stale and
// unused), so stages 0-2 all move 2Ψ a step: ZeRO's volume for data parallelism. Stages 2/3 reduce-scatter every micro-batch into the gradient shard
// (the shard accumulates; no full gradient survives a unit's backward), so
// their gradient memory stays 4Ψ/N whatever the accumulation; the cost is K
// reduce-scatters a step instead of one. Stage 3 gathers a unit on acquire,
// prefetching the units that follow in the order recorded during the first
// step, and frees it on release unless it is under the persistence threshold.
// Invariant: gradients accumulate (+=) across micro-batches until zero_grads().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "model/layout.h"
#include "model/model.h"
#include "ops/adamw.h"
#include "prof/memory.h"
#include "zero/layout.h"

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
};

struct StepResult {
    double grad_norm = 0;  // global norm before clipping
    bool clipped = false;
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
    int64_t numel() const { return layout_.total_numel; }
    int stage() const { return opt_.stage; }
    int rank() const { return rank_; }
    int world() const { return world_; }

    // Deterministic initialisation from the seed; identical at every world size.
    void init_params(uint64_t seed);

    // Which micro-batch (0..K-1) the next backward belongs to: stages 0/1
    // communicate only at the last one.
    void begin_micro(int micro, int grad_accum);

    // UnitHooks
    const float* acquire(int unit) override;
    void release(int unit) override;
    float* unit_grads(int unit) override;
    void grads_ready(int unit) override;

    void zero_grads();
    // Waits for outstanding reductions, clips by the global norm, AdamW on this
    // rank's shard with learning rate lr (step is 1-based), and (stages 1/2)
    // all-gathers the updated parameters.
    StepResult step(float lr, int64_t step);

    // Full parameters in model order (no padding): a collective in stage 3.
    std::vector<float> full_params();
    // Replaces all parameters from a model-order array (every rank passes the same).
    void load_full_params(const float* params);

    // Checkpoint state. Rank r owns elements [r s_u, min((r+1) s_u, n_u)) of
    // unit u at every stage (possibly none): each rank saves exactly its owned
    // elements of the fp32 parameters and AdamW moments, so the ranks' files
    // of a checkpoint tile every unit once whatever the stage.
    OwnedRange owned_range(int unit) const;
    // Copies this rank's owned elements of unit u: params, exp_avg, exp_avg_sq,
    // each (owned_range(u).size(),). Call between steps.
    void save_owned_state(int unit, float* params, float* exp_avg, float* exp_avg_sq);
    // Sets unit u from the full unit (n_u,) of params and moments; each rank
    // keeps what its stage holds. Call between steps; every rank passes the same.
    void load_unit_state(int unit, const float* params, const float* exp_avg,
                         const float* exp_avg_sq);

    // Single-process stage-0 access to the resident buffers (tests).
    float* unit_params(int unit);
    float* all_params();
    float* all_grads();

private:
    struct Gathered;  // a stage-3 unit gathered in full
    struct PendingReduce;

    void check_unit(int unit) const;
    float* full_unit(int unit);  // stages 0-2: unit's region in params_full_
    // Waits for the reduce-scatter in flight (if any) and adds its block to the shard.
    void finish_in_flight();
    Gathered& gather_unit(int unit);
    void prefetch_after(int unit);
    void free_gathered(int unit);
    void adamw_unit_range(int unit, float* p, const float* g, float* m, float* v, int64_t begin,
                          int64_t end, const cpu::AdamWHyper& h);

    ModelConfig cfg_;
    ModelLayout layout_;
    EngineOptions opt_;
    Communicator* comm_;
    MemoryLedger* ledger_;
    int rank_ = 0, world_ = 1;
    ZeroLayout zl_;
    int micro_ = 0, grad_accum_ = 1;

    LedgerBuffer<float> params_full_;  // (full_padded) stages 0-2
    LedgerBuffer<float> params_shard_; // (shard_total) stage 3
    LedgerBuffer<float> grads_full_;   // (full_padded) stages 0-1
    LedgerBuffer<float> grads_shard_;  // (shard_total) stages 2-3
    LedgerBuffer<float> adam_m_;       // (full_padded) stage 0, (shard_total) stages 1-3
    LedgerBuffer<float> adam_v_;

    std::vector<Work> pending_param_gather_;  // stages 1/2, by unit: gathers after a step
    std::vector<Work> pending_grad_reduce_;  // stages 0/1: all-reduce (0), reduce-scatter (1)
    std::unique_ptr<PendingReduce> in_flight_;  // stages 2/3: at most one reduction at a time
    std::vector<std::unique_ptr<LedgerBuffer<float>>> unit_grad_bufs_;  // stages 2/3
    std::vector<std::unique_ptr<Gathered>> gathered_;     // stage 3, by unit
    std::vector<int> trace_;        // stage 3: order of acquires in a step
    bool trace_recorded_ = false;
    size_t trace_cursor_ = 0;
};

}  // namespace zt
