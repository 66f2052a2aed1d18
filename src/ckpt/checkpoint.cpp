#include "ckpt/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
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
constexpr int kVersion = 1;
constexpr const char* kPartNames[] = {"params", "exp_avg", "exp_avg_sq"};

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

std::string save_checkpoint(const std::string& run_dir, Engine& engine, Communicator* comm,
                            const ModelConfig& model, const CheckpointInfo& info, int keep_last) {
    const int rank = engine.rank(), world = engine.world();
    const fs::path ckpt_dir = fs::path(run_dir) / "ckpt";
    const fs::path final_dir = ckpt_dir / checkpoint_dir_name(info.step);
    const fs::path tmp_dir = final_dir.string() + ".tmp";
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
        man["files"] = files;
        write_text_durably((tmp_dir / "manifest.json").string(), man.dump(2) + "\n");
        fsync_path(tmp_dir.string(), true);

        // An older checkpoint of the same step (a run resumed from before it)
        // is replaced only once the new one is complete.
        std::error_code ec;
        fs::path old_dir = final_dir.string() + ".old";
        fs::remove_all(old_dir, ec);
        if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
        fs::rename(tmp_dir, final_dir, ec);
        ZT_CHECK(!ec, "cannot rename %s to %s: %s", tmp_dir.c_str(), final_dir.c_str(),
                 ec.message().c_str());
        fsync_path(ckpt_dir.string(), true);
        write_text_durably((ckpt_dir / "latest").string(), final_dir.filename().string() + "\n");
        fs::remove_all(old_dir, ec);

        if (keep_last > 0) {
            auto steps = list_step_dirs(ckpt_dir);
            for (size_t i = 0; i + size_t(keep_last) < steps.size(); i++)
                if (steps[i].second != final_dir) fs::remove_all(steps[i].second, ec);
        }
    }
    if (comm) comm->barrier();  // the checkpoint exists for every rank from here on
    return final_dir.string();
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
    ZT_FAIL(
        "'%s' is not a checkpoint: expected a step directory with manifest.json, a ckpt "
        "directory of step-* directories, or a run directory with one",
        path.c_str());
}

bool has_checkpoint(const std::string& run_dir) {
    const fs::path p(run_dir);
    return !newest_complete_step(p / "ckpt").empty() || !newest_complete_step(p).empty();
}

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
    ZT_CHECK(need("format") == kFormat && need("version") == kVersion,
             "%s: not a zerotrain checkpoint manifest of version %d", man_path.c_str(), kVersion);
    ZT_CHECK(need("step").is_number_integer() && need("world_size").is_number_integer() &&
                 need("zero_stage").is_number_integer() && need("files").is_array(),
             "%s: step, world_size, zero_stage must be integers and files an array",
             man_path.c_str());
    c.step_ = m["step"].get<int64_t>();
    c.world_ = m["world_size"].get<int>();
    c.stage_ = m["zero_stage"].get<int>();
    ZT_CHECK(c.world_ >= 1 && int(m["files"].size()) == c.world_,
             "%s: world_size %d but %zu files listed", man_path.c_str(), c.world_,
             m["files"].size());
    c.model_ = model_config_from_json(need("model_config"), man_path);
    c.layout_ = model_layout(c.model_);
    c.saved_layout_ = make_zero_layout(c.layout_, c.world_);

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
