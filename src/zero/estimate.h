// Memory estimate per rank for a model, world size, ZeRO stage and precision:
// the same formulas the engine's ledger measures (DESIGN.md's ledger rule),
// so `zerotrain estimate` and a run's mem_bytes can be compared directly.
#pragma once

#include <cstdint>
#include <string>

#include "model/activations.h"
#include "model/config.h"

namespace zt {

struct EstimateInput {
    ModelConfig model;
    int world = 1;
    int stage = 0;
    std::string precision = "fp32";  // fp32 | bf16 (bf16: fp32 master weights and moments)
    // Dtype gradients are accumulated and reduced in: "" is the precision's
    // own (bf16 for bf16, fp32 for fp32); "fp32" with bf16 training.
    std::string grad_dtype;
    int micro_batch = 0;  // 0: no activations estimated
    int seq_len = 0;
    // Where the optimizer state (and fp32 master weights) lives: none (with the
    // model), cpu (host memory), nvme (a file, through a window of host buffers).
    std::string offload_optimizer = "none";
    int64_t offload_tile_elements = int64_t(1) << 20;
    int offload_window = 4;
    // Stage 3's parameter shards: none (in memory), cpu (host memory, the same
    // on a CPU run), nvme (a file; params holds the one-unit buffer).
    std::string offload_params = "none";
    Recompute recompute = Recompute::none;
    int64_t prefetch_elements = int64_t(50) << 20;      // stage 3 gather-ahead window
    int64_t reduce_bucket_elements = int64_t(1) << 20;  // reduce_bucket_size
    int64_t gather_bucket_elements = int64_t(1) << 20;  // allgather_bucket_size
};

struct MemoryEstimate {
    int64_t params = 0, grads = 0, optimizer = 0, activations = 0, buffers = 0;
    int64_t host_optimizer = 0;  // offload cpu: bytes kept in host memory instead
    int64_t nvme_optimizer = 0;  // offload nvme: bytes of the file (optimizer holds the window)
    int64_t nvme_params = 0;     // offload params nvme: bytes of the shards' file
    int64_t peak() const { return params + grads + optimizer + activations + buffers; }
};

MemoryEstimate estimate_memory(const EstimateInput& in);

}  // namespace zt
