#include "train/evaluate.h"

#include <cmath>
#include <vector>

#include "core/check.h"
#include "data/loader.h"

namespace zt {

EvalResult evaluate_loss(Model& model, UnitHooks& hooks, Communicator* comm, const TokenSource& val,
                         int64_t max_tokens) {
    const int B = model.batch(), T = model.seq_len();
    const int world = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
    int64_t per_rank = eval_batches(val, T, B, max_tokens) / world;
    const int64_t held = eval_batches(val, T, B, 0);
    ZT_CHECK(per_rank > 0 || held < world,
             "--eval-tokens %lld covers fewer than %d batches of %d x %d tokens (one per rank); "
             "use --eval-tokens %lld or more",
             (long long)max_tokens, world, B, T, (long long)(int64_t(world) * B * T));
    ZT_CHECK(per_rank > 0,
             "the validation data (%s) holds fewer than %d batches of %d x %d tokens (one per "
             "rank); lower --micro-batch or --seq-len, or add validation data",
             val.describe().c_str(), world, B, T);
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    double sum = 0;
    for (int64_t i = 0; i < per_rank; i++) {
        load_eval(val, T, i * world + rank, B, in.data(), tgt.data());
        sum += model.forward_loss(hooks, in.data(), tgt.data());
    }
    // f64 end to end: the mean over ranks of each rank's mean, with no f32
    // rounding of the per-rank means or of their sum.
    double mean = sum / double(per_rank);
    if (world > 1) comm->all_reduce(&mean, 1, DType::f64, ReduceOp::avg);
    ZT_CHECK(std::isfinite(mean),
             "the validation loss is %g: the model's weights hold non-finite values (a diverged "
             "run, or a damaged checkpoint or export)",
             mean);
    EvalResult r;
    r.loss = mean;
    r.batches = per_rank * world;
    r.tokens = r.batches * B * T;
    return r;
}

}  // namespace zt
