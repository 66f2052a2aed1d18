// Safetensors checkpoint I/O: a read-only mmap reader, an atomic writer, and an
// atomic streaming writer for files larger than memory.
//
// The format (huggingface/safetensors): 8-byte little-endian u64 header length
// N, then N bytes of UTF-8 JSON mapping tensor names to {"dtype", "shape",
// "data_offsets": [begin, end]} (offsets relative to the byte buffer that
// follows the header) plus an optional "__metadata__" string->string object,
// then the byte buffer. Tensors are little-endian and row-major.
//
// Invariant kept by the reader: once open() returns, every tensor's
// [begin, end) lies inside the data buffer, end - begin == numel * dtype size,
// the tensors are disjoint and tile the buffer with no holes (the format
// forbids holes so a file cannot smuggle a second payload), and every name,
// tensor-entry key and metadata key is unique. A file that breaks any of this
// is refused with a zt::Error naming the file; it never causes an
// out-of-bounds read. Unknown keys inside a tensor entry are ignored.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace zt {

struct SafetensorsTensor {
    std::string name;
    std::string dtype;           // "F32", "BF16", "I64", ...
    std::vector<int64_t> shape;  // row-major; {} is a 0-d scalar
    int64_t begin = 0, end = 0;  // byte range inside the data buffer
};

// Bytes per element of a safetensors dtype name, or 0 if the name is unknown
// (sub-byte types such as F4 are refused as unknown).
int64_t safetensors_dtype_size(const std::string& dtype);

// Product of the dims; throws zt::Error on a negative dim or overflow.
int64_t safetensors_numel(const std::vector<int64_t>& shape);

class SafetensorsFile {
  public:
    static SafetensorsFile open(const std::string& path);

    SafetensorsFile(SafetensorsFile&& other) noexcept;
    SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;
    ~SafetensorsFile();

    const std::string& path() const { return path_; }
    // In header order (nlohmann sorts keys, so alphabetical by name).
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
    const SafetensorsTensor* find(const std::string& name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // The tensor's bytes inside the mapping: data buffer start + begin. The
    // buffer is 8-aligned for SafetensorsWriter files, but a tensor is only as
    // aligned as its offset and other writers may not pad the header, so read
    // through memcpy unless the alignment is known.
    const void* data(const SafetensorsTensor& t) const;

    // Copies tensor `name` into out[0, count) as f32, converting BF16 and F16.
    // Refuses other dtypes and count != numel, naming the tensor.
    void read_f32(const std::string& name, float* out, int64_t count) const;

  private:
    SafetensorsFile() = default;
    void unmap();

    std::string path_;
    const uint8_t* map_ = nullptr;  // (map_size_,) whole file, PROT_READ
    size_t map_size_ = 0;
    const uint8_t* buffer_ = nullptr;  // (buffer_size_,) data buffer after the header
    int64_t buffer_size_ = 0;
    std::vector<SafetensorsTensor> tensors_;
    std::map<std::string, size_t> index_;  // name -> position in tensors_
    std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
  public:
    // Copies `bytes` bytes from `data`; checks bytes == numel(shape) * dtype
    // size, a known dtype and a name not already added (nor "__metadata__").
    void add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
             const void* data, int64_t bytes);
    void set_metadata(const std::string& key, const std::string& value);

    // Writes path + ".tmp", fsyncs it, renames it over path and fsyncs the
    // directory, so path holds either the old file or the complete new one.
    // Data offsets follow insertion order with no gaps (the format forbids
    // holes); the header is space-padded to a multiple of 8 bytes so the data
    // buffer starts 8-aligned in the file.
    void write(const std::string& path) const;

  private:
    struct Entry {
        std::string name;
        std::string dtype;
        std::vector<int64_t> shape;
        std::vector<uint8_t> bytes;
    };
    std::vector<Entry> entries_;
    std::map<std::string, size_t> names_;
    std::map<std::string, std::string> metadata_;
};

// Writes a safetensors file without holding its tensors in memory: declare
// every tensor (and metadata) first, then write_header(), then each tensor's
// bytes in declaration order, in as many pieces as the caller likes, then
// finish(). The file is built at path + ".tmp" and renamed over path by
// finish() (fsync of the file, rename, fsync of the directory), so path holds
// either its old content or the complete new file; destroying an unfinished
// writer removes the .tmp. The file has the same layout SafetensorsWriter
// produces: offsets in declaration order, header space-padded to 8 bytes.
//
// Invariant: bytes written never exceed what the declared shapes need, every
// piece belongs to the tensor named with it, and finish() refuses to publish a
// file whose tensors are not all complete.
class SafetensorsStreamWriter {
  public:
    explicit SafetensorsStreamWriter(std::string path);
    SafetensorsStreamWriter(const SafetensorsStreamWriter&) = delete;
    SafetensorsStreamWriter& operator=(const SafetensorsStreamWriter&) = delete;
    ~SafetensorsStreamWriter();

    // Same checks as SafetensorsWriter::add; only before write_header().
    void declare(const std::string& name, const std::string& dtype,
                 const std::vector<int64_t>& shape);
    void set_metadata(const std::string& key, const std::string& value);

    // Creates path + ".tmp" and writes the length and the JSON header.
    void write_header();

    // Appends `bytes` bytes of tensor `name`, which must be the first
    // declared tensor not yet complete; refuses more bytes than it has left.
    void write(const std::string& name, const void* data, int64_t bytes);

    // Checks every tensor is complete, then publishes the file atomically.
    void finish();

  private:
    struct Entry {
        std::string name;
        std::string dtype;
        std::vector<int64_t> shape;
        int64_t bytes = 0;
    };
    void put(const void* data, size_t n);  // buffered append to the .tmp
    void flush();                          // writes out buffer_
    void write_fd(const uint8_t* p, size_t n);
    void skip_complete();  // advances current_ past tensors with no bytes left

    std::string path_, tmp_;
    int fd_ = -1;  // the .tmp while it is open
    std::vector<Entry> entries_;
    std::map<std::string, size_t> names_;
    std::map<std::string, std::string> metadata_;
    bool header_written_ = false, finished_ = false;
    size_t current_ = 0;           // entry being written
    int64_t current_done_ = 0;     // its bytes written so far
    std::vector<uint8_t> buffer_;  // (< 1 MiB) bytes put but not yet written
};

}  // namespace zt
