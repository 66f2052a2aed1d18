// TCP plumbing (see socket.h).
#include "comm/tcp/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/check.h"
#include "prof/timer.h"

namespace zt {

Socket::~Socket() {
    close();
}

void Socket::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

namespace {

int ms_until(double deadline) {
    if (deadline < 0) return -1;
    double left = deadline - now_seconds();
    return left <= 0 ? 0 : int(std::min(left * 1000, 1e9)) + 1;
}

}  // namespace

bool socket_wait(int fd, short events, double deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        int n = ::poll(&p, 1, ms_until(deadline));
        if (n > 0) return true;
        if (n == 0) return false;
        if (errno != EINTR) return false;
    }
}

std::string socket_send_all(int fd, const void* data, size_t n, double deadline) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
        if (!socket_wait(fd, POLLOUT, deadline)) return "timed out sending";
        ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return std::string("send: ") + std::strerror(errno);
        p += k;
        n -= size_t(k);
    }
    return "";
}

std::string socket_recv_all(int fd, void* data, size_t n, double deadline) {
    auto* p = static_cast<char*>(data);
    while (n > 0) {
        if (!socket_wait(fd, POLLIN, deadline)) return "timed out receiving";
        ssize_t k = ::recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k == 0) return "the peer closed the connection";
        if (k < 0) return std::string("recv: ") + std::strerror(errno);
        p += k;
        n -= size_t(k);
    }
    return "";
}

void socket_set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL, 0);
    ZT_CHECK(flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0,
             "fcntl(O_NONBLOCK) on a socket failed: %s", std::strerror(errno));
}

void socket_set_nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Socket socket_listen(const std::string& port, int backlog, std::string* error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    int rc = ::getaddrinfo(nullptr, port.c_str(), &hints, &found);
    if (rc != 0) {
        *error = std::string("getaddrinfo: ") + gai_strerror(rc);
        return Socket();
    }
    // Prefer a dual-stack IPv6 socket, so peers reach it over IPv4 or IPv6.
    std::vector<addrinfo*> candidates;
    for (addrinfo* a = found; a; a = a->ai_next)
        if (a->ai_family == AF_INET6) candidates.push_back(a);
    for (addrinfo* a = found; a; a = a->ai_next)
        if (a->ai_family != AF_INET6) candidates.push_back(a);
    Socket listener;
    *error = "no address to listen on";
    for (addrinfo* a : candidates) {
        Socket s(::socket(a->ai_family, a->ai_socktype, a->ai_protocol));
        if (s.fd() < 0) continue;
        int one = 1, zero = 0;
        ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a->ai_family == AF_INET6)
            ::setsockopt(s.fd(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (::bind(s.fd(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(s.fd(), backlog) == 0) {
            listener = std::move(s);
            break;
        }
        *error = std::strerror(errno);
    }
    ::freeaddrinfo(found);
    if (listener.fd() >= 0) {
        socket_set_nonblocking(listener.fd());
        error->clear();
    }
    return listener;
}

int socket_local_port(int fd) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return -1;
    if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

std::string socket_peer_address(int fd) {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "";
    char host[NI_MAXHOST] = {0};
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, nullptr, 0,
                      NI_NUMERICHOST) != 0)
        return "";
    std::string h = host;
    // An IPv4 peer of a dual-stack listener shows as ::ffff:a.b.c.d.
    if (h.rfind("::ffff:", 0) == 0 && h.find('.') != std::string::npos) h = h.substr(7);
    return h;
}

Socket socket_connect_retrying(const std::string& host, const std::string& port, double deadline,
                               std::string* error, int* attempts) {
    *attempts = 0;
    auto backoff = std::chrono::milliseconds(50);
    while (now_seconds() < deadline) {
        (*attempts)++;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
        if (rc != 0) {
            *error = std::string("getaddrinfo: ") + gai_strerror(rc);
        } else {
            for (addrinfo* a = found; a; a = a->ai_next) {
                Socket s(::socket(a->ai_family, a->ai_socktype, a->ai_protocol));
                if (s.fd() < 0) continue;
                socket_set_nonblocking(s.fd());
                if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
                    *error = std::string("connect: ") + std::strerror(errno);
                    continue;
                }
                if (!socket_wait(s.fd(), POLLOUT, deadline)) {
                    *error = "connect: timed out";
                    continue;
                }
                int so_error = 0;
                socklen_t len = sizeof so_error;
                ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &so_error, &len);
                if (so_error != 0) {
                    *error = std::string("connect: ") + std::strerror(so_error);
                    continue;
                }
                ::freeaddrinfo(found);
                socket_set_nodelay(s.fd());
                return s;
            }
            ::freeaddrinfo(found);
        }
        // The peer may not be listening yet: retry with a growing pause.
        double left = deadline - now_seconds();
        if (left <= 0) break;
        std::this_thread::sleep_for(
            std::min<std::chrono::duration<double>>(backoff, std::chrono::duration<double>(left)));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
    return Socket();
}

}  // namespace zt
