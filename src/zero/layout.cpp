#include "zero/layout.h"

#include <algorithm>

#include "core/check.h"

namespace zt {

OwnedRange owned_range(const UnitShard& unit, int rank) {
    OwnedRange r;
    r.begin = std::min(int64_t(rank) * unit.shard, unit.numel);
    r.end = std::min(r.begin + unit.shard, unit.numel);
    return r;
}

ZeroLayout make_zero_layout(const ModelLayout& model, int world) {
    ZT_CHECK(world >= 1, "world size must be >= 1, got %d", world);
    ZeroLayout z;
    z.world = world;
    for (const auto& u : model.units) {
        UnitShard s;
        s.numel = u.numel;
        s.padded = (u.numel + world - 1) / world * world;
        s.shard = s.padded / world;
        s.full_offset = z.full_padded;
        s.shard_offset = z.shard_total;
        ZT_CHECK(u.numel >= world,
                 "world size %d is larger than unit %s can be split (%lld elements); use at most "
                 "%lld ranks for this model",
                 world, u.name.c_str(), (long long)u.numel, (long long)u.numel);
        z.full_padded += s.padded;
        z.shard_total += s.shard;
        z.units.push_back(s);
    }
    return z;
}

}  // namespace zt
