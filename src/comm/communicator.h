// Communicator: the one interface every ZeRO stage talks through.
//
// Collectives and point-to-point operations come in two forms: `op_async`
// returns a Work handle at once and the operation runs in issue order on the
// backend's communication thread (or stream), so the caller's computation
// overlaps it; `op` is `op_async(...).wait()`. Buffers must stay alive and
// untouched until the Work completes. Counts are ELEMENT counts, never bytes.
//
// Dtypes, the same on every backend (comm_check_dtype refuses the rest at
// issue, naming the dtype): f32, bf16, f64 for tensors and metrics; i32, i64,
// u8 for control data (counts, flags, ledgers, names), which is never packed
// into floats. f16 is refused (no backend converts it yet). Reductions:
//   sum  floats add in their own type, except bf16, which travels as bf16 and
//        adds in f32 with one rounding per combination (once per ring hop, as
//        NCCL does); integers add exactly, in any order, while the total
//        fits the type. u8 sums wrap modulo 256 on every backend (the mpi
//        backend brings its own op for that); what a signed i32/i64 overflow
//        gives is left to the library (MPI, NCCL): keep those totals in range.
//   avg  floating types only: the sum divided by the world size. Refused on
//        integer types: an integer mean would truncate; take the sum and
//        divide where the rounding is explicit.
//   max  every dtype; bf16 compares values (no rounding). With a NaN among
//        the inputs the result is unspecified.
//
// Accounting, on every backend: calls and bytes on the wire per rank (the ring
// algorithm's, see comm_wire_bytes), counted when an operation is issued;
// time in flight on the communication thread, counted when it completes; and
// exposed time: how long callers waited in Work::wait().
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"

namespace zt {

enum class ReduceOp : uint8_t { sum, avg, max };

const char* reduce_op_name(ReduceOp op);

enum class CommOp : uint8_t {
    all_reduce,
    reduce_scatter,
    all_gather,
    broadcast,
    send,
    recv,
    barrier,
    count
};

const char* comm_op_name(CommOp op);

struct CommOpStats {
    int64_t calls = 0;
    int64_t wire_bytes = 0;  // bytes this rank sends on the wire (ring algorithm)
    double busy_s = 0;       // time in flight, issue-to-completion on the comm thread
    double exposed_s = 0;    // time callers spent blocked in Work::wait()
};

struct CommStats {
    std::array<CommOpStats, size_t(CommOp::count)> ops{};
    CommOpStats& operator[](CommOp op) { return ops[size_t(op)]; }
    const CommOpStats& operator[](CommOp op) const { return ops[size_t(op)]; }
    double busy_s() const;
    double exposed_s() const;
};

// Bytes one rank sends for an operation on `bytes` of payload in the ring
// algorithm, with n = world size and S the FULL array (the all-reduce buffer,
// the reduce-scatter input, the all-gather output, the broadcast buffer):
//   all_reduce 2(n-1)/n S, reduce_scatter (n-1)/n S, all_gather (n-1)/n S,
//   broadcast (n-1)/n S (pipelined ring), send S, recv 0, barrier 0.
int64_t comm_wire_bytes(CommOp op, int64_t full_bytes, int world);
// Sequential message steps of the ring algorithm (the alpha term's multiplier):
//   all_reduce 2(n-1), reduce_scatter n-1, all_gather n-1, broadcast n-1,
//   send/recv 1, barrier 2(n-1).
int comm_ring_steps(CommOp op, int world);

// Refuses (zt::Error) a dtype the communicators do not carry for `op`, or a
// reduction not defined on it (`reduce` is read for all_reduce and
// reduce_scatter only); the message names the op, the dtype and what to use.
void comm_check_dtype(CommOp op, DType dtype, ReduceOp reduce = ReduceOp::sum);

namespace detail {
struct WorkState;
}

// Handle to an operation in flight. Copies share one state. A default
// (empty) handle is already done.
class Work {
  public:
    Work() = default;
    explicit Work(std::shared_ptr<detail::WorkState> s) : state_(std::move(s)) {}
    // Blocks until the operation completed; rethrows its error as zt::Error.
    void wait();
    bool done() const;
    // Orders work queued on a device stream (a cudaStream_t, passed as void*
    // so this header stays CUDA-free) after this operation. Today this is a
    // host wait on every backend, nccl included: it is wait(), so the caller
    // blocks (and the time counts as exposed) and anything it queues on
    // `stream` afterwards sees the result; `stream` is not touched. The CUDA
    // path will later enqueue an event wait on `stream` instead and return at
    // once.
    void wait_on_stream(void* stream);

  private:
    std::shared_ptr<detail::WorkState> state_;
};

class Communicator {
  public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int world_size() const = 0;
    virtual const char* backend_name() const = 0;  // "local", "mpi", "ring", "nccl", "simnet(mpi)"

    // buf (count) = reduction over ranks of buf (count).
    virtual Work all_reduce_async(void* buf, int64_t count, DType dtype, ReduceOp op) = 0;
    // send (world * recv_count): rank r receives the reduction of block r into recv (recv_count).
    // recv may be block rank() of send (in place); any other overlap is refused.
    virtual Work reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype,
                                      ReduceOp op) = 0;
    // send (send_count) from every rank -> recv (world * send_count), block r from rank r.
    // send may alias block rank() of recv (in place).
    virtual Work all_gather_async(const void* send, void* recv, int64_t send_count,
                                  DType dtype) = 0;
    virtual Work broadcast_async(void* buf, int64_t count, DType dtype, int root) = 0;
    virtual Work send_async(const void* buf, int64_t count, DType dtype, int peer) = 0;
    virtual Work recv_async(void* buf, int64_t count, DType dtype, int peer) = 0;
    virtual Work barrier_async() = 0;

    void all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) {
        all_reduce_async(buf, count, dtype, op).wait();
    }
    void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                        ReduceOp op) {
        reduce_scatter_async(send, recv, recv_count, dtype, op).wait();
    }
    void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) {
        all_gather_async(send, recv, send_count, dtype).wait();
    }
    void broadcast(void* buf, int64_t count, DType dtype, int root) {
        broadcast_async(buf, count, dtype, root).wait();
    }
    void send(const void* buf, int64_t count, DType dtype, int peer) {
        send_async(buf, count, dtype, peer).wait();
    }
    void recv(void* buf, int64_t count, DType dtype, int peer) {
        recv_async(buf, count, dtype, peer).wait();
    }
    void barrier() { barrier_async().wait(); }

    // A snapshot of this rank's accounting (thread-safe).
    virtual CommStats stats() const = 0;
    virtual void reset_stats() = 0;

    // The flight recorder (comm/flight.h), on backends that keep one (local,
    // mpi, ring; a no-op elsewhere). On a collective timeout each rank still
    // running writes its last collectives to RUN_DIR/hang/rank-K.json; ""
    // (the default) writes nothing. Every rank calls it at the same point of
    // its collective sequence; rank 0 first clears a previous run's records.
    virtual void set_run_dir(const std::string& run_dir) { (void)run_dir; }
    // The training step the collectives issued from now on belong to, for
    // the flight recorder (0 before the first step).
    virtual void set_step(int64_t step) { (void)step; }
};

struct CommOptions {
    std::string backend = "local";  // local | mpi | ring | nccl
    // > 0: wrap the backend in simnet. Every *_gbps in zerotrain is gigaBITS
    // per second (10^9 bit/s), as networks are rated: 10 Gbps = 1.25 GB/s.
    double sim_bandwidth_gbps = 0;
    double sim_latency_us = 0;
    double timeout_s = 300;  // watchdog: abort all ranks when an op waits longer
};

// Builds the backend for this process; rank and world size come from the
// launcher (mpirun/srun/torchrun variables). Refuses a backend this build
// lacks, naming what is missing.
std::unique_ptr<Communicator> make_communicator(const CommOptions& opt);

}  // namespace zt
