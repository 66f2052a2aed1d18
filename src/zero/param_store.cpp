#include "zero/param_store.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/cast.h"

namespace zt {

struct ParamStore::Gathered {
    TypedLedgerBuffer buf;  // (P_u) the unit's full compute copy
    Work work;              // the all-gather filling buf in place
    int staged = -1;        // else the bucket whose staging slot fills buf on completion
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

// Stages 1/2 after a step, stage 3 on use: the gathers that follow the plan.
bool gathers_in_buckets(const StagePolicy& policy, int world) {
    return world > 1 && (policy.params_sharded || policy.optimizer_sharded);
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
                                  int64_t bucket_elements, int max_slots,
                                  bool params_in_file) {
    if (!gathers_in_buckets(policy, zl.world)) return 0;
    auto [slots, largest] = gather_staging(zl, gather_plan(zl, bucket_elements), max_slots);
    const bool send = !policy.params_sharded || params_in_file;
    return int64_t(slots) * (zl.world + (send ? 1 : 0)) * largest;
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
    const size_t esize = dtype_size(opt.dtype);
    if (!opt.offload_file.empty()) {
        ZT_CHECK(policy.params_sharded,
                 "--offload-params nvme: parameter offload needs ZeRO stage 3, where each rank "
                 "keeps only its shards");
        int64_t largest = 0;
        for (const auto& u : zl.units) largest = std::max(largest, u.shard);
        file_ = StateFile(opt.offload_file, zl.shard_total * int64_t(esize), /*direct=*/false,
                          "parameter shards");
        unit_buf_ = TypedLedgerBuffer(ledger, MemCategory::params, opt.dtype, largest);
    } else {
        copy_ = TypedLedgerBuffer(ledger, MemCategory::params, opt.dtype,
                                  policy.params_sharded ? zl.shard_total : zl.full_padded);
    }
    pending_gather_.resize(zl.units.size());
    gathered_.resize(zl.units.size());
    last_staged_.assign(zl.units.size(), -1);
    if (gathers_in_buckets(policy, world_)) {
        gather_plan_ = gather_plan(zl, opt.gather_bucket_elements);
        for (size_t b = 0; b < gather_plan_.buckets.size(); b++) {
            if (gathered_in_place(zl, gather_plan_.buckets[b])) continue;
            for (const auto& s : gather_plan_.buckets[b].segments)
                last_staged_[size_t(s.unit)] = int(b);
        }
        auto [slots, largest] = gather_staging(zl, gather_plan_, opt.staging_slots);
        // Stage 3 sends from its shards in place, unless they are in a file.
        const bool sharded = policy.params_sharded;
        const bool send = !sharded || file_.open();
        if (slots > 0)
            ring_ = StagingRing(slots, send ? largest : 0, world_ * largest, opt.dtype, ledger,
                                [this, sharded](int b, StagingRing::Slot& s) {
                                    if (sharded)
                                        unpack_gathered(b, s);
                                    else
                                        unpack(b, s);
                                });
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
        if (g) wait_gathered(*g);
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
    return byte_at(shard_of(unit, /*read=*/true), std::max<int64_t>(0, e - rank_ * us.shard),
                   dtype_size(opt_.dtype));
}

int64_t ParamStore::offloaded_offset(int unit) const {
    return zl_.units[size_t(unit)].shard_offset * int64_t(dtype_size(opt_.dtype));
}

void* ParamStore::shard_of(int unit, bool read) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!file_.open()) return copy_.at(us.shard_offset);
    if (buffered_unit_ != unit) {
        write_back();
        if (read)
            file_.transfer(false, offloaded_offset(unit), unit_buf_.data(),
                           us.shard * int64_t(dtype_size(opt_.dtype)));
        buffered_unit_ = unit;
    }
    return unit_buf_.data();
}

void ParamStore::write_back() {
    if (buffered_unit_ < 0) return;
    const int u = buffered_unit_;
    buffered_unit_ = -1;
    file_.transfer(true, offloaded_offset(u), unit_buf_.data(),
                   zl_.units[size_t(u)].shard * int64_t(dtype_size(opt_.dtype)));
}

void ParamStore::read_shards(int first, int64_t n, void* dst) {
    file_.transfer(false, offloaded_offset(first), dst, n * int64_t(dtype_size(opt_.dtype)));
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
    void* dst = shard_of(unit, /*read=*/false);
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
    auto make = [&](int u) -> Gathered& {
        auto& g = gathered_[size_t(u)];
        g = std::make_unique<Gathered>();
        g->buf = TypedLedgerBuffer(ledger_, MemCategory::buffers, opt_.dtype,
                                   zl_.units[size_t(u)].padded);
        return *g;
    };
    const size_t esize = dtype_size(opt_.dtype);
    const bool offloaded = file_.open();
    if (offloaded) write_back();  // the file holds the last update of every unit
    if (world_ == 1) {
        Gathered& g = make(unit);
        if (offloaded)
            read_shards(unit, us.shard, g.buf.data());
        else
            std::memcpy(g.buf.data(), copy_.at(us.shard_offset), size_t(us.shard) * esize);
        return g;
    }
    const int b = gather_plan_.segments_of[size_t(unit)].at(0).first;
    const Bucket& bucket = gather_plan_.buckets[size_t(b)];
    if (gathered_in_place(zl_, bucket)) {
        Gathered& g = make(unit);
        const void* shard = offloaded ? nullptr : copy_.at(us.shard_offset);
        if (offloaded) {
            // Read into this rank's place of the buffer, then gather in place.
            void* mine = byte_at(g.buf.data(), rank_ * us.shard, esize);
            read_shards(unit, us.shard, mine);
            shard = mine;
        }
        g.work = comm_->all_gather_async(shard, g.buf.data(), us.shard, opt_.dtype);
        return g;
    }
    // The bucket's units are consecutive, so their shards are one contiguous
    // range of the rank's copy (or file); every unit of it not gathered now
    // is filled.
    StagingRing::Slot& staging = ring_.next();
    for (const BucketSegment& s : bucket.segments)
        if (!gathered_[size_t(s.unit)]) make(s.unit).staged = b;
    const int first = bucket.segments.front().unit;
    const void* send = offloaded ? nullptr : copy_.at(zl_.units[size_t(first)].shard_offset);
    if (offloaded) {
        read_shards(first, bucket.size, staging.send.data());
        send = staging.send.data();
    }
    ring_.issued(b, comm_->all_gather_async(send, staging.recv.data(), bucket.size, opt_.dtype));
    return *slot;
}

int64_t ParamStore::bucket_elements(int unit) const {
    if (world_ == 1) return zl_.units[size_t(unit)].padded;
    const int b = gather_plan_.segments_of[size_t(unit)].at(0).first;
    return gather_plan_.buckets[size_t(b)].size * world_;
}

int64_t ParamStore::gather_cost(int unit) const {
    if (gathered_[size_t(unit)]) return 0;
    if (world_ == 1) return zl_.units[size_t(unit)].padded;
    const int b = gather_plan_.segments_of[size_t(unit)].at(0).first;
    int64_t cost = 0;
    for (const BucketSegment& s : gather_plan_.buckets[size_t(b)].segments)
        if (!gathered_[size_t(s.unit)]) cost += zl_.units[size_t(s.unit)].padded;
    return cost;
}

void ParamStore::wait_gathered(Gathered& g) {
    if (g.staged >= 0) ring_.complete_bucket(g.staged);
    ZT_CHECK(g.staged < 0, "internal: gathered unit's bucket %d is not in flight", g.staged);
    g.work.wait();
}

// Every rank's blocks of the bucket's units still waiting for it, from the
// staging slot (rank-major, the units' shards back to back) into their buffers.
void ParamStore::unpack_gathered(int b, StagingRing::Slot& slot) {
    const Bucket& bucket = gather_plan_.buckets[size_t(b)];
    const size_t esize = dtype_size(opt_.dtype);
    for (const BucketSegment& s : bucket.segments) {
        auto& g = gathered_[size_t(s.unit)];
        if (!g || g->staged != b) continue;
        const UnitShard& us = zl_.units[size_t(s.unit)];
        for (int r = 0; r < world_; r++)
            std::memcpy(byte_at(g->buf.data(), r * us.shard, esize),
                        byte_at(slot.recv.data(), r * bucket.size + s.offset, esize),
                        size_t(us.shard) * esize);
        g->staged = -1;
    }
}

void ParamStore::free_gathered(int unit) {
    auto& slot = gathered_[size_t(unit)];
    if (!slot) return;
    wait_gathered(*slot);
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
    // The window counts the units ahead already gathered and, for the others,
    // everything their bucket's gather brings in. A bucket partly gathered is
    // left to its use: gathering it early would fill the units still held,
    // which a release may then free before their next use, only to be
    // gathered again.
    int64_t budget = opt_.prefetch_elements;
    for (size_t j = pos + 1; j < n; j++) {
        int v = trace_[j];
        if (v == unit) continue;
        const int64_t cost = gathered_[size_t(v)] ? zl_.units[size_t(v)].padded : gather_cost(v);
        if (!gathered_[size_t(v)] && cost < bucket_elements(v)) continue;
        budget -= cost;
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
    wait_gathered(g);
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
    if (!ring_.empty()) ring_.drain();
    for (size_t u = 0; u < gathered_.size(); u++) free_gathered(int(u));
    if (!trace_.empty()) trace_recorded_ = true;
    trace_cursor_ = 0;
}

}  // namespace zt
