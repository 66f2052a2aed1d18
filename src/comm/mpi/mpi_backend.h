// The mpi backend (library collectives) and the base the ring backend builds
// on: a duplicated MPI_Comm per communicator, the bf16 datatype and its sum
// and max ops, point-to-point send/recv, the signature exchange and MPI_Abort.
//
// Datatypes: f32 MPI_FLOAT, f64 MPI_DOUBLE, i32 MPI_INT32_T, i64 MPI_INT64_T,
// u8 MPI_UINT8_T, reduced with MPI_SUM / MPI_MAX, except the u8 sum: a user
// MPI_Op that wraps modulo 256 as communicator.h promises, since Open MPI
// 4.1's vectorised MPI_SUM saturates 8-bit sums at 255 on longer buffers and
// wraps on short ones (a result that depends on the count). bf16 travels as a
// 2-byte MPI datatype with user MPI_Ops (sum adds pairs in f32 and rounds to bf16
// once per combination, like NCCL; max keeps the larger value's bits), so the
// wire carries bf16 bytes as comm_wire_bytes counts them. avg = sum, then
// divide by the world size on each rank (floating types only; comm_check_dtype
// refuses the rest at issue).
//
// Counts: MPI takes int counts. all_reduce, broadcast, send and recv are
// split into chunks of at most 2^30 elements; reduce_scatter and all_gather
// refuse a per-rank count above INT_MAX (their block layout cannot be split
// without a copy).
#pragma once

#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi/runtime.h"
#include "comm/queued.h"

namespace zt {

class MpiBackend : public QueuedBackend {
  public:
    explicit MpiBackend(const char* name);
    ~MpiBackend() override;

    int rank() const override { return rank_; }
    int world_size() const override { return world_; }
    const char* name() const override { return name_; }

    void start() override;
    void stop() override;

    void all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) override;
    void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                        ReduceOp op) override;
    void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) override;
    void broadcast(void* buf, int64_t count, DType dtype, int root) override;
    void send(const void* buf, int64_t count, DType dtype, int peer) override;
    void recv(void* buf, int64_t count, DType dtype, int peer) override;
    void barrier() override;

    bool exchange_signatures(const CommSignature& mine, std::vector<CommSignature>& all) override;
    [[noreturn]] void abort_job(int exit_code) override;

  protected:
    // Only dtypes comm_check_dtype accepted reach these; the rest are refused.
    MPI_Datatype mpi_type(DType dtype) const;
    // The MPI op that combines two ranks' data: sum and avg add, max takes the larger.
    MPI_Op mpi_op(DType dtype, ReduceOp op) const;

    const char* name_;
    int rank_ = 0;
    int world_ = 1;
    MPI_Comm comm_ = MPI_COMM_NULL;  // our own duplicate of MPI_COMM_WORLD
    MPI_Datatype bf16_type_ = MPI_DATATYPE_NULL;
    MPI_Op bf16_sum_ = MPI_OP_NULL;
    MPI_Op bf16_max_ = MPI_OP_NULL;
    MPI_Op u8_sum_ = MPI_OP_NULL;
    std::vector<char> scratch_;  // reduce_scatter in place
};

// Builds a QueuedCommunicator over MpiBackend ("mpi") or RingBackend ("ring").
std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& opt);
std::unique_ptr<Communicator> make_ring_communicator(const CommOptions& opt);

}  // namespace zt
