// Token shards (llm.c layout) and the token sources that training reads.
//
// A shard is a 256-int32 header (magic, version, token count) followed by the
// tokens: magic 20240520 + version 1 = uint16 tokens, magic 20240801 +
// version 7 = uint32 tokens. Shards from llm.c's and nanoGPT-style scripts
// load as they are.
//
// Invariant every TokenSource keeps: sequence k at length T is T+1 consecutive
// tokens of the source's stream (the first T are inputs, the last T targets),
// it is a pure function of (source, k, T), and a sequence never straddles two
// shards. The DataLoader builds the global, world-size-independent order on
// top of this numbering.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace zt {

constexpr int32_t kShardMagicU16 = 20240520;  // version 1: uint16 tokens
constexpr int32_t kShardMagicU32 = 20240801;  // version 7: uint32 tokens
constexpr int kShardHeaderInts = 256;         // header is 256 int32 = 1024 bytes

// One shard file, memory-mapped read-only for its lifetime (RAII, move-only).
class TokenShard {
  public:
    // Validates the header against the file size and refuses, naming the file,
    // anything that is not a complete, non-empty llm.c shard.
    static TokenShard open(const std::string& path);

    TokenShard(TokenShard&& other) noexcept;
    TokenShard& operator=(TokenShard&& other) noexcept;
    TokenShard(const TokenShard&) = delete;
    TokenShard& operator=(const TokenShard&) = delete;
    ~TokenShard();

    int64_t size() const { return n_tokens_; }  // tokens
    uint32_t token(int64_t i) const;
    // Copies tokens [start, start + count) widened to int32 into out (count,).
    void read(int64_t start, int64_t count, int32_t* out) const;
    uint32_t max_token() const { return max_token_; }  // scanned once at open
    int version() const { return token_bytes_ == 2 ? 1 : 7; }
    const std::string& path() const { return path_; }

  private:
    TokenShard() = default;
    void unmap();

    std::string path_;
    void* map_ = nullptr;  // whole file, header included
    size_t map_bytes_ = 0;
    const unsigned char* tokens_ = nullptr;  // map_ + 1024
    int64_t n_tokens_ = 0;
    int token_bytes_ = 0;  // 2 (version 1) or 4 (version 7)
    uint32_t max_token_ = 0;
};

// Writes a shard atomically (to path + ".tmp", then renamed). version 1 stores
// uint16 tokens and refuses ids > 65535; version 7 stores uint32.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version);

// Where training and evaluation read sequences from.
class TokenSource {
  public:
    virtual ~TokenSource() = default;
    // How many sequences of T+1 tokens the source holds at length T.
    virtual int64_t n_sequences(int T) const = 0;
    // Writes sequence k, T+1 tokens, into out (T+1,).
    virtual void read_sequence(int64_t k, int T, int32_t* out) const = 0;
    // An upper bound on every token id the source can return.
    virtual uint32_t max_token() const = 0;
    virtual std::string describe() const = 0;
};

// The shards of one split ("train" or "val") of a data directory, or a single
// shard file used as the train split. Sequences are numbered shard by shard:
// shard j contributes floor((size_j - 1) / T) sequences.
class ShardSet : public TokenSource {
  public:
    static std::unique_ptr<ShardSet> open(const std::string& dir_or_file, const std::string& split);
    // The shard paths open() would use, sorted by name; empty when a directory
    // has none for the split (so a caller can skip evaluation without data).
    // Refuses a nonexistent path or a bad split name.
    static std::vector<std::string> find_shards(const std::string& dir_or_file,
                                                const std::string& split);

    // Refuses (with tokens found vs needed) when no shard holds T+1 tokens.
    int64_t n_sequences(int T) const override;
    void read_sequence(int64_t k, int T, int32_t* out) const override;
    uint32_t max_token() const override;
    std::string describe() const override;

    const std::vector<TokenShard>& shards() const { return shards_; }
    const std::string& split() const { return split_; }
    int64_t total_tokens() const;

  private:
    ShardSet() = default;

    std::string root_;  // the directory or file given to open()
    std::string split_;
    std::vector<TokenShard> shards_;
};

// Refuses when the source holds a token id >= vocab_size, naming the source
// (for a ShardSet, the shard file), the largest id found and the vocab size.
void check_vocab(const TokenSource& src, int vocab_size);

// DIR/meta.json (meta.json beside it when given a shard file) when it
// exists, nullopt otherwise. Malformed JSON or anything but an object is an
// error naming the file.
std::optional<nlohmann::json> read_data_meta(const std::string& dir_or_file);

// read_data_meta's "vocab_size" when the file exists and has the key; nullopt
// otherwise. A vocab_size that is not a positive integer is an error naming the file.
std::optional<int> read_meta_vocab_size(const std::string& dir);

}  // namespace zt
