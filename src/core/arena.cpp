#include "core/arena.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/check.h"

namespace zt {

Arena::Arena(size_t capacity_bytes, std::string name)
    : capacity_(aligned(capacity_bytes)), name_(std::move(name)) {
    if (capacity_ == 0) return;
    base_ = static_cast<uint8_t*>(std::aligned_alloc(kAlign, capacity_));
    ZT_CHECK(base_ != nullptr, "arena '%s': could not allocate %zu bytes", name_.c_str(),
             capacity_);
}

Arena::~Arena() { std::free(base_); }

Arena::Arena(Arena&& other) noexcept { *this = std::move(other); }

Arena& Arena::operator=(Arena&& other) noexcept {
    if (this != &other) {
        std::free(base_);
        base_ = std::exchange(other.base_, nullptr);
        capacity_ = std::exchange(other.capacity_, 0);
        used_ = std::exchange(other.used_, 0);
        high_water_ = std::exchange(other.high_water_, 0);
        name_ = std::move(other.name_);
    }
    return *this;
}

void* Arena::alloc_bytes(size_t bytes) {
    size_t need = aligned(bytes);
    ZT_CHECK(used_ + need <= capacity_,
             "arena '%s' exhausted: %zu bytes used of %zu, %zu more requested", name_.c_str(),
             used_, capacity_, need);
    uint8_t* p = base_ + used_;
    used_ += need;
    if (used_ > high_water_) high_water_ = used_;
    std::memset(p, 0, need);
    return p;
}

}  // namespace zt
