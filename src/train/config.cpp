#include "train/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>

#include "core/check.h"

namespace zt {

nlohmann::ordered_json train_config_to_json(const TrainConfig& c) {
    nlohmann::ordered_json j;
    j["model"] = c.model;
    j["data"] = c.data;
    j["zero_stage"] = c.zero_stage;
    j["nproc"] = c.nproc;
    j["max_restarts"] = c.max_restarts;
    j["device"] = c.device;
    j["precision"] = c.precision;
    j["grad_accum_dtype"] = c.grad_accum_dtype;
    j["comm"] = c.comm;
    j["sim_bandwidth_gbps"] = c.sim_bandwidth_gbps;
    j["sim_latency_us"] = c.sim_latency_us;
    j["netns"] = c.netns;
    j["netns_bandwidth_gbps"] = c.netns_bandwidth_gbps;
    j["netns_latency_us"] = c.netns_latency_us;
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
    // The floor of the cosine schedule only; DeepSpeed's schedules have their own.
    j["min_lr"] = c.lr_schedule == "cosine" ? c.resolved_min_lr() : c.min_lr;
    j["warmup"] = c.warmup;
    j["lr_schedule"] = c.lr_schedule;
    j["warmup_type"] = c.resolved_warmup_type();
    j["warmup_min_lr"] = c.warmup_min_lr;
    j["warmup_min_ratio"] = c.warmup_min_ratio;
    j["cos_min_ratio"] = c.cos_min_ratio;
    j["lr_total_steps"] = c.lr_total_steps;
    j["adam_eps"] = c.adam_eps;
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
    j["log_every"] = c.log_every;
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
            // Range-checked in 64 bits before narrowing, so that 4294967297
            // is refused rather than becoming 1.
            const long long lo = (long long)std::numeric_limits<T>::min();
            const unsigned long long hi = (unsigned long long)std::numeric_limits<T>::max();
            const bool fits = v.is_number_unsigned()
                                  ? v.get<uint64_t>() <= hi
                                  : v.get<int64_t>() >= lo &&
                                        (v.get<int64_t>() < 0 || uint64_t(v.get<int64_t>()) <= hi);
            ZT_CHECK(fits, "%s: '%s' is %s, outside [%lld, %llu]", source.c_str(), key.c_str(),
                     v.dump().c_str(), lo, hi);
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

bool is_auto(const nlohmann::json& v) {
    return v.is_string() && v.get<std::string>() == "auto";
}

// A DeepSpeed number that must be finite and at least `lo`, named by its key.
double ds_number(const nlohmann::json& v, const std::string& key, const std::string& source,
                 double lo) {
    double x = 0;
    read_key(v, key, source, &x);
    ZT_CHECK(std::isfinite(x) && x >= lo, "%s: %s is %s: expected a number >= %g", source.c_str(),
             key.c_str(), v.dump().c_str(), lo);
    return x;
}

// A DeepSpeed step count: a positive integer, named by its key.
int ds_steps(const nlohmann::json& v, const std::string& key, const std::string& source) {
    ZT_CHECK(v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= INT32_MAX,
             "%s: %s is %s: expected a positive whole number of steps", source.c_str(), key.c_str(),
             v.dump().c_str());
    return int(v.get<int64_t>());
}

bool ds_bool(const nlohmann::json& v, const std::string& key, const std::string& source) {
    bool b = false;
    read_key(v, key, source, &b);
    return b;
}

// A DeepSpeed `optimizer` or `scheduler` block: an object of `type` (a
// string naming `what`) and `params`, nothing else. Returns the type.
std::string block_type(const nlohmann::json& v, const char* block, const char* what,
                       const char* src) {
    ZT_CHECK(v.is_object(), "%s: '%s' must be an object with 'type' and 'params'", src, block);
    for (auto it = v.begin(); it != v.end(); ++it)
        ZT_CHECK(it.key() == "type" || it.key() == "params",
                 "%s: unknown configuration key '%s.%s' (type and params are read)", src, block,
                 it.key().c_str());
    ZT_CHECK(v.contains("type") && v["type"].is_string(), "%s: %s.type must name %s", src, block,
             what);
    return v["type"].get<std::string>();
}

// DeepSpeed's "optimizer" block: Adam or AdamW (DeepSpeed's FusedAdam or
// DeepSpeedCPUAdam, or torch's with torch_adam), which is zerotrain's AdamW
// when it decays decoupled (AdamW, or Adam with adam_w_mode, its default). A
// parameter the block leaves out takes DeepSpeed's default (lr 1e-3, betas
// (0.9, 0.999), eps 1e-8, weight_decay 0; torch.optim.AdamW's 0.01 with
// torch_adam); "auto" keeps zerotrain's own setting (`zt`), as the Hugging
// Face Trainer fills it from its arguments. Returns the lr the block gave.
std::optional<double> apply_optimizer_block(TrainConfig& c, const TrainConfig& zt,
                                            const nlohmann::json& v, const std::string& source) {
    const char* src = source.c_str();
    std::string type = block_type(v, "optimizer", "the optimizer (Adam or AdamW)", src);
    std::string lower = type;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return char(std::tolower(ch)); });
    ZT_CHECK(lower == "adam" || lower == "adamw",
             "%s: optimizer.type '%s' is not supported: zerotrain's optimizer is AdamW "
             "(DeepSpeed's Adam or AdamW)",
             src, type.c_str());
    const nlohmann::json params = v.value("params", nlohmann::json::object());
    ZT_CHECK(params.is_object(), "%s: optimizer.params must be an object", src);
    auto key = [](const std::string& k) { return "optimizer.params." + k; };
    bool adam_w_mode = true, torch_adam = false;
    for (auto it = params.begin(); it != params.end(); ++it) {
        const std::string& k = it.key();
        if (k == "adam_w_mode") {
            adam_w_mode = ds_bool(it.value(), key(k), source);
            // Adam with adam_w_mode false adds weight_decay x param to the gradient (L2).
            ZT_CHECK(adam_w_mode || lower == "adamw",
                     "%s: optimizer.params.adam_w_mode false (Adam with L2 weight decay) is not "
                     "supported: zerotrain's AdamW decays decoupled; set it true or leave it out",
                     src);
        } else if (k == "torch_adam") {
            torch_adam = ds_bool(it.value(), key(k), source);
        } else if (k == "bias_correction") {
            ZT_CHECK(ds_bool(it.value(), key(k), source),
                     "%s: optimizer.params.bias_correction false is not supported: zerotrain's "
                     "AdamW always corrects the moments' bias",
                     src);
        } else if (k == "amsgrad") {
            ZT_CHECK(!ds_bool(it.value(), key(k), source),
                     "%s: optimizer.params.amsgrad true is not supported (zerotrain's AdamW is "
                     "not AMSGrad)",
                     src);
        } else {
            ZT_CHECK(k == "lr" || k == "betas" || k == "eps" || k == "weight_decay",
                     "%s: unknown configuration key 'optimizer.params.%s' (lr, betas, eps, "
                     "weight_decay, adam_w_mode, torch_adam, bias_correction, amsgrad are read)",
                     src, k.c_str());
        }
    }
    // DeepSpeed's Adam decays decoupled unless adam_w_mode is false (refused above).
    const bool decoupled = lower == "adamw" || adam_w_mode;
    c.lr = 1e-3;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.adam_eps = 1e-8;
    c.weight_decay = torch_adam && decoupled ? 0.01 : 0.0;
    std::optional<double> lr;
    auto auto_or = [&](const std::string& k) {
        if (!is_auto(params[k])) return false;
        c.auto_keys[key(k)] = source;
        return true;
    };
    if (params.contains("lr")) {
        c.lr = auto_or("lr") ? zt.lr : ds_number(params["lr"], key("lr"), source, 0);
        if (!is_auto(params["lr"])) lr = c.lr;
    }
    if (params.contains("betas")) {
        if (auto_or("betas")) {
            c.beta1 = zt.beta1;
            c.beta2 = zt.beta2;
        } else {
            const auto& b = params["betas"];
            ZT_CHECK(b.is_array() && b.size() == 2 && b[0].is_number() && b[1].is_number(),
                     "%s: optimizer.params.betas is %s: expected [beta1, beta2]", src,
                     b.dump().c_str());
            c.beta1 = b[0].get<double>();
            c.beta2 = b[1].get<double>();
            ZT_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1,
                     "%s: optimizer.params.betas %s: each must be in [0, 1)", src,
                     b.dump().c_str());
        }
    }
    if (params.contains("eps"))
        c.adam_eps = auto_or("eps") ? zt.adam_eps : ds_number(params["eps"], key("eps"), source, 0);
    if (params.contains("weight_decay"))
        c.weight_decay = auto_or("weight_decay")
                             ? zt.weight_decay
                             : ds_number(params["weight_decay"], key("weight_decay"), source, 0);
    ZT_CHECK(c.lr > 0, "%s: optimizer.params.lr %g: must be positive", src, c.lr);
    ZT_CHECK(c.adam_eps > 0, "%s: optimizer.params.eps %g: must be positive", src, c.adam_eps);
    return lr;
}

// DeepSpeed's "scheduler" block, with its constructors' defaults for what it
// leaves out (deepspeed/runtime/lr_schedules.py) and "auto" as the Hugging Face
// Trainer fills it: warmup_min_lr 0, warmup_max_lr --lr, warmup_num_steps
// --warmup, total_num_steps --steps.
void apply_scheduler_block(TrainConfig& c, const TrainConfig& zt, const nlohmann::json& v,
                           const std::string& source, std::optional<double> optimizer_lr) {
    const char* src = source.c_str();
    const std::string type =
        block_type(v, "scheduler", "the schedule (WarmupLR, WarmupDecayLR or WarmupCosineLR)", src);
    ZT_CHECK(type == "WarmupLR" || type == "WarmupDecayLR" || type == "WarmupCosineLR",
             "%s: scheduler.type '%s' is not supported (WarmupLR, WarmupDecayLR and "
             "WarmupCosineLR are)",
             src, type.c_str());
    const nlohmann::json params = v.value("params", nlohmann::json::object());
    ZT_CHECK(params.is_object(), "%s: scheduler.params must be an object", src);
    const bool cosine = type == "WarmupCosineLR";
    for (auto it = params.begin(); it != params.end(); ++it) {
        const std::string& k = it.key();
        const bool known = k == "warmup_num_steps" || k == "warmup_type" ||
                           k == "last_batch_iteration" ||
                           (k == "total_num_steps" && type != "WarmupLR") ||
                           (!cosine && (k == "warmup_min_lr" || k == "warmup_max_lr")) ||
                           (cosine && (k == "warmup_min_ratio" || k == "cos_min_ratio"));
        ZT_CHECK(known, "%s: scheduler.params.%s is not a parameter of %s", src, k.c_str(),
                 type.c_str());
    }
    auto key = [](const std::string& k) { return "scheduler.params." + k; };
    auto auto_or = [&](const std::string& k) {
        if (!is_auto(params[k])) return false;
        c.auto_keys[key(k)] = source;
        return true;
    };
    c.lr_schedule = type;
    c.warmup_type = "log";
    c.warmup = 1000;
    c.warmup_min_lr = 0;
    c.warmup_min_ratio = 0;
    c.cos_min_ratio = 1e-4;
    c.lr_total_steps = 0;
    if (type == "WarmupDecayLR")
        c.lr = 1e-3;  // its warmup_max_lr default; WarmupLR keeps the optimizer's
    if (params.contains("warmup_num_steps"))
        c.warmup = auto_or("warmup_num_steps")
                       ? zt.warmup
                       : ds_steps(params["warmup_num_steps"], key("warmup_num_steps"), source);
    if (params.contains("warmup_type")) {
        read_key(params["warmup_type"], key("warmup_type"), source, &c.warmup_type);
        ZT_CHECK(c.warmup_type == "log" || c.warmup_type == "linear",
                 "%s: scheduler.params.warmup_type '%s': expected log or linear", src,
                 c.warmup_type.c_str());
    }
    if (params.contains("last_batch_iteration")) {
        int64_t it = 0;
        read_key(params["last_batch_iteration"], key("last_batch_iteration"), source, &it);
        ZT_CHECK(it == -1,
                 "%s: scheduler.params.last_batch_iteration %lld: only -1 (start the schedule "
                 "at the beginning) is supported; --resume continues a schedule",
                 src, (long long)it);
    }
    if (params.contains("total_num_steps")) {
        if (auto_or("total_num_steps"))
            c.lr_total_steps = 0;
        else
            c.lr_total_steps = ds_steps(params["total_num_steps"], key("total_num_steps"), source);
    } else {
        ZT_CHECK(type == "WarmupLR",
                 "%s: scheduler.params.total_num_steps is required by %s (DeepSpeed has no "
                 "default; \"auto\" is --steps)",
                 src, type.c_str());
    }
    if (params.contains("warmup_min_lr"))
        c.warmup_min_lr = auto_or("warmup_min_lr")
                              ? 0.0
                              : ds_number(params["warmup_min_lr"], key("warmup_min_lr"), source, 0);
    if (params.contains("warmup_max_lr")) {
        c.lr = auto_or("warmup_max_lr")
                   ? zt.lr
                   : ds_number(params["warmup_max_lr"], key("warmup_max_lr"), source, 0);
        ZT_CHECK(c.lr > 0, "%s: scheduler.params.warmup_max_lr %g: must be positive", src, c.lr);
    }
    for (const char* k : {"warmup_min_ratio", "cos_min_ratio"}) {
        if (!params.contains(k)) continue;
        const double x = ds_number(params[k], key(k), source, 0);
        ZT_CHECK(x <= 1, "%s: scheduler.params.%s %g: expected a fraction from 0 to 1", src, k, x);
        (std::string(k) == "cos_min_ratio" ? c.cos_min_ratio : c.warmup_min_ratio) = x;
    }
    if (!cosine && optimizer_lr && *optimizer_lr != c.lr)
        std::fprintf(stderr,
                     "zerotrain: warning: %s: %s trains at warmup_max_lr %g, not "
                     "optimizer.params.lr %g (as DeepSpeed does)\n",
                     src, type.c_str(), c.lr, *optimizer_lr);
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
        } else if ((k == "reduce_bucket_size" || k == "stage3_prefetch_bucket_size" ||
                    k == "stage3_param_persistence_threshold") &&
                   is_auto(v)) {
            // From the model's hidden size, once it is known (resolve_auto_bucket_sizes).
            c.auto_keys[name] = source;
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
    // "auto": zerotrain's own setting (flag or default), as the Hugging Face
    // Trainer fills in its arguments; the run prints what it became.
    if (is_auto(v) &&
        (k == "train_micro_batch_size_per_gpu" || k == "gradient_accumulation_steps" ||
         k == "train_batch_size" || k == "gradient_clipping")) {
        c.auto_keys[k] = source;
        if (k == "train_batch_size") c.train_batch_size = 0;
    } else if (k == "train_micro_batch_size_per_gpu") {
        read_key(v, k, source, &c.micro_batch);
        c.given.insert("micro_batch");
    } else if (k == "gradient_accumulation_steps") {
        read_key(v, k, source, &c.grad_accum);
        c.given.insert("grad_accum");
    } else if (k == "train_batch_size") {
        read_key(v, k, source, &c.train_batch_size);
        ZT_CHECK(c.train_batch_size > 0, "%s: train_batch_size %lld: must be positive",
                 source.c_str(), (long long)c.train_batch_size);
    } else if (k == "gradient_clipping") {
        read_key(v, k, source, &c.grad_clip);
    } else if (k == "bf16" || k == "fp16") {
        ZT_CHECK(v.is_object(), "%s: '%s' must be an object", source.c_str(), k.c_str());
        // fp16's loss scaling: nothing to do while fp16 is off, which it always is here.
        static const char* fp16_keys[] = {"loss_scale",          "loss_scale_window",
                                          "initial_scale_power", "hysteresis",
                                          "min_loss_scale",      "consecutive_hysteresis",
                                          "auto_cast",           "fp16_master_weights_and_grads"};
        for (auto it = v.begin(); it != v.end(); ++it) {
            const std::string name = k + "." + it.key();
            if (it.key() == "enabled") {
                if (is_auto(it.value())) {
                    c.auto_keys[name] = source;  // bf16: --precision; fp16: off
                } else if (k == "bf16") {
                    c.precision = ds_bool(it.value(), name, source) ? "bf16" : "fp32";
                } else {
                    ZT_CHECK(!ds_bool(it.value(), name, source),
                             "%s: fp16.enabled true: zerotrain trains in fp32 or bf16, not fp16 "
                             "(bf16.enabled true, or --precision bf16)",
                             source.c_str());
                }
            } else if (k == "fp16") {
                bool known = false;
                for (const char* f : fp16_keys) known |= it.key() == f;
                ZT_CHECK(known, "%s: unknown configuration key '%s'", source.c_str(), name.c_str());
            } else {
                warn_ignored(source, name);
            }
        }
    } else if (k == "optimizer") {
        const TrainConfig zt = c;
        apply_optimizer_block(c, zt, v, source);
    } else if (k == "scheduler") {
        const TrainConfig zt = c;
        apply_scheduler_block(c, zt, v, source, std::nullopt);
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
    // DeepSpeed's optimizer and scheduler blocks first: their defaults fill in
    // what they leave out, and the file's own keys (and then the flags) come on top.
    const TrainConfig zt = c;
    std::optional<double> optimizer_lr;
    if (j.contains("optimizer"))
        optimizer_lr = apply_optimizer_block(c, zt, j["optimizer"], source);
    if (j.contains("scheduler")) apply_scheduler_block(c, zt, j["scheduler"], source, optimizer_lr);
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& k = it.key();
        const auto& v = it.value();
        if (k == "optimizer" || k == "scheduler")
            continue;
        else if (k == "model")
            read_key(v, k, source, &c.model);
        else if (k == "data")
            read_key(v, k, source, &c.data);
        else if (k == "zero_stage")
            read_key(v, k, source, &c.zero_stage);
        else if (k == "nproc")
            read_key(v, k, source, &c.nproc);
        else if (k == "max_restarts")
            read_key(v, k, source, &c.max_restarts);
        else if (k == "sim_bandwidth_gbps")
            read_key(v, k, source, &c.sim_bandwidth_gbps);
        else if (k == "sim_latency_us")
            read_key(v, k, source, &c.sim_latency_us);
        else if (k == "netns")
            read_key(v, k, source, &c.netns);
        else if (k == "netns_bandwidth_gbps")
            read_key(v, k, source, &c.netns_bandwidth_gbps);
        else if (k == "netns_latency_us")
            read_key(v, k, source, &c.netns_latency_us);
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
        else if (k == "lr_schedule")
            read_key(v, k, source, &c.lr_schedule);
        else if (k == "warmup_type")
            read_key(v, k, source, &c.warmup_type);
        else if (k == "warmup_min_lr")
            read_key(v, k, source, &c.warmup_min_lr);
        else if (k == "warmup_min_ratio")
            read_key(v, k, source, &c.warmup_min_ratio);
        else if (k == "cos_min_ratio")
            read_key(v, k, source, &c.cos_min_ratio);
        else if (k == "lr_total_steps")
            read_key(v, k, source, &c.lr_total_steps);
        else if (k == "adam_eps")
            read_key(v, k, source, &c.adam_eps);
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
        else if (k == "log_every")
            read_key(v, k, source, &c.log_every);
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
    ZT_CHECK(c.max_restarts >= 0, "--max-restarts %d: expected a number of restarts >= 0",
             c.max_restarts);
    ZT_CHECK(c.device == "cpu" || c.device == "cuda", "--device '%s': expected cpu or cuda",
             c.device.c_str());
    ZT_CHECK(c.device == "cpu" || ZT_HAVE_CUDA,
             "--device cuda: this build has no CUDA backend (configure with -DZT_CUDA=ON on a "
             "machine with the CUDA toolkit, cuDNN and NCCL); use --device cpu");
    ZT_CHECK(!(c.device == "cuda" && c.precision == "bf16" && c.grad_accum_dtype == "fp32"),
             "--device cuda --precision bf16: fp32 gradients of a bf16 model are not supported on "
             "the GPU yet; use --grad-accum-dtype bf16 (the default)");
    ZT_CHECK(c.precision == "fp32" || c.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", c.precision.c_str());
    ZT_CHECK(c.grad_accum_dtype == "auto" || c.grad_accum_dtype == "fp32" ||
                 c.grad_accum_dtype == "bf16",
             "--grad-accum-dtype '%s': expected auto, fp32 or bf16", c.grad_accum_dtype.c_str());
    ZT_CHECK(!(c.precision == "fp32" && c.grad_accum_dtype == "bf16"),
             "--grad-accum-dtype bf16 needs --precision bf16 (fp32 training reduces in fp32)");
    ZT_CHECK(c.comm == "auto" || c.comm == "local" || c.comm == "mpi" || c.comm == "ring" ||
                 c.comm == "tcp" || c.comm == "nccl",
             "--comm '%s': expected auto, local, mpi, ring, tcp or nccl", c.comm.c_str());
    ZT_CHECK(c.comm != "nccl",
             "--comm nccl: not wired into training yet (with --device cuda the ZeRO engine's state "
             "and its collectives are in host memory); use --comm mpi or ring");
    ZT_CHECK(std::isfinite(c.sim_bandwidth_gbps) && c.sim_bandwidth_gbps >= 0,
             "--sim-bandwidth-gbps %g: must be >= 0 (0: unlimited)", c.sim_bandwidth_gbps);
    ZT_CHECK(std::isfinite(c.sim_latency_us) && c.sim_latency_us >= 0,
             "--sim-latency-us %g: must be >= 0", c.sim_latency_us);
    ZT_CHECK(std::isfinite(c.netns_bandwidth_gbps) && c.netns_bandwidth_gbps >= 0,
             "--netns-bandwidth-gbps %g: must be >= 0 (0: not shaped)", c.netns_bandwidth_gbps);
    ZT_CHECK(std::isfinite(c.netns_latency_us) && c.netns_latency_us >= 0,
             "--netns-latency-us %g: must be >= 0", c.netns_latency_us);
    ZT_CHECK(c.netns || (c.netns_bandwidth_gbps == 0 && c.netns_latency_us == 0),
             "--netns-bandwidth-gbps %g / --netns-latency-us %g shape the links of --netns; add "
             "--netns",
             c.netns_bandwidth_gbps, c.netns_latency_us);
    if (c.netns) {
        ZT_CHECK(c.sim_bandwidth_gbps == 0 && c.sim_latency_us == 0,
                 "--netns with --sim-bandwidth-gbps/--sim-latency-us: a run shapes real links "
                 "or simulates them, not both; give one");
        ZT_CHECK(c.comm != "local" && c.comm != "nccl" && c.comm != "tcp",
                 "--netns with --comm %s: the shaped links carry MPI's TCP traffic (the ranks "
                 "start under mpirun in their namespaces); use --comm mpi or ring",
                 c.comm.c_str());
    }
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
    const bool deepspeed_schedule = c.lr_schedule == "WarmupLR" ||
                                    c.lr_schedule == "WarmupDecayLR" ||
                                    c.lr_schedule == "WarmupCosineLR";
    ZT_CHECK(c.lr_schedule == "cosine" || deepspeed_schedule,
             "lr_schedule '%s': expected cosine, WarmupLR, WarmupDecayLR or WarmupCosineLR",
             c.lr_schedule.c_str());
    ZT_CHECK(c.warmup_type == "auto" || c.warmup_type == "linear" || c.warmup_type == "log",
             "warmup_type '%s': expected auto, linear or log", c.warmup_type.c_str());
    ZT_CHECK(deepspeed_schedule || c.warmup_type != "log",
             "warmup_type log: the cosine schedule warms up linearly; log warmup belongs to "
             "DeepSpeed's schedules (lr_schedule WarmupLR, WarmupDecayLR, WarmupCosineLR)");
    ZT_CHECK(!deepspeed_schedule || c.warmup > 0,
             "--warmup %d: %s needs at least 1 warmup step (scheduler.params.warmup_num_steps)",
             c.warmup, c.lr_schedule.c_str());
    ZT_CHECK(!deepspeed_schedule || c.min_lr < 0,
             "--min-lr %g: the floor of the cosine schedule; %s ends at %s", c.min_lr,
             c.lr_schedule.c_str(),
             c.lr_schedule == "WarmupCosineLR" ? "cos_min_ratio x lr" : "warmup_min_lr");
    ZT_CHECK(std::isfinite(c.warmup_min_lr) && c.warmup_min_lr >= 0,
             "warmup_min_lr %g: must be >= 0", c.warmup_min_lr);
    ZT_CHECK(c.warmup_min_ratio >= 0 && c.warmup_min_ratio <= 1,
             "warmup_min_ratio %g: expected a fraction from 0 to 1", c.warmup_min_ratio);
    ZT_CHECK(c.cos_min_ratio >= 0 && c.cos_min_ratio <= 1,
             "cos_min_ratio %g: expected a fraction from 0 to 1", c.cos_min_ratio);
    ZT_CHECK(c.lr_total_steps >= 0, "lr_total_steps %d: must be >= 0 (0: --steps)",
             c.lr_total_steps);
    ZT_CHECK(std::isfinite(c.adam_eps) && c.adam_eps > 0, "adam_eps %g: must be positive",
             c.adam_eps);
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
    ZT_CHECK(c.log_every >= 0,
             "--log-every %d: must be >= 0 (N: every N-th step line; 0: about twenty a run)",
             c.log_every);
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

namespace {

// WarmupLR's and WarmupCosineLR's warmup fraction at scheduler iteration `it` (>= 0, < W).
double deepspeed_warmup_gamma(const std::string& type, int64_t it, int W) {
    if (type == "log") return std::log(double(it + 1)) / std::log(double(W));
    return double(it) / double(W);
}

// deepspeed/runtime/lr_schedules.py's get_lr() at last_batch_iteration `it`.
double deepspeed_lr(const TrainConfig& c, int64_t it) {
    const int W = std::max(2, c.warmup);  // DeepSpeed's max(2, warmup_num_steps)
    const int64_t total = c.resolved_lr_total_steps();
    const std::string warmup_type = c.resolved_warmup_type();
    if (c.lr_schedule == "WarmupCosineLR") {
        if (it < 0) return 0.0;
        double ratio;
        if (it < W) {
            ratio = c.warmup_min_ratio +
                    deepspeed_warmup_gamma(warmup_type, it, W) * (1.0 - c.warmup_min_ratio);
        } else {
            const double real_last = double(it - W + 1);
            const double real_total = double(std::max<int64_t>(1, total - W));
            const double progress = std::min(1.0, real_last / real_total);
            ratio = std::max(0.0, c.cos_min_ratio + (1.0 - c.cos_min_ratio) *
                                                        (1.0 + std::cos(M_PI * progress)) / 2.0);
        }
        return c.lr * ratio;
    }
    // WarmupLR and WarmupDecayLR: warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma.
    if (it < 0) return c.warmup_min_lr;
    double gamma = 1.0;
    if (it < W)
        gamma = deepspeed_warmup_gamma(warmup_type, it, W);
    else if (c.lr_schedule == "WarmupDecayLR")
        gamma = std::max(0.0, double(total - it) / std::max(1.0, double(total - W)));
    return c.warmup_min_lr + (c.lr - c.warmup_min_lr) * gamma;
}

}  // namespace

double lr_at_step(const TrainConfig& c, int64_t step) {
    if (c.lr_schedule != "cosine") return deepspeed_lr(c, step - 1);
    double lr = c.lr, min_lr = c.resolved_min_lr();
    if (step < c.warmup) return lr * double(step + 1) / double(c.warmup);
    int64_t decay_steps = int64_t(c.resolved_lr_total_steps()) - c.warmup;
    if (decay_steps <= 1) return lr;
    double progress = double(step - c.warmup) / double(decay_steps - 1);
    if (progress > 1) progress = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

std::string describe_lr_schedule(const TrainConfig& c) {
    const std::string wt = c.resolved_warmup_type();
    const int total = c.resolved_lr_total_steps();
    if (c.lr_schedule == "cosine")
        return strprintf("cosine: linear warmup to %g over %d steps, cosine decay to %g at step %d",
                         c.lr, c.warmup, c.resolved_min_lr(), total);
    if (c.lr_schedule == "WarmupCosineLR")
        return strprintf(
            "WarmupCosineLR: %s warmup from %g x lr to lr %g over %d steps, cosine decay to %g x "
            "lr at step %d (step 1 trains at lr 0, as DeepSpeed's first step does)",
            wt.c_str(), c.warmup_min_ratio, c.lr, std::max(2, c.warmup), c.cos_min_ratio, total);
    std::string after = c.lr_schedule == "WarmupDecayLR"
                            ? strprintf("linear decay to %g at step %d", c.warmup_min_lr, total)
                            : strprintf("constant %g", c.lr);
    return strprintf("%s: %s warmup from %g to %g over %d steps, then %s", c.lr_schedule.c_str(),
                     wt.c_str(), c.warmup_min_lr, c.lr, std::max(2, c.warmup), after.c_str());
}

std::string resolve_train_batch_size(TrainConfig& c, int world) {
    if (c.train_batch_size <= 0) return "";
    // Given: by a flag, a key of the file, or "auto" (zerotrain's value).
    const bool micro =
        c.given.count("micro_batch") || c.auto_keys.count("train_micro_batch_size_per_gpu");
    const bool accum =
        c.given.count("grad_accum") || c.auto_keys.count("gradient_accumulation_steps");
    const int64_t T = c.train_batch_size;
    std::string inferred;
    if (!micro || !accum) {
        // DeepSpeed's _set_batch_related_parameters: integer division, then the check below.
        if (micro) {
            c.grad_accum = int(std::max<int64_t>(1, T / c.micro_batch / world));
            inferred = strprintf("gradient_accumulation_steps %d", c.grad_accum);
        } else if (accum) {
            c.micro_batch = int(std::max<int64_t>(1, T / world / c.grad_accum));
            inferred = strprintf("train_micro_batch_size_per_gpu %d", c.micro_batch);
        } else {
            c.grad_accum = 1;
            c.micro_batch = int(std::max<int64_t>(1, T / world));
            inferred = strprintf("train_micro_batch_size_per_gpu %d, gradient_accumulation_steps 1",
                                 c.micro_batch);
        }
    }
    const int64_t product = int64_t(world) * c.micro_batch * c.grad_accum;
    ZT_CHECK(T == product,
             "train_batch_size %lld must equal world size %d x micro-batch %d x gradient "
             "accumulation %d = %lld%s",
             (long long)T, world, c.micro_batch, c.grad_accum, (long long)product,
             micro && accum ? ""
                            : " (DeepSpeed infers the missing one by division, and it does not "
                              "divide evenly)");
    return inferred.empty() ? ""
                            : strprintf("train_batch_size %lld over %d ranks: %s", (long long)T,
                                        world, inferred.c_str());
}

void resolve_auto_bucket_sizes(TrainConfig& c, int hidden_size) {
    const int64_t h = hidden_size;
    if (c.auto_keys.count("zero_optimization.reduce_bucket_size")) c.reduce_bucket_size = h * h;
    if (c.auto_keys.count("zero_optimization.stage3_prefetch_bucket_size"))
        c.prefetch_bucket_size = int64_t(0.9 * double(h) * double(h));
    if (c.auto_keys.count("zero_optimization.stage3_param_persistence_threshold"))
        c.param_persistence_threshold = 10 * h;
}

std::vector<std::string> describe_auto_values(const TrainConfig& c, int world) {
    std::vector<std::string> lines;
    for (const auto& [k, source] : c.auto_keys) {
        std::string v;
        if (k == "train_micro_batch_size_per_gpu")
            v = strprintf("%d (--micro-batch)", c.micro_batch);
        else if (k == "gradient_accumulation_steps")
            v = strprintf("%d (--grad-accum)", c.grad_accum);
        else if (k == "train_batch_size")
            v = strprintf("%lld (%d rank%s x micro-batch %d x grad-accum %d)",
                          (long long)(int64_t(world) * c.micro_batch * c.grad_accum), world,
                          world == 1 ? "" : "s", c.micro_batch, c.grad_accum);
        else if (k == "gradient_clipping")
            v = strprintf("%g (--grad-clip)", c.grad_clip);
        else if (k == "optimizer.params.lr" || k == "scheduler.params.warmup_max_lr")
            v = strprintf("%g (--lr)", c.lr);
        else if (k == "optimizer.params.betas")
            v = strprintf("[%g, %g] (beta1, beta2)", c.beta1, c.beta2);
        else if (k == "optimizer.params.eps")
            v = strprintf("%g (adam_eps)", c.adam_eps);
        else if (k == "optimizer.params.weight_decay")
            v = strprintf("%g (--weight-decay)", c.weight_decay);
        else if (k == "scheduler.params.warmup_min_lr")
            v = strprintf("%g (the Hugging Face Trainer's 0)", c.warmup_min_lr);
        else if (k == "scheduler.params.warmup_num_steps")
            v = strprintf("%d (--warmup)", c.warmup);
        else if (k == "scheduler.params.total_num_steps")
            v = strprintf("%d (--steps)", c.resolved_lr_total_steps());
        else if (k == "bf16.enabled")
            v = strprintf("%s (--precision %s)", c.precision == "bf16" ? "true" : "false",
                          c.precision.c_str());
        else if (k == "fp16.enabled")
            v = "false (zerotrain trains in fp32 or bf16)";
        else if (k == "zero_optimization.reduce_bucket_size")
            v = strprintf("%lld (hidden_size^2)", (long long)c.reduce_bucket_size);
        else if (k == "zero_optimization.stage3_prefetch_bucket_size")
            v = strprintf("%lld (0.9 x hidden_size^2)", (long long)c.prefetch_bucket_size);
        else if (k == "zero_optimization.stage3_param_persistence_threshold")
            v = strprintf("%lld (10 x hidden_size)", (long long)c.param_persistence_threshold);
        else
            v = "zerotrain's setting";
        lines.push_back(strprintf("%s: %s \"auto\" -> %s", source.c_str(), k.c_str(), v.c_str()));
    }
    return lines;
}

}  // namespace zt
