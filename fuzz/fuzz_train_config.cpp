// A `--config` file: zerotrain's own keys or a DeepSpeed config, resolved
// and validated as `train` does before launching.
#include "fuzz_util.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = zt_fuzz::scratch_dir() + "/ds_config.json";
    zt_fuzz::write_file(path, zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        zt::TrainConfig c;
        zt::load_train_config_file(c, path);
        (void)zt::resolve_train_batch_size(c, 2);
        zt::resolve_auto_bucket_sizes(c, 64);
        zt::validate_train_config(c);
        (void)zt::describe_auto_values(c, 2);
        (void)zt::describe_lr_schedule(c);
        for (int64_t s : {int64_t(0), int64_t(1), int64_t(c.steps) / 2, int64_t(c.steps)})
            (void)zt::lr_at_step(c, s);
    });
    return 0;
}
