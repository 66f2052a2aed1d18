// The training loop: data, micro-batches with gradient accumulation, the
// engine's optimizer step, LR schedule, evaluation, metrics and progress.
// The run is resolved once (train/resolve.h) before anything is built.
#pragma once

#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "train/config.h"
#include "train/run_dir.h"

namespace zt {

struct TrainSummary {
    double first_loss = 0;
    double final_loss = 0;
    double final_eval_loss = -1;  // < 0: no evaluation ran
    double tokens_per_s = 0;
    std::string run_dir;
    int64_t last_step = 0;        // steps completed when the run ended
    int stop_signal = 0;          // SIGINT/SIGTERM that stopped the run early (0: ran to --steps)
    std::string last_checkpoint;  // directory of the newest checkpoint saved, if any
    std::string best_checkpoint;  // RUN_DIR/ckpt/best with --keep-best, once one exists
};

// Runs a whole training job from the flags (with the --config file beneath
// them) and what a resume does to its run directory; throws zt::Error on
// invalid input before any step.
TrainSummary run_training(const TrainConfig& flags, const ResumeActions& actions = {});

// A GEMM's achieved FLOP/s on this machine in `dtype` (f32: sgemm, bf16: the
// bf16 GEMM), the denominator of CPU MFU.
double measure_cpu_peak_flops(DType dtype);

}  // namespace zt
