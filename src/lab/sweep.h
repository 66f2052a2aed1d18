// zerotrain sweep: a matrix of training runs (DESIGN.md's "Sweep matrix"),
// one child `zerotrain train` per case, and a table of what each cost.
//
// A matrix file names axes (stages, models, world sizes, bandwidths,
// latencies) and scalars; its cases are the product of the axes. Each case
// runs in DIR/<case name>/run, its output in DIR/<case name>/log.txt and its
// outcome in DIR/<case name>/case.json. A case whose run has a summary line
// is finished and skipped; a failed one keeps its error and is run again
// only with --retry-failed; an unfinished one (a sweep that was stopped) is
// started again from nothing.
//
// DIR/results.jsonl holds one line per case, DIR/results.csv the same
// columns flattened. A result line:
//   {"case": "tiny-z2-w4-bw1g-lat0us-fp32", "status": "ok" | "failed",
//    "error": "...",                                   (failed only)
//    "run_dir": "tiny-z2-w4-bw1g-lat0us-fp32/run",     (relative to DIR)
//    "model": "tiny", "zero_stage": 2, "world_size": 4,
//    "bandwidth_gbps": 1, "latency_us": 0,             (0 = unlimited / none)
//    "bandwidth_mode": "simulated" | "netns", "precision": "fp32",
//    "device": "cpu", "seq_len": 64, "micro_batch": 2, "grad_accum": 1,
//    "steps": 6, "n_params": 123456,
//    -- the rest only when status is ok; medians over the steps after the first --
//    "tokens_per_s", "step_s", "comm_s", "comm_exposed_s", "overlap",
//    "bytes_per_step"      (bytes rank 0 sent per step, every collective),
//    "messages_per_step"   (ring steps of those collectives: the alpha term),
//    "achieved_gbps"       (bytes_per_step * 8 / comm_s / 1e9; 0 without comm),
//    "predicted_comm_s"    (bytes_per_step * 8 / bandwidth + latency * messages;
//                           null when the link is unlimited and instant),
//    "peak_mem_bytes"      (the largest measured ledger peak of any rank),
//    "estimate_peak_bytes" (zerotrain estimate's peak for the case),
//    "mem_bytes":          {"params","grads","optimizer","activations","buffers","peak"}
//                          (the rank with the largest peak, measured),
//    "estimate_mem_bytes": {the same keys, estimated}}
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zt {

// One case of a matrix: every axis at one value.
struct SweepCase {
    std::string model;  // a preset name or a config.json path
    int zero_stage = 0;
    int world_size = 1;
    double bandwidth_gbps = 0;  // 0: unlimited
    double latency_us = 0;
    std::string bandwidth_mode = "simulated";  // simulated | netns
    std::string precision = "fp32";
    std::string device = "cpu";
    std::string data = "synthetic";
    int seq_len = 64;
    int micro_batch = 2;
    int grad_accum = 1;
    int steps = 6;

    // The case's directory name: every parameter that varies in a sweep,
    // e.g. "tiny-z2-w4-bw0.5g-lat0us-fp32" (bw0g is unlimited).
    std::string name() const;
    // The `zerotrain train` arguments of the case, without the executable.
    std::vector<std::string> train_args(const std::string& run_dir) const;
};

struct SweepMatrix {
    std::string name;
    std::vector<SweepCase> cases;  // the axes' product, in the file's order
};

// Reads and checks a matrix file; every bad key or value is refused with the
// file, the key and what would be accepted.
SweepMatrix read_sweep_matrix(const std::string& path);

struct SweepOptions {
    std::string matrix;
    std::string out;
    bool retry_failed = false;
    std::string zerotrain;  // the executable to run cases with ("": this one)
};

// Runs every case not yet finished, prints a progress line as each ends and
// the results table at the end, and writes results.jsonl and results.csv.
// Returns the number of failed cases.
int run_sweep(const SweepOptions& opts);

// DIR/results.jsonl, one object per case (the format above).
std::vector<nlohmann::json> read_sweep_results(const std::string& dir);

}  // namespace zt
