#include "zero/shard_optimizer.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/cast.h"

namespace zt {

ShardOptimizer::ShardOptimizer(const ModelLayout& layout, const ZeroLayout& zl,
                               const StagePolicy& policy, const ShardOptimizerOptions& opt,
                               DType compute_dtype, int rank, MemoryLedger* ledger)
    : layout_(layout), zl_(zl), policy_(policy), opt_(opt), compute_dtype_(compute_dtype),
      rank_(rank) {
    const int64_t n = policy.optimizer_sharded ? zl.shard_total : zl.full_padded;
    if (compute_dtype != DType::f32) master_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n);
    m_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n);
    v_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n);
}

OwnedRange ShardOptimizer::range(int unit) const {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.optimizer_sharded) return {0, us.numel};
    return owned_range(us, rank_);
}

int64_t ShardOptimizer::offset(int unit) const {
    const UnitShard& us = zl_.units[size_t(unit)];
    return policy_.optimizer_sharded ? us.shard_offset : us.full_offset;
}

float* ShardOptimizer::master(int unit, ParamStore& params) {
    if (compute_dtype_ == DType::f32)
        return static_cast<float*>(params.element(unit, range(unit).begin));
    return master_.data() + offset(unit);
}
float* ShardOptimizer::exp_avg(int unit) { return m_.data() + offset(unit); }
float* ShardOptimizer::exp_avg_sq(int unit) { return v_.data() + offset(unit); }

void ShardOptimizer::load_unit(int unit, const float* params, const float* exp_avg,
                               const float* exp_avg_sq) {
    const UnitShard& us = zl_.units[size_t(unit)];
    const OwnedRange r = range(unit);
    const int64_t slot = policy_.optimizer_sharded ? us.shard : us.padded;
    auto put = [&](float* dst, const float* src) {
        std::memset(dst, 0, size_t(slot) * sizeof(float));  // padding stays zero
        if (src && r.size() > 0)
            std::memcpy(dst, src + r.begin, size_t(r.size()) * sizeof(float));
    };
    if (compute_dtype_ != DType::f32) put(master_.data() + offset(unit), params);
    put(m_.data() + offset(unit), exp_avg);
    put(v_.data() + offset(unit), exp_avg_sq);
}

void ShardOptimizer::step(float lr, int64_t step, GradReducer& grads, float grad_scale,
                          ParamStore& params) {
    cpu::AdamWHyper h;
    h.lr = lr;
    h.beta1 = opt_.beta1;
    h.beta2 = opt_.beta2;
    h.eps = opt_.eps;
    h.weight_decay = opt_.weight_decay;
    h.step = step;
    const bool bf16_grads = grads.dtype() == DType::bf16;
    for (int u = 0; u < layout_.n_units(); u++) {
        const OwnedRange r = range(u);
        if (r.size() > 0) {
            // The gradient of element r.begin: the unit's start when the
            // optimizer is not sharded, this rank's block otherwise.
            char* g = static_cast<char*>(policy_.optimizer_sharded ? grads.block(u) : grads.full(u));
            float* p = master(u, params);
            float* m = exp_avg(u);
            float* v = exp_avg_sq(u);
            for (const auto& t : layout_.units[size_t(u)].tensors) {
                const int64_t a = std::max(r.begin, t.offset), b = std::min(r.end, t.offset + t.numel);
                if (a >= b) continue;
                const int64_t o = a - r.begin;
                const bool decay = t.decay || opt_.decay_all;
                if (bf16_grads)
                    cpu::adamw_update(p + o, reinterpret_cast<const bf16*>(g) + o, grad_scale,
                                      m + o, v + o, b - a, h, decay);
                else
                    cpu::adamw_update(p + o, reinterpret_cast<const float*>(g) + o, m + o, v + o,
                                      b - a, h, decay);
            }
            if (compute_dtype_ != DType::f32)
                cpu::cast_f32_to_bf16(static_cast<bf16*>(params.element(u, r.begin)), p, r.size());
        }
        // Issued in the order the next forward acquires the units.
        params.publish_block(u);
    }
}

}  // namespace zt
