#include "zero/grad_reducer.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/mlp.h"

namespace zt {

namespace {

// y (n) += x (n) in dtype.
void accumulate(DType dtype, void* y, const void* x, int64_t n) {
    if (dtype == DType::f32)
        cpu::add_inplace(static_cast<float*>(y), static_cast<const float*>(x), n);
    else
        cpu::add_inplace(static_cast<bf16*>(y), static_cast<const bf16*>(x), n);
}

// The largest padded unit other than the embedding (unit 0): the size of the
// buffer every other unit's transient gradient shares.
int64_t largest_other_unit(const ZeroLayout& zl) {
    int64_t n = 0;
    for (size_t u = 1; u < zl.units.size(); u++) n = std::max(n, zl.units[u].padded);
    return n;
}

std::vector<int> backward_order(const ZeroLayout& zl) {
    std::vector<int> order;
    for (int u = int(zl.units.size()) - 1; u >= 0; u--) order.push_back(u);
    return order;
}

}  // namespace

BucketPlan reduce_plan(const ZeroLayout& zl, const StagePolicy& policy, int64_t bucket_elements) {
    ZT_CHECK(bucket_elements >= 1, "reduce_bucket_size %lld: must be >= 1",
             (long long)bucket_elements);
    std::vector<int64_t> span;
    for (const auto& u : zl.units) span.push_back(policy.optimizer_sharded ? u.shard : u.padded);
    const int64_t cap = policy.optimizer_sharded
                            ? sharded_bucket_capacity(bucket_elements, zl.world)
                            : bucket_elements;
    return plan_buckets(span, backward_order(zl), cap);
}

int reduce_staging_slots(const BucketPlan& plan, const StagePolicy& policy, int world,
                         int max_slots) {
    if (world == 1 || !policy.optimizer_sharded) return 0;
    return std::min<int>(std::max(1, max_slots), int(plan.buckets.size()));
}

int64_t reduce_transient_elements(const ZeroLayout& zl, const StagePolicy& policy,
                                  int64_t bucket_elements, int max_slots) {
    const BucketPlan plan = reduce_plan(zl, policy, bucket_elements);
    int64_t n = int64_t(reduce_staging_slots(plan, policy, zl.world, max_slots)) * (zl.world + 1) *
                plan.largest;
    if (policy.grads_sharded) {
        n += zl.units[0].padded + largest_other_unit(zl);
    }
    return n;
}

GradReducer::GradReducer(const ZeroLayout& zl, const StagePolicy& policy,
                         const GradReducerOptions& opt, Communicator* comm, int rank,
                         MemoryLedger* ledger)
    : zl_(zl),
      policy_(policy),
      opt_(opt),
      comm_(comm),
      rank_(rank),
      world_(zl.world),
      esize_(dtype_size(opt.dtype)) {
    ZT_CHECK(opt.dtype == DType::f32 || opt.dtype == DType::bf16,
             "gradient dtype %s: expected f32 or bf16", dtype_name(opt.dtype));
    plan_ = reduce_plan(zl, policy, opt.bucket_elements);
    grads_ = TypedLedgerBuffer(ledger, MemCategory::grads, opt.dtype,
                               policy.grads_sharded ? zl.shard_total : zl.full_padded);
    if (!policy.optimizer_sharded) {
        // Backward order walked back to front: each bucket is one contiguous
        // range of the flat gradient, ending where the previous one began.
        for (const auto& b : plan_.buckets)
            for (size_t k = 1; k < b.segments.size(); k++) {
                const BucketSegment &p = b.segments[k - 1], &s = b.segments[k];
                ZT_CHECK(zl.units[size_t(s.unit)].full_offset + s.end ==
                             zl.units[size_t(p.unit)].full_offset + p.begin,
                         "internal: all-reduce bucket is not contiguous");
            }
    }
    const int slots = reduce_staging_slots(plan_, policy, world_, opt.staging_slots);
    if (slots > 0)
        ring_ = StagingRing(slots, world_ * plan_.largest, plan_.largest, opt.dtype, ledger,
                            [this](int b, StagingRing::Slot& s) { unpack(b, s); });
    if (policy.grads_sharded) {
        unit_buf_[0] =
            TypedLedgerBuffer(ledger, MemCategory::buffers, opt.dtype, zl.units[0].padded);
        unit_buf_[1] =
            TypedLedgerBuffer(ledger, MemCategory::buffers, opt.dtype, largest_other_unit(zl));
    }
}

GradReducer::~GradReducer() {
    // Outstanding reductions write into buffers about to be freed.
    for (auto& w : in_place_) {
        try {
            w.wait();
        } catch (...) {
        }
    }
}

int64_t GradReducer::collectives_per_step(int grad_accum) const {
    if (world_ == 1) return 0;
    const int64_t per = int64_t(plan_.buckets.size());
    return policy_.reduce_every_micro ? per * grad_accum : per;
}

void GradReducer::begin_micro(int micro, int grad_accum) {
    ZT_CHECK(grad_accum >= 1 && micro >= 0 && micro < grad_accum,
             "micro-batch %d of %d is out of range", micro, grad_accum);
    micro_ = micro;
    grad_accum_ = grad_accum;
}

bool GradReducer::communicates_now() const {
    return world_ > 1 && (policy_.reduce_every_micro || micro_ == grad_accum_ - 1);
}

void* GradReducer::full(int unit) {
    ZT_CHECK(!policy_.grads_sharded, "internal: stage %d keeps no full gradient", policy_.stage);
    return grads_.at(zl_.units[size_t(unit)].full_offset);
}

void* GradReducer::block(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    return policy_.grads_sharded ? grads_.at(us.shard_offset)
                                 : grads_.at(us.full_offset + rank_ * us.shard);
}

Tensor GradReducer::unit_grads(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.grads_sharded) return Tensor(full(unit), {us.numel}, opt_.dtype);
    const int k = unit == 0 ? 0 : 1;
    if (holder_[k] != unit) {
        ZT_CHECK(holder_[k] < 0,
                 "internal: unit %d's gradient requested while unit %d's is still being written",
                 unit, holder_[k]);
        holder_[k] = unit;
        std::memset(unit_buf_[k].data(), 0, size_t(us.padded) * esize_);
    }
    return Tensor(unit_buf_[k].data(), {us.numel}, opt_.dtype);
}

// Packs unit u's segments rank-major into their buckets' slots: bucket
// element r * size + offset + j holds element r s_u + begin + j of src.
// Buckets the unit completes are issued as they fill.
void GradReducer::pack(int unit, const void* src) {
    const UnitShard& us = zl_.units[size_t(unit)];
    for (auto [b, k] : plan_.segments_of[size_t(unit)]) {
        const Bucket& bucket = plan_.buckets[size_t(b)];
        const BucketSegment& s = bucket.segments[size_t(k)];
        if (k == 0) filling_ = &ring_.next();
        for (int r = 0; r < world_; r++)
            std::memcpy(byte_at(filling_->send.data(), r * bucket.size + s.offset, esize_),
                        byte_at(src, r * us.shard + s.begin, esize_), size_t(s.size()) * esize_);
        if (size_t(k) + 1 == bucket.segments.size()) issue(b);
    }
}

void GradReducer::issue(int b) {
    const Bucket& bucket = plan_.buckets[size_t(b)];
    if (!policy_.optimizer_sharded) {
        const BucketSegment& low = bucket.segments.back();
        void* start = grads_.at(zl_.units[size_t(low.unit)].full_offset + low.begin);
        in_place_.push_back(comm_->all_reduce_async(start, bucket.size, opt_.dtype, ReduceOp::avg));
        if (!opt_.overlap_comm) in_place_.back().wait();
        return;
    }
    Work w = comm_->reduce_scatter_async(filling_->send.data(), filling_->recv.data(), bucket.size,
                                         opt_.dtype, ReduceOp::avg);
    filling_ = nullptr;
    ring_.issued(b, std::move(w));
    if (!opt_.overlap_comm) ring_.drain();
}

// This rank's reduced block of the bucket: copied into the full buffer's
// block (stage 1) or added to the gradient shard (stages 2/3).
void GradReducer::unpack(int b, StagingRing::Slot& slot) {
    for (const BucketSegment& s : plan_.buckets[size_t(b)].segments) {
        const UnitShard& us = zl_.units[size_t(s.unit)];
        const void* src = byte_at(slot.recv.data(), s.offset, esize_);
        if (policy_.grads_sharded)
            accumulate(opt_.dtype, grads_.at(us.shard_offset + s.begin), src, s.size());
        else
            std::memcpy(grads_.at(us.full_offset + rank_ * us.shard + s.begin), src,
                        size_t(s.size()) * esize_);
    }
}

void GradReducer::grads_ready(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.grads_sharded) {
        if (!communicates_now()) return;
        if (policy_.optimizer_sharded) {
            pack(unit, full(unit));
        } else {
            for (int b : plan_.completes_at[size_t(unit)]) issue(b);
        }
        return;
    }
    const int k = unit == 0 ? 0 : 1;
    ZT_CHECK(holder_[k] == unit, "grads_ready(%d) without unit_grads(%d)", unit, unit);
    if (world_ == 1)
        accumulate(opt_.dtype, grads_.at(us.shard_offset), unit_buf_[k].data(), us.shard);
    else
        pack(unit, unit_buf_[k].data());
    holder_[k] = -1;
}

void GradReducer::finish() {
    for (auto& w : in_place_) w.wait();
    in_place_.clear();
    ZT_CHECK(filling_ == nullptr, "internal: a gradient bucket was never completed");
    if (!ring_.empty()) ring_.drain();
}

void GradReducer::zero() {
    std::memset(grads_.data(), 0, size_t(grads_.size()) * esize_);
}

}  // namespace zt
