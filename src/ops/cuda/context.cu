// Per-device cuBLASLt handles and per-(device, stream) workspaces.
//
// Invariant: see context.h. The registry is guarded by one mutex; handles and
// workspaces are RAII objects, so release_context() and process exit free
// them (a failure during exit is reported, never thrown).
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "ops/cuda/context.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/device_arena.h"

namespace zt::cuda {

namespace {

class CublasLtHandle {
  public:
    CublasLtHandle() { ZT_CUBLAS_CHECK(cublasLtCreate(&handle_)); }
    ~CublasLtHandle() {
        if (handle_) cublasLtDestroy(handle_);  // no-throw path: status ignored at exit
    }
    CublasLtHandle(const CublasLtHandle&) = delete;
    CublasLtHandle& operator=(const CublasLtHandle&) = delete;
    cublasLtHandle_t get() const { return handle_; }

  private:
    cublasLtHandle_t handle_ = nullptr;
};

struct DeviceState {
    std::unique_ptr<CublasLtHandle> lt;
    std::map<cudaStream_t, DeviceBuffer<uint8_t>> workspaces;
};

std::mutex g_mutex;
std::map<int, DeviceState>& registry() {
    static std::map<int, DeviceState> r;
    return r;
}

}  // namespace

int current_device() {
    int dev = -1;
    ZT_CUDA_CHECK(cudaGetDevice(&dev));
    return dev;
}

cublasLtHandle_t cublaslt_handle() {
    const int dev = current_device();
    std::lock_guard<std::mutex> lock(g_mutex);
    DeviceState& st = registry()[dev];
    if (!st.lt) st.lt = std::make_unique<CublasLtHandle>();
    return st.lt->get();
}

void* stream_workspace(cudaStream_t stream, size_t bytes) {
    const int dev = current_device();
    std::lock_guard<std::mutex> lock(g_mutex);
    DeviceState& st = registry()[dev];
    auto it = st.workspaces.find(stream);
    if (it == st.workspaces.end() || it->second.bytes() < bytes) {
        size_t want = bytes > kCublasWorkspaceBytes ? bytes : kCublasWorkspaceBytes;
        if (it != st.workspaces.end()) {
            want = want > 2 * it->second.bytes() ? want : 2 * it->second.bytes();
            // Work already enqueued may still read the old block.
            ZT_CUDA_CHECK(cudaStreamSynchronize(stream));
            st.workspaces.erase(it);
        }
        it = st.workspaces.emplace(stream, DeviceBuffer<uint8_t>(int64_t(want))).first;
    }
    return it->second.data();
}

int64_t workspace_bytes() {
    std::lock_guard<std::mutex> lock(g_mutex);
    int64_t total = 0;
    for (auto& [dev, st] : registry()) {
        for (auto& [stream, buf] : st.workspaces) total += int64_t(buf.bytes());
    }
    return total;
}

void release_context() {
    std::lock_guard<std::mutex> lock(g_mutex);
    ZT_CUDA_CHECK(cudaDeviceSynchronize());
    registry().clear();
}

}  // namespace zt::cuda
