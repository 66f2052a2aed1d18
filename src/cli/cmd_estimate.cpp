// zerotrain estimate: per-rank memory of the run that train would make of the same
// settings: the model (with --data's vocabulary), --config, and the flags.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "core/units.h"
#include "data/shard.h"
#include "model/config.h"
#include "train/config.h"
#include "train/resolve.h"
#include "zero/estimate.h"

namespace zt::cli {

namespace fs = std::filesystem;

namespace {

// The flags as given; a run's settings (TrainConfig) are built from --config
// and the flags the command line set, as `train` builds them.
struct EstimateArgs {
    std::string config;
    std::string model;
    std::string data;
    int vocab_size = 0;
    bool vocab_given = false;
    int world = 0;
    int nproc = 0;  // --nproc: train's and bench-comm's name for the world size
    bool world_given = false;
    bool nproc_given = false;
    TrainConfig flags;            // the values of the run's flags below
    std::set<std::string> given;  // TrainConfig keys the command line set
    bool json = false;
};

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

// What a run of these settings would be: estimate's own defaults (no
// activations unless a micro-batch and a sequence length are given, every
// stage unless one is), then --config, then the flags.
struct EstimateRun {
    TrainConfig cfg;
    ModelConfig model;
    bool all_stages = true;
    std::string vocab_source;        // "" (the model's own), or where it came from
    std::vector<std::string> notes;  // what --config's keys resolved to
};

EstimateRun resolve_estimate(const EstimateArgs& a, int world) {
    EstimateRun r;
    TrainConfig& c = r.cfg;
    c.model = "";
    c.data = "synthetic";
    c.micro_batch = 0;
    c.seq_len = 0;
    if (!a.config.empty()) load_train_config_file(c, a.config);
    const TrainConfig& f = a.flags;
    auto take = [&](const char* key, auto& field, const auto& value) {
        if (!a.given.count(key)) return;
        field = value;
        c.given.insert(key);
    };
    take("zero_stage", c.zero_stage, f.zero_stage);
    take("precision", c.precision, f.precision);
    take("grad_accum_dtype", c.grad_accum_dtype, f.grad_accum_dtype);
    take("micro_batch", c.micro_batch, f.micro_batch);
    take("seq_len", c.seq_len, f.seq_len);
    take("offload_optimizer", c.offload_optimizer, f.offload_optimizer);
    take("offload_params", c.offload_params, f.offload_params);
    take("recompute", c.recompute, f.recompute);
    take("reduce_bucket_size", c.reduce_bucket_size, f.reduce_bucket_size);
    take("allgather_bucket_size", c.allgather_bucket_size, f.allgather_bucket_size);
    if (!a.model.empty()) c.model = a.model;
    ZT_CHECK(!c.model.empty(), "--model is required (a preset or a Hugging Face config.json)%s",
             a.config.empty() ? "" : strprintf("; '%s' names none", a.config.c_str()).c_str());
    r.all_stages = !c.given.count("zero_stage");

    ZT_CHECK(a.data.empty() || !a.vocab_given,
             "--data and --vocab-size both set the vocabulary; give one of them");
    if (!a.data.empty()) {
        ZT_CHECK(fs::is_directory(a.data),
                 "--data '%s': expected a directory from zerotrain prepare (with meta.json)",
                 a.data.c_str());
        const std::optional<int> v = read_meta_vocab_size(a.data);
        ZT_CHECK(v.has_value(), "--data '%s': no meta.json with a vocab_size in it",
                 a.data.c_str());
        c.data = a.data;
        r.model = model_from_flags(c);
        if (is_model_preset(c.model)) {
            r.vocab_source = strprintf("vocabulary %d from %s/meta.json, padded to %d", *v,
                                       a.data.c_str(), r.model.vocab_size);
        } else {
            ZT_CHECK(*v <= r.model.vocab_size,
                     "--data '%s': meta.json's vocabulary of %d tokens exceeds --model's "
                     "vocab_size %d; the run would refuse it",
                     a.data.c_str(), *v, r.model.vocab_size);
        }
    } else {
        r.model = model_from_flags(c);
    }
    if (a.vocab_given) {
        ZT_CHECK(a.vocab_size >= 1, "--vocab-size %d: expected a number of tokens >= 1",
                 a.vocab_size);
        r.model.vocab_size = a.vocab_size;
        validate_model_config(r.model);
        r.vocab_source = strprintf("vocabulary %d from --vocab-size", a.vocab_size);
    }

    // A file's micro-batch of "auto" with none given leaves it to DeepSpeed's
    // rule, as a file without the key would.
    if (c.train_batch_size > 0 && c.micro_batch == 0) {
        c.given.erase("micro_batch");
        c.auto_keys.erase("train_micro_batch_size_per_gpu");
    }
    const std::string inferred = resolve_train_batch_size(c, world);
    if (!inferred.empty()) r.notes.push_back(inferred);
    resolve_auto_bucket_sizes(c, r.model.d_model);
    // The "auto" values that change memory; the optimizer's and the
    // schedule's are train's to print.
    for (const std::string& line : describe_auto_values(c, world))
        if (line.find("optimizer.params.") == std::string::npos &&
            line.find("scheduler.params.") == std::string::npos &&
            line.find("gradient_clipping") == std::string::npos)
            r.notes.push_back(line);

    const char* batch_from =
        a.given.count("micro_batch") ? "--micro-batch" : "the micro-batch of --config";
    const char* len_from = a.given.count("seq_len") ? "--seq-len" : "the seq_len of --config";
    ZT_CHECK((c.micro_batch > 0) == (c.seq_len > 0),
             "%s: activations need both a micro-batch and a sequence length; add %s",
             c.micro_batch > 0 ? batch_from : len_from,
             c.micro_batch > 0 ? "--seq-len T" : "--micro-batch B");
    ZT_CHECK(c.micro_batch >= 0 && c.seq_len >= 0, "--micro-batch and --seq-len must be >= 0");
    ZT_CHECK(c.seq_len <= r.model.max_seq, "--seq-len %d exceeds the model's maximum of %d",
             c.seq_len, r.model.max_seq);
    ZT_CHECK(c.zero_stage >= 0 && c.zero_stage <= 3, "--zero-stage %d: expected 0 to 3",
             c.zero_stage);
    ZT_CHECK(c.precision == "fp32" || c.precision == "bf16",
             "--precision '%s': expected fp32 or bf16", c.precision.c_str());
    ZT_CHECK(c.grad_accum_dtype == "auto" || c.grad_accum_dtype == "fp32" ||
                 c.grad_accum_dtype == "bf16",
             "--grad-accum-dtype '%s': expected auto, fp32 or bf16", c.grad_accum_dtype.c_str());
    ZT_CHECK(c.reduce_bucket_size >= 1, "--reduce-bucket-size %lld: must be >= 1",
             (long long)c.reduce_bucket_size);
    ZT_CHECK(c.allgather_bucket_size >= 1, "--allgather-bucket-size %lld: must be >= 1",
             (long long)c.allgather_bucket_size);
    return r;
}

nlohmann::ordered_json estimate_json(const EstimateRun& r, const EstimateInput& in,
                                     const MemoryEstimate& e) {
    const TrainConfig& c = r.cfg;
    return {{"model", in.model.name},
            {"n_params", count_params(in.model)},
            {"vocab_size", in.model.vocab_size},
            {"world_size", in.world},
            {"zero_stage", in.stage},
            {"precision", c.precision},
            {"grad_accum_dtype", c.resolved_grad_dtype()},
            {"micro_batch", c.micro_batch},
            {"seq_len", c.seq_len},
            {"offload_optimizer", c.offload_optimizer},
            {"offload_params", in.offload_params},
            {"recompute", c.recompute},
            {"mem_bytes",
             {{"params", e.params},
              {"grads", e.grads},
              {"optimizer", e.optimizer},
              {"activations", e.activations},
              {"buffers", e.buffers},
              {"peak", e.peak()}}},
            {"offload_bytes",
             {{"host_optimizer", e.host_optimizer},
              {"nvme_optimizer", e.nvme_optimizer},
              {"nvme_params", e.nvme_params}}}};
}

void run_estimate(const EstimateArgs& a) {
    const int world = world_size(a);
    const EstimateRun r = resolve_estimate(a, world);
    const TrainConfig& c = r.cfg;
    if (!a.json) {
        std::printf("%s\n", describe_model(r.model).c_str());
        if (!r.vocab_source.empty()) std::printf("%s\n", r.vocab_source.c_str());
        std::printf(
            "world size %d, %s%s%s, memory per rank\n", world, c.precision.c_str(),
            c.offload_optimizer == "none"
                ? ""
                : strprintf(", optimizer offloaded to %s", c.offload_optimizer.c_str()).c_str(),
            c.micro_batch > 0
                ? strprintf(", activations for %d x %d tokens", c.micro_batch, c.seq_len).c_str()
                : ", no activations (give --micro-batch and --seq-len)");
    }
    // JSON keeps stdout one object a line; what --config resolved to goes to stderr.
    for (const std::string& note : r.notes)
        std::fprintf(a.json ? stderr : stdout, "note: %s\n", note.c_str());
    // The columns are the JSON's keys: mem_bytes's, then offload_bytes's.
    const char* const kColumns[] = {"params",         "grads",          "optimizer",
                                    "activations",    "buffers",        "peak",
                                    "host_optimizer", "nvme_optimizer", "nvme_params"};
    if (!a.json) {
        std::printf("%-5s", "stage");
        for (const char* col : kColumns) std::printf(" %14s", col);
        std::printf("\n");
    }
    for (int s = 0; s <= 3; s++) {
        if (!r.all_stages && s != c.zero_stage) continue;
        TrainConfig at = c;
        at.zero_stage = s;
        // Parameter offload is stage 3's; the table's other stages keep them.
        if (s != 3 && r.all_stages) at.offload_params = "none";
        const EstimateInput in = estimate_input_for(at, r.model, world);
        const MemoryEstimate e = estimate_memory(in);
        if (a.json) {
            std::printf("%s\n", estimate_json(r, in, e).dump().c_str());
            continue;
        }
        const int64_t cells[] = {e.params,         e.grads,          e.optimizer,
                                 e.activations,    e.buffers,        e.peak(),
                                 e.host_optimizer, e.nvme_optimizer, e.nvme_params};
        std::printf("%-5d", s);
        for (int64_t b : cells) std::printf(" %14s", human_bytes(b).c_str());
        std::printf("\n");
    }
}

}  // namespace

void add_estimate_command(CLI::App& app) {
    auto args = std::make_shared<EstimateArgs>();
    TrainConfig& f = args->flags;
    CLI::App* c = app.add_subcommand(
        "estimate",
        "per-rank memory of model states, activations and buffers by ZeRO stage, for the run "
        "train would make of the same --model, --data, --config and flags");
    c->add_option("--config", args->config,
                  "train's JSON settings or a DeepSpeed config (its zero_optimization, batch, "
                  "bf16 and offload keys); the flags below override it");
    c->add_option("--model", args->model,
                  "preset or Hugging Face config.json (required unless --config names one)");
    c->add_option("--data", args->data,
                  "a directory from zerotrain prepare: a preset takes its meta.json's "
                  "vocabulary, padded to a multiple of 64, as train does");
    CLI::Option* vocab =
        c->add_option("--vocab-size", args->vocab_size, "the model's vocabulary, in tokens");
    CLI::Option* world =
        c->add_option("--world-size", args->world, "number of ranks (required, or --nproc)");
    CLI::Option* nproc = c->add_option("--nproc", args->nproc,
                                       "the same as --world-size (train's and bench-comm's name)");
    // Each run flag with the TrainConfig key it sets.
    auto opts = std::make_shared<std::vector<std::pair<CLI::Option*, std::string>>>();
    auto run_flag = [&](CLI::Option* o, const char* key) {
        opts->emplace_back(o, key);
        return o;
    };
    run_flag(c->add_option("--zero-stage", f.zero_stage, "one stage (default: all four)"),
             "zero_stage");
    run_flag(c->add_option("--precision", f.precision, "fp32 or bf16 (fp32 master weights)"),
             "precision")
        ->capture_default_str();
    run_flag(c->add_option("--grad-accum-dtype", f.grad_accum_dtype,
                           "gradient dtype: auto (the precision's), fp32 or bf16"),
             "grad_accum_dtype")
        ->capture_default_str();
    run_flag(c->add_option("--micro-batch", f.micro_batch,
                           "sequences per micro-batch (activations; default: none)"),
             "micro_batch");
    run_flag(
        c->add_option("--seq-len", f.seq_len, "tokens per sequence (activations; default: none)"),
        "seq_len");
    run_flag(c->add_option("--offload-optimizer", f.offload_optimizer,
                           "where the optimizer state lives: none, cpu (host memory), nvme (a "
                           "file; the optimizer column is then its window of host buffers)"),
             "offload_optimizer")
        ->capture_default_str();
    run_flag(c->add_option("--offload-params", f.offload_params,
                           "stage 3's parameter shards: none, cpu, nvme (a file; the params "
                           "column is then the one-unit host buffer)"),
             "offload_params")
        ->capture_default_str();
    run_flag(c->add_option("--recompute", f.recompute, "activation recompute: none, attn or full"),
             "recompute")
        ->capture_default_str();
    run_flag(c->add_option("--reduce-bucket-size", f.reduce_bucket_size,
                           "elements per gradient-reduction bucket (staging buffers)"),
             "reduce_bucket_size")
        ->capture_default_str();
    run_flag(c->add_option("--allgather-bucket-size", f.allgather_bucket_size,
                           "elements per stage-1/2 parameter-gather bucket (staging buffers)"),
             "allgather_bucket_size")
        ->capture_default_str();
    c->add_flag("--json", args->json,
                "one JSON object per stage; its mem_bytes and offload_bytes keys are the "
                "table's columns");
    c->callback([args, world, nproc, vocab, opts] {
        args->vocab_given = vocab->count() > 0;
        args->world_given = world->count() > 0;
        args->nproc_given = nproc->count() > 0;
        for (const auto& [o, key] : *opts)
            if (o->count() > 0) args->given.insert(key);
        run_estimate(*args);
    });
}

}  // namespace zt::cli
