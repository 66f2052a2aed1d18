// What every fuzz target shares: a scratch directory of its own, files
// written from the fuzzer's bytes, and the contract checked on each input.
//
// The contract for a parser of outside input: it accepts the input or refuses
// it with a zt::Error. Any other exception escaping (a JSON library type
// error, std::out_of_range, std::bad_alloc) ends the process through
// std::terminate and counts as a finding, as a crash or a sanitizer report
// does.
#pragma once
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/check.h"

namespace zt_fuzz {

// A directory under $TMPDIR for this process, removed at exit.
inline const std::string& scratch_dir() {
    static const std::string dir = [] {
        std::string tmpl = (std::filesystem::temp_directory_path() / "zt-fuzz-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) {
            std::perror("zt-fuzz: mkdtemp");
            std::abort();
        }
        static struct Remove {
            std::string path;
            ~Remove() {
                std::error_code ec;
                std::filesystem::remove_all(path, ec);
            }
        } remove{tmpl};
        return tmpl;
    }();
    return dir;
}

inline void write_file(const std::string& path, std::string_view bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    if (!f) {
        std::fprintf(stderr, "zt-fuzz: cannot write %s\n", path.c_str());
        std::abort();
    }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Runs fn; a zt::Error is a refusal, which is a valid outcome.
template <class Fn>
void accept_or_refuse(Fn fn) {
    try {
        fn();
    } catch (const zt::Error&) {
    }
}

}  // namespace zt_fuzz
