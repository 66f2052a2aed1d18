// The nccl communicator (see nccl.h): NCCL calls on a dedicated stream, a
// completion thread that turns per-operation CUDA events into completed Work.
//
// Invariants:
//   - NCCL and CUDA enqueue calls are made on the issuing thread, under
//     issue_mu_, so the order of operations on the comm stream is the issue
//     order on every rank (NCCL requires the same order everywhere).
//   - Every operation first waits (on the GPU) for an event recorded on the
//     compute stream when it was issued: it never reads a buffer before the
//     kernels queued ahead of it have written it.
//   - The completion thread is the only one that completes handles; it takes
//     operations in issue order, so handles complete in issue order.
//   - busy_s is GPU time between events around the NCCL call on the comm
//     stream (it includes waiting for peers, as a blocked MPI call would).
//   - An operation running longer than the timeout, or an asynchronous NCCL
//     error, aborts the NCCL communicator: that operation and every later one
//     fail with a message naming the rank and the operation. NCCL does not
//     compare op signatures across ranks here; mismatched collectives show up
//     as a hang that the timeout turns into an error.
#include <nccl.h>  // NCCL's header (this folder's "nccl.h" is ours)

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/nccl/nccl.h"
#include "comm/work.h"
#include "core/check.h"
#include "prof/timer.h"

// The error prefix names the rank (set_error_rank runs before any call).
#define ZT_COMM_CUDA_CHECK(call)                                                 \
    do {                                                                         \
        cudaError_t zt_cuda_e_ = (call);                                         \
        if (zt_cuda_e_ != cudaSuccess)                                           \
            ZT_FAIL("%s failed: %s (%s)", #call, cudaGetErrorString(zt_cuda_e_), \
                    cudaGetErrorName(zt_cuda_e_));                               \
    } while (0)

#define ZT_NCCL_CHECK(call)                                                                 \
    do {                                                                                    \
        ncclResult_t zt_nccl_r_ = (call);                                                   \
        if (zt_nccl_r_ != ncclSuccess)                                                      \
            ZT_FAIL("%s failed: %s (NCCL %d.%d.%d)", #call, ncclGetErrorString(zt_nccl_r_), \
                    NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);                                    \
    } while (0)

namespace zt {

namespace {

// Only dtypes comm_check_dtype accepted (at the top of every op) reach this.
ncclDataType_t nccl_dtype(DType dtype) {
    switch (dtype) {
        case DType::f32:
            return ncclFloat32;
        case DType::bf16:
            return ncclBfloat16;
        case DType::f64:
            return ncclFloat64;
        case DType::i32:
            return ncclInt32;
        case DType::i64:
            return ncclInt64;
        case DType::u8:
            return ncclUint8;
        case DType::f16:
            break;
    }
    ZT_FAIL("nccl: dtype %s is not supported", dtype_name(dtype));
}

// avg on integer types never gets here (refused at issue), so ncclAvg only
// ever divides floating data.
ncclRedOp_t nccl_reduce_op(ReduceOp op) {
    switch (op) {
        case ReduceOp::sum:
            return ncclSum;
        case ReduceOp::avg:
            return ncclAvg;
        case ReduceOp::max:
            return ncclMax;
    }
    ZT_FAIL("nccl: reduce op %d is not sum, avg or max", int(op));
}

// Restores the caller's current device after an operation sets ours.
class DeviceGuard {
  public:
    explicit DeviceGuard(int device) {
        ZT_COMM_CUDA_CHECK(cudaGetDevice(&previous_));
        if (previous_ != device) ZT_COMM_CUDA_CHECK(cudaSetDevice(device));
    }
    ~DeviceGuard() {
        int now = previous_;
        if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

  private:
    int previous_ = 0;
};

class NcclCommunicator final : public Communicator {
  public:
    NcclCommunicator(const RankInfo& ranks, const ncclUniqueId& id, double timeout_s)
        : rank_(ranks.rank),
          world_(ranks.world),
          device_(ranks.local_rank),
          timeout_s_(timeout_s),
          sink_(std::make_shared<detail::ExposedSink>()) {
        sink_->stats = &stats_;
        try {
            init(id);
        } catch (...) {
            free_resources();  // the destructor does not run for a half-built object
            throw;
        }
        completion_thread_ = std::thread([this] { run_completions(); });
    }

    ~NcclCommunicator() override {
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            stopping_ = true;
        }
        queue_cv_.notify_all();
        if (completion_thread_.joinable()) completion_thread_.join();  // every handle completes
        {
            std::lock_guard<std::mutex> lock(sink_->mu);
            sink_->stats = nullptr;
        }
        free_resources();
    }

    int rank() const override { return rank_; }
    int world_size() const override { return world_; }
    const char* backend_name() const override { return "nccl"; }

  private:
    // The device, stream, events and barrier buffer, then the NCCL
    // communicator last (it is the step that waits for the peers).
    void init(const ncclUniqueId& id) {
        int devices = 0;
        ZT_COMM_CUDA_CHECK(cudaGetDeviceCount(&devices));
        ZT_CHECK(device_ >= 0 && device_ < devices,
                 "nccl: local rank %d needs GPU %d, but this node has %d; start at most %d ranks "
                 "per node",
                 device_, device_, devices, devices);
        ZT_COMM_CUDA_CHECK(cudaSetDevice(device_));
        // Non-blocking: the comm stream never waits implicitly for the legacy
        // default stream (only for the events we record), so it overlaps compute.
        int least = 0, greatest = 0;
        ZT_COMM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        ZT_COMM_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
        ZT_COMM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
        ZT_COMM_CUDA_CHECK(cudaMalloc(&barrier_buf_, sizeof(float)));
        ZT_COMM_CUDA_CHECK(cudaMemsetAsync(barrier_buf_, 0, sizeof(float), stream_));
        ZT_COMM_CUDA_CHECK(cudaStreamSynchronize(stream_));
        ZT_NCCL_CHECK(ncclCommInitRank(&comm_, world_, id, rank_));
    }

    // Never throws (runs in the destructor): reports and goes on freeing.
    void free_resources() {
        cudaSetDevice(device_);
        if (comm_) report(ncclCommDestroy(comm_), "ncclCommDestroy");
        comm_ = nullptr;
        for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
        free_events_.clear();
        if (ready_) cudaEventDestroy(ready_);
        ready_ = nullptr;
        if (barrier_buf_) cudaFree(barrier_buf_);
        barrier_buf_ = nullptr;
        if (stream_) cudaStreamDestroy(stream_);
        stream_ = nullptr;
    }

  public:
    Work all_reduce_async(void* buf, int64_t count, DType dtype, ReduceOp op) override {
        comm_check_dtype(CommOp::all_reduce, dtype, op);
        check_count("all_reduce", count);
        size_t bytes = size_t(count) * dtype_size(dtype);
        check_device_buffer("all_reduce", "buf", buf, bytes);
        return enqueue(CommOp::all_reduce, int64_t(bytes), [&](ncclComm_t c, cudaStream_t s) {
            return ncclAllReduce(buf, buf, size_t(count), nccl_dtype(dtype), nccl_reduce_op(op), c,
                                 s);
        });
    }

    Work reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype,
                              ReduceOp op) override {
        comm_check_dtype(CommOp::reduce_scatter, dtype, op);
        check_count("reduce_scatter", recv_count);
        size_t block = size_t(recv_count) * dtype_size(dtype);
        check_device_buffer("reduce_scatter", "send", send, block * size_t(world_));
        check_device_buffer("reduce_scatter", "recv", recv, block);
        check_in_place("reduce_scatter", send, block * size_t(world_), recv, block,
                       static_cast<const char*>(send) + block * size_t(rank_) == recv);
        return enqueue(CommOp::reduce_scatter, int64_t(block) * world_,
                       [&](ncclComm_t c, cudaStream_t s) {
                           return ncclReduceScatter(send, recv, size_t(recv_count),
                                                    nccl_dtype(dtype), nccl_reduce_op(op), c, s);
                       });
    }

    Work all_gather_async(const void* send, void* recv, int64_t send_count, DType dtype) override {
        comm_check_dtype(CommOp::all_gather, dtype);
        check_count("all_gather", send_count);
        size_t block = size_t(send_count) * dtype_size(dtype);
        check_device_buffer("all_gather", "send", send, block);
        check_device_buffer("all_gather", "recv", recv, block * size_t(world_));
        check_in_place("all_gather", recv, block * size_t(world_), send, block,
                       static_cast<const char*>(recv) + block * size_t(rank_) == send);
        return enqueue(
            CommOp::all_gather, int64_t(block) * world_, [&](ncclComm_t c, cudaStream_t s) {
                return ncclAllGather(send, recv, size_t(send_count), nccl_dtype(dtype), c, s);
            });
    }

    Work broadcast_async(void* buf, int64_t count, DType dtype, int root) override {
        comm_check_dtype(CommOp::broadcast, dtype);
        check_count("broadcast", count);
        ZT_CHECK(root >= 0 && root < world_, "broadcast: root %d is not a rank of world size %d",
                 root, world_);
        size_t bytes = size_t(count) * dtype_size(dtype);
        check_device_buffer("broadcast", "buf", buf, bytes);
        return enqueue(CommOp::broadcast, int64_t(bytes), [&](ncclComm_t c, cudaStream_t s) {
            return ncclBroadcast(buf, buf, size_t(count), nccl_dtype(dtype), root, c, s);
        });
    }

    Work send_async(const void* buf, int64_t count, DType dtype, int peer) override {
        comm_check_dtype(CommOp::send, dtype);
        check_peer("send", peer);
        check_count("send", count);
        size_t bytes = size_t(count) * dtype_size(dtype);
        check_device_buffer("send", "buf", buf, bytes);
        return enqueue(CommOp::send, int64_t(bytes), [&](ncclComm_t c, cudaStream_t s) {
            return ncclSend(buf, size_t(count), nccl_dtype(dtype), peer, c, s);
        });
    }

    Work recv_async(void* buf, int64_t count, DType dtype, int peer) override {
        comm_check_dtype(CommOp::recv, dtype);
        check_peer("recv", peer);
        check_count("recv", count);
        size_t bytes = size_t(count) * dtype_size(dtype);
        check_device_buffer("recv", "buf", buf, bytes);
        return enqueue(CommOp::recv, int64_t(bytes), [&](ncclComm_t c, cudaStream_t s) {
            return ncclRecv(buf, size_t(count), nccl_dtype(dtype), peer, c, s);
        });
    }

    // NCCL has no barrier: an all-reduce of one float on every rank stands in.
    Work barrier_async() override {
        return enqueue(CommOp::barrier, 0, [&](ncclComm_t c, cudaStream_t s) {
            return ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, c, s);
        });
    }

    CommStats stats() const override {
        std::lock_guard<std::mutex> lock(sink_->mu);
        return stats_;
    }

    void reset_stats() override {
        std::lock_guard<std::mutex> lock(sink_->mu);
        stats_ = CommStats{};
    }

    void set_compute_stream(cudaStream_t stream) {
        std::lock_guard<std::mutex> lock(issue_mu_);
        compute_stream_ = stream;
    }

  private:
    struct InFlight {
        std::shared_ptr<detail::WorkState> state;
        CommOp op = CommOp::barrier;
        uint64_t seq = 0;
        double issued_s = 0;
        cudaEvent_t start = nullptr;
        cudaEvent_t end = nullptr;
    };

    void check_count(const char* op, int64_t count) const {
        ZT_CHECK(count >= 0, "%s: element count %lld is negative", op, (long long)count);
    }

    void check_peer(const char* op, int peer) const {
        ZT_CHECK(peer >= 0 && peer < world_ && peer != rank_,
                 "%s: peer %d is not another rank of world size %d (this is rank %d)", op, peer,
                 world_, rank_);
    }

    // NCCL reads and writes device memory only; a host pointer would fault on
    // the GPU, far from the call that caused it, so it is refused here.
    void check_device_buffer(const char* op, const char* name, const void* p, size_t bytes) const {
        if (bytes == 0) return;
        ZT_CHECK(p != nullptr, "%s: %s is null for %zu bytes", op, name, bytes);
        cudaPointerAttributes attr{};
        ZT_COMM_CUDA_CHECK(cudaPointerGetAttributes(&attr, p));
        bool device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
        ZT_CHECK(device,
                 "%s: %s (%p) is host memory; the nccl backend takes device buffers "
                 "(cudaMalloc on GPU %d)",
                 op, name, p, device_);
        ZT_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device_,
                 "%s: %s (%p) is on GPU %d, but this rank's communicator uses GPU %d", op, name, p,
                 attr.device, device_);
    }

    // The only overlap allowed between a larger buffer and a block of it is
    // the in-place position (block rank() of the larger one), as NCCL defines.
    void check_in_place(const char* op, const void* whole, size_t whole_bytes, const void* block,
                        size_t block_bytes, bool at_own_block) const {
        auto w = reinterpret_cast<uintptr_t>(whole), b = reinterpret_cast<uintptr_t>(block);
        bool overlap = block_bytes > 0 && b < w + whole_bytes && w < b + block_bytes;
        ZT_CHECK(!overlap || at_own_block,
                 "%s: the buffers overlap; in place, the block must be exactly block %d of the "
                 "full array",
                 op, rank_);
    }

    template <typename Launch>
    Work enqueue(CommOp op, int64_t full_bytes, Launch&& launch) {
        std::lock_guard<std::mutex> issue_lock(issue_mu_);
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            ZT_CHECK(broken_.empty(), "nccl %s: the communicator was aborted earlier: %s",
                     comm_op_name(op), broken_.c_str());
        }
        DeviceGuard device(device_);
        InFlight f;
        f.op = op;
        f.seq = next_seq_++;
        f.issued_s = now_seconds();
        f.state = detail::make_work_state(op, sink_);
        f.start = take_event();
        f.end = take_event();
        try {
            ZT_COMM_CUDA_CHECK(cudaEventRecord(ready_, compute_stream_));
            ZT_COMM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
            ZT_COMM_CUDA_CHECK(cudaEventRecord(f.start, stream_));
            ncclResult_t r = launch(comm_, stream_);
            ZT_CHECK(r == ncclSuccess, "nccl %s #%llu failed at issue: %s: %s", comm_op_name(op),
                     (unsigned long long)f.seq, ncclGetErrorString(r), ncclGetLastError(comm_));
            ZT_COMM_CUDA_CHECK(cudaEventRecord(f.end, stream_));
        } catch (...) {
            std::lock_guard<std::mutex> lock(queue_mu_);
            free_events_.push_back(f.start);
            free_events_.push_back(f.end);
            throw;
        }
        {
            std::lock_guard<std::mutex> lock(sink_->mu);
            stats_[op].calls++;
            stats_[op].wire_bytes += comm_wire_bytes(op, full_bytes, world_);
        }
        Work handle(f.state);
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            queue_.push_back(std::move(f));
        }
        queue_cv_.notify_one();
        return handle;
    }

    cudaEvent_t take_event() {
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            if (!free_events_.empty()) {
                cudaEvent_t e = free_events_.back();
                free_events_.pop_back();
                return e;
            }
        }
        cudaEvent_t e = nullptr;
        ZT_COMM_CUDA_CHECK(cudaEventCreate(&e));  // timing enabled: busy_s comes from it
        return e;
    }

    // Waits for one operation's end event. Returns "" on success, else why not.
    std::string wait_for(const InFlight& f) {
        using namespace std::chrono;
        auto pause = microseconds(0);
        for (;;) {
            cudaError_t e = cudaEventQuery(f.end);
            if (e == cudaSuccess) return "";
            if (e != cudaErrorNotReady)
                return strprintf("CUDA error while waiting: %s", cudaGetErrorString(e));
            ncclResult_t async = ncclSuccess;
            ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
            if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress))
                return strprintf("NCCL error: %s: %s",
                                 ncclGetErrorString(r != ncclSuccess ? r : async),
                                 ncclGetLastError(comm_));
            double waited = now_seconds() - f.issued_s;
            if (timeout_s_ > 0 && waited > timeout_s_)
                return strprintf(
                    "still running after %.0f s (--comm-timeout-s %g): a peer may "
                    "have died or issued a different collective",
                    waited, timeout_s_);
            // Spin briefly (small ops finish in microseconds), then back off to
            // at most 200 us per poll so a long wait costs little CPU.
            if (pause < microseconds(200)) pause += microseconds(pause.count() < 20 ? 1 : 20);
            if (pause <= microseconds(20)) {
                std::this_thread::yield();
            } else {
                std::this_thread::sleep_for(pause);
            }
        }
    }

    void run_completions() {
        cudaSetDevice(device_);
        for (;;) {
            InFlight f;
            {
                std::unique_lock<std::mutex> lock(queue_mu_);
                queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;
                f = std::move(queue_.front());
                queue_.pop_front();
            }
            std::string error;
            {
                std::lock_guard<std::mutex> lock(queue_mu_);
                error = broken_;
            }
            if (error.empty()) error = wait_for(f);
            if (error.empty()) {
                float ms = 0;
                if (cudaEventElapsedTime(&ms, f.start, f.end) == cudaSuccess) {
                    std::lock_guard<std::mutex> lock(sink_->mu);
                    stats_[f.op].busy_s += double(ms) * 1e-3;
                }
                f.state->complete();
            } else {
                std::string message =
                    strprintf("rank %d: nccl %s #%llu: %s", rank_, comm_op_name(f.op),
                              (unsigned long long)f.seq, error.c_str());
                abort_comm(message);
                f.state->fail(message);
            }
            std::lock_guard<std::mutex> lock(queue_mu_);
            free_events_.push_back(f.start);
            free_events_.push_back(f.end);
        }
    }

    // After the first failure nothing more can complete on this communicator:
    // abort NCCL (its kernels stop waiting for peers) and fail what follows.
    void abort_comm(const std::string& why) {
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            if (!broken_.empty()) return;
            broken_ = why;
        }
        std::fprintf(stderr, "zerotrain: error: %s; aborting the NCCL communicator\n", why.c_str());
        std::lock_guard<std::mutex> issue_lock(issue_mu_);
        report(ncclCommAbort(comm_), "ncclCommAbort");
        comm_ = nullptr;
    }

    void report(ncclResult_t r, const char* call) const {
        if (r != ncclSuccess)
            std::fprintf(stderr, "zerotrain: warning: rank %d: %s failed: %s\n", rank_, call,
                         ncclGetErrorString(r));
    }

    const int rank_;
    const int world_;
    const int device_;
    const double timeout_s_;

    ncclComm_t comm_ = nullptr;      // written under issue_mu_ (abort sets it null)
    cudaStream_t stream_ = nullptr;  // the comm stream
    cudaStream_t compute_stream_ = cudaStreamLegacy;  // guarded by issue_mu_
    cudaEvent_t ready_ = nullptr;   // "compute reached this point"; used under issue_mu_
    float* barrier_buf_ = nullptr;  // (1) device float for barrier_async
    uint64_t next_seq_ = 0;         // guarded by issue_mu_

    std::shared_ptr<detail::ExposedSink> sink_;  // sink_->mu guards stats_
    CommStats stats_;

    std::mutex issue_mu_;
    std::mutex queue_mu_;
    std::condition_variable queue_cv_;
    std::deque<InFlight> queue_;            // guarded by queue_mu_
    std::vector<cudaEvent_t> free_events_;  // guarded by queue_mu_
    std::string broken_;                    // first failure; guarded by queue_mu_
    bool stopping_ = false;                 // guarded by queue_mu_
    std::thread completion_thread_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& opt) {
    RankInfo ranks = discover_ranks();
    set_error_rank(ranks.rank);
    ZT_CHECK(ranks.world >= 1 && ranks.rank >= 0 && ranks.rank < ranks.world,
             "nccl: rank %d of world size %d (from %s) is not valid", ranks.rank, ranks.world,
             ranks.source.c_str());
    // The device must be set before ncclGetUniqueId and ncclCommInitRank.
    ZT_COMM_CUDA_CHECK(cudaSetDevice(ranks.local_rank));
    ncclUniqueId id{};
    if (ranks.rank == 0) ZT_NCCL_CHECK(ncclGetUniqueId(&id));
    double bootstrap_timeout_s = opt.timeout_s > 0 ? opt.timeout_s : 300;
    nccl_bootstrap_broadcast(&id, sizeof id, ranks, bootstrap_timeout_s);
    return std::make_unique<NcclCommunicator>(ranks, id, opt.timeout_s);
}

void nccl_set_compute_stream(Communicator& comm, cudaStream_t stream) {
    auto* nccl = dynamic_cast<NcclCommunicator*>(&comm);
    ZT_CHECK(nccl != nullptr,
             "nccl_set_compute_stream: backend %s is not nccl (set it on the nccl communicator "
             "itself, not on a wrapper)",
             comm.backend_name());
    nccl->set_compute_stream(stream);
}

}  // namespace zt
