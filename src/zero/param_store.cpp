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

bool gathers_after_step(const StagePolicy& policy, int world) {
    return !policy.params_sharded && policy.optimizer_sharded && world > 1;
}

}  // namespace

BucketPlan gather_plan(const ZeroLayout& zl, int64_t bucket_elements) {
    ZT_CHECK(bucket_elements >= 1, "allgather_bucket_size %lld: must be >= 1",
             (long long)bucket_elements);
    std::vector<int64_t> span;
    std::vector<int> order;
    for (size_t u = 0; u < zl.units.size(); u++) {
        span.push_back(zl.units[u].shard);
        order.push_back(int(u));
    }
    return plan_buckets(span, order, sharded_bucket_capacity(bucket_elements, zl.world),
                        /*split_units=*/false);
}

bool gathered_in_place(const ZeroLayout& zl, const Bucket& b) {
    return b.segments.size() == 1 && b.segments[0].begin == 0 &&
           b.segments[0].end == zl.units[size_t(b.segments[0].unit)].shard;
}

namespace {

// Staging slots and the largest staged bucket of a gather plan.
std::pair<int, int64_t> gather_staging(const ZeroLayout& zl, const BucketPlan& plan,
                                       int max_slots) {
    int staged = 0;
    int64_t largest = 0;
    for (const auto& b : plan.buckets) {
        if (gathered_in_place(zl, b)) continue;
        staged++;
        largest = std::max(largest, b.size);
    }
    return {std::min(std::max(1, max_slots), staged), largest};
}

}  // namespace

int64_t gather_transient_elements(const ZeroLayout& zl, const StagePolicy& policy,
                                  int64_t bucket_elements, int max_slots) {
    if (!gathers_after_step(policy, zl.world)) return 0;
    auto [slots, largest] = gather_staging(zl, gather_plan(zl, bucket_elements), max_slots);
    return int64_t(slots) * (zl.world + 1) * largest;
}

ParamStore::ParamStore(const ZeroLayout& zl, const StagePolicy& policy,
                       const ParamStoreOptions& opt, Communicator* comm, int rank,
                       MemoryLedger* ledger)
    : zl_(zl),
      policy_(policy),
      opt_(opt),
      comm_(comm),
      ledger_(ledger),
      rank_(rank),
      world_(zl.world) {
    ZT_CHECK(opt.dtype == DType::f32 || opt.dtype == DType::bf16,
             "compute copy dtype %s: expected f32 or bf16", dtype_name(opt.dtype));
    ZT_CHECK(opt.prefetch_elements >= 0, "stage3_prefetch_bucket_size %lld must be >= 0",
             (long long)opt.prefetch_elements);
    copy_ = TypedLedgerBuffer(ledger, MemCategory::params, opt.dtype,
                              policy.params_sharded ? zl.shard_total : zl.full_padded);
    pending_gather_.resize(zl.units.size());
    gathered_.resize(zl.units.size());
    last_staged_.assign(zl.units.size(), -1);
    if (gathers_after_step(policy, world_)) {
        gather_plan_ = gather_plan(zl, opt.gather_bucket_elements);
        for (size_t b = 0; b < gather_plan_.buckets.size(); b++) {
            if (gathered_in_place(zl, gather_plan_.buckets[b])) continue;
            for (const auto& s : gather_plan_.buckets[b].segments)
                last_staged_[size_t(s.unit)] = int(b);
        }
        auto [slots, largest] = gather_staging(zl, gather_plan_, opt.staging_slots);
        if (slots > 0)
            ring_ = StagingRing(slots, largest, world_ * largest, opt.dtype, ledger,
                                [this](int b, StagingRing::Slot& s) { unpack(b, s); });
    }
}

int64_t ParamStore::publish_collectives() const {
    return gathers_after_step(policy_, world_) ? int64_t(gather_plan_.buckets.size()) : 0;
}

void ParamStore::wait_published(int unit) {
    pending_gather_[size_t(unit)].wait();
    pending_gather_[size_t(unit)] = Work();
    if (last_staged_[size_t(unit)] >= 0) ring_.complete_until(last_staged_[size_t(unit)]);
}

// Every rank's blocks of the bucket, from the staging slot into the full units.
void ParamStore::unpack(int b, StagingRing::Slot& slot) {
    const Bucket& bucket = gather_plan_.buckets[size_t(b)];
    const size_t esize = dtype_size(opt_.dtype);
    for (const BucketSegment& s : bucket.segments) {
        const UnitShard& us = zl_.units[size_t(s.unit)];
        for (int r = 0; r < world_; r++)
            std::memcpy(byte_at(full_unit(s.unit), r * us.shard + s.begin, esize),
                        byte_at(slot.recv.data(), r * bucket.size + s.offset, esize),
                        size_t(s.size()) * esize);
    }
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
    if (!ring_.empty()) ring_.drain();
    for (auto& g : gathered_)
        if (g) g->work.wait();
}

void* ParamStore::full_unit(int unit) {
    return copy_.at(zl_.units[size_t(unit)].full_offset);
}

void* ParamStore::element(int unit, int64_t e) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.params_sharded) {
        wait_published(unit);
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
        wait_published(unit);
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
    if (!gathers_after_step(policy_, world_)) return;
    if (unit == 0 && !ring_.empty()) ring_.drain();  // the last step's gathers are done
    const UnitShard& us = zl_.units[size_t(unit)];
    const size_t esize = dtype_size(opt_.dtype);
    char* full = static_cast<char*>(full_unit(unit));
    for (auto [b, k] : gather_plan_.segments_of[size_t(unit)]) {
        const Bucket& bucket = gather_plan_.buckets[size_t(b)];
        if (gathered_in_place(zl_, bucket)) {
            pending_gather_[size_t(unit)] = comm_->all_gather_async(
                full + rank_ * us.shard * int64_t(esize), full, us.shard, opt_.dtype);
            if (!opt_.overlap_comm) pending_gather_[size_t(unit)].wait();
            continue;
        }
        const BucketSegment& s = bucket.segments[size_t(k)];
        if (k == 0) filling_ = &ring_.next();
        std::memcpy(byte_at(filling_->send.data(), s.offset, esize),
                    full + (rank_ * us.shard + s.begin) * int64_t(esize), size_t(s.size()) * esize);
        if (size_t(k) + 1 < bucket.segments.size()) continue;
        Work w = comm_->all_gather_async(filling_->send.data(), filling_->recv.data(), bucket.size,
                                         opt_.dtype);
        filling_ = nullptr;
        ring_.issued(b, std::move(w));
        if (!opt_.overlap_comm) ring_.drain();
    }
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
        // The all-gathers of this unit's updated blocks, issued after the
        // last step, overlapped the units before it.
        wait_published(unit);
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
