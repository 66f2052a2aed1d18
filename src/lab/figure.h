// zerotrain plot: figures of sweeps and runs, drawn by gnuplot (PNG or SVG).
//
//   throughput  tokens/s against bandwidth, one line per ZeRO stage
//   comm        communication and exposed communication per step against
//               bandwidth, per stage, with the alpha-beta model's prediction
//   loss        training loss against step, one curve per run
//   memory      per-rank memory by category, stacked, per stage: measured
//               beside estimate's
// A --run-dir is a sweep directory (results.jsonl) or, for loss, also a
// training run directory (metrics.jsonl). Bandwidth 0 (unlimited) is drawn
// right of the largest finite bandwidth, its tick labelled "unlimited".
#pragma once

#include <string>
#include <vector>

namespace zt {

struct PlotOptions {
    std::vector<std::string> run_dirs;
    std::string kind;   // throughput | comm | loss | memory
    std::string out;    // F.png or F.svg
    std::string title;  // "": from the data
};

// Writes opts.out (through a temporary name, renamed when complete).
void draw_plot(const PlotOptions& opts);

}  // namespace zt
