// Model configurations: the two families, the presets, and Hugging Face
// config.json import.
//
// A config is pure shape; parameter counts are closed-form functions of it
// and must agree with the layout (tests check both ways).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zt {

enum class Arch { llama, gpt2 };

const char* arch_name(Arch a);

struct ModelConfig {
    std::string name;  // preset name or config file path
    Arch arch = Arch::llama;
    int vocab_size = 0;
    int d_model = 0;    // C
    int n_layer = 0;    // L
    int n_head = 0;     // NH
    int n_kv_head = 0;  // NKV (== NH for GPT-2)
    int d_ff = 0;       // H: SwiGLU hidden size (LLaMA) or MLP width (GPT-2, 4C)
    int max_seq = 0;    // max_position_embeddings
    float norm_eps = 1e-5f;
    float rope_theta = 10000.0f;
    bool tie_embeddings = false;

    int head_dim() const { return d_model / n_head; }
    int qkv_dim() const { return (n_head + 2 * n_kv_head) * head_dim(); }
};

// Refuses an inconsistent shape with a message naming the field.
void validate_model_config(const ModelConfig& c);

// Known preset names, in the order --help lists them.
std::vector<std::string> model_preset_names();
bool is_model_preset(const std::string& name);
// Throws zt::Error listing the known presets when the name is unknown.
ModelConfig model_preset(const std::string& name);

// Reads a Hugging Face config.json (LlamaConfig or GPT2Config field names).
ModelConfig model_config_from_hf_json(const std::string& path);

// zerotrain's own record of a config (checkpoint manifests, run configs):
// every field under its ModelConfig name, read back exactly.
nlohmann::ordered_json model_config_to_json(const ModelConfig& c);
// Refuses a missing or mistyped field, naming it and `source`.
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& source);
// The first field in which two configs differ, or "" when the shapes agree (names aside).
std::string model_config_difference(const ModelConfig& a, const ModelConfig& b);

// Preset name or path to a config.json.
ModelConfig resolve_model(const std::string& preset_or_file);

// Closed-form parameter count.
int64_t count_params(const ModelConfig& c);

// Training FLOPs per token, PaLM's convention (as llm.c): 6N for the matmuls
// with weights plus 12 * L * T * C for attention scores and values, forward
// and backward, counting the full (unmasked) T x T product.
double train_flops_per_token(const ModelConfig& c, int seq_len);

std::string describe_model(const ModelConfig& c);

}  // namespace zt
