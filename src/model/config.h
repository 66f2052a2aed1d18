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

#include "ops/rope.h"

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
    RopeScaling rope_scaling;  // Llama 3.1/3.2's rope_scaling (rope_type llama3); factor 0: none
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
// A field that would change the model's math and is not supported here is
// refused by name (hidden_act other than silu, activation_function other than
// gelu_new / gelu_pytorch_tanh, attention_bias or mlp_bias true, a head_dim
// other than hidden_size / heads, rope_scaling other than llama3, a missing
// model_type, ...); known harmless fields (token ids, torch_dtype, use_cache,
// ...) are accepted; any other field is reported on stderr as not read.
ModelConfig model_config_from_hf_json(const std::string& path);

// config.json's rope_scaling object of a config (Hugging Face's field names),
// or null when there is none.
nlohmann::json rope_scaling_to_hf_json(const ModelConfig& c);

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
