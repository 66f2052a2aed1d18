// `prepare` on a .jsonl file: each line a JSON object whose text field is
// tokenized with the byte tokenizer into shards.
#include <filesystem>

#include "data/prepare.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in = zt_fuzz::scratch_dir() + "/docs.jsonl",
                      out = zt_fuzz::scratch_dir() + "/prepared";
    zt_fuzz::write_file(in, zt_fuzz::as_text(data, size));
    std::error_code ec;
    std::filesystem::remove_all(out, ec);
    zt::PrepareOptions opts;
    opts.inputs = {in};
    opts.out_dir = out;
    opts.threads = 1;
    opts.progress = false;
    zt_fuzz::accept_or_refuse([&] { (void)zt::prepare_data(opts); });
    std::filesystem::remove_all(out, ec);
    return 0;
}
