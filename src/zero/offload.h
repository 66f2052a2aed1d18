// OffloadFile: fp32 arrays kept in a file instead of memory (ZeRO-Infinity's
// NVMe tier), streamed through a bounded window of host buffers.
//
// The file holds `arrays` parallel fp32 arrays of n elements (the optimizer's
// master weights and moments), tile-major: tile t holds elements
// [t T, (t + 1) T) of every array, array a at byte (t k + a) T 4, so one tile
// is one contiguous read and one contiguous write. stream() visits every tile
// in order with the next window-1 tiles already being read and the finished
// ones being written behind, by one I/O thread (FIFO, so a buffer's write
// always precedes the read that reuses it).
// The file is created fresh and preallocated at construction (a full disk is
// an error naming the path, before any training), opened with O_DIRECT where
// the file system allows it (bypassing the page cache, so the state really
// leaves RAM), and removed when the object goes away.
// Only the window is host memory: window x arrays x T x 4 bytes, counted
// under `optimizer` in the ledger.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "prof/memory.h"

namespace zt {

// A file created fresh and preallocated at construction (a full disk is an
// error naming the path and `what` it was for, before any training), read and
// written whole ranges at a time, and removed when the object goes away.
// With `direct` it is opened with O_DIRECT where the file system allows it;
// offsets, sizes and addresses must then be 4096-aligned.
class StateFile {
  public:
    StateFile() = default;
    StateFile(const std::string& path, int64_t bytes, bool direct, const char* what);
    ~StateFile();
    StateFile(StateFile&& o) noexcept { *this = std::move(o); }
    StateFile& operator=(StateFile&& o) noexcept;

    bool open() const { return fd_ >= 0; }
    const std::string& path() const { return path_; }
    bool direct_io() const { return direct_; }
    // Moves exactly `bytes` at `offset`; an I/O error names the path.
    void transfer(bool write, int64_t offset, void* buf, int64_t bytes);

  private:
    std::string path_, what_;
    int fd_ = -1;
    bool direct_ = false;
};

struct OffloadStats {
    int64_t bytes_read = 0, bytes_written = 0;
    double read_s = 0, write_s = 0;  // time the I/O thread spent in pread / pwrite
};

// Sizes an OffloadFile of these parameters has, without creating one: the
// file's bytes, and the host bytes of its window (what the ledger counts).
int64_t offload_tile_elements(int64_t n, int64_t tile_elements);
int64_t offload_file_bytes(int arrays, int64_t n, int64_t tile_elements);
int64_t offload_window_ledger_bytes(int arrays, int64_t n, int64_t tile_elements, int window);

class OffloadFile {
  public:
    OffloadFile(const std::string& path, int arrays, int64_t n, int64_t tile_elements, int window,
                MemoryLedger* ledger);
    ~OffloadFile();
    OffloadFile(const OffloadFile&) = delete;
    OffloadFile& operator=(const OffloadFile&) = delete;

    const std::string& path() const { return file_.path(); }
    bool direct_io() const { return file_.direct_io(); }
    int64_t file_bytes() const { return tiles_ * tile_bytes(); }
    int64_t window_bytes() const { return int64_t(window_) * tile_bytes(); }
    const OffloadStats& stats() const { return stats_; }

    // Elements [begin, begin + count) of every array, to or from memory
    // (synchronous; not during stream()). dst[a] / src[a] may be null: array a
    // is not read, or is written as zeros.
    void read(int64_t begin, int64_t count, float* const* dst);
    void write(int64_t begin, int64_t count, const float* const* src);

    // Calls f(begin, count, arrays) for every tile in order, arrays[a] pointing
    // at the tile's elements of array a (count of them), and writes the tile
    // back after f returns.
    using TileFn = std::function<void(int64_t begin, int64_t count, float* const* arrays)>;
    void stream(const TileFn& f);

  private:
    struct Job {
        bool write = false;
        int64_t tile = 0;
        char* buf = nullptr;
        int64_t seq = 0;
    };
    int64_t tile_bytes() const { return int64_t(arrays_) * tile_ * 4; }
    void io_loop();
    int64_t submit(bool write, int64_t tile, char* buf);
    void wait_for(int64_t seq);
    void transfer(bool write, int64_t offset, char* buf, int64_t bytes);
    // Reads (dst) or writes (src) part of every array through the first
    // window buffer, one tile at a time (writing a partial tile reads it first).
    void access(int64_t begin, int64_t count, float* const* dst, const float* const* src);
    char* buffer(int i) { return base_ + int64_t(i) * tile_bytes(); }

    StateFile file_;
    int arrays_;
    int64_t n_, tile_, tiles_;
    int window_;
    LedgerBuffer<char> buffers_;  // window tiles and the alignment slack
    char* base_ = nullptr;        // the first tile, 4096-aligned
    OffloadStats stats_;

    std::thread io_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Job> queue_;
    int64_t submitted_ = 0, completed_ = 0;
    std::string error_;  // the first I/O error, rethrown by the waiter
    bool stop_ = false;
};

}  // namespace zt
