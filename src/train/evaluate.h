// Validation loss, shared by training's eval lines and `zerotrain eval`.
//
// Invariant: the tokens and the arithmetic depend only on (source, B, T,
// max_tokens, world), so a checkpoint evaluated by `zerotrain eval` and the
// same weights evaluated inside a run of the same world size give the same
// number bit for bit. Rank r evaluates batches r, r + N, ...; every rank runs
// the same number of forward passes (stage 3's gathers are collectives).
#pragma once

#include <cstdint>

#include "comm/communicator.h"
#include "data/shard.h"
#include "model/model.h"

namespace zt {

struct EvalResult {
    double loss = 0;      // mean over the evaluated batches of each batch's mean loss
    int64_t tokens = 0;   // target tokens evaluated, all ranks
    int64_t batches = 0;  // all ranks
};

// comm may be null (one process). max_tokens <= 0: the whole source.
EvalResult evaluate_loss(Model& model, UnitHooks& hooks, Communicator* comm,
                         const TokenSource& val, int64_t max_tokens);

}  // namespace zt
