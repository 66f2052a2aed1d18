// Training configuration: defaults < --config file < command-line flags.
//
// Keys are the flag names with underscores (--micro-batch -> micro_batch), in
// the config file, in RUN_DIR/config.json and in the metrics' run line. Every
// value is validated before training starts, and a refusal names the flag,
// the value and what would be accepted.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace zt {

struct TrainConfig {
    std::string model = "test-tiny";  // preset name or Hugging Face config.json
    // fortunes (Debian's fortunes package, prepared once into the cache) |
    // synthetic | a prepared directory | one .bin shard
    std::string data = "fortunes";
    int zero_stage = 0;
    int nproc = 0;  // > 0: start this many local ranks through mpirun
    // With --nproc: relaunch the ranks with --resume auto after a rank died or
    // hung, at most this many times (cli/restart.h).
    int max_restarts = 0;
    std::string device = "cpu";
    std::string precision = "fp32";
    // Dtype gradients are accumulated and reduced in (DeepSpeed's
    // data_types.grad_accum_dtype): auto is the precision's own (bf16 for
    // bf16, as DeepSpeed does; fp32 for fp32), fp32 with bf16 keeps more bits.
    std::string grad_accum_dtype = "auto";
    std::string comm = "auto";      // auto: local for one rank, mpi for several
    double sim_bandwidth_gbps = 0;  // gigabits/s; 0 = unlimited (no simulation)
    double sim_latency_us = 0;
    // --netns: the --nproc ranks in private network namespaces, over TCP links
    // shaped to netns_bandwidth_gbps (0: not shaped) and delayed by
    // netns_latency_us (comm/netns.h).
    bool netns = false;
    double netns_bandwidth_gbps = 0;
    double netns_latency_us = 0;
    double comm_timeout_s = 300;
    bool overlap_comm = true;
    // DeepSpeed's bucket keys, in elements: gradient reductions, and stages
    // 1/2's gathers after the update, travel in buckets of at most this many
    // (zero/bucket.h). Stage 3's gathers on use are one unit each, ahead of
    // use by up to prefetch_bucket_size.
    int64_t reduce_bucket_size = int64_t(1) << 20;
    int64_t allgather_bucket_size = int64_t(1) << 20;
    int64_t prefetch_bucket_size = int64_t(50) << 20;        // stage3_prefetch_bucket_size
    int64_t param_persistence_threshold = int64_t(1) << 16;  // stage3_param_persistence_threshold
    // Where the optimizer state lives (DeepSpeed's offload_optimizer.device):
    // none | cpu (host memory: where it is anyway with --device cpu) | nvme
    // (files under offload_dir, streamed through a window of host buffers).
    std::string offload_optimizer = "none";
    std::string offload_dir;  // offload_optimizer.nvme_path
    // Stage 3's parameter shards (offload_param.device): none | cpu.
    std::string offload_params = "none";
    int seq_len = 64;
    int micro_batch = 16;
    int grad_accum = 1;
    int steps = 300;
    double lr = 3e-3;
    double min_lr = -1;  // < 0: lr / 10 (the cosine schedule's floor)
    int warmup = 20;
    // The learning-rate schedule (lr_at_step): cosine, zerotrain's own, or one of
    // DeepSpeed's (its "scheduler" block): WarmupLR, WarmupDecayLR, WarmupCosineLR.
    std::string lr_schedule = "cosine";
    std::string warmup_type = "auto";  // linear | log; auto: linear for cosine, log for DeepSpeed's
    double warmup_min_lr = 0;          // WarmupLR, WarmupDecayLR: the lr warmup starts from
    double warmup_min_ratio = 0;       // WarmupCosineLR: warmup starts at this fraction of lr
    double cos_min_ratio = 1e-4;       // WarmupCosineLR: the decay ends at this fraction of lr
    int lr_total_steps = 0;            // steps the schedule spans (total_num_steps; 0: --steps)
    double adam_eps = 1e-8;
    double weight_decay = 0.1;
    bool weight_decay_all = false;  // also decay norms, biases and embeddings
    double grad_clip = 1.0;
    double beta1 = 0.9;
    double beta2 = 0.95;
    uint64_t seed = 1337;
    std::string recompute = "none";
    // A non-finite gradient norm: stop (the default), or skip the step
    // (no update) and stop only after max_nonfinite_skips in a row.
    std::string on_nonfinite = "stop";
    int max_nonfinite_skips = 10;
    int eval_every = 100;         // 0: only at the end
    int64_t eval_tokens = 32768;  // <= 0: the whole validation split
    std::string out;              // empty: runs/run-<time>
    int save_every = 0;           // also checkpoint every N steps (the last is always saved)
    int keep_last = 0;            // keep the newest K checkpoints (0: all)
    bool no_save = false;         // write no checkpoint at all (not even the final one)
    bool keep_best = false;       // also keep RUN_DIR/ckpt/best, of the lowest eval loss
    std::string resume;      // checkpoint to continue from: a directory, or auto (latest in --out)
    std::string init_from;   // Hugging Face folder whose weights start the run
    int threads = 0;         // 0: OpenMP's default
    int sample_tokens = 64;  // a sample generated at the end (data with a tokenizer); 0: none
    // Print every N-th step line (and always the first, the last and a stopped
    // one); 0: about twenty a run. metrics.jsonl gets every step regardless.
    int log_every = 0;
    // DeepSpeed's train_batch_size when given: must equal world * micro_batch * grad_accum.
    int64_t train_batch_size = 0;

    // Keys (JSON names) set by a flag or a config file rather than left at
    // their defaults: a resumed run takes the checkpoint's value for the rest.
    std::set<std::string> given;
    // DeepSpeed keys a config file wrote as "auto" (e.g. optimizer.params.lr) -> that file:
    // each takes zerotrain's setting, as the Hugging Face Trainer fills it in, and the run
    // prints what it became (describe_auto_values).
    std::map<std::string, std::string> auto_keys;

    double resolved_min_lr() const { return min_lr < 0 ? lr / 10.0 : min_lr; }
    int resolved_lr_total_steps() const { return lr_total_steps > 0 ? lr_total_steps : steps; }
    std::string resolved_warmup_type() const {
        return warmup_type != "auto" ? warmup_type : lr_schedule == "cosine" ? "linear" : "log";
    }
    std::string resolved_grad_dtype() const {
        return grad_accum_dtype == "auto" ? precision : grad_accum_dtype;
    }
};

nlohmann::ordered_json train_config_to_json(const TrainConfig& c);
// Applies the keys of a JSON object; refuses unknown keys and wrong types by
// name. DeepSpeed's keys are accepted for what zerotrain supports
// (train_micro_batch_size_per_gpu, gradient_accumulation_steps,
// train_batch_size, gradient_clipping, bf16.enabled, zero_optimization.*,
// optimizer Adam/AdamW with its params, scheduler WarmupLR / WarmupDecayLR /
// WarmupCosineLR with theirs; a parameter a block leaves out takes DeepSpeed's
// default, "auto" takes zerotrain's setting); DeepSpeed keys that are
// knowingly ignored print a warning.
void apply_train_config_json(TrainConfig& c, const nlohmann::json& j, const std::string& source);
bool apply_deepspeed_key(TrainConfig& c, const std::string& key, const nlohmann::json& value,
                         const std::string& source);
void load_train_config_file(TrainConfig& c, const std::string& path);
// Refuses every invalid or unsupported value, naming the flag.
void validate_train_config(const TrainConfig& c);

// DeepSpeed's batch rule, once the world is known: train_batch_size = world x
// micro_batch x grad_accum, the one of micro_batch and grad_accum not given
// inferred from the others (both: grad_accum 1). Refuses, naming
// train_batch_size, what does not divide. Returns what it inferred ("" if nothing).
std::string resolve_train_batch_size(TrainConfig& c, int world);
// "auto" bucket sizes from the model's hidden size, as the Hugging Face Trainer
// fills them: reduce_bucket_size C^2, stage3_prefetch_bucket_size 0.9 C^2,
// stage3_param_persistence_threshold 10 C.
void resolve_auto_bucket_sizes(TrainConfig& c, int hidden_size);
// One line per "auto" key: the file, the key and the value it became, and from what.
std::vector<std::string> describe_auto_values(const TrainConfig& c, int world);
// The schedule in words, e.g. "WarmupLR: log warmup from 0 to 0.001 over 1000 steps, then
// constant 0.001".
std::string describe_lr_schedule(const TrainConfig& c);

// Learning rate of optimizer step `step` (0-based).
//   cosine: linear warmup to lr over `warmup` steps, then cosine decay to
//     min_lr at step lr_total_steps - 1.
//   WarmupLR, WarmupDecayLR, WarmupCosineLR: deepspeed/runtime/lr_schedules.py's
//     formulas, at the step the DeepSpeed engine uses: its scheduler steps
//     after each optimizer step, so step s trains with the schedule's value at
//     last_batch_iteration s - 1 (at s = 0, the value the scheduler starts with:
//     warmup_min_lr, or 0 for WarmupCosineLR).
double lr_at_step(const TrainConfig& c, int64_t step);

}  // namespace zt
