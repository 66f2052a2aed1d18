// QueuedCommunicator: issue-time checks, the communication thread, accounting,
// the signature check and the watchdog (see queued.h for the invariants).
#include "comm/queued.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <future>
#include <limits>

#include "comm/flight.h"
#include "comm/job.h"
#include "core/check.h"
#include "prof/timer.h"

namespace zt {

namespace {

constexpr uint8_t kNoReduce = 0xff;

bool is_collective(CommOp op) {
    return op != CommOp::send && op != CommOp::recv;
}

const char* reduce_name(uint8_t r) {
    return r <= uint8_t(ReduceOp::max) ? reduce_op_name(ReduceOp(r)) : "?";
}

// How long the first rank to time out waits for the other ranks' records
// before it ends the job: their watchdogs see its timeout.json within one
// poll and write theirs in milliseconds. A rank that never writes one (it is
// stopped) costs exactly this much.
double record_grace_s(double poll_s) {
    return 0.5 + 2 * poll_s;
}

// The watchdog's tick: a fraction of the timeout, at most a second.
double watchdog_poll_s(double timeout_s) {
    return std::min(1.0, std::max(0.01, timeout_s / 8));
}

bool overlaps(const void* a, int64_t a_bytes, const void* b, int64_t b_bytes) {
    auto pa = reinterpret_cast<uintptr_t>(a);
    auto pb = reinterpret_cast<uintptr_t>(b);
    return a_bytes > 0 && b_bytes > 0 && pa < pb + uint64_t(b_bytes) && pb < pa + uint64_t(a_bytes);
}

}  // namespace

bool comm_signatures_match(const CommSignature& a, const CommSignature& b) {
    return a.seq == b.seq && a.count == b.count && a.root == b.root && a.op == b.op &&
           a.dtype == b.dtype && a.reduce == b.reduce;
}

std::string comm_signature_string(const CommSignature& s) {
    CommOp op = s.op < uint8_t(CommOp::count) ? CommOp(s.op) : CommOp::count;
    const char* dt = s.dtype < kDTypeCount ? dtype_name(DType(s.dtype)) : "?";
    std::string out = strprintf("%s #%llu (%lld x %s", comm_op_name(op), (unsigned long long)s.seq,
                                (long long)s.count, dt);
    if (s.reduce != kNoReduce) out += strprintf(", %s", reduce_name(s.reduce));
    if (op == CommOp::broadcast) out += strprintf(", root %d", s.root);
    if (op == CommOp::send) out += strprintf(", to rank %d", s.root);
    if (op == CommOp::recv) out += strprintf(", from rank %d", s.root);
    return out + ")";
}

void QueuedBackend::abort_job(int exit_code) {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(exit_code);
}

bool comm_check_from_env() {
    const char* v = std::getenv("ZT_COMM_CHECK");
    if (!v || !std::strcmp(v, "1")) return true;
    ZT_CHECK(!std::strcmp(v, "0"),
             "ZT_COMM_CHECK='%s': expected 0 (no collective signature check) or 1 (check)", v);
    return false;
}

QueuedCommunicator::QueuedCommunicator(std::unique_ptr<QueuedBackend> backend, QueuedOptions opt)
    : backend_(std::move(backend)),
      opt_(opt),
      rank_(backend_->rank()),
      world_(backend_->world_size()),
      sink_(std::make_shared<detail::ExposedSink>()),
      flight_(std::make_unique<FlightRecorder>()) {
    sink_->stats = &stats_;
    std::promise<void> started;
    std::future<void> started_f = started.get_future();
    comm_thread_ = std::thread([this, &started] {
        try {
            backend_->start();
        } catch (...) {
            started.set_exception(std::current_exception());
            return;
        }
        started.set_value();
        run_thread();
    });
    try {
        started_f.get();
    } catch (...) {
        comm_thread_.join();
        throw;
    }
    if (opt_.timeout_s > 0 && world_ > 1)
        watchdog_thread_ = std::thread([this] { run_watchdog(); });
}

QueuedCommunicator::~QueuedCommunicator() {
    {
        std::lock_guard<std::mutex> lock(queue_mu_);
        Request stop;
        stop.stop = true;
        queue_.push_back(std::move(stop));
    }
    queue_cv_.notify_all();
    comm_thread_.join();
    {
        std::lock_guard<std::mutex> lock(inflight_mu_);
        watchdog_stop_ = true;
    }
    watchdog_cv_.notify_all();
    if (watchdog_thread_.joinable()) watchdog_thread_.join();
    std::lock_guard<std::mutex> lock(sink_->mu);
    sink_->stats = nullptr;  // handles may outlive us; their wait() stops accounting
}

// ---- issue side (caller's thread) -------------------------------------------

Work QueuedCommunicator::issue(Request r) {
    const char* name = comm_op_name(r.op);
    comm_check_dtype(r.op, r.dtype, r.reduce);  // a barrier carries the default f32
    ZT_CHECK(r.count >= 0, "%s: count %lld is negative", name, (long long)r.count);
    int64_t esize = int64_t(dtype_size(r.dtype));
    ZT_CHECK(r.count <= std::numeric_limits<int64_t>::max() / (esize * world_),
             "%s: count %lld overflows the byte size", name, (long long)r.count);
    r.sig.op = uint8_t(r.op);
    r.sig.count = r.count;
    r.sig.dtype = uint8_t(r.dtype);
    r.sig.reduce = (r.op == CommOp::all_reduce || r.op == CommOp::reduce_scatter)
                       ? uint8_t(r.reduce)
                       : kNoReduce;
    r.sig.root = (r.op == CommOp::broadcast || !is_collective(r.op)) ? r.peer : -1;

    std::unique_lock<std::mutex> lock(queue_mu_);
    ZT_CHECK(broken_.empty(), "%s: the %s communicator is unusable after an earlier failure: %s",
             name, backend_->name(), broken_.c_str());
    r.sig.seq = is_collective(r.op) ? next_seq_++ : next_p2p_seq_++;
    if (is_collective(r.op)) flight_->issue(r.sig, step_.load());
    r.state = detail::make_work_state(r.op, sink_);
    r.state->seq = r.sig.seq;  // --trace's args
    r.state->full_bytes = r.full_bytes;
    {
        // Calls and bytes belong to the moment of issue, so a step's traffic
        // is what the step issued, however late the wire finishes it.
        std::lock_guard<std::mutex> stats_lock(sink_->mu);
        CommOpStats& s = stats_[r.op];
        s.calls += 1;
        s.wire_bytes += comm_wire_bytes(r.op, r.full_bytes, world_);
    }
    Work w(r.state);
    queue_.push_back(std::move(r));
    lock.unlock();
    queue_cv_.notify_one();
    return w;
}

Work QueuedCommunicator::all_reduce_async(void* buf, int64_t count, DType dtype, ReduceOp op) {
    ZT_CHECK(buf || count == 0, "all_reduce: null buffer for %lld elements", (long long)count);
    Request r;
    r.op = CommOp::all_reduce;
    r.recv = buf;
    r.count = count;
    r.dtype = dtype;
    r.reduce = op;
    r.full_bytes = count * int64_t(dtype_size(dtype));
    return issue(std::move(r));
}

Work QueuedCommunicator::reduce_scatter_async(const void* send, void* recv, int64_t recv_count,
                                              DType dtype, ReduceOp op) {
    ZT_CHECK((send && recv) || recv_count == 0, "reduce_scatter: null buffer for %lld elements",
             (long long)recv_count);
    const int64_t esize = int64_t(dtype_size(dtype));  // 0 for a bad dtype, refused in issue()
    if (recv_count > 0 && esize > 0 &&
        recv_count <= std::numeric_limits<int64_t>::max() / (esize * world_)) {
        int64_t block = recv_count * esize;
        const char* own = static_cast<const char*>(send) + rank_ * block;
        ZT_CHECK(recv == own || !overlaps(send, block * world_, recv, block),
                 "reduce_scatter: recv overlaps send other than as send's block %d (in place); "
                 "use separate buffers or recv = send + %d * recv_count",
                 rank_, rank_);
    }
    Request r;
    r.op = CommOp::reduce_scatter;
    r.send = send;
    r.recv = recv;
    r.count = recv_count;
    r.dtype = dtype;
    r.reduce = op;
    r.full_bytes = recv_count * world_ * int64_t(dtype_size(dtype));
    return issue(std::move(r));
}

Work QueuedCommunicator::all_gather_async(const void* send, void* recv, int64_t send_count,
                                          DType dtype) {
    ZT_CHECK((send && recv) || send_count == 0, "all_gather: null buffer for %lld elements",
             (long long)send_count);
    const int64_t esize = int64_t(dtype_size(dtype));  // 0 for a bad dtype, refused in issue()
    if (send_count > 0 && esize > 0 &&
        send_count <= std::numeric_limits<int64_t>::max() / (esize * world_)) {
        int64_t block = send_count * esize;
        const char* own = static_cast<const char*>(recv) + rank_ * block;
        ZT_CHECK(send == own || !overlaps(send, block, recv, block * world_),
                 "all_gather: send overlaps recv other than as recv's block %d (in place); "
                 "use separate buffers or send = recv + %d * send_count",
                 rank_, rank_);
    }
    Request r;
    r.op = CommOp::all_gather;
    r.send = send;
    r.recv = recv;
    r.count = send_count;
    r.dtype = dtype;
    r.full_bytes = send_count * world_ * int64_t(dtype_size(dtype));
    return issue(std::move(r));
}

Work QueuedCommunicator::broadcast_async(void* buf, int64_t count, DType dtype, int root) {
    ZT_CHECK(buf || count == 0, "broadcast: null buffer for %lld elements", (long long)count);
    ZT_CHECK(root >= 0 && root < world_, "broadcast: root %d is not a rank (world size %d)", root,
             world_);
    Request r;
    r.op = CommOp::broadcast;
    r.recv = buf;
    r.count = count;
    r.dtype = dtype;
    r.peer = root;
    r.full_bytes = count * int64_t(dtype_size(dtype));
    return issue(std::move(r));
}

// send and recv share their checks; only the direction differs.
Work QueuedCommunicator::point_to_point(CommOp op, const void* send, void* recv, int64_t count,
                                        DType dtype, int peer) {
    const bool sending = op == CommOp::send;
    const char* name = comm_op_name(op);
    ZT_CHECK(world_ > 1,
             "%s: world size is 1 (backend %s): there is no peer rank to %s; start ranks with "
             "--nproc N or mpirun and use --comm mpi or ring",
             name, backend_->name(), sending ? "send to" : "receive from");
    ZT_CHECK(peer >= 0 && peer < world_ && peer != rank_,
             "%s: peer %d must be another rank in [0, %d), not this rank %d", name, peer, world_,
             rank_);
    ZT_CHECK((sending ? send != nullptr : recv != nullptr) || count == 0,
             "%s: null buffer for %lld elements", name, (long long)count);
    Request r;
    r.op = op;
    r.send = send;
    r.recv = recv;
    r.count = count;
    r.dtype = dtype;
    r.peer = peer;
    r.full_bytes = count * int64_t(dtype_size(dtype));
    return issue(std::move(r));
}

Work QueuedCommunicator::send_async(const void* buf, int64_t count, DType dtype, int peer) {
    return point_to_point(CommOp::send, buf, nullptr, count, dtype, peer);
}

Work QueuedCommunicator::recv_async(void* buf, int64_t count, DType dtype, int peer) {
    return point_to_point(CommOp::recv, nullptr, buf, count, dtype, peer);
}

Work QueuedCommunicator::barrier_async() {
    Request r;
    r.op = CommOp::barrier;
    return issue(std::move(r));
}

CommStats QueuedCommunicator::stats() const {
    std::lock_guard<std::mutex> lock(sink_->mu);
    return stats_;
}

void QueuedCommunicator::reset_stats() {
    std::lock_guard<std::mutex> lock(sink_->mu);
    stats_ = CommStats{};
}

void QueuedCommunicator::set_run_dir(const std::string& run_dir) {
    // Rank 0 clears before it issues another collective; every other rank
    // acts on a timeout.json only once a collective issued after this point
    // completed, which rank 0 joined (flight.h's invariant).
    if (rank_ == 0 && !run_dir.empty()) {
        clear_hang_records(run_dir);
        job_note_run_dir(run_dir);
    }
    int64_t next;
    {
        std::lock_guard<std::mutex> lock(queue_mu_);
        next = int64_t(next_seq_);
    }
    std::lock_guard<std::mutex> lock(inflight_mu_);
    run_dir_ = run_dir;
    armed_after_ = run_dir.empty() ? INT64_MAX : next;
}

// ---- communication thread ---------------------------------------------------

void QueuedCommunicator::run_thread() {
    for (;;) {
        Request r;
        {
            std::unique_lock<std::mutex> lock(queue_mu_);
            queue_cv_.wait(lock, [&] { return !queue_.empty(); });
            r = std::move(queue_.front());
            queue_.pop_front();
        }
        if (r.stop) break;
        run_one(r);
    }
    try {
        backend_->stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zerotrain: warning: %s communicator shutdown: %s\n", backend_->name(),
                     e.what());
    }
}

void QueuedCommunicator::run_one(Request& r) {
    {
        // Issued before an earlier operation failed: the ranks are no longer
        // in step, so running it could only hang or corrupt.
        std::lock_guard<std::mutex> lock(queue_mu_);
        if (!broken_.empty()) {
            if (is_collective(r.op)) flight_->finish(r.sig.seq, false);
            r.state->fail(strprintf("%s was not run: an earlier operation failed: %s",
                                    comm_signature_string(r.sig).c_str(), broken_.c_str()));
            return;
        }
    }
    if (is_collective(r.op)) flight_->start(r.sig.seq);
    double t0 = now_seconds();
    {
        std::lock_guard<std::mutex> lock(inflight_mu_);
        inflight_ = true;
        inflight_since_ = t0;
        inflight_sig_ = r.sig;
    }
    std::string error;
    try {
        if (is_collective(r.op) && opt_.check_signatures && world_ > 1) check_signature(r.sig);
        switch (r.op) {
            case CommOp::all_reduce:
                backend_->all_reduce(r.recv, r.count, r.dtype, r.reduce);
                break;
            case CommOp::reduce_scatter:
                backend_->reduce_scatter(r.send, r.recv, r.count, r.dtype, r.reduce);
                break;
            case CommOp::all_gather:
                backend_->all_gather(r.send, r.recv, r.count, r.dtype);
                break;
            case CommOp::broadcast:
                backend_->broadcast(r.recv, r.count, r.dtype, r.peer);
                break;
            case CommOp::send:
                backend_->send(r.send, r.count, r.dtype, r.peer);
                break;
            case CommOp::recv:
                backend_->recv(r.recv, r.count, r.dtype, r.peer);
                break;
            case CommOp::barrier:
                backend_->barrier();
                break;
            case CommOp::count:
                error = "invalid operation";
                break;
        }
    } catch (const std::exception& e) {
        error = strprintf("%s on the %s communicator failed: %s",
                          comm_signature_string(r.sig).c_str(), backend_->name(), e.what());
    }
    double t1 = now_seconds();
    if (is_collective(r.op)) flight_->finish(r.sig.seq, error.empty());
    {
        std::lock_guard<std::mutex> lock(inflight_mu_);
        inflight_ = false;
    }
    if (error.empty()) {
        std::lock_guard<std::mutex> lock(sink_->mu);
        stats_[r.op].busy_s += t1 - t0;
    }
    if (error.empty()) {
        r.state->complete();
    } else {
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            if (broken_.empty()) broken_ = error;
        }
        r.state->fail(error);
    }
}

void QueuedCommunicator::check_signature(const CommSignature& mine) {
    if (!backend_->exchange_signatures(mine, all_sigs_)) return;
    std::string diff;
    int ndiff = 0;
    for (int p = 0; p < int(all_sigs_.size()); p++) {
        if (comm_signatures_match(all_sigs_[p], mine)) continue;
        if (ndiff++ < 4) {
            diff += strprintf("%s rank %d issued %s", ndiff > 1 ? ";" : "", p,
                              comm_signature_string(all_sigs_[p]).c_str());
        }
    }
    if (ndiff == 0) return;
    if (ndiff > 4) diff += strprintf("; and %d more ranks differ", ndiff - 4);
    std::fflush(stdout);
    std::fprintf(stderr,
                 "zerotrain: error: rank %d: collective mismatch on the %s communicator: this "
                 "rank issued %s, but%s. Every rank must issue the same collectives in the same "
                 "order. Aborting all ranks.\n",
                 rank_, backend_->name(), comm_signature_string(mine).c_str(), diff.c_str());
    std::fflush(stderr);
    backend_->abort_job(1);
}

void QueuedCommunicator::run_watchdog() {
    const double poll = watchdog_poll_s(opt_.timeout_s);
    std::unique_lock<std::mutex> lock(inflight_mu_);
    for (;;) {
        watchdog_cv_.wait_for(lock, std::chrono::duration<double>(poll),
                              [&] { return watchdog_stop_; });
        if (watchdog_stop_) return;
        const double waited = inflight_ ? now_seconds() - inflight_since_ : 0;
        const CommSignature sig = inflight_sig_;
        const bool inflight = inflight_;
        if (inflight && waited > opt_.timeout_s) {
            lock.unlock();
            on_timeout(sig, waited);
        }
        // Another rank timed out: leave this rank's record while it still runs.
        if (record_written_ || run_dir_.empty() || flight_->last_completed() < armed_after_)
            continue;
        const std::string marker = hang_marker_path(run_dir_);
        lock.unlock();
        std::error_code ec;
        if (std::filesystem::exists(marker, ec)) on_peer_timeout(inflight, sig, waited);
        lock.lock();
    }
}

std::string QueuedCommunicator::recorded_run_dir() {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    return run_dir_;
}

void QueuedCommunicator::write_record(const std::string& run_dir, const char* reason, bool inflight,
                                      const CommSignature& sig, double waited) {
    HangRecordInfo info;
    info.rank = rank_;
    info.world = world_;
    info.backend = backend_->name();
    info.reason = reason;
    info.timeout_s = opt_.timeout_s;
    info.step = step_.load();
    info.inflight = inflight;
    info.inflight_sig = sig;
    info.inflight_waited_s = waited;
    std::string error = write_hang_record(run_dir, info, *flight_);
    if (!error.empty())
        std::fprintf(stderr, "zerotrain: warning: rank %d: flight recorder: %s\n", rank_,
                     error.c_str());
}

void QueuedCommunicator::on_peer_timeout(bool inflight, const CommSignature& sig, double waited) {
    write_record(recorded_run_dir(), "peer_timeout", inflight, sig, waited);
    record_written_ = true;
}

void QueuedCommunicator::on_timeout(const CommSignature& sig, double waited) {
    const std::string run_dir = recorded_run_dir();
    if (!run_dir.empty() && hang_marker_sealed(run_dir)) {
        // The job is already being ended for a timeout that another rank
        // declared; mpirun's abort let this (stopped) rank run again. Its
        // record is kept, counted as late, and it says nothing more.
        write_record(run_dir, "late", true, sig, waited);
        backend_->abort_job(1);
    }
    std::fflush(stdout);
    std::fprintf(stderr,
                 "zerotrain: error: rank %d: watchdog: %s on the %s communicator has waited "
                 "%.1f s (timeout %g s, --comm-timeout-s): a peer rank died, hung, or did "
                 "not issue this operation. Aborting all ranks.\n",
                 rank_, comm_signature_string(sig).c_str(), backend_->name(), waited,
                 opt_.timeout_s);
    std::fflush(stderr);
    if (!run_dir.empty()) {
        write_record(run_dir, "timeout", true, sig, waited);
        const std::string what = comm_signature_string(sig);
        const double grace = record_grace_s(watchdog_poll_s(opt_.timeout_s));
        const double deadline = now_seconds() + grace;
        if (claim_hang_marker(run_dir, rank_, what)) {
            // The first rank to time out waits for the others' records, says
            // which came in time, and only then ends the job: an abort makes
            // mpirun continue a stopped rank, whose record would come late.
            std::vector<int> present = hang_record_ranks(run_dir);
            while (int(present.size()) < world_ && now_seconds() < deadline) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                present = hang_record_ranks(run_dir);
            }
            seal_hang_marker(run_dir, rank_, what, present);
            // Under --nproc the launcher reads the records after mpirun returns
            // and prints the one diagnosis; otherwise this rank does.
            if (job_dir().empty()) {
                std::string diagnosis = diagnose_hang(run_dir, world_);
                std::fputs(diagnosis.c_str(), stderr);
                std::fflush(stderr);
            }
        } else {
            // Another rank timed out first: leave the abort to it, unless it
            // does not seal in time (it is gone too).
            while (!hang_marker_sealed(run_dir) && now_seconds() < deadline + 2)
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    backend_->abort_job(1);
    std::_Exit(1);  // not reached: abort_job ends the process
}

}  // namespace zt
