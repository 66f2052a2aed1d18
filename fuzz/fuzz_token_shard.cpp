// A token shard (llm.c's .bin layout): its header, and the sequences and
// vocabulary check training runs on it.
#include <algorithm>
#include <vector>

#include "data/shard.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = zt_fuzz::scratch_dir() + "/shard_000000.bin";
    zt_fuzz::write_file(path, zt_fuzz::as_text(data, size));
    zt_fuzz::accept_or_refuse([&] {
        const auto set = zt::ShardSet::open(path, "train");
        zt::check_vocab(*set, 1 << 20);
        constexpr int kT = 8;
        const int64_t n = set->n_sequences(kT);
        std::vector<int32_t> seq(kT + 1);
        for (int64_t k = 0; k < std::min<int64_t>(n, 64); k++)
            set->read_sequence(k, kT, seq.data());
        if (n > 0) set->read_sequence(n - 1, kT, seq.data());
    });
    return 0;
}
