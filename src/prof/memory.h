// Memory ledger: bytes by category, current and peak, per process.
//
// Every long-lived allocation of the engine and the model goes through a
// LedgerBuffer, so the numbers in `mem_bytes` are counted, not estimated.
// Categories follow DESIGN.md's ledger rule: persistent ZeRO storage under
// params / grads / optimizer, activations of the model under activations,
// transient full-size buffers and staging under buffers.
//
// Invariant: at_peak(c) summed over the categories equals peak(): the ledger
// keeps what each category held at the moment the total was highest, so a
// transient buffer freed since (a stage-3 gathered unit) still shows in the
// breakdown of the peak it made.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "core/check.h"
#include "core/dtype.h"

namespace zt {

enum class MemCategory : int { params = 0, grads, optimizer, activations, buffers, count };

const char* mem_category_name(MemCategory c);

class MemoryLedger {
  public:
    void add(MemCategory c, int64_t bytes);
    void sub(MemCategory c, int64_t bytes);
    int64_t current(MemCategory c) const { return current_[size_t(c)]; }
    int64_t total() const { return total_; }
    // Highest total ever held at once.
    int64_t peak() const { return peak_; }
    // What category c held when the total reached peak() (the first time).
    int64_t at_peak(MemCategory c) const { return at_peak_[size_t(c)]; }

  private:
    std::array<int64_t, size_t(MemCategory::count)> current_{};
    std::array<int64_t, size_t(MemCategory::count)> at_peak_{};
    int64_t total_ = 0;
    int64_t peak_ = 0;
};

// An owning, 64-byte aligned, zero-initialised array counted in a ledger.
template <typename T>
class LedgerBuffer {
  public:
    LedgerBuffer() = default;
    LedgerBuffer(MemoryLedger* ledger, MemCategory cat, int64_t n)
        : ledger_(ledger), cat_(cat), n_(n) {
        if (n_ == 0) return;
        size_t bytes = (size_t(n_) * sizeof(T) + 63) / 64 * 64;
        data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
        if (!data_) throw_alloc_failure(bytes);
        std::fill_n(reinterpret_cast<unsigned char*>(data_), bytes, 0);
        if (ledger_) ledger_->add(cat_, int64_t(n_) * int64_t(sizeof(T)));
    }
    ~LedgerBuffer() { release(); }
    LedgerBuffer(const LedgerBuffer&) = delete;
    LedgerBuffer& operator=(const LedgerBuffer&) = delete;
    LedgerBuffer(LedgerBuffer&& o) noexcept { *this = std::move(o); }
    LedgerBuffer& operator=(LedgerBuffer&& o) noexcept {
        if (this != &o) {
            release();
            ledger_ = o.ledger_;
            cat_ = o.cat_;
            n_ = std::exchange(o.n_, 0);
            data_ = std::exchange(o.data_, nullptr);
        }
        return *this;
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    int64_t size() const { return n_; }
    T& operator[](int64_t i) { return data_[i]; }
    const T& operator[](int64_t i) const { return data_[i]; }

  private:
    void release() {
        if (data_) {
            std::free(data_);
            if (ledger_) ledger_->sub(cat_, int64_t(n_) * int64_t(sizeof(T)));
        }
        data_ = nullptr;
        n_ = 0;
    }
    static void throw_alloc_failure(size_t bytes);

    MemoryLedger* ledger_ = nullptr;
    MemCategory cat_ = MemCategory::buffers;
    int64_t n_ = 0;
    T* data_ = nullptr;
};

void ledger_alloc_failure(size_t bytes);

// n elements of a dtype chosen at run time (the compute copy is f32 or bf16),
// counted in a ledger like a LedgerBuffer.
class TypedLedgerBuffer {
  public:
    TypedLedgerBuffer() = default;
    TypedLedgerBuffer(MemoryLedger* ledger, MemCategory cat, DType dtype, int64_t n)
        : dtype_(dtype), n_(n), bytes_(ledger, cat, n * int64_t(dtype_size(dtype))) {}

    DType dtype() const { return dtype_; }
    int64_t size() const { return n_; }
    void* data() { return bytes_.data(); }
    // Address of element i.
    void* at(int64_t i) { return bytes_.data() + i * int64_t(dtype_size(dtype_)); }
    template <typename T>
    T* as() {
        ZT_CHECK(sizeof(T) == dtype_size(dtype_), "buffer of %s read as a %zu-byte type",
                 dtype_name(dtype_), sizeof(T));
        return reinterpret_cast<T*>(bytes_.data());
    }

  private:
    DType dtype_ = DType::f32;
    int64_t n_ = 0;
    LedgerBuffer<uint8_t> bytes_;
};

template <typename T>
void LedgerBuffer<T>::throw_alloc_failure(size_t bytes) {
    ledger_alloc_failure(bytes);
}

}  // namespace zt
