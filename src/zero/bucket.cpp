#include "zero/bucket.h"

#include <algorithm>

#include "core/check.h"

namespace zt {

BucketPlan plan_buckets(const std::vector<int64_t>& span, const std::vector<int>& order,
                        int64_t capacity, bool split_units) {
    ZT_CHECK(capacity >= 1, "bucket capacity %lld: must be >= 1", (long long)capacity);
    BucketPlan plan;
    plan.segments_of.resize(span.size());
    plan.completes_at.resize(span.size());
    Bucket open;
    auto close = [&]() {
        if (open.segments.empty()) return;
        plan.largest = std::max(plan.largest, open.size);
        plan.completes_at[size_t(open.segments.back().unit)].push_back(int(plan.buckets.size()));
        plan.buckets.push_back(std::move(open));
        open = Bucket();
    };
    for (int u : order) {
        ZT_CHECK(u >= 0 && size_t(u) < span.size() && plan.segments_of[size_t(u)].empty(),
                 "internal: bucket order names unit %d twice or out of range", u);
        int64_t end = span[size_t(u)];
        if (!split_units && open.size + end > capacity) close();
        while (end > 0) {
            if (split_units && open.size == capacity) close();
            const int64_t take = split_units ? std::min(end, capacity - open.size) : end;
            BucketSegment s{u, end - take, end, open.size};
            plan.segments_of[size_t(u)].push_back(
                {int(plan.buckets.size()), int(open.segments.size())});
            open.segments.push_back(s);
            open.size += take;
            end -= take;
        }
    }
    close();
    return plan;
}

int64_t sharded_bucket_capacity(int64_t bucket_elements, int world) {
    return std::max<int64_t>(1, bucket_elements / std::max(1, world));
}

StagingRing::StagingRing(int slots, int64_t send_elems, int64_t recv_elems, DType dtype,
                         MemoryLedger* ledger, Complete complete)
    : complete_(std::move(complete)) {
    slots_.resize(size_t(std::max(0, slots)));
    for (auto& s : slots_) {
        s.send = TypedLedgerBuffer(ledger, MemCategory::buffers, dtype, send_elems);
        s.recv = TypedLedgerBuffer(ledger, MemCategory::buffers, dtype, recv_elems);
    }
}

StagingRing::~StagingRing() {
    // Collectives in flight write into the buffers about to be freed.
    for (auto& s : slots_) {
        try {
            s.work.wait();
        } catch (...) {
        }
    }
}

void StagingRing::complete(Slot& s) {
    if (s.bucket < 0) return;
    s.work.wait();
    const int b = s.bucket;
    s.bucket = -1;
    s.work = Work();
    complete_(b, s);
}

StagingRing::Slot& StagingRing::next() {
    ZT_CHECK(!slots_.empty(), "internal: staging ring has no slots");
    Slot& s = slots_[cursor_];
    complete(s);
    return s;
}

void StagingRing::issued(int bucket, Work work) {
    Slot& s = slots_[cursor_];
    s.bucket = bucket;
    s.work = std::move(work);
    cursor_ = (cursor_ + 1) % slots_.size();
}

void StagingRing::drain() {
    // The oldest in flight is the one the cursor points at next.
    for (size_t k = 0; k < slots_.size(); k++) complete(slots_[(cursor_ + k) % slots_.size()]);
}

void StagingRing::complete_until(int bucket) {
    for (size_t k = 0; k < slots_.size(); k++) {
        Slot& s = slots_[(cursor_ + k) % slots_.size()];
        if (s.bucket >= 0 && s.bucket <= bucket) complete(s);
    }
}

void StagingRing::complete_bucket(int bucket) {
    const size_t n = slots_.size();
    size_t k = 0;
    while (k < n && slots_[(cursor_ + k) % n].bucket != bucket) k++;
    if (k == n) return;
    for (size_t j = 0; j <= k; j++) complete(slots_[(cursor_ + j) % n]);
}

}  // namespace zt
