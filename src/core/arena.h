// Arena: one aligned block, bump-allocated, freed all at once.
//
// Activations and scratch of a step live in an arena sized up front from the
// model shape and batch, so a step never calls malloc and the memory ledger
// sees exactly one number per arena. Allocations are 64-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace zt {

class Arena {
public:
    Arena() = default;
    explicit Arena(size_t capacity_bytes, std::string name = "arena");
    ~Arena();
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    Arena(Arena&& other) noexcept;
    Arena& operator=(Arena&& other) noexcept;

    // Returns zero-initialised memory for n elements of T.
    template <typename T>
    T* alloc(size_t n) {
        return static_cast<T*>(alloc_bytes(n * sizeof(T)));
    }
    void* alloc_bytes(size_t bytes);
    void reset() { used_ = 0; }

    size_t capacity() const { return capacity_; }
    size_t used() const { return used_; }
    size_t high_water() const { return high_water_; }

    static constexpr size_t kAlign = 64;
    static size_t aligned(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

private:
    uint8_t* base_ = nullptr;
    size_t capacity_ = 0;
    size_t used_ = 0;
    size_t high_water_ = 0;
    std::string name_;
};

}  // namespace zt
