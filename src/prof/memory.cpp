#include "prof/memory.h"

#include "core/check.h"

namespace zt {

const char* mem_category_name(MemCategory c) {
    switch (c) {
        case MemCategory::params:
            return "params";
        case MemCategory::grads:
            return "grads";
        case MemCategory::optimizer:
            return "optimizer";
        case MemCategory::activations:
            return "activations";
        case MemCategory::buffers:
            return "buffers";
        case MemCategory::count:
            break;
    }
    return "?";
}

void MemoryLedger::add(MemCategory c, int64_t bytes) {
    current_[size_t(c)] += bytes;
    total_ += bytes;
    if (total_ > peak_) {
        peak_ = total_;
        at_peak_ = current_;
    }
}

void MemoryLedger::sub(MemCategory c, int64_t bytes) {
    current_[size_t(c)] -= bytes;
    total_ -= bytes;
}

void ledger_alloc_failure(size_t bytes) {
    ZT_FAIL("out of host memory: could not allocate %zu bytes (%.2f GiB)", bytes,
            double(bytes) / double(1ull << 30));
}

}  // namespace zt
