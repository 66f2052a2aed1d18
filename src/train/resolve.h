// Resolving a training run: the flags (with the --config file beneath them),
// the checkpoint being resumed, --init-from's config.json and the data's
// meta.json become one ResolvedRun before any engine, model or loader exists.
//
// Invariant: every setting is decided here and travels down from the
// ResolvedRun once; nothing built from it writes a setting back. The checks
// run in the order a user meets them: a bad value is refused before the
// default corpus is prepared, before the data is opened, before any
// directory is created.
//
//   read_run_request   flags + the resumed checkpoint's configuration
//   join_ranks         threads and the communicator (the world)
//   resolve_run        world checks, run directory name, model shape, data,
//                      vocabulary, sampler, validation size, resume
//                      compatibility, disk space for the checkpoints
//
// check_run_before_launch makes the same checks on the one process that
// `--nproc N` runs before mpirun starts any rank, so a run that cannot work
// is refused once, before any rank exists.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ckpt/checkpoint.h"
#include "comm/communicator.h"
#include "comm/launch.h"
#include "core/dtype.h"
#include "data/shard.h"
#include "model/config.h"
#include "train/config.h"
#include "zero/estimate.h"

namespace zt {

// What was asked: the flags, on top of the configuration of the checkpoint
// being resumed. The checkpoint stays open (verified, its files mapped) only
// until its tensors are in the engine.
struct RunRequest {
    TrainConfig cfg;
    std::unique_ptr<Checkpoint> resume_from;  // null: a fresh start
};

// Validates the flags; with --resume opens the checkpoint and takes its
// settings for every key the command line did not give.
RunRequest read_run_request(const TrainConfig& flags);

// This process's place in the job: what the launcher says, the communicator
// chosen for it, and the communicator itself.
struct Launch {
    RankInfo ranks;
    CommOptions options;  // options.backend: local, mpi, ring or tcp (never auto)
    std::unique_ptr<Communicator> comm;
};

// Sets the OpenMP threads (--threads, or the cores shared among the ranks
// of one machine) and starts the communicator.
Launch join_ranks(const TrainConfig& cfg);

enum class RunDirMode {
    fresh,     // a new directory: refused when it already holds a run
    in_place,  // a run resumed from its own checkpoint continues its directory
};

// The checkpoint a run continues, as the run line and the log name it.
struct ResumePoint {
    std::string dir;     // the step directory
    int64_t step = 0;    // optimizer steps it holds
    int world_size = 1;  // the world and stage that saved it
    int zero_stage = 0;
};

// The training data, opened and checked against the model's vocabulary.
struct RunData {
    std::shared_ptr<const TokenSource> train;
    std::shared_ptr<const TokenSource> val;  // null: no validation split
    double loss_floor = -1;                  // known entropy of synthetic data
    std::string dir;  // the data directory, meta.json's and the tokenizer's ("" for synthetic)
    int64_t sequences_per_epoch = 0;   // at --seq-len
    nlohmann::ordered_json tokenizer;  // meta.json's "tokenizer" object, or null
};

struct ResolvedRun {
    // Every key final: the resumed configuration with the flags on top, the
    // communicator backend chosen, nproc = the world size, out named, data
    // the prepared path, model the file an --init-from run was built from.
    TrainConfig cfg;
    ModelConfig model;
    int rank = 0;
    int world = 1;
    DType compute_dtype = DType::f32;  // --precision
    DType grad_dtype = DType::f32;     // --grad-accum-dtype, resolved
    RunData data;
    std::optional<ResumePoint> resumed;  // nullopt: no checkpoint continued
    int64_t start_step = 0;
    RunDirMode run_dir = RunDirMode::fresh;

    bool root() const { return rank == 0; }
};

// Collective: every rank resolves the same run (rank 0's clock names a
// default run directory). Refuses, naming the flag, whatever the world, the
// model, the data or the checkpoint being resumed cannot train together.
ResolvedRun resolve_run(const RunRequest& request, Launch& launch);

struct ResumeActions;  // train/run_dir.h

// One process, before `--nproc N` starts any rank: resolves the run for a
// world of flags.nproc ranks as resolve_run will, and refuses (zt::Error)
// what would fail after launch: invalid values, an --out that holds a run,
// the vocabulary, the sequence length, a validation split too small for
// one batch per rank, --comm local with several ranks, --keep-best without
// a validation split, too little free disk at --out for the checkpoints.
// Prints nothing when the run can go ahead.
void check_run_before_launch(const TrainConfig& flags, const ResumeActions& actions);

// The model --model names, a preset taking the vocabulary of --data's
// meta.json rounded up to a multiple of 64 (as training builds it).
ModelConfig model_from_flags(const TrainConfig& cfg);

// `zerotrain estimate`'s input for a run of these settings on `world` ranks.
EstimateInput estimate_input_for(const TrainConfig& cfg, const ModelConfig& model, int world);

// Bytes one checkpoint of `model` writes: the fp32 master weights and the two
// AdamW moments (12 bytes a parameter), whatever the world size and stage.
int64_t checkpoint_bytes(const ModelConfig& model);

// The most checkpoint bytes the run holds in --out at once: the step
// checkpoints it keeps (--keep-last, plus the one being written before the
// oldest is removed) and --keep-best's (twice while it is replaced).
int64_t checkpoint_disk_bytes(const TrainConfig& cfg, const ModelConfig& model, int64_t start_step);

}  // namespace zt
