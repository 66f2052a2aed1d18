// Communication buckets: which elements travel together in one collective,
// and the fixed ring of staging buffers they are packed into.
//
// A plan walks the units in the order their data becomes ready (backward
// order for gradients, forward order for the gathers after a step) and cuts
// each unit's span into buckets of at most `capacity` elements: several small
// units share a bucket, a big unit is split over several (gathers keep units
// whole: a unit is only usable once all of it has arrived). Within a unit the
// span is walked back to front, so the buckets of consecutive units in
// backward order are contiguous in the flat full layout (the all-reduce runs
// in place). The span of a unit is the unit's per-rank shard s_u for sharded
// collectives (a bucket element e of unit u stands for elements r s_u + e of
// every rank r) and its padded size P_u for the all-reduce.
// The plan is a pure function of (span sizes, order, capacity): every rank
// computes the same buckets, and the count of collectives a step issues is
// known before it runs.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "comm/communicator.h"
#include "prof/memory.h"

namespace zt {

struct BucketSegment {
    int unit = 0;
    int64_t begin = 0, end = 0;  // elements of the unit's span
    int64_t offset = 0;          // where the segment starts in the bucket
    int64_t size() const { return end - begin; }
};

struct Bucket {
    std::vector<BucketSegment> segments;  // in plan order
    int64_t size = 0;                     // sum of the segments' sizes
};

struct BucketPlan {
    std::vector<Bucket> buckets;
    // By unit: the (bucket, segment) pairs holding its elements, in plan order,
    // and the buckets complete once the unit is ready.
    std::vector<std::vector<std::pair<int, int>>> segments_of;
    std::vector<std::vector<int>> completes_at;
    int64_t largest = 0;  // elements of the biggest bucket
};

// Address of element `elem` of a buffer of `esize`-byte elements (buckets are
// packed and unpacked by element offsets in a run-time dtype).
inline char* byte_at(void* base, int64_t elem, size_t esize) {
    return static_cast<char*>(base) + elem * int64_t(esize);
}
inline const char* byte_at(const void* base, int64_t elem, size_t esize) {
    return static_cast<const char*>(base) + elem * int64_t(esize);
}

// span[u]: elements of unit u; order: the units in readiness order (each at
// most once); capacity >= 1. With split_units false a unit is never cut: one
// that does not fit the open bucket starts the next, and one larger than the
// capacity is a bucket of its own.
BucketPlan plan_buckets(const std::vector<int64_t>& span, const std::vector<int>& order,
                        int64_t capacity, bool split_units = true);

// Per-rank capacity of a sharded collective's bucket of `bucket_elements`
// full elements at world size n: the bucket holds n blocks of this size.
int64_t sharded_bucket_capacity(int64_t bucket_elements, int world);

// A fixed ring of staging slots, each a send and a receive buffer, taken in
// turn: taking a slot still in flight first completes its collective (waits,
// then calls `complete` for the bucket it carried). Nothing is allocated
// after construction. Completions happen in issue order.
class StagingRing {
  public:
    struct Slot {
        TypedLedgerBuffer send, recv;
        Work work;
        int bucket = -1;  // in flight when >= 0
    };
    using Complete = std::function<void(int bucket, Slot&)>;

    StagingRing() = default;
    StagingRing(int slots, int64_t send_elems, int64_t recv_elems, DType dtype,
                MemoryLedger* ledger, Complete complete);
    ~StagingRing();
    StagingRing(StagingRing&&) = default;
    StagingRing& operator=(StagingRing&&) = default;

    bool empty() const { return slots_.empty(); }
    // The slot the next bucket packs into (free after this call).
    Slot& next();
    // The slot from next() now carries `bucket`, whose collective is `work`.
    void issued(int bucket, Work work);
    // Completes every bucket in flight, oldest first.
    void drain();
    // Completes, oldest first, the buckets in flight numbered <= bucket
    // (buckets are issued in increasing order).
    void complete_until(int bucket);
    // Completes the oldest slot carrying `bucket` and every slot issued
    // before it (buckets issued in any order); nothing if it is not in flight.
    void complete_bucket(int bucket);

  private:
    void complete(Slot& s);

    std::vector<Slot> slots_;
    size_t cursor_ = 0;
    Complete complete_;
};

}  // namespace zt
