// ring: all_reduce, reduce_scatter and all_gather built only from
// point-to-point MPI_Isend/MPI_Irecv (the chunked ring algorithm), on the
// mpi backend's transport; broadcast is a pipelined chain and barrier a
// dissemination of empty messages, also point-to-point only.
//
// all_reduce of N elements on n ranks splits the buffer into n near-equal
// blocks (any N works: 1 element, primes), then runs n-1 reduce-scatter steps
// and n-1 all-gather steps. Every step is pipelined in sub-chunks (1 MiB by
// default, env ZT_RING_CHUNK_KB): a chunk is forwarded to the right neighbour
// as soon as it has been received and reduced, so receive, reduce and send of
// different chunks overlap, across step boundaries too. Receives are posted a
// window ahead (env ZT_RING_WINDOW chunks, default 4).
//
// Invariant: before a region is overwritten (by a receive or a reduce), the
// send that reads it has completed; every rank splits each block into the
// same chunks, so message i from the left is always chunk i of the plan.
#pragma once

#include <vector>

#include "comm/mpi/mpi_backend.h"

namespace zt {

class RingBackend final : public MpiBackend {
  public:
    RingBackend();

    void all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) override;
    void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                        ReduceOp op) override;
    void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) override;
    void broadcast(void* buf, int64_t count, DType dtype, int root) override;
    void barrier() override;

  private:
    // One ring step: send a region to the right neighbour, receive a region
    // from the left one into dst (dst = received (op) add when add is set:
    // + for sum and avg, the larger for max; then dst /= world when divide is
    // set). For steps after the first, the region sent is the previous step's
    // dst, chunk by chunk as it becomes final.
    struct Step {
        const char* send = nullptr;
        int64_t send_len = 0;  // elements
        char* dst = nullptr;
        const char* add = nullptr;
        int64_t recv_len = 0;  // elements
        bool divide = false;
    };
    void run_ring(DType dtype, ReduceOp op, int tag);
    int mod(int64_t x) const { return int(((x % world_) + world_) % world_); }

    int64_t chunk_bytes_ = 1 << 20;
    int window_ = 4;
    std::vector<Step> steps_;
    std::vector<char> tmp_;  // window_ receive slots of chunk_bytes_
    std::vector<char> acc_;  // reduce_scatter: two partial-sum blocks
};

}  // namespace zt
