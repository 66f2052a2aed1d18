// zerotrain export: a checkpoint (any world size, any stage) as a Hugging Face
// folder, consolidated unit by unit so memory stays at one unit's tensors.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "ckpt/checkpoint.h"
#include "ckpt/hf.h"
#include "cli/commands.h"
#include "core/check.h"
#include "core/units.h"
#include "prof/timer.h"

namespace zt::cli {

namespace {

struct ExportArgs {
    std::string checkpoint;
    std::string format = "hf";
    std::string out;
    std::string dtype = "fp32";
};

void run_export(const ExportArgs& a) {
    namespace fs = std::filesystem;
    ZT_CHECK(a.format == "hf", "--format '%s': the only export format is hf", a.format.c_str());
    // fp32 and bf16 as --precision spells them; f32 as bench-comm and the
    // safetensors header do.
    const bool bf16 = a.dtype == "bf16";
    ZT_CHECK(bf16 || a.dtype == "fp32" || a.dtype == "f32",
             "--dtype '%s': expected fp32 (or f32) or bf16", a.dtype.c_str());
    double t0 = now_seconds();
    Checkpoint ckpt = Checkpoint::open(a.checkpoint);
    const ModelConfig& cfg = ckpt.model_config();
    std::printf("export: %s (step %lld, %d rank files, ZeRO stage %d) -> %s\n", ckpt.dir().c_str(),
                (long long)ckpt.step(), ckpt.world_size(), ckpt.zero_stage(), a.out.c_str());
    ExportOptions opt;
    opt.dtype = bf16 ? DType::bf16 : DType::f32;
    const auto& tok = ckpt.manifest().value("tokenizer", nlohmann::json());
    if (tok.is_object() && tok.value("kind", "") == "sentencepiece") {
        // The convention of models trained here: unk 0, BOS 1, EOS 2 (data/tokenizer.h).
        opt.bos_token_id = 1;
        opt.eos_token_id = 2;
    }
    // Progress on stderr at most once a second, so a small export prints none.
    double last = t0;
    opt.progress = [&](int units_done, int units, int64_t bytes_done, int64_t bytes) {
        const double now = now_seconds();
        if (now - last < 1.0 || units_done == units) return;
        last = now;
        const double rate = double(bytes_done) / std::max(now - t0, 1e-9);
        std::fprintf(stderr, "export: %.0f%% of %s (%d/%d units), %.1f s, ETA %.0f s\n",
                     100.0 * double(bytes_done) / double(bytes), human_bytes(bytes).c_str(),
                     units_done, units, now - t0, double(bytes - bytes_done) / std::max(rate, 1.0));
    };
    export_hf(
        cfg, [&](int unit, float* out) { ckpt.read_unit(unit, Checkpoint::Part::params, out); },
        a.out, opt);
    if (tok.is_object() && tok.contains("file")) {
        fs::copy_file(fs::path(ckpt.dir()) / tok["file"].get<std::string>(),
                      fs::path(a.out) / "tokenizer.model");
    }
    std::printf(
        "export: wrote %s/config.json and model.safetensors (%lld parameters, %s) in "
        "%.2f s\n",
        a.out.c_str(), (long long)count_params(cfg), bf16 ? "bf16" : "fp32", now_seconds() - t0);
}

}  // namespace

void add_export_command(CLI::App& app) {
    auto args = std::make_shared<ExportArgs>();
    CLI::App* c = app.add_subcommand(
        "export", "write a checkpoint as a Hugging Face folder (config.json + model.safetensors)");
    c->add_option("--checkpoint", args->checkpoint, "step, ckpt or run directory")
        ->type_name("DIR")
        ->required();
    c->add_option("--format", args->format, "hf (LlamaForCausalLM or GPT2LMHeadModel)")
        ->capture_default_str();
    c->add_option("--out", args->out, "output folder (must not exist, or be empty)")
        ->type_name("DIR")
        ->required();
    c->add_option("--dtype", args->dtype, "fp32 (exact; f32 also accepted) or bf16")
        ->capture_default_str();
    c->callback([args] { run_export(*args); });
}

}  // namespace zt::cli
