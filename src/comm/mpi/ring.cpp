// ring: the chunked ring algorithm from point-to-point messages only (see
// ring.h for the schedule and its invariants).
#include "comm/mpi/ring.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "comm/reduce.h"
#include "core/check.h"

namespace zt {

namespace {

constexpr int kAllReduceTag = 101;
constexpr int kReduceScatterTag = 102;
constexpr int kAllGatherTag = 103;
constexpr int kBroadcastTag = 104;
constexpr int kBarrierTag = 105;

int64_t env_int(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    long long x = std::strtoll(v, &end, 10);
    ZT_CHECK(*end == '\0' && x >= lo && x <= hi, "%s='%s': expected an integer in [%lld, %lld]",
             name, v, (long long)lo, (long long)hi);
    return x;
}

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

}  // namespace

RingBackend::RingBackend() : MpiBackend("ring") {
    chunk_bytes_ = env_int("ZT_RING_CHUNK_KB", 1024, 4, 1 << 20) * 1024;
    window_ = int(env_int("ZT_RING_WINDOW", 4, 1, 64));
}

void RingBackend::run_ring(DType dtype, ReduceOp op, int tag) {
    const std::vector<Step>& steps = steps_;
    const int left = mod(rank_ - 1), right = mod(rank_ + 1);
    const size_t esize = dtype_size(dtype);
    const int64_t chunk = chunk_bytes_ / int64_t(esize);  // elements per message
    const MPI_Datatype type = mpi_type(dtype);
    if (tmp_.size() < size_t(window_) * size_t(chunk_bytes_))
        tmp_.resize(size_t(window_) * size_t(chunk_bytes_));

    // Receives in the order the left neighbour sends them: step-major, chunk-minor.
    std::vector<std::pair<int, int64_t>> order;
    for (int s = 0; s < int(steps.size()); s++)
        for (int64_t j = 0; j < ceil_div(steps[s].recv_len, chunk); j++) order.push_back({s, j});

    std::vector<MPI_Request> sends;
    std::unordered_map<const char*, size_t> pending_send;  // region start -> index in sends
    std::vector<MPI_Request> recvs(size_t(window_), MPI_REQUEST_NULL);

    auto wait_send_at = [&](const char* p) {
        auto it = pending_send.find(p);
        if (it == pending_send.end()) return;
        ZT_MPI_CHECK(MPI_Wait(&sends[it->second], MPI_STATUS_IGNORE));
        pending_send.erase(it);
    };
    auto post_send = [&](const char* p, int64_t n) {
        wait_send_at(p);
        MPI_Request req;
        ZT_MPI_CHECK(MPI_Isend(p, int(n), type, right, tag, comm_, &req));
        pending_send[p] = sends.size();
        sends.push_back(req);
    };
    auto post_recv = [&](size_t q) {
        auto [s, j] = order[q];
        const Step& st = steps[s];
        int64_t n = std::min(chunk, st.recv_len - j * chunk);
        char* target;
        if (st.add) {
            target = tmp_.data() + (q % size_t(window_)) * size_t(chunk_bytes_);
        } else {
            target = st.dst + j * chunk * int64_t(esize);
            wait_send_at(target);
        }
        ZT_MPI_CHECK(MPI_Irecv(target, int(n), type, left, tag, comm_, &recvs[q % window_]));
    };

    const Step& first = steps.front();
    for (int64_t j = 0; j * chunk < first.send_len; j++)
        post_send(first.send + j * chunk * int64_t(esize),
                  std::min(chunk, first.send_len - j * chunk));
    size_t posted = 0;
    while (posted < order.size() && posted < size_t(window_)) post_recv(posted++);

    for (size_t q = 0; q < order.size(); q++) {
        ZT_MPI_CHECK(MPI_Wait(&recvs[q % window_], MPI_STATUS_IGNORE));
        auto [s, j] = order[q];
        const Step& st = steps[s];
        int64_t off = j * chunk;
        int64_t n = std::min(chunk, st.recv_len - off);
        char* dst = st.dst + off * int64_t(esize);
        if (st.add) {
            const char* got = tmp_.data() + (q % size_t(window_)) * size_t(chunk_bytes_);
            wait_send_at(dst);
            comm_combine(dtype, op, dst, got, st.add + off * int64_t(esize), n);
            if (st.divide) comm_divide(dtype, dst, n, world_);
        }
        if (s + 1 < int(steps.size())) post_send(dst, n);  // steps[s + 1].send == st.dst
        if (posted < order.size()) post_recv(posted++);
    }
    if (!sends.empty())
        ZT_MPI_CHECK(MPI_Waitall(int(sends.size()), sends.data(), MPI_STATUSES_IGNORE));
}

void RingBackend::all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) {
    if (world_ == 1 || count == 0) return;  // a sum over one rank; avg divides by 1
    const int n = world_, r = rank_;
    const int64_t esize = int64_t(dtype_size(dtype));
    // n near-equal blocks: block b starts at b*q + min(b, rem), holds q + (b < rem).
    const int64_t q = count / n, rem = count % n;
    char* base = static_cast<char*>(buf);
    auto at = [&](int b) { return base + (b * q + std::min<int64_t>(b, rem)) * esize; };
    auto len = [&](int b) { return q + (b < rem ? 1 : 0); };

    steps_.clear();
    for (int s = 0; s < n - 1; s++) {  // reduce-scatter: rank r ends owning block r+1
        int sb = mod(r - s), rb = mod(r - s - 1);
        steps_.push_back(
            {at(sb), len(sb), at(rb), at(rb), len(rb), op == ReduceOp::avg && s == n - 2});
    }
    for (int s = 0; s < n - 1; s++) {  // all-gather of the owned blocks
        int sb = mod(r + 1 - s), rb = mod(r - s);
        steps_.push_back({at(sb), len(sb), at(rb), nullptr, len(rb), false});
    }
    run_ring(dtype, op, kAllReduceTag);
}

void RingBackend::reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                                 ReduceOp op) {
    const int64_t bytes = recv_count * int64_t(dtype_size(dtype));
    const char* in = static_cast<const char*>(send);
    if (world_ == 1) {
        if (recv != send && bytes > 0) std::memcpy(recv, send, size_t(bytes));
        return;
    }
    if (recv_count == 0) return;
    const int n = world_, r = rank_;
    if (acc_.size() < size_t(2 * bytes)) acc_.resize(size_t(2 * bytes));
    // Step s receives the partial sum of block r-s-2 and adds this rank's
    // share; the last step (block r) lands in recv. Partial sums alternate
    // between two accumulators, so one can be sent while the other is filled.
    // In place (recv = block r of send) is safe: block r is read only by the
    // last step, element by element as it is written.
    steps_.clear();
    for (int s = 0; s < n - 1; s++) {
        int b = mod(r - s - 2);
        const char* from = s == 0 ? in + mod(r - 1) * bytes : steps_.back().dst;
        char* dst = s == n - 2 ? static_cast<char*>(recv) : acc_.data() + (s % 2) * bytes;
        steps_.push_back(
            {from, recv_count, dst, in + b * bytes, recv_count, op == ReduceOp::avg && s == n - 2});
    }
    run_ring(dtype, op, kReduceScatterTag);
}

void RingBackend::all_gather(const void* send, void* recv, int64_t send_count, DType dtype) {
    const int64_t bytes = send_count * int64_t(dtype_size(dtype));
    char* out = static_cast<char*>(recv);
    if (send != out + rank_ * bytes && bytes > 0)
        std::memcpy(out + rank_ * bytes, send, size_t(bytes));
    if (world_ == 1 || send_count == 0) return;
    const int n = world_, r = rank_;
    steps_.clear();
    for (int s = 0; s < n - 1; s++) {
        int sb = mod(r - s), rb = mod(r - s - 1);
        steps_.push_back(
            {out + sb * bytes, send_count, out + rb * bytes, nullptr, send_count, false});
    }
    run_ring(dtype, ReduceOp::sum, kAllGatherTag);  // no step combines
}

// A pipelined chain root -> root+1 -> ... -> root-1: each rank forwards a
// chunk as soon as it has arrived.
void RingBackend::broadcast(void* buf, int64_t count, DType dtype, int root) {
    if (world_ == 1 || count == 0) return;
    const int pos = mod(rank_ - root);
    const int prev = mod(rank_ - 1), next = mod(rank_ + 1);
    const int64_t esize = int64_t(dtype_size(dtype));
    const int64_t chunk = chunk_bytes_ / esize;
    const int64_t nchunks = ceil_div(count, chunk);
    const MPI_Datatype type = mpi_type(dtype);
    char* p = static_cast<char*>(buf);
    auto size_of = [&](int64_t j) { return int(std::min(chunk, count - j * chunk)); };

    std::vector<MPI_Request> sends;
    if (pos == 0) {
        sends.resize(size_t(nchunks));
        for (int64_t j = 0; j < nchunks; j++)
            ZT_MPI_CHECK(MPI_Isend(p + j * chunk * esize, size_of(j), type, next, kBroadcastTag,
                                   comm_, &sends[j]));
    } else {
        std::vector<MPI_Request> recvs(size_t(window_), MPI_REQUEST_NULL);
        int64_t posted = 0;
        auto post_recv = [&](int64_t j) {
            ZT_MPI_CHECK(MPI_Irecv(p + j * chunk * esize, size_of(j), type, prev, kBroadcastTag,
                                   comm_, &recvs[j % window_]));
        };
        while (posted < nchunks && posted < window_) post_recv(posted++);
        for (int64_t j = 0; j < nchunks; j++) {
            ZT_MPI_CHECK(MPI_Wait(&recvs[j % window_], MPI_STATUS_IGNORE));
            if (pos != world_ - 1) {
                MPI_Request req;
                ZT_MPI_CHECK(MPI_Isend(p + j * chunk * esize, size_of(j), type, next, kBroadcastTag,
                                       comm_, &req));
                sends.push_back(req);
            }
            if (posted < nchunks) post_recv(posted++);
        }
    }
    if (!sends.empty())
        ZT_MPI_CHECK(MPI_Waitall(int(sends.size()), sends.data(), MPI_STATUSES_IGNORE));
}

// Dissemination barrier: in round k every rank signals rank+2^k and waits for
// rank-2^k; after ceil(log2 n) rounds every rank has heard from all others.
void RingBackend::barrier() {
    for (int k = 1; k < world_; k <<= 1) {
        ZT_MPI_CHECK(MPI_Sendrecv(nullptr, 0, MPI_BYTE, mod(rank_ + k), kBarrierTag, nullptr, 0,
                                  MPI_BYTE, mod(rank_ - k), kBarrierTag, comm_, MPI_STATUS_IGNORE));
    }
}

}  // namespace zt
