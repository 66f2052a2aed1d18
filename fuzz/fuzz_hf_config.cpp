// A Hugging Face config.json (`--model F.json`, `eval --hf`, `--init-from`),
// and what is computed from the model it describes before any allocation.
#include "fuzz_util.h"
#include "model/config.h"
#include "model/layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = zt_fuzz::scratch_dir() + "/config.json";
    zt_fuzz::write_file(path, zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        const zt::ModelConfig c = zt::model_config_from_hf_json(path);
        (void)zt::count_params(c);
        (void)zt::describe_model(c);
        (void)zt::train_flops_per_token(c, 64);
        (void)zt::model_layout(c);
    });
    return 0;
}
