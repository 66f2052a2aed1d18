// SHA-256 (FIPS 180-4): content hashes for tokenizer files and checkpoints.
//
// Invariant: the digest depends only on the bytes, never on how they were
// split across update() calls, so a file streamed in blocks hashes the same
// as the file in one buffer (and as `sha256sum` prints it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace zt {

// Incremental hasher: update() any number of times, then hex_digest() once.
class Sha256 {
  public:
    Sha256();
    void update(const void* data, size_t n);
    // The 64-character lowercase hex digest. Finishes the hash: a later
    // update() or hex_digest() is an error.
    std::string hex_digest();

  private:
    void compress(const uint8_t* block);  // block (64,)

    uint32_t state_[8];
    uint8_t buffer_[64];  // a partial block of buffered_ bytes
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
    bool finished_ = false;
};

std::string sha256_hex(const void* data, size_t n);

// Streams the file in blocks; refuses, naming the file, one that cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace zt
