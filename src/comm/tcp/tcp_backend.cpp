// tcp: collectives over TCP sockets (see tcp_backend.h).
#include "comm/tcp/tcp_backend.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/launch.h"
#include "comm/queued.h"
#include "comm/reduce.h"
#include "comm/tcp/socket.h"
#include "core/check.h"
#include "prof/timer.h"

namespace zt {

namespace {

constexpr uint32_t kHelloMagic = 0x5a545448;  // "ZTTH"
constexpr uint32_t kFrameMagic = 0x5a545446;  // "ZTTF"

// What a rank says first on each connection.
struct Hello {
    uint32_t magic = kHelloMagic;
    int32_t rank = 0;
    int32_t world = 0;
    int32_t listen_port = 0;
};

// Where rank 0 says each rank listens.
struct Address {
    char host[64] = {0};
    int32_t port = 0;
    int32_t pad = 0;
};

// The header of every message.
struct Frame {
    uint32_t magic = kFrameMagic;
    uint8_t op = 0;  // CommOp
    uint8_t dtype = 0;
    uint16_t pad = 0;
    uint64_t bytes = 0;
};
static_assert(sizeof(Frame) == 16);

const char* env_or_null(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

std::string frame_string(const Frame& f) {
    return strprintf("a %s message of %llu bytes (%s)", comm_op_name(CommOp(f.op)),
                     (unsigned long long)f.bytes, dtype_name(DType(f.dtype)));
}

class TcpBackend final : public QueuedBackend {
  public:
    TcpBackend(const RankInfo& ranks, double connect_timeout_s)
        : rank_(ranks.rank), world_(ranks.world), timeout_s_(connect_timeout_s) {}

    int rank() const override { return rank_; }
    int world_size() const override { return world_; }
    const char* name() const override { return "tcp"; }

    void start() override {
        if (world_ > 1) connect_all();
    }
    void stop() override { peers_.clear(); }

    void all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) override {
        if (world_ == 1) return;
        std::vector<int64_t> off(size_t(world_) + 1);
        for (int k = 0; k <= world_; k++) off[size_t(k)] = count * k / world_;
        char* p = static_cast<char*>(buf);
        ring_reduce(p, off, dtype, op, CommOp::all_reduce);
        const size_t es = dtype_size(dtype);
        if (op == ReduceOp::avg)
            comm_divide(dtype, p + off[size_t(rank_)] * es, block(off, rank_), world_);
        ring_gather(p, off, dtype, CommOp::all_reduce);
    }

    void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                        ReduceOp op) override {
        const size_t es = dtype_size(dtype);
        const size_t bytes = size_t(recv_count) * es;
        acc_.resize(bytes * size_t(world_));
        if (bytes > 0) std::memcpy(acc_.data(), send, bytes * size_t(world_));
        std::vector<int64_t> off(size_t(world_) + 1);
        for (int k = 0; k <= world_; k++) off[size_t(k)] = recv_count * k;
        if (world_ > 1) ring_reduce(acc_.data(), off, dtype, op, CommOp::reduce_scatter);
        char* mine = acc_.data() + bytes * size_t(rank_);
        if (op == ReduceOp::avg) comm_divide(dtype, mine, recv_count, world_);
        if (bytes > 0) std::memcpy(recv, mine, bytes);
    }

    void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) override {
        const size_t bytes = size_t(send_count) * dtype_size(dtype);
        char* p = static_cast<char*>(recv);
        if (bytes > 0 && p + bytes * size_t(rank_) != send)
            std::memcpy(p + bytes * size_t(rank_), send, bytes);
        std::vector<int64_t> off(size_t(world_) + 1);
        for (int k = 0; k <= world_; k++) off[size_t(k)] = send_count * k;
        if (world_ > 1) ring_gather(p, off, dtype, CommOp::all_gather);
    }

    // A chain root, root+1, ..., root-1: each receives the buffer from its
    // left in pieces and passes each piece on as it arrives.
    void broadcast(void* buf, int64_t count, DType dtype, int root) override {
        if (world_ == 1) return;
        const int pos = mod(rank_ - root);
        const size_t es = dtype_size(dtype);
        const int64_t piece = std::max<int64_t>(1, (int64_t(1) << 20) / int64_t(es));
        char* p = static_cast<char*>(buf);
        int64_t off = 0;
        do {
            const int64_t n = std::min(piece, count - off);
            char* at = p + off * es;
            if (pos > 0)
                transfer(-1, nullptr, 0, mod(rank_ - 1), at, size_t(n) * es, CommOp::broadcast,
                         dtype);
            if (pos < world_ - 1)
                transfer(mod(rank_ + 1), at, size_t(n) * es, -1, nullptr, 0, CommOp::broadcast,
                         dtype);
            off += n;
        } while (off < count);
    }

    void send(const void* buf, int64_t count, DType dtype, int peer) override {
        transfer(peer, buf, size_t(count) * dtype_size(dtype), -1, nullptr, 0, CommOp::send, dtype);
    }
    void recv(void* buf, int64_t count, DType dtype, int peer) override {
        transfer(-1, nullptr, 0, peer, buf, size_t(count) * dtype_size(dtype), CommOp::send, dtype);
    }

    // Empty messages around the ring, 2(n-1) steps as an all-reduce takes:
    // a rank finishes step s only after its left one began it, so after
    // n-1 steps every rank has entered the barrier.
    void barrier() override {
        for (int s = 0; s < 2 * (world_ - 1); s++)
            transfer(mod(rank_ + 1), nullptr, 0, mod(rank_ - 1), nullptr, 0, CommOp::barrier,
                     DType::u8);
    }

    bool exchange_signatures(const CommSignature& mine, std::vector<CommSignature>& all) override {
        if (world_ == 1) return false;
        all.resize(size_t(world_));
        all_gather(&mine, all.data(), int64_t(sizeof mine), DType::u8);
        return true;
    }

  private:
    int mod(int x) const { return ((x % world_) + world_) % world_; }
    static int64_t block(const std::vector<int64_t>& off, int k) {
        return off[size_t(k) + 1] - off[size_t(k)];
    }

    // The ring's reduce-scatter over blocks off[k]..off[k+1] of buf: at step
    // s block r-s-1 goes right and block r-s-2 comes from the left and is
    // combined into this rank's own; after n-1 steps block r is complete.
    void ring_reduce(char* buf, const std::vector<int64_t>& off, DType dtype, ReduceOp op,
                     CommOp tag) {
        const size_t es = dtype_size(dtype);
        for (int s = 0; s < world_ - 1; s++) {
            const int sb = mod(rank_ - s - 1), rb = mod(rank_ - s - 2);
            const size_t rbytes = size_t(block(off, rb)) * es;
            tmp_.resize(rbytes);
            transfer(mod(rank_ + 1), buf + off[size_t(sb)] * es, size_t(block(off, sb)) * es,
                     mod(rank_ - 1), tmp_.data(), rbytes, tag, dtype);
            char* dst = buf + off[size_t(rb)] * es;
            comm_combine(dtype, op, dst, dst, tmp_.data(), block(off, rb));
        }
    }

    // The ring's all-gather: at step s block r-s goes right and block r-s-1
    // comes from the left, into its place.
    void ring_gather(char* buf, const std::vector<int64_t>& off, DType dtype, CommOp tag) {
        const size_t es = dtype_size(dtype);
        for (int s = 0; s < world_ - 1; s++) {
            const int sb = mod(rank_ - s), rb = mod(rank_ - s - 1);
            transfer(mod(rank_ + 1), buf + off[size_t(sb)] * es, size_t(block(off, sb)) * es,
                     mod(rank_ - 1), buf + off[size_t(rb)] * es, size_t(block(off, rb)) * es, tag,
                     dtype);
        }
    }

    // Sends sbytes to rank `to` while receiving rbytes from rank `from`
    // (either -1: none), each as one framed message, both at once so that
    // neither side of a ring waits for the other's socket buffer to drain.
    void transfer(int to, const void* sbuf, size_t sbytes, int from, void* rbuf, size_t rbytes,
                  CommOp op, DType dtype) {
        Frame out;
        out.op = uint8_t(op);
        out.dtype = uint8_t(dtype);
        out.bytes = sbytes;
        Frame in;
        size_t sent = to >= 0 ? 0 : sizeof(Frame) + sbytes;  // header, then payload
        size_t got = from >= 0 ? 0 : sizeof(Frame) + rbytes;
        const size_t send_total = sizeof(Frame) + sbytes, recv_total = sizeof(Frame) + rbytes;
        auto* sp = static_cast<const char*>(sbuf);
        auto* rp = static_cast<char*>(rbuf);
        while (sent < send_total || got < recv_total) {
            pollfd fds[2];
            int nfds = 0, si = -1, ri = -1;
            if (sent < send_total) {
                fds[nfds] = {peers_[size_t(to)].fd(), POLLOUT, 0};
                si = nfds++;
            }
            if (got < recv_total) {
                if (si >= 0 && to == from) {
                    fds[si].events |= POLLIN;
                    ri = si;
                } else {
                    fds[nfds] = {peers_[size_t(from)].fd(), POLLIN, 0};
                    ri = nfds++;
                }
            }
            int n = ::poll(fds, nfds_t(nfds), -1);  // a hang is the watchdog's
            if (n < 0 && errno == EINTR) continue;
            ZT_CHECK(n > 0, "tcp: poll failed: %s", std::strerror(errno));
            if (si >= 0 && (fds[si].revents & (POLLOUT | POLLERR | POLLHUP))) {
                const char* at;
                size_t left;
                if (sent < sizeof(Frame)) {
                    at = reinterpret_cast<const char*>(&out) + sent;
                    left = sizeof(Frame) - sent;
                } else {
                    at = sp + (sent - sizeof(Frame));
                    left = send_total - sent;
                }
                ssize_t k = ::send(fds[si].fd, at, left, MSG_NOSIGNAL);
                if (k > 0)
                    sent += size_t(k);
                else if (!(k < 0 && (errno == EAGAIN || errno == EINTR)))
                    lost(to, op, std::string("send: ") + std::strerror(errno));
            }
            if (ri >= 0 && (fds[ri].revents & (POLLIN | POLLERR | POLLHUP))) {
                char* at;
                size_t left;
                if (got < sizeof(Frame)) {
                    at = reinterpret_cast<char*>(&in) + got;
                    left = sizeof(Frame) - got;
                } else {
                    at = rp + (got - sizeof(Frame));
                    left = recv_total - got;
                }
                ssize_t k = ::recv(fds[ri].fd, at, left, 0);
                if (k == 0) lost(from, op, "it closed the connection");
                if (k < 0 && !(errno == EAGAIN || errno == EINTR))
                    lost(from, op, std::string("recv: ") + std::strerror(errno));
                if (k > 0) {
                    const bool header_done =
                        got < sizeof(Frame) && got + size_t(k) >= sizeof(Frame);
                    got += size_t(k);
                    if (header_done) check_frame(in, from, op, dtype, rbytes);
                }
            }
        }
    }

    void check_frame(const Frame& in, int from, CommOp op, DType dtype, size_t rbytes) const {
        Frame want;
        want.op = uint8_t(op);
        want.dtype = uint8_t(dtype);
        want.bytes = rbytes;
        ZT_CHECK(in.magic == kFrameMagic,
                 "tcp: rank %d sent bytes that are not a message header (a stray writer on the "
                 "connection, or a peer that lost count)",
                 from);
        ZT_CHECK(in.op == want.op && in.dtype == want.dtype && in.bytes == want.bytes,
                 "tcp: rank %d sent %s where this rank expected %s (send and recv counts or "
                 "dtypes differ, or the ranks issued different operations)",
                 from, frame_string(in).c_str(), frame_string(want).c_str());
    }

    [[noreturn]] void lost(int peer, CommOp op, const std::string& why) const {
        ZT_FAIL(
            "tcp: %s with rank %d failed: %s (did that rank exit or fail? its own output "
            "says why)",
            comm_op_name(op), peer, why.c_str());
    }

    // ---- bootstrap

    void connect_all() {
        const char* addr = env_or_null("MASTER_ADDR");
        const char* port = env_or_null("MASTER_PORT");
        ZT_CHECK(addr && port,
                 "--comm tcp at %d ranks needs MASTER_ADDR and MASTER_PORT (rank 0's host and a "
                 "free port, as torchrun sets them; zerotrain's --nproc sets them itself); %s is "
                 "not set",
                 world_, addr ? "MASTER_PORT" : "MASTER_ADDR");
        char* end = nullptr;
        long p = std::strtol(port, &end, 10);
        ZT_CHECK(*end == '\0' && p > 0 && p < 65536,
                 "MASTER_PORT '%s': expected a TCP port 1-65535", port);
        const double deadline = now_seconds() + timeout_s_;
        peers_.clear();
        peers_.resize(size_t(world_));
        std::string err;
        Socket listener = socket_listen(rank_ == 0 ? port : "0", world_, &err);
        ZT_CHECK(listener.fd() >= 0, "tcp: cannot listen on port %s: %s%s",
                 rank_ == 0 ? port : "(any)", err.c_str(),
                 rank_ == 0 ? " (is MASTER_PORT taken by another job?)" : "");
        std::vector<Address> table(static_cast<size_t>(world_));
        if (rank_ == 0) {
            for (int got = 0; got < world_ - 1;) {
                Hello h;
                Socket s = accept_hello(listener, deadline, &h, strprintf("port %s", port));
                if (s.fd() < 0) continue;
                ZT_CHECK(h.rank > 0 && h.rank < world_ && peers_[size_t(h.rank)].fd() < 0,
                         "tcp: a peer on port %s claims rank %d, %s", port, h.rank,
                         h.rank > 0 && h.rank < world_ ? "which already connected"
                                                       : "outside the world");
                Address& a = table[size_t(h.rank)];
                std::snprintf(a.host, sizeof a.host, "%s", socket_peer_address(s.fd()).c_str());
                a.port = h.listen_port;
                peers_[size_t(h.rank)] = std::move(s);
                got++;
            }
            listener.close();  // the next communicator's rank 0 listens on the same port
            for (int r = 1; r < world_; r++) {
                err = socket_send_all(peers_[size_t(r)].fd(), table.data(),
                                      table.size() * sizeof(Address), deadline);
                ZT_CHECK(err.empty(), "tcp: rank 0 could not send the addresses to rank %d: %s", r,
                         err.c_str());
            }
            return;
        }
        int attempts = 0;
        Socket s = socket_connect_retrying(addr, port, deadline, &err, &attempts);
        ZT_CHECK(s.fd() >= 0,
                 "tcp: could not reach rank 0 at %s:%s (MASTER_ADDR, MASTER_PORT) within %g s, %d "
                 "attempts; last error: %s. Is rank 0 running, and is the port reachable?",
                 addr, port, timeout_s_, attempts, err.c_str());
        say_hello(s, socket_local_port(listener.fd()), deadline, "rank 0");
        err = socket_recv_all(s.fd(), table.data(), table.size() * sizeof(Address), deadline);
        ZT_CHECK(err.empty(), "tcp: the addresses from rank 0 did not come: %s", err.c_str());
        peers_[0] = std::move(s);
        // Lower ranks are connected to, higher ones accepted.
        for (int r = 1; r < rank_; r++) {
            const Address& a = table[size_t(r)];
            const std::string pstr = std::to_string(a.port);
            Socket c = socket_connect_retrying(a.host, pstr, deadline, &err, &attempts);
            ZT_CHECK(c.fd() >= 0, "tcp: could not reach rank %d at %s:%s: %s", r, a.host,
                     pstr.c_str(), err.c_str());
            say_hello(c, 0, deadline, strprintf("rank %d", r));
            peers_[size_t(r)] = std::move(c);
        }
        for (int got = 0; got < world_ - 1 - rank_;) {
            Hello h;
            Socket c = accept_hello(listener, deadline, &h, "this rank's listener");
            if (c.fd() < 0) continue;
            ZT_CHECK(h.rank > rank_ && h.rank < world_ && peers_[size_t(h.rank)].fd() < 0,
                     "tcp: a peer claims rank %d, which is not one this rank waits for", h.rank);
            peers_[size_t(h.rank)] = std::move(c);
            got++;
        }
    }

    void say_hello(const Socket& s, int listen_port, double deadline, const std::string& whom) {
        Hello h;
        h.rank = rank_;
        h.world = world_;
        h.listen_port = listen_port;
        std::string err = socket_send_all(s.fd(), &h, sizeof h, deadline);
        ZT_CHECK(err.empty(), "tcp: could not greet %s: %s", whom.c_str(), err.c_str());
    }

    // The next connection and its greeting; an invalid Socket for a stray one.
    Socket accept_hello(const Socket& listener, double deadline, Hello* h,
                        const std::string& where) {
        ZT_CHECK(socket_wait(listener.fd(), POLLIN, deadline),
                 "tcp: waited %g s on %s for the other ranks to connect; were all %d ranks "
                 "started with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE, and can they "
                 "reach this host?",
                 timeout_s_, where.c_str(), world_);
        Socket s(::accept(listener.fd(), nullptr, nullptr));
        if (s.fd() < 0) return s;  // a spurious wake-up, or an aborted connect
        socket_set_nonblocking(s.fd());
        socket_set_nodelay(s.fd());
        std::string err = socket_recv_all(s.fd(), h, sizeof *h, deadline);
        // A stray connection (a port scanner, a stale rank) is not ours: drop it.
        if (!err.empty() || h->magic != kHelloMagic) return Socket();
        ZT_CHECK(h->world == world_,
                 "tcp: rank %d says the world has %d ranks, this rank %d; were the ranks started "
                 "with different WORLD_SIZE?",
                 h->rank, h->world, world_);
        return s;
    }

    int rank_;
    int world_;
    double timeout_s_;
    std::vector<Socket> peers_;  // by rank; this rank's own slot stays empty
    std::vector<char> tmp_;      // a received block
    std::vector<char> acc_;      // reduce_scatter's accumulator
};

}  // namespace

std::unique_ptr<Communicator> make_tcp_communicator(const CommOptions& opt) {
    const RankInfo ranks = discover_ranks();
    QueuedOptions q;
    q.timeout_s = opt.timeout_s;
    q.check_signatures = comm_check_from_env();
    const double connect_s = opt.timeout_s > 0 ? opt.timeout_s : 300;
    return std::make_unique<QueuedCommunicator>(std::make_unique<TcpBackend>(ranks, connect_s), q);
}

}  // namespace zt
