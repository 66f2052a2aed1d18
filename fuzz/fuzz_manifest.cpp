// A checkpoint's manifest.json. The target writes the manifest's own SHA-256
// beside it, as a save does, so the fuzzer's bytes reach the field checks
// instead of stopping at the hash; the rank files are absent, which the
// loader finds only after the manifest has been validated.
#include <filesystem>

#include "ckpt/checkpoint.h"
#include "core/sha256.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string dir = zt_fuzz::scratch_dir() + "/step-00000004";
    std::filesystem::create_directories(dir);
    zt_fuzz::write_file(dir + "/manifest.json", zt_fuzz::as_text(data, size));
    zt_fuzz::write_file(dir + "/manifest.sha256", zt::sha256_hex(data, size) + "  manifest.json\n");
    zt_fuzz::accept_or_refuse([&] { (void)zt::Checkpoint::open(dir); });
    return 0;
}
