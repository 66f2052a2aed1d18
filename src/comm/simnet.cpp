// simnet: the slower-network decorator (see simnet.h for the model).
//
// The caller's thread issues the inner operation at once and queues it; the
// decorator's link thread takes the queue in issue order, waits for the inner
// operation, then sleeps until the simulated link would have delivered it and
// completes the caller's handle. Invariant: the link thread is the only one
// that completes handles, so they complete in issue order, and the link is
// busy with at most one operation at a time.
#include "comm/simnet.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "comm/work.h"
#include "core/check.h"

namespace zt {

namespace {

using Clock = std::chrono::steady_clock;

// sleep_until alone overshoots by the scheduler's wake-up latency (tens of
// microseconds, more on a busy machine), so it sleeps to just short of the
// target and spins the rest, at most kSpin per operation. The spin does not
// yield: on a loaded machine a yield can hand the core away for a whole
// scheduler slice (milliseconds).
void sleep_until_precise(Clock::time_point target) {
    constexpr auto kSpin = std::chrono::microseconds(100);
    if (target - Clock::now() > kSpin) std::this_thread::sleep_until(target - kSpin);
    while (Clock::now() < target) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

class SimNetCommunicator final : public Communicator {
  public:
    SimNetCommunicator(std::unique_ptr<Communicator> inner, double bandwidth_gbps,
                       double latency_us)
        : inner_(std::move(inner)),
          bandwidth_gbps_(bandwidth_gbps),
          latency_us_(latency_us),
          name_(std::string("simnet(") + inner_->backend_name() + ")"),
          world_(inner_->world_size()),
          sink_(std::make_shared<detail::ExposedSink>()) {
        sink_->stats = &own_;
        link_thread_ = std::thread([this] { run_link(); });
    }

    ~SimNetCommunicator() override {
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            stopping_ = true;
        }
        queue_cv_.notify_all();
        link_thread_.join();  // drains the queue: every issued handle completes
        std::lock_guard<std::mutex> lock(sink_->mu);
        sink_->stats = nullptr;  // handles may outlive us; their wait() stops accounting
    }

    int rank() const override { return inner_->rank(); }
    int world_size() const override { return world_; }
    const char* backend_name() const override { return name_.c_str(); }

    Work all_reduce_async(void* buf, int64_t count, DType dtype, ReduceOp op) override {
        return issue(CommOp::all_reduce, count * int64_t(dtype_size(dtype)),
                     [&] { return inner_->all_reduce_async(buf, count, dtype, op); });
    }
    Work reduce_scatter_async(const void* send, void* recv, int64_t recv_count, DType dtype,
                              ReduceOp op) override {
        return issue(CommOp::reduce_scatter, recv_count * world_ * int64_t(dtype_size(dtype)), [&] {
            return inner_->reduce_scatter_async(send, recv, recv_count, dtype, op);
        });
    }
    Work all_gather_async(const void* send, void* recv, int64_t send_count, DType dtype) override {
        return issue(CommOp::all_gather, send_count * world_ * int64_t(dtype_size(dtype)),
                     [&] { return inner_->all_gather_async(send, recv, send_count, dtype); });
    }
    Work broadcast_async(void* buf, int64_t count, DType dtype, int root) override {
        return issue(CommOp::broadcast, count * int64_t(dtype_size(dtype)),
                     [&] { return inner_->broadcast_async(buf, count, dtype, root); });
    }
    Work send_async(const void* buf, int64_t count, DType dtype, int peer) override {
        return issue(CommOp::send, count * int64_t(dtype_size(dtype)),
                     [&] { return inner_->send_async(buf, count, dtype, peer); });
    }
    Work recv_async(void* buf, int64_t count, DType dtype, int peer) override {
        return issue(CommOp::recv, count * int64_t(dtype_size(dtype)),
                     [&] { return inner_->recv_async(buf, count, dtype, peer); });
    }
    Work barrier_async() override {
        return issue(CommOp::barrier, 0, [&] { return inner_->barrier_async(); });
    }

    // Calls and wire bytes are the inner backend's own count; busy and exposed
    // time are the decorator's (the inner backend's "exposed" time is only our
    // link thread waiting on it, which no caller sees).
    CommStats stats() const override {
        CommStats s = inner_->stats();
        std::lock_guard<std::mutex> lock(sink_->mu);
        for (size_t i = 0; i < s.ops.size(); i++) {
            s.ops[i].busy_s = own_.ops[i].busy_s;
            s.ops[i].exposed_s = own_.ops[i].exposed_s;
        }
        return s;
    }

    void set_run_dir(const std::string& run_dir) override { inner_->set_run_dir(run_dir); }
    void set_step(int64_t step) override { inner_->set_step(step); }

    void reset_stats() override {
        inner_->reset_stats();
        std::lock_guard<std::mutex> lock(sink_->mu);
        own_ = CommStats{};
    }

  private:
    struct Pending {
        Work inner;
        std::shared_ptr<detail::WorkState> outer;
        CommOp op = CommOp::barrier;
        Clock::time_point issued;
        Clock::duration modeled{};
    };

    template <typename IssueInner>
    Work issue(CommOp op, int64_t full_bytes, IssueInner&& issue_inner) {
        // One issuer at a time, so the queue's order is the inner backend's order.
        std::lock_guard<std::mutex> issue_lock(issue_mu_);
        Pending p;
        p.issued = Clock::now();
        p.inner = issue_inner();  // the inner backend validates the arguments (may throw)
        p.op = op;
        p.outer = detail::make_work_state(op, sink_);
        p.modeled = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
            simnet_modeled_seconds(op, full_bytes, world_, bandwidth_gbps_, latency_us_)));
        Work handle(p.outer);
        {
            std::lock_guard<std::mutex> lock(queue_mu_);
            queue_.push_back(std::move(p));
        }
        queue_cv_.notify_one();
        return handle;
    }

    void run_link() {
        Clock::time_point link_free{};  // when the previous operation left the link
        for (;;) {
            Pending p;
            {
                std::unique_lock<std::mutex> lock(queue_mu_);
                queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping, and everything delivered
                p = std::move(queue_.front());
                queue_.pop_front();
            }
            std::string error;
            try {
                p.inner.wait();
            } catch (const std::exception& e) {
                error = e.what();
            }
            Clock::time_point inner_done = Clock::now();
            Clock::time_point start = std::max(p.issued, link_free);
            Clock::time_point end = inner_done;
            if (error.empty()) {
                end = std::max(inner_done, start + p.modeled);
                sleep_until_precise(end);
            }
            link_free = end;
            {
                std::lock_guard<std::mutex> lock(sink_->mu);
                own_[p.op].busy_s += seconds_between(start, end);
            }
            if (error.empty()) {
                p.outer->complete();
            } else {
                p.outer->fail(error);
            }
        }
    }

    std::unique_ptr<Communicator> inner_;
    const double bandwidth_gbps_;
    const double latency_us_;
    const std::string name_;
    const int world_;

    std::shared_ptr<detail::ExposedSink> sink_;
    CommStats own_;  // busy_s and exposed_s; guarded by sink_->mu

    std::mutex issue_mu_;
    std::mutex queue_mu_;
    std::condition_variable queue_cv_;
    std::deque<Pending> queue_;  // guarded by queue_mu_
    bool stopping_ = false;      // guarded by queue_mu_
    std::thread link_thread_;
};

}  // namespace

double simnet_modeled_seconds(CommOp op, int64_t full_bytes, int world, double bandwidth_gbps,
                              double latency_us) {
    // A recv sends nothing itself, but it lasts as long as the send it receives.
    CommOp wire_op = op == CommOp::recv ? CommOp::send : op;
    double alpha = double(comm_ring_steps(op, world)) * latency_us * 1e-6;
    double beta = bandwidth_gbps > 0 ? double(comm_wire_bytes(wire_op, full_bytes, world)) * 8.0 /
                                           (bandwidth_gbps * 1e9)
                                     : 0.0;
    return alpha + beta;
}

std::unique_ptr<Communicator> make_simnet(std::unique_ptr<Communicator> inner,
                                          double bandwidth_gbps, double latency_us) {
    ZT_CHECK(inner != nullptr, "simnet needs a backend to wrap; got none");
    ZT_CHECK(std::isfinite(bandwidth_gbps) && bandwidth_gbps >= 0,
             "--sim-bandwidth-gbps %g: expected a bandwidth >= 0 in gigabits per second "
             "(0 = unlimited)",
             bandwidth_gbps);
    ZT_CHECK(std::isfinite(latency_us) && latency_us >= 0,
             "--sim-latency-us %g: expected a latency >= 0 in microseconds", latency_us);
    return std::make_unique<SimNetCommunicator>(std::move(inner), bandwidth_gbps, latency_us);
}

}  // namespace zt
