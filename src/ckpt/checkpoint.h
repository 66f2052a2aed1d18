// Sharded, atomic training checkpoints that load at any world size and stage.
//
// On disk, RUN_DIR/ckpt/step-NNNNNNNN/ holds
//   rank-RRRRR-of-WWWWW.safetensors  each rank's owned elements of every unit
//                                     (Engine::owned_range): "<unit>.params",
//                                     "<unit>.exp_avg", "<unit>.exp_avg_sq", F32
//   tokenizer.model                  a copy of the data's SentencePiece model, if any
//   manifest.json                    configs, world size, stage, step, tokens,
//                                     data position of every rank, RNG state,
//                                     the layout, and each file's size and SHA-256
// and RUN_DIR/ckpt/latest names the newest complete step directory.
// RUN_DIR/ckpt/best (--keep-best) is a checkpoint of the same form, the one
// of the lowest validation loss, its manifest also holding "eval_loss". It is
// not a step-* directory, so retention (keep_last) never removes it and a run
// or ckpt directory never resolves to it: resume picks the newest step.
//
// Invariant: a directory named step-NNNNNNNN is complete. Ranks write into
// step-NNNNNNNN.tmp/; only after every rank's file is on disk (fsynced, hashed)
// does rank 0 write the manifest and rename the directory, then repoint
// `latest`. A crash at any moment leaves the previous checkpoint loadable.
// The files of one checkpoint tile every unit exactly once (rank r owns
// [r s_u, min((r+1) s_u, n_u)) of unit u at world W), so a reader at any other
// world size or stage reassembles each unit and re-cuts it through its own
// layout: resharding is reading.
#pragma once

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ckpt/safetensors.h"
#include "comm/communicator.h"
#include "model/config.h"
#include "model/layout.h"
#include "zero/engine.h"
#include "zero/layout.h"

namespace zt {

// What the trainer records beside the engine state.
struct CheckpointInfo {
    int64_t step = 0;                     // optimizer steps completed
    int64_t tokens_seen = 0;              // training tokens consumed by those steps, all ranks
    nlohmann::ordered_json train_config;  // the resolved TrainConfig
    nlohmann::ordered_json data;          // data source and positions
    nlohmann::ordered_json tokenizer;     // {path, sha256, ...} or null
    double eval_loss = NAN;               // the validation loss at `step`, when known
};

// A checkpoint found in a run directory.
struct SavedCheckpoint {
    int64_t step = 0;
    std::string dir;
    double eval_loss = NAN;  // best's; NaN for a step directory
};

// "step-00000042"
std::string checkpoint_dir_name(int64_t step);

// Collective: every rank calls it with the same arguments between steps.
// Writes RUN_DIR/ckpt/step-N, repoints RUN_DIR/ckpt/latest, and when
// keep_last > 0 removes all but the newest keep_last step directories.
// Returns the checkpoint's directory. comm may be null for one process.
std::string save_checkpoint(const std::string& run_dir, Engine& engine, Communicator* comm,
                            const ModelConfig& model, const CheckpointInfo& info, int keep_last);

// Collective, as save_checkpoint: writes RUN_DIR/ckpt/best (replacing the
// previous best once complete); info.eval_loss must be finite. `latest` and
// the step directories are left as they are.
std::string save_best_checkpoint(const std::string& run_dir, Engine& engine, Communicator* comm,
                                 const ModelConfig& model, const CheckpointInfo& info);

// RUN_DIR/ckpt/best when it is complete and records its eval_loss.
std::optional<SavedCheckpoint> read_best_checkpoint(const std::string& run_dir);
// The newest complete step directory of RUN_DIR/ckpt (what resume picks).
std::optional<SavedCheckpoint> newest_step_checkpoint(const std::string& run_dir);
// One process (rank 0): removes RUN_DIR/ckpt's step directories after
// `step`, and best when it is from after `step`, then points `latest` at the
// newest complete step left (removed when none is). Returns what it removed.
std::vector<std::string> remove_checkpoints_after(const std::string& run_dir, int64_t step);

// A verified checkpoint, open for reading.
class Checkpoint {
  public:
    enum class Part { params, exp_avg, exp_avg_sq };

    // path: a step directory (with manifest.json), a ckpt directory or a run
    // directory (their `latest` is followed). Checks the manifest, that every
    // rank file exists with the recorded size and SHA-256, and that each
    // file's tensors match the layout; refuses with a message naming the file.
    static Checkpoint open(const std::string& path);

    const std::string& dir() const { return dir_; }
    const nlohmann::json& manifest() const { return manifest_; }
    const ModelConfig& model_config() const { return model_; }
    const ModelLayout& layout() const { return layout_; }
    int64_t step() const { return step_; }
    int world_size() const { return world_; }
    int zero_stage() const { return stage_; }

    // The full unit (n_u,) of one part, assembled from every rank's file.
    void read_unit(int unit, Part part, float* out) const;

  private:
    std::string dir_;
    nlohmann::json manifest_;
    ModelConfig model_;
    ModelLayout layout_;
    ZeroLayout saved_layout_;  // the layout at the saving world size
    int64_t step_ = 0;
    int world_ = 1, stage_ = 0;
    std::vector<SafetensorsFile> files_;  // by saved rank
};

// The step directory `path` designates (see Checkpoint::open), without
// verifying its contents. For a run or ckpt directory it is the newest
// complete step-* directory (its manifest parses and every file it lists is
// there at its recorded size); `latest` is only a hint, so a save that died
// between renaming its directory into place and writing `latest` is still
// found.
std::string resolve_checkpoint_dir(const std::string& path);
// Whether a run directory (or its ckpt directory) holds a complete checkpoint.
bool has_checkpoint(const std::string& run_dir);

// Loads parameters and AdamW moments into an engine of any world size and
// stage; refuses a model whose shape differs from the checkpoint's before
// touching the engine. Every rank calls it. The files' contents were verified
// when the checkpoint was opened, so the reads cannot stop half-way on bad data.
void load_engine_state(const Checkpoint& ckpt, Engine& engine);

}  // namespace zt
