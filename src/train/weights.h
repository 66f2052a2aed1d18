// Trained weights for evaluation, generation and export, from either a
// zerotrain checkpoint or a Hugging Face folder, with the tokenizer that goes
// with them.
//
// Invariant: a checkpoint and its Hugging Face export load to the same
// parameters bit for bit (F32 export), so `eval` and `generate` agree on both.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/config.h"

namespace zt {

struct LoadedWeights {
    ModelConfig config;
    std::vector<float> params;  // (layout total_numel,) in model order
    std::string source;         // the step directory or the Hugging Face folder
    // The checkpoint's train_config (null for a Hugging Face folder).
    nlohmann::json train_config;
    // The tokenizer that made the training data; null when unknown (synthetic
    // data, bare shards, or a Hugging Face folder without tokenizer.model).
    std::unique_ptr<Tokenizer> tokenizer;
    std::string tokenizer_sha256;  // "" for the byte tokenizer or none
};

// Exactly one of checkpoint / hf_dir is non-empty. A checkpoint is verified
// (sizes, SHA-256) before anything is read; its tokenizer is the copy saved
// beside the rank files (or the recorded path), checked against the recorded
// hash. A Hugging Face folder's tokenizer is hf_dir/tokenizer.model when present.
LoadedWeights load_weights(const std::string& checkpoint, const std::string& hf_dir);

}  // namespace zt
