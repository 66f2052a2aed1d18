// Hugging Face export and import: the streaming safetensors writer, bit-exact
// export/import round trips (LLaMA with GQA and GPT-2, tied and untied, F32
// and BF16, single file and sharded), one refusal per thing import must not
// accept, and interop: tests/hf/reference_model.py, a PyTorch model written
// from Hugging Face's definitions, reads the exported folder and must produce
// the logits Model::forward_logits produces.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ckpt/hf.h"
#include "ckpt/safetensors.h"
#include "core/check.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "model/config.h"
#include "model/layout.h"
#include "model/model.h"
#include "test_util.h"
#include "zero/engine.h"

namespace {

namespace fs = std::filesystem;
using namespace zt;
using zt_test::TempDir;

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// fn() must throw zt::Error whose message contains every fragment, so the test
// pins which check fired and that it names the tensor and the file.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one containing '" << fragments[0] << "'";
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const auto& f : fragments)
            EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' missing from: " << msg;
    }
}

// ---- streaming writer --------------------------------------------------------

TEST(HfStreamWriter, PiecesMatchTheInMemoryWriterByteForByte) {
    TempDir dir;
    std::vector<float> big(300000);  // 1.2 MB: larger than the writer's buffer
    for (size_t i = 0; i < big.size(); ++i) big[i] = float(i) * 0.5f - 7.0f;
    const uint16_t bf[5] = {0x3f80, 0xc000, 0x7f80, 0x0001, 0x8000};
    const int64_t ids[2] = {-3, int64_t(1) << 40};

    SafetensorsWriter ref;
    ref.add("a.weight", "F32", {600, 500}, big.data(), int64_t(big.size() * 4));
    ref.add("empty", "F32", {0, 3}, nullptr, 0);
    ref.add("b.bf", "BF16", {5}, bf, sizeof bf);
    ref.add("ids", "I64", {2}, ids, sizeof ids);
    ref.set_metadata("format", "pt");
    ref.write(dir / "ref.safetensors");

    SafetensorsStreamWriter w(dir / "stream.safetensors");
    w.declare("a.weight", "F32", {600, 500});
    w.declare("empty", "F32", {0, 3});
    w.declare("b.bf", "BF16", {5});
    w.declare("ids", "I64", {2});
    w.set_metadata("format", "pt");
    w.write_header();
    // Uneven pieces: tiny ones (buffered), one above the buffer size (written through).
    const char* p = reinterpret_cast<const char*>(big.data());
    w.write("a.weight", p, 3);
    w.write("a.weight", p + 3, 1000);
    w.write("a.weight", p + 1003, (1 << 20) + 17);
    w.write("a.weight", p + 1003 + (1 << 20) + 17, int64_t(big.size() * 4) - 1003 - (1 << 20) - 17);
    // "empty" has no bytes: the next tensor follows directly.
    w.write("b.bf", bf, 4);
    w.write("b.bf", reinterpret_cast<const char*>(bf) + 4, 6);
    w.write("ids", ids, sizeof ids);
    w.finish();

    EXPECT_FALSE(fs::exists(dir / "stream.safetensors.tmp"));
    EXPECT_EQ(read_bytes(dir / "stream.safetensors"), read_bytes(dir / "ref.safetensors"));
    SafetensorsFile f = SafetensorsFile::open(dir / "stream.safetensors");
    ASSERT_EQ(f.tensors().size(), 4u);
    std::vector<float> back(big.size());
    f.read_f32("a.weight", back.data(), int64_t(back.size()));
    EXPECT_EQ(std::memcmp(back.data(), big.data(), big.size() * 4), 0);
    EXPECT_EQ(std::memcmp(f.data(*f.find("ids")), ids, sizeof ids), 0);
    EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(HfStreamWriter, RefusesOutOfOrderOversizedAndIncompleteWrites) {
    TempDir dir;
    const std::string path = dir / "m.safetensors";
    const float x[8] = {};
    {
        SafetensorsStreamWriter w(path);
        w.declare("first", "F32", {2});
        w.declare("second", "F32", {3});
        expect_error([&] { w.declare("first", "F32", {1}); }, {"first", "declared twice"});
        expect_error([&] { w.write("first", x, 8); }, {path, "before write_header"});
        w.write_header();
        EXPECT_TRUE(fs::exists(path + ".tmp"));
        expect_error([&] { w.declare("third", "F32", {1}); }, {path, "third", "after the header"});
        expect_error([&] { w.write("second", x, 4); }, {path, "second", "'first' is incomplete"});
        w.write("first", x, 4);
        expect_error([&] { w.write("first", x, 8); }, {path, "first", "8-byte piece", "4 of 8"});
        w.write("first", x, 4);
        w.write("second", x, 8);
        expect_error([&] { w.finish(); }, {path, "second", "incomplete (8 of 12"});
        // Destroyed unfinished: the .tmp goes, nothing is published.
    }
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(HfStreamWriter, UnfinishedWriterLeavesTheOldFileInPlace) {
    TempDir dir;
    const std::string path = dir / "m.safetensors";
    std::ofstream(path) << "old";
    {
        SafetensorsStreamWriter w(path);
        w.declare("t", "F32", {4});
        w.write_header();
        const float x[2] = {1, 2};
        w.write("t", x, sizeof x);
    }
    EXPECT_EQ(read_bytes(path), "old");
    EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// ---- export / import -----------------------------------------------------------

// A single-process stage-0 engine holding a preset's parameters: init_params,
// then every tensor moved away from its init (matrices by N(0, 1/in), norm
// gains and biases by N(0, 0.01)), so that a swapped, transposed or dropped
// tensor shows: with the plain init every bias is 0 and every gain 1, and a
// mix-up among them would go unseen.
struct TinyModel {
    ModelConfig cfg;
    Engine engine;

    TinyModel(const std::string& preset, bool tied, uint64_t seed = 7)
        : cfg(with_tie(model_preset(preset), tied)),
          engine(cfg, EngineOptions{}, nullptr, nullptr) {
        engine.init_params(seed);
        for (int u = 0; u < engine.layout().n_units(); ++u) {
            const UnitSpec& us = engine.layout().units[size_t(u)];
            float* p = engine.unit_params(u);
            for (size_t t = 0; t < us.tensors.size(); ++t) {
                const TensorSpec& ts = us.tensors[t];
                const float scale =
                    ts.shape.size() == 2 ? 1.0f / std::sqrt(float(ts.shape[1])) : 0.1f;
                for (int64_t i = 0; i < ts.numel; ++i)
                    p[ts.offset + i] +=
                        scale * rng_normal(seed + 1, uint64_t(u) * 100 + t, uint64_t(i));
            }
        }
    }

    static ModelConfig with_tie(ModelConfig c, bool tied) {
        c.tie_embeddings = tied;
        return c;
    }

    const ModelLayout& layout() const { return engine.layout(); }

    // Exports through read_unit; records the units in the order they were read.
    void export_to(const std::string& out, const ExportOptions& opt = {},
                   std::vector<int>* calls = nullptr) {
        export_hf(
            cfg,
            [&](int u, float* dst) {
                if (calls) calls->push_back(u);
                std::memcpy(dst, engine.unit_params(u),
                            size_t(layout().units[size_t(u)].numel) * 4);
            },
            out, opt);
    }
};

struct RawTensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};

std::vector<RawTensor> load_raw(const std::string& path) {
    SafetensorsFile f = SafetensorsFile::open(path);
    std::vector<RawTensor> out;
    for (const auto& t : f.tensors()) {
        const char* p = static_cast<const char*>(f.data(t));
        out.push_back({t.name, t.dtype, t.shape, std::string(p, p + (t.end - t.begin))});
    }
    return out;
}

void save_raw(const std::string& path, const std::vector<RawTensor>& tensors) {
    SafetensorsWriter w;
    for (const auto& t : tensors)
        w.add(t.name, t.dtype, t.shape, t.bytes.data(), int64_t(t.bytes.size()));
    w.set_metadata("format", "pt");
    w.write(path);
}

// A copy of the exported folder `src` with its tensors replaced by `tensors`.
std::string make_folder(const std::string& dir, const std::string& src,
                        const std::vector<RawTensor>& tensors) {
    fs::create_directory(dir);
    fs::copy_file(src + "/config.json", dir + "/config.json");
    save_raw(dir + "/model.safetensors", tensors);
    return dir;
}

RawTensor& find_raw(std::vector<RawTensor>& ts, const std::string& name) {
    for (auto& t : ts)
        if (t.name == name) return t;
    throw std::runtime_error("test: no tensor " + name);
}

std::vector<float> engine_params(TinyModel& m) {
    std::vector<float> p(size_t(m.engine.numel()));
    std::memcpy(p.data(), m.engine.all_params(), p.size() * 4);
    return p;
}

void expect_bit_equal(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0) << what << " differs";
}

TEST(HfExport, RoundTripIsBitExactForEveryFamilyTiedAndUntied) {
    for (const char* preset : {"test-tiny", "test-tiny-gpt2"}) {
        for (bool tied : {false, true}) {
            SCOPED_TRACE(std::string(preset) + (tied ? " tied" : " untied"));
            TempDir dir;
            TinyModel m(preset, tied);
            std::vector<int> calls;
            const std::string out = dir / "hf";
            m.export_to(out, {}, &calls);

            // Streaming: each unit read exactly once, in order.
            std::vector<int> want_calls(size_t(m.layout().n_units()));
            for (size_t u = 0; u < want_calls.size(); ++u) want_calls[u] = int(u);
            EXPECT_EQ(calls, want_calls);

            EXPECT_EQ(fs::directory_iterator(dir.path())->path().filename(), "hf")
                << "a temporary folder was left beside the export";
            expect_bit_equal(read_hf_params(out, m.cfg), engine_params(m), "imported parameters");

            ModelConfig back = hf_model_config(out);
            EXPECT_EQ(back.arch, m.cfg.arch);
            EXPECT_EQ(back.vocab_size, m.cfg.vocab_size);
            EXPECT_EQ(back.d_model, m.cfg.d_model);
            EXPECT_EQ(back.n_layer, m.cfg.n_layer);
            EXPECT_EQ(back.n_head, m.cfg.n_head);
            EXPECT_EQ(back.n_kv_head, m.cfg.n_kv_head);
            EXPECT_EQ(back.d_ff, m.cfg.d_ff);
            EXPECT_EQ(back.max_seq, m.cfg.max_seq);
            EXPECT_EQ(back.norm_eps, m.cfg.norm_eps);
            EXPECT_EQ(back.rope_theta, m.cfg.rope_theta);
            EXPECT_EQ(back.tie_embeddings, tied);

            nlohmann::json conf = nlohmann::json::parse(read_bytes(out + "/config.json"));
            const bool llama = m.cfg.arch == Arch::llama;
            EXPECT_EQ(conf["architectures"][0], llama ? "LlamaForCausalLM" : "GPT2LMHeadModel");
            EXPECT_EQ(conf["model_type"], llama ? "llama" : "gpt2");
            EXPECT_EQ(conf["torch_dtype"], "float32");
            EXPECT_FALSE(conf.contains("bos_token_id"));
            if (!llama) {
                EXPECT_EQ(conf["activation_function"], "gelu_new");
            }

            SafetensorsFile f = SafetensorsFile::open(out + "/model.safetensors");
            EXPECT_EQ(f.metadata().at("format"), "pt");
            EXPECT_EQ(f.find("lm_head.weight") != nullptr, !tied);
            if (!llama) {
                // Conv1D: the file holds c_attn as (C, 3C), element [i][o] = our [o][i].
                const int64_t C = m.cfg.d_model;
                const auto* t = f.find("transformer.h.1.attn.c_attn.weight");
                ASSERT_NE(t, nullptr);
                EXPECT_EQ(t->shape, (std::vector<int64_t>{C, 3 * C}));
                std::vector<float> file(size_t(3 * C * C));
                f.read_f32(t->name, file.data(), int64_t(file.size()));
                const float* ours = m.engine.unit_params(2) +
                                    m.layout().units[2].tensor(t->name).offset;  // (3C, C)
                int mismatches = 0;
                for (int64_t o = 0; o < 3 * C; ++o)
                    for (int64_t i = 0; i < C; ++i)
                        mismatches += file[size_t(i * 3 * C + o)] != ours[o * C + i];
                EXPECT_EQ(mismatches, 0);
            }
        }
    }
}

TEST(HfExport, Bf16RoundsEveryParameterToNearestEven) {
    TempDir dir;
    TinyModel m("test-tiny-gpt2", false);
    ExportOptions opt;
    opt.dtype = DType::bf16;
    opt.bos_token_id = 1;
    opt.eos_token_id = 2;
    m.export_to(dir / "hf", opt);

    SafetensorsFile f = SafetensorsFile::open(dir / "hf/model.safetensors");
    for (const auto& t : f.tensors()) EXPECT_EQ(t.dtype, "BF16") << t.name;
    nlohmann::json conf = nlohmann::json::parse(read_bytes(dir / "hf/config.json"));
    EXPECT_EQ(conf["torch_dtype"], "bfloat16");
    EXPECT_EQ(conf["bos_token_id"], 1);
    EXPECT_EQ(conf["eos_token_id"], 2);

    std::vector<float> want = engine_params(m);
    for (float& x : want) x = bf16_to_f32(f32_to_bf16(x));
    expect_bit_equal(read_hf_params(dir / "hf", m.cfg), want, "bf16 import");

    opt.dtype = DType::f16;
    expect_error([&] { m.export_to(dir / "f16", opt); }, {"f16", "not supported"});
}

TEST(HfExport, RefusesANonEmptyFolderAndLeavesNothingWhenItFails) {
    TempDir dir;
    TinyModel m("test-tiny", false);

    const std::string busy = dir / "busy";
    fs::create_directory(busy);
    std::ofstream(busy + "/keep.txt") << "mine";
    expect_error([&] { m.export_to(busy); }, {busy, "not empty"});
    EXPECT_EQ(read_bytes(busy + "/keep.txt"), "mine");

    // A read_unit that fails half way (a missing rank shard, say).
    const std::string out = dir / "failed";
    expect_error(
        [&] {
            export_hf(
                m.cfg,
                [&](int u, float* dst) {
                    ZT_CHECK(u < 2, "test: unit %d unreadable", u);
                    std::memcpy(dst, m.engine.unit_params(u),
                                size_t(m.layout().units[size_t(u)].numel) * 4);
                },
                out);
        },
        {"unit 2 unreadable"});
    EXPECT_FALSE(fs::exists(out));
    int entries = 0;
    for (auto it = fs::directory_iterator(dir.path()); it != fs::directory_iterator(); ++it)
        ++entries;
    EXPECT_EQ(entries, 1) << "only 'busy' may remain: no half-written or temporary folder";

    // An existing empty folder is filled.
    const std::string empty = dir / "empty";
    fs::create_directory(empty);
    m.export_to(empty + "/");
    expect_bit_equal(read_hf_params(empty, m.cfg), engine_params(m), "export into an empty folder");
}

TEST(HfImport, RefusesMismatchedMissingAndExtraTensorsByName) {
    TempDir dir;
    TinyModel m("test-tiny", false);
    const std::string src = dir / "hf";
    m.export_to(src);
    const std::vector<RawTensor> base = load_raw(src + "/model.safetensors");
    const std::vector<float> want = engine_params(m);

    {  // k_proj is (NKV * D, C) = (48, 96); a (96, 96) one is an MHA checkpoint.
        auto ts = base;
        RawTensor& k = find_raw(ts, "model.layers.0.self_attn.k_proj.weight");
        k.shape = {96, 96};
        k.bytes.resize(96 * 96 * 4);
        const std::string d = make_folder(dir / "shape", src, ts);
        expect_error([&] { read_hf_params(d, m.cfg); },
                     {d + "/model.safetensors", "'model.layers.0.self_attn.k_proj.weight'",
                      "has shape (96, 96), expected (48, 96)"});
    }
    {
        auto ts = base;
        ts.erase(ts.begin() + 3);
        const std::string gone = base[3].name;
        const std::string d = make_folder(dir / "missing", src, ts);
        expect_error([&] { read_hf_params(d, m.cfg); }, {"missing tensor '" + gone + "'"});
    }
    {
        auto ts = base;
        ts.push_back({"model.layers.0.self_attn.q_norm.weight", "F32", {2}, std::string(8, '\0')});
        const std::string d = make_folder(dir / "extra", src, ts);
        expect_error([&] { read_hf_params(d, m.cfg); }, {"'model.layers.0.self_attn.q_norm.weight'",
                                                         d + "/model.safetensors", "no use for"});
    }
    {  // Rotary buffers are derived from the config: ignored.
        auto ts = base;
        ts.push_back(
            {"model.layers.1.self_attn.rotary_emb.inv_freq", "F32", {12}, std::string(48, '\0')});
        const std::string d = make_folder(dir / "inv_freq", src, ts);
        expect_bit_equal(read_hf_params(d, m.cfg), want, "with inv_freq buffers");
    }
    {  // A tensor in a dtype import does not convert.
        auto ts = base;
        RawTensor& n = find_raw(ts, "model.norm.weight");
        n.dtype = "I32";
        const std::string d = make_folder(dir / "dtype", src, ts);
        expect_error([&] { read_hf_params(d, m.cfg); }, {"'model.norm.weight'", "I32"});
    }
    {  // F16 is converted: a norm gain of exactly representable values.
        auto ts = base;
        RawTensor& n = find_raw(ts, "model.norm.weight");
        n.dtype = "F16";
        n.bytes.assign(size_t(m.cfg.d_model) * 2, '\0');
        const uint16_t h = 0x3e00;  // 1.5
        for (int i = 0; i < m.cfg.d_model; ++i) std::memcpy(&n.bytes[size_t(i) * 2], &h, 2);
        const std::string d = make_folder(dir / "f16", src, ts);
        std::vector<float> got = read_hf_params(d, m.cfg);
        const UnitSpec& head = m.layout().units.back();
        const int64_t at = m.engine.numel() - head.numel + head.tensor("model.norm.weight").offset;
        EXPECT_EQ(got[size_t(at)], 1.5f);
        EXPECT_EQ(got[size_t(at + m.cfg.d_model - 1)], 1.5f);
    }
    {  // The config must agree with the checkpoint: the untied file has an lm_head a tied model
       // has no use for.
        expect_error([&] { read_hf_params(src, TinyModel::with_tie(m.cfg, true)); },
                     {"lm_head.weight", "differs"});
    }
    {
        const std::string d = dir / "nothing";
        fs::create_directory(d);
        expect_error([&] { read_hf_params(d, m.cfg); }, {d, "neither model.safetensors"});
    }
}

TEST(HfImport, TiedLmHeadIsAcceptedOnlyWhenItEqualsTheEmbedding) {
    TempDir dir;
    TinyModel m("test-tiny", true);
    const std::string src = dir / "hf";
    m.export_to(src);
    auto ts = load_raw(src + "/model.safetensors");
    RawTensor head = find_raw(ts, "model.embed_tokens.weight");
    head.name = "lm_head.weight";
    ts.push_back(head);
    const std::string same = make_folder(dir / "same", src, ts);
    expect_bit_equal(read_hf_params(same, m.cfg), engine_params(m), "tied with an equal lm_head");

    float x;
    std::memcpy(&x, &ts.back().bytes[40], 4);
    x += 1.0f;
    std::memcpy(&ts.back().bytes[40], &x, 4);
    const std::string differs = make_folder(dir / "differs", src, ts);
    expect_error([&] { read_hf_params(differs, m.cfg); },
                 {differs + "/model.safetensors", "'lm_head.weight' differs", "element 10"});
}

TEST(HfImport, Gpt2AcceptsBareNamesAndIgnoresAttentionBuffers) {
    TempDir dir;
    TinyModel m("test-tiny-gpt2", true);
    const std::string src = dir / "hf";
    m.export_to(src);
    const std::vector<RawTensor> base = load_raw(src + "/model.safetensors");
    const std::vector<float> want = engine_params(m);

    // OpenAI-style: no "transformer." prefix, with the causal-mask buffers.
    auto bare = base;
    for (auto& t : bare) t.name = t.name.substr(std::string("transformer.").size());
    for (int i = 0; i < m.cfg.n_layer; ++i) {
        const std::string p = "h." + std::to_string(i) + ".attn.";
        bare.push_back({p + "bias", "F32", {1, 1, 4, 4}, std::string(64, '\0')});
        bare.push_back({p + "masked_bias", "F32", {}, std::string(4, '\0')});
    }
    expect_bit_equal(read_hf_params(make_folder(dir / "bare", src, bare), m.cfg), want,
                     "bare GPT-2 names");

    // The same tensor under both names is ambiguous.
    auto twice = base;
    RawTensor wte = find_raw(twice, "transformer.wte.weight");
    wte.name = "wte.weight";
    twice.push_back(wte);
    const std::string d = make_folder(dir / "twice", src, twice);
    expect_error([&] { read_hf_params(d, m.cfg); },
                 {"'transformer.wte.weight'", "'wte.weight'", "twice"});

    // A Conv1D weight saved in our (out, in) layout is refused, not silently transposed.
    auto wrong = base;
    RawTensor& fc = find_raw(wrong, "transformer.h.0.mlp.c_fc.weight");
    fc.shape = {fc.shape[1], fc.shape[0]};
    const std::string w = make_folder(dir / "wrong", src, wrong);
    expect_error([&] { read_hf_params(w, m.cfg); },
                 {"'transformer.h.0.mlp.c_fc.weight'", "has shape (384, 96), expected (96, 384)"});
}

// Splits the exported tensors over two shard files with an index, HF style.
struct Sharded {
    std::string dir;
    std::map<std::string, std::string> weight_map;
    void write_index(const nlohmann::json& j) const {
        std::ofstream(dir + "/model.safetensors.index.json") << j.dump();
    }
};

Sharded make_sharded(const std::string& dir, const std::string& src) {
    auto ts = load_raw(src + "/model.safetensors");
    std::vector<RawTensor> a(ts.begin(), ts.begin() + long(ts.size() / 2)),
        b(ts.begin() + long(ts.size() / 2), ts.end());
    fs::create_directory(dir);
    fs::copy_file(src + "/config.json", dir + "/config.json");
    save_raw(dir + "/model-00001-of-00002.safetensors", a);
    save_raw(dir + "/model-00002-of-00002.safetensors", b);
    Sharded s{dir, {}};
    for (const auto& t : a) s.weight_map[t.name] = "model-00001-of-00002.safetensors";
    for (const auto& t : b) s.weight_map[t.name] = "model-00002-of-00002.safetensors";
    s.write_index({{"metadata", {{"total_size", 0}}}, {"weight_map", s.weight_map}});
    return s;
}

TEST(HfImport, ShardedIndexIsReadAndABadOneRefused) {
    TempDir dir;
    TinyModel m("test-tiny", false);
    const std::string src = dir / "hf";
    m.export_to(src);
    const Sharded s = make_sharded(dir / "sharded", src);
    expect_bit_equal(read_hf_params(s.dir, m.cfg), engine_params(m), "sharded import");

    const std::string ix = s.dir + "/model.safetensors.index.json";
    const std::string moved = "model.layers.1.mlp.down_proj.weight";
    ASSERT_EQ(s.weight_map.at(moved), "model-00002-of-00002.safetensors");
    auto refused = [&](const nlohmann::json& j, const std::vector<std::string>& fragments) {
        s.write_index(j);
        expect_error([&] { read_hf_params(s.dir, m.cfg); }, fragments);
    };
    std::ofstream(ix) << "{\"weight_map\": {";
    expect_error([&] { read_hf_params(s.dir, m.cfg); }, {ix, "not valid JSON"});
    refused({{"metadata", {}}}, {ix, "'weight_map'"});

    nlohmann::json wm = s.weight_map;
    wm[moved] = 3;
    refused({{"weight_map", wm}}, {ix, moved, "expected a file name"});
    wm[moved] = "../hf/model.safetensors";
    refused({{"weight_map", wm}}, {ix, moved, "no '/'"});
    wm[moved] = "model-00003-of-00002.safetensors";
    refused({{"weight_map", wm}}, {ix, moved, "does not exist"});
    wm[moved] = "model-00001-of-00002.safetensors";
    refused({{"weight_map", wm}}, {ix, moved, "has no such tensor"});
    wm.erase(moved);
    refused({{"weight_map", wm}}, {ix, moved, "not mapped to that file"});
}

// ---- interop with an independent PyTorch model ------------------------------------

bool python_torch_available(std::string* why) {
    static int ok = -1;
    static std::string reason;
    if (ok < 0) {
        if (!fs::exists("/usr/bin/python3")) {
            ok = 0;
            reason = "/usr/bin/python3 is missing";
        } else {
            auto r = zt_test::run_command("/usr/bin/python3 -c 'import torch, numpy'");
            ok = r.exit_code == 0;
            if (!ok) reason = "/usr/bin/python3 cannot import torch and numpy: " + r.output;
        }
    }
    *why = reason;
    return ok == 1;
}

// Worst over positions of ||ours - ref|| / ||ref|| for one position's logits.
double worst_row_error(const std::vector<float>& ours, const std::vector<float>& ref, int V) {
    double worst = 0;
    for (size_t r = 0; r < ours.size() / size_t(V); ++r) {
        const double e = zt_test::rel_error(ours.data() + r * V, ref.data() + r * V, size_t(V));
        if (!(e <= worst)) worst = e;  // keeps a NaN
    }
    return worst;
}

void run_interop(const std::string& preset, bool tied) {
    std::string why;
    if (!python_torch_available(&why)) GTEST_SKIP() << why;
    constexpr int kB = 2, kT = 20;
    TinyModel m(preset, tied, 11);
    Model model(m.cfg, kB, kT, nullptr);
    std::vector<int32_t> tokens(size_t(kB) * kT);
    Rng rng(3);
    for (auto& t : tokens) t = int32_t(rng.below(uint64_t(m.cfg.vocab_size)));
    std::vector<float> logits(tokens.size() * size_t(m.cfg.vocab_size));
    model.forward_logits(m.engine, tokens.data(), logits.data());

    TempDir dir;
    m.export_to(dir / "hf");
    const std::vector<float> ref = zt_test::hf_reference_logits(dir / "hf", dir.path(), tokens, kB);
    ASSERT_EQ(ref.size(), logits.size());

    // fp32 engine against a float64 reference on the exported F32 weights (exact):
    // rounding of ~6e-8 per operation over 2 layers and dot products of <= 384
    // terms stays near 1e-6; a transposed, permuted or misnamed tensor (or RoPE
    // pairs in the wrong convention) moves the logits by O(1). 1e-5 separates the two.
    const double err = worst_row_error(logits, ref, m.cfg.vocab_size);
    EXPECT_TRUE(err <= 1e-5) << preset << (tied ? " tied" : " untied")
                             << ": worst per-position relative error of the logits " << err;
    ::testing::Test::RecordProperty("worst_rel_error", strprintf("%.3g", err));
}

TEST(HfInterop, LlamaGqaUntiedMatchesPyTorch) {
    run_interop("test-tiny", false);
}
TEST(HfInterop, LlamaGqaTiedMatchesPyTorch) {
    run_interop("test-tiny", true);
}
TEST(HfInterop, Gpt2TiedMatchesPyTorch) {
    run_interop("test-tiny-gpt2", true);
}
TEST(HfInterop, Gpt2UntiedMatchesPyTorch) {
    run_interop("test-tiny-gpt2", false);
}

}  // namespace
