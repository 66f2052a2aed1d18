// zerotrain: the command-line entry point (DESIGN.md's command-line contract).
//
// Every error reaches the user as one line, "zerotrain: error: rank R,
// file:line: message", and a non-zero exit status; nothing is half-written.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "comm/launch.h"
#include "core/check.h"

namespace {

int run(int argc, char** argv) {
    zt::set_error_rank(zt::discover_ranks().rank);  // so even early errors name their rank
    CLI::App app{"zerotrain: train LLaMA- and GPT-2-style models with ZeRO sharding"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "help for every subcommand");

    zt::cli::add_train_command(app, argc, argv);
    zt::cli::add_bench_comm_command(app);
    zt::cli::add_estimate_command(app);
    zt::cli::add_export_command(app);
    zt::cli::add_eval_command(app);
    zt::cli::add_generate_command(app);
    zt::cli::add_prepare_command(app);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // Also how a subcommand hands back its exit status (CLI::RuntimeError).
        return app.exit(e);
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
