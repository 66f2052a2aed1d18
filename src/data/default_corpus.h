// The corpus `zerotrain train` uses when given no data: the fortune files of
// Debian's `fortunes` package (/usr/share/games/fortunes, entries separated
// by lines holding "%"), about 2.5 MB of real English text, tokenized with a
// 2048-piece SentencePiece BPE model trained on it.
//
// Invariant: the prepared directory is a pure function of the installed
// fortune files and kDefaultCorpusVersion. It is built once into the cache
// directory under an exclusive lock (so ranks started together prepare it
// once) and is reused while its meta.json, the file prepare writes last,
// names shards and a tokenizer that are all present.
#pragma once

#include <string>
#include <vector>

namespace zt {

constexpr const char* kFortunesDir = "/usr/share/games/fortunes";
constexpr const char* kDefaultCorpusVersion = "fortunes-v1";  // bump when the recipe changes
constexpr int kDefaultCorpusVocab = 2048;

// $ZT_CACHE_DIR, else $XDG_CACHE_HOME/zerotrain, else $HOME/.cache/zerotrain.
std::string zerotrain_cache_dir();

// The fortune files: regular files (not symlinks) of fortunes_dir without an
// extension, sorted; the .dat indexes and .u8 links are left out. Refuses a
// missing directory, naming the package to install.
std::vector<std::string> fortune_files(const std::string& fortunes_dir = kFortunesDir);

// The prepared data directory of the default corpus (train and val shards,
// tokenizer.model, meta.json), preparing it first when the cache lacks it.
// verbose: say so on stderr when preparing. fortunes_dir and cache_dir are
// for tests; empty means the defaults above.
std::string ensure_default_corpus(bool verbose, const std::string& fortunes_dir = kFortunesDir,
                                  const std::string& cache_dir = "");

}  // namespace zt
