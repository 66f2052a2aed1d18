// zerotrain estimate: per-rank memory for a model, world size, stage and precision.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/check.h"
#include "model/config.h"
#include "zero/estimate.h"

namespace zt::cli {

namespace {

struct EstimateArgs {
    std::string model;
    int world = 0;
    int nproc = 0;  // --nproc: train's and bench-comm's name for the world size
    bool world_given = false;
    bool nproc_given = false;
    int stage = -1;  // -1: every stage
    std::string precision = "fp32";
    std::string grad_accum_dtype = "auto";
    int micro_batch = 0;
    int seq_len = 0;
    std::string offload_optimizer = "none";
    std::string offload_params = "none";
    std::string recompute = "none";
    int64_t reduce_bucket_size = EstimateInput().reduce_bucket_elements;
    int64_t allgather_bucket_size = EstimateInput().gather_bucket_elements;
    bool json = false;
};

double gib(int64_t b) {
    return double(b) / double(int64_t(1) << 30);
}

// --world-size N or --nproc N: one setting under two names, so that a line
// copied from train or bench-comm works here too.
int world_size(const EstimateArgs& a) {
    ZT_CHECK(a.world_given || a.nproc_given,
             "--world-size N is required (or its synonym --nproc N)");
    ZT_CHECK(!a.world_given || !a.nproc_given || a.world == a.nproc,
             "--world-size %d and --nproc %d disagree; they are one setting, so give one of them",
             a.world, a.nproc);
    const char* flag = a.world_given ? "--world-size" : "--nproc";
    const int world = a.world_given ? a.world : a.nproc;
    ZT_CHECK(world >= 1, "%s %d: expected a number of ranks >= 1", flag, world);
    return world;
}

void run_estimate(const EstimateArgs& a) {
    EstimateInput in;
    const int world = world_size(a);
    in.model = resolve_model(a.model);
    in.world = world;
    in.precision = a.precision;
    ZT_CHECK(a.grad_accum_dtype == "auto" || a.grad_accum_dtype == "fp32" ||
                 a.grad_accum_dtype == "bf16",
             "--grad-accum-dtype '%s': expected auto, fp32 or bf16", a.grad_accum_dtype.c_str());
    in.grad_dtype = a.grad_accum_dtype == "auto" ? "" : a.grad_accum_dtype;
    in.micro_batch = a.micro_batch;
    in.seq_len = a.seq_len;
    in.offload_optimizer = a.offload_optimizer;
    in.recompute = parse_recompute(a.recompute);
    ZT_CHECK(a.reduce_bucket_size >= 1, "--reduce-bucket-size %lld: must be >= 1",
             (long long)a.reduce_bucket_size);
    ZT_CHECK(a.allgather_bucket_size >= 1, "--allgather-bucket-size %lld: must be >= 1",
             (long long)a.allgather_bucket_size);
    in.reduce_bucket_elements = a.reduce_bucket_size;
    in.gather_bucket_elements = a.allgather_bucket_size;
    ZT_CHECK(a.stage >= -1 && a.stage <= 3, "--zero-stage %d: expected 0 to 3", a.stage);
    ZT_CHECK((a.micro_batch > 0) == (a.seq_len > 0),
             "--micro-batch and --seq-len go together (activations need both)");
    ZT_CHECK(a.seq_len <= in.model.max_seq, "--seq-len %d exceeds the model's maximum of %d",
             a.seq_len, in.model.max_seq);
    if (!a.json) {
        std::printf("%s\n", describe_model(in.model).c_str());
        std::printf(
            "world size %d, %s%s%s, bytes per rank (GiB)\n", world, a.precision.c_str(),
            a.offload_optimizer == "none"
                ? ""
                : strprintf(", optimizer offloaded to %s", a.offload_optimizer.c_str()).c_str(),
            a.micro_batch > 0
                ? strprintf(", activations for %d x %d tokens", a.micro_batch, a.seq_len).c_str()
                : "");
        std::printf("%-6s %10s %10s %10s %12s %10s %10s %12s %12s %12s\n", "stage", "params",
                    "grads", "optimizer", "activations", "buffers", "total", "host_optim",
                    "nvme_optim", "nvme_params");
    }
    for (int s = 0; s <= 3; s++) {
        if (a.stage >= 0 && s != a.stage) continue;
        in.stage = s;
        // Parameter offload is stage 3's; the table's other stages keep them.
        in.offload_params = s == 3 || a.stage == s ? a.offload_params : "none";
        MemoryEstimate e = estimate_memory(in);
        if (a.json) {
            nlohmann::ordered_json j = {
                {"model", in.model.name},
                {"n_params", count_params(in.model)},
                {"world_size", world},
                {"zero_stage", s},
                {"precision", a.precision},
                {"grad_accum_dtype", in.grad_dtype.empty() ? a.precision : in.grad_dtype},
                {"micro_batch", a.micro_batch},
                {"seq_len", a.seq_len},
                {"offload_optimizer", a.offload_optimizer},
                {"offload_params", in.offload_params},
                {"recompute", a.recompute},
                {"mem_bytes",
                 {{"params", e.params},
                  {"grads", e.grads},
                  {"optimizer", e.optimizer},
                  {"activations", e.activations},
                  {"buffers", e.buffers},
                  {"peak", e.peak()}}},
                {"host_optimizer_bytes", e.host_optimizer},
                {"nvme_optimizer_bytes", e.nvme_optimizer},
                {"nvme_params_bytes", e.nvme_params}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("%-6d %10.3f %10.3f %10.3f %12.3f %10.3f %10.3f %12.3f %12.3f %12.3f\n", s,
                        gib(e.params), gib(e.grads), gib(e.optimizer), gib(e.activations),
                        gib(e.buffers), gib(e.peak()), gib(e.host_optimizer), gib(e.nvme_optimizer),
                        gib(e.nvme_params));
        }
    }
}

}  // namespace

void add_estimate_command(CLI::App& app) {
    auto args = std::make_shared<EstimateArgs>();
    CLI::App* c = app.add_subcommand(
        "estimate", "per-rank memory of model states, activations and buffers by ZeRO stage");
    c->add_option("--model", args->model, "preset or Hugging Face config.json")->required();
    CLI::Option* world =
        c->add_option("--world-size", args->world, "number of ranks (required, or --nproc)");
    CLI::Option* nproc = c->add_option("--nproc", args->nproc,
                                       "the same as --world-size (train's and bench-comm's name)");
    c->add_option("--zero-stage", args->stage, "one stage (default: all four)");
    c->add_option("--precision", args->precision, "fp32 or bf16 (fp32 master weights)")
        ->capture_default_str();
    c->add_option("--grad-accum-dtype", args->grad_accum_dtype,
                  "gradient dtype: auto (the precision's), fp32 or bf16")
        ->capture_default_str();
    c->add_option("--micro-batch", args->micro_batch, "sequences per micro-batch (activations)");
    c->add_option("--seq-len", args->seq_len, "tokens per sequence (activations)");
    c->add_option("--offload-optimizer", args->offload_optimizer,
                  "where the optimizer state lives: none, cpu (host memory), nvme (a file; the "
                  "optimizer column is then its window of host buffers)")
        ->capture_default_str();
    c->add_option("--offload-params", args->offload_params,
                  "stage 3's parameter shards: none, cpu, nvme (a file; the params column is "
                  "then the one-unit host buffer)")
        ->capture_default_str();
    c->add_option("--recompute", args->recompute, "activation recompute: none, attn or full")
        ->capture_default_str();
    c->add_option("--reduce-bucket-size", args->reduce_bucket_size,
                  "elements per gradient-reduction bucket (staging buffers)")
        ->capture_default_str();
    c->add_option("--allgather-bucket-size", args->allgather_bucket_size,
                  "elements per stage-1/2 parameter-gather bucket (staging buffers)")
        ->capture_default_str();
    c->add_flag("--json", args->json, "one JSON object per stage");
    c->callback([args, world, nproc] {
        args->world_given = world->count() > 0;
        args->nproc_given = nproc->count() > 0;
        run_estimate(*args);
    });
}

}  // namespace zt::cli
