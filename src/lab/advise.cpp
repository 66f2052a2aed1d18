#include "lab/advise.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "comm/communicator.h"
#include "core/check.h"
#include "lab/jsonl.h"
#include "lab/sweep.h"
#include "model/config.h"
#include "model/layout.h"
#include "train/trainer.h"

namespace zt {

namespace {

// Without a sweep to calibrate from: this share of the measured sgemm rate,
// which a training step of small matrices reaches on the CPU backend.
constexpr double kAssumedMfu = 0.4;
// Share of a step's compute that is backward, which gradient reduction hides behind.
constexpr double kBackwardShare = 2.0 / 3.0;

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double recompute_factor(const std::string& recompute) {
    // full reruns each block's forward in backward: 4 passes' worth for 3.
    return recompute == "full" ? 4.0 / 3.0 : 1.0;
}

// ZeRO's wire bytes and ring messages for one step of one rank.
struct Traffic {
    double hideable_bytes = 0;  // reduced or gathered while compute runs
    double exposed_bytes = 0;   // stages 1-2: the parameters' all-gather after the update
    double messages = 0;
};

Traffic step_traffic(int stage, int64_t n_params, int world, int grad_accum, int n_units,
                     const std::string& precision) {
    Traffic t;
    if (world <= 1) return t;
    const double b = precision == "bf16" ? 2.0 : 4.0;  // gradients and parameters on the wire
    const double share = double(world - 1) / world * double(n_params) * b;
    const double rs_steps = comm_ring_steps(CommOp::reduce_scatter, world),
                 ag_steps = comm_ring_steps(CommOp::all_gather, world),
                 ar_steps = comm_ring_steps(CommOp::all_reduce, world);
    // Three small all-reduces a step: the gradient norm, the loss, the stop flag.
    t.messages = 3 * ar_steps;
    switch (stage) {
        case 0:  // all-reduce the gradients once a step
            t.hideable_bytes = 2 * share;
            t.messages += n_units * ar_steps;
            break;
        case 1:  // reduce-scatter once a step, all-gather the updated parameters
        case 2:  // (stage 2 reduce-scatters each micro-batch: gradients are sharded)
            t.hideable_bytes = share * (stage == 2 ? grad_accum : 1);
            t.exposed_bytes = share;
            t.messages += n_units * (rs_steps * (stage == 2 ? grad_accum : 1) + ag_steps);
            break;
        default:  // stage 3: gather in forward and backward, reduce-scatter, per micro-batch
            t.hideable_bytes = 3 * share * grad_accum;
            t.messages += 3.0 * n_units * grad_accum * ag_steps;
            break;
    }
    return t;
}

struct Calibration {
    double rate_flops = 0;
    std::string rate_source;
    double efficiency[4] = {1, 1, 1, 1};
    std::string efficiency_source = "assumed 1 (every hideable byte hidden while compute lasts)";
    // What the transport itself reaches (a sweep's unlimited cases); 0: no limit.
    double transport_gbps = 0;
};

// The rate and per-stage overlap efficiency a sweep's cases measured.
Calibration calibrate_from(const std::string& dir) {
    namespace fs = std::filesystem;
    Calibration cal;
    std::vector<double> rates, transport;
    std::vector<double> efficiencies[4];
    int cases = 0;
    for (const nlohmann::json& r : read_sweep_results(dir)) {
        if (r.value("status", "") != "ok") continue;
        const std::string run_dir = (fs::path(dir) / r.at("run_dir").get<std::string>()).string();
        nlohmann::json run_line;
        for (const nlohmann::json& l : read_jsonl(run_dir + "/metrics.jsonl", true))
            if (l.value("kind", "") == "run") run_line = l;
        if (run_line.is_null()) continue;
        const ModelConfig m =
            model_config_from_json(run_line["config"]["model_config"], run_dir + "/metrics.jsonl");
        const int seq = r.at("seq_len"), mb = r.at("micro_batch"), ga = r.at("grad_accum");
        const double flops = train_flops_per_token(m, seq) * seq * mb * ga;
        const double step_s = r.at("step_s"), exposed = r.at("comm_exposed_s"),
                     comm = r.at("comm_s");
        const double compute = step_s - exposed;
        if (compute <= 0) continue;
        rates.push_back(flops / compute);
        cases++;
        // Efficiency: hidden communication against what the model says could hide.
        const int stage = r.at("zero_stage"), world = r.at("world_size");
        const ModelLayout layout = model_layout(m);
        const Traffic t = step_traffic(stage, count_params(m), world, ga, layout.n_units(),
                                       r.at("precision").get<std::string>());
        const double total = t.hideable_bytes + t.exposed_bytes;
        if (r.at("bandwidth_gbps").get<double>() == 0 && r.value("achieved_gbps", 0.0) > 0)
            transport.push_back(r["achieved_gbps"].get<double>());
        if (comm <= 0 || total <= 0 || r.at("bandwidth_gbps").get<double>() == 0) continue;
        const double hideable_s = comm * t.hideable_bytes / total;
        const double window = stage == 3 ? compute : kBackwardShare * compute;
        const double could_hide = std::min(hideable_s, window);
        if (could_hide > 1e-3) efficiencies[stage].push_back((comm - exposed) / could_hide);
    }
    ZT_CHECK(!rates.empty(), "--calibrate '%s': no finished case to calibrate from", dir.c_str());
    cal.rate_flops = median(rates);
    cal.rate_source = strprintf("calibrated: the median of %d cases of %s", cases, dir.c_str());
    std::string per_stage;
    for (int s = 0; s < 4; s++) {
        if (efficiencies[s].empty()) continue;
        cal.efficiency[s] = std::clamp(median(efficiencies[s]), 0.0, 1.0);
        per_stage += strprintf("%s stage %d %.2f (%zu cases)", per_stage.empty() ? "" : ",", s,
                               cal.efficiency[s], efficiencies[s].size());
    }
    if (!per_stage.empty())
        cal.efficiency_source =
            "calibrated from " + dir + ":" + per_stage + "; stages without a shaped case assumed 1";
    cal.transport_gbps = median(transport);
    if (cal.transport_gbps > 0)
        cal.rate_source += strprintf(
            "; the transport itself reached %.2f Gbit/s (the median of "
            "%zu unlimited cases), which caps every link",
            cal.transport_gbps, transport.size());
    return cal;
}

Calibration rate_of(const AdviseInput& in) {
    if (!in.calibrate.empty()) {
        Calibration cal = calibrate_from(in.calibrate);
        if (in.compute_gflops > 0) {
            cal.rate_flops = in.compute_gflops * 1e9;
            cal.rate_source = "given (--compute-gflops)";
        }
        return cal;
    }
    Calibration cal;
    if (in.compute_gflops > 0) {
        cal.rate_flops = in.compute_gflops * 1e9;
        cal.rate_source = "given (--compute-gflops)";
        return cal;
    }
    const double peak = measure_cpu_peak_flops(in.precision == "bf16" ? DType::bf16 : DType::f32);
    cal.rate_flops = kAssumedMfu * peak;
    cal.rate_source = strprintf(
        "assumed %.0f%% of this machine's measured GEMM rate (%.1f GFLOP/s); give "
        "--compute-gflops or --calibrate DIR for a measured one",
        100 * kAssumedMfu, peak / 1e9);
    return cal;
}

std::string gib_text(int64_t bytes) {
    return strprintf("%.2f GiB", double(bytes) / double(int64_t(1) << 30));
}

AdviseCandidate cost(const AdviseInput& in, const ModelConfig& m, const Calibration& cal, int stage,
                     const std::string& offload, const std::string& recompute) {
    AdviseCandidate c;
    c.stage = stage;
    c.offload = offload;
    c.recompute = recompute;
    EstimateInput e;
    e.model = m;
    e.world = in.world;
    e.stage = stage;
    e.precision = in.precision;
    e.micro_batch = in.micro_batch;
    e.seq_len = in.seq_len;
    e.offload_optimizer = offload;
    e.recompute = parse_recompute(recompute);
    c.memory = estimate_memory(e);
    c.fits = in.memory_gb <= 0 || double(c.memory.peak()) <= in.memory_gb * double(1 << 30);

    const double tokens_rank = double(in.seq_len) * in.micro_batch * in.grad_accum;
    c.compute_s = train_flops_per_token(m, in.seq_len) * tokens_rank * recompute_factor(recompute) /
                  cal.rate_flops;
    const ModelLayout layout = model_layout(m);
    const Traffic t = step_traffic(stage, count_params(m), in.world, in.grad_accum,
                                   layout.n_units(), in.precision);
    c.bytes_per_step = t.hideable_bytes + t.exposed_bytes;
    c.messages_per_step = t.messages;
    // The link, or the transport under it where that is slower.
    double gbps = in.bandwidth_gbps;
    if (cal.transport_gbps > 0 && (gbps == 0 || cal.transport_gbps < gbps))
        gbps = cal.transport_gbps;
    const double per_byte = gbps > 0 ? 8.0 / (gbps * 1e9) : 0.0;
    const double alpha = in.latency_us * 1e-6 * t.messages;
    c.comm_s = c.bytes_per_step * per_byte + alpha;
    const double hideable_s = t.hideable_bytes * per_byte + alpha;
    const double window = (stage == 3 ? 1.0 : kBackwardShare) * c.compute_s;
    const double hidden = cal.efficiency[stage] * std::min(hideable_s, window);
    c.exposed_s = c.comm_s - hidden;
    if (offload == "nvme") {
        // fp32 moments (and with bf16 the fp32 master) read and written once a step.
        const double state = double(in.precision == "bf16" ? 12 : 8) * double(count_params(m)) /
                             (stage >= 1 ? in.world : 1);
        c.offload_s = 2 * state / (in.nvme_gb_per_s * 1e9);
    }
    c.step_s = c.compute_s + c.exposed_s + c.offload_s;
    c.tokens_per_s = tokens_rank * in.world / c.step_s;
    return c;
}

// What sets a candidate's place: its memory when it does not fit, else the
// largest of its costs beside the winner's.
void explain(Advice& a, const AdviseInput& in) {
    const AdviseCandidate* best = nullptr;
    for (AdviseCandidate& c : a.ranked)
        if (c.fits && !best) best = &c;
    for (AdviseCandidate& c : a.ranked) {
        if (!c.fits) {
            c.why = strprintf("needs %s per rank, over --memory-gb %g",
                              gib_text(c.memory.peak()).c_str(), in.memory_gb);
            continue;
        }
        if (&c == best) {
            c.why =
                strprintf("fits (%s per rank); step %.3f s = compute %.3f + exposed comm %.3f%s",
                          gib_text(c.memory.peak()).c_str(), c.step_s, c.compute_s, c.exposed_s,
                          c.offload_s > 0 ? strprintf(" + nvme %.3f", c.offload_s).c_str() : "");
            continue;
        }
        const double d_compute = c.compute_s - best->compute_s,
                     d_exposed = c.exposed_s - best->exposed_s,
                     d_offload = c.offload_s - best->offload_s;
        const double worst = std::max({d_compute, d_exposed, d_offload});
        if (worst <= 1e-9)
            c.why = "as fast as the first within the model's precision";
        else if (worst == d_exposed)
            c.why = strprintf("+%.3f s exposed communication (%.1f MB/step on the wire vs %.1f)",
                              d_exposed, c.bytes_per_step / 1e6, best->bytes_per_step / 1e6);
        else if (worst == d_compute)
            c.why = strprintf("+%.3f s compute (recompute %s)", d_compute, c.recompute.c_str());
        else
            c.why = strprintf("+%.3f s reading and writing the optimizer state on nvme", d_offload);
    }
}

}  // namespace

std::string AdviseCandidate::label() const {
    std::string s = strprintf("stage %d", stage);
    if (offload != "none") s += " + offload " + offload;
    if (recompute != "none") s += " + recompute " + recompute;
    return s;
}

Advice advise(const AdviseInput& in) {
    ZT_CHECK(in.world >= 1, "--world-size %d: expected a number of ranks >= 1", in.world);
    ZT_CHECK(std::isfinite(in.bandwidth_gbps) && in.bandwidth_gbps >= 0,
             "--bandwidth-gbps %g: expected gigabits per second >= 0 (0: unlimited)",
             in.bandwidth_gbps);
    ZT_CHECK(std::isfinite(in.latency_us) && in.latency_us >= 0,
             "--latency-us %g: expected microseconds >= 0", in.latency_us);
    ZT_CHECK(std::isfinite(in.memory_gb) && in.memory_gb >= 0,
             "--memory-gb %g: expected GiB per rank >= 0 (0: no limit)", in.memory_gb);
    ZT_CHECK(in.seq_len >= 1 && in.micro_batch >= 1 && in.grad_accum >= 1,
             "--seq-len %d, --micro-batch %d, --grad-accum %d: each must be >= 1", in.seq_len,
             in.micro_batch, in.grad_accum);
    ZT_CHECK(in.precision == "fp32" || in.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", in.precision.c_str());
    ZT_CHECK(in.nvme_gb_per_s > 0, "--nvme-gb-per-s %g: expected a rate > 0", in.nvme_gb_per_s);
    ModelConfig m = resolve_model(in.model);
    if (in.vocab_size > 0) m.vocab_size = in.vocab_size;
    ZT_CHECK(in.seq_len <= m.max_seq, "--seq-len %d: the model's context is %d", in.seq_len,
             m.max_seq);

    Advice a;
    a.model_description = describe_model(m);
    const Calibration cal = rate_of(in);
    a.rate_flops = cal.rate_flops;
    a.rate_source = cal.rate_source;
    std::copy(std::begin(cal.efficiency), std::end(cal.efficiency), a.overlap_efficiency);
    a.overlap_source = cal.efficiency_source;
    for (int stage = 0; stage <= 3; stage++)
        for (const char* offload : {"none", "nvme"})
            for (const char* recompute : {"none", "full"})
                a.ranked.push_back(cost(in, m, cal, stage, offload, recompute));
    std::stable_sort(a.ranked.begin(), a.ranked.end(),
                     [](const AdviseCandidate& x, const AdviseCandidate& y) {
                         if (x.fits != y.fits) return x.fits;
                         if (x.fits) return x.tokens_per_s > y.tokens_per_s;
                         return x.memory.peak() < y.memory.peak();
                     });
    explain(a, in);
    return a;
}

nlohmann::json advice_json(const Advice& a) {
    nlohmann::json out;
    out["model"] = a.model_description;
    out["rate_gflops"] = a.rate_flops / 1e9;
    out["rate_source"] = a.rate_source;
    out["overlap_efficiency"] =
        std::vector<double>(std::begin(a.overlap_efficiency), std::end(a.overlap_efficiency));
    out["overlap_source"] = a.overlap_source;
    nlohmann::json ranked = nlohmann::json::array();
    for (const AdviseCandidate& c : a.ranked)
        ranked.push_back({{"zero_stage", c.stage},
                          {"offload_optimizer", c.offload},
                          {"recompute", c.recompute},
                          {"fits", c.fits},
                          {"peak_bytes", c.memory.peak()},
                          {"tokens_per_s", c.tokens_per_s},
                          {"step_s", c.step_s},
                          {"compute_s", c.compute_s},
                          {"comm_s", c.comm_s},
                          {"comm_exposed_s", c.exposed_s},
                          {"offload_s", c.offload_s},
                          {"bytes_per_step", c.bytes_per_step},
                          {"messages_per_step", c.messages_per_step},
                          {"why", c.why}});
    out["ranked"] = ranked;
    return out;
}

}  // namespace zt
