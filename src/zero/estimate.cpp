#include "zero/estimate.h"

#include <algorithm>

#include "core/check.h"
#include "model/layout.h"
#include "model/model.h"
#include "zero/layout.h"

namespace zt {

MemoryEstimate estimate_memory(const EstimateInput& in) {
    ZT_CHECK(in.stage >= 0 && in.stage <= 3, "--zero-stage %d: expected 0 to 3", in.stage);
    ZT_CHECK(in.world >= 1, "--world-size %d: must be >= 1", in.world);
    ZT_CHECK(in.precision == "fp32" || in.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", in.precision.c_str());
    ModelLayout ml = model_layout(in.model);
    ZeroLayout zl = make_zero_layout(ml, in.world);
    const bool bf16 = in.precision == "bf16";
    const int64_t full = zl.full_padded, shard = zl.shard_total;
    const int64_t wbytes = bf16 ? 2 : 4;            // working params and grads
    const int64_t obytes = bf16 ? 12 : 8;           // (master +) m + v
    MemoryEstimate e;
    e.params = wbytes * (in.stage == 3 ? shard : full);
    e.grads = wbytes * (in.stage >= 2 ? shard : full);
    e.optimizer = obytes * (in.stage == 0 ? full : shard);
    if (in.offload_optimizer) {
        e.host_optimizer = e.optimizer;
        e.optimizer = 0;
    }
    if (in.micro_batch > 0 && in.seq_len > 0)
        e.activations = Model::activation_bytes_for(in.model, in.micro_batch, in.seq_len);

    // Transient buffers at their peak (the engine's schedule, see engine.h):
    // stages 2/3 hold the gradient of the unit in backward plus the previous
    // unit's, whose reduce-scatter is in flight, and its reduced block; with
    // tied embeddings the embedding's gradient lives through the whole
    // backward. Stage 3 also holds gathered units: the one in use plus the
    // prefetch window, never more than the whole model.
    if (in.stage >= 2) {
        int64_t largest = 0;
        for (int u = 1; u < ml.n_units(); u++) largest = std::max(largest, zl.units[size_t(u)].padded);
        int64_t g = in.world > 1 ? 2 * largest + largest / in.world : largest;
        if (in.model.tie_embeddings) g += zl.units[0].padded;
        e.buffers += wbytes * g;
    }
    if (in.stage == 3) {
        int64_t largest = 0;
        for (const auto& u : zl.units) largest = std::max(largest, u.padded);
        // A unit is gathered at most once at a time (the tied head reuses the
        // embedding's buffer), so the gathered set never exceeds the model.
        e.buffers += wbytes * std::min(largest + in.prefetch_elements, full);
    }
    return e;
}

}  // namespace zt
