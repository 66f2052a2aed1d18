// Safetensors reader and writer; see safetensors.h for the format and the
// invariants the reader guarantees once open() returns.
//
// Every header field is checked before it is used to form a pointer, so a
// hostile file is a zt::Error that names the file, never an out-of-bounds read.
#include "ckpt/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/check.h"
#include "core/dtype.h"

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; a big-endian host would need byte swaps");

namespace zt {
namespace {

using json = nlohmann::json;

// Refuse headers past this size; real checkpoints use well under 1 MiB, and
// the cap keeps a hostile length from making the JSON parser allocate GBs.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {  // zero or subnormal: mant * 2^-24
        float mag = std::ldexp(float(mant), -24);
        return sign ? -mag : mag;
    }
    uint32_t u = exp == 0x1f ? (sign | 0x7f800000u | (mant << 13))  // Inf / NaN
                             : (sign | ((exp + 112) << 23) | (mant << 13));
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// A non-negative JSON integer that fits int64, or false.
bool get_nonneg_i64(const json& j, int64_t* out) {
    if (j.is_number_unsigned()) {
        uint64_t u = j.get<uint64_t>();
        if (u > uint64_t(INT64_MAX)) return false;
        *out = int64_t(u);
        return true;
    }
    if (j.is_number_integer()) {
        int64_t v = j.get<int64_t>();
        if (v < 0) return false;
        *out = v;
        return true;
    }
    return false;
}

// Parses the header, refusing duplicate keys in any object: nlohmann keeps
// the last of two equal keys, which would silently hide a tensor entry.
json parse_header(const std::string& path, const char* begin, const char* end) {
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    auto cb = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            open_objects.emplace_back();
        } else if (event == json::parse_event_t::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
        } else if (event == json::parse_event_t::key && !open_objects.empty()) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
        }
        return true;
    };
    json root;
    try {
        root = json::parse(begin, end, cb);
    } catch (const json::exception& e) {
        ZT_FAIL("safetensors %s: header is not valid JSON: %s", path.c_str(), e.what());
    }
    ZT_CHECK(duplicate.empty(), "safetensors %s: header repeats the key '%s'", path.c_str(),
             duplicate.c_str());
    return root;
}

// Closes an fd on every path out of a function.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// Byte size a writer's tensor needs; refuses a reserved or empty name, an
// unknown dtype, a negative dim and overflow, naming the tensor.
int64_t writer_tensor_bytes(const std::string& name, const std::string& dtype,
                            const std::vector<int64_t>& shape) {
    const char* nm = name.c_str();
    ZT_CHECK(!name.empty() && name != "__metadata__", "safetensors writer: invalid tensor name '%s'",
             nm);
    const int64_t esize = safetensors_dtype_size(dtype);
    ZT_CHECK(esize > 0, "safetensors writer: tensor '%s' has unknown dtype '%s'", nm,
             dtype.c_str());
    int64_t expect = esize;
    for (int64_t d : shape) {
        ZT_CHECK(d >= 0, "safetensors writer: tensor '%s' has negative dim %lld", nm, (long long)d);
        ZT_CHECK(!__builtin_mul_overflow(expect, d, &expect),
                 "safetensors writer: tensor '%s' byte size overflows int64", nm);
    }
    return expect;
}

// The JSON header for tensors laid out back to back in the given order,
// space-padded so that 8 + its size is a multiple of 8 (the data buffer then
// starts 8-aligned in the file).
struct HeaderEntry {
    const std::string& name;
    const std::string& dtype;
    const std::vector<int64_t>& shape;
    int64_t bytes;
};
std::string padded_header(const std::vector<HeaderEntry>& entries,
                          const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    int64_t offset = 0;
    for (const HeaderEntry& e : entries) {
        const int64_t end = offset + e.bytes;
        header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, end}}};
        offset = end;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

// Renames tmp over path and fsyncs the directory so the rename is durable;
// removes tmp if the rename fails.
void rename_durably(const std::string& tmp, const std::string& path) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        ZT_FAIL("safetensors %s: cannot rename %s over it: %s", path.c_str(), tmp.c_str(),
                std::strerror(err));
    }
    std::string dir = std::filesystem::path(path).parent_path().string();
    Fd dfd{::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (dfd.fd >= 0) ::fsync(dfd.fd);
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& d) {
    if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E5M2" || d == "F8_E4M3") return 1;
    if (d == "I16" || d == "U16" || d == "F16" || d == "BF16") return 2;
    if (d == "I32" || d == "U32" || d == "F32") return 4;
    if (d == "I64" || d == "U64" || d == "F64") return 8;
    return 0;
}

int64_t safetensors_numel(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        ZT_CHECK(d >= 0, "safetensors: negative dimension %lld", (long long)d);
        ZT_CHECK(!__builtin_mul_overflow(n, d, &n), "safetensors: shape product overflows int64");
    }
    return n;
}

// ---- reader ----------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    const char* p = path.c_str();
    SafetensorsFile f;
    f.path_ = path;

    Fd fd{::open(p, O_RDONLY | O_CLOEXEC)};
    ZT_CHECK(fd.fd >= 0, "safetensors %s: cannot open: %s", p, std::strerror(errno));
    struct stat st;
    ZT_CHECK(::fstat(fd.fd, &st) == 0, "safetensors %s: cannot stat: %s", p, std::strerror(errno));
    ZT_CHECK(S_ISREG(st.st_mode), "safetensors %s: not a regular file", p);
    const uint64_t file_size = uint64_t(st.st_size);
    ZT_CHECK(file_size >= 8,
             "safetensors %s: file is %llu bytes, shorter than the 8-byte header "
             "length",
             p, (unsigned long long)file_size);

    void* m = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd.fd, 0);
    ZT_CHECK(m != MAP_FAILED, "safetensors %s: mmap failed: %s", p, std::strerror(errno));
    f.map_ = static_cast<const uint8_t*>(m);  // owned by f from here: errors unmap it
    f.map_size_ = file_size;

    uint64_t n = 0;
    std::memcpy(&n, f.map_, 8);
    ZT_CHECK(n <= file_size - 8,
             "safetensors %s: header length %llu exceeds the %llu bytes after "
             "the length field (truncated file?)",
             p, (unsigned long long)n, (unsigned long long)(file_size - 8));
    ZT_CHECK(n <= kMaxHeaderBytes, "safetensors %s: header length %llu exceeds the %llu-byte limit",
             p, (unsigned long long)n, (unsigned long long)kMaxHeaderBytes);
    const char* hdr = reinterpret_cast<const char*>(f.map_ + 8);
    ZT_CHECK(n >= 2 && hdr[0] == '{',
             "safetensors %s: header must be a JSON object starting "
             "with '{'",
             p);
    f.buffer_ = f.map_ + 8 + n;
    f.buffer_size_ = int64_t(file_size - 8 - n);

    json root = parse_header(path, hdr, hdr + n);
    ZT_CHECK(root.is_object(), "safetensors %s: header is JSON but not an object", p);

    for (auto& [name, entry] : root.items()) {
        const char* nm = name.c_str();
        if (name == "__metadata__") {
            ZT_CHECK(entry.is_object(), "safetensors %s: __metadata__ is not an object", p);
            for (auto& [key, value] : entry.items()) {
                ZT_CHECK(value.is_string(),
                         "safetensors %s: __metadata__['%s'] is %s, expected "
                         "a string",
                         p, key.c_str(), value.type_name());
                f.metadata_[key] = value.get<std::string>();
            }
            continue;
        }
        ZT_CHECK(entry.is_object(), "safetensors %s: tensor '%s' entry is %s, expected an object",
                 p, nm, entry.type_name());
        SafetensorsTensor t;
        t.name = name;

        auto dt = entry.find("dtype");
        ZT_CHECK(dt != entry.end() && dt->is_string(),
                 "safetensors %s: tensor '%s' lacks a "
                 "string 'dtype'",
                 p, nm);
        t.dtype = dt->get<std::string>();
        const int64_t esize = safetensors_dtype_size(t.dtype);
        ZT_CHECK(esize > 0, "safetensors %s: tensor '%s' has unknown dtype '%s'", p, nm,
                 t.dtype.c_str());

        auto sh = entry.find("shape");
        ZT_CHECK(sh != entry.end() && sh->is_array(),
                 "safetensors %s: tensor '%s' lacks an "
                 "array 'shape'",
                 p, nm);
        int64_t nbytes = esize;
        for (const json& d : *sh) {
            int64_t dim = 0;
            ZT_CHECK(get_nonneg_i64(d, &dim),
                     "safetensors %s: tensor '%s' shape has %s, expected "
                     "a non-negative integer",
                     p, nm, d.dump().c_str());
            t.shape.push_back(dim);
            ZT_CHECK(!__builtin_mul_overflow(nbytes, dim, &nbytes),
                     "safetensors %s: tensor '%s' "
                     "byte size overflows int64",
                     p, nm);
        }

        auto off = entry.find("data_offsets");
        ZT_CHECK(off != entry.end() && off->is_array() && off->size() == 2,
                 "safetensors %s: "
                 "tensor '%s' lacks a two-element array 'data_offsets'",
                 p, nm);
        ZT_CHECK(get_nonneg_i64((*off)[0], &t.begin) && get_nonneg_i64((*off)[1], &t.end),
                 "safetensors %s: tensor '%s' data_offsets %s are not non-negative integers", p, nm,
                 off->dump().c_str());
        ZT_CHECK(t.begin <= t.end,
                 "safetensors %s: tensor '%s' data_offsets [%lld, %lld] has "
                 "begin > end",
                 p, nm, (long long)t.begin, (long long)t.end);
        ZT_CHECK(t.end <= f.buffer_size_,
                 "safetensors %s: tensor '%s' ends at %lld, beyond the "
                 "%lld-byte data buffer",
                 p, nm, (long long)t.end, (long long)f.buffer_size_);
        ZT_CHECK(t.end - t.begin == nbytes,
                 "safetensors %s: tensor '%s' spans %lld bytes but "
                 "%s x %s needs %lld",
                 p, nm, (long long)(t.end - t.begin), t.dtype.c_str(), sh->dump().c_str(),
                 (long long)nbytes);
        f.tensors_.push_back(std::move(t));
    }

    // The tensors must tile [0, buffer_size_) exactly: no overlap, no holes.
    std::vector<const SafetensorsTensor*> by_offset;
    for (const auto& t : f.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    int64_t covered = 0;
    for (const SafetensorsTensor* t : by_offset) {
        ZT_CHECK(t->begin >= covered,
                 "safetensors %s: tensor '%s' [%lld, %lld) overlaps the "
                 "tensor before it, which ends at %lld",
                 p, t->name.c_str(), (long long)t->begin, (long long)t->end, (long long)covered);
        ZT_CHECK(t->begin == covered,
                 "safetensors %s: hole in the data buffer at [%lld, %lld) "
                 "before tensor '%s'",
                 p, (long long)covered, (long long)t->begin, t->name.c_str());
        covered = t->end;
    }
    ZT_CHECK(covered == f.buffer_size_,
             "safetensors %s: data buffer is %lld bytes but the "
             "tensors cover only %lld (trailing bytes)",
             p, (long long)f.buffer_size_, (long long)covered);

    for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
    return f;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept {
    *this = std::move(o);
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
    if (this != &o) {
        unmap();
        path_ = std::move(o.path_);
        map_ = std::exchange(o.map_, nullptr);
        map_size_ = std::exchange(o.map_size_, 0);
        buffer_ = std::exchange(o.buffer_, nullptr);
        buffer_size_ = std::exchange(o.buffer_size_, 0);
        tensors_ = std::move(o.tensors_);
        index_ = std::move(o.index_);
        metadata_ = std::move(o.metadata_);
    }
    return *this;
}

SafetensorsFile::~SafetensorsFile() {
    unmap();
}

void SafetensorsFile::unmap() {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
    map_ = nullptr;
    map_size_ = 0;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

const void* SafetensorsFile::data(const SafetensorsTensor& t) const {
    ZT_CHECK(map_ && t.begin >= 0 && t.begin <= t.end && t.end <= buffer_size_,
             "safetensors %s: tensor '%s' range [%lld, %lld) is not inside this file's "
             "%lld-byte data buffer",
             path_.c_str(), t.name.c_str(), (long long)t.begin, (long long)t.end,
             (long long)buffer_size_);
    return buffer_ + t.begin;
}

void SafetensorsFile::read_f32(const std::string& name, float* out, int64_t count) const {
    const SafetensorsTensor* t = find(name);
    ZT_CHECK(t, "safetensors %s: no tensor named '%s'", path_.c_str(), name.c_str());
    const int64_t n = safetensors_numel(t->shape);
    ZT_CHECK(count == n, "safetensors %s: tensor '%s' has %lld elements, caller expects %lld",
             path_.c_str(), name.c_str(), (long long)n, (long long)count);
    const uint8_t* src = static_cast<const uint8_t*>(data(*t));
    if (t->dtype == "F32") {
        if (n) std::memcpy(out, src, size_t(n) * 4);
    } else if (t->dtype == "BF16" || t->dtype == "F16") {
        const bool is_bf16 = t->dtype == "BF16";
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);  // the mapping may be unaligned
            out[i] = is_bf16 ? bf16_to_f32(bf16{h}) : f16_to_f32(h);
        }
    } else {
        ZT_FAIL("safetensors %s: tensor '%s' is %s; read_f32 converts only F32, BF16 and F16",
                path_.c_str(), name.c_str(), t->dtype.c_str());
    }
}

// ---- writer ----------------------------------------------------------------

void SafetensorsWriter::add(const std::string& name, const std::string& dtype,
                            const std::vector<int64_t>& shape, const void* data, int64_t bytes) {
    const char* nm = name.c_str();
    ZT_CHECK(!names_.count(name), "safetensors writer: tensor '%s' added twice", nm);
    const int64_t expect = writer_tensor_bytes(name, dtype, shape);
    ZT_CHECK(bytes == expect,
             "safetensors writer: tensor '%s' (%s) got %lld bytes, shape needs "
             "%lld",
             nm, dtype.c_str(), (long long)bytes, (long long)expect);
    ZT_CHECK(bytes == 0 || data, "safetensors writer: tensor '%s' has null data", nm);
    const uint8_t* src = static_cast<const uint8_t*>(data);
    names_[name] = entries_.size();
    entries_.push_back({name, dtype, shape, std::vector<uint8_t>(src, src + bytes)});
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
    std::vector<HeaderEntry> header;
    for (const Entry& e : entries_)
        header.push_back({e.name, e.dtype, e.shape, int64_t(e.bytes.size())});
    const std::string text = padded_header(header, metadata_);

    const std::string tmp = path + ".tmp";
    const char* tp = tmp.c_str();
    {
        Fd fd{::open(tp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
        ZT_CHECK(fd.fd >= 0, "safetensors %s: cannot create: %s", tp, std::strerror(errno));
        auto put = [&](const void* p, size_t n) {
            const char* c = static_cast<const char*>(p);
            while (n > 0) {
                ssize_t w = ::write(fd.fd, c, n);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    int err = errno;
                    ::unlink(tp);
                    ZT_FAIL("safetensors %s: write failed: %s", tp, std::strerror(err));
                }
                c += w;
                n -= size_t(w);
            }
        };
        const uint64_t n = text.size();
        put(&n, 8);
        put(text.data(), text.size());
        for (const Entry& e : entries_) put(e.bytes.data(), e.bytes.size());
        if (::fsync(fd.fd) != 0) {
            int err = errno;
            ::unlink(tp);
            ZT_FAIL("safetensors %s: fsync failed: %s", tp, std::strerror(err));
        }
    }
    rename_durably(tmp, path);
}

// ---- streaming writer ------------------------------------------------------

namespace {
// Pieces smaller than this are gathered before a write(2); larger ones go straight through.
constexpr size_t kStreamBufferBytes = size_t(1) << 20;
}  // namespace

SafetensorsStreamWriter::SafetensorsStreamWriter(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp") {}

SafetensorsStreamWriter::~SafetensorsStreamWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (header_written_ && !finished_) ::unlink(tmp_.c_str());
}

void SafetensorsStreamWriter::declare(const std::string& name, const std::string& dtype,
                                      const std::vector<int64_t>& shape) {
    const char* nm = name.c_str();
    ZT_CHECK(!header_written_, "safetensors %s: tensor '%s' declared after the header was written",
             path_.c_str(), nm);
    ZT_CHECK(!names_.count(name), "safetensors writer: tensor '%s' declared twice", nm);
    const int64_t bytes = writer_tensor_bytes(name, dtype, shape);
    names_[name] = entries_.size();
    entries_.push_back({name, dtype, shape, bytes});
}

void SafetensorsStreamWriter::set_metadata(const std::string& key, const std::string& value) {
    ZT_CHECK(!header_written_, "safetensors %s: metadata '%s' set after the header was written",
             path_.c_str(), key.c_str());
    metadata_[key] = value;
}

void SafetensorsStreamWriter::write_header() {
    ZT_CHECK(!header_written_, "safetensors %s: header written twice", path_.c_str());
    std::vector<HeaderEntry> header;
    for (const Entry& e : entries_) header.push_back({e.name, e.dtype, e.shape, e.bytes});
    const std::string text = padded_header(header, metadata_);

    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ZT_CHECK(fd_ >= 0, "safetensors %s: cannot create: %s", tmp_.c_str(), std::strerror(errno));
    header_written_ = true;  // from here the destructor removes the .tmp unless finished
    buffer_.reserve(kStreamBufferBytes);
    const uint64_t n = text.size();
    put(&n, 8);
    put(text.data(), text.size());
    skip_complete();
}

void SafetensorsStreamWriter::write(const std::string& name, const void* data, int64_t bytes) {
    const char* nm = name.c_str();
    ZT_CHECK(header_written_ && !finished_, "safetensors %s: bytes of tensor '%s' written %s",
             path_.c_str(), nm, finished_ ? "after finish()" : "before write_header()");
    ZT_CHECK(current_ < entries_.size(),
             "safetensors %s: bytes of tensor '%s' written after every declared tensor is "
             "complete",
             path_.c_str(), nm);
    const Entry& e = entries_[current_];
    ZT_CHECK(name == e.name,
             "safetensors %s: bytes of tensor '%s' written while '%s' is incomplete (%lld of "
             "%lld bytes); tensors are written in declaration order",
             path_.c_str(), nm, e.name.c_str(), (long long)current_done_, (long long)e.bytes);
    ZT_CHECK(bytes >= 0 && bytes <= e.bytes - current_done_,
             "safetensors %s: tensor '%s' got a %lld-byte piece but has %lld of %lld bytes left",
             path_.c_str(), nm, (long long)bytes, (long long)(e.bytes - current_done_),
             (long long)e.bytes);
    ZT_CHECK(bytes == 0 || data, "safetensors %s: tensor '%s' has null data", path_.c_str(), nm);
    put(data, size_t(bytes));
    current_done_ += bytes;
    skip_complete();
}

void SafetensorsStreamWriter::finish() {
    ZT_CHECK(header_written_ && !finished_, "safetensors %s: finish() %s", path_.c_str(),
             finished_ ? "called twice" : "before write_header()");
    ZT_CHECK(current_ == entries_.size(),
             "safetensors %s: finish() with tensor '%s' incomplete (%lld of %lld bytes written)",
             path_.c_str(), entries_[current_].name.c_str(), (long long)current_done_,
             (long long)entries_[current_].bytes);
    flush();
    if (::fsync(fd_) != 0)
        ZT_FAIL("safetensors %s: fsync failed: %s", tmp_.c_str(), std::strerror(errno));
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0)
        ZT_FAIL("safetensors %s: close failed: %s", tmp_.c_str(), std::strerror(errno));
    rename_durably(tmp_, path_);
    finished_ = true;
}

void SafetensorsStreamWriter::skip_complete() {
    while (current_ < entries_.size() && current_done_ == entries_[current_].bytes) {
        ++current_;
        current_done_ = 0;
    }
}

void SafetensorsStreamWriter::put(const void* data, size_t n) {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    if (buffer_.size() + n > kStreamBufferBytes) flush();
    if (n >= kStreamBufferBytes) {
        write_fd(p, n);
    } else {
        buffer_.insert(buffer_.end(), p, p + n);
    }
}

void SafetensorsStreamWriter::flush() {
    write_fd(buffer_.data(), buffer_.size());
    buffer_.clear();
}

void SafetensorsStreamWriter::write_fd(const uint8_t* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd_, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) ZT_FAIL("safetensors %s: write failed: %s", tmp_.c_str(), std::strerror(errno));
        p += w;
        n -= size_t(w);
    }
}

}  // namespace zt
