#include "train/config.h"

#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/check.h"

namespace zt {

nlohmann::ordered_json train_config_to_json(const TrainConfig& c) {
    nlohmann::ordered_json j;
    j["model"] = c.model;
    j["data"] = c.data;
    j["zero_stage"] = c.zero_stage;
    j["nproc"] = c.nproc;
    j["device"] = c.device;
    j["precision"] = c.precision;
    j["grad_accum_dtype"] = c.grad_accum_dtype;
    j["comm"] = c.comm;
    j["sim_bandwidth_gbps"] = c.sim_bandwidth_gbps;
    j["sim_latency_us"] = c.sim_latency_us;
    j["comm_timeout_s"] = c.comm_timeout_s;
    j["overlap_comm"] = c.overlap_comm;
    j["reduce_bucket_size"] = c.reduce_bucket_size;
    j["allgather_bucket_size"] = c.allgather_bucket_size;
    j["prefetch_bucket_size"] = c.prefetch_bucket_size;
    j["param_persistence_threshold"] = c.param_persistence_threshold;
    j["offload_optimizer"] = c.offload_optimizer;
    j["offload_dir"] = c.offload_dir;
    j["offload_params"] = c.offload_params;
    j["seq_len"] = c.seq_len;
    j["micro_batch"] = c.micro_batch;
    j["grad_accum"] = c.grad_accum;
    j["steps"] = c.steps;
    j["lr"] = c.lr;
    j["min_lr"] = c.resolved_min_lr();
    j["warmup"] = c.warmup;
    j["weight_decay"] = c.weight_decay;
    j["weight_decay_all"] = c.weight_decay_all;
    j["grad_clip"] = c.grad_clip;
    j["beta1"] = c.beta1;
    j["beta2"] = c.beta2;
    j["seed"] = c.seed;
    j["recompute"] = c.recompute;
    j["on_nonfinite"] = c.on_nonfinite;
    j["max_nonfinite_skips"] = c.max_nonfinite_skips;
    j["eval_every"] = c.eval_every;
    j["eval_tokens"] = c.eval_tokens;
    j["out"] = c.out;
    j["save_every"] = c.save_every;
    j["keep_last"] = c.keep_last;
    j["no_save"] = c.no_save;
    j["keep_best"] = c.keep_best;
    j["resume"] = c.resume;
    j["init_from"] = c.init_from;
    j["threads"] = c.threads;
    j["sample_tokens"] = c.sample_tokens;
    return j;
}

namespace {

template <typename T>
void read_key(const nlohmann::json& v, const std::string& key, const std::string& source, T* out) {
    try {
        if constexpr (std::is_same_v<T, bool>) {
            ZT_CHECK(v.is_boolean(), "%s: '%s' must be true or false", source.c_str(), key.c_str());
        } else if constexpr (std::is_same_v<T, std::string>) {
            ZT_CHECK(v.is_string(), "%s: '%s' must be a string", source.c_str(), key.c_str());
        } else if constexpr (std::is_integral_v<T>) {
            ZT_CHECK(v.is_number_integer(), "%s: '%s' must be an integer", source.c_str(),
                     key.c_str());
        } else {
            ZT_CHECK(v.is_number(), "%s: '%s' must be a number", source.c_str(), key.c_str());
        }
        *out = v.get<T>();
    } catch (const nlohmann::json::exception& e) {
        ZT_FAIL("%s: '%s' has the wrong type: %s", source.c_str(), key.c_str(), e.what());
    }
}

// Keys of DeepSpeed's configuration that change nothing here, or that
// zerotrain decides itself; a warning names each one found.
bool is_ignored_deepspeed_key(const std::string& k) {
    static const char* keys[] = {"steps_per_print",
                                 "wall_clock_breakdown",
                                 "optimizer",
                                 "scheduler",
                                 "zero_allow_untested_optimizer",
                                 "gradient_predivide_factor",
                                 "prescale_gradients",
                                 "communication_data_type",
                                 "flops_profiler",
                                 "tensorboard",
                                 "wandb",
                                 "csv_monitor",
                                 "dump_state",
                                 "train_batch_size_auto"};
    for (const char* name : keys)
        if (k == name) return true;
    return false;
}

void warn_ignored(const std::string& source, const std::string& key) {
    std::fprintf(stderr, "zerotrain: warning: %s: DeepSpeed key '%s' is ignored by zerotrain\n",
                 source.c_str(), key.c_str());
}

// zero_optimization's element-count keys and the fields they set (null: not one).
int64_t* element_count_field(TrainConfig& c, const std::string& key) {
    if (key == "reduce_bucket_size") return &c.reduce_bucket_size;
    if (key == "allgather_bucket_size") return &c.allgather_bucket_size;
    if (key == "stage3_prefetch_bucket_size") return &c.prefetch_bucket_size;
    if (key == "stage3_param_persistence_threshold") return &c.param_persistence_threshold;
    return nullptr;
}

void apply_zero_optimization(TrainConfig& c, const nlohmann::json& z, const std::string& source) {
    ZT_CHECK(z.is_object(), "%s: 'zero_optimization' must be an object", source.c_str());
    static const char* ignored[] = {"contiguous_gradients",
                                    "round_robin_gradients",
                                    "sub_group_size",
                                    "stage3_max_live_parameters",
                                    "stage3_max_reuse_distance",
                                    "elastic_checkpoint",
                                    "stage3_gather_16bit_weights_on_model_save",
                                    "reduce_scatter",
                                    "allgather_partitions",
                                    "load_from_fp32_weights",
                                    "ignore_unused_parameters",
                                    "memory_efficient_linear"};
    for (auto it = z.begin(); it != z.end(); ++it) {
        const std::string& k = it.key();
        const auto& v = it.value();
        std::string name = "zero_optimization." + k;
        if (k == "stage") {
            read_key(v, name, source, &c.zero_stage);
        } else if (k == "overlap_comm") {
            read_key(v, name, source, &c.overlap_comm);
        } else if (int64_t* count = element_count_field(c, k)) {
            // DeepSpeed writes these as numbers such as 5e8: read any number.
            double x;
            read_key(v, name, source, &x);
            ZT_CHECK(std::isfinite(x) && x >= 0 && x <= 4.0e18 && x == std::floor(x),
                     "%s: %s is %g: expected a whole number of elements from 0 to 4e18",
                     source.c_str(), name.c_str(), x);
            *count = int64_t(x);
        } else if (k == "offload_optimizer" || k == "offload_param") {
            ZT_CHECK(v.is_object() && v.contains("device") && v["device"].is_string(),
                     "%s: '%s' must be an object with a string 'device'", source.c_str(),
                     name.c_str());
            const std::string dev = v["device"];
            ZT_CHECK(dev == "cpu" || dev == "none" || dev == "nvme",
                     "%s: %s.device '%s': expected none, cpu or nvme", source.c_str(), name.c_str(),
                     dev.c_str());
            (k == "offload_optimizer" ? c.offload_optimizer : c.offload_params) = dev;
            c.given.insert(k == "offload_optimizer" ? "offload_optimizer" : "offload_params");
            for (auto f = v.begin(); f != v.end(); ++f) {
                const std::string field = name + "." + f.key();
                if (f.key() == "device") continue;
                if (f.key() == "nvme_path") {
                    // One directory holds both tiers' files.
                    std::string dir;
                    read_key(f.value(), field, source, &dir);
                    ZT_CHECK(c.offload_dir.empty() || c.offload_dir == dir,
                             "%s: %s '%s' differs from the other nvme_path '%s': zerotrain "
                             "keeps both offloaded tiers in one directory",
                             source.c_str(), field.c_str(), dir.c_str(), c.offload_dir.c_str());
                    c.offload_dir = dir;
                    c.given.insert("offload_dir");
                } else if (f.key() == "pin_memory" || f.key() == "buffer_count" ||
                           f.key() == "buffer_size" || f.key() == "fast_init" ||
                           f.key() == "max_in_cpu" || f.key() == "ratio" ||
                           f.key() == "pipeline_read" || f.key() == "pipeline_write" ||
                           f.key() == "nvme_path") {
                    warn_ignored(source, field);
                } else {
                    ZT_FAIL("%s: unknown configuration key '%s'", source.c_str(), field.c_str());
                }
            }
        } else {
            bool known_ignored = false;
            for (const char* n : ignored) known_ignored |= k == n;
            ZT_CHECK(known_ignored, "%s: unknown configuration key '%s'", source.c_str(),
                     name.c_str());
            warn_ignored(source, name);
        }
    }
}

}  // namespace

// DeepSpeed's names for what we support. Returns false when the key is not one of them.
bool apply_deepspeed_key(TrainConfig& c, const std::string& k, const nlohmann::json& v,
                         const std::string& source) {
    if (k == "train_micro_batch_size_per_gpu") {
        read_key(v, k, source, &c.micro_batch);
    } else if (k == "gradient_accumulation_steps") {
        read_key(v, k, source, &c.grad_accum);
    } else if (k == "train_batch_size") {
        read_key(v, k, source, &c.train_batch_size);
    } else if (k == "gradient_clipping") {
        read_key(v, k, source, &c.grad_clip);
    } else if (k == "bf16" || k == "fp16") {
        ZT_CHECK(v.is_object(), "%s: '%s' must be an object", source.c_str(), k.c_str());
        bool enabled = v.value("enabled", false);
        if (k == "bf16") {
            if (enabled) c.precision = "bf16";
        } else {
            ZT_CHECK(!enabled, "%s: fp16.enabled: zerotrain trains in fp32 or bf16, not fp16",
                     source.c_str());
        }
    } else if (k == "data_types") {
        ZT_CHECK(v.is_object(), "%s: 'data_types' must be an object", source.c_str());
        for (auto it = v.begin(); it != v.end(); ++it) {
            ZT_CHECK(it.key() == "grad_accum_dtype",
                     "%s: data_types.%s is not supported (data_types.grad_accum_dtype is)",
                     source.c_str(), it.key().c_str());
            read_key(it.value(), "data_types.grad_accum_dtype", source, &c.grad_accum_dtype);
        }
    } else if (k == "zero_optimization") {
        apply_zero_optimization(c, v, source);
    } else if (is_ignored_deepspeed_key(k)) {
        warn_ignored(source, k);
    } else {
        return false;
    }
    return true;
}

void apply_train_config_json(TrainConfig& c, const nlohmann::json& j, const std::string& source) {
    ZT_CHECK(j.is_object(), "%s: the configuration must be a JSON object", source.c_str());
    // Record what the file sets: its own keys by name, DeepSpeed's by their effect.
    const nlohmann::ordered_json before = train_config_to_json(c);
    struct RecordGiven {
        TrainConfig& c;
        const nlohmann::json& j;
        const nlohmann::ordered_json& before;
        ~RecordGiven() {
            nlohmann::ordered_json after = train_config_to_json(c);
            for (auto it = after.begin(); it != after.end(); ++it)
                if (j.contains(it.key()) || before[it.key()] != it.value())
                    c.given.insert(it.key());
        }
    } record{c, j, before};
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& k = it.key();
        const auto& v = it.value();
        if (k == "model")
            read_key(v, k, source, &c.model);
        else if (k == "data")
            read_key(v, k, source, &c.data);
        else if (k == "zero_stage")
            read_key(v, k, source, &c.zero_stage);
        else if (k == "nproc")
            read_key(v, k, source, &c.nproc);
        else if (k == "sim_bandwidth_gbps")
            read_key(v, k, source, &c.sim_bandwidth_gbps);
        else if (k == "sim_latency_us")
            read_key(v, k, source, &c.sim_latency_us);
        else if (k == "comm_timeout_s")
            read_key(v, k, source, &c.comm_timeout_s);
        else if (k == "overlap_comm")
            read_key(v, k, source, &c.overlap_comm);
        else if (k == "reduce_bucket_size")
            read_key(v, k, source, &c.reduce_bucket_size);
        else if (k == "allgather_bucket_size")
            read_key(v, k, source, &c.allgather_bucket_size);
        else if (k == "prefetch_bucket_size")
            read_key(v, k, source, &c.prefetch_bucket_size);
        else if (k == "param_persistence_threshold")
            read_key(v, k, source, &c.param_persistence_threshold);
        else if (k == "offload_optimizer" || k == "offload_params") {
            std::string& field = k == "offload_optimizer" ? c.offload_optimizer : c.offload_params;
            if (v.is_boolean())  // run configs written before nvme existed
                field = v.get<bool>() ? "cpu" : "none";
            else
                read_key(v, k, source, &field);
        } else if (k == "offload_dir")
            read_key(v, k, source, &c.offload_dir);
        else if (apply_deepspeed_key(c, k, v, source))
            continue;
        else if (k == "device")
            read_key(v, k, source, &c.device);
        else if (k == "precision")
            read_key(v, k, source, &c.precision);
        else if (k == "grad_accum_dtype")
            read_key(v, k, source, &c.grad_accum_dtype);
        else if (k == "comm")
            read_key(v, k, source, &c.comm);
        else if (k == "seq_len")
            read_key(v, k, source, &c.seq_len);
        else if (k == "micro_batch")
            read_key(v, k, source, &c.micro_batch);
        else if (k == "grad_accum")
            read_key(v, k, source, &c.grad_accum);
        else if (k == "steps")
            read_key(v, k, source, &c.steps);
        else if (k == "lr")
            read_key(v, k, source, &c.lr);
        else if (k == "min_lr")
            read_key(v, k, source, &c.min_lr);
        else if (k == "warmup")
            read_key(v, k, source, &c.warmup);
        else if (k == "weight_decay")
            read_key(v, k, source, &c.weight_decay);
        else if (k == "weight_decay_all")
            read_key(v, k, source, &c.weight_decay_all);
        else if (k == "grad_clip")
            read_key(v, k, source, &c.grad_clip);
        else if (k == "beta1")
            read_key(v, k, source, &c.beta1);
        else if (k == "beta2")
            read_key(v, k, source, &c.beta2);
        else if (k == "seed")
            read_key(v, k, source, &c.seed);
        else if (k == "recompute")
            read_key(v, k, source, &c.recompute);
        else if (k == "on_nonfinite")
            read_key(v, k, source, &c.on_nonfinite);
        else if (k == "max_nonfinite_skips")
            read_key(v, k, source, &c.max_nonfinite_skips);
        else if (k == "eval_every")
            read_key(v, k, source, &c.eval_every);
        else if (k == "eval_tokens")
            read_key(v, k, source, &c.eval_tokens);
        else if (k == "out")
            read_key(v, k, source, &c.out);
        else if (k == "threads")
            read_key(v, k, source, &c.threads);
        else if (k == "save_every")
            read_key(v, k, source, &c.save_every);
        else if (k == "sample_tokens")
            read_key(v, k, source, &c.sample_tokens);
        else if (k == "keep_last")
            read_key(v, k, source, &c.keep_last);
        else if (k == "no_save")
            read_key(v, k, source, &c.no_save);
        else if (k == "keep_best")
            read_key(v, k, source, &c.keep_best);
        else if (k == "resume")
            read_key(v, k, source, &c.resume);
        else if (k == "init_from")
            read_key(v, k, source, &c.init_from);
        else
            ZT_FAIL(
                "%s: unknown configuration key '%s' (keys are the train flags with "
                "underscores, e.g. micro_batch; see zerotrain train --help)",
                source.c_str(), k.c_str());
    }
}

void load_train_config_file(TrainConfig& c, const std::string& path) {
    std::ifstream in(path);
    ZT_CHECK(in.good(), "--config: cannot open '%s'", path.c_str());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
        ZT_FAIL("--config: '%s' is not valid JSON: %s", path.c_str(), e.what());
    }
    apply_train_config_json(c, j, path);
}

void validate_train_config(const TrainConfig& c) {
    ZT_CHECK(c.zero_stage >= 0 && c.zero_stage <= 3,
             "--zero-stage %d: expected a ZeRO stage from 0 to 3", c.zero_stage);
    ZT_CHECK(c.nproc >= 0, "--nproc %d: must be a positive number of ranks", c.nproc);
    ZT_CHECK(c.device == "cpu" || c.device == "cuda", "--device '%s': expected cpu or cuda",
             c.device.c_str());
    ZT_CHECK(c.device == "cpu",
             "--device cuda: training on the GPU is not wired in yet (the CUDA ops compile, "
             "but the engine and model run on the CPU); use --device cpu");
    ZT_CHECK(c.precision == "fp32" || c.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", c.precision.c_str());
    ZT_CHECK(c.grad_accum_dtype == "auto" || c.grad_accum_dtype == "fp32" ||
                 c.grad_accum_dtype == "bf16",
             "--grad-accum-dtype '%s': expected auto, fp32 or bf16", c.grad_accum_dtype.c_str());
    ZT_CHECK(!(c.precision == "fp32" && c.grad_accum_dtype == "bf16"),
             "--grad-accum-dtype bf16 needs --precision bf16 (fp32 training reduces in fp32)");
    ZT_CHECK(c.comm == "auto" || c.comm == "local" || c.comm == "mpi" || c.comm == "ring" ||
                 c.comm == "nccl",
             "--comm '%s': expected auto, local, mpi, ring or nccl", c.comm.c_str());
    ZT_CHECK(c.comm != "nccl", "--comm nccl: NCCL needs --device cuda; use mpi or ring on CPU");
    ZT_CHECK(std::isfinite(c.sim_bandwidth_gbps) && c.sim_bandwidth_gbps >= 0,
             "--sim-bandwidth-gbps %g: must be >= 0 (0: unlimited)", c.sim_bandwidth_gbps);
    ZT_CHECK(std::isfinite(c.sim_latency_us) && c.sim_latency_us >= 0,
             "--sim-latency-us %g: must be >= 0", c.sim_latency_us);
    ZT_CHECK(std::isfinite(c.comm_timeout_s) && c.comm_timeout_s > 0,
             "--comm-timeout-s %g: must be a positive number of seconds", c.comm_timeout_s);
    ZT_CHECK(c.reduce_bucket_size > 0, "reduce_bucket_size %lld: must be positive",
             (long long)c.reduce_bucket_size);
    ZT_CHECK(c.allgather_bucket_size > 0, "allgather_bucket_size %lld: must be positive",
             (long long)c.allgather_bucket_size);
    ZT_CHECK(c.prefetch_bucket_size >= 0, "stage3_prefetch_bucket_size %lld: must be >= 0",
             (long long)c.prefetch_bucket_size);
    ZT_CHECK(c.param_persistence_threshold >= 0,
             "stage3_param_persistence_threshold %lld: must be >= 0",
             (long long)c.param_persistence_threshold);
    ZT_CHECK(c.offload_optimizer == "none" || c.offload_optimizer == "cpu" ||
                 c.offload_optimizer == "nvme",
             "--offload-optimizer '%s': expected none, cpu or nvme", c.offload_optimizer.c_str());
    ZT_CHECK(c.offload_optimizer != "nvme" || !c.offload_dir.empty(),
             "--offload-optimizer nvme needs --offload-dir DIR (DeepSpeed: "
             "offload_optimizer.nvme_path): the directory the optimizer state is streamed to");
    ZT_CHECK(c.offload_params != "nvme" || !c.offload_dir.empty(),
             "--offload-params nvme needs --offload-dir DIR (DeepSpeed: offload_param.nvme_path): "
             "the directory the parameter shards are kept in");
    ZT_CHECK(c.offload_dir.empty() || c.offload_optimizer == "nvme" || c.offload_params == "nvme",
             "--offload-dir %s: only used with --offload-optimizer nvme or --offload-params nvme "
             "(now %s and %s)",
             c.offload_dir.c_str(), c.offload_optimizer.c_str(), c.offload_params.c_str());
    ZT_CHECK(c.offload_params == "none" || c.offload_params == "cpu" || c.offload_params == "nvme",
             "--offload-params '%s': expected none, cpu or nvme", c.offload_params.c_str());
    ZT_CHECK(c.offload_params == "none" || c.zero_stage == 3,
             "--offload-params %s: parameter offload needs --zero-stage 3 (now %d), where each "
             "rank keeps only its shard of the parameters",
             c.offload_params.c_str(), c.zero_stage);
    ZT_CHECK(c.train_batch_size >= 0, "train_batch_size %lld: must be positive",
             (long long)c.train_batch_size);
    ZT_CHECK(c.recompute == "none" || c.recompute == "attn" || c.recompute == "full",
             "--recompute '%s': expected none, attn or full", c.recompute.c_str());
    ZT_CHECK(c.on_nonfinite == "stop" || c.on_nonfinite == "skip",
             "--on-nonfinite '%s': expected stop or skip", c.on_nonfinite.c_str());
    ZT_CHECK(c.max_nonfinite_skips >= 1,
             "--max-nonfinite-skips %d: must be >= 1 (skipped steps in a row before stopping)",
             c.max_nonfinite_skips);
    ZT_CHECK(c.seq_len > 0, "--seq-len %d: must be a positive number of tokens", c.seq_len);
    ZT_CHECK(c.micro_batch > 0, "--micro-batch %d: must be a positive number of sequences",
             c.micro_batch);
    ZT_CHECK(c.grad_accum > 0, "--grad-accum %d: must be a positive number of micro-batches",
             c.grad_accum);
    ZT_CHECK(c.steps > 0, "--steps %d: must be a positive number of optimizer steps", c.steps);
    ZT_CHECK(std::isfinite(c.lr) && c.lr > 0, "--lr %g: must be a positive number", c.lr);
    ZT_CHECK(c.min_lr < 0 || (std::isfinite(c.min_lr) && c.min_lr <= c.lr),
             "--min-lr %g: must be between 0 and --lr %g", c.min_lr, c.lr);
    ZT_CHECK(c.warmup >= 0, "--warmup %d: must be >= 0 steps", c.warmup);
    ZT_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
             "--weight-decay %g: must be >= 0", c.weight_decay);
    ZT_CHECK(std::isfinite(c.grad_clip) && c.grad_clip >= 0,
             "--grad-clip %g: must be >= 0 (0 disables clipping)", c.grad_clip);
    ZT_CHECK(c.beta1 >= 0 && c.beta1 < 1, "beta1 %g: must be in [0, 1)", c.beta1);
    ZT_CHECK(c.beta2 >= 0 && c.beta2 < 1, "beta2 %g: must be in [0, 1)", c.beta2);
    ZT_CHECK(c.eval_every >= 0, "--eval-every %d: must be >= 0 (0: evaluate at the end only)",
             c.eval_every);
    ZT_CHECK(c.threads >= 0, "--threads %d: must be >= 0 (0: all cores)", c.threads);
    ZT_CHECK(c.sample_tokens >= 0, "--sample-tokens %d: must be >= 0 (0: no sample)",
             c.sample_tokens);
    ZT_CHECK(c.save_every >= 0, "--save-every %d: must be >= 0 (0: save only at the end)",
             c.save_every);
    ZT_CHECK(c.keep_last >= 0, "--keep-last %d: must be >= 0 (0: keep every checkpoint)",
             c.keep_last);
    ZT_CHECK(!c.no_save || (c.save_every == 0 && !c.keep_best),
             "--no-save writes no checkpoint, but %s asks for one; drop one of them",
             c.keep_best ? "--keep-best" : strprintf("--save-every %d", c.save_every).c_str());
    ZT_CHECK(c.resume.empty() || c.init_from.empty(),
             "--resume and --init-from exclude each other: a checkpoint already holds the weights");
    ZT_CHECK(c.resume != "auto" || !c.out.empty(),
             "--resume auto continues the latest checkpoint in --out; give --out RUN_DIR");
}

double lr_at_step(const TrainConfig& c, int64_t step) {
    double lr = c.lr, min_lr = c.resolved_min_lr();
    if (step < c.warmup) return lr * double(step + 1) / double(c.warmup);
    int64_t decay_steps = int64_t(c.steps) - c.warmup;
    if (decay_steps <= 1) return lr;
    double progress = double(step - c.warmup) / double(decay_steps - 1);
    if (progress > 1) progress = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace zt
