// tcp: the collectives over plain TCP sockets, for machines without MPI
// (a lent GPU machine has none) and for ranks started by torchrun or by
// zerotrain's own --nproc launcher (comm/launch.h).
//
// Bootstrap: rank and world come from the launcher's variables (RANK /
// WORLD_SIZE and the others discover_ranks reads); rank 0 listens on
// MASTER_PORT, every other rank connects to MASTER_ADDR (retrying while rank
// 0 starts), says its rank, the world and the port of its own listener, and
// gets every rank's address and port back; then each pair of ranks opens one
// connection, the higher rank connecting to the lower. Every wait there has
// the communicator's timeout (300 s when the watchdog is off) and running out
// names the rank, the address and what it waited for.
//
// Schedule (n ranks, rank r, left r-1 and right r+1 mod n): reduce-scatter
// is the ring's n-1 steps, each sending one block right and receiving one
// from the left, which it combines into its own (comm/reduce.h: one bf16
// rounding per hop); all-gather the ring's n-1 steps of copies; all-reduce
// both, over blocks of count*k/n; broadcast a chain from the root; barrier
// empty messages for an all-reduce's 2(n-1) steps. The bytes each rank
// sends are comm_wire_bytes' ring figures (for an all-reduce whose count n
// does not divide, up to its uneven blocks) for every operation but
// broadcast, where the chain's ranks send the whole buffer once (the last
// one nothing).
//
// Invariant: every message carries a 16-byte header (op, dtype, bytes); the
// receiver refuses one that is not the message it expects, naming both, so
// ranks that issued different operations fail instead of reading each
// other's bytes as data. A peer that closes its connection (it exited or was
// killed) is an error naming that rank.
#pragma once

#include <memory>

#include "comm/communicator.h"

namespace zt {

std::unique_ptr<Communicator> make_tcp_communicator(const CommOptions& opt);

}  // namespace zt
