// Hugging Face export and import; see hf.h for names, layouts and the
// guarantees. Export streams unit by unit through SafetensorsStreamWriter into
// a temporary folder renamed into place; import checks every tensor of the
// files against the layout before the caller sees a single parameter.
#include "ckpt/hf.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "ckpt/safetensors.h"
#include "core/check.h"
#include "model/layout.h"

namespace zt {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Elements converted or transposed per write during export.
constexpr int64_t kStageElements = int64_t(1) << 16;

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// GPT-2's Conv1D weights, stored (in, out) by Hugging Face and (out, in) by us.
bool is_conv1d_weight(const ModelConfig& cfg, const std::string& name) {
    return cfg.arch == Arch::gpt2 &&
           (ends_with(name, ".attn.c_attn.weight") || ends_with(name, ".attn.c_proj.weight") ||
            ends_with(name, ".mlp.c_fc.weight") || ends_with(name, ".mlp.c_proj.weight"));
}

// The tensor's shape in the Hugging Face file.
std::vector<int64_t> hf_shape(const ModelConfig& cfg, const TensorSpec& t) {
    if (is_conv1d_weight(cfg, t.name)) return {t.shape[1], t.shape[0]};
    return t.shape;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

// The shortest decimal that reads back as f (1e-05, not 9.999999747378752e-06),
// so config.json says what the user wrote and still round-trips exactly.
double short_decimal(float f) {
    char buf[32];
    for (int digits = 1; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, double(f));
        if (std::strtof(buf, nullptr) == f) break;
    }
    return std::strtod(buf, nullptr);
}

json hf_config_json(const ModelConfig& c, const ExportOptions& o) {
    json j;
    if (c.arch == Arch::llama) {
        j = {{"architectures", {"LlamaForCausalLM"}},
             {"model_type", "llama"},
             {"hidden_size", c.d_model},
             {"intermediate_size", c.d_ff},
             {"num_hidden_layers", c.n_layer},
             {"num_attention_heads", c.n_head},
             {"num_key_value_heads", c.n_kv_head},
             {"vocab_size", c.vocab_size},
             {"max_position_embeddings", c.max_seq},
             {"rms_norm_eps", short_decimal(c.norm_eps)},
             {"rope_theta", short_decimal(c.rope_theta)},
             {"hidden_act", "silu"},
             {"tie_word_embeddings", c.tie_embeddings}};
        if (c.rope_scaling.enabled()) j["rope_scaling"] = rope_scaling_to_hf_json(c);
    } else {
        j = {{"architectures", {"GPT2LMHeadModel"}},
             {"model_type", "gpt2"},
             {"n_embd", c.d_model},
             {"n_layer", c.n_layer},
             {"n_head", c.n_head},
             {"n_positions", c.max_seq},
             {"n_ctx", c.max_seq},
             {"vocab_size", c.vocab_size},
             {"n_inner", c.d_ff},
             {"layer_norm_epsilon", short_decimal(c.norm_eps)},
             {"activation_function", "gelu_new"},
             {"tie_word_embeddings", c.tie_embeddings}};
    }
    j["torch_dtype"] = o.dtype == DType::bf16 ? "bfloat16" : "float32";
    if (o.bos_token_id >= 0) j["bos_token_id"] = o.bos_token_id;
    if (o.eos_token_id >= 0) j["eos_token_id"] = o.eos_token_id;
    return j;
}

void fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

void write_file_durably(const std::string& path, const std::string& text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ZT_CHECK(fd >= 0, "export %s: cannot create: %s", path.c_str(), std::strerror(errno));
    const char* p = text.data();
    size_t n = text.size();
    int err = 0;
    while (n > 0 && !err) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
        } else {
            p += w;
            n -= size_t(w);
        }
    }
    if (!err && ::fsync(fd) != 0) err = errno;
    ::close(fd);
    ZT_CHECK(!err, "export %s: write failed: %s", path.c_str(), std::strerror(err));
}

// A directory removed with its contents unless release()d.
class TempTree {
  public:
    explicit TempTree(std::string path) : path_(std::move(path)) {}
    TempTree(const TempTree&) = delete;
    TempTree& operator=(const TempTree&) = delete;
    ~TempTree() {
        if (path_.empty()) return;
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    void release() { path_.clear(); }

  private:
    std::string path_;
};

// Streams one tensor (shape, layout order, at src) into the writer as the
// file stores it: transposed for Conv1D weights, converted to bf16 if asked.
class TensorEmitter {
  public:
    TensorEmitter(SafetensorsStreamWriter& w, DType dtype) : w_(w), dtype_(dtype) {}

    void emit(const std::string& name, const float* src, int64_t numel, bool transpose,
              const std::vector<int64_t>& shape) {
        if (!transpose) {
            for (int64_t e0 = 0; e0 < numel; e0 += kStageElements)
                put(name, src + e0, std::min(kStageElements, numel - e0));
            return;
        }
        // src is (R, K) = (out, in); the file holds (K, R): file row i is column i of src.
        const int64_t R = shape[0], K = shape[1];
        const int64_t rows = std::max<int64_t>(1, kStageElements / std::max<int64_t>(R, 1));
        for (int64_t i0 = 0; i0 < K; i0 += rows) {
            const int64_t i1 = std::min(K, i0 + rows);
            transposed_.resize(size_t((i1 - i0) * R));
            for (int64_t o = 0; o < R; ++o)
                for (int64_t i = i0; i < i1; ++i)
                    transposed_[size_t((i - i0) * R + o)] = src[o * K + i];
            put(name, transposed_.data(), (i1 - i0) * R);
        }
    }

  private:
    // Writes n floats of `name` in the file's dtype.
    void put(const std::string& name, const float* p, int64_t n) {
        if (dtype_ == DType::f32) {
            w_.write(name, p, n * 4);
            return;
        }
        bf16_bits_.resize(size_t(n));
        for (int64_t e = 0; e < n; ++e) bf16_bits_[size_t(e)] = f32_to_bf16(p[e]).bits;
        w_.write(name, bf16_bits_.data(), n * 2);
    }

    SafetensorsStreamWriter& w_;
    DType dtype_;
    std::vector<float> transposed_;    // (rows, R): file rows i0..i1 of a Conv1D weight
    std::vector<uint16_t> bf16_bits_;  // (<= kStageElements or R) the piece being written
};

// ---- import ----------------------------------------------------------------

struct Located {
    const SafetensorsFile* file = nullptr;
    const SafetensorsTensor* tensor = nullptr;
};

// The checkpoint's files and every tensor in them by name.
struct HfSources {
    std::vector<std::unique_ptr<SafetensorsFile>> files;
    std::map<std::string, Located> tensors;
    std::string where;  // for messages: the file, or the index
};

bool is_plain_file_name(const std::string& f) {
    return !f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
           f.find('\0') == std::string::npos;
}

HfSources open_sources(const std::string& hf_dir) {
    HfSources s;
    const std::string single = hf_dir + "/model.safetensors";
    const std::string index = hf_dir + "/model.safetensors.index.json";
    if (fs::exists(single)) {
        s.files.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(single)));
        for (const auto& t : s.files[0]->tensors()) s.tensors[t.name] = {s.files[0].get(), &t};
        s.where = single;
        return s;
    }
    ZT_CHECK(fs::exists(index),
             "Hugging Face folder %s has neither model.safetensors nor "
             "model.safetensors.index.json",
             hf_dir.c_str());
    s.where = index;
    const char* ix = index.c_str();
    json j;
    {
        std::ifstream in(index);
        ZT_CHECK(in.good(), "%s: cannot open", ix);
        try {
            j = json::parse(in);
        } catch (const json::exception& e) {
            ZT_FAIL("%s: not valid JSON: %s", ix, e.what());
        }
    }
    ZT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
             "%s: expected an object with a 'weight_map' object (tensor name -> file name)", ix);
    std::map<std::string, const SafetensorsFile*> by_file;
    for (auto& [name, file] : j["weight_map"].items()) {
        ZT_CHECK(file.is_string(), "%s: weight_map['%s'] is %s, expected a file name", ix,
                 name.c_str(), file.type_name());
        const std::string f = file.get<std::string>();
        ZT_CHECK(is_plain_file_name(f),
                 "%s: weight_map['%s'] is '%s', expected a file name inside %s (no '/')", ix,
                 name.c_str(), f.c_str(), hf_dir.c_str());
        auto it = by_file.find(f);
        if (it == by_file.end()) {
            const std::string path = hf_dir + "/" + f;
            ZT_CHECK(fs::exists(path), "%s: weight_map['%s'] names %s, which does not exist", ix,
                     name.c_str(), path.c_str());
            s.files.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(path)));
            it = by_file.emplace(f, s.files.back().get()).first;
        }
        const SafetensorsTensor* t = it->second->find(name);
        ZT_CHECK(t, "%s: weight_map puts tensor '%s' in %s, which has no such tensor", ix,
                 name.c_str(), it->second->path().c_str());
        s.tensors[name] = {it->second, t};
    }
    // A tensor the index does not map to its file is a stale or second copy.
    for (const auto& f : s.files)
        for (const auto& t : f->tensors()) {
            auto it = s.tensors.find(t.name);
            ZT_CHECK(it != s.tensors.end() && it->second.file == f.get(),
                     "%s: tensor '%s' in %s is not mapped to that file by weight_map", ix,
                     t.name.c_str(), f->path().c_str());
        }
    return s;
}

// HF stores these buffers beside the weights; they are derived, not learned.
bool is_harmless_extra(const ModelConfig& cfg, const std::string& name) {
    if (ends_with(name, ".rotary_emb.inv_freq")) return true;
    return cfg.arch == Arch::gpt2 &&
           (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"));
}

// Finds `name`, or for GPT-2 also the name without `transformer.`; refuses both at once.
const Located* find_tensor(const HfSources& s, const ModelConfig& cfg, const std::string& name,
                           std::string* found_as) {
    auto it = s.tensors.find(name);
    const std::string prefix = "transformer.";
    if (cfg.arch == Arch::gpt2 && name.compare(0, prefix.size(), prefix) == 0) {
        const std::string bare = name.substr(prefix.size());
        auto jt = s.tensors.find(bare);
        if (jt != s.tensors.end()) {
            ZT_CHECK(it == s.tensors.end(), "%s: tensor present twice, as '%s' and as '%s'",
                     s.where.c_str(), name.c_str(), bare.c_str());
            *found_as = bare;
            return &jt->second;
        }
    }
    if (it == s.tensors.end()) return nullptr;
    *found_as = name;
    return &it->second;
}

// Reads one tensor into out (numel floats, layout order), checking its shape.
void read_tensor(const ModelConfig& cfg, const Located& loc, const std::string& found_as,
                 const TensorSpec& t, float* out) {
    const std::vector<int64_t> want = hf_shape(cfg, t);
    ZT_CHECK(loc.tensor->shape == want, "%s: tensor '%s' has shape %s, expected %s",
             loc.file->path().c_str(), found_as.c_str(), shape_str(loc.tensor->shape).c_str(),
             shape_str(want).c_str());
    if (!is_conv1d_weight(cfg, t.name)) {
        loc.file->read_f32(found_as, out, t.numel);
        return;
    }
    std::vector<float> stored(size_t(t.numel));  // (K, R) as the file holds it
    loc.file->read_f32(found_as, stored.data(), t.numel);
    const int64_t R = t.shape[0], K = t.shape[1];
    for (int64_t o = 0; o < R; ++o)
        for (int64_t i = 0; i < K; ++i) out[o * K + i] = stored[size_t(i * R + o)];
}

}  // namespace

void export_hf(const ModelConfig& cfg, const ReadUnitFn& read_unit, const std::string& out_dir,
               const ExportOptions& options) {
    ZT_CHECK(options.dtype == DType::f32 || options.dtype == DType::bf16,
             "export %s: dtype %s is not supported (f32 or bf16)", out_dir.c_str(),
             dtype_name(options.dtype));
    const ModelLayout layout = model_layout(cfg);
    fs::path out = fs::path(out_dir).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();  // "dir/" names dir
    const char* od = out_dir.c_str();
    ZT_CHECK(!out.empty() && out.filename() != "." && out.filename() != "..",
             "export: output folder '%s' is not a folder name", od);
    std::error_code ec;
    if (fs::exists(out, ec)) {
        ZT_CHECK(fs::is_directory(out, ec), "export: output %s exists and is not a folder", od);
        ZT_CHECK(fs::is_empty(out, ec),
                 "export: output folder %s exists and is not empty; export refuses to mix files "
                 "into it (choose a new folder or remove it)",
                 od);
    }
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    fs::create_directories(parent, ec);
    ZT_CHECK(!ec, "export: cannot create %s: %s", parent.c_str(), ec.message().c_str());

    std::string templ = (parent / strprintf(".%s.tmp-XXXXXX", out.filename().c_str())).string();
    ZT_CHECK(::mkdtemp(templ.data()), "export: cannot create a temporary folder %s: %s",
             templ.c_str(), std::strerror(errno));
    TempTree tmp(templ);

    write_file_durably(tmp.path() + "/config.json", hf_config_json(cfg, options).dump(2) + "\n");

    const bool bf16 = options.dtype == DType::bf16;
    SafetensorsStreamWriter w(tmp.path() + "/model.safetensors");
    int64_t max_unit = 0;
    for (const UnitSpec& u : layout.units) {
        max_unit = std::max(max_unit, u.numel);
        for (const TensorSpec& t : u.tensors)
            w.declare(t.name, bf16 ? "BF16" : "F32", hf_shape(cfg, t));
    }
    w.set_metadata("format", "pt");  // transformers refuses safetensors files without it
    w.write_header();

    std::vector<float> unit_buf(static_cast<size_t>(max_unit));  // (max unit numel,) reused
    TensorEmitter emit(w, options.dtype);
    const int64_t esize = bf16 ? 2 : 4;
    int64_t bytes_done = 0;
    for (int u = 0; u < layout.n_units(); ++u) {
        read_unit(u, unit_buf.data());
        for (const TensorSpec& t : layout.units[size_t(u)].tensors)
            emit.emit(t.name, unit_buf.data() + t.offset, t.numel, is_conv1d_weight(cfg, t.name),
                      t.shape);
        bytes_done += esize * layout.units[size_t(u)].numel;
        if (options.progress)
            options.progress(u + 1, layout.n_units(), bytes_done, esize * layout.total_numel);
    }
    w.finish();
    fsync_dir(tmp.path());

    if (::rename(tmp.path().c_str(), out.c_str()) != 0)
        ZT_FAIL("export: cannot rename %s to %s: %s", tmp.path().c_str(), od, std::strerror(errno));
    tmp.release();
    fsync_dir(parent.string());
}

ModelConfig hf_model_config(const std::string& hf_dir) {
    return model_config_from_hf_json(hf_dir + "/config.json");
}

std::vector<float> read_hf_params(const std::string& hf_dir, const ModelConfig& cfg) {
    const ModelLayout layout = model_layout(cfg);
    const HfSources s = open_sources(hf_dir);
    std::vector<float> params(size_t(layout.total_numel));
    std::set<std::string> used;

    int64_t base = 0;
    for (const UnitSpec& u : layout.units) {
        for (const TensorSpec& t : u.tensors) {
            std::string found_as;
            const Located* loc = find_tensor(s, cfg, t.name, &found_as);
            ZT_CHECK(loc, "%s: missing tensor '%s' (expected shape %s)", s.where.c_str(),
                     t.name.c_str(), shape_str(hf_shape(cfg, t)).c_str());
            read_tensor(cfg, *loc, found_as, t, params.data() + base + t.offset);
            used.insert(found_as);
        }
        base += u.numel;
    }

    if (cfg.tie_embeddings) {
        std::string found_as;
        if (const Located* loc = find_tensor(s, cfg, "lm_head.weight", &found_as)) {
            const TensorSpec& emb = layout.units[0].tensors[0];  // wte / embed_tokens, (V, C)
            std::vector<float> head(size_t(emb.numel));
            read_tensor(cfg, *loc, found_as, emb, head.data());
            const float* e = params.data() + emb.offset;
            for (int64_t i = 0; i < emb.numel; ++i)
                ZT_CHECK(std::memcmp(&head[size_t(i)], &e[i], 4) == 0,
                         "%s: tensor '%s' differs from '%s' at element %lld (%g vs %g), but the "
                         "config ties the embeddings (tie_word_embeddings false loads it as an "
                         "untied head)",
                         loc->file->path().c_str(), found_as.c_str(), emb.name.c_str(),
                         (long long)i, double(head[size_t(i)]), double(e[i]));
            used.insert(found_as);
        }
    }

    std::string extras;
    int n_extra = 0;
    for (const auto& [name, loc] : s.tensors) {
        if (used.count(name) || is_harmless_extra(cfg, name)) continue;
        if (n_extra++ < 5)
            extras += strprintf("%s'%s' (in %s)", extras.empty() ? "" : ", ", name.c_str(),
                                loc.file->path().c_str());
    }
    ZT_CHECK(n_extra == 0,
             "%s: %d tensor(s) the %s model (%s) has no use for: %s%s; is the config right?",
             s.where.c_str(), n_extra, arch_name(cfg.arch), cfg.name.c_str(), extras.c_str(),
             n_extra > 5 ? ", ..." : "");
    return params;
}

}  // namespace zt
