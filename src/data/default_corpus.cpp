// The default training corpus: Debian's fortune files, prepared once into the
// cache (see default_corpus.h).
#include "data/default_corpus.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "data/prepare.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// Holds an exclusive flock on a file for its lifetime.
class FileLock {
  public:
    explicit FileLock(const std::string& path)
        : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
        ZT_CHECK(fd_ >= 0,
                 "cannot open the lock file %s (%s); is the cache directory writable? "
                 "(set ZT_CACHE_DIR to choose another)",
                 path.c_str(), std::strerror(errno));
        int rc;
        do {
            rc = ::flock(fd_, LOCK_EX);
        } while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            const int e = errno;
            ::close(fd_);
            ZT_FAIL("cannot lock %s (%s)", path.c_str(), std::strerror(e));
        }
    }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    ~FileLock() { ::close(fd_); }  // closing releases the lock

  private:
    int fd_;
};

// Whether dir holds a finished preparation: a meta.json (written last) whose
// shards and tokenizer all exist.
bool prepared_and_complete(const fs::path& dir) {
    std::error_code ec;
    std::ifstream in(dir / "meta.json");
    if (!in.good()) return false;
    nlohmann::json meta = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!meta.is_object() || !meta.contains("shards") || !meta.contains("tokenizer")) return false;
    const nlohmann::json& shards = meta["shards"];
    if (!shards.is_object() || !shards.contains("train") || !shards["train"].is_array() ||
        shards["train"].empty())
        return false;
    for (const char* split : {"train", "val"}) {
        if (!shards.contains(split) || !shards[split].is_array()) return false;
        for (const nlohmann::json& name : shards[split])
            if (!name.is_string() || !fs::is_regular_file(dir / name.get<std::string>(), ec))
                return false;
    }
    const nlohmann::json& tk = meta["tokenizer"];
    return tk.is_object() && tk.contains("path") && tk["path"].is_string() &&
           fs::is_regular_file(tk["path"].get<std::string>(), ec);
}

}  // namespace

std::string zerotrain_cache_dir() {
    if (const char* d = std::getenv("ZT_CACHE_DIR"); d && *d) return d;
    if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d)
        return (fs::path(d) / "zerotrain").string();
    const char* home = std::getenv("HOME");
    ZT_CHECK(home && *home,
             "no cache directory for the default corpus: none of ZT_CACHE_DIR, XDG_CACHE_HOME "
             "and HOME is set; set ZT_CACHE_DIR");
    return (fs::path(home) / ".cache" / "zerotrain").string();
}

std::vector<std::string> fortune_files(const std::string& fortunes_dir) {
    std::error_code ec;
    ZT_CHECK(fs::is_directory(fortunes_dir, ec),
             "the default corpus needs the fortune files in %s, which does not exist; install "
             "Debian's fortunes package (apt-get install fortunes) or train on your own data "
             "with --data DIR",
             fortunes_dir.c_str());
    std::vector<std::string> files;
    for (const fs::directory_entry& e : fs::directory_iterator(fortunes_dir, ec)) {
        if (!e.is_symlink(ec) && e.is_regular_file(ec) && !e.path().has_extension())
            files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    ZT_CHECK(!files.empty(),
             "%s holds no fortune files (files without extension); reinstall Debian's fortunes "
             "package (apt-get install --reinstall fortunes)",
             fortunes_dir.c_str());
    return files;
}

std::string ensure_default_corpus(bool verbose, const std::string& fortunes_dir,
                                  const std::string& cache_dir) {
    const fs::path cache =
        cache_dir.empty() ? fs::path(zerotrain_cache_dir()) : fs::path(cache_dir);
    const fs::path dir = cache / kDefaultCorpusVersion;
    if (prepared_and_complete(dir)) return dir.string();

    std::error_code ec;
    fs::create_directories(cache, ec);
    ZT_CHECK(!ec,
             "cannot create the cache directory %s (%s); set ZT_CACHE_DIR to a writable "
             "directory",
             cache.c_str(), ec.message().c_str());
    FileLock lock((cache / (std::string(kDefaultCorpusVersion) + ".lock")).string());
    if (prepared_and_complete(dir)) return dir.string();  // another process made it meanwhile

    PrepareOptions o;
    o.inputs = fortune_files(fortunes_dir);
    o.out_dir = dir.string();
    o.train_vocab = kDefaultCorpusVocab;
    o.tokenizer_type = "bpe";
    o.doc_separator.emplace(1, '%');  // (count, char): GCC 12 warns falsely on "%"
    o.val_fraction = 0.02;            // ~300 fortunes, ~20k tokens: enough for a stable eval loss
    o.seed = 1337;
    o.progress = verbose;
    fs::remove_all(dir, ec);  // what an interrupted run left behind
    if (verbose)
        std::fprintf(stderr, "default corpus: preparing %zu fortune files from %s into %s\n",
                     o.inputs.size(), fortunes_dir.c_str(), dir.c_str());
    const PrepareStats st = prepare_data(o);
    if (verbose)
        std::fprintf(
            stderr, "default corpus: %lld train + %lld val tokens, vocab %d, ready in %.1f s\n",
            (long long)st.tokens_train, (long long)st.tokens_val, st.vocab_size, st.seconds);
    return dir.string();
}

}  // namespace zt
