#include "zero/shard_optimizer.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"

namespace zt {

ShardOptimizer::ShardOptimizer(const ModelLayout& layout, const ZeroLayout& zl,
                               const StagePolicy& policy, const ShardOptimizerOptions& opt,
                               DType compute_dtype, int rank, MemoryLedger* ledger)
    : layout_(layout),
      zl_(zl),
      policy_(policy),
      opt_(opt),
      compute_dtype_(compute_dtype),
      rank_(rank) {
    n_ = policy.optimizer_sharded ? zl.shard_total : zl.full_padded;
    const bool own_master = compute_dtype != DType::f32;
    if (!opt.offload_file.empty()) {
        file_ =
            std::make_unique<OffloadFile>(opt.offload_file, own_master ? 3 : 2, n_,
                                          opt.offload_tile_elements, opt.offload_window, ledger);
    } else {
        if (own_master) master_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n_);
        m_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n_);
        v_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, n_);
    }
    for (int u = 0; u < layout.n_units(); u++) {
        const OwnedRange r = range(u);
        for (const auto& t : layout.units[size_t(u)].tensors) {
            const int64_t a = std::max(r.begin, t.offset), b = std::min(r.end, t.offset + t.numel);
            if (a < b)
                segments_.push_back(
                    {u, a, offset(u) + (a - r.begin), b - a, t.decay || opt.decay_all});
        }
    }
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

void ShardOptimizer::read_state(int unit, int64_t skip, int64_t n, float* master, float* exp_avg,
                                float* exp_avg_sq, ParamStore& params) {
    const OwnedRange r = range(unit);
    ZT_CHECK(skip >= 0 && n >= 0 && skip + n <= r.size(),
             "internal: optimizer state [%lld, %lld) outside unit %d's range of %lld",
             (long long)skip, (long long)(skip + n), unit, (long long)r.size());
    if (n == 0) return;
    const bool own_master = compute_dtype_ != DType::f32;
    if (master && !own_master) {
        std::memcpy(master, params.element(unit, r.begin + skip), size_t(n) * sizeof(float));
        master = nullptr;
    }
    const int64_t flat = offset(unit) + skip;
    if (file_) {
        float* dst[3] = {master, exp_avg, exp_avg_sq};
        file_->read(flat, n, own_master ? dst : dst + 1);
        return;
    }
    auto get = [&](float* out, const LedgerBuffer<float>& from) {
        if (out) std::memcpy(out, from.data() + flat, size_t(n) * sizeof(float));
    };
    get(master, master_);
    get(exp_avg, m_);
    get(exp_avg_sq, v_);
}

void ShardOptimizer::load_unit(int unit, const float* params, const float* exp_avg,
                               const float* exp_avg_sq) {
    const UnitShard& us = zl_.units[size_t(unit)];
    const OwnedRange r = range(unit);
    const bool own_master = compute_dtype_ != DType::f32;
    auto at = [&](const float* full) { return full ? full + r.begin : nullptr; };
    if (file_) {
        if (r.size() == 0) return;
        const float* src[3] = {at(params), at(exp_avg), at(exp_avg_sq)};
        file_->write(offset(unit), r.size(), own_master ? src : src + 1);
        return;
    }
    const int64_t slot = policy_.optimizer_sharded ? us.shard : us.padded;
    auto put = [&](float* dst, const float* src) {
        std::memset(dst, 0, size_t(slot) * sizeof(float));  // padding stays zero
        if (src && r.size() > 0) std::memcpy(dst, src, size_t(r.size()) * sizeof(float));
    };
    if (own_master) put(master_.data() + offset(unit), at(params));
    put(m_.data() + offset(unit), at(exp_avg));
    put(v_.data() + offset(unit), at(exp_avg_sq));
}

void ShardOptimizer::load_master(int unit, const float* params, ParamStore& store) {
    const OwnedRange r = range(unit);
    if (compute_dtype_ == DType::f32 || r.size() == 0) return;
    if (!file_) {
        std::memcpy(master_.data() + offset(unit), params + r.begin,
                    size_t(r.size()) * sizeof(float));
        return;
    }
    std::vector<float> m(size_t(r.size())), v(size_t(r.size()));
    read_state(unit, 0, r.size(), nullptr, m.data(), v.data(), store);
    const float* src[3] = {params + r.begin, m.data(), v.data()};
    file_->write(offset(unit), r.size(), src);
}

void ShardOptimizer::update(const Segment& s, int64_t flat, int64_t n, float* master, float* m,
                            float* v, GradReducer& grads, float grad_scale, ParamStore& params,
                            const cpu::AdamWHyper& h) {
    const int64_t element = s.element + (flat - s.flat);
    const OwnedRange r = range(s.unit);
    // The gradient of element r.begin: the unit's start when the optimizer
    // is not sharded, this rank's block otherwise.
    char* g =
        static_cast<char*>(policy_.optimizer_sharded ? grads.block(s.unit) : grads.full(s.unit));
    const int64_t o = element - r.begin;
    bf16* compute = nullptr;
    if (compute_dtype_ == DType::f32)
        master = static_cast<float*>(params.element(s.unit, element));
    else
        compute = static_cast<bf16*>(params.element(s.unit, element));
    if (grads.dtype() == DType::bf16)
        cpu::adamw_step(master, reinterpret_cast<const bf16*>(g) + o, grad_scale, m, v, compute, n,
                        h, s.decay);
    else
        cpu::adamw_step(master, reinterpret_cast<const float*>(g) + o, m, v, compute, n, h,
                        s.decay);
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
    const bool own_master = compute_dtype_ != DType::f32;
    // Units are published, in forward order, once their state is updated:
    // unit u is done when the update has passed the end of its slot.
    int next_publish = 0;
    auto publish_through = [&](int64_t flat_done) {
        while (next_publish < layout_.n_units()) {
            const UnitShard& us = zl_.units[size_t(next_publish)];
            const int64_t end =
                offset(next_publish) + (policy_.optimizer_sharded ? us.shard : us.padded);
            if (end > flat_done) break;
            params.publish_block(next_publish++);
        }
    };
    if (!file_) {
        for (const Segment& s : segments_) {
            publish_through(s.flat);
            float* master = own_master ? master_.data() + s.flat : nullptr;
            update(s, s.flat, s.size, master, m_.data() + s.flat, v_.data() + s.flat, grads,
                   grad_scale, params, h);
        }
        publish_through(n_);
        return;
    }
    size_t first = 0;  // the first segment not wholly before the tile
    file_->stream([&](int64_t begin, int64_t count, float* const* arrays) {
        const int64_t end = begin + count;
        float* const* mv = own_master ? arrays + 1 : arrays;
        while (first < segments_.size() && segments_[first].flat + segments_[first].size <= begin)
            first++;
        for (size_t k = first; k < segments_.size() && segments_[k].flat < end; k++) {
            const Segment& s = segments_[k];
            const int64_t a = std::max(begin, s.flat), b = std::min(end, s.flat + s.size);
            float* master = own_master ? arrays[0] + (a - begin) : nullptr;
            update(s, a, b - a, master, mv[0] + (a - begin), mv[1] + (a - begin), grads, grad_scale,
                   params, h);
        }
        publish_through(end);
    });
    publish_through(n_);
}

}  // namespace zt
