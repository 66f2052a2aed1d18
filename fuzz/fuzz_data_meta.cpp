// A data directory's meta.json, as train, eval and estimate read it.
#include <filesystem>

#include "data/shard.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string dir = zt_fuzz::scratch_dir() + "/data";
    std::filesystem::create_directories(dir);
    zt_fuzz::write_file(dir + "/meta.json", zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        (void)zt::read_data_meta(dir);
        (void)zt::read_meta_vocab_size(dir);
    });
    return 0;
}
