// A SentencePiece .model file (`--tokenizer`, a data directory's tokenizer):
// loading it, then encoding and decoding text with it.
#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = zt_fuzz::scratch_dir() + "/tokenizer.model";
    zt_fuzz::write_file(path, zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        const auto tok = zt::load_sentencepiece(path);
        const std::vector<uint32_t> ids = tok->encode("To be, or not to be: that is the question.");
        (void)tok->decode(ids);
        for (uint32_t id : ids) (void)tok->decode_piece(id);
        (void)tok->encode_continuation(" whether tis nobler");
    });
    return 0;
}
