// zerotrain plot: figures of sweeps and runs (lab/figure.h).
#include <memory>

#include "cli/commands.h"
#include "lab/figure.h"

namespace zt::cli {

void add_plot_command(CLI::App& app) {
    auto o = std::make_shared<PlotOptions>();
    CLI::App* c = app.add_subcommand(
        "plot",
        "draw a sweep's or runs' figures with gnuplot: throughput or communication "
        "against bandwidth per stage, loss curves, memory by category");
    c->add_option("--run-dir", o->run_dirs,
                  "a sweep directory (results.jsonl), or for --kind loss a training run "
                  "directory; repeat it to draw several")
        ->type_name("DIR")
        ->required();
    c->add_option("--kind", o->kind, "throughput, comm, loss or memory")
        ->type_name("KIND")
        ->required();
    c->add_option("--out", o->out, "the figure: F.png or F.svg")->type_name("FILE")->required();
    c->add_option("--title", o->title, "the figure's title (default: from the data)");
    c->callback([o] { draw_plot(*o); });
}

}  // namespace zt::cli
