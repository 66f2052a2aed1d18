#include "zero/estimate.h"

#include <algorithm>

#include "core/check.h"
#include "model/activations.h"
#include "model/layout.h"
#include "zero/layout.h"
#include "zero/policy.h"

namespace zt {

MemoryEstimate estimate_memory(const EstimateInput& in) {
    ZT_CHECK(in.stage >= 0 && in.stage <= 3, "--zero-stage %d: expected 0 to 3", in.stage);
    ZT_CHECK(in.world >= 1, "--world-size %d: must be >= 1", in.world);
    ZT_CHECK(in.precision == "fp32" || in.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", in.precision.c_str());
    ModelLayout ml = model_layout(in.model);
    ZeroLayout zl = make_zero_layout(ml, in.world);
    const StagePolicy& policy = stage_policy(in.stage);
    const bool bf16 = in.precision == "bf16";
    const std::string grad_dtype = in.grad_dtype.empty() ? in.precision : in.grad_dtype;
    ZT_CHECK(grad_dtype == "fp32" || (grad_dtype == "bf16" && bf16),
             "gradient dtype '%s': expected fp32, or bf16 with --precision bf16",
             grad_dtype.c_str());
    const int64_t full = zl.full_padded, shard = zl.shard_total;
    const int64_t wbytes = bf16 ? 2 : 4;                     // compute copy
    const int64_t gbytes = grad_dtype == "bf16" ? 2 : 4;     // gradients
    const int64_t obytes = bf16 ? 12 : 8;                    // (fp32 master +) m + v
    MemoryEstimate e;
    e.params = wbytes * (policy.params_sharded ? shard : full);
    e.grads = gbytes * (policy.grads_sharded ? shard : full);
    e.optimizer = obytes * (policy.optimizer_sharded ? shard : full);
    if (in.offload_optimizer) {
        e.host_optimizer = e.optimizer;
        e.optimizer = 0;
    }
    if (in.micro_batch > 0 && in.seq_len > 0)
        e.activations = activation_bytes_for(in.model, in.micro_batch, in.seq_len,
                                             bf16 ? DType::bf16 : DType::f32);

    // Transient buffers at their peak (the engine's schedule, see engine.h):
    // stages 2/3 hold the gradient of the unit in backward plus the previous
    // unit's, whose reduce-scatter is in flight, and its reduced block; with
    // tied embeddings the embedding's gradient lives through the whole
    // backward. Stage 3 also holds gathered units: the one in use plus the
    // prefetch window, never more than the whole model.
    if (policy.grads_sharded) {
        int64_t largest = 0;
        for (int u = 1; u < ml.n_units(); u++) largest = std::max(largest, zl.units[size_t(u)].padded);
        int64_t g = in.world > 1 ? 2 * largest + largest / in.world : largest;
        if (in.model.tie_embeddings) g += zl.units[0].padded;
        e.buffers += gbytes * g;
    }
    if (policy.params_sharded) {
        int64_t largest = 0;
        for (const auto& u : zl.units) largest = std::max(largest, u.padded);
        // A unit is gathered at most once at a time (the tied head reuses the
        // embedding's buffer), so the gathered set never exceeds the model.
        e.buffers += wbytes * std::min(largest + in.prefetch_elements, full);
    }
    return e;
}

}  // namespace zt
