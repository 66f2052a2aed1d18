#include "ckpt/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/check.h"
#include "core/sha256.h"
#include "zero/layout.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "zerotrain-checkpoint";
// Version 2 added manifest.sha256; version 1 checkpoints (no sidecar) still load.
constexpr int kVersion = 2;
constexpr const char* kManifestHash = "manifest.sha256";  // "HEX  manifest.json", sha256sum's form
constexpr const char* kPartNames[] = {"params", "exp_avg", "exp_avg_sq"};
constexpr const char* kBestName = "best";

std::string rank_file_name(int rank, int world) {
    return strprintf("rank-%05d-of-%05d.safetensors", rank, world);
}

std::string tensor_name(const UnitSpec& unit, int part) {
    return unit.name + "." + kPartNames[part];
}

void fsync_path(const std::string& path, bool directory) {
    int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return;  // best effort: durability, not correctness, depends on it
    ::fsync(fd);
    ::close(fd);
}

// path holds either its old content or all of `text`.
void write_text_durably(const std::string& path, const std::string& text) {
    std::string tmp = path + ".tmp";
    std::error_code ec;
    fs::remove_all(tmp, ec);  // a stale one, left by a run that died here
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << text;
        f.flush();
        ZT_CHECK(f.good(), "cannot write %s", tmp.c_str());
    }
    fsync_path(tmp, false);
    ZT_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename %s to %s: %s", tmp.c_str(),
             path.c_str(), std::strerror(errno));
    fsync_path(fs::path(path).parent_path().string(), true);
}

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

// Step directories under ckpt_dir (complete ones only), oldest first.
std::vector<std::pair<int64_t, fs::path>> list_step_dirs(const fs::path& ckpt_dir) {
    std::vector<std::pair<int64_t, fs::path>> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
        std::string name = e.path().filename().string();
        if (!e.is_directory() || name.rfind("step-", 0) != 0 || name.size() != 13) continue;
        if (name.find_first_not_of("0123456789", 5) != std::string::npos) continue;
        out.emplace_back(std::stoll(name.substr(5)), e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

// A step directory whose manifest parses and lists files that are all there
// at their recorded sizes (their hashes are checked when it is opened).
bool step_dir_complete(const fs::path& dir) {
    std::ifstream f(dir / "manifest.json");
    if (!f.good()) return false;
    nlohmann::json man = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (!man.is_object() || !man.contains("files") || !man["files"].is_array() ||
        man["files"].empty())
        return false;
    // From version 2 the manifest's hash is part of the checkpoint (it is
    // verified when the checkpoint is opened).
    if (man.value("version", 0) >= 2 && !fs::exists(dir / kManifestHash)) return false;
    for (const auto& rec : man["files"]) {
        if (!rec.is_object() || !rec.contains("name") || !rec["name"].is_string() ||
            !rec.contains("bytes") || !rec["bytes"].is_number_integer())
            return false;
        const std::string name = rec["name"];
        if (name.empty() || name.find('/') != std::string::npos) return false;
        std::error_code ec;
        const auto size = fs::file_size(dir / name, ec);
        if (ec || int64_t(size) != rec["bytes"].get<int64_t>()) return false;
    }
    return true;
}

// The newest complete step directory of a ckpt directory, or empty.
fs::path newest_complete_step(const fs::path& ckpt_dir) {
    auto steps = list_step_dirs(ckpt_dir);
    for (auto it = steps.rbegin(); it != steps.rend(); ++it)
        if (step_dir_complete(it->second)) return it->second;
    return {};
}

// One rank's file: (file size, SHA-256), gathered to every rank as raw bytes (u8).
struct FileRecord {
    int64_t bytes = 0;
    char sha256[64] = {};
};

nlohmann::ordered_json layout_json(const ModelLayout& layout, const ZeroLayout& zl) {
    nlohmann::ordered_json units = nlohmann::ordered_json::array();
    for (size_t u = 0; u < layout.units.size(); u++)
        units.push_back({{"name", layout.units[u].name},
                         {"numel", layout.units[u].numel},
                         {"shard", zl.units[u].shard}});
    return {{"total_numel", layout.total_numel},
            {"rule", "rank r holds elements [r*shard, min((r+1)*shard, numel)) of each unit"},
            {"units", units}};
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
    return strprintf("step-%08lld", (long long)step);
}

namespace {

// A save's ckpt_dir/name.tmp/ while it is being written: removed when the
// save fails before the directory is complete (a full disk, say), so a failed
// save gives its space back at once. The rank that fails removes it for every
// rank, whose saves fail with its own. A run killed while saving leaves it to
// the next save, which removes whatever *.tmp it finds.
class PartialSave {
  public:
    explicit PartialSave(fs::path dir) : dir_(std::move(dir)) {}
    ~PartialSave() {
        if (dir_.empty() || std::uncaught_exceptions() <= exceptions_) return;
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    PartialSave(const PartialSave&) = delete;
    PartialSave& operator=(const PartialSave&) = delete;

    // The directory is complete: from here a failure keeps it.
    void complete() { dir_.clear(); }

  private:
    fs::path dir_;
    int exceptions_ = std::uncaught_exceptions();
};

// Collective: writes ckpt_dir/name.tmp/ (every rank its file, rank 0 the
// manifest) and rank 0 renames it to ckpt_dir/name, replacing one of that
// name only once the new one is complete. Callers end with a barrier.
fs::path write_checkpoint_dir(const fs::path& ckpt_dir, const std::string& name, Engine& engine,
                              Communicator* comm, const ModelConfig& model,
                              const CheckpointInfo& info) {
    const int rank = engine.rank(), world = engine.world();
    const fs::path final_dir = ckpt_dir / name;
    const fs::path tmp_dir = final_dir.string() + ".tmp";
    PartialSave partial(tmp_dir);
    if (rank == 0) {
        std::error_code ec;
        // Anything *.tmp was left by a run that died while saving.
        for (const auto& e : fs::directory_iterator(ckpt_dir, ec))
            if (e.path().extension() == ".tmp") fs::remove_all(e.path(), ec);
        ec.clear();
        fs::create_directories(tmp_dir, ec);
        ZT_CHECK(!ec, "cannot create checkpoint directory %s: %s", tmp_dir.c_str(),
                 ec.message().c_str());
    }
    if (comm) comm->barrier();

    // This rank's file: its owned elements of every unit.
    const ModelLayout& layout = engine.layout();
    SafetensorsWriter writer;
    std::vector<float> p, m, v;
    for (int u = 0; u < layout.n_units(); u++) {
        OwnedRange r = engine.owned_range(u);
        if (r.size() == 0) continue;  // more ranks than this unit has shards of real elements
        p.resize(size_t(r.size()));
        m.resize(size_t(r.size()));
        v.resize(size_t(r.size()));
        engine.save_owned_state(u, p.data(), m.data(), v.data());
        const float* parts[] = {p.data(), m.data(), v.data()};
        for (int k = 0; k < 3; k++)
            writer.add(tensor_name(layout.units[size_t(u)], k), "F32", {r.size()}, parts[k],
                       r.size() * int64_t(sizeof(float)));
    }
    writer.set_metadata("format", kFormat);
    writer.set_metadata("rank", std::to_string(rank));
    writer.set_metadata("world_size", std::to_string(world));
    writer.set_metadata("step", std::to_string(info.step));
    const std::string file = (tmp_dir / rank_file_name(rank, world)).string();
    writer.write(file);
    FileRecord mine;
    mine.bytes = int64_t(fs::file_size(file));
    std::string digest = sha256_file_hex(file);
    std::memcpy(mine.sha256, digest.data(), sizeof mine.sha256);
    if (const char* hook = std::getenv("ZT_CKPT_TEST_DELAY")) {
        // Test hook "STEP:MS": the save of step STEP waits MS ms between the
        // rank files and the rename, so a test can kill the job in that window.
        long long at = 0, ms = 0;
        if (std::sscanf(hook, "%lld:%lld", &at, &ms) == 2 && at == info.step)
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
    std::vector<FileRecord> records(static_cast<size_t>(world));
    if (comm && world > 1)
        comm->all_gather(&mine, records.data(), int64_t(sizeof(FileRecord)), DType::u8);
    else
        records[0] = mine;

    if (rank == 0) {
        nlohmann::ordered_json files = nlohmann::ordered_json::array();
        for (int r = 0; r < world; r++)
            files.push_back({{"rank", r},
                             {"name", rank_file_name(r, world)},
                             {"bytes", records[size_t(r)].bytes},
                             {"sha256", std::string(records[size_t(r)].sha256, 64)}});
        nlohmann::ordered_json man;
        man["format"] = kFormat;
        man["version"] = kVersion;
        man["created"] = utc_now();
        man["step"] = info.step;
        man["tokens_seen"] = info.tokens_seen;
        man["world_size"] = world;
        man["zero_stage"] = engine.stage();
        man["model_config"] = model_config_to_json(model);
        man["train_config"] = info.train_config;
        man["layout"] = layout_json(layout, engine.zero_layout());
        man["data"] = info.data;
        man["rng"] = {{"seed", info.train_config.value("seed", uint64_t(0))},
                      {"data_order", "epoch e's order is a permutation seeded by (seed, e)"},
                      {"engine", "none: training draws no random numbers after initialisation"}};
        // The tokenizer travels with the weights, so generation needs only the checkpoint.
        nlohmann::ordered_json tok = info.tokenizer;
        if (tok.is_object() && tok.value("kind", "") == "sentencepiece" &&
            fs::exists(tok.value("path", ""))) {
            fs::copy_file(tok["path"].get<std::string>(), tmp_dir / "tokenizer.model",
                          fs::copy_options::overwrite_existing);
            tok["file"] = "tokenizer.model";
        }
        man["tokenizer"] = tok;
        if (std::isfinite(info.eval_loss)) man["eval_loss"] = info.eval_loss;
        man["files"] = files;
        const std::string text = man.dump(2) + "\n";
        write_text_durably((tmp_dir / "manifest.json").string(), text);
        // The manifest's own hash, so a changed manifest is refused like a
        // changed rank file (`sha256sum -c manifest.sha256` checks it too).
        write_text_durably((tmp_dir / kManifestHash).string(),
                           sha256_hex(text.data(), text.size()) + "  manifest.json\n");
        fsync_path(tmp_dir.string(), true);
        partial.complete();

        // An older checkpoint of the same name (best, or a run resumed from
        // before this step) is replaced only once the new one is complete.
        std::error_code ec;
        fs::path old_dir = final_dir.string() + ".old";
        fs::remove_all(old_dir, ec);
        if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
        fs::rename(tmp_dir, final_dir, ec);
        ZT_CHECK(!ec, "cannot rename %s to %s: %s", tmp_dir.c_str(), final_dir.c_str(),
                 ec.message().c_str());
        fsync_path(ckpt_dir.string(), true);
        fs::remove_all(old_dir, ec);
    }
    return final_dir;
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, Engine& engine, Communicator* comm,
                            const ModelConfig& model, const CheckpointInfo& info, int keep_last) {
    const fs::path ckpt_dir = fs::path(run_dir) / "ckpt";
    const fs::path final_dir =
        write_checkpoint_dir(ckpt_dir, checkpoint_dir_name(info.step), engine, comm, model, info);
    if (engine.rank() == 0) {
        write_text_durably((ckpt_dir / "latest").string(), final_dir.filename().string() + "\n");
        // Only step-* directories are pruned: best is never one of them.
        if (keep_last > 0) {
            std::error_code ec;
            auto steps = list_step_dirs(ckpt_dir);
            for (size_t i = 0; i + size_t(keep_last) < steps.size(); i++)
                if (steps[i].second != final_dir) fs::remove_all(steps[i].second, ec);
        }
    }
    if (comm) comm->barrier();  // the checkpoint exists for every rank from here on
    return final_dir.string();
}

std::string save_best_checkpoint(const std::string& run_dir, Engine& engine, Communicator* comm,
                                 const ModelConfig& model, const CheckpointInfo& info) {
    ZT_CHECK(std::isfinite(info.eval_loss), "the best checkpoint needs a finite validation loss");
    const fs::path dir =
        write_checkpoint_dir(fs::path(run_dir) / "ckpt", kBestName, engine, comm, model, info);
    if (comm) comm->barrier();
    return dir.string();
}

std::optional<SavedCheckpoint> read_best_checkpoint(const std::string& run_dir) {
    const fs::path dir = fs::path(run_dir) / "ckpt" / kBestName;
    if (!step_dir_complete(dir)) return std::nullopt;
    std::ifstream f(dir / "manifest.json");
    nlohmann::json man = nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (!man.is_object() || !man.contains("step") || !man["step"].is_number_integer() ||
        !man.contains("eval_loss") || !man["eval_loss"].is_number())
        return std::nullopt;
    return SavedCheckpoint{man["step"].get<int64_t>(), dir.string(),
                           man["eval_loss"].get<double>()};
}

std::optional<SavedCheckpoint> newest_step_checkpoint(const std::string& run_dir) {
    const fs::path dir = newest_complete_step(fs::path(run_dir) / "ckpt");
    if (dir.empty()) return std::nullopt;
    return SavedCheckpoint{std::stoll(dir.filename().string().substr(5)), dir.string(), NAN};
}

std::vector<std::string> remove_checkpoints_after(const std::string& run_dir, int64_t step) {
    const fs::path ckpt_dir = fs::path(run_dir) / "ckpt";
    std::vector<std::string> removed;
    std::error_code ec;
    for (const auto& [s, dir] : list_step_dirs(ckpt_dir)) {
        if (s <= step) continue;
        fs::remove_all(dir, ec);
        ZT_CHECK(!ec, "cannot remove %s: %s", dir.c_str(), ec.message().c_str());
        removed.push_back(dir.filename().string());
    }
    if (auto best = read_best_checkpoint(run_dir); best && best->step > step) {
        fs::remove_all(best->dir, ec);
        ZT_CHECK(!ec, "cannot remove %s: %s", best->dir.c_str(), ec.message().c_str());
        removed.push_back(strprintf("%s (step %lld)", kBestName, (long long)best->step));
    }
    // `latest` names what is left: the newest complete step up to `step`.
    const fs::path newest = newest_complete_step(ckpt_dir);
    if (!newest.empty())
        write_text_durably((ckpt_dir / "latest").string(), newest.filename().string() + "\n");
    else
        fs::remove(ckpt_dir / "latest", ec);
    fsync_path(ckpt_dir.string(), true);
    return removed;
}

std::string resolve_checkpoint_dir(const std::string& path) {
    fs::path p(path);
    ZT_CHECK(fs::exists(p), "checkpoint '%s': no such file or directory", path.c_str());
    ZT_CHECK(p.extension() != ".tmp",
             "checkpoint '%s' is incomplete (a save was interrupted); use a step directory "
             "without .tmp",
             path.c_str());
    if (fs::exists(p / "manifest.json")) return p.string();
    for (const fs::path& ckpt_dir : {p, p / "ckpt"}) {
        if (list_step_dirs(ckpt_dir).empty() && !fs::exists(ckpt_dir / "latest")) continue;
        const fs::path newest = newest_complete_step(ckpt_dir);
        ZT_CHECK(!newest.empty(),
                 "checkpoint '%s': %s holds no complete step directory (each needs a "
                 "manifest.json and every file it lists)",
                 path.c_str(), ckpt_dir.c_str());
        // `latest` is a hint: a save can die after its directory is in place
        // and before `latest` names it.
        std::ifstream f(ckpt_dir / "latest");
        std::string name;
        std::getline(f, name);
        if (name != newest.filename().string())
            std::fprintf(stderr,
                         "zerotrain: note: %s names '%s', but the newest complete checkpoint is "
                         "%s; using it\n",
                         (ckpt_dir / "latest").c_str(), name.c_str(), newest.c_str());
        return newest.string();
    }
    ZT_CHECK(!fs::exists(p / "metrics.jsonl"),
             "run directory '%s' holds no checkpoint (it was trained with --no-save, or "
             "stopped before its first save); train it again without --no-save, or give a "
             "run directory that has RUN/ckpt/step-*",
             path.c_str());
    ZT_FAIL(
        "'%s' is not a checkpoint: expected a step directory with manifest.json, a ckpt "
        "directory of step-* directories, or a run directory with one",
        path.c_str());
}

bool has_checkpoint(const std::string& run_dir) {
    const fs::path p(run_dir);
    return !newest_complete_step(p / "ckpt").empty() || !newest_complete_step(p).empty();
}

namespace {

constexpr int64_t kMaxSteps = int64_t(1) << 40;
constexpr int64_t kMaxWorld = int64_t(1) << 20;

// manifest[key] (or manifest[obj][key]) as an integer in [lo, hi], or a
// refusal naming the field, its value and the range.
int64_t manifest_int(const nlohmann::json& obj, const std::string& key, int64_t lo, int64_t hi,
                     const std::string& source, const std::string& prefix = "") {
    const std::string name = prefix + key;
    ZT_CHECK(obj.is_object() && obj.contains(key), "%s: missing field '%s'", source.c_str(),
             name.c_str());
    const auto& v = obj[key];
    ZT_CHECK(v.is_number_integer(), "%s: '%s' is %s, expected an integer from %lld to %lld",
             source.c_str(), name.c_str(), v.dump().c_str(), (long long)lo, (long long)hi);
    const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t(hi) &&
                                                       int64_t(v.get<uint64_t>()) >= lo
                                                 : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    ZT_CHECK(in_range, "%s: '%s' is %s, expected an integer from %lld to %lld", source.c_str(),
             name.c_str(), v.dump().c_str(), (long long)lo, (long long)hi);
    return v.get<int64_t>();
}

// manifest.sha256 against the manifest's bytes (version 2 on; version 1
// manifests carry none, and say so).
void verify_manifest_hash(const std::string& dir, int version) {
    const fs::path man = fs::path(dir) / "manifest.json", side = fs::path(dir) / kManifestHash;
    if (version < 2) {
        std::fprintf(stderr,
                     "zerotrain: note: %s is a version-1 manifest, written before manifests "
                     "carried their own SHA-256; its rank files are still verified\n",
                     man.c_str());
        return;
    }
    std::ifstream f(side);
    std::string recorded;
    ZT_CHECK(f >> recorded, "checkpoint %s: %s is missing or empty (the manifest's SHA-256)",
             dir.c_str(), side.c_str());
    const std::string digest = sha256_file_hex(man.string());
    ZT_CHECK(digest == recorded,
             "checkpoint %s: manifest.json was changed after it was written: SHA-256 %s, %s "
             "records %s",
             dir.c_str(), digest.c_str(), side.c_str(), recorded.c_str());
}

// The manifest's fields against the layout it describes and each other:
// the layout's units, the data position, the training config's stage and
// sequence length, and tokens_seen = step x global batch x seq_len.
void validate_manifest(const nlohmann::json& m, const ModelLayout& layout, const ZeroLayout& zl,
                       int64_t step, const std::string& src) {
    const auto& lay = m.contains("layout") ? m["layout"] : nlohmann::json();
    ZT_CHECK(lay.is_object() && lay.contains("units") && lay["units"].is_array() &&
                 lay["units"].size() == layout.units.size(),
             "%s: 'layout.units' must list the model's %zu units", src.c_str(),
             layout.units.size());
    ZT_CHECK(
        manifest_int(lay, "total_numel", 0, int64_t(1) << 50, src, "layout.") == layout.total_numel,
        "%s: 'layout.total_numel' %lld does not match the model config's %lld parameters",
        src.c_str(), (long long)lay["total_numel"].get<int64_t>(), (long long)layout.total_numel);
    for (size_t u = 0; u < layout.units.size(); u++) {
        const auto& rec = lay["units"][u];
        const std::string at = strprintf("layout.units[%zu].", u);
        ZT_CHECK(rec.is_object() && rec.value("name", "") == layout.units[u].name,
                 "%s: '%sname' should be '%s' (the model config's unit %zu)", src.c_str(),
                 at.c_str(), layout.units[u].name.c_str(), u);
        ZT_CHECK(
            manifest_int(rec, "numel", 0, int64_t(1) << 50, src, at) == layout.units[u].numel &&
                manifest_int(rec, "shard", 0, int64_t(1) << 50, src, at) == zl.units[u].shard,
            "%s: '%s' holds %lld elements in shards of %lld, but the model config and "
            "world size give %lld in shards of %lld",
            src.c_str(), at.c_str(), (long long)rec["numel"].get<int64_t>(),
            (long long)rec["shard"].get<int64_t>(), (long long)layout.units[u].numel,
            (long long)zl.units[u].shard);
    }
    ZT_CHECK(m.contains("data") && m["data"].is_object(), "%s: missing object 'data'", src.c_str());
    ZT_CHECK(m.contains("train_config") && m["train_config"].is_object(),
             "%s: missing object 'train_config'", src.c_str());
    const auto &d = m["data"], &tc = m["train_config"];
    const int64_t seq = manifest_int(d, "seq_len", 1, 1 << 24, src, "data.");
    ZT_CHECK(manifest_int(tc, "seq_len", 1, 1 << 24, src, "train_config.") == seq,
             "%s: 'data.seq_len' %lld differs from 'train_config.seq_len' %lld", src.c_str(),
             (long long)seq, (long long)tc["seq_len"].get<int64_t>());
    ZT_CHECK(manifest_int(tc, "zero_stage", 0, 3, src, "train_config.") ==
                 m["zero_stage"].get<int64_t>(),
             "%s: 'train_config.zero_stage' %lld differs from 'zero_stage' %lld", src.c_str(),
             (long long)tc["zero_stage"].get<int64_t>(), (long long)m["zero_stage"].get<int64_t>());
    const int64_t global =
        manifest_int(d, "global_batch_sequences", 1, int64_t(1) << 40, src, "data.");
    const int64_t per_epoch =
        manifest_int(d, "sequences_per_epoch", 1, int64_t(1) << 50, src, "data.");
    ZT_CHECK(step <= INT64_MAX / global / seq,
             "%s: step %lld x %lld sequences x %lld tokens overflows", src.c_str(), (long long)step,
             (long long)global, (long long)seq);
    const int64_t next = manifest_int(d, "next_position", 0, INT64_MAX, src, "data.");
    const int64_t epoch = manifest_int(d, "epoch", 0, INT64_MAX, src, "data.");
    ZT_CHECK(next == step * global && epoch == next / per_epoch,
             "%s: 'data.next_position' %lld and 'data.epoch' %lld are not where step %lld of %lld "
             "sequences a step leaves the data (%lld, epoch %lld)",
             src.c_str(), (long long)next, (long long)epoch, (long long)step, (long long)global,
             (long long)(step * global), (long long)(step * global / per_epoch));
    const int64_t tokens = manifest_int(m, "tokens_seen", 0, INT64_MAX, src);
    ZT_CHECK(tokens == step * global * seq,
             "%s: 'tokens_seen' %lld is not step %lld x %lld sequences x %lld tokens", src.c_str(),
             (long long)tokens, (long long)step, (long long)global, (long long)seq);
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
    Checkpoint c;
    c.dir_ = resolve_checkpoint_dir(path);
    const std::string man_path = (fs::path(c.dir_) / "manifest.json").string();
    {
        std::ifstream f(man_path);
        ZT_CHECK(f.good(), "cannot read %s", man_path.c_str());
        try {
            c.manifest_ = nlohmann::json::parse(f);
        } catch (const std::exception& e) {
            ZT_FAIL("%s is not valid JSON: %s", man_path.c_str(), e.what());
        }
    }
    const auto& m = c.manifest_;
    auto need = [&](const char* key) -> const nlohmann::json& {
        ZT_CHECK(m.is_object() && m.contains(key), "%s: missing field '%s'", man_path.c_str(), key);
        return m[key];
    };
    ZT_CHECK(need("format") == kFormat && need("version").is_number_integer() &&
                 m["version"].get<int64_t>() >= 1 && m["version"].get<int64_t>() <= kVersion,
             "%s: not a zerotrain checkpoint manifest of version 1 to %d", man_path.c_str(),
             kVersion);
    verify_manifest_hash(c.dir_, m["version"].get<int>());
    c.step_ = manifest_int(m, "step", 0, kMaxSteps, man_path);
    c.world_ = int(manifest_int(m, "world_size", 1, kMaxWorld, man_path));
    c.stage_ = int(manifest_int(m, "zero_stage", 0, 3, man_path));
    ZT_CHECK(need("files").is_array() && int64_t(m["files"].size()) == c.world_,
             "%s: world_size %d but %zu files listed", man_path.c_str(), c.world_,
             m["files"].is_array() ? m["files"].size() : size_t(0));
    c.model_ = model_config_from_json(need("model_config"), man_path);
    c.layout_ = model_layout(c.model_);
    c.saved_layout_ = make_zero_layout(c.layout_, c.world_);
    validate_manifest(m, c.layout_, c.saved_layout_, c.step_, man_path);

    // Every file present, of the recorded size and hash, before any is opened.
    for (int r = 0; r < c.world_; r++) {
        const auto& rec = m["files"][size_t(r)];
        ZT_CHECK(rec.is_object() && rec.value("rank", -1) == r && rec.contains("name") &&
                     rec["name"].is_string() && rec.contains("bytes") && rec.contains("sha256"),
                 "%s: files[%d] is malformed", man_path.c_str(), r);
        std::string name = rec["name"].get<std::string>();
        ZT_CHECK(name == rank_file_name(r, c.world_), "%s: files[%d] is named '%s', expected %s",
                 man_path.c_str(), r, name.c_str(), rank_file_name(r, c.world_).c_str());
        std::string file = (fs::path(c.dir_) / name).string();
        ZT_CHECK(fs::exists(file), "checkpoint %s: rank %d's file %s is missing", c.dir_.c_str(), r,
                 file.c_str());
        int64_t bytes = int64_t(fs::file_size(file));
        ZT_CHECK(bytes == rec["bytes"].get<int64_t>(),
                 "checkpoint file %s has %lld bytes, the manifest records %lld (truncated or "
                 "replaced)",
                 file.c_str(), (long long)bytes, (long long)rec["bytes"].get<int64_t>());
        std::string digest = sha256_file_hex(file);
        ZT_CHECK(digest == rec["sha256"].get<std::string>(),
                 "checkpoint file %s is corrupt: SHA-256 %s, the manifest records %s", file.c_str(),
                 digest.c_str(), rec["sha256"].get<std::string>().c_str());
    }
    for (int r = 0; r < c.world_; r++) {
        std::string file = (fs::path(c.dir_) / rank_file_name(r, c.world_)).string();
        SafetensorsFile f = SafetensorsFile::open(file);
        for (int u = 0; u < c.layout_.n_units(); u++) {
            const int64_t n = owned_range(c.saved_layout_.units[size_t(u)], r).size();
            for (int k = 0; k < 3; k++) {
                std::string t = tensor_name(c.layout_.units[size_t(u)], k);
                const SafetensorsTensor* st = f.find(t);
                if (n == 0) {
                    ZT_CHECK(!st, "checkpoint file %s: unexpected tensor %s", file.c_str(),
                             t.c_str());
                    continue;
                }
                ZT_CHECK(st && st->dtype == "F32" && st->shape == std::vector<int64_t>{n},
                         "checkpoint file %s: tensor %s is missing or not F32 of %lld elements",
                         file.c_str(), t.c_str(), (long long)n);
            }
        }
        c.files_.push_back(std::move(f));
    }
    return c;
}

void Checkpoint::read_unit(int unit, Part part, float* out) const {
    ZT_CHECK(unit >= 0 && unit < layout_.n_units(), "unit %d out of range", unit);
    std::string name = tensor_name(layout_.units[size_t(unit)], int(part));
    for (int r = 0; r < world_; r++) {
        const OwnedRange owned = owned_range(saved_layout_.units[size_t(unit)], r);
        if (owned.size() > 0) files_[size_t(r)].read_f32(name, out + owned.begin, owned.size());
    }
}

void load_engine_state(const Checkpoint& ckpt, Engine& engine) {
    std::string diff = model_config_difference(ckpt.model_config(), engine.config());
    ZT_CHECK(diff.empty(),
             "checkpoint %s holds a different model: %s differs (checkpoint vs this run); "
             "resume with the checkpoint's model",
             ckpt.dir().c_str(), diff.c_str());
    std::vector<float> p, m, v;
    for (int u = 0; u < engine.layout().n_units(); u++) {
        int64_t n = engine.layout().units[size_t(u)].numel;
        p.resize(size_t(n));
        m.resize(size_t(n));
        v.resize(size_t(n));
        ckpt.read_unit(u, Checkpoint::Part::params, p.data());
        ckpt.read_unit(u, Checkpoint::Part::exp_avg, m.data());
        ckpt.read_unit(u, Checkpoint::Part::exp_avg_sq, v.data());
        engine.load_unit_state(u, p.data(), m.data(), v.data());
    }
}

}  // namespace zt
