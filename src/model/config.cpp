#include "model/config.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace zt {

const char* arch_name(Arch a) {
    return a == Arch::llama ? "llama" : "gpt2";
}

namespace {

ModelConfig llama(const char* name, int V, int C, int L, int NH, int NKV, int H, int max_seq,
                  float theta, bool tied) {
    ModelConfig c;
    c.name = name;
    c.arch = Arch::llama;
    c.vocab_size = V;
    c.d_model = C;
    c.n_layer = L;
    c.n_head = NH;
    c.n_kv_head = NKV;
    c.d_ff = H;
    c.max_seq = max_seq;
    c.norm_eps = 1e-5f;
    c.rope_theta = theta;
    c.tie_embeddings = tied;
    return c;
}

// Llama 3.1/3.2's frequency rescaling: low 1, high 4 over an original context of 8192.
ModelConfig llama3_scaled(ModelConfig c, float factor) {
    c.rope_scaling = RopeScaling{factor, 1.0f, 4.0f, 8192};
    return c;
}

ModelConfig gpt2(const char* name, int C, int L, int NH) {
    ModelConfig c;
    c.name = name;
    c.arch = Arch::gpt2;
    c.vocab_size = 50257;
    c.d_model = C;
    c.n_layer = L;
    c.n_head = NH;
    c.n_kv_head = NH;
    c.d_ff = 4 * C;
    c.max_seq = 1024;
    c.norm_eps = 1e-5f;
    c.tie_embeddings = true;
    return c;
}

std::vector<ModelConfig> presets() {
    return {
        // For tests: ~250K parameters, GQA (4 query heads share 2 kv heads).
        llama("test-tiny", 256, 96, 2, 4, 2, 256, 256, 10000.0f, false),
        // The gpt2 twin of test-tiny, for golden tests of the GPT-2 path.
        [] {
            ModelConfig c = gpt2("test-tiny-gpt2", 96, 2, 4);
            c.vocab_size = 256;
            c.max_seq = 256;
            return c;
        }(),
        llama("tiny", 32000, 512, 8, 8, 8, 1792, 2048, 10000.0f, true),         // ~46.8M
        llama("small", 32000, 1024, 20, 16, 16, 2752, 2048, 10000.0f, false),   // ~318.5M
        llama("medium", 32000, 2048, 24, 32, 32, 5504, 2048, 10000.0f, false),  // ~1.34B
        gpt2("gpt2-124m", 768, 12, 12),
        gpt2("gpt2-350m", 1024, 24, 16),
        gpt2("gpt2-774m", 1280, 36, 20),
        gpt2("gpt2-1558m", 1600, 48, 25),
        // Llama-3.2-1B, with its rope_scaling (llama3: factor 32, low 1, high 4, original 8192).
        llama3_scaled(llama("llama-1b", 128256, 2048, 16, 32, 8, 8192, 131072, 500000.0f, true),
                      32.0f),
        // Llama-2-7B.
        llama("llama-7b", 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f, false),
        // Llama-3.1-8B, with its rope_scaling (llama3: factor 8, low 1, high 4, original 8192).
        llama3_scaled(llama("llama-8b", 128256, 4096, 32, 32, 8, 14336, 131072, 500000.0f, false),
                      8.0f),
    };
}

// The shape bounds every model config is held to: far above any model this
// engine can train, low enough that sizes computed from them fit in 64 bits
// and a wrapped or absurd value is refused before anything is allocated.
constexpr int64_t kMaxLayers = 4096, kMaxWidth = int64_t(1) << 17, kMaxHeads = 4096;
constexpr int64_t kMaxFfn = int64_t(1) << 20, kMaxVocab = int64_t(1) << 24;
constexpr int64_t kMaxPositions = int64_t(1) << 22;

// An integer field read in 64 bits and range-checked before it is narrowed.
int json_int(const nlohmann::json& v, const std::string& source, const char* key, int64_t lo,
             int64_t hi) {
    ZT_CHECK(v.is_number_integer(), "%s: model config field '%s' must be an integer",
             source.c_str(), key);
    const bool too_big = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi);
    const int64_t x = too_big ? hi : v.get<int64_t>();
    ZT_CHECK(!too_big && x >= lo && x <= hi,
             "%s: model config field '%s' is %s: expected an integer from %lld to %lld",
             source.c_str(), key, v.dump().c_str(), (long long)lo, (long long)hi);
    return int(x);
}

// The upper bound of a shape field by its config names (HF's or ours).
int64_t field_bound(const std::string& k) {
    if (k == "num_hidden_layers" || k == "n_layer") return kMaxLayers;
    if (k == "hidden_size" || k == "n_embd" || k == "d_model" || k == "head_dim") return kMaxWidth;
    if (k == "num_attention_heads" || k == "n_head" || k == "num_key_value_heads" ||
        k == "n_kv_head")
        return kMaxHeads;
    if (k == "intermediate_size" || k == "n_inner" || k == "d_ff") return kMaxFfn;
    if (k == "vocab_size") return kMaxVocab;
    return kMaxPositions;  // n_positions, max_position_embeddings, max_seq
}

// The shortest decimal that reads back as f (1e-05, not 9.999999747378752e-06).
double shortest_decimal(float f) {
    char buf[32];
    for (int digits = 1; digits <= 9; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, double(f));
        if (std::strtof(buf, nullptr) == f) break;
    }
    return std::strtod(buf, nullptr);
}

// rope_scaling, in Hugging Face's field names, from config.json or our own
// record. Only rope_type llama3 changes the frequencies; "default" is none.
RopeScaling read_rope_scaling(const nlohmann::json& v, const std::string& source) {
    if (v.is_null()) return {};
    const char* src = source.c_str();
    ZT_CHECK(v.is_object(), "%s: 'rope_scaling' must be an object or null, got %s", src,
             v.dump().c_str());
    std::string type;
    for (const char* k : {"rope_type", "type"}) {
        if (!v.contains(k)) continue;
        ZT_CHECK(v[k].is_string(), "%s: rope_scaling.%s must be a string, got %s", src, k,
                 v[k].dump().c_str());
        ZT_CHECK(type.empty() || type == v[k].get<std::string>(),
                 "%s: rope_scaling.rope_type '%s' and rope_scaling.type '%s' disagree", src,
                 type.c_str(), v[k].get<std::string>().c_str());
        type = v[k].get<std::string>();
    }
    ZT_CHECK(!type.empty(), "%s: rope_scaling has no 'rope_type' (llama3 is supported)", src);
    if (type == "default") {
        for (auto it = v.begin(); it != v.end(); ++it)
            ZT_CHECK(it.key() == "rope_type" || it.key() == "type",
                     "%s: rope_scaling.%s is not read with rope_type 'default'", src,
                     it.key().c_str());
        return {};
    }
    ZT_CHECK(type == "llama3",
             "%s: rope_scaling.rope_type '%s' is not supported: zerotrain implements llama3 "
             "(Llama 3.1/3.2) only, and would compute different frequencies",
             src, type.c_str());
    auto number = [&](const char* k) -> float {
        ZT_CHECK(v.contains(k), "%s: rope_scaling (llama3) has no '%s'", src, k);
        ZT_CHECK(v[k].is_number(), "%s: rope_scaling.%s must be a number, got %s", src, k,
                 v[k].dump().c_str());
        const double x = v[k].get<double>();
        ZT_CHECK(std::isfinite(x) && x > 0 && x < 1e30,
                 "%s: rope_scaling.%s is %s: must be positive", src, k, v[k].dump().c_str());
        return float(x);
    };
    RopeScaling r;
    r.factor = number("factor");
    r.low_freq_factor = number("low_freq_factor");
    r.high_freq_factor = number("high_freq_factor");
    ZT_CHECK(v.contains("original_max_position_embeddings"),
             "%s: rope_scaling (llama3) has no 'original_max_position_embeddings'", src);
    r.original_max_position =
        json_int(v["original_max_position_embeddings"], source,
                 "rope_scaling.original_max_position_embeddings", 1, kMaxPositions);
    for (auto it = v.begin(); it != v.end(); ++it) {
        const std::string& k = it.key();
        ZT_CHECK(k == "rope_type" || k == "type" || k == "factor" || k == "low_freq_factor" ||
                     k == "high_freq_factor" || k == "original_max_position_embeddings",
                 "%s: rope_scaling.%s is not a field of rope_type llama3 (factor, "
                 "low_freq_factor, high_freq_factor, original_max_position_embeddings)",
                 src, k.c_str());
    }
    ZT_CHECK(r.factor >= 1, "%s: rope_scaling.factor %g: llama3 scaling needs a factor >= 1", src,
             double(r.factor));
    ZT_CHECK(r.high_freq_factor > r.low_freq_factor,
             "%s: rope_scaling.high_freq_factor %g must exceed low_freq_factor %g", src,
             double(r.high_freq_factor), double(r.low_freq_factor));
    return r;
}

// config.json fields that change nothing zerotrain computes: token ids, the
// storage dtype, generation defaults, transformers' own bookkeeping.
bool is_harmless_hf_field(const std::string& k) {
    static const char* names[] = {
        "architectures", "torch_dtype", "transformers_version", "use_cache", "bos_token_id",
        "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
        "initializer_range", "_name_or_path", "_commit_hash", "_attn_implementation_autoset",
        "tokenizer_class", "task_specific_params", "id2label", "label2id", "return_dict",
        "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
        "tf_legacy_loss", "problem_type", "finetuning_task", "prefix", "is_decoder",
        "chunk_size_feed_forward", "max_length", "min_length", "do_sample", "early_stopping",
        "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
        "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
        "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
        "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
        "begin_suppress_tokens",
        // LLaMA: how the original matmuls were split across devices (same math).
        "pretraining_tp",
        // GPT-2: n_ctx is n_positions' old name; summary_* configure GPT2DoubleHeadsModel's
        // extra head; reorder_and_upcast_attn only upcasts attention to fp32.
        "n_ctx", "summary_type", "summary_use_proj", "summary_activation", "summary_proj_to_labels",
        "summary_first_dropout", "reorder_and_upcast_attn"};
    for (const char* n : names)
        if (k == n) return true;
    return false;
}

}  // namespace

std::vector<std::string> model_preset_names() {
    std::vector<std::string> names;
    for (const auto& p : presets()) names.push_back(p.name);
    return names;
}

bool is_model_preset(const std::string& name) {
    for (const auto& p : presets())
        if (p.name == name) return true;
    return false;
}

ModelConfig model_preset(const std::string& name) {
    for (const auto& p : presets())
        if (p.name == name) return p;
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    ZT_FAIL("unknown model preset '%s'; known presets: %s (or pass a Hugging Face config.json)",
            name.c_str(), known.c_str());
}

void validate_model_config(const ModelConfig& c) {
    const char* n = c.name.c_str();
    ZT_CHECK(c.vocab_size > 0, "model %s: vocab_size must be positive, got %d", n, c.vocab_size);
    ZT_CHECK(c.d_model > 0, "model %s: hidden size must be positive, got %d", n, c.d_model);
    ZT_CHECK(c.n_layer > 0, "model %s: number of layers must be positive, got %d", n, c.n_layer);
    ZT_CHECK(c.n_head > 0, "model %s: number of attention heads must be positive, got %d", n,
             c.n_head);
    ZT_CHECK(c.n_kv_head > 0, "model %s: number of key/value heads must be positive, got %d", n,
             c.n_kv_head);
    ZT_CHECK(c.d_ff > 0, "model %s: intermediate size must be positive, got %d", n, c.d_ff);
    ZT_CHECK(c.max_seq > 0, "model %s: max_position_embeddings must be positive, got %d", n,
             c.max_seq);
    ZT_CHECK(c.d_model % c.n_head == 0, "model %s: hidden size %d is not divisible by %d heads", n,
             c.d_model, c.n_head);
    ZT_CHECK(c.n_head % c.n_kv_head == 0,
             "model %s: %d attention heads are not a multiple of %d key/value heads", n, c.n_head,
             c.n_kv_head);
    ZT_CHECK(c.arch != Arch::gpt2 || c.n_kv_head == c.n_head,
             "model %s: GPT-2 has no grouped-query attention (n_kv_head %d != n_head %d)", n,
             c.n_kv_head, c.n_head);
    ZT_CHECK(c.arch != Arch::llama || c.head_dim() % 2 == 0,
             "model %s: RoPE needs an even head dimension, got %d", n, c.head_dim());
    ZT_CHECK(c.norm_eps > 0, "model %s: norm epsilon must be positive, got %g", n,
             double(c.norm_eps));
    ZT_CHECK(c.rope_theta > 0, "model %s: rope_theta must be positive, got %g", n,
             double(c.rope_theta));
    const RopeScaling& rs = c.rope_scaling;
    ZT_CHECK(!rs.enabled() || c.arch == Arch::llama,
             "model %s: rope_scaling on a GPT-2 model, which has no RoPE", n);
    ZT_CHECK(
        !rs.enabled() || (std::isfinite(rs.factor) && rs.factor >= 1 && rs.low_freq_factor > 0 &&
                          rs.high_freq_factor > rs.low_freq_factor && rs.original_max_position > 0),
        "model %s: llama3 rope_scaling needs factor >= 1, 0 < low_freq_factor < "
        "high_freq_factor and original_max_position_embeddings > 0 (got %g, %g, %g, %d)",
        n, double(rs.factor), double(rs.low_freq_factor), double(rs.high_freq_factor),
        rs.original_max_position);
    const std::pair<const char*, std::pair<int64_t, int64_t>> bounds[] = {
        {"number of layers", {c.n_layer, kMaxLayers}},
        {"hidden size", {c.d_model, kMaxWidth}},
        {"attention heads", {c.n_head, kMaxHeads}},
        {"key/value heads", {c.n_kv_head, kMaxHeads}},
        {"intermediate size", {c.d_ff, kMaxFfn}},
        {"vocab_size", {c.vocab_size, kMaxVocab}},
        {"max_position_embeddings", {c.max_seq, kMaxPositions}}};
    for (const auto& [what, vb] : bounds)
        ZT_CHECK(vb.first <= vb.second, "model %s: %s %lld is above the bound %lld", n, what,
                 (long long)vb.first, (long long)vb.second);
}

ModelConfig model_config_from_hf_json(const std::string& path) {
    std::ifstream in(path);
    ZT_CHECK(in.good(), "cannot open model config '%s'", path.c_str());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
        ZT_FAIL("model config '%s' is not valid JSON: %s", path.c_str(), e.what());
    }
    ZT_CHECK(j.is_object(), "model config '%s' must be a JSON object", path.c_str());
    const std::string source = "model config '" + path + "'";
    const char* src = source.c_str();
    std::set<std::string> read;  // the fields this function has looked at
    auto has = [&](const char* k) {
        read.insert(k);
        return j.contains(k) && !j[k].is_null();
    };
    auto get_int = [&](std::initializer_list<const char*> keys, int fallback,
                       bool required) -> int {
        int value = fallback;
        bool found = false;
        for (const char* k : keys) {
            if (!has(k) || found) continue;
            value = json_int(j[k], source, k, 1, field_bound(k));
            found = true;
        }
        ZT_CHECK(found || !required, "%s: missing field '%s'", src, *keys.begin());
        return value;
    };
    auto get_float = [&](const char* k, float fallback) -> float {
        if (!has(k)) return fallback;
        ZT_CHECK(j[k].is_number(), "%s: field '%s' must be a number", src, k);
        return j[k].get<float>();
    };
    auto get_bool = [&](const char* k, bool fallback) -> bool {
        if (!has(k)) return fallback;
        ZT_CHECK(j[k].is_boolean(), "%s: field '%s' must be true or false, got %s", src, k,
                 j[k].dump().c_str());
        return j[k].get<bool>();
    };
    auto get_string = [&](const char* k, const char* fallback) -> std::string {
        if (!has(k)) return fallback;
        ZT_CHECK(j[k].is_string(), "%s: field '%s' must be a string, got %s", src, k,
                 j[k].dump().c_str());
        return j[k].get<std::string>();
    };
    // A field whose other values would change the math: refused by name.
    auto require_value = [&](const char* k, bool ok, const char* why) {
        ZT_CHECK(ok, "%s: %s %s is not supported: %s", src, k, j[k].dump().c_str(), why);
    };

    ZT_CHECK(has("model_type"),
             "%s: no 'model_type' field: expected \"llama\" or \"gpt2\" (Hugging Face's "
             "config.json names the model family there)",
             src);
    const std::string model_type = get_string("model_type", "");
    ZT_CHECK(model_type == "gpt2" || model_type == "llama",
             "%s: model_type '%s' is not supported (llama or gpt2)", src, model_type.c_str());
    ModelConfig c;
    c.name = path;
    std::vector<std::string> dropouts;  // nonzero dropout probabilities, reported
    auto note_dropout = [&](const char* k) {
        if (get_float(k, 0.0f) != 0.0f)
            dropouts.push_back(strprintf("%s %s", k, j[k].dump().c_str()));
    };
    if (model_type == "gpt2") {
        c.arch = Arch::gpt2;
        c.vocab_size = get_int({"vocab_size"}, 0, true);
        c.d_model = get_int({"n_embd", "hidden_size"}, 0, true);
        c.n_layer = get_int({"n_layer", "num_hidden_layers"}, 0, true);
        c.n_head = get_int({"n_head", "num_attention_heads"}, 0, true);
        c.n_kv_head = c.n_head;
        c.d_ff = get_int({"n_inner", "intermediate_size"}, 4 * c.d_model, false);
        c.max_seq = get_int({"n_positions", "max_position_embeddings"}, 1024, false);
        c.norm_eps = get_float("layer_norm_epsilon", 1e-5f);
        c.tie_embeddings = get_bool("tie_word_embeddings", true);
        for (const char* k : {"activation_function", "hidden_act"}) {
            const std::string act = get_string(k, "gelu_new");
            require_value(k, act == "gelu_new" || act == "gelu_pytorch_tanh",
                          "zerotrain's GPT-2 MLP uses the tanh-approximated GELU (gelu_new, "
                          "gelu_pytorch_tanh)");
        }
        if (has("scale_attn_weights"))
            require_value("scale_attn_weights", get_bool("scale_attn_weights", true),
                          "attention scores are always scaled by 1/sqrt(head_dim)");
        if (has("scale_attn_by_inverse_layer_idx"))
            require_value("scale_attn_by_inverse_layer_idx",
                          !get_bool("scale_attn_by_inverse_layer_idx", false),
                          "attention scores are not scaled by the layer index");
        if (has("rope_scaling"))
            require_value("rope_scaling", false, "GPT-2 has learned positions, no RoPE");
        for (const char* k : {"attn_pdrop", "embd_pdrop", "resid_pdrop"}) note_dropout(k);
    } else {
        c.arch = Arch::llama;
        c.vocab_size = get_int({"vocab_size"}, 0, true);
        c.d_model = get_int({"hidden_size"}, 0, true);
        c.n_layer = get_int({"num_hidden_layers"}, 0, true);
        c.n_head = get_int({"num_attention_heads"}, 0, true);
        c.n_kv_head = get_int({"num_key_value_heads"}, c.n_head, false);
        c.d_ff = get_int({"intermediate_size"}, 0, true);
        c.max_seq = get_int({"max_position_embeddings"}, 2048, false);
        c.norm_eps = get_float("rms_norm_eps", 1e-5f);
        c.rope_theta = get_float("rope_theta", 10000.0f);
        c.tie_embeddings = get_bool("tie_word_embeddings", false);
        if (has("head_dim")) {
            const int head_dim = json_int(j["head_dim"], source, "head_dim", 1, kMaxWidth);
            ZT_CHECK(int64_t(head_dim) * c.n_head == c.d_model,
                     "%s: head_dim %d is not supported: zerotrain's heads are hidden_size / "
                     "num_attention_heads = %d / %d wide",
                     src, head_dim, c.d_model, c.n_head);
        }
        const std::string act = get_string("hidden_act", "silu");
        require_value("hidden_act", act == "silu",
                      "zerotrain's LLaMA MLP is SwiGLU with silu (hidden_act \"silu\")");
        for (const char* k : {"attention_bias", "mlp_bias"})
            if (has(k))
                require_value(k, !get_bool(k, false),
                              "zerotrain's LLaMA projections have no biases");
        if (has("rope_scaling")) c.rope_scaling = read_rope_scaling(j["rope_scaling"], source);
        note_dropout("attention_dropout");
    }
    for (const char* k : {"is_encoder_decoder", "add_cross_attention"})
        if (has(k)) require_value(k, !get_bool(k, false), "zerotrain trains decoder-only models");
    if (has("quantization_config"))
        require_value("quantization_config", false, "zerotrain reads unquantized weights only");
    if (has("pruned_heads"))
        require_value("pruned_heads", j["pruned_heads"].is_object() && j["pruned_heads"].empty(),
                      "every layer keeps all its heads");
    if (!dropouts.empty()) {
        std::string list;
        for (const auto& d : dropouts) list += (list.empty() ? "" : ", ") + d;
        std::fprintf(stderr,
                     "zerotrain: warning: %s: %s: zerotrain trains without dropout, so these "
                     "are not applied\n",
                     src, list.c_str());
    }
    std::string unread;
    for (auto it = j.begin(); it != j.end(); ++it)
        if (!read.count(it.key()) && !is_harmless_hf_field(it.key()))
            unread += (unread.empty() ? "'" : ", '") + it.key() + "'";
    if (!unread.empty())
        std::fprintf(stderr,
                     "zerotrain: warning: %s: field(s) %s not known to zerotrain and not read; "
                     "check that they do not change the model\n",
                     src, unread.c_str());
    validate_model_config(c);
    return c;
}

ModelConfig resolve_model(const std::string& preset_or_file) {
    if (is_model_preset(preset_or_file)) return model_preset(preset_or_file);
    bool looks_like_file = preset_or_file.find(".json") != std::string::npos ||
                           preset_or_file.find('/') != std::string::npos;
    if (looks_like_file) return model_config_from_hf_json(preset_or_file);
    return model_preset(preset_or_file);  // fails with the list of presets
}

nlohmann::json rope_scaling_to_hf_json(const ModelConfig& c) {
    const RopeScaling& r = c.rope_scaling;
    if (!r.enabled()) return nullptr;
    nlohmann::json j = nlohmann::json::object();
    j["rope_type"] = "llama3";
    j["factor"] = shortest_decimal(r.factor);
    j["low_freq_factor"] = shortest_decimal(r.low_freq_factor);
    j["high_freq_factor"] = shortest_decimal(r.high_freq_factor);
    j["original_max_position_embeddings"] = r.original_max_position;
    return j;
}

nlohmann::ordered_json model_config_to_json(const ModelConfig& c) {
    return {{"name", c.name},
            {"arch", arch_name(c.arch)},
            {"vocab_size", c.vocab_size},
            {"d_model", c.d_model},
            {"n_layer", c.n_layer},
            {"n_head", c.n_head},
            {"n_kv_head", c.n_kv_head},
            {"d_ff", c.d_ff},
            {"max_seq", c.max_seq},
            {"norm_eps", c.norm_eps},
            {"rope_theta", c.rope_theta},
            {"rope_scaling", rope_scaling_to_hf_json(c)},
            {"tie_embeddings", c.tie_embeddings}};
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source) {
    ZT_CHECK(j.is_object(), "%s: the model config must be a JSON object", source.c_str());
    auto field = [&](const char* k) -> const nlohmann::json& {
        ZT_CHECK(j.contains(k), "%s: model config has no field '%s'", source.c_str(), k);
        return j[k];
    };
    auto get_int = [&](const char* k) { return json_int(field(k), source, k, 1, field_bound(k)); };
    auto get_float = [&](const char* k) {
        ZT_CHECK(field(k).is_number(), "%s: model config field '%s' must be a number",
                 source.c_str(), k);
        return j[k].get<float>();
    };
    ModelConfig c;
    ZT_CHECK(field("name").is_string() && field("arch").is_string() &&
                 field("tie_embeddings").is_boolean(),
             "%s: model config fields name, arch (strings) and tie_embeddings (bool) have the "
             "wrong type",
             source.c_str());
    c.name = j["name"].get<std::string>();
    std::string arch = j["arch"].get<std::string>();
    ZT_CHECK(arch == "llama" || arch == "gpt2",
             "%s: model config arch '%s': expected llama or gpt2", source.c_str(), arch.c_str());
    c.arch = arch == "llama" ? Arch::llama : Arch::gpt2;
    c.vocab_size = get_int("vocab_size");
    c.d_model = get_int("d_model");
    c.n_layer = get_int("n_layer");
    c.n_head = get_int("n_head");
    c.n_kv_head = get_int("n_kv_head");
    c.d_ff = get_int("d_ff");
    c.max_seq = get_int("max_seq");
    c.norm_eps = get_float("norm_eps");
    c.rope_theta = get_float("rope_theta");
    // Records written before rope_scaling existed have none.
    if (j.contains("rope_scaling")) c.rope_scaling = read_rope_scaling(j["rope_scaling"], source);
    c.tie_embeddings = j["tie_embeddings"].get<bool>();
    validate_model_config(c);
    return c;
}

std::string model_config_difference(const ModelConfig& a, const ModelConfig& b) {
    auto num = [](double x) { return strprintf("%g", x); };
    const std::pair<const char*, std::pair<std::string, std::string>> fields[] = {
        {"arch", {arch_name(a.arch), arch_name(b.arch)}},
        {"vocab_size", {num(a.vocab_size), num(b.vocab_size)}},
        {"d_model", {num(a.d_model), num(b.d_model)}},
        {"n_layer", {num(a.n_layer), num(b.n_layer)}},
        {"n_head", {num(a.n_head), num(b.n_head)}},
        {"n_kv_head", {num(a.n_kv_head), num(b.n_kv_head)}},
        {"d_ff", {num(a.d_ff), num(b.d_ff)}},
        {"max_seq", {num(a.max_seq), num(b.max_seq)}},
        {"norm_eps", {num(a.norm_eps), num(b.norm_eps)}},
        {"rope_theta", {num(a.rope_theta), num(b.rope_theta)}},
        {"rope_scaling", {rope_scaling_to_hf_json(a).dump(), rope_scaling_to_hf_json(b).dump()}},
        {"tie_embeddings", {num(a.tie_embeddings), num(b.tie_embeddings)}}};
    for (const auto& [name, vals] : fields)
        if (vals.first != vals.second)
            return strprintf("%s (%s vs %s)", name, vals.first.c_str(), vals.second.c_str());
    return "";
}

int64_t count_params(const ModelConfig& c) {
    int64_t C = c.d_model, H = c.d_ff, V = c.vocab_size, L = c.n_layer;
    int64_t D = c.head_dim(), NH = c.n_head, NKV = c.n_kv_head;
    if (c.arch == Arch::llama) {
        int64_t block = 2 * C + C * (NH + 2 * NKV) * D + NH * D * C + 3 * C * H;
        return V * C * (c.tie_embeddings ? 1 : 2) + L * block + C;
    }
    int64_t block = 4 * C + (3 * C * C + 3 * C) + (C * C + C) + (H * C + H) + (C * H + C);
    return V * C * (c.tie_embeddings ? 1 : 2) + int64_t(c.max_seq) * C + L * block + 2 * C;
}

double train_flops_per_token(const ModelConfig& c, int seq_len) {
    // Embedding lookups are not matmuls; the head is (tied or not).
    double n =
        double(count_params(c)) - double(c.vocab_size) * c.d_model * (c.tie_embeddings ? 0.0 : 1.0);
    if (c.arch == Arch::gpt2) n -= double(c.max_seq) * c.d_model;
    return 6.0 * n + 12.0 * c.n_layer * double(seq_len) * c.d_model;
}

std::string describe_model(const ModelConfig& c) {
    return strprintf(
        "%s (%s): %lld parameters, %d layers, d_model %d, %d heads (%d kv), d_ff %d, "
        "vocab %d, max seq %d%s%s",
        c.name.c_str(), arch_name(c.arch), (long long)count_params(c), c.n_layer, c.d_model,
        c.n_head, c.n_kv_head, c.d_ff, c.vocab_size, c.max_seq,
        c.rope_scaling.enabled()
            ? strprintf(", llama3 RoPE scaling x%g from %d positions",
                        double(c.rope_scaling.factor), c.rope_scaling.original_max_position)
                  .c_str()
            : "",
        c.tie_embeddings ? ", tied embeddings" : "");
}

}  // namespace zt
