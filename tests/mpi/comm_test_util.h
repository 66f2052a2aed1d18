// Helpers for the multi-rank communicator tests (zt_mpi_tests, run under
// mpirun by ctest): typed buffers, verifiable inputs and a referee
// communicator that sums error counts across ranks.
//
// Verifiable data (nccl-tests style): every input is a small integer, so every
// partial sum is an integer of magnitude <= 256, exact in bf16 and f32 in any
// reduction order; the expected result is computed exactly on the host.
// Control dtypes (i32, i64, u8, f64) use inputs too large for any float round
// trip (see control_input), whose sums are still exact in any order.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/dtype.h"

namespace zt_mpi_test {

// A host buffer of f32 or bf16 read and written as floats.
class TypedBuf {
  public:
    TypedBuf(zt::DType dtype, int64_t n, float fill = 0) : dtype_(dtype) {
        if (dtype == zt::DType::f32)
            f_.assign(size_t(n), fill);
        else
            h_.assign(size_t(n), zt::f32_to_bf16(fill).bits);
    }
    void* data() { return dtype_ == zt::DType::f32 ? (void*)f_.data() : (void*)h_.data(); }
    char* bytes() { return static_cast<char*>(data()); }
    int64_t size() const { return int64_t(dtype_ == zt::DType::f32 ? f_.size() : h_.size()); }
    float get(int64_t i) const {
        return dtype_ == zt::DType::f32 ? f_[size_t(i)] : zt::bf16_to_f32(zt::bf16{h_[size_t(i)]});
    }
    void set(int64_t i, float v) {
        if (dtype_ == zt::DType::f32)
            f_[size_t(i)] = v;
        else
            h_[size_t(i)] = zt::f32_to_bf16(v).bits;
    }

  private:
    zt::DType dtype_;
    std::vector<float> f_;
    std::vector<uint16_t> h_;
};

// Inputs: small integers (see the file comment).
inline float sum_input(int rank, int64_t i) {
    return float((i * 7 + rank * 13) % 9) - 4;
}  // |x| <= 4
// avg inputs: a(i) + c(rank) with sum_r c(r) = 0, so the mean is exactly a(i).
inline float avg_mean(int64_t i) {
    return float(i % 11) - 5;
}
inline float avg_input(int rank, int world, int64_t i) {
    return avg_mean(i) + float(2 * rank - (world - 1));
}
inline float gather_input(int rank, int64_t i) {
    return float((rank * 31 + i * 3) % 17) - 8;
}

// A host buffer of i32, i64, u8 or f64 whose elements are written and
// compared as int64 "units": the integer itself (u8 modulo 256), or for f64
// the value units / 4, a dyadic fraction, so sums of inputs are exact in f64.
// Comparison is of the encoded bytes: the wire must deliver them exactly.
class ControlBuf {
  public:
    ControlBuf(zt::DType dtype, int64_t n, int64_t fill = 0)
        : dtype_(dtype), esize_(int64_t(zt::dtype_size(dtype))), b_(size_t(n * esize_)) {
        for (int64_t i = 0; i < n; i++) set(i, fill);
    }
    void* data() { return b_.data(); }
    char* bytes() { return reinterpret_cast<char*>(b_.data()); }
    void set(int64_t i, int64_t units) { encode(units, b_.data() + i * esize_); }
    bool equals(int64_t i, int64_t units) const {
        unsigned char want[8];
        encode(units, want);
        return std::memcmp(b_.data() + i * esize_, want, size_t(esize_)) == 0;
    }

  private:
    void encode(int64_t units, unsigned char* dst) const {
        if (dtype_ == zt::DType::i32) {
            int32_t v = int32_t(units);
            std::memcpy(dst, &v, 4);
        } else if (dtype_ == zt::DType::i64) {
            std::memcpy(dst, &units, 8);
        } else if (dtype_ == zt::DType::u8) {
            dst[0] = uint8_t(units);
        } else {
            double v = double(units) * 0.25;  // |units| < 2^53: exact
            std::memcpy(dst, &v, 8);
        }
    }

    zt::DType dtype_;
    int64_t esize_;
    std::vector<unsigned char> b_;
};

// Control inputs in units (see ControlBuf). Alternating signs, magnitudes
// (rank + 1) * 2^k with an odd low part: i64 at 2^56 (a double keeps only
// multiples of 16 there), i32 at 2^24 (an f32 keeps only even values), f64 at
// 2^42 units = 2^40 (f32 keeps 24 bits), u8 over the whole byte (its sums
// wrap modulo 256). At 8 ranks every partial sum stays far inside the type
// (i64 < 2^62, i32 < 2^30, f64 < 2^48 units), so any order gives one result.
inline int64_t control_input(zt::DType dtype, int rank, int64_t i) {
    if (dtype == zt::DType::u8) return (i * 37 + rank * 101 + 11) % 256;
    int shift = dtype == zt::DType::i64 ? 56 : dtype == zt::DType::i32 ? 24 : 42;
    int64_t high = (int64_t(rank % 8) + 1) << shift;
    return (rank % 2 ? -high : high) + 2 * ((i * 7 + rank * 13) % 9) - 7;
}
// f64 avg inputs: mean(i) + c(rank) with sum_r c(r) = 0, so the mean is exact.
inline int64_t control_avg_mean(int64_t i) {
    return (int64_t(1) << 42) + 2 * (i % 11) - 9;
}
inline int64_t control_avg_input(int rank, int world, int64_t i) {
    return control_avg_mean(i) + (int64_t(2 * rank - (world - 1)) << 40);
}

// The referee: an mpi (or, at world 1 without MPI, local) communicator that
// is not under test, created on first use and destroyed by shutdown().
zt::Communicator& referee();
void shutdown_referee();
int world_size();
int world_rank();

// Sums `local` over all ranks (each rank's own count is also expected 0 by
// the caller, so a broken referee cannot hide a local error).
int64_t global_errors(int64_t local);

// Makes a communicator of `backend` with a test watchdog of 60 s.
std::unique_ptr<zt::Communicator> make_test_comm(const std::string& backend);

}  // namespace zt_mpi_test
