// The zerotrain subcommands. Each file src/cli/cmd_<name>.cpp adds its
// subcommand, options and callback to the application; main.cpp calls them.
#pragma once

#include <CLI/CLI.hpp>

namespace zt::cli {

// zerotrain train (src/cli/cmd_train.cpp). Takes the command line because
// the --config file it names is read before the flags are parsed, so that
// the flags override it. A run stopped by a signal, and --nproc's ranks that
// fail, end in CLI::RuntimeError carrying the exit status.
void add_train_command(CLI::App& app, int argc, char** argv);
// zerotrain bench-comm (src/cli/cmd_bench_comm.cpp)
void add_bench_comm_command(CLI::App& app);
// zerotrain estimate (src/cli/cmd_estimate.cpp)
void add_estimate_command(CLI::App& app);
// zerotrain prepare (src/cli/cmd_prepare.cpp)
void add_prepare_command(CLI::App& app);
// --checkpoint DIR | --hf DIR: where eval and generate read weights from
// (exactly one; train/weights.h's load_weights checks that).
inline void add_weights_options(CLI::App* c, std::string* checkpoint, std::string* hf) {
    CLI::Option* ck = c->add_option("--checkpoint", *checkpoint, "step, ckpt or run directory");
    CLI::Option* h =
        c->add_option("--hf", *hf, "Hugging Face folder (config.json + model.safetensors)");
    ck->excludes(h);
}

// zerotrain export (src/cli/cmd_export.cpp)
void add_export_command(CLI::App& app);
// zerotrain eval (src/cli/cmd_eval.cpp)
void add_eval_command(CLI::App& app);
// zerotrain generate (src/cli/cmd_generate.cpp)
void add_generate_command(CLI::App& app);
// zerotrain sweep (src/cli/cmd_sweep.cpp)
void add_sweep_command(CLI::App& app);
// zerotrain advise (src/cli/cmd_advise.cpp)
void add_advise_command(CLI::App& app);
// zerotrain plot (src/cli/cmd_plot.cpp)
void add_plot_command(CLI::App& app);
// zerotrain supervise (src/cli/cmd_supervise.cpp)
void add_supervise_command(CLI::App& app);

}  // namespace zt::cli
