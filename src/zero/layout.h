// ZeRO flat layout: how each unit's parameters are padded, sharded and bucketed.
//
// Unit u's n_u elements are padded to P_u = ceil(n_u / N) * N so they split
// into N equal shards of s_u = P_u / N; rank r owns elements [r s_u, (r+1) s_u)
// of the unit. A rank's persistent shard buffers (master params in stages 3,
// grads in stages 2-3, optimizer state in stages 1-3) are the concatenation of
// its shards of every unit, unit 0 first. A reduce bucket is one unit: each
// unit's gradient is reduced as soon as its backward finishes.
// The layout is a pure function of (model config, world size), so a
// checkpoint saved at one world size can be re-cut for another.
#pragma once

#include <cstdint>
#include <vector>

#include "model/layout.h"

namespace zt {

struct UnitShard {
    int64_t numel = 0;         // n_u, real elements
    int64_t padded = 0;        // P_u
    int64_t shard = 0;         // s_u = P_u / N
    int64_t full_offset = 0;   // start of the unit in a concatenation of full padded units
    int64_t shard_offset = 0;  // start of this unit's shard in a rank's shard buffer
};

struct ZeroLayout {
    int world = 1;
    std::vector<UnitShard> units;
    int64_t full_padded = 0;  // sum of P_u
    int64_t shard_total = 0;  // sum of s_u: elements of one rank's shard buffer
};

ZeroLayout make_zero_layout(const ModelLayout& model, int world);

// The real elements of a unit that rank r holds: [r s_u, min((r+1) s_u, n_u)),
// clipped to [n_u, n_u) (empty) when the rank's shard is all padding.
struct OwnedRange {
    int64_t begin = 0, end = 0;  // elements of the unit
    int64_t size() const { return end - begin; }
};
OwnedRange owned_range(const UnitShard& unit, int rank);

}  // namespace zt
