#include "prof/trace.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "prof/timer.h"

namespace zt {

namespace {

std::atomic<Tracer*> g_tracer{nullptr};  // read on the communication thread

// Names here are unit and op names, but a quote or backslash must not break the file.
std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            out += strprintf("\\u%04x", c);
            continue;
        }
        out += c;
    }
    return out + "\"";
}

std::string rank_file(const std::string& dir, int rank) {
    return strprintf("%s/trace-rank-%d.json", dir.c_str(), rank);
}

}  // namespace

TraceSteps parse_trace_steps(const std::string& text) {
    TraceSteps s;
    long long a = 0, b = 0;
    char tail = 0;
    const size_t colon = text.find(':');
    bool ok = colon == std::string::npos
                  ? std::sscanf(text.c_str(), "%lld%c", &a, &tail) == 1 && (b = a, true)
                  : std::sscanf(text.c_str(), "%lld:%lld%c", &a, &b, &tail) == 2;
    ZT_CHECK(ok && a >= 1 && b >= a,
             "--trace-steps %s: expected A:B with 1 <= A <= B (the steps, 1-based and inclusive, "
             "to record), or one step A",
             text.c_str());
    s.first = a;
    s.last = b;
    return s;
}

Tracer::Tracer(int rank, TraceSteps steps, double origin_s)
    : rank_(rank), steps_(steps), origin_s_(origin_s) {}

void Tracer::set_step(int64_t step) {
    recording_ = step >= steps_.first && step <= steps_.last;
}

void Tracer::span(int tid, const std::string& name, double t0_s, double t1_s,
                  const std::string& args) {
    const double ts = (t0_s - origin_s_) * 1e6, dur = (t1_s - t0_s) * 1e6;
    std::string e =
        strprintf("{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"name\":", rank_,
                  tid, ts, dur > 0 ? dur : 0.0) +
        json_string(name);
    if (!args.empty()) e += ",\"args\":" + args;
    e += "}";
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
}

void Tracer::comm_span(const char* op, uint64_t seq, int64_t bytes, double issued_s,
                       double done_s) {
    span(kCommTid, op, issued_s, done_s,
         strprintf("{\"op\":\"%s\",\"bytes\":%lld,\"seq\":%llu}", op, (long long)bytes,
                   (unsigned long long)seq));
}

Tracer::OpenUnit& Tracer::open(int unit) {
    if (size_t(unit) >= units_.size()) units_.resize(size_t(unit) + 1);
    return units_[size_t(unit)];
}

void Tracer::begin_micro() {
    backward_ = false;
}

void Tracer::unit_acquire(int unit) {
    OpenUnit& u = open(unit);
    if (u.depth++ == 0) u.start = now_seconds();
}

void Tracer::unit_release(int unit, const std::string& name) {
    OpenUnit& u = open(unit);
    if (u.depth == 0 || --u.depth > 0) return;
    if (recording())
        span(kComputeTid, (backward_ ? "backward " : "forward ") + name, u.start, now_seconds());
}

void Tracer::unit_grads(int unit) {
    OpenUnit& u = open(unit);
    if (u.depth > 0 || u.grad_only) return;
    u.grad_only = true;
    u.grad_start = now_seconds();
}

void Tracer::unit_grads_ready(int unit, const std::string& name) {
    backward_ = true;
    OpenUnit& u = open(unit);
    if (!u.grad_only) return;
    u.grad_only = false;
    if (recording()) span(kComputeTid, "backward " + name, u.grad_start, now_seconds());
}

std::string Tracer::rank_lines() const {
    std::string out = strprintf(
        "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"rank %d\"}}\n"
        "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":%d}}\n"
        "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":"
        "\"compute\"}}\n"
        "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":"
        "\"comm\"}}\n",
        rank_, rank_, rank_, rank_, rank_, kComputeTid, rank_, kCommTid);
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : events_) out += e + "\n";
    return out;
}

size_t Tracer::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
}

TraceRequest& trace_request() {
    static TraceRequest request;
    return request;
}

Tracer* trace_active() {
    return g_tracer.load(std::memory_order_acquire);
}

void set_trace_active(Tracer* tracer) {
    g_tracer.store(tracer, std::memory_order_release);
}

TraceScope::TraceScope(const char* name) : tracer_(trace_active()), name_(name) {
    if (tracer_ && !tracer_->recording()) tracer_ = nullptr;
    if (tracer_) start_ = now_seconds();
}

TraceScope::~TraceScope() {
    if (tracer_) tracer_->span(Tracer::kComputeTid, name_, start_, now_seconds());
}

void write_rank_trace(const Tracer& tracer, const std::string& dir, int rank) {
    const std::string path = rank_file(dir, rank), tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << tracer.rank_lines();
        f.flush();
        ZT_CHECK(f.good(), "rank %d: --trace: cannot write %s", rank, tmp.c_str());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    ZT_CHECK(!ec, "rank %d: --trace: cannot rename %s to %s: %s", rank, tmp.c_str(), path.c_str(),
             ec.message().c_str());
}

void merge_rank_traces(const std::string& dir, int world) {
    const std::string path = dir + "/trace.json", tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
        bool first = true;
        for (int r = 0; r < world; r++) {
            std::ifstream in(rank_file(dir, r), std::ios::binary);
            ZT_CHECK(in.good(), "--trace: rank %d's trace %s is missing", r,
                     rank_file(dir, r).c_str());
            for (std::string line; std::getline(in, line);) {
                if (line.empty()) continue;
                out << (first ? "" : ",\n") << line;
                first = false;
            }
        }
        out << "\n]}\n";
        out.flush();
        ZT_CHECK(out.good(), "--trace: cannot write %s", tmp.c_str());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    ZT_CHECK(!ec, "--trace: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(),
             ec.message().c_str());
    for (int r = 0; r < world; r++) std::filesystem::remove(rank_file(dir, r), ec);
}

}  // namespace zt
