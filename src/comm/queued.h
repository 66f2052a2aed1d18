// QueuedCommunicator: the Communicator for thread-driven backends.
//
// A backend (local, mpi, ring) implements blocking primitives; this class runs
// them on ONE dedicated communication thread, strictly in issue order, and
// does everything the backends share: argument checks at issue time (so a bad
// call fails on the caller's thread, at once), Work handles, accounting, the
// collective signature check and the watchdog.
//
// Invariants:
//   - Every backend primitive runs on the communication thread, one at a time,
//     in issue order; handles complete in issue order.
//   - Calls and wire bytes are counted when an operation is issued, busy time
//     before its handle completes, so after wait() returns the stats include it.
//   - Collective sequence numbers count collectives (not send/recv) issued on
//     this communicator; every rank must issue the same collectives in the
//     same order. Before each collective the ranks exchange signatures (op,
//     sequence number, count, dtype, reduce op, root); on a mismatch every rank
//     prints what differs and the job is aborted (env ZT_COMM_CHECK=0 turns
//     the check off).
//   - The watchdog aborts the job when one operation has been running on the
//     communication thread longer than the timeout. Given a run directory
//     (set_run_dir), it first writes the flight recorder's record and waits a
//     moment for the other ranks' (comm/flight.h); the other ranks' watchdogs
//     see the first timeout and write theirs while they wait.
#pragma once

#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/work.h"

namespace zt {

class FlightRecorder;  // comm/flight.h

// What ranks compare before a collective. Fixed size and trivially copyable:
// backends exchange it as raw bytes.
struct CommSignature {
    uint64_t seq = 0;       // collective sequence number on this communicator
    int64_t count = 0;      // element count as passed (per-rank block for rs/ag)
    int32_t root = -1;      // broadcast root, -1 otherwise
    uint8_t op = 0;         // CommOp
    uint8_t dtype = 0;      // DType
    uint8_t reduce = 0xff;  // ReduceOp for all_reduce / reduce_scatter, 0xff otherwise
    uint8_t pad = 0;
};
static_assert(sizeof(CommSignature) == 24);

bool comm_signatures_match(const CommSignature& a, const CommSignature& b);
// "all_reduce #12 (1000 x f32, sum)"
std::string comm_signature_string(const CommSignature& s);

// The blocking primitives a backend implements. Everything except rank(),
// world_size() and name() is called on the communication thread only.
// Arguments have been checked (ranges, dtype and reduce op by
// comm_check_dtype, no forbidden overlap, world > 1 for send/recv); counts
// are element counts and may be 0.
class QueuedBackend {
  public:
    virtual ~QueuedBackend() = default;
    virtual int rank() const = 0;
    virtual int world_size() const = 0;
    virtual const char* name() const = 0;

    // Run on the communication thread before the first / after the last operation.
    virtual void start() {}
    virtual void stop() {}

    virtual void all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) = 0;
    // recv may be exactly block rank() of send (in place); no other overlap.
    virtual void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                                ReduceOp op) = 0;
    // send may be exactly block rank() of recv (in place); no other overlap.
    virtual void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) = 0;
    virtual void broadcast(void* buf, int64_t count, DType dtype, int root) = 0;
    virtual void send(const void* buf, int64_t count, DType dtype, int peer) = 0;
    virtual void recv(void* buf, int64_t count, DType dtype, int peer) = 0;
    virtual void barrier() = 0;

    // Collective signature exchange: fills all[r] with rank r's signature.
    // Returns false when the backend has nothing to compare against (world 1).
    virtual bool exchange_signatures(const CommSignature& mine, std::vector<CommSignature>& all) {
        (void)mine;
        (void)all;
        return false;
    }
    // Ends every rank of the job (called after the reason was printed); may be
    // called from the watchdog thread while the communication thread is blocked.
    [[noreturn]] virtual void abort_job(int exit_code);
};

struct QueuedOptions {
    double timeout_s = 300;        // watchdog; <= 0: off
    bool check_signatures = true;  // default from env ZT_COMM_CHECK (0 or 1)
};

// Reads ZT_COMM_CHECK: unset or "1" -> true, "0" -> false, anything else an error.
bool comm_check_from_env();

class QueuedCommunicator final : public Communicator {
  public:
    // Starts the communication thread, which runs backend->start() before this
    // returns (its error, if any, is rethrown here).
    QueuedCommunicator(std::unique_ptr<QueuedBackend> backend, QueuedOptions opt);
    // Drains the queue (every issued handle completes), runs backend->stop().
    ~QueuedCommunicator() override;

    int rank() const override { return rank_; }
    int world_size() const override { return world_; }
    const char* backend_name() const override { return backend_->name(); }

    Work all_reduce_async(void* buf, int64_t count, DType dtype, ReduceOp op) override;
    Work reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype,
                              ReduceOp op) override;
    Work all_gather_async(const void* send, void* recv, int64_t send_count, DType dtype) override;
    Work broadcast_async(void* buf, int64_t count, DType dtype, int root) override;
    Work send_async(const void* buf, int64_t count, DType dtype, int peer) override;
    Work recv_async(void* buf, int64_t count, DType dtype, int peer) override;
    Work barrier_async() override;

    CommStats stats() const override;
    void reset_stats() override;

    void set_run_dir(const std::string& run_dir) override;
    void set_step(int64_t step) override { step_.store(step); }

  private:
    struct Request {
        CommOp op = CommOp::barrier;
        const void* send = nullptr;
        void* recv = nullptr;
        int64_t count = 0;
        DType dtype = DType::f32;
        ReduceOp reduce = ReduceOp::sum;
        int peer = -1;  // root for broadcast, peer for send/recv
        CommSignature sig;
        int64_t full_bytes = 0;  // comm_wire_bytes' S
        std::shared_ptr<detail::WorkState> state;
        bool stop = false;
    };

    Work issue(Request r);
    Work point_to_point(CommOp op, const void* send, void* recv, int64_t count, DType dtype,
                        int peer);
    void run_thread();
    void run_one(Request& r);
    void check_signature(const CommSignature& mine);
    void run_watchdog();
    // The watchdog's two reactions (inflight_mu_ not held).
    [[noreturn]] void on_timeout(const CommSignature& sig, double waited);
    void on_peer_timeout(bool inflight, const CommSignature& sig, double waited);
    std::string recorded_run_dir();
    // RUN_DIR/hang/rank-K.json; a failure to write is printed, never thrown.
    void write_record(const std::string& run_dir, const char* reason, bool inflight,
                      const CommSignature& sig, double waited);

    std::unique_ptr<QueuedBackend> backend_;
    QueuedOptions opt_;
    int rank_ = 0;
    int world_ = 1;

    std::shared_ptr<detail::ExposedSink> sink_;  // sink_->mu guards stats_
    CommStats stats_;

    std::mutex queue_mu_;
    std::condition_variable queue_cv_;
    std::deque<Request> queue_;
    uint64_t next_seq_ = 0;      // collectives issued; guarded by queue_mu_
    uint64_t next_p2p_seq_ = 0;  // sends and recvs issued; guarded by queue_mu_
    std::string broken_;         // first failure; later ops fail with it. guarded by queue_mu_
    std::thread comm_thread_;
    std::vector<CommSignature> all_sigs_;  // comm thread only

    // The flight recorder (comm/flight.h).
    std::unique_ptr<FlightRecorder> flight_;
    std::atomic<int64_t> step_{0};
    std::string run_dir_;              // "" until set_run_dir; guarded by inflight_mu_
    int64_t armed_after_ = INT64_MAX;  // seq issued first after set_run_dir; inflight_mu_
    bool record_written_ = false;      // watchdog thread only

    // What the communication thread is running, for the watchdog.
    std::mutex inflight_mu_;
    std::condition_variable watchdog_cv_;
    bool inflight_ = false;
    double inflight_since_ = 0;
    CommSignature inflight_sig_;
    bool watchdog_stop_ = false;
    std::thread watchdog_thread_;
};

}  // namespace zt
