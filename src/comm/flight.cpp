// The flight recorder's ring, the hang records it writes and the diagnosis
// read back from them (see flight.h for the files and the invariant).
#include "comm/flight.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace zt {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

double monotonic_s() {
    using clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC: one clock per machine
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

double wall_s() {
    using clock = std::chrono::system_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

std::string host_name() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0) return "?";
    return buf;
}

const char* op_name(const CommSignature& s) {
    return comm_op_name(s.op < uint8_t(CommOp::count) ? CommOp(s.op) : CommOp::count);
}

json entry_json(const FlightEntry& e) {
    json j;
    j["seq"] = e.sig.seq;
    j["op"] = op_name(e.sig);
    j["count"] = e.sig.count;
    j["dtype"] = e.sig.dtype < kDTypeCount ? dtype_name(DType(e.sig.dtype)) : "?";
    if (e.sig.reduce <= uint8_t(ReduceOp::max))
        j["reduce"] = reduce_op_name(ReduceOp(e.sig.reduce));
    if (e.sig.root >= 0) j["root"] = e.sig.root;
    j["what"] = comm_signature_string(e.sig);
    j["step"] = e.step;
    j["state"] = e.failed            ? "failed"
                 : e.completed_s > 0 ? "done"
                 : e.started_s > 0   ? "running"
                                     : "queued";
    j["issued_s"] = e.issued_s;
    j["issued_wall"] = e.issued_wall;
    if (e.started_s > 0) j["started_s"] = e.started_s;
    if (e.completed_s > 0) {
        j["completed_s"] = e.completed_s;
        j["completed_wall"] = e.completed_wall;
    }
    return j;
}

// rank-K.json -> K; -1 for any other name (the .tmp of a record being written).
int record_rank(const std::string& name) {
    int rank = -1;
    char tail[8] = {0};
    if (std::sscanf(name.c_str(), "rank-%d.%7s", &rank, tail) != 2) return -1;
    return std::strcmp(tail, "json") == 0 && rank >= 0 ? rank : -1;
}

// "0, 1 and 3"
std::string rank_list(const std::vector<int>& ranks) {
    std::string s;
    const size_t shown = std::min<size_t>(ranks.size(), 16);
    for (size_t i = 0; i < shown; i++) {
        if (i > 0) s += i + 1 == ranks.size() ? " and " : ", ";
        s += std::to_string(ranks[i]);
    }
    if (shown < ranks.size()) s += strprintf(" and %zu more", ranks.size() - shown);
    return s;
}

std::string ranks_word(const std::vector<int>& ranks) {
    return (ranks.size() == 1 ? "rank " : "ranks ") + rank_list(ranks);
}

// What a rank's record says it was doing: "in all_reduce #12 (...) of step 3 for 3.4 s".
std::string doing(const json& r) {
    const json& in = r.value("inflight", json());
    if (in.is_object())
        return strprintf("waited %.1f s in %s of step %lld", in.value("waited_s", 0.0),
                         in.value("what", std::string("?")).c_str(),
                         (long long)in.value("step", int64_t(0)));
    return strprintf("was in no collective (last issued #%lld, step %lld)",
                     (long long)r.value("last_issued", int64_t(-1)),
                     (long long)r.value("step", int64_t(0)));
}

// The last collective a record lists: "reduce_scatter #1219 (2048 x f32, sum) of step 7, done".
std::string last_entry(const json& r) {
    const json& c = r.value("collectives", json::array());
    if (!c.is_array() || c.empty()) return "no collective yet";
    const json& e = c.back();
    return strprintf("%s of step %lld (%s)", e.value("what", std::string("?")).c_str(),
                     (long long)e.value("step", int64_t(0)),
                     e.value("state", std::string("?")).c_str());
}

}  // namespace

// ---- the ring ----------------------------------------------------------------------

FlightEntry* FlightRecorder::find(uint64_t seq) {
    FlightEntry& e = ring_[seq % ring_.size()];
    return e.sig.seq == seq && seq < issued_ ? &e : nullptr;
}

void FlightRecorder::issue(const CommSignature& sig, int64_t step) {
    std::lock_guard<std::mutex> lock(mu_);
    FlightEntry& e = ring_[sig.seq % ring_.size()];
    e = FlightEntry{};
    e.sig = sig;
    e.step = step;
    e.issued_s = monotonic_s();
    e.issued_wall = wall_s();
    issued_ = std::max(issued_, sig.seq + 1);
}

void FlightRecorder::start(uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    if (FlightEntry* e = find(seq)) e->started_s = monotonic_s();
}

void FlightRecorder::finish(uint64_t seq, bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ok) last_completed_ = std::max(last_completed_, int64_t(seq));
    if (FlightEntry* e = find(seq)) {
        e->completed_s = monotonic_s();
        e->completed_wall = wall_s();
        e->failed = !ok;
    }
}

std::vector<FlightEntry> FlightRecorder::entries() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<FlightEntry> out;
    const uint64_t n = std::min<uint64_t>(issued_, ring_.size());
    for (uint64_t seq = issued_ - n; seq < issued_; seq++) out.push_back(ring_[seq % ring_.size()]);
    return out;
}

int64_t FlightRecorder::last_issued() const {
    std::lock_guard<std::mutex> lock(mu_);
    return int64_t(issued_) - 1;
}

int64_t FlightRecorder::last_completed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_completed_;
}

// ---- the records -------------------------------------------------------------------

std::string hang_dir(const std::string& run_dir) {
    return (fs::path(run_dir) / "hang").string();
}

std::string hang_record_path(const std::string& run_dir, int rank) {
    return (fs::path(hang_dir(run_dir)) / strprintf("rank-%d.json", rank)).string();
}

std::string hang_marker_path(const std::string& run_dir) {
    return (fs::path(hang_dir(run_dir)) / "timeout.json").string();
}

std::string write_hang_record(const std::string& run_dir, const HangRecordInfo& info,
                              const FlightRecorder& recorder) {
    try {
        json j;
        j["rank"] = info.rank;
        j["world"] = info.world;
        j["pid"] = int64_t(getpid());
        j["host"] = host_name();
        j["backend"] = info.backend;
        j["reason"] = info.reason;
        j["timeout_s"] = info.timeout_s;
        j["step"] = info.step;
        j["written_s"] = monotonic_s();
        j["written_wall"] = wall_s();
        j["last_issued"] = recorder.last_issued();
        j["last_completed"] = recorder.last_completed();
        const std::vector<FlightEntry> entries = recorder.entries();
        if (info.inflight) {
            int64_t step = info.step;
            for (const FlightEntry& e : entries)
                if (e.sig.seq == info.inflight_sig.seq) step = e.step;
            j["inflight"] = {{"seq", info.inflight_sig.seq},
                             {"op", op_name(info.inflight_sig)},
                             {"count", info.inflight_sig.count},
                             {"what", comm_signature_string(info.inflight_sig)},
                             {"step", step},
                             {"waited_s", info.inflight_waited_s}};
        } else {
            j["inflight"] = nullptr;
        }
        j["collectives"] = json::array();
        for (const FlightEntry& e : entries) j["collectives"].push_back(entry_json(e));

        std::error_code ec;
        fs::create_directories(hang_dir(run_dir), ec);
        const std::string path = hang_record_path(run_dir, info.rank);
        const std::string tmp = path + ".tmp";
        {
            std::ofstream f(tmp, std::ios::trunc);
            f << j.dump(1) << "\n";
            f.close();
            if (!f) return "cannot write " + tmp + ": " + std::strerror(errno);
        }
        fs::rename(tmp, path, ec);
        if (ec) return "cannot rename " + tmp + " to " + path + ": " + ec.message();
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

namespace {

json read_json_file(const fs::path& path) {
    try {
        std::ifstream f(path);
        if (!f) return json();
        return json::parse(f);
    } catch (const std::exception&) {
        return json();  // unreadable: as if absent
    }
}

std::string text_of(const json& j, const char* key) {
    return j.is_object() ? j.value(key, std::string("?")) : "?";
}

}  // namespace

bool claim_hang_marker(const std::string& run_dir, int rank, const std::string& what) {
    std::error_code ec;
    fs::create_directories(hang_dir(run_dir), ec);
    const std::string path = hang_marker_path(run_dir);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return false;
    json j = {{"rank", rank}, {"what", what}, {"wall", wall_s()}};
    std::string text = j.dump() + "\n";
    ssize_t n = ::write(fd, text.data(), text.size());
    (void)n;  // the marker's existence is what the other ranks look for
    ::close(fd);
    return true;
}

void seal_hang_marker(const std::string& run_dir, int rank, const std::string& what,
                      const std::vector<int>& present) {
    try {
        const std::string path = hang_marker_path(run_dir);
        {
            std::ofstream f(path + ".tmp", std::ios::trunc);
            f << json{{"rank", rank}, {"what", what}, {"wall", wall_s()}, {"present", present}}
                     .dump()
              << "\n";
            if (!f) return;
        }
        std::error_code ec;
        fs::rename(path + ".tmp", path, ec);
    } catch (const std::exception&) {
    }
}

bool hang_marker_sealed(const std::string& run_dir) {
    const json j = read_json_file(hang_marker_path(run_dir));
    return j.is_object() && j.contains("present");
}

std::vector<int> hang_record_ranks(const std::string& run_dir) {
    std::vector<int> ranks;
    std::error_code ec;
    for (fs::directory_iterator it(hang_dir(run_dir), ec), end; !ec && it != end;
         it.increment(ec)) {
        int r = record_rank(it->path().filename().string());
        if (r >= 0) ranks.push_back(r);
    }
    std::sort(ranks.begin(), ranks.end());
    return ranks;
}

void clear_hang_records(const std::string& run_dir) {
    std::error_code ec;
    fs::remove_all(hang_dir(run_dir), ec);
}

// ---- the diagnosis -----------------------------------------------------------------

std::string diagnose_hang(const std::string& run_dir, int world, const HangEvidence& evidence) {
    std::map<int, json> records;
    for (int r : hang_record_ranks(run_dir)) {
        json j = read_json_file(hang_record_path(run_dir, r));
        if (j.is_object()) records[r] = std::move(j);
    }
    if (records.empty()) return "";
    const json marker = read_json_file(hang_marker_path(run_dir));
    const int first = marker.is_object() ? marker.value("rank", -1) : -1;
    std::vector<int> in_time;  // sealed by the first rank: the records there in time
    const bool sealed = marker.is_object() && marker.contains("present");
    if (sealed) in_time = marker["present"].get<std::vector<int>>();
    for (const auto& [rank, r] : records) world = std::max(world, r.value("world", 0));

    auto has = [](const std::vector<int>& v, int x) {
        return std::find(v.begin(), v.end(), x) != v.end();
    };
    std::vector<int> answered, silent;  // wrote a record in time / did not
    for (int r = 0; r < world; r++)
        (records.count(r) && (!sealed || has(in_time, r)) ? answered : silent).push_back(r);

    // The collectives the answering ranks were in, lowest sequence number first.
    std::map<int64_t, std::vector<int>> by_seq;
    for (int r : answered) {
        const json& in = records[r]["inflight"];
        if (in.is_object()) by_seq[in.value("seq", int64_t(-1))].push_back(r);
    }
    auto inflight_text = [&](int r) {
        const json& in = records[r]["inflight"];
        return strprintf("%s of step %lld", text_of(in, "what").c_str(),
                         (long long)in.value("step", int64_t(0)));
    };

    std::vector<int> behind;
    std::string verdict;
    if (!silent.empty()) {
        behind = silent;
        std::string waited;
        if (!by_seq.empty()) {
            const auto& [seq, ranks] = *by_seq.begin();
            waited =
                strprintf(": %s waited in %s, which %s did not complete", ranks_word(ranks).c_str(),
                          inflight_text(ranks.front()).c_str(), ranks_word(behind).c_str());
        }
        std::vector<int> dead, other;
        for (int r : silent) (has(evidence.dead, r) ? dead : other).push_back(r);
        std::string why;
        if (!other.empty())
            why = strprintf(
                "; %s wrote no record in time, as a stopped (SIGSTOP), frozen or "
                "dead process cannot",
                ranks_word(other).c_str());
        if (!dead.empty()) why += strprintf("; %s died", ranks_word(dead).c_str());
        for (const auto& [r, seconds] : evidence.stopped)
            if (has(silent, r))
                why += strprintf("; the launcher saw rank %d stopped (state T) for %.1f s", r,
                                 seconds);
        verdict = strprintf("%s %s the one the others waited for%s%s", ranks_word(behind).c_str(),
                            behind.size() == 1 ? "is" : "are", waited.c_str(), why.c_str());
    } else {
        int64_t lowest = INT64_MAX, highest = INT64_MIN;
        for (int r : answered) {
            int64_t s = records[r].value("last_issued", int64_t(-1));
            lowest = std::min(lowest, s);
            highest = std::max(highest, s);
        }
        if (lowest < highest) {
            for (int r : answered)
                if (records[r].value("last_issued", int64_t(-1)) == lowest) behind.push_back(r);
            const json& r0 = records[behind.front()];
            verdict = strprintf(
                "%s %s behind: %s last issued collective is %s, while the others issued up to "
                "#%lld; %s",
                ranks_word(behind).c_str(), behind.size() == 1 ? "is" : "are",
                behind.size() == 1 ? "its" : "their", last_entry(r0).c_str(), (long long)highest,
                r0["inflight"].is_object()
                    ? "it is still in a collective the others finished"
                    : "it is in no collective: busy or stuck outside communication (computing, "
                      "loading data, writing files)");
        } else if (by_seq.size() > 1) {
            // The same collectives issued everywhere, but some communication
            // thread is still at an earlier one.
            behind = by_seq.begin()->second;
            verdict = strprintf("%s %s behind: still in %s while the others are past it",
                                ranks_word(behind).c_str(), behind.size() == 1 ? "is" : "are",
                                inflight_text(behind.front()).c_str());
        } else {
            verdict = strprintf(
                "no rank is behind: every rank issued up to #%lld and %s; a collective that "
                "completes nowhere points at the network or the MPI library",
                (long long)highest,
                by_seq.empty() ? "none is in a collective"
                               : ("all wait in " + inflight_text(answered.front())).c_str());
        }
    }

    std::string out;
    auto line = [&](const std::string& s) { out += "zerotrain: hang: " + s + "\n"; };
    line(verdict);
    std::map<std::string, std::vector<int>> waits;  // what they did -> the other ranks
    for (int r : answered)
        if (!has(behind, r)) waits[doing(records[r])].push_back(r);
    for (const auto& [what, ranks] : waits)
        line(ranks_word(ranks) + " " + what +
             (has(ranks, first) ? strprintf(" (rank %d timed out first)", first) : ""));
    for (int r : behind) {
        if (!records.count(r)) continue;
        const bool late = sealed && !has(in_time, r);
        line(strprintf("rank %d%s %s", r,
                       late ? ", in a record written after the others gave up on it (when "
                              "mpirun's abort let it run again),"
                            : "",
                       doing(records[r]).c_str()));
    }
    line(strprintf("each rank's last %zu collectives: %s/rank-K.json", kFlightEntries,
                   hang_dir(run_dir).c_str()));
    return out;
}

}  // namespace zt
