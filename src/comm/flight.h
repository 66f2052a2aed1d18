// The flight recorder: every rank keeps its last collectives, so that when
// one stalls the job can say which rank is behind and where.
//
// A QueuedCommunicator records each collective it issues (sequence number,
// op, element count, dtype, training step) with its issue, start and
// completion times, monotonic and wall clock, in a ring of the last
// kFlightEntries. On a collective timeout every rank still alive writes the
// ring to RUN_DIR/hang/rank-K.json (written to a .tmp name and renamed, so a
// reader never sees half of one):
//
//   {"rank":2,"world":4,"pid":1234,"host":"h","backend":"mpi","reason":"timeout",
//    "timeout_s":3,"step":7,"written_wall":1712345678.1,
//    "last_issued":1221,"last_completed":1219,
//    "inflight":{"seq":1220,"op":"reduce_scatter","count":2048,"dtype":"f32",
//                "what":"reduce_scatter #1220 (2048 x f32, sum)","waited_s":3.4},
//    "collectives":[{"seq":1159,"op":"all_reduce","count":1,"dtype":"f32","step":6,
//                    "reduce":"avg","state":"done","issued_s":..,"issued_wall":..,
//                    "started_s":..,"completed_s":..,"completed_wall":..}, ...]}
//
// (`*_s` are CLOCK_MONOTONIC seconds, comparable between the ranks of one
// machine; `*_wall` are Unix seconds.) The first rank to time out also creates
// RUN_DIR/hang/timeout.json, naming itself; the other ranks see it on their
// watchdog's next tick and write their own record ("reason":"peer_timeout")
// while they wait. A rank that writes no record could not run at all: it is
// stopped (SIGSTOP), frozen, or dead, and it is the one the others waited for.
// The first rank waits a moment (record_grace_s in queued.cpp) for the
// records, seals timeout.json with the ranks whose records came in time, and
// only then ends the job; other ranks that time out leave the abort to it.
// (The abort makes mpirun continue a stopped rank, which may then write a
// record too late to count.)
//
// Invariant: RUN_DIR/hang only ever holds records of this run: rank 0 clears
// it when it is given the run directory, before it issues its next
// collective, and a rank acts on another's timeout.json only after one of its
// own collectives issued after that point has completed (which rank 0 took
// part in, so the directory was cleared by then).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "comm/queued.h"

namespace zt {

constexpr size_t kFlightEntries = 64;

// One collective as this rank saw it; a time of 0 has not happened yet.
struct FlightEntry {
    CommSignature sig;
    int64_t step = 0;  // the training step it was issued in (Communicator::set_step)
    double issued_s = 0, issued_wall = 0;
    double started_s = 0;  // the communication thread began running it
    double completed_s = 0, completed_wall = 0;
    bool failed = false;
};

// Thread-safe: issue() on the caller's thread, start()/finish() on the
// communication thread, entries() from the watchdog.
class FlightRecorder {
  public:
    void issue(const CommSignature& sig, int64_t step);
    void start(uint64_t seq);
    void finish(uint64_t seq, bool ok);
    // Oldest first; at most kFlightEntries.
    std::vector<FlightEntry> entries() const;
    // Highest sequence numbers issued / completed so far; -1 for none.
    int64_t last_issued() const;
    int64_t last_completed() const;

  private:
    FlightEntry* find(uint64_t seq);  // null once the ring moved past it; mu_ held

    mutable std::mutex mu_;
    std::vector<FlightEntry> ring_ = std::vector<FlightEntry>(kFlightEntries);
    uint64_t issued_ = 0;  // collectives issued (the next sequence number)
    int64_t last_completed_ = -1;
};

// What one rank writes beside its ring.
struct HangRecordInfo {
    int rank = 0;
    int world = 1;
    const char* backend = "";
    const char* reason = "timeout";  // "timeout", "peer_timeout", or "late" (after the seal)
    double timeout_s = 0;
    int64_t step = 0;
    bool inflight = false;  // a collective was running on the communication thread
    CommSignature inflight_sig;
    double inflight_waited_s = 0;
};

// RUN_DIR/hang
std::string hang_dir(const std::string& run_dir);
// RUN_DIR/hang/rank-K.json
std::string hang_record_path(const std::string& run_dir, int rank);
// RUN_DIR/hang/timeout.json
std::string hang_marker_path(const std::string& run_dir);

// Writes RUN_DIR/hang/rank-K.json (creating RUN_DIR/hang). Never throws:
// returns "" or what went wrong, for the caller to print.
std::string write_hang_record(const std::string& run_dir, const HangRecordInfo& info,
                              const FlightRecorder& recorder);
// Creates RUN_DIR/hang/timeout.json naming `rank` unless it exists; true when
// this call created it (this rank timed out first).
bool claim_hang_marker(const std::string& run_dir, int rank, const std::string& what);
// The first rank, once it stops waiting for the others: rewrites
// timeout.json with the ranks whose records were there in time. A record
// that comes later (a stopped rank that mpirun's abort continued) is still
// read, but its rank counts as the one that did not answer.
void seal_hang_marker(const std::string& run_dir, int rank, const std::string& what,
                      const std::vector<int>& present);
// Whether the first rank sealed timeout.json (the other ranks that time
// out wait for it before they end the job).
bool hang_marker_sealed(const std::string& run_dir);
// The ranks that have a rank-K.json in RUN_DIR/hang, ascending.
std::vector<int> hang_record_ranks(const std::string& run_dir);
// Rank 0, when it is given the run directory: removes a previous run's records.
void clear_hang_records(const std::string& run_dir);

// What the launcher knows beside the records.
struct HangEvidence {
    std::vector<int> dead;                        // ranks it saw die
    std::vector<std::pair<int, double>> stopped;  // ranks it saw stopped (state T), seconds
};

// Reads RUN_DIR/hang and names the rank(s) the others waited for: those with
// no record in time (stopped, frozen or dead: a rank that runs writes one)
// or, when every rank wrote one in time, those whose last issued collective
// is the lowest. Says at which collective, and what the others waited in.
// Lines end in '\n', each starting "zerotrain: hang: "; "" when RUN_DIR/hang
// holds no record.
std::string diagnose_hang(const std::string& run_dir, int world, const HangEvidence& evidence = {});

}  // namespace zt
