// The ZeRO stages as a table: what each stage shards and when it reduces.
//
// The engine's three parts (ParamStore, GradReducer, ShardOptimizer) and
// `estimate` read these rows; no other code branches on the stage number.
//
//   stage | params  | grads   | optimizer | reduce
//   0     | full    | full    | full      | all-reduce at the last micro-batch
//   1     | full    | full    | shard     | reduce-scatter at the last micro-batch
//   2     | full    | shard   | shard     | reduce-scatter every micro-batch
//   3     | shard   | shard   | shard     | reduce-scatter every micro-batch
#pragma once

#include "core/check.h"

namespace zt {

struct StagePolicy {
    int stage = 0;
    bool params_sharded = false;     // each rank keeps only its block of the compute copy
    bool grads_sharded = false;      // each rank keeps only its block of the gradient
    bool optimizer_sharded = false;  // each rank updates only its block (master, moments)
    // Reduce a unit's gradient as soon as its backward ends, at every
    // micro-batch (grads sharded: no full gradient survives), instead of once
    // at the last micro-batch of a step.
    bool reduce_every_micro = false;
};

inline const StagePolicy& stage_policy(int stage) {
    static const StagePolicy table[4] = {
        {0, false, false, false, false},
        {1, false, false, true, false},
        {2, false, true, true, true},
        {3, true, true, true, true},
    };
    ZT_CHECK(stage >= 0 && stage <= 3, "--zero-stage %d: expected a stage from 0 to 3", stage);
    return table[stage];
}

}  // namespace zt
