// Wall-clock timing for step breakdowns.
#pragma once

#include <chrono>

namespace zt {

inline double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Adds the elapsed time of its scope to a double.
class ScopedTimer {
public:
    explicit ScopedTimer(double* sink) : sink_(sink), start_(now_seconds()) {}
    ~ScopedTimer() { *sink_ += now_seconds() - start_; }
    ScopedTimer(const ScopedTimer&) = delete;
    ScopedTimer& operator=(const ScopedTimer&) = delete;

private:
    double* sink_;
    double start_;
};

}  // namespace zt
