// TCP plumbing shared by the tcp backend and the nccl bootstrap: an owning
// socket, byte moves with a deadline, a listener and a connect that retries.
//
// Invariants: every socket made here is non-blocking, and every wait has a
// deadline (an absolute now_seconds(); a negative one means no deadline);
// the byte movers return why they stopped ("" on success) instead of
// throwing, so each caller can name the rank and the address.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace zt {

// A file descriptor closed when it goes out of scope.
class Socket {
  public:
    Socket() = default;
    explicit Socket(int fd) : fd_(fd) {}
    ~Socket();
    Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Socket& operator=(Socket&& o) noexcept {
        std::swap(fd_, o.fd_);
        return *this;
    }
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;
    int fd() const { return fd_; }
    void close();

  private:
    int fd_ = -1;
};

// Waits until fd is ready for `events` (poll's); false when the deadline passed.
bool socket_wait(int fd, short events, double deadline);

// Moves exactly n bytes, or returns why not ("" on success).
std::string socket_send_all(int fd, const void* data, size_t n, double deadline);
std::string socket_recv_all(int fd, void* data, size_t n, double deadline);

void socket_set_nonblocking(int fd);
// No Nagle delay: the collectives send one block and wait for the reply.
void socket_set_nodelay(int fd);

// A listening socket on `port` ("0": any free one) of every address, dual
// stack where IPv6 exists; backlog connections may wait. Returns an invalid
// Socket and sets *error when it cannot.
Socket socket_listen(const std::string& port, int backlog, std::string* error);
// The port a listening socket got.
int socket_local_port(int fd);
// The numeric address of a connected socket's peer ("127.0.0.1", "::1").
std::string socket_peer_address(int fd);

// Connects to host:port, retrying with a growing pause (50 ms to 1 s) until
// the deadline, for a peer that may not listen yet. Returns an invalid
// Socket and sets *error (the last failure) and *attempts when it cannot.
Socket socket_connect_retrying(const std::string& host, const std::string& port, double deadline,
                               std::string* error, int* attempts);

}  // namespace zt
