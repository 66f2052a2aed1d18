// zerotrain train: the flags of a training run and its start, in this process
// or (--nproc N outside a launcher) in N ranks of this same command.
//
// Settings come from defaults, then --config, then flags: the file is read
// before the flags are parsed, so that flags override it. Every flag set by
// the command line is recorded in TrainConfig::given, so that a resumed run
// takes the checkpoint's value for the rest.
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ckpt/checkpoint.h"
#include "cli/commands.h"
#include "cli/restart.h"
#include "comm/launch.h"
#include "core/check.h"
#include "model/config.h"
#include "prof/trace.h"
#include "train/config.h"
#include "train/resolve.h"
#include "train/trainer.h"

namespace zt::cli {

namespace {

std::string preset_list() {
    std::string s;
    for (const auto& n : model_preset_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

void load_config_from_argv(int argc, char** argv, TrainConfig& cfg) {
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--config") {
            ZT_CHECK(i + 1 < argc, "--config needs a file name");
            load_train_config_file(cfg, argv[i + 1]);
        } else if (a.rfind("--config=", 0) == 0) {
            load_train_config_file(cfg, a.substr(9));
        }
    }
}

void add_train_options(CLI::App* t, TrainConfig& c, std::string* config_path,
                       ResumeActions* actions) {
    t->add_option("--config", *config_path,
                  "JSON file of settings (keys: the flags with underscores), or a DeepSpeed "
                  "config (its optimizer, scheduler, batch, bf16 and zero_optimization keys; "
                  "\"auto\" takes the flag's value); flags override it");
    t->add_option("--model", c.model,
                  "preset (" + preset_list() + ") or a Hugging Face config.json")
        ->capture_default_str();
    t->add_option("--data", c.data,
                  "fortunes (English text from Debian's fortunes package, tokenized once into "
                  "the cache), synthetic, a directory from zerotrain prepare (.bin shards named "
                  "'train' / 'val'), or one .bin shard")
        ->capture_default_str();
    t->add_option("--zero-stage", c.zero_stage,
                  "ZeRO stage: 0 replicated, 1 shards optimizer state, 2 also gradients, 3 also "
                  "parameters")
        ->capture_default_str();
    t->add_option("--nproc", c.nproc,
                  "start N local ranks through mpirun (N >= 1; under mpirun/srun the launcher "
                  "decides); when a rank dies or hangs, says which, the step reached, the last "
                  "checkpoint and the command that resumes")
        ->check(CLI::Validator(
            [](std::string& v) {
                int n = 0;
                auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                bool ok = ec == std::errc() && end == v.data() + v.size() && n >= 1;
                return ok ? std::string() : v + " is not a number of ranks; expected 1 or more";
            },
            ""));
    t->add_option("--max-restarts", c.max_restarts,
                  "with --nproc: when a rank dies or a collective times out, run the job again "
                  "with --resume auto (same --out), at most N times (0: never); not after a "
                  "divergence, an error of the run's own, or SIGINT/SIGTERM; each restart is a "
                  "\"restart\" line in metrics.jsonl")
        ->check(CLI::Validator(
            [](std::string& v) {
                int n = 0;
                auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                bool ok = ec == std::errc() && end == v.data() + v.size() && n >= 0;
                return ok ? std::string() : v + " is not a number of restarts; expected 0 or more";
            },
            ""))
        ->capture_default_str();
    t->add_option("--device", c.device,
                  "cpu, or cuda (a CUDA build): the model's forward and backward on the GPU, the "
                  "ZeRO engine's state in host memory")
        ->capture_default_str();
    t->add_option("--precision", c.precision,
                  "fp32, or bf16: bf16 weights, activations and matrix products (oneDNN), fp32 "
                  "master weights, AdamW moments, norms, softmax and loss")
        ->capture_default_str();
    t->add_option("--grad-accum-dtype", c.grad_accum_dtype,
                  "dtype gradients accumulate and reduce in: auto (bf16 with --precision bf16, "
                  "as DeepSpeed), fp32 or bf16")
        ->capture_default_str();
    t->add_option(
         "--comm", c.comm,
         "communicator: auto (local for one rank; else mpi, or tcp in a build without MPI or "
         "under torchrun), local, mpi, ring, tcp (TCP sockets, no MPI); nccl is "
         "GPU-only and refused for now (with --device cuda the engine's collectives "
         "are on host memory: use mpi or ring)")
        ->capture_default_str();
    t->add_option("--sim-bandwidth-gbps", c.sim_bandwidth_gbps,
                  "simulate a network of this many gigabits/s (0: real speed)")
        ->capture_default_str();
    t->add_option("--sim-latency-us", c.sim_latency_us, "simulated per-message latency")
        ->capture_default_str();
    t->add_flag("--netns", c.netns,
                "run the --nproc ranks in private network namespaces, MPI over TCP links between "
                "them (needs root and iproute2), so the bytes cross a real, shapeable link");
    t->add_option("--netns-bandwidth-gbps", c.netns_bandwidth_gbps,
                  "with --netns: shape each rank's link to this many gigabits/s (token bucket; "
                  "0: not shaped)")
        ->capture_default_str();
    t->add_option("--netns-latency-us", c.netns_latency_us,
                  "with --netns: delay each packet this long (netem; refused where the kernel "
                  "has no netem)")
        ->capture_default_str();
    t->add_option("--comm-timeout-s", c.comm_timeout_s,
                  "abort every rank when a collective waits longer than this; each rank still "
                  "running first writes its last 64 collectives to RUN_DIR/hang/rank-K.json "
                  "and the rank the others waited for is named")
        ->type_name("SECONDS")
        ->capture_default_str();
    t->add_option("--offload-optimizer", c.offload_optimizer,
                  "where the optimizer state (and fp32 master weights) lives: none, cpu (host "
                  "memory; with --device cpu it is there already), nvme (files in --offload-dir, "
                  "streamed through a small window of host buffers)")
        ->capture_default_str();
    t->add_option("--offload-dir", c.offload_dir,
                  "directory for --offload-optimizer nvme and --offload-params nvme (created; "
                  "one preallocated file per rank and tier, removed at exit)");
    t->add_option("--offload-params", c.offload_params,
                  "stage 3's parameter shards: none, cpu (host memory; with --device cpu they are "
                  "there already), nvme (a file in --offload-dir, read for each gather)")
        ->capture_default_str();
    t->add_option("--seq-len", c.seq_len, "tokens per sequence (T)")->capture_default_str();
    t->add_option("--micro-batch", c.micro_batch, "sequences per micro-batch (B)")
        ->capture_default_str();
    t->add_option("--grad-accum", c.grad_accum, "micro-batches per optimizer step (K)")
        ->capture_default_str();
    t->add_option("--steps", c.steps, "optimizer steps")->capture_default_str();
    t->add_option("--lr", c.lr,
                  "peak learning rate (DeepSpeed: optimizer.params.lr, scheduler warmup_max_lr)")
        ->capture_default_str();
    t->add_option("--min-lr", c.min_lr,
                  "floor of the cosine decay (default lr / 10); DeepSpeed's schedules end at "
                  "their own warmup_min_lr or cos_min_ratio instead");
    t->add_option("--warmup", c.warmup,
                  "warmup steps: linear for the default cosine schedule; a DeepSpeed scheduler "
                  "block's warmup_num_steps (log or linear warmup_type)")
        ->capture_default_str();
    t->add_option("--weight-decay", c.weight_decay,
                  "AdamW decoupled weight decay (matrices only; not norms, biases, embeddings)")
        ->capture_default_str();
    t->add_flag("--weight-decay-all", c.weight_decay_all,
                "apply weight decay to norms, biases and embeddings too");
    t->add_option("--grad-clip", c.grad_clip, "clip the global gradient norm (0: off)")
        ->capture_default_str();
    t->add_option("--seed", c.seed, "seed of initialisation and data order")->capture_default_str();
    t->add_option("--recompute", c.recompute,
                  "activation recompute: none, attn (attention probabilities recomputed in "
                  "backward), full (each block's forward rerun in backward; keeps block inputs)")
        ->capture_default_str();
    t->add_option("--on-nonfinite", c.on_nonfinite,
                  "a non-finite gradient norm: stop (naming the first non-finite tensor), or "
                  "skip the step (no update; counted in the step line)")
        ->capture_default_str();
    t->add_option("--max-nonfinite-skips", c.max_nonfinite_skips,
                  "with --on-nonfinite skip: stop after this many skipped steps in a row (int)")
        ->capture_default_str();
    t->add_option("--eval-every", c.eval_every,
                  "evaluate on the validation split every N steps (0: at the end only)")
        ->capture_default_str();
    t->add_option("--eval-tokens", c.eval_tokens,
                  "validation tokens per evaluation (<= 0: the whole split)")
        ->capture_default_str();
    t->add_option("--out", c.out,
                  "run directory (default runs/run-<date>-<time>); one run at a time: a run "
                  "holds RUN_DIR/.lock and a second one is refused");
    t->add_option("--save-every", c.save_every,
                  "also checkpoint every N steps into RUN_DIR/ckpt/step-N (0: only the final "
                  "checkpoint at the last step, and one when stopped by SIGINT/SIGTERM)")
        ->capture_default_str();
    t->add_flag("--no-save", c.no_save,
                "write no checkpoint at all, not even the final one (the run keeps no model)");
    t->add_option("--keep-last", c.keep_last,
                  "keep only the newest K step checkpoints (0: all); never removes "
                  "RUN_DIR/ckpt/best")
        ->capture_default_str();
    t->add_flag("--keep-best", c.keep_best,
                "also keep RUN_DIR/ckpt/best, the checkpoint of the lowest validation loss so far "
                "(replaced at each evaluation that beats it); --resume and --keep-last ignore it; "
                "use it with --checkpoint RUN_DIR/ckpt/best");
    t->add_option("--resume", c.resume,
                  "continue from a checkpoint (step, ckpt or run directory: its newest step, "
                  "never best), or auto: the latest in --out (a fresh start when there is none); "
                  "settings not given take the checkpoint's values; world size and stage may "
                  "differ. A checkpoint older than the newest one in --out is refused without "
                  "--fork or --truncate");
    t->add_option("--fork", actions->fork,
                  "with --resume CHECKPOINT: continue in NEW_OUT, a new run directory, and leave "
                  "the checkpoint's own run directory as it is")
        ->option_text("NEW_OUT");
    t->add_flag("--truncate", actions->truncate,
                "with --resume CHECKPOINT inside --out: first delete --out's checkpoints after "
                "the checkpoint's step (best too, if later) and its metrics lines after that step");
    t->add_option("--init-from", c.init_from,
                  "start from the weights of a Hugging Face LLaMA or GPT-2 folder "
                  "(config.json + model.safetensors); the model is its config");
    t->add_option("--sample-tokens", c.sample_tokens,
                  "tokens of text generated at the end when the data has a tokenizer (0: none)")
        ->capture_default_str();
    t->add_option("--threads", c.threads, "CPU threads (0: OpenMP's default)")
        ->capture_default_str();
    t->add_option("--log-every", c.log_every,
                  "print every N-th step line, and always the first, the last and a stopped one "
                  "(0: about twenty a run); metrics.jsonl gets every step")
        ->capture_default_str();
}

// The JSON keys of the flags the command line set (--config and --help aside).
void record_given_flags(const CLI::App& train, TrainConfig& cfg) {
    for (const CLI::Option* opt : train.get_options()) {
        if (opt->count() == 0 || opt->get_lnames().empty()) continue;
        std::string key = opt->get_lnames()[0];
        for (char& ch : key)
            if (ch == '-') ch = '_';
        if (key != "config" && key != "help") cfg.given.insert(key);
    }
}

// The last "step" line of RUN_DIR/metrics.jsonl; -1 when there is none.
int64_t last_metrics_step(const std::string& run_dir) {
    std::ifstream f(run_dir + "/metrics.jsonl");
    int64_t step = -1;
    for (std::string line; std::getline(f, line);) {
        auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.value("kind", "") == "step") step = j.value("step", step);
    }
    return step;
}

// One word for a POSIX shell: as it is when it is safe, else single-quoted.
std::string shell_word(const std::string& w) {
    if (!w.empty() && w.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-_./=:,+@%") == std::string::npos)
        return w;
    std::string q = "'";
    for (char c : w) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// --netns is the launcher's: it makes the namespaces before it starts the
// ranks in them (ZT_LAUNCHER_PID marks those ranks).
void check_netns_launch(const TrainConfig& cfg) {
    if (!cfg.netns) return;
    if (under_launcher()) {
        ZT_CHECK(std::getenv("ZT_LAUNCHER_PID") != nullptr,
                 "--netns under an outside launcher (%s): zerotrain makes the namespaces only "
                 "for the ranks it starts itself; use --nproc N without mpirun/srun",
                 discover_ranks().source.c_str());
        return;
    }
    ZT_CHECK(cfg.nproc >= 2,
             "--netns: needs --nproc N with N >= 2 (links join ranks); found --nproc %d",
             cfg.nproc);
}

std::unique_ptr<NetnsNetwork> make_network(const TrainConfig& cfg) {
    if (!cfg.netns) return nullptr;
    ShapedLink link;
    link.bandwidth_gbps = cfg.netns_bandwidth_gbps;
    link.latency_us = cfg.netns_latency_us;
    return std::make_unique<NetnsNetwork>(cfg.nproc, link);
}

// What a failed --nproc run's launcher adds after naming the rank at fault:
// the step reached, the last complete checkpoint, and the command that
// resumes from it (this command with --resume auto --out RUN_DIR in place of
// its --resume, --out, --fork and --truncate).
std::string describe_failed_run(const std::string& run_dir, int argc, char** argv) {
    std::string out;
    const int64_t step = last_metrics_step(run_dir);
    out += step >= 0 ? strprintf("zerotrain: the run reached step %lld (%s/metrics.jsonl)\n",
                                 (long long)step, run_dir.c_str())
                     : strprintf("zerotrain: the run finished no step (%s/metrics.jsonl)\n",
                                 run_dir.c_str());
    std::optional<SavedCheckpoint> ckpt;
    try {
        ckpt = newest_step_checkpoint(run_dir);
    } catch (const std::exception&) {
    }
    if (!ckpt) {
        out += strprintf(
            "zerotrain: no complete checkpoint in %s/ckpt, so there is nothing to resume; run "
            "again with another --out (add --save-every N to save on the way)\n",
            run_dir.c_str());
        return out;
    }
    out += strprintf("zerotrain: last complete checkpoint: %s (step %lld)\n", ckpt->dir.c_str(),
                     (long long)ckpt->step);
    std::string cmd = shell_word(argv[0]);
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--resume" || a == "--out" || a == "--fork") {
            i++;  // and its value
            continue;
        }
        if (a == "--truncate" || a.rfind("--resume=", 0) == 0 || a.rfind("--out=", 0) == 0 ||
            a.rfind("--fork=", 0) == 0)
            continue;
        cmd += " " + shell_word(a);
    }
    cmd += " --resume auto --out " + shell_word(run_dir);
    out += "zerotrain: to resume: " + cmd + "\n";
    return out;
}

struct TrainArgs {
    TrainConfig cfg;
    std::string config_path;  // --config's value; the file itself is read from argv
    ResumeActions actions;    // --fork, --truncate: never part of the saved settings
    std::string trace_steps;  // --trace-steps A:B (prof/trace.h): not a saved setting either
};

}  // namespace

void add_train_command(CLI::App& app, int argc, char** argv) {
    auto args = std::make_shared<TrainArgs>();
    bool is_train = argc > 1 && std::strcmp(argv[1], "train") == 0;
    bool wants_help = false;
    for (int i = 1; i < argc; i++)
        if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) wants_help = true;
    // Before parsing, so that the flags override the file (and not for --help,
    // which shows the built-in defaults).
    if (is_train && !wants_help) load_config_from_argv(argc, argv, args->cfg);

    CLI::App* train = app.add_subcommand(
        "train",
        "train a model (no flags: a small model on English text, about ten seconds on 2 cores)");
    add_train_options(train, args->cfg, &args->config_path, &args->actions);
    train->add_flag("--trace", trace_request().on,
                    "write RUN_DIR/trace.json, a Chrome trace (open in ui.perfetto.dev or "
                    "chrome://tracing): per rank, each unit's forward/backward, data, optimizer "
                    "step, eval and checkpoint on thread 'compute', each collective from issue "
                    "to completion on thread 'comm'; every step unless --trace-steps");
    train
        ->add_option("--trace-steps", args->trace_steps,
                     "with --trace (implies it): record only steps A to B (1-based, inclusive), "
                     "or only step A; default: every step")
        ->option_text("A:B");
    train->callback([args, train, argc, argv] {
        record_given_flags(*train, args->cfg);
        if (!args->trace_steps.empty()) {
            trace_request().on = true;
            trace_request().steps = parse_trace_steps(args->trace_steps);
        }
        check_netns_launch(args->cfg);
        check_restart_launch(args->cfg);
        // --nproc N outside a launcher: start N ranks of this same command
        // (one rank too when it is to be restarted).
        if ((args->cfg.nproc > 1 || args->cfg.max_restarts > 0) && !under_launcher()) {
            // What would fail on every rank is refused once, before any starts
            // (its message names no rank: none exists yet).
            set_error_rank(-1);
            check_run_before_launch(args->cfg, args->actions);
            set_error_rank(0);
            // Rank 0 records it in the run directory's lock: the process to signal.
            ::setenv("ZT_LAUNCHER_PID", std::to_string(::getpid()).c_str(), 1);
            std::unique_ptr<NetnsNetwork> net = make_network(args->cfg);
            const LaunchNetwork launch_net = net ? net->launch_network() : LaunchNetwork{};
            const LaunchAttempt launch = [&](int a_argc, char** a_argv,
                                             const std::function<void(const std::string&)>& seen) {
                return launch_local_ranks(
                    args->cfg.nproc, a_argc, a_argv,
                    [a_argc, a_argv, seen](const std::string& run_dir) {
                        if (seen) seen(run_dir);
                        return describe_failed_run(run_dir, a_argc, a_argv);
                    },
                    net ? &launch_net : nullptr, args->cfg.comm);
            };
            const RestartOptions restarts{
                args->cfg.max_restarts, args->cfg.nproc,
                args->actions.fork.empty() ? args->cfg.out : args->actions.fork};
            int status = restarts.max_restarts > 0 ? run_with_restarts(restarts, argc, argv, launch)
                                                   : launch(argc, argv, {});
            if (status != 0) throw CLI::RuntimeError(status);
            return;
        }
        TrainSummary summary = run_training(args->cfg, args->actions);
        // The shell's convention for a run stopped by a signal.
        if (summary.stop_signal) throw CLI::RuntimeError(128 + summary.stop_signal);
    });
}

}  // namespace zt::cli
