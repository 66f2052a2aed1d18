#include "zero/offload.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/check.h"

namespace zt {

namespace {

constexpr int64_t kAlign = 4096;  // O_DIRECT's offset, size and address granule

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// At least two buffers (one computing, one reading ahead), at most one per tile.
int window_buffers(int window, int64_t tiles) {
    return int(std::max<int64_t>(1, std::min<int64_t>(std::max(2, window), tiles)));
}

}  // namespace

int64_t offload_tile_elements(int64_t n, int64_t tile_elements) {
    // Whole 4 KiB pages per array, no larger than the state itself.
    return std::max<int64_t>(1024, std::min(tile_elements, (n + 1023) / 1024 * 1024)) / 1024 * 1024;
}

int64_t offload_file_bytes(int arrays, int64_t n, int64_t tile_elements) {
    const int64_t tile = offload_tile_elements(n, tile_elements);
    return (n + tile - 1) / tile * arrays * tile * 4;
}

int64_t offload_window_ledger_bytes(int arrays, int64_t n, int64_t tile_elements, int window) {
    const int64_t tile = offload_tile_elements(n, tile_elements);
    return int64_t(window_buffers(window, (n + tile - 1) / tile)) * arrays * tile * 4 + kAlign;
}

StateFile::StateFile(const std::string& path, int64_t bytes, bool direct, const char* what)
    : path_(path), what_(what) {
    const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    if (direct) fd_ = ::open(path.c_str(), flags | O_DIRECT, 0600);
    direct_ = fd_ >= 0;
    if (fd_ < 0 && (!direct || errno == EINVAL))  // e.g. tmpfs: no O_DIRECT
        fd_ = ::open(path.c_str(), flags, 0600);
    ZT_CHECK(fd_ >= 0, "--offload-dir: cannot create %s: %s", path.c_str(), std::strerror(errno));
    const int rc = bytes > 0 ? ::posix_fallocate(fd_, 0, off_t(bytes)) : 0;
    if (rc != 0) {
        ::close(fd_);
        ::unlink(path.c_str());
        fd_ = -1;
        ZT_FAIL("--offload-dir: cannot reserve %.2f GiB for the offloaded %s in %s: %s",
                double(bytes) / double(int64_t(1) << 30), what, path.c_str(), std::strerror(rc));
    }
}

StateFile& StateFile::operator=(StateFile&& o) noexcept {
    if (this == &o) return *this;
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    path_ = std::move(o.path_);
    what_ = std::move(o.what_);
    fd_ = o.fd_;
    direct_ = o.direct_;
    o.fd_ = -1;
    return *this;
}

StateFile::~StateFile() {
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
}

void StateFile::transfer(bool write, int64_t offset, void* buf, int64_t bytes) {
    char* p = static_cast<char*>(buf);
    int64_t done = 0;
    while (done < bytes) {
        const ssize_t r = write
                              ? ::pwrite(fd_, p + done, size_t(bytes - done), off_t(offset + done))
                              : ::pread(fd_, p + done, size_t(bytes - done), off_t(offset + done));
        if (r < 0 && errno == EINTR) continue;
        ZT_CHECK(r > 0, "offloaded %s: %s of %lld bytes at offset %lld of %s failed: %s",
                 what_.c_str(), write ? "write" : "read", (long long)(bytes - done),
                 (long long)(offset + done), path_.c_str(),
                 r == 0 ? "unexpected end of file" : std::strerror(errno));
        done += r;
    }
}

OffloadFile::OffloadFile(const std::string& path, int arrays, int64_t n, int64_t tile_elements,
                         int window, MemoryLedger* ledger)
    : arrays_(arrays), n_(n) {
    ZT_CHECK(arrays >= 1 && n >= 0, "internal: offload file of %d arrays of %lld", arrays,
             (long long)n);
    tile_ = offload_tile_elements(n, tile_elements);
    tiles_ = (n + tile_ - 1) / tile_;
    window_ = window_buffers(window, tiles_);
    file_ = StateFile(path, file_bytes(), /*direct=*/true, "optimizer state");
    buffers_ = LedgerBuffer<char>(ledger, MemCategory::optimizer,
                                  offload_window_ledger_bytes(arrays, n, tile_elements, window));
    const auto addr = reinterpret_cast<uintptr_t>(buffers_.data());
    base_ = buffers_.data() + int64_t((kAlign - addr % kAlign) % kAlign);
    io_ = std::thread([this] { io_loop(); });
}

OffloadFile::~OffloadFile() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (io_.joinable()) io_.join();
}

void OffloadFile::transfer(bool write, int64_t offset, char* buf, int64_t bytes) {
    const double t0 = now_s();
    file_.transfer(write, offset, buf, bytes);
    (write ? stats_.write_s : stats_.read_s) += now_s() - t0;
    (write ? stats_.bytes_written : stats_.bytes_read) += bytes;
}

void OffloadFile::io_loop() {
    for (;;) {
        Job job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;
            job = queue_.front();
            queue_.pop_front();
        }
        std::string err;
        try {
            if (error_.empty()) transfer(job.write, job.tile * tile_bytes(), job.buf, tile_bytes());
        } catch (const std::exception& e) {
            err = e.what();
        }
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (!err.empty() && error_.empty()) error_ = err;
            completed_ = job.seq;
        }
        cv_.notify_all();
    }
}

int64_t OffloadFile::submit(bool write, int64_t tile, char* buf) {
    int64_t seq;
    {
        std::lock_guard<std::mutex> lock(mu_);
        seq = ++submitted_;
        queue_.push_back({write, tile, buf, seq});
    }
    cv_.notify_all();
    return seq;
}

void OffloadFile::wait_for(int64_t seq) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return completed_ >= seq; });
    if (!error_.empty()) throw Error(error_);
}

void OffloadFile::stream(const TileFn& f) {
    std::vector<int64_t> read_seq(size_t(tiles_), 0);
    for (int64_t t = 0; t < std::min<int64_t>(window_, tiles_); t++)
        read_seq[size_t(t)] = submit(false, t, buffer(int(t % window_)));
    int64_t last = submitted_;
    std::vector<float*> arrays(static_cast<size_t>(arrays_), nullptr);
    for (int64_t t = 0; t < tiles_; t++) {
        char* buf = buffer(int(t % window_));
        wait_for(read_seq[size_t(t)]);
        for (int a = 0; a < arrays_; a++)
            arrays[size_t(a)] = reinterpret_cast<float*>(buf) + int64_t(a) * tile_;
        const int64_t begin = t * tile_;
        f(begin, std::min(tile_, n_ - begin), arrays.data());
        last = submit(true, t, buf);
        if (t + window_ < tiles_) read_seq[size_t(t + window_)] = submit(false, t + window_, buf);
    }
    wait_for(last);
}

void OffloadFile::access(int64_t begin, int64_t count, float* const* dst, const float* const* src) {
    ZT_CHECK(begin >= 0 && count >= 0 && begin + count <= n_,
             "internal: offload access [%lld, %lld) outside %lld elements", (long long)begin,
             (long long)(begin + count), (long long)n_);
    char* buf = buffer(0);
    int64_t e = begin;
    while (e < begin + count) {
        const int64_t t = e / tile_, in_tile = e - t * tile_;
        const int64_t piece = std::min(begin + count - e, tile_ - in_tile);
        const bool whole = in_tile == 0 && (piece == tile_ || e + piece == n_);
        if (dst || !whole) wait_for(submit(false, t, buf));
        for (int a = 0; a < arrays_; a++) {
            float* tile_a = reinterpret_cast<float*>(buf) + int64_t(a) * tile_ + in_tile;
            const int64_t off = e - begin;
            if (dst && dst[a]) std::memcpy(dst[a] + off, tile_a, size_t(piece) * sizeof(float));
            if (src) {
                if (src[a])
                    std::memcpy(tile_a, src[a] + off, size_t(piece) * sizeof(float));
                else
                    std::memset(tile_a, 0, size_t(piece) * sizeof(float));
            }
        }
        if (src) wait_for(submit(true, t, buf));
        e += piece;
    }
}

void OffloadFile::read(int64_t begin, int64_t count, float* const* dst) {
    access(begin, count, dst, nullptr);
}

void OffloadFile::write(int64_t begin, int64_t count, const float* const* src) {
    access(begin, count, nullptr, src);
}

}  // namespace zt
