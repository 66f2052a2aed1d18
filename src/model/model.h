// The decoder model (LLaMA or GPT-2 family), forward and backward, unit by unit.
//
// The model never owns parameters: for each unit it asks the engine through
// UnitHooks for a view of the unit's full parameters (acquire/release) and for
// the unit's gradient buffer, and tells it when the unit's gradients are final
// (grads_ready). It never knows whether or how the engine shards them.
// Invariant: gradients are accumulated (+=) into the engine's buffers, so
// micro-batches add up until the engine zeroes them after a step.
#pragma once

#include <cstdint>
#include <memory>

#include "core/arena.h"
#include "model/config.h"
#include "model/layout.h"
#include "prof/memory.h"

namespace zt {

// Implemented by the ZeRO engine.
class UnitHooks {
public:
    virtual ~UnitHooks() = default;
    // Full parameters of the unit, valid until release(unit).
    virtual const float* acquire(int unit) = 0;
    virtual void release(int unit) = 0;
    // Full-size gradient buffer of the unit to accumulate into during backward
    // (needs no acquire: the embedding's backward reads no parameters).
    virtual float* unit_grads(int unit) = 0;
    // The unit's gradient for this micro-batch is complete.
    virtual void grads_ready(int unit) = 0;
};

// Seconds spent, added to by each call.
struct PassTimes {
    double forward = 0;
    double backward = 0;  // includes the fused classifier (loss forward and backward)
};

class Model {
public:
    // Activations for micro-batches of B sequences of T tokens are allocated
    // once and counted under `activations` in the ledger.
    Model(const ModelConfig& cfg, int B, int T, MemoryLedger* ledger);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const { return cfg_; }
    const ModelLayout& layout() const { return layout_; }
    int batch() const { return B_; }
    int seq_len() const { return T_; }
    int64_t activation_bytes() const;
    // The same number without building a model (estimates).
    static int64_t activation_bytes_for(const ModelConfig& cfg, int B, int T);

    // One training micro-batch: forward, loss, backward with d(loss_i) = loss_scale
    // for every position i. inputs, targets (B, T). Returns the mean loss over the
    // positions with a target >= 0.
    double forward_backward(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets,
                            float loss_scale, PassTimes* times = nullptr);

    // Forward and loss only (evaluation). Returns the mean loss.
    double forward_loss(UnitHooks& hooks, const int32_t* inputs, const int32_t* targets);

    // logits (B, T, V) of the inputs (B, T) (tests, generation).
    void forward_logits(UnitHooks& hooks, const int32_t* inputs, float* logits);

private:
    struct Acts;
    // Refuses ids outside [min_id, V): inputs need min_id 0, targets allow -1 (ignored).
    void check_tokens(const int32_t* tokens, const char* what, int32_t min_id) const;
    void forward_blocks(UnitHooks& hooks, const int32_t* inputs);
    void block_forward(int layer, const float* params);
    void block_backward(int layer, const float* params, float* grads);
    // Final norm on the last residual; returns pointer to normalised rows (B*T, C).
    const float* final_norm_forward(const float* head_params);
    void final_norm_backward(const float* head_params, float* head_grads, const float* dnorm);
    double head_loss(UnitHooks& hooks, const int32_t* targets, float loss_scale, bool backward);

    ModelConfig cfg_;
    ModelLayout layout_;
    int B_, T_;
    Arena arena_;
    MemoryLedger* ledger_ = nullptr;  // the arena's bytes are counted here
    std::unique_ptr<Acts> acts_;
};

}  // namespace zt
