// simnet: a decorator that makes any backend behave as if its ranks were
// joined by a slower network.
//
// Each operation takes the time the ring algorithm would need on a link of the
// given bandwidth and latency (the alpha-beta model):
//   modeled_s = comm_ring_steps(op, n) * latency_s
//             + comm_wire_bytes(op, full_bytes, n) * 8 / (bandwidth_gbps * 1e9)
// (a recv is charged the wire time of the send it receives). Operations share
// one simulated link, in issue order: an operation starts when it is issued or
// when the one before it finished, whichever is later, and completes at
// max(the inner operation's completion, start + modeled_s).
//
// Invariant: the delay is spent on the decorator's communication thread, never
// on the caller's, so computation between op_async() and wait() overlaps the
// simulated transfer exactly as it would overlap a real one.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace zt {

// bandwidth_gbps: gigaBITS per second (10^9 bit/s); 0 = unlimited.
// latency_us: per ring step, in microseconds; 0 = none.
// Stats: calls and wire bytes are the inner backend's; busy_s is the simulated
// in-flight time (start to completion on the simulated link); exposed_s is the
// time callers waited in Work::wait() on this decorator's handles.
std::unique_ptr<Communicator> make_simnet(std::unique_ptr<Communicator> inner,
                                          double bandwidth_gbps, double latency_us);

// The alpha-beta time the decorator gives one operation on `full_bytes` (the
// full array, as comm_wire_bytes takes it) at world size `world`.
double simnet_modeled_seconds(CommOp op, int64_t full_bytes, int world, double bandwidth_gbps,
                              double latency_us);

}  // namespace zt
