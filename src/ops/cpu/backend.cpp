// The CPU side of the model's ops backend (ops/backend.h).
#include "ops/backend.h"

#include <algorithm>
#include <cstdlib>

#include "core/check.h"

namespace zt {

int cpu_classifier_chunk_rows(int64_t N, int V) {
    int64_t rows = (int64_t(4) << 20) / V;
    return int(std::min<int64_t>(std::max<int64_t>(rows, 16), N));
}

namespace {

class HostCopier : public DeviceCopier {
  public:
    Device device() const override { return Device::cpu; }
    void* alloc(size_t bytes) override {
        void* p = std::calloc(bytes ? bytes : 1, 1);
        ZT_CHECK(p, "host copier: calloc of %zu bytes failed", bytes);
        return p;
    }
    void release(void* p) override { std::free(p); }
    void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
    void download(void* dst, const void* src, size_t bytes) override {
        std::memcpy(dst, src, bytes);
    }
    void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }
};

}  // namespace

std::unique_ptr<DeviceCopier> make_host_copier() {
    return std::make_unique<HostCopier>();
}

}  // namespace zt
