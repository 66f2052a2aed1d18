// Token shards: open (mmap + validation), write (atomic), ShardSet numbering,
// vocabulary checks and meta.json.
//
// Every refusal names the file and says what was expected and what was found,
// because a bad shard is the most common way a long run dies at step zero.
#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/check.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kHeaderBytes = kShardHeaderInts * int64_t(sizeof(int32_t));

// Closes a file descriptor on every path out of open().
struct FdGuard {
    int fd = -1;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// ---------------------------------------------------------------- TokenShard

TokenShard TokenShard::open(const std::string& path) {
    FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    ZT_CHECK(fd.fd >= 0, "token shard %s: cannot open (%s); check the data path", path.c_str(),
             std::strerror(errno));
    struct stat st;
    ZT_CHECK(::fstat(fd.fd, &st) == 0, "token shard %s: cannot stat (%s)", path.c_str(),
             std::strerror(errno));
    ZT_CHECK(S_ISREG(st.st_mode), "token shard %s: not a regular file", path.c_str());
    const int64_t file_bytes = st.st_size;
    ZT_CHECK(file_bytes >= kHeaderBytes,
             "token shard %s: file has %lld bytes, shorter than the %lld-byte header "
             "(256 int32); the file is empty or truncated, or not an llm.c token shard",
             path.c_str(), (long long)file_bytes, (long long)kHeaderBytes);

    int32_t header[kShardHeaderInts];
    ssize_t got = ::pread(fd.fd, header, sizeof(header), 0);
    ZT_CHECK(got == ssize_t(sizeof(header)), "token shard %s: cannot read the header (%s)",
             path.c_str(), got < 0 ? std::strerror(errno) : "short read");

    const int32_t magic = header[0], version = header[1];
    ZT_CHECK(magic == kShardMagicU16 || magic == kShardMagicU32,
             "token shard %s: header magic is %d, expected %d (uint16 tokens, version 1) or %d "
             "(uint32 tokens, version 7); not an llm.c-format token shard",
             path.c_str(), magic, kShardMagicU16, kShardMagicU32);
    const int expected_version = magic == kShardMagicU16 ? 1 : 7;
    ZT_CHECK(version == expected_version,
             "token shard %s: magic %d goes with version %d, found version %d; known formats are "
             "magic %d + version 1 (uint16) and magic %d + version 7 (uint32)",
             path.c_str(), magic, expected_version, version, kShardMagicU16, kShardMagicU32);

    TokenShard shard;
    shard.path_ = path;
    shard.token_bytes_ = version == 1 ? 2 : 4;
    // llm.c writes the count as int32; reading it unsigned also accepts counts
    // past 2^31 that other writers may produce.
    const int64_t count = int64_t(uint32_t(header[2]));
    const int64_t expected_bytes = kHeaderBytes + count * shard.token_bytes_;
    if (file_bytes != expected_bytes) {
        const int64_t diff = file_bytes - expected_bytes;
        ZT_FAIL(
            "token shard %s: header says %lld tokens of %d bytes, so the file should have "
            "%lld bytes, but it has %lld: %s %lld bytes%s",
            path.c_str(), (long long)count, shard.token_bytes_, (long long)expected_bytes,
            (long long)file_bytes, diff < 0 ? "truncated, missing" : "trailing",
            (long long)(diff < 0 ? -diff : diff),
            diff < 0 ? " (an interrupted copy or download?)"
                     : " after the tokens (wrong header count, or a concatenated file?)");
    }
    ZT_CHECK(count > 0,
             "token shard %s: header says 0 tokens; an empty shard holds no data, remove it",
             path.c_str());
    shard.n_tokens_ = count;

    shard.map_bytes_ = size_t(file_bytes);
    void* map = ::mmap(nullptr, shard.map_bytes_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
    ZT_CHECK(map != MAP_FAILED, "token shard %s: mmap of %lld bytes failed (%s)", path.c_str(),
             (long long)file_bytes, std::strerror(errno));
    shard.map_ = map;
    shard.tokens_ = static_cast<const unsigned char*>(map) + kHeaderBytes;

    uint32_t max_token = 0;
    if (shard.token_bytes_ == 2) {
        const uint16_t* t = reinterpret_cast<const uint16_t*>(shard.tokens_);
        uint16_t m = 0;
        for (int64_t i = 0; i < count; i++) m = std::max(m, t[i]);
        max_token = m;
    } else {
        const uint32_t* t = reinterpret_cast<const uint32_t*>(shard.tokens_);
        for (int64_t i = 0; i < count; i++) max_token = std::max(max_token, t[i]);
    }
    shard.max_token_ = max_token;
    return shard;
}

TokenShard::TokenShard(TokenShard&& other) noexcept {
    *this = std::move(other);
}

TokenShard& TokenShard::operator=(TokenShard&& other) noexcept {
    if (this != &other) {
        unmap();
        path_ = std::move(other.path_);
        map_ = std::exchange(other.map_, nullptr);
        map_bytes_ = std::exchange(other.map_bytes_, 0);
        tokens_ = std::exchange(other.tokens_, nullptr);
        n_tokens_ = std::exchange(other.n_tokens_, 0);
        token_bytes_ = std::exchange(other.token_bytes_, 0);
        max_token_ = std::exchange(other.max_token_, 0);
    }
    return *this;
}

TokenShard::~TokenShard() {
    unmap();
}

void TokenShard::unmap() {
    if (map_) ::munmap(map_, map_bytes_);
    map_ = nullptr;
    map_bytes_ = 0;
    tokens_ = nullptr;
}

uint32_t TokenShard::token(int64_t i) const {
    ZT_CHECK(i >= 0 && i < n_tokens_, "token shard %s: token index %lld out of range [0, %lld)",
             path_.c_str(), (long long)i, (long long)n_tokens_);
    if (token_bytes_ == 2) return reinterpret_cast<const uint16_t*>(tokens_)[i];
    return reinterpret_cast<const uint32_t*>(tokens_)[i];
}

void TokenShard::read(int64_t start, int64_t count, int32_t* out) const {
    ZT_CHECK(start >= 0 && count >= 0 && start + count <= n_tokens_,
             "token shard %s: tokens [%lld, %lld) out of range [0, %lld)", path_.c_str(),
             (long long)start, (long long)(start + count), (long long)n_tokens_);
    if (token_bytes_ == 2) {
        const uint16_t* t = reinterpret_cast<const uint16_t*>(tokens_) + start;
        for (int64_t i = 0; i < count; i++) out[i] = int32_t(t[i]);
    } else {
        const uint32_t* t = reinterpret_cast<const uint32_t*>(tokens_) + start;
        for (int64_t i = 0; i < count; i++) out[i] = int32_t(t[i]);
    }
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version) {
    ZT_CHECK(version == 1 || version == 7,
             "write_shard %s: version %d is not a shard format; use 1 (uint16 tokens) or 7 "
             "(uint32 tokens)",
             path.c_str(), version);
    ZT_CHECK(!tokens.empty(), "write_shard %s: no tokens; a shard needs at least one",
             path.c_str());
    ZT_CHECK(tokens.size() <= size_t(std::numeric_limits<int32_t>::max()),
             "write_shard %s: %zu tokens exceed the int32 header count (max %d); split them "
             "into several shards",
             path.c_str(), tokens.size(), std::numeric_limits<int32_t>::max());
    if (version == 1) {
        auto it = std::max_element(tokens.begin(), tokens.end());
        ZT_CHECK(*it <= 65535,
                 "write_shard %s: token id %u at position %lld does not fit version 1 (uint16, "
                 "max 65535); write version 7 (uint32) instead",
                 path.c_str(), *it, (long long)(it - tokens.begin()));
    }

    int32_t header[kShardHeaderInts] = {};
    header[0] = version == 1 ? kShardMagicU16 : kShardMagicU32;
    header[1] = version;
    header[2] = int32_t(tokens.size());

    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    ZT_CHECK(f, "write_shard: cannot create %s (%s)", tmp.c_str(), std::strerror(errno));
    errno = 0;
    bool ok = std::fwrite(header, sizeof(header), 1, f) == 1;
    if (ok && version == 1) {
        std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
        ok = std::fwrite(narrow.data(), sizeof(uint16_t), narrow.size(), f) == narrow.size();
    } else if (ok) {
        ok = std::fwrite(tokens.data(), sizeof(uint32_t), tokens.size(), f) == tokens.size();
    }
    const int write_errno = errno;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) {
        std::remove(tmp.c_str());
        ZT_FAIL("write_shard: writing %s failed (%s); is the disk full?", tmp.c_str(),
                std::strerror(write_errno ? write_errno : errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        ZT_FAIL("write_shard: cannot rename %s to %s (%s)", tmp.c_str(), path.c_str(),
                std::strerror(e));
    }
}

// ------------------------------------------------------------------ ShardSet

std::vector<std::string> ShardSet::find_shards(const std::string& dir_or_file,
                                               const std::string& split) {
    ZT_CHECK(split == "train" || split == "val",
             "data split '%s' is unknown; expected 'train' or 'val'", split.c_str());
    std::error_code ec;
    const fs::file_status st = fs::status(dir_or_file, ec);
    ZT_CHECK(fs::exists(st),
             "data path %s does not exist; expected a directory of .bin shards "
             "or one .bin shard file",
             dir_or_file.c_str());
    if (!fs::is_directory(st)) {
        // A single file is the whole train split and has no validation part.
        if (split == "train") return {dir_or_file};
        return {};
    }
    std::vector<std::string> names;
    for (const fs::directory_entry& e : fs::directory_iterator(dir_or_file, ec)) {
        const std::string name = e.path().filename().string();
        if (!e.is_regular_file(ec)) continue;
        if (ends_with(name, ".bin") && name.find(split) != std::string::npos) names.push_back(name);
    }
    ZT_CHECK(!ec, "data directory %s: cannot list (%s)", dir_or_file.c_str(), ec.message().c_str());
    std::sort(names.begin(), names.end());
    std::vector<std::string> paths;
    for (const std::string& n : names) paths.push_back((fs::path(dir_or_file) / n).string());
    return paths;
}

std::unique_ptr<ShardSet> ShardSet::open(const std::string& dir_or_file, const std::string& split) {
    std::vector<std::string> paths = find_shards(dir_or_file, split);
    if (paths.empty()) {
        std::error_code ec;
        if (!fs::is_directory(dir_or_file, ec)) {
            ZT_FAIL(
                "data path %s is a single shard file, which serves only as the train split; "
                "for a '%s' split put *train*.bin and *val*.bin shards in a directory",
                dir_or_file.c_str(), split.c_str());
        }
        std::vector<std::string> found;
        for (const fs::directory_entry& e : fs::directory_iterator(dir_or_file, ec))
            found.push_back(e.path().filename().string());
        std::sort(found.begin(), found.end());
        std::string list;
        const size_t shown = std::min<size_t>(found.size(), 20);
        for (size_t i = 0; i < shown; i++) list += (i ? ", " : "") + found[i];
        if (found.size() > shown) list += strprintf(", ... (%zu more)", found.size() - shown);
        ZT_FAIL(
            "data directory %s has no shards for split '%s' (files ending in .bin whose name "
            "contains '%s'); found: %s",
            dir_or_file.c_str(), split.c_str(), split.c_str(),
            found.empty() ? "nothing (empty directory)" : list.c_str());
    }
    std::unique_ptr<ShardSet> set(new ShardSet());
    set->root_ = dir_or_file;
    set->split_ = split;
    for (const std::string& p : paths) set->shards_.push_back(TokenShard::open(p));
    return set;
}

int64_t ShardSet::total_tokens() const {
    int64_t n = 0;
    for (const TokenShard& s : shards_) n += s.size();
    return n;
}

int64_t ShardSet::n_sequences(int T) const {
    ZT_CHECK(T > 0, "sequence length %d must be positive", T);
    int64_t n = 0, longest = 0;
    for (const TokenShard& s : shards_) {
        n += (s.size() - 1) / T;
        longest = std::max(longest, s.size());
    }
    ZT_CHECK(n > 0,
             "data split '%s' of %s has %lld tokens (largest shard %lld) but one sequence of "
             "seq-len %d needs %d tokens within one shard; lower --seq-len or add data",
             split_.c_str(), root_.c_str(), (long long)total_tokens(), (long long)longest, T,
             T + 1);
    return n;
}

void ShardSet::read_sequence(int64_t k, int T, int32_t* out) const {
    ZT_CHECK(T > 0, "sequence length %d must be positive", T);
    ZT_CHECK(k >= 0, "sequence index %lld is negative", (long long)k);
    int64_t local = k;
    for (const TokenShard& s : shards_) {
        const int64_t n = (s.size() - 1) / T;
        if (local < n) {
            s.read(local * T, int64_t(T) + 1, out);
            return;
        }
        local -= n;
    }
    ZT_FAIL("sequence %lld is past the end of split '%s' of %s (%lld sequences at seq-len %d)",
            (long long)k, split_.c_str(), root_.c_str(), (long long)(k - local), T);
}

uint32_t ShardSet::max_token() const {
    uint32_t m = 0;
    for (const TokenShard& s : shards_) m = std::max(m, s.max_token());
    return m;
}

std::string ShardSet::describe() const {
    return strprintf("split '%s' of %s: %zu shard%s, %lld tokens", split_.c_str(), root_.c_str(),
                     shards_.size(), shards_.size() == 1 ? "" : "s", (long long)total_tokens());
}

// ----------------------------------------------------------- vocab and meta

void check_vocab(const TokenSource& src, int vocab_size) {
    ZT_CHECK(vocab_size > 0, "vocab_size %d must be positive", vocab_size);
    if (src.max_token() < uint32_t(vocab_size)) return;
    if (const ShardSet* set = dynamic_cast<const ShardSet*>(&src)) {
        for (const TokenShard& s : set->shards()) {
            ZT_CHECK(s.max_token() < uint32_t(vocab_size),
                     "token shard %s holds token id %u (its largest), but the model's vocab_size "
                     "is %d; ids must be < vocab_size: use a model whose vocab_size is at least "
                     "%u, or data made with the model's tokenizer",
                     s.path().c_str(), s.max_token(), vocab_size, s.max_token() + 1);
        }
    }
    ZT_FAIL(
        "data source %s holds token id %u (its largest), but the model's vocab_size is %d; "
        "ids must be < vocab_size",
        src.describe().c_str(), src.max_token(), vocab_size);
}

std::optional<nlohmann::json> read_data_meta(const std::string& dir_or_file) {
    std::error_code ec;
    fs::path base(dir_or_file);
    if (fs::is_regular_file(base, ec)) base = base.parent_path();
    const fs::path meta = base / "meta.json";
    if (!fs::exists(meta, ec)) return std::nullopt;
    std::ifstream in(meta);
    ZT_CHECK(in.good(), "%s: cannot open for reading", meta.string().c_str());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        ZT_FAIL("%s: malformed JSON (%s)", meta.string().c_str(), e.what());
    }
    ZT_CHECK(j.is_object(), "%s: expected a JSON object, found %s", meta.string().c_str(),
             j.type_name());
    return j;
}

std::optional<int> read_meta_vocab_size(const std::string& dir) {
    const std::optional<nlohmann::json> j = read_data_meta(dir);
    if (!j) return std::nullopt;
    const fs::path meta = (fs::is_regular_file(dir) ? fs::path(dir).parent_path() : fs::path(dir)) /
                          "meta.json";
    auto it = j->find("vocab_size");
    if (it == j->end()) return std::nullopt;
    ZT_CHECK(it->is_number_integer() && it->get<int64_t>() > 0 &&
                 it->get<int64_t>() <= std::numeric_limits<int>::max(),
             "%s: \"vocab_size\" must be a positive integer, found %s", meta.string().c_str(),
             it->dump().c_str());
    return int(it->get<int64_t>());
}

}  // namespace zt
