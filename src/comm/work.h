// The shared state behind a Work handle, for backends to complete.
//
// A backend creates the state when an operation is issued, and the thread
// that runs the operation calls complete() (or fail()) exactly once. Work::wait
// blocks on the condition variable and adds its blocked time to the
// communicator's exposed-time counter for that op.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include "comm/communicator.h"

namespace zt::detail {

// Exposed-time sink, owned by the communicator; wait() adds to it.
struct ExposedSink {
    std::mutex mu;
    CommStats* stats = nullptr;  // guarded by mu
};

struct WorkState {
    CommOp op = CommOp::barrier;
    std::shared_ptr<ExposedSink> sink;  // may be null (not accounted)
    uint64_t seq = 0;                   // for --trace (prof/trace.h): set by the issuer
    int64_t full_bytes = 0;
    double traced_issue_s = -1;  // when issued while tracing; < 0 untraced

    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    std::string error;  // non-empty when the operation failed

    void complete();
    void fail(const std::string& message);
};

std::shared_ptr<WorkState> make_work_state(CommOp op, std::shared_ptr<ExposedSink> sink);

}  // namespace zt::detail
