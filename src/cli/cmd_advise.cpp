// zerotrain advise: ZeRO stages (with optimizer offload and recompute) ranked
// by predicted tokens/s among those that fit (lab/advise.h).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/check.h"
#include "lab/advise.h"

namespace zt::cli {

namespace {

struct AdviseArgs {
    AdviseInput in;
    bool json = false;
};

void print_advice(const AdviseInput& in, const Advice& a) {
    std::printf("advise: %s\n", a.model_description.c_str());
    std::printf(
        "advise: %d ranks, %s, latency %g us, %s per rank, %s, seq %d x micro-batch %d x "
        "accumulation %d\n",
        in.world,
        in.bandwidth_gbps > 0 ? strprintf("%g Gbit/s", in.bandwidth_gbps).c_str()
                              : "unlimited bandwidth",
        in.latency_us,
        in.memory_gb > 0 ? strprintf("%g GiB", in.memory_gb).c_str() : "no memory limit",
        in.precision.c_str(), in.seq_len, in.micro_batch, in.grad_accum);
    std::printf("advise: compute rate %.1f GFLOP/s per rank: %s\n", a.rate_flops / 1e9,
                a.rate_source.c_str());
    std::printf("advise: overlap efficiency: %s\n", a.overlap_source.c_str());
    std::printf("%4s  %-40s %4s %11s %11s %8s %8s %8s %8s  %s\n", "rank", "configuration", "fits",
                "peak/rank", "tokens/s", "step s", "compute", "comm", "exposed", "why");
    int k = 0;
    for (const AdviseCandidate& c : a.ranked) {
        k++;
        std::printf("%4d  %-40s %4s %9.2f G %11.0f %8.3f %8.3f %8.3f %8.3f  %s\n", k,
                    c.label().c_str(), c.fits ? "yes" : "no",
                    double(c.memory.peak()) / double(1 << 30), c.tokens_per_s, c.step_s,
                    c.compute_s, c.comm_s, c.exposed_s, c.why.c_str());
    }
    const AdviseCandidate& best = a.ranked.front();
    if (!best.fits) {
        std::printf("advise: nothing fits in %g GiB per rank; the smallest, %s, needs %.2f GiB\n",
                    in.memory_gb, best.label().c_str(),
                    double(best.memory.peak()) / double(1 << 30));
        return;
    }
    std::printf("advise: use %s: %.0f tokens/s predicted (%s)\n", best.label().c_str(),
                best.tokens_per_s, best.why.c_str());
}

}  // namespace

void add_advise_command(CLI::App& app) {
    auto a = std::make_shared<AdviseArgs>();
    CLI::App* c = app.add_subcommand(
        "advise",
        "rank ZeRO stages 0-3 (with nvme optimizer offload and full recompute) by predicted "
        "tokens/s among those that fit, from estimate's memory and an alpha-beta network model");
    c->add_option("--model", a->in.model, "preset name or Hugging Face config.json")
        ->type_name("PRESET|FILE")
        ->required();
    c->add_option("--world-size,--nproc", a->in.world, "number of ranks")
        ->type_name("INT")
        ->required();
    c->add_option("--bandwidth-gbps", a->in.bandwidth_gbps,
                  "each rank's network bandwidth in gigabits/s (0: unlimited)")
        ->type_name("FLOAT")
        ->required();
    c->add_option("--latency-us", a->in.latency_us, "latency per message in microseconds")
        ->type_name("FLOAT")
        ->capture_default_str();
    c->add_option("--memory-gb", a->in.memory_gb, "memory per rank in GiB (0: no limit)")
        ->type_name("FLOAT")
        ->capture_default_str();
    c->add_option("--precision", a->in.precision, "fp32 or bf16")->capture_default_str();
    c->add_option("--seq-len", a->in.seq_len, "tokens per sequence")
        ->type_name("INT")
        ->capture_default_str();
    c->add_option("--micro-batch", a->in.micro_batch, "sequences per rank per micro-batch")
        ->type_name("INT")
        ->capture_default_str();
    c->add_option("--grad-accum", a->in.grad_accum, "micro-batches per step")
        ->type_name("INT")
        ->capture_default_str();
    c->add_option("--vocab-size", a->in.vocab_size, "the vocabulary (0: the model's)")
        ->type_name("INT")
        ->capture_default_str();
    c->add_option("--compute-gflops", a->in.compute_gflops,
                  "training compute rate per rank in GFLOP/s (0: from --calibrate, else 40% of "
                  "this machine's measured GEMM rate)")
        ->type_name("FLOAT")
        ->capture_default_str();
    c->add_option("--nvme-gb-per-s", a->in.nvme_gb_per_s,
                  "disk read/write rate for optimizer offload to nvme, GB/s")
        ->type_name("FLOAT")
        ->capture_default_str();
    c->add_option("--calibrate", a->in.calibrate,
                  "a sweep directory: take the compute rate and the overlap efficiency from its "
                  "measured cases")
        ->type_name("DIR");
    c->add_flag("--json", a->json, "print the ranking as one JSON object");
    c->callback([a] {
        const Advice advice = advise(a->in);
        if (a->json)
            std::printf("%s\n", advice_json(advice).dump().c_str());
        else
            print_advice(a->in, advice);
    });
}

}  // namespace zt::cli
