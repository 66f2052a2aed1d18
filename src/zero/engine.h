// The ZeRO engine: owns parameters, gradients and optimizer state, lends the
// model views of whole units (UnitHooks) and runs the optimizer step.
//
// This build holds everything replicated in one process (stage 0, world 1):
// acquire returns the resident unit, grads_ready has nothing to communicate.
// Stages 1-3 shard the same flat per-unit buffers across ranks; until that
// lands the trainer refuses them rather than silently running stage 0.
// Invariant: gradients accumulate across micro-batches until zero_grads().
#pragma once

#include <cstdint>
#include <vector>

#include "model/layout.h"
#include "model/model.h"
#include "ops/adamw.h"
#include "prof/memory.h"

namespace zt {

struct EngineOptions {
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float adam_eps = 1e-8f;
    float weight_decay = 0.1f;
    float grad_clip = 1.0f;  // global-norm clip; 0 = off
    bool decay_all = false;  // decay norms, biases and embeddings too
};

struct StepResult {
    double grad_norm = 0;  // global norm before clipping
    bool clipped = false;
};

class Engine : public UnitHooks {
public:
    Engine(const ModelConfig& cfg, const EngineOptions& opt, MemoryLedger* ledger);

    const ModelLayout& layout() const { return layout_; }
    int64_t numel() const { return layout_.total_numel; }

    // Deterministic initialisation of every unit from the seed.
    void init_params(uint64_t seed);

    // UnitHooks
    const float* acquire(int unit) override;
    void release(int unit) override;
    float* unit_grads(int unit) override;
    void grads_ready(int unit) override;

    void zero_grads();
    // Global-norm clip, then AdamW with learning rate lr; step is 1-based.
    StepResult step(float lr, int64_t step);

    // Direct access to the full buffers (tests, loading weights).
    float* unit_params(int unit);
    float* all_params() { return params_.data(); }
    float* all_grads() { return grads_.data(); }

private:
    void check_unit(int unit) const;

    ModelConfig cfg_;
    ModelLayout layout_;
    EngineOptions opt_;
    std::vector<int64_t> unit_offset_;  // (n_units) start of each unit in the flat buffers
    LedgerBuffer<float> params_;        // (numel)
    LedgerBuffer<float> grads_;         // (numel)
    LedgerBuffer<float> adam_m_;        // (numel)
    LedgerBuffer<float> adam_v_;        // (numel)
};

}  // namespace zt
