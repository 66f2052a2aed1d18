// zerotrain sweep: a matrix of training runs and the table of what each cost
// (lab/sweep.h).
#include <memory>

#include "cli/commands.h"
#include "lab/sweep.h"

namespace zt::cli {

void add_sweep_command(CLI::App& app) {
    auto opts = std::make_shared<SweepOptions>();
    CLI::App* c = app.add_subcommand(
        "sweep",
        "run every case of a matrix (stages x models x world sizes x bandwidths x ...) as its own "
        "training run, and tabulate tokens/s, communication and memory; finished cases are "
        "skipped, so running it again continues a stopped sweep");
    c->add_option("--matrix", opts->matrix,
                  "the matrix file (JSON: DESIGN.md's sweep matrix; lab/*.json are examples)")
        ->type_name("FILE")
        ->required();
    c->add_option("--out", opts->out,
                  "the sweep directory: one directory per case, results.jsonl and results.csv")
        ->type_name("DIR")
        ->required();
    c->add_flag("--retry-failed", opts->retry_failed,
                "run again the cases that failed before (they are skipped otherwise)");
    c->callback([opts] {
        const int rc = run_sweep(*opts);
        if (rc != 0) throw CLI::RuntimeError(rc > 127 ? rc : 1);
    });
}

}  // namespace zt::cli
