// zerotrain: the command-line entry point (DESIGN.md's command-line contract).
//
// Every error reaches the user as one line and a non-zero exit status;
// nothing is half-written. A bad flag value, file or config reads
// "zerotrain: error: rank R: message"; a failed internal invariant adds its
// file:line after the rank (core/check.h). A command line CLI11 cannot parse
// reads "zerotrain: error: message", with the nearest valid name when a
// subcommand or option is misspelt.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "comm/job.h"
#include "comm/launch.h"
#include "core/check.h"
#include "ops/matmul.h"

namespace {

// ZT_VERSION is the CMake project's version and ZT_GIT_DESCRIBE what
// `git describe` said at configure time (empty outside a git checkout).
std::string version_string() {
#ifdef ZT_VERSION
    std::string v = "zerotrain " ZT_VERSION;
#else
    std::string v = "zerotrain (the build set no version)";
#endif
#ifdef ZT_GIT_DESCRIBE
    if (ZT_GIT_DESCRIBE[0] != '\0') v += " (git " ZT_GIT_DESCRIBE ")";
#endif
    // What this binary was built with, on a second line.
    auto yes_no = [](int have) { return have ? "yes" : "no"; };
    v += std::string("\nbuilt with: CPU fp32 GEMM ") + zt::cpu::gemm_fp32_path() + "; oneDNN " +
         yes_no(ZT_HAVE_DNNL) + "; SentencePiece " + yes_no(ZT_HAVE_SENTENCEPIECE) + "; MPI " +
         yes_no(ZT_HAVE_MPI) + "; CUDA " + yes_no(ZT_HAVE_CUDA);
    return v;
}

// Edits between a and b, a swap of two neighbours counting as one, so that
// "stpes" is one edit from "steps" (optimal string alignment distance).
size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); i++) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); j++) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        for (size_t j = 1; j <= b.size(); j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[a.size()][b.size()];
}

// The name nearest to word, or "" when none is near enough to be the one
// meant: at most a third of the word's length in edits (at least 1, at most 3).
std::string nearest_name(const std::string& word, const std::vector<std::string>& names) {
    std::string best;
    size_t best_distance = SIZE_MAX;
    for (const std::string& n : names) {
        size_t d = edit_distance(word, n);
        if (d < best_distance) {
            best_distance = d;
            best = n;
        }
    }
    size_t limit = std::clamp<size_t>(word.size() / 3, 1, 3);
    return best_distance <= limit ? best : "";
}

std::vector<std::string> subcommand_names(CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
        names.push_back(sub->get_name());
    return names;
}

std::vector<std::string> option_names(const CLI::App& app) {
    std::vector<std::string> names;
    for (const CLI::Option* opt : app.get_options()) {
        for (const std::string& n : opt->get_lnames()) names.push_back("--" + n);
        for (const std::string& n : opt->get_snames()) names.push_back("-" + n);
    }
    return names;
}

int refuse(const std::string& message) {
    std::fflush(stdout);
    std::fprintf(stderr, "zerotrain: error: %s\n", message.c_str());
    return 1;
}

// What CLI::ExtrasError leaves: the first word no option took, the option
// nearest to it, and where to look when none is near.
int refuse_extras(CLI::App& app) {
    std::vector<CLI::App*> parsed = app.get_subcommands();
    const CLI::App& scope = parsed.empty() ? app : *parsed.front();
    const std::string help =
        parsed.empty() ? "zerotrain --help" : "zerotrain " + scope.get_name() + " --help";
    std::vector<std::string> extras = app.remaining(true);
    for (const std::string& extra : extras) {
        if (extra.size() < 2 || extra[0] != '-') continue;
        std::string name = extra.substr(0, extra.find('='));
        std::string near = nearest_name(name, option_names(scope));
        return refuse("unknown option " + name +
                      (near.empty() ? "; see " + help : "; did you mean " + near + "?"));
    }
    return refuse("unexpected argument '" + (extras.empty() ? std::string() : extras.front()) +
                  "'; see " + help);
}

// A rank of `--nproc N` is stopped by its launcher with SIGUSR1 for SIGINT
// and SIGUSR2 for SIGTERM (comm/launch.h). Where no clean stop is set up
// (train's loop sets one, train/stop_signal.h), the rank ends as that signal
// would end it.
extern "C" void end_as_stop_signal(int sig) {
    const int stop = sig == SIGUSR1 ? SIGINT : SIGTERM;
    std::signal(stop, SIG_DFL);
    std::raise(stop);
}

void take_launcher_stop_signals() {
    if (!std::getenv(zt::kJobDirEnv)) return;
    std::signal(SIGUSR1, end_as_stop_signal);
    std::signal(SIGUSR2, end_as_stop_signal);
}

int run(int argc, char** argv) {
    zt::set_error_rank(zt::discover_ranks().rank);  // so even early errors name their rank
    take_launcher_stop_signals();
    CLI::App app{"zerotrain: train LLaMA- and GPT-2-style models with ZeRO sharding"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "help for every subcommand");
    app.set_version_flag("--version", version_string(), "print the version and exit");

    zt::cli::add_train_command(app, argc, argv);
    zt::cli::add_bench_comm_command(app);
    zt::cli::add_estimate_command(app);
    zt::cli::add_export_command(app);
    zt::cli::add_eval_command(app);
    zt::cli::add_generate_command(app);
    zt::cli::add_prepare_command(app);
    zt::cli::add_sweep_command(app);
    zt::cli::add_advise_command(app);
    zt::cli::add_plot_command(app);
    zt::cli::add_supervise_command(app);

    // A first word that is no subcommand is a misspelt one: CLI11 would only
    // say that a subcommand is required.
    if (argc > 1 && argv[1][0] != '-') {
        const std::vector<std::string> names = subcommand_names(app);
        if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
            std::string near = nearest_name(argv[1], names);
            std::string list;
            for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
            return refuse(
                "unknown subcommand '" + std::string(argv[1]) + "'; " +
                (near.empty() ? "expected one of " + list : "did you mean '" + near + "'?"));
        }
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ExtrasError&) {
        return refuse_extras(app);
    } catch (const CLI::ParseError& e) {
        // --help and --version exit 0 here; a subcommand hands back its exit
        // status as CLI::RuntimeError.
        if (e.get_exit_code() == 0 || e.get_name() == "RuntimeError") return app.exit(e);
        std::vector<CLI::App*> parsed = app.get_subcommands();
        return refuse(std::string(e.what()) + "; see zerotrain " +
                      (parsed.empty() ? "" : parsed.front()->get_name() + " ") + "--help");
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
