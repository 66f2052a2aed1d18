// Chrome trace-event recording for `zerotrain train --trace`.
//
// Each rank records complete ("X") events into memory: tid 0 holds compute
// spans (each unit's forward and backward, data, optimizer step, checkpoint),
// tid 1 every collective from issue to completion with args {op, bytes, seq}.
// At the end each rank writes RUN_DIR/trace-rank-K.json, one event a line, and
// after a barrier rank 0 concatenates them into RUN_DIR/trace.json (pid =
// rank), which Perfetto and chrome://tracing open.
//
// Invariant: with tracing off no tracer exists, and every hook is one null
// pointer test (trace_active()). Times are microseconds since the tracer's
// origin, which each rank takes right after a barrier, so ranks line up to
// within a barrier's skew. Recording is limited to steps [first, last]: a
// span or collective is kept when it begins while the current step lies in
// the window.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace zt {

// --trace-steps A:B (1-based, inclusive). The default traces every step.
struct TraceSteps {
    int64_t first = 1;
    int64_t last = INT64_MAX;
};

// Parses "A:B" (A >= 1, B >= A) or "A" (that one step); refuses anything else,
// naming the flag.
TraceSteps parse_trace_steps(const std::string& text);

class Tracer {
  public:
    static constexpr int kComputeTid = 0;
    static constexpr int kCommTid = 1;

    Tracer(int rank, TraceSteps steps, double origin_s);

    // The step (1-based) the following work belongs to.
    void set_step(int64_t step);
    bool recording() const { return recording_.load(std::memory_order_relaxed); }

    // A complete event from t0 to t1 (seconds, now_seconds()'s clock); `args`
    // is a JSON object's text or empty. Thread-safe.
    void span(int tid, const std::string& name, double t0_s, double t1_s,
              const std::string& args = "");
    // A collective's span; the issue time was taken when it was issued (and
    // only while recording).
    void comm_span(const char* op, uint64_t seq, int64_t bytes, double issued_s, double done_s);

    // The UnitHooks calls, as the engine sees them: a unit's span runs from
    // its acquire to its release (an embedding backward that acquires nothing,
    // from unit_grads to grads_ready) and is named "backward NAME" once a
    // gradient of this micro-batch is ready, else "forward NAME".
    void begin_micro();
    void unit_acquire(int unit);
    void unit_release(int unit, const std::string& name);
    void unit_grads(int unit);
    void unit_grads_ready(int unit, const std::string& name);

    // This rank's events, one JSON object a line (with its metadata events).
    std::string rank_lines() const;
    size_t size() const;

  private:
    struct OpenUnit {
        int depth = 0;           // acquires not yet released
        double start = 0;        // of the acquire span
        bool grad_only = false;  // a span opened by unit_grads with no acquire
        double grad_start = 0;
    };
    OpenUnit& open(int unit);

    int rank_;
    TraceSteps steps_;
    double origin_s_;
    std::atomic<bool> recording_{false};  // read where collectives are issued
    bool backward_ = false;               // some grads_ready in this micro-batch
    std::vector<OpenUnit> units_;         // engine thread only

    mutable std::mutex mu_;
    std::vector<std::string> events_;  // guarded by mu_
};

// --trace as the command line asked for it: a process setting that each rank
// parses from the same flags, read when training starts.
struct TraceRequest {
    bool on = false;
    TraceSteps steps;
};
TraceRequest& trace_request();

// The process's tracer, or null when tracing is off (the hooks' only cost).
Tracer* trace_active();
void set_trace_active(Tracer* tracer);

// Spans the scope on the compute thread when tracing.
class TraceScope {
  public:
    explicit TraceScope(const char* name);
    ~TraceScope();
    TraceScope(const TraceScope&) = delete;
    TraceScope& operator=(const TraceScope&) = delete;

  private:
    Tracer* tracer_;
    const char* name_;
    double start_ = 0;
};

// Collective: writes dir/trace-rank-K.json; rank 0, after the barrier the
// caller runs between the two, merges every rank's into dir/trace.json and
// removes the per-rank files.
void write_rank_trace(const Tracer& tracer, const std::string& dir, int rank);
void merge_rank_traces(const std::string& dir, int world);

}  // namespace zt
