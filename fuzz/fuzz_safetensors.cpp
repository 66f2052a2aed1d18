// A .safetensors file (Hugging Face exports, `eval --hf`, `--init-from`):
// its header and every tensor the reader hands out.
#include <vector>

#include "ckpt/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = zt_fuzz::scratch_dir() + "/model.safetensors";
    zt_fuzz::write_file(path, zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        const zt::SafetensorsFile f = zt::SafetensorsFile::open(path);
        for (const zt::SafetensorsTensor& t : f.tensors()) {
            const int64_t n = zt::safetensors_numel(t.shape);
            if (n > (int64_t(1) << 20)) continue;
            if (t.dtype == "F32" || t.dtype == "BF16" || t.dtype == "F16") {
                std::vector<float> out(static_cast<size_t>(n));
                f.read_f32(t.name, out.data(), n);
            }
        }
    });
    return 0;
}
