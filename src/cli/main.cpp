// zerotrain: the command-line entry point (DESIGN.md's command-line contract).
//
// Every error reaches the user as one line, "zerotrain: error: rank R,
// file:line: message", and a non-zero exit status; nothing is half-written.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "comm/launch.h"
#include "core/check.h"
#include "model/config.h"
#include "train/config.h"
#include "train/trainer.h"

namespace {

std::string preset_list() {
    std::string s;
    for (const auto& n : zt::model_preset_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

// Settings come from defaults, then --config, then flags; the file is read
// before the flags are parsed so that flags override it.
void load_config_from_argv(int argc, char** argv, zt::TrainConfig& cfg) {
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--config") {
            ZT_CHECK(i + 1 < argc, "--config needs a file name");
            zt::load_train_config_file(cfg, argv[i + 1]);
        } else if (a.rfind("--config=", 0) == 0) {
            zt::load_train_config_file(cfg, a.substr(9));
        }
    }
}

void add_train_options(CLI::App* t, zt::TrainConfig& c, std::string* config_path) {
    t->add_option("--config", *config_path,
                  "JSON file of settings (keys: the flags with underscores); flags override it");
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
                  "start N local ranks through mpirun (under mpirun/srun the launcher decides)");
    t->add_option("--device", c.device, "cpu (the CUDA backend is not in this build)")
        ->capture_default_str();
    t->add_option("--precision", c.precision,
                  "fp32, or bf16: bf16 weights, activations and matrix products (oneDNN), fp32 "
                  "master weights, AdamW moments, norms, softmax and loss")
        ->capture_default_str();
    t->add_option("--grad-accum-dtype", c.grad_accum_dtype,
                  "dtype gradients accumulate and reduce in: auto (bf16 with --precision bf16, "
                  "as DeepSpeed), fp32 or bf16")
        ->capture_default_str();
    t->add_option("--comm", c.comm,
                  "communicator: auto (local for one rank, else mpi), local, mpi, ring")
        ->capture_default_str();
    t->add_option("--sim-bandwidth-gbps", c.sim_bandwidth_gbps,
                  "simulate a network of this many gigabits/s (0: real speed)")
        ->capture_default_str();
    t->add_option("--sim-latency-us", c.sim_latency_us, "simulated per-message latency")
        ->capture_default_str();
    t->add_option("--comm-timeout-s", c.comm_timeout_s,
                  "abort every rank when a collective waits longer than this")
        ->capture_default_str();
    t->add_flag("--offload-optimizer", c.offload_optimizer,
                "keep optimizer state in host memory (GPU only; refused with --device cpu)");
    t->add_flag("--offload-params", c.offload_params,
                "keep parameters in host memory (GPU only; refused with --device cpu)");
    t->add_option("--seq-len", c.seq_len, "tokens per sequence (T)")->capture_default_str();
    t->add_option("--micro-batch", c.micro_batch, "sequences per micro-batch (B)")
        ->capture_default_str();
    t->add_option("--grad-accum", c.grad_accum, "micro-batches per optimizer step (K)")
        ->capture_default_str();
    t->add_option("--steps", c.steps, "optimizer steps")->capture_default_str();
    t->add_option("--lr", c.lr, "peak learning rate")->capture_default_str();
    t->add_option("--min-lr", c.min_lr, "floor of the cosine decay (default lr / 10)");
    t->add_option("--warmup", c.warmup, "linear warmup steps")->capture_default_str();
    t->add_option("--weight-decay", c.weight_decay,
                  "AdamW decoupled weight decay (matrices only; not norms, biases, embeddings)")
        ->capture_default_str();
    t->add_flag("--weight-decay-all", c.weight_decay_all,
                "apply weight decay to norms, biases and embeddings too");
    t->add_option("--grad-clip", c.grad_clip, "clip the global gradient norm (0: off)")
        ->capture_default_str();
    t->add_option("--seed", c.seed, "seed of initialisation and data order")
        ->capture_default_str();
    t->add_option("--recompute", c.recompute, "activation recompute: none (attn, full: not yet)")
        ->capture_default_str();
    t->add_option("--eval-every", c.eval_every,
                  "evaluate on the validation split every N steps (0: at the end only)")
        ->capture_default_str();
    t->add_option("--eval-tokens", c.eval_tokens,
                  "validation tokens per evaluation (<= 0: the whole split)")
        ->capture_default_str();
    t->add_option("--out", c.out, "run directory (default runs/run-<date>-<time>)");
    t->add_option("--save-every", c.save_every,
                  "checkpoint every N steps into RUN_DIR/ckpt (0: only when stopped by "
                  "SIGINT/SIGTERM, which always saves)")
        ->capture_default_str();
    t->add_option("--keep-last", c.keep_last, "keep only the newest K checkpoints (0: all)")
        ->capture_default_str();
    t->add_option("--resume", c.resume,
                  "continue from a checkpoint (step, ckpt or run directory), or auto: the latest "
                  "in --out (a fresh start when there is none); settings not given take the "
                  "checkpoint's values; world size and stage may differ");
    t->add_option("--init-from", c.init_from,
                  "start from the weights of a Hugging Face LLaMA or GPT-2 folder "
                  "(config.json + model.safetensors); the model is its config");
    t->add_option("--sample-tokens", c.sample_tokens,
                  "tokens of text generated at the end when the data has a tokenizer (0: none)")
        ->capture_default_str();
    t->add_option("--threads", c.threads, "CPU threads (0: OpenMP's default)")
        ->capture_default_str();
}

int run(int argc, char** argv) {
    zt::set_error_rank(zt::discover_ranks().rank);  // so even early errors name their rank
    CLI::App app{"zerotrain: train LLaMA- and GPT-2-style models with ZeRO sharding"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "help for every subcommand");

    zt::TrainConfig cfg;
    std::string config_path;
    bool is_train = argc > 1 && std::strcmp(argv[1], "train") == 0;
    bool wants_help = false;
    for (int i = 1; i < argc; i++)
        if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) wants_help = true;
    if (is_train && !wants_help) load_config_from_argv(argc, argv, cfg);

    CLI::App* train = app.add_subcommand(
        "train", "train a model (no flags: a small model on English text, about ten seconds on 2 cores)");
    add_train_options(train, cfg, &config_path);
    zt::cli::add_bench_comm_command(app);
    zt::cli::add_estimate_command(app);
    zt::cli::add_export_command(app);
    zt::cli::add_eval_command(app);
    zt::cli::add_generate_command(app);
    zt::cli::add_prepare_command(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (train->parsed()) {
        for (const CLI::Option* opt : train->get_options()) {
            if (opt->count() == 0 || opt->get_lnames().empty()) continue;
            std::string key = opt->get_lnames()[0];
            for (char& ch : key)
                if (ch == '-') ch = '_';
            if (key != "config" && key != "help") cfg.given.insert(key);
        }
        // --nproc N outside a launcher: start N ranks of this same command.
        if (cfg.nproc > 1 && !zt::under_launcher()) return zt::launch_local_ranks(cfg.nproc, argc, argv);
        zt::TrainSummary summary = zt::run_training(cfg);
        if (summary.stop_signal) return 128 + summary.stop_signal;  // the shell's convention
    }
    return 0;
}

}  // namespace

namespace {

// One rank's error must not leave the others waiting in a collective: under a
// launcher with several ranks, end the whole job.
int fail_job(const char* what) {
    std::fflush(stdout);
    std::fprintf(stderr, "zerotrain: error: %s\n", what);
    bool several_ranks = false;
    try {
        several_ranks = zt::discover_ranks().world > 1;
    } catch (const std::exception&) {
    }
    if (several_ranks) zt::abort_all_ranks(1);
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        return fail_job(e.what());
    }
}
