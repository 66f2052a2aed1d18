// zerotrain advise: which ZeRO stage (with or without optimizer offload and
// activation recompute) gives the most tokens/s for a model, a world size and
// a network, among the configurations that fit in memory.
//
// The cost model of one step on one rank:
//   compute   = train FLOPs of its tokens (x 4/3 with full recompute) / rate
//   comm      = wire bytes * 8 / bandwidth + latency * ring messages, where
//               the bytes are ZeRO's: stages 0-2 move 2 (n-1)/n of the
//               gradients' (or parameters') bytes, stage 3 3 (n-1)/n (a
//               gather in forward, one in backward, a reduce-scatter)
//   exposed   = the part of comm that compute cannot hide: stages 0-2 hide
//               their gradient reduction behind backward (2/3 of compute),
//               stage 3 its gathers and reductions behind the whole step; the
//               parameters' all-gather after the update of stages 1 and 2 is
//               not hidden (the engine issues it after the step's compute).
//               Hidden time is scaled by the overlap efficiency.
//   offload   = nvme: the optimizer state read and written once per step
//   step      = compute + exposed + offload; tokens/s = global tokens / step
// Memory is zerotrain estimate's (zero/estimate.h). The rate and the overlap
// efficiency are measured, given, or calibrated from a sweep's results
// (--calibrate DIR: the rate from each case's step time less its exposed
// communication, the efficiency per stage from its hidden communication, and
// the bandwidth the transport itself reached in its unlimited cases, which
// caps every link).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "zero/estimate.h"

namespace zt {

struct AdviseInput {
    std::string model;  // preset or config.json
    int world = 0;
    double bandwidth_gbps = 0;  // per rank; 0: unlimited
    double latency_us = 0;
    double memory_gb = 0;  // GiB per rank; 0: no limit
    std::string precision = "fp32";
    int seq_len = 256;
    int micro_batch = 4;
    int grad_accum = 1;
    int vocab_size = 0;          // 0: the model's
    double compute_gflops = 0;   // per rank; 0: calibrated, else measured
    double nvme_gb_per_s = 2.0;  // offload to nvme: the disk's read and write rate
    std::string calibrate;       // a sweep directory, or ""
};

struct AdviseCandidate {
    int stage = 0;
    std::string offload = "none";  // optimizer offload: none | nvme
    std::string recompute = "none";
    MemoryEstimate memory;
    bool fits = true;
    double compute_s = 0, comm_s = 0, exposed_s = 0, offload_s = 0, step_s = 0;
    double tokens_per_s = 0;
    double bytes_per_step = 0, messages_per_step = 0;
    std::string why;  // one line: what sets its place in the ranking

    std::string label() const;  // "stage 2", "stage 3 + recompute full", ...
};

struct Advice {
    std::vector<AdviseCandidate> ranked;  // fitting ones by tokens/s, then the others
    double rate_flops = 0;                // per rank
    std::string rate_source;
    double overlap_efficiency[4] = {1, 1, 1, 1};
    std::string overlap_source;
    std::string model_description;
};

Advice advise(const AdviseInput& in);

nlohmann::json advice_json(const Advice& a);

}  // namespace zt
