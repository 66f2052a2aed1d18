#include "comm/work.h"

#include "core/check.h"
#include "prof/timer.h"
#include "prof/trace.h"

namespace zt {

const char* comm_op_name(CommOp op) {
    switch (op) {
        case CommOp::all_reduce: return "all_reduce";
        case CommOp::reduce_scatter: return "reduce_scatter";
        case CommOp::all_gather: return "all_gather";
        case CommOp::broadcast: return "broadcast";
        case CommOp::send: return "send";
        case CommOp::recv: return "recv";
        case CommOp::barrier: return "barrier";
        case CommOp::count: break;
    }
    return "?";
}

const char* reduce_op_name(ReduceOp op) {
    switch (op) {
        case ReduceOp::sum: return "sum";
        case ReduceOp::avg: return "avg";
        case ReduceOp::max: return "max";
    }
    return "?";
}

void comm_check_dtype(CommOp op, DType dtype, ReduceOp reduce) {
    const char* name = comm_op_name(op);
    const bool known = int(dtype) < kDTypeCount;
    ZT_CHECK(known && dtype != DType::f16,
             "%s: dtype %s (%d) is not supported by communicators; use f32, bf16 or f64 for "
             "floating data, i32, i64 or u8 for control data",
             name, dtype_name(dtype), int(dtype));
    if (op != CommOp::all_reduce && op != CommOp::reduce_scatter) return;
    ZT_CHECK(int(reduce) <= int(ReduceOp::max), "%s: reduce op %d is not sum, avg or max", name,
             int(reduce));
    ZT_CHECK(!(reduce == ReduceOp::avg && dtype_is_integer(dtype)),
             "%s: avg of %s is not defined (an integer mean would truncate); use sum and divide "
             "where the rounding is explicit, or reduce in f64",
             name, dtype_name(dtype));
}

double CommStats::busy_s() const {
    double s = 0;
    for (const auto& o : ops) s += o.busy_s;
    return s;
}

double CommStats::exposed_s() const {
    double s = 0;
    for (const auto& o : ops) s += o.exposed_s;
    return s;
}

int64_t comm_wire_bytes(CommOp op, int64_t full_bytes, int world) {
    if (world <= 1) return 0;
    int64_t n = world;
    switch (op) {
        case CommOp::all_reduce: return 2 * (n - 1) * full_bytes / n;
        case CommOp::reduce_scatter:
        case CommOp::all_gather:
        case CommOp::broadcast: return (n - 1) * full_bytes / n;
        case CommOp::send: return full_bytes;
        case CommOp::recv:
        case CommOp::barrier:
        case CommOp::count: return 0;
    }
    return 0;
}

int comm_ring_steps(CommOp op, int world) {
    if (world <= 1) return 0;
    switch (op) {
        case CommOp::all_reduce:
        case CommOp::barrier: return 2 * (world - 1);
        case CommOp::reduce_scatter:
        case CommOp::all_gather:
        case CommOp::broadcast: return world - 1;
        case CommOp::send:
        case CommOp::recv: return 1;
        case CommOp::count: return 0;
    }
    return 0;
}

namespace detail {

void WorkState::complete() {
    if (traced_issue_s >= 0)
        if (Tracer* t = trace_active())
            t->comm_span(comm_op_name(op), seq, full_bytes, traced_issue_s, now_seconds());
    {
        std::lock_guard<std::mutex> lock(mu);
        finished = true;
    }
    cv.notify_all();
}

void WorkState::fail(const std::string& message) {
    {
        std::lock_guard<std::mutex> lock(mu);
        error = message.empty() ? "communication failed" : message;
        finished = true;
    }
    cv.notify_all();
}

std::shared_ptr<WorkState> make_work_state(CommOp op, std::shared_ptr<ExposedSink> sink) {
    auto s = std::make_shared<WorkState>();
    s->op = op;
    s->sink = std::move(sink);
    if (Tracer* t = trace_active(); t && t->recording()) s->traced_issue_s = now_seconds();
    return s;
}

}  // namespace detail

void Work::wait() {
    if (!state_) return;
    double t0 = now_seconds();
    std::string error;
    {
        std::unique_lock<std::mutex> lock(state_->mu);
        state_->cv.wait(lock, [&] { return state_->finished; });
        error = state_->error;
    }
    double waited = now_seconds() - t0;
    if (state_->sink) {
        std::lock_guard<std::mutex> lock(state_->sink->mu);
        if (state_->sink->stats) (*state_->sink->stats)[state_->op].exposed_s += waited;
    }
    ZT_CHECK(error.empty(), "%s failed: %s", comm_op_name(state_->op), error.c_str());
}

// A host wait for now (see communicator.h); the stream is for the CUDA path.
void Work::wait_on_stream(void* stream) {
    (void)stream;
    wait();
}

bool Work::done() const {
    if (!state_) return true;
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->finished;
}

}  // namespace zt
