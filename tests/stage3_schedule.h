// Stage 3's gathers in one micro-batch, from the gather plan: a unit's use
// finds it gathered, or gathers its whole bucket (every unit of it not
// gathered); a release frees the unit unless it is at most the persistence
// threshold. The model uses the embedding, the blocks and the head (with the
// embedding when tied) in forward, the blocks in reverse in backward.
// Prefetch moves gathers earlier, never adds or removes one.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/layout.h"
#include "zero/bucket.h"
#include "zero/layout.h"

namespace zt_test {

struct Stage3Gathers {
    int64_t calls = 0;
    int64_t elements = 0;  // full elements received: world x bucket size, summed
};

inline Stage3Gathers stage3_gathers(const zt::ModelConfig& cfg, const zt::ZeroLayout& zl,
                                    const zt::BucketPlan& plan, int64_t persistence = 0) {
    std::vector<char> have(zl.units.size(), 0);
    Stage3Gathers g;
    auto use = [&](std::vector<int> units) {
        for (int u : units) {
            if (have[size_t(u)]) continue;
            const auto& bucket = plan.buckets[size_t(plan.segments_of[size_t(u)].at(0).first)];
            g.calls++;
            g.elements += bucket.size * zl.world;
            for (const auto& s : bucket.segments) have[size_t(s.unit)] = 1;
        }
        for (int u : units)
            if (zl.units[size_t(u)].numel > persistence) have[size_t(u)] = 0;
    };
    const int E = zt::ModelLayout::embed_unit(), H = cfg.n_layer + 1;
    use({E});
    for (int l = 0; l < cfg.n_layer; l++) use({zt::ModelLayout::block_unit(l)});
    use(cfg.tie_embeddings ? std::vector<int>{H, E} : std::vector<int>{H});
    for (int l = cfg.n_layer - 1; l >= 0; l--) use({zt::ModelLayout::block_unit(l)});
    return g;
}

}  // namespace zt_test
