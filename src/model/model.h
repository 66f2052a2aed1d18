// The decoder model (LLaMA or GPT-2 family), forward and backward, unit by unit.
//
// The model never owns parameters: for each unit it asks the engine through
// UnitHooks (hooks.h) for a typed view of the unit's full compute copy
// (acquire/release) and for the unit's gradient view, and tells it when the
// unit's gradients are final (grads_ready). It never knows whether or how the engine shards them.
// Precision: the model's dtype (f32, or bf16 for mixed precision) is that of
// its activations and of the compute copy it is lent; norms, softmax, RoPE
// and the loss compute in fp32 from that storage, and parameter gradients are
// written in the dtype of the gradient view (f32, or bf16 with a bf16 model).
// Invariant: gradients are accumulated (+=) into the engine's buffers, so
// micro-batches add up until the engine zeroes them after a step.
// Recompute (activations.h): with attn or full the backward reruns part of a
// block's forward from what the forward kept, with the same ops on the same
// inputs, so losses and gradients are bit-identical to none's.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"
#include "model/activations.h"
#include "model/config.h"
#include "model/hooks.h"
#include "model/layout.h"
#include "prof/memory.h"

namespace zt {

class DeviceCopier;  // ops/backend.h

// Seconds spent, added to by each call.
struct PassTimes {
    double forward = 0;
    double backward = 0;  // includes the fused classifier (loss forward and backward)
};

class Model {
  public:
    // Activations for micro-batches of B sequences of T tokens, in dtype
    // (f32 or bf16), are allocated once and counted under `activations`;
    // recompute (activations.h) decides how much of them the forward keeps.
    // On Device::cuda (a CUDA build) the activations are device memory and
    // every op runs on the model's own stream (stream()); the tokens come from
    // the host and the losses and logits go back to it.
    Model(const ModelConfig& cfg, int B, int T, MemoryLedger* ledger, DType dtype = DType::f32,
          Recompute recompute = Recompute::none, Device device = Device::cpu);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const { return cfg_; }
    const ModelLayout& layout() const { return layout_; }
    int batch() const { return B_; }
    int seq_len() const { return T_; }
    DType dtype() const { return dtype_; }
    Recompute recompute() const { return recompute_; }
    Device device() const { return device_; }
    // The cudaStream_t the GPU ops run on; null on the CPU.
    void* stream() const;
    // Copies to and from the model's GPU memory, ordered with its ops; null on the CPU.
    DeviceCopier* copier();
    // The activation arena's bytes; activation_bytes_for (activations.h) gives
    // the same number without building a model.
    int64_t activation_bytes() const;

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
    template <class S>
    struct Acts;
    template <class S, class Ops>
    class Pass;  // forward and backward over activations of storage type S, on backend Ops
    struct Backends;
    // Calls f(pass) with the pass of this model's dtype and device.
    template <class F>
    auto with_pass(F&& f);
    // Refuses ids outside [min_id, V): inputs need min_id 0, targets allow -1 (ignored).
    void check_tokens(const int32_t* tokens, const char* what, int32_t min_id) const;

    ModelConfig cfg_;
    ModelLayout layout_;
    std::vector<BlockSlots> blocks_;  // by layer
    EmbedSlots embed_;
    HeadSlots head_;
    int B_, T_;
    DType dtype_;
    Recompute recompute_;
    Device device_;
    std::unique_ptr<Backends> backends_;
    Arena arena_;  // the activations on the CPU
    int64_t activation_bytes_ = 0;
    MemoryLedger* ledger_ = nullptr;         // the arena's bytes are counted here
    std::unique_ptr<Acts<float>> acts_f32_;  // exactly one of the two is set
    std::unique_ptr<Acts<bf16>> acts_bf16_;
};

}  // namespace zt
