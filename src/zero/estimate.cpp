#include "zero/estimate.h"

#include <algorithm>

#include "core/check.h"
#include "model/activations.h"
#include "model/layout.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/offload.h"
#include "zero/param_store.h"
#include "zero/policy.h"

namespace zt {

MemoryEstimate estimate_memory(const EstimateInput& in) {
    ZT_USER_CHECK(in.stage >= 0 && in.stage <= 3, "--zero-stage %d: expected 0 to 3", in.stage);
    ZT_USER_CHECK(in.world >= 1, "--world-size %d: must be >= 1", in.world);
    ZT_USER_CHECK(in.precision == "fp32" || in.precision == "bf16",
                  "--precision '%s': expected fp32 or bf16", in.precision.c_str());
    ModelLayout ml = model_layout(in.model);
    ZeroLayout zl = make_zero_layout(ml, in.world);
    const StagePolicy& policy = stage_policy(in.stage);
    const bool bf16 = in.precision == "bf16";
    const std::string grad_dtype = in.grad_dtype.empty() ? in.precision : in.grad_dtype;
    ZT_USER_CHECK(grad_dtype == "fp32" || (grad_dtype == "bf16" && bf16),
                  "gradient dtype '%s': expected fp32, or bf16 with --precision bf16",
                  grad_dtype.c_str());
    const int64_t full = zl.full_padded, shard = zl.shard_total;
    const int64_t wbytes = bf16 ? 2 : 4;                  // compute copy
    const int64_t gbytes = grad_dtype == "bf16" ? 2 : 4;  // gradients
    const int64_t obytes = bf16 ? 12 : 8;                 // (fp32 master +) m + v
    MemoryEstimate e;
    e.params = wbytes * (policy.params_sharded ? shard : full);
    e.grads = gbytes * (policy.grads_sharded ? shard : full);
    e.optimizer = obytes * (policy.optimizer_sharded ? shard : full);
    ZT_USER_CHECK(in.offload_optimizer == "none" || in.offload_optimizer == "cpu" ||
                      in.offload_optimizer == "nvme",
                  "--offload-optimizer '%s': expected none, cpu or nvme",
                  in.offload_optimizer.c_str());
    if (in.offload_optimizer == "cpu") {
        e.host_optimizer = e.optimizer;
        e.optimizer = 0;
    } else if (in.offload_optimizer == "nvme") {
        const int arrays = bf16 ? 3 : 2;
        const int64_t n = policy.optimizer_sharded ? shard : full;
        e.nvme_optimizer = offload_file_bytes(arrays, n, in.offload_tile_elements);
        e.optimizer =
            offload_window_ledger_bytes(arrays, n, in.offload_tile_elements, in.offload_window);
    }
    ZT_USER_CHECK(
        in.offload_params == "none" || in.offload_params == "cpu" || in.offload_params == "nvme",
        "--offload-params '%s': expected none, cpu or nvme", in.offload_params.c_str());
    ZT_USER_CHECK(in.offload_params == "none" || in.stage == 3,
                  "--offload-params %s: parameter offload needs --zero-stage 3 (now %d)",
                  in.offload_params.c_str(), in.stage);
    const bool params_in_file = in.offload_params == "nvme";
    if (params_in_file) {
        int64_t largest_shard = 0;
        for (const auto& u : zl.units) largest_shard = std::max(largest_shard, u.shard);
        e.nvme_params = wbytes * shard;
        e.params = wbytes * largest_shard;
    }
    if (in.micro_batch > 0 && in.seq_len > 0)
        e.activations = activation_bytes_for(in.model, in.micro_batch, in.seq_len,
                                             bf16 ? DType::bf16 : DType::f32, in.recompute);

    // Transient buffers at their peak (the engine's schedule, see engine.h):
    // the reductions' staging ring and, stages 2/3, the embedding's and the
    // largest other unit's gradient buffers (grad_reducer.h); stages 1/2 the
    // gathers' staging ring (param_store.h; stage 3's at world > 1 too).
    // Both are allocated for the whole run. Stage 3 also holds gathered
    // units: the bucket of the one in use plus the prefetch window, never
    // more than the whole model.
    e.buffers += gbytes * reduce_transient_elements(zl, policy, in.reduce_bucket_elements,
                                                    GradReducerOptions().staging_slots);
    e.buffers +=
        wbytes * gather_transient_elements(zl, policy, in.gather_bucket_elements,
                                           ParamStoreOptions().staging_slots, params_in_file);
    if (policy.params_sharded) {
        int64_t largest = 0;
        for (const auto& u : zl.units) largest = std::max(largest, u.padded);
        if (in.world > 1)
            for (const Bucket& b : gather_plan(zl, in.gather_bucket_elements).buckets)
                largest = std::max(largest, b.size * in.world);
        // A unit is gathered at most once at a time (the tied head reuses the
        // embedding's buffer), so the gathered set never exceeds the model.
        e.buffers += wbytes * std::min(largest + in.prefetch_elements, full);
    }
    return e;
}

}  // namespace zt
