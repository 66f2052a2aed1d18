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
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/nccl/nccl.h"
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

// A file descriptor closed when it goes out of scope.
class Socket {
  public:
    Socket() = default;
    explicit Socket(int fd) : fd_(fd) {}
    ~Socket() {
        if (fd_ >= 0) ::close(fd_);
    }
    Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Socket& operator=(Socket&& o) noexcept {
        std::swap(fd_, o.fd_);
        return *this;
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    int fd() const { return fd_; }

  private:
    int fd_ = -1;
};

int ms_until(double deadline) {
    double left = deadline - now_seconds();
    return left <= 0 ? 0 : int(left * 1000) + 1;
}

// Waits until fd is ready for `events`; false when the deadline passed first.
bool wait_ready(int fd, short events, double deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, ms_until(deadline));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) return false;
    }
}

// Moves exactly n bytes, or returns why not ("" on success).
std::string send_all(int fd, const void* data, size_t n, double deadline) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
        if (!wait_ready(fd, POLLOUT, deadline)) return "timed out sending";
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return std::string("send: ") + std::strerror(errno);
        p += k;
        n -= size_t(k);
    }
    return "";
}

std::string recv_all(int fd, void* data, size_t n, double deadline) {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        if (!wait_ready(fd, POLLIN, deadline)) return "timed out receiving";
        ssize_t k = ::recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k == 0) return "the peer closed the connection";
        if (k < 0) return std::string("recv: ") + std::strerror(errno);
        p += k;
        n -= size_t(k);
    }
    return "";
}

void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL, 0);
    ZT_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0,
             "nccl bootstrap: fcntl(O_NONBLOCK) failed: %s", std::strerror(errno));
}

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
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(nullptr, port.c_str(), &hints, &found);
    ZT_CHECK(rc == 0, "nccl bootstrap: getaddrinfo(port %s) failed: %s", port.c_str(),
             gai_strerror(rc));
    // Prefer a dual-stack IPv6 socket, so peers reach us over IPv4 or IPv6.
    std::vector<addrinfo*> candidates;
    for (addrinfo* a = found; a; a = a->ai_next)
        if (a->ai_family == AF_INET6) candidates.push_back(a);
    for (addrinfo* a = found; a; a = a->ai_next)
        if (a->ai_family != AF_INET6) candidates.push_back(a);
    Socket listener;
    std::string last_error = "no address to listen on";
    for (addrinfo* a : candidates) {
        Socket s(::socket(a->ai_family, a->ai_socktype, a->ai_protocol));
        if (s.fd() < 0) continue;
        int one = 1, zero = 0;
        ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a->ai_family == AF_INET6)
            ::setsockopt(s.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (::bind(s.fd(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(s.fd(), ranks.world) == 0) {
            listener = std::move(s);
            break;
        }
        last_error = std::strerror(errno);
    }
    ::freeaddrinfo(found);
    ZT_CHECK(listener.fd() >= 0, "nccl bootstrap: rank 0 cannot listen on port %s (%s): %s%s",
             port.c_str(), port_from.c_str(), last_error.c_str(),
             port_from == "MASTER_PORT"
                 ? "; if the launcher holds MASTER_PORT itself, set ZT_BOOTSTRAP_PORT to a free "
                   "port on every rank"
                 : "");
    set_nonblocking(listener.fd());

    double deadline = now_seconds() + timeout_s;
    std::vector<bool> served(size_t(ranks.world), false);
    int remaining = ranks.world - 1;
    while (remaining > 0) {
        ZT_CHECK(wait_ready(listener.fd(), POLLIN, deadline),
                 "nccl bootstrap: rank 0 waited %g s on port %s (%s) and only %d of %d ranks "
                 "connected; are all ranks running with the same MASTER_ADDR and port, and can "
                 "they reach this host?",
                 timeout_s, port.c_str(), port_from.c_str(), ranks.world - 1 - remaining,
                 ranks.world - 1);
        Socket peer(::accept(listener.fd(), nullptr, nullptr));
        if (peer.fd() < 0) continue;  // EAGAIN after a spurious wake-up, or an aborted connect
        set_nonblocking(peer.fd());
        Hello hello;
        std::string err = recv_all(peer.fd(), &hello, sizeof hello, deadline);
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
        err = send_all(peer.fd(), id, n, deadline);
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
    auto backoff = std::chrono::milliseconds(50);
    while (now_seconds() < deadline) {
        attempts++;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        int rc = ::getaddrinfo(addr, port.c_str(), &hints, &found);
        if (rc != 0) {
            last_error = std::string("getaddrinfo: ") + gai_strerror(rc);
        } else {
            for (addrinfo* a = found; a; a = a->ai_next) {
                Socket s(::socket(a->ai_family, a->ai_socktype, a->ai_protocol));
                if (s.fd() < 0) continue;
                set_nonblocking(s.fd());
                if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
                    last_error = std::string("connect: ") + std::strerror(errno);
                    continue;
                }
                if (!wait_ready(s.fd(), POLLOUT, deadline)) {
                    last_error = "connect: timed out";
                    continue;
                }
                int so_error = 0;
                socklen_t len = sizeof so_error;
                ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &so_error, &len);
                if (so_error != 0) {
                    last_error = std::string("connect: ") + std::strerror(so_error);
                    continue;
                }
                Hello hello;
                hello.rank = ranks.rank;
                hello.world = ranks.world;
                hello.id_bytes = uint32_t(n);
                std::string err = send_all(s.fd(), &hello, sizeof hello, deadline);
                if (err.empty()) err = recv_all(s.fd(), id, n, deadline);
                if (err.empty()) {
                    ::freeaddrinfo(found);
                    return;
                }
                last_error = err;
            }
            ::freeaddrinfo(found);
        }
        // Rank 0 may not be listening yet: retry with a growing pause (at most 1 s).
        double left = deadline - now_seconds();
        if (left <= 0) break;
        std::this_thread::sleep_for(
            std::min<std::chrono::duration<double>>(backoff, std::chrono::duration<double>(left)));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
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
