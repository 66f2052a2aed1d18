#include "train/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "core/check.h"

namespace zt {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
    ZT_CHECK(fd_ >= 0, "cannot create metrics file '%s': %s", path.c_str(), std::strerror(errno));
    end_ = ::lseek(fd_, 0, SEEK_END);
    ZT_CHECK(end_ >= 0, "cannot seek in metrics file '%s': %s", path.c_str(), std::strerror(errno));
    if (append && end_ > 0) drop_torn_tail();
}

MetricsWriter::~MetricsWriter() {
    if (fd_ >= 0) ::close(fd_);
}

// A run that died mid-line (a crash, a full disk) left a last line without its
// newline: cut it off, so the lines appended now start on a line of their own.
void MetricsWriter::drop_torn_tail() {
    int rfd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return;
    off_t keep = end_;
    char buf[4096];
    while (keep > 0) {
        const off_t from = keep > off_t(sizeof buf) ? keep - off_t(sizeof buf) : 0;
        const ssize_t n = ::pread(rfd, buf, size_t(keep - from), from);
        if (n <= 0) break;
        const char* nl = static_cast<const char*>(::memrchr(buf, '\n', size_t(n)));
        if (nl) {
            keep = from + (nl - buf) + 1;
            break;
        }
        keep = from;
    }
    ::close(rfd);
    if (keep == end_) return;
    std::fprintf(stderr,
                 "zerotrain: warning: %s ended in a torn line of %lld bytes (a run that died "
                 "while writing it); it is dropped\n",
                 path_.c_str(), (long long)(end_ - keep));
    ZT_CHECK(::ftruncate(fd_, keep) == 0, "cannot truncate metrics file '%s': %s", path_.c_str(),
             std::strerror(errno));
    end_ = keep;
}

// One write of the whole line; a short or failed write is cut back to where
// the line began, so the file never holds half a record.
void MetricsWriter::write(const nlohmann::ordered_json& line) {
    const std::string s = line.dump() + "\n";
    const ssize_t n = ::pwrite(fd_, s.data(), s.size(), end_);
    if (n == ssize_t(s.size())) {
        end_ += n;
        return;
    }
    const int err = n < 0 ? errno : ENOSPC;
    if (::ftruncate(fd_, end_) != 0) {
        // Leave the file as it is; the reader drops a torn last line.
    }
    ZT_FAIL("writing metrics file '%s' failed: %s (the file keeps every complete line)",
            path_.c_str(), std::strerror(err));
}

namespace {

// Whether a metrics line records something after `step`.
bool line_is_after(const nlohmann::json& j, int64_t step) {
    if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string()) return false;
    const std::string kind = j["kind"];
    auto number = [&](const char* key) {
        return j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : -1;
    };
    if (kind == "step" || kind == "eval") return number("step") > step;
    if (kind == "summary") return number("steps") > step;
    // A restart (cli/restart.h) of an attempt that had gone past `step`.
    if (kind == "restart") return number("after_step") > step;
    // A run that started at `step` or later did everything it records after it.
    if (kind == "run") return number("start_step") >= step && step > 0;
    return false;
}

}  // namespace

int64_t truncate_metrics_after(const std::string& path, int64_t step) {
    std::ifstream in(path, std::ios::binary);
    if (!in.good()) return 0;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string kept;
    int64_t removed = 0;
    size_t start = 0;
    while (start < text.size()) {
        const size_t nl = text.find('\n', start);
        if (nl == std::string::npos) {  // a torn last line
            kept.append(text, start, std::string::npos);
            break;
        }
        const std::string line = text.substr(start, nl - start);
        start = nl + 1;
        if (line_is_after(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false), step))
            removed++;
        else
            kept += line + "\n";
    }
    if (removed == 0) return 0;
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << kept;
        out.flush();
        ZT_CHECK(out.good(), "cannot write %s", tmp.c_str());
    }
    ZT_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot replace %s: %s", path.c_str(),
             std::strerror(errno));
    return removed;
}

nlohmann::ordered_json mem_bytes_json(const MemoryLedger& ledger) {
    nlohmann::ordered_json j;
    for (int c = 0; c < int(MemCategory::count); c++)
        j[mem_category_name(MemCategory(c))] = ledger.current(MemCategory(c));
    j["peak"] = ledger.peak();
    return j;
}

}  // namespace zt
