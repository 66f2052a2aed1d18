// DeviceArena: one cudaMalloc block per memory category, bump-allocated.
//
// Invariant: the ledger holds exactly `capacity_` bytes under `cat_` for as
// long as the block exists; allocations never exceed the block (a request that
// does not fit fails with the arena's name and its numbers, never grows it
// behind the ledger's back).
#include "ops/cuda/device_arena.h"

namespace zt::cuda {

DeviceArena::DeviceArena(MemoryLedger* ledger, MemCategory cat, size_t capacity_bytes,
                         std::string name)
    : ledger_(ledger), cat_(cat), capacity_(aligned(capacity_bytes)), name_(std::move(name)) {
    if (capacity_ == 0) return;
    const cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&base_), capacity_);
    if (err != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();  // clear the recorded allocation error before asking
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) free_b = total_b = 0;
        ZT_FAIL(
            "device arena '%s' (%s): cudaMalloc of %zu bytes (%.2f GiB) failed: %s; "
            "the device has %.2f GiB free of %.2f GiB (hint: lower --micro-batch or "
            "--seq-len, or raise --zero-stage)",
            name_.c_str(), mem_category_name(cat_), capacity_,
            double(capacity_) / double(1ull << 30), cudaGetErrorString(err),
            double(free_b) / double(1ull << 30), double(total_b) / double(1ull << 30));
    }
    const cudaError_t zero_err = cudaMemset(base_, 0, capacity_);
    if (zero_err != cudaSuccess) {
        cudaFree(base_);  // the destructor does not run for a throwing constructor
        base_ = nullptr;
        ZT_FAIL("device arena '%s': cudaMemset of %zu bytes failed: %s", name_.c_str(), capacity_,
                cudaGetErrorString(zero_err));
    }
    if (ledger_) ledger_->add(cat_, int64_t(capacity_));
}

DeviceArena::~DeviceArena() {
    release();
}

void DeviceArena::release() {
    if (base_) {
        ZT_CUDA_WARN(cudaFree(base_));
        if (ledger_) ledger_->sub(cat_, int64_t(capacity_));
    }
    base_ = nullptr;
    capacity_ = used_ = high_water_ = 0;
}

DeviceArena::DeviceArena(DeviceArena&& other) noexcept {
    *this = std::move(other);
}

DeviceArena& DeviceArena::operator=(DeviceArena&& other) noexcept {
    if (this != &other) {
        release();
        ledger_ = other.ledger_;
        cat_ = other.cat_;
        base_ = std::exchange(other.base_, nullptr);
        capacity_ = std::exchange(other.capacity_, 0);
        used_ = std::exchange(other.used_, 0);
        high_water_ = std::exchange(other.high_water_, 0);
        name_ = std::move(other.name_);
    }
    return *this;
}

void* DeviceArena::alloc_bytes(size_t bytes) {
    const size_t need = aligned(bytes);
    ZT_CHECK(used_ + need <= capacity_,
             "device arena '%s' (%s) exhausted: %zu bytes used of %zu, %zu more requested "
             "(hint: the arena is sized up front from the model shape and batch; a larger "
             "request means the sizing missed a buffer)",
             name_.c_str(), mem_category_name(cat_), used_, capacity_, need);
    uint8_t* p = base_ + used_;
    used_ += need;
    if (used_ > high_water_) high_water_ = used_;
    return p;
}

}  // namespace zt::cuda
