// Bootstrap of the nccl backend: rank 0's NCCL unique id reaches every rank.
//
// Two paths, chosen from how the ranks were started:
//   - MPI (this build has MPI and an MPI launcher started us: mpirun, or srun
//     with PMI/PMIx): MPI_Bcast from rank 0 of MPI_COMM_WORLD.
//   - TCP (otherwise; torchrun and Slurm batch scripts set MASTER_ADDR and
//     MASTER_PORT): rank 0 listens on MASTER_PORT (ZT_BOOTSTRAP_PORT, when
//     set, takes its place, for launchers that hold MASTER_PORT themselves),
//     every other rank connects to MASTER_ADDR with bounded retries, says who
//     it is, and receives the id.
// Invariant: every wait has a deadline (timeout_s); running out of it is an
// error that names the rank, the address and what it was waiting for.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/nccl/nccl.h"
#include "comm/tcp/socket.h"
#include "core/check.h"
#include "prof/timer.h"

#if ZT_HAVE_MPI
#include "comm/mpi/runtime.h"
#endif

namespace zt {

namespace {

constexpr uint32_t kHelloMagic = 0x5a54424e;  // "ZTBN"

struct Hello {
    uint32_t magic = kHelloMagic;
    int32_t rank = 0;
    int32_t world = 0;
    uint32_t id_bytes = 0;
};

const char* env_or_null(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

#if ZT_HAVE_MPI
bool started_by_mpi_launcher(const RankInfo& ranks) {
    if (ranks.source == "mpirun" || ranks.source == "pmi") return true;
    // srun --mpi=pmix is discovered as "slurm", but MPI works there too.
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                          "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE"})
        if (env_or_null(v)) return true;
    return false;
}
#endif

std::string bootstrap_port(std::string* from) {
    const char* v = env_or_null("ZT_BOOTSTRAP_PORT");
    *from = "ZT_BOOTSTRAP_PORT";
    if (!v) {
        v = env_or_null("MASTER_PORT");
        *from = "MASTER_PORT";
    }
    ZT_CHECK(v != nullptr,
             "nccl bootstrap without MPI needs MASTER_ADDR and MASTER_PORT (as torchrun sets "
             "them); MASTER_PORT is not set");
    char* end = nullptr;
    long port = std::strtol(v, &end, 10);
    ZT_CHECK(*end == '\0' && port > 0 && port < 65536, "%s '%s': expected a TCP port 1-65535",
             from->c_str(), v);
    return v;
}

// Rank 0: accept world - 1 peers, send each the id.
void serve_id(const void* id, size_t n, const RankInfo& ranks, double timeout_s) {
    std::string port_from;
    std::string port = bootstrap_port(&port_from);
    std::string last_error;
    Socket listener = socket_listen(port, ranks.world, &last_error);
    ZT_CHECK(listener.fd() >= 0, "nccl bootstrap: rank 0 cannot listen on port %s (%s): %s%s",
             port.c_str(), port_from.c_str(), last_error.c_str(),
             port_from == "MASTER_PORT"
                 ? "; if the launcher holds MASTER_PORT itself, set ZT_BOOTSTRAP_PORT to a free "
                   "port on every rank"
                 : "");

    double deadline = now_seconds() + timeout_s;
    std::vector<bool> served(size_t(ranks.world), false);
    int remaining = ranks.world - 1;
    while (remaining > 0) {
        ZT_CHECK(socket_wait(listener.fd(), POLLIN, deadline),
                 "nccl bootstrap: rank 0 waited %g s on port %s (%s) and only %d of %d ranks "
                 "connected; are all ranks running with the same MASTER_ADDR and port, and can "
                 "they reach this host?",
                 timeout_s, port.c_str(), port_from.c_str(), ranks.world - 1 - remaining,
                 ranks.world - 1);
        Socket peer(::accept(listener.fd(), nullptr, nullptr));
        if (peer.fd() < 0) continue;  // EAGAIN after a spurious wake-up, or an aborted connect
        socket_set_nonblocking(peer.fd());
        Hello hello;
        std::string err = socket_recv_all(peer.fd(), &hello, sizeof hello, deadline);
        // A stray connection (a port scanner, a stale rank) is not ours: ignore it.
        if (!err.empty() || hello.magic != kHelloMagic) continue;
        ZT_CHECK(hello.world == ranks.world && hello.id_bytes == n,
                 "nccl bootstrap: rank %d reports world size %d (id %u bytes), rank 0 has %d "
                 "(%zu bytes); were the ranks started with different WORLD_SIZE?",
                 hello.rank, hello.world, hello.id_bytes, ranks.world, n);
        ZT_CHECK(hello.rank > 0 && hello.rank < ranks.world && !served[size_t(hello.rank)],
                 "nccl bootstrap: a peer claims rank %d, %s", hello.rank,
                 hello.rank > 0 && hello.rank < ranks.world ? "which already connected"
                                                            : "outside the world");
        err = socket_send_all(peer.fd(), id, n, deadline);
        ZT_CHECK(err.empty(), "nccl bootstrap: rank 0 could not send the id to rank %d: %s",
                 hello.rank, err.c_str());
        served[size_t(hello.rank)] = true;
        remaining--;
    }
}

// Ranks > 0: connect to rank 0, retrying until the deadline, and receive the id.
void fetch_id(void* id, size_t n, const RankInfo& ranks, double timeout_s) {
    const char* addr = env_or_null("MASTER_ADDR");
    ZT_CHECK(addr != nullptr,
             "nccl bootstrap without MPI needs MASTER_ADDR and MASTER_PORT (as torchrun sets "
             "them); MASTER_ADDR is not set");
    std::string port_from;
    std::string port = bootstrap_port(&port_from);
    double deadline = now_seconds() + timeout_s;
    std::string last_error;
    int attempts = 0;
    // Rank 0 may not be listening yet, or may drop a greeting that came too
    // early: connect again until the deadline.
    while (now_seconds() < deadline) {
        int tries = 0;
        Socket s = socket_connect_retrying(addr, port, deadline, &last_error, &tries);
        attempts += tries;
        if (s.fd() < 0) break;
        Hello hello;
        hello.rank = ranks.rank;
        hello.world = ranks.world;
        hello.id_bytes = uint32_t(n);
        std::string err = socket_send_all(s.fd(), &hello, sizeof hello, deadline);
        if (err.empty()) err = socket_recv_all(s.fd(), id, n, deadline);
        if (err.empty()) return;
        last_error = err;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ZT_FAIL(
        "nccl bootstrap: rank %d could not get the NCCL id from rank 0 at %s:%s (MASTER_ADDR, "
        "%s) within %g s, %d attempts; last error: %s. Is rank 0 running, and is the port "
        "reachable from this host?",
        ranks.rank, addr, port.c_str(), port_from.c_str(), timeout_s, attempts, last_error.c_str());
}

}  // namespace

void nccl_bootstrap_broadcast(void* bytes, size_t n, const RankInfo& ranks, double timeout_s) {
    if (ranks.world <= 1) return;
#if ZT_HAVE_MPI
    if (started_by_mpi_launcher(ranks)) {
        MpiRuntime& mpi = MpiRuntime::instance();
        ZT_CHECK(mpi.rank() == ranks.rank && mpi.world_size() == ranks.world,
                 "nccl bootstrap: MPI says rank %d of %d, the launcher's variables (%s) rank %d "
                 "of %d",
                 mpi.rank(), mpi.world_size(), ranks.source.c_str(), ranks.rank, ranks.world);
        mpi.acquire("nccl bootstrap");
        struct Release {
            MpiRuntime& m;
            ~Release() { m.release(); }
        } release{mpi};
        ZT_MPI_CHECK(MPI_Bcast(bytes, int(n), MPI_BYTE, 0, MPI_COMM_WORLD));
        return;
    }
#endif
    if (ranks.rank == 0) {
        serve_id(bytes, n, ranks, timeout_s);
    } else {
        fetch_id(bytes, n, ranks, timeout_s);
    }
}

}  // namespace zt
