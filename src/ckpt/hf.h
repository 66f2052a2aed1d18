// Hugging Face export and import: a model folder that `transformers` loads as
// LlamaForCausalLM or GPT2LMHeadModel (config.json + model.safetensors), and
// the way back into the model-order parameter array.
//
// Tensor names and layouts. LLaMA tensors already carry Hugging Face's names
// and (out_features, in_features) layout, and need no permutation: our RoPE
// rotates the pairs (x[i], x[i + D/2]) of each head (HF's rotate_half), the
// convention HF's LLaMA checkpoints are stored in, so q_proj and k_proj go out
// exactly as we hold them (tests/hf/reference_model.py applies HF's RoPE to
// the exported weights and the interop test checks the logits). GPT-2's HF
// checkpoints store the attn.c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj
// weights as Conv1D (in_features, out_features): those are transposed both
// ways. GPT-2 names carry the `transformer.` prefix on export (what
// GPT2LMHeadModel saves); import also accepts OpenAI-style names without it.
// Tied models have no lm_head.weight on export.
//
// Invariant: export then import gives back the exported parameters bit for bit
// (F32), and neither direction ever leaves a partial result behind: an export
// that fails leaves no out_dir, an import that finds anything it does not
// expect refuses with the tensor's name, its file, and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/config.h"

namespace zt {

struct ExportOptions {
    DType dtype = DType::f32;  // f32 or bf16 (round to nearest even); f16 is refused
    int bos_token_id = -1;     // written to config.json when >= 0
    int eos_token_id = -1;     // written to config.json when >= 0
    // Called after each unit is in the file: units and tensor bytes written
    // so far, of the totals.
    std::function<void(int units_done, int units, int64_t bytes_done, int64_t bytes)> progress;
};

// Fills out (unit numel,) with unit `unit`'s full parameters in layout order
// (model_layout(cfg).units[unit]).
using ReadUnitFn = std::function<void(int unit, float* out)>;

// Writes out_dir/config.json and out_dir/model.safetensors. Units are read
// one at a time, in order, into one reusable buffer and streamed to the file
// before the next is read, so memory stays at one unit plus small staging
// buffers whatever the model size. The folder is built under a temporary name
// beside out_dir and renamed into place when complete; an existing out_dir
// must be an empty directory (a non-empty one is refused, never merged into).
void export_hf(const ModelConfig& cfg, const ReadUnitFn& read_unit, const std::string& out_dir,
               const ExportOptions& options = {});

// The model config of hf_dir/config.json (model_config_from_hf_json).
ModelConfig hf_model_config(const std::string& hf_dir);

// All parameters of the model cfg describes, in model order
// (model_layout(cfg).total_numel floats), from hf_dir/model.safetensors or,
// when that is absent, from the shards that hf_dir/model.safetensors.index.json
// maps tensors to. F32, BF16 and F16 tensors are converted to f32.
// Refused, naming the tensor and its file: a missing tensor, a shape other
// than the expected one, another dtype, a tensor in two places, and any tensor
// the model has no use for, except buffers HF stores beside the weights
// (`*.rotary_emb.inv_freq`, GPT-2's `*.attn.bias` and `*.attn.masked_bias`),
// which are ignored. A tied model accepts an lm_head.weight only when it
// equals the embedding exactly (as saved by untied-capable tools); one that
// differs is refused, since dropping it would change the model.
std::vector<float> read_hf_params(const std::string& hf_dir, const ModelConfig& cfg);

}  // namespace zt
