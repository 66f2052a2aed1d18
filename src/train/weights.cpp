#include "train/weights.h"

#include <filesystem>

#include "ckpt/checkpoint.h"
#include "ckpt/hf.h"
#include "core/check.h"
#include "core/sha256.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// The tokenizer a checkpoint's manifest records, preferring the saved copy.
void load_checkpoint_tokenizer(const Checkpoint& ckpt, LoadedWeights* w) {
    const auto& man = ckpt.manifest();
    if (!man.contains("tokenizer") || !man["tokenizer"].is_object()) return;
    const auto& tok = man["tokenizer"];
    const std::string kind = tok.value("kind", "");
    if (kind == "byte") {
        w->tokenizer = make_byte_tokenizer();
        return;
    }
    ZT_CHECK(kind == "sentencepiece", "%s/manifest.json: unknown tokenizer kind '%s'",
             ckpt.dir().c_str(), kind.c_str());
    std::string path = tok.contains("file")
                           ? (fs::path(ckpt.dir()) / tok["file"].get<std::string>()).string()
                           : tok.value("path", "");
    ZT_CHECK(fs::exists(path), "%s/manifest.json: its tokenizer %s does not exist",
             ckpt.dir().c_str(), path.c_str());
    std::string want =
        tok.contains("sha256") && tok["sha256"].is_string() ? tok["sha256"].get<std::string>() : "";
    w->tokenizer_sha256 = sha256_file_hex(path);
    ZT_CHECK(want.empty() || want == w->tokenizer_sha256,
             "tokenizer %s has SHA-256 %s, but the checkpoint %s recorded %s", path.c_str(),
             w->tokenizer_sha256.c_str(), ckpt.dir().c_str(), want.c_str());
    w->tokenizer = load_sentencepiece(path);
}

}  // namespace

LoadedWeights load_weights(const std::string& checkpoint, const std::string& hf_dir) {
    ZT_CHECK(checkpoint.empty() != hf_dir.empty(),
             "give exactly one of --checkpoint DIR (a zerotrain checkpoint) and --hf DIR (a "
             "Hugging Face folder)");
    LoadedWeights w;
    if (!hf_dir.empty()) {
        w.source = hf_dir;
        w.config = hf_model_config(hf_dir);
        w.params = read_hf_params(hf_dir, w.config);
        fs::path tok = fs::path(hf_dir) / "tokenizer.model";
        if (fs::exists(tok)) {
            w.tokenizer = load_sentencepiece(tok.string());
            w.tokenizer_sha256 = sha256_file_hex(tok.string());
        }
        return w;
    }
    Checkpoint ckpt = Checkpoint::open(checkpoint);
    w.source = ckpt.dir();
    w.config = ckpt.model_config();
    w.train_config = ckpt.manifest().value("train_config", nlohmann::json());
    w.params.resize(size_t(ckpt.layout().total_numel));
    int64_t offset = 0;
    for (int u = 0; u < ckpt.layout().n_units(); u++) {
        ckpt.read_unit(u, Checkpoint::Part::params, w.params.data() + offset);
        offset += ckpt.layout().units[size_t(u)].numel;
    }
    load_checkpoint_tokenizer(ckpt, &w);
    return w;
}

}  // namespace zt
