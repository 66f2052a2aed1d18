#include "zero/param_store.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/cast.h"

namespace zt {

struct ParamStore::Gathered {
    TypedLedgerBuffer buf;  // (P_u) the unit's full compute copy
    Work work;              // the all-gather filling buf
    int refs = 0;           // acquires not yet released
};

namespace {

// dst (n, dtype) = src (n, f32).
void store_values(DType dtype, void* dst, const float* src, int64_t n) {
    if (dtype == DType::f32)
        std::memcpy(dst, src, size_t(n) * sizeof(float));
    else
        cpu::cast_f32_to_bf16(static_cast<bf16*>(dst), src, n);
}

}  // namespace

ParamStore::ParamStore(const ZeroLayout& zl, const StagePolicy& policy,
                       const ParamStoreOptions& opt, Communicator* comm, int rank,
                       MemoryLedger* ledger)
    : zl_(zl), policy_(policy), opt_(opt), comm_(comm), ledger_(ledger), rank_(rank),
      world_(zl.world) {
    ZT_CHECK(opt.dtype == DType::f32 || opt.dtype == DType::bf16,
             "compute copy dtype %s: expected f32 or bf16", dtype_name(opt.dtype));
    ZT_CHECK(opt.prefetch_elements >= 0, "stage3_prefetch_bucket_size %lld must be >= 0",
             (long long)opt.prefetch_elements);
    copy_ = TypedLedgerBuffer(ledger, MemCategory::params, opt.dtype,
                              policy.params_sharded ? zl.shard_total : zl.full_padded);
    pending_gather_.resize(zl.units.size());
    gathered_.resize(zl.units.size());
}

ParamStore::~ParamStore() {
    // Outstanding gathers write into buffers about to be freed.
    try {
        drain();
    } catch (...) {
    }
}

void ParamStore::drain() {
    for (auto& w : pending_gather_) w.wait();
    for (auto& g : gathered_)
        if (g) g->work.wait();
}

void* ParamStore::full_unit(int unit) { return copy_.at(zl_.units[size_t(unit)].full_offset); }

void* ParamStore::element(int unit, int64_t e) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.params_sharded) {
        pending_gather_[size_t(unit)].wait();
        return copy_.at(us.full_offset + e);
    }
    // An empty owned range may start at n_u, before the block's nominal start.
    ZT_CHECK((e >= rank_ * us.shard || e == us.numel) && e <= (rank_ + 1) * us.shard,
             "internal: element %lld of unit %d is not in rank %d's block", (long long)e, unit,
             rank_);
    return copy_.at(us.shard_offset + std::max<int64_t>(0, e - rank_ * us.shard));
}

void ParamStore::load_unit(int unit, const float* values) {
    const UnitShard& us = zl_.units[size_t(unit)];
    const size_t esize = dtype_size(opt_.dtype);
    if (!policy_.params_sharded) {
        pending_gather_[size_t(unit)].wait();
        void* dst = full_unit(unit);
        std::memset(dst, 0, size_t(us.padded) * esize);
        store_values(opt_.dtype, dst, values, us.numel);
        return;
    }
    free_gathered(unit);  // a gathered copy would be stale
    OwnedRange r = owned_range(us, rank_);
    void* dst = copy_.at(us.shard_offset);
    std::memset(dst, 0, size_t(us.shard) * esize);
    if (r.size() > 0) store_values(opt_.dtype, dst, values + r.begin, r.size());
}

void ParamStore::publish_block(int unit) {
    if (policy_.params_sharded || !policy_.optimizer_sharded || world_ == 1) return;
    const UnitShard& us = zl_.units[size_t(unit)];
    char* full = static_cast<char*>(full_unit(unit));
    pending_gather_[size_t(unit)] = comm_->all_gather_async(
        full + rank_ * us.shard * int64_t(dtype_size(opt_.dtype)), full, us.shard, opt_.dtype);
    if (!opt_.overlap_comm) pending_gather_[size_t(unit)].wait();
}

ParamStore::Gathered& ParamStore::gather_unit(int unit) {
    auto& slot = gathered_[size_t(unit)];
    if (slot) return *slot;
    const UnitShard& us = zl_.units[size_t(unit)];
    slot = std::make_unique<Gathered>();
    slot->buf = TypedLedgerBuffer(ledger_, MemCategory::buffers, opt_.dtype, us.padded);
    const void* shard = copy_.at(us.shard_offset);
    if (world_ == 1)
        std::memcpy(slot->buf.data(), shard, size_t(us.shard) * dtype_size(opt_.dtype));
    else
        slot->work = comm_->all_gather_async(shard, slot->buf.data(), us.shard, opt_.dtype);
    return *slot;
}

void ParamStore::free_gathered(int unit) {
    auto& slot = gathered_[size_t(unit)];
    if (!slot) return;
    slot->work.wait();
    slot.reset();
}

// Gathers the units that follow `unit` in the recorded order, up to the window.
void ParamStore::prefetch_after(int unit) {
    if (!trace_recorded_ || trace_.empty()) return;
    size_t n = trace_.size(), pos = n;
    for (size_t k = 0; k < n; k++) {
        size_t i = (trace_cursor_ + k) % n;
        if (trace_[i] == unit) {
            pos = i;
            break;
        }
    }
    if (pos == n) return;
    trace_cursor_ = pos + 1;
    int64_t budget = opt_.prefetch_elements;
    for (size_t j = pos + 1; j < n; j++) {
        int v = trace_[j];
        if (v == unit) continue;
        budget -= zl_.units[size_t(v)].padded;
        if (budget < 0) break;
        gather_unit(v);
    }
}

Tensor ParamStore::acquire(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.params_sharded) {
        // The all-gather of this unit's updated blocks, issued after the last
        // step, overlapped the units before it.
        pending_gather_[size_t(unit)].wait();
        pending_gather_[size_t(unit)] = Work();
        return Tensor(full_unit(unit), {us.numel}, opt_.dtype);
    }
    if (!trace_recorded_) trace_.push_back(unit);
    Gathered& g = gather_unit(unit);
    prefetch_after(unit);
    g.work.wait();
    g.refs++;
    return Tensor(g.buf.data(), {us.numel}, opt_.dtype);
}

void ParamStore::release(int unit) {
    if (!policy_.params_sharded) return;
    auto& slot = gathered_[size_t(unit)];
    ZT_CHECK(slot && slot->refs > 0, "release(%d) without a matching acquire", unit);
    if (--slot->refs == 0 && zl_.units[size_t(unit)].numel > opt_.persistence_threshold)
        free_gathered(unit);
}

void ParamStore::end_step() {
    if (!policy_.params_sharded) return;
    for (size_t u = 0; u < gathered_.size(); u++) free_gathered(int(u));
    if (!trace_.empty()) trace_recorded_ = true;
    trace_cursor_ = 0;
}

}  // namespace zt
