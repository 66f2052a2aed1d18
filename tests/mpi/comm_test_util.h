// Helpers for the multi-rank communicator tests (zt_mpi_tests, run under
// mpirun by ctest): typed buffers, verifiable inputs and a referee
// communicator that sums error counts across ranks.
//
// Verifiable data (nccl-tests style): every input is a small integer, so every
// partial sum is an integer of magnitude <= 256, exact in bf16 and f32 in any
// reduction order; the expected result is computed exactly on the host.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
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
