// `zerotrain prepare` (see prepare.h): sources -> documents -> tokens -> shards.
//
// The input is read in batches of documents, in order. Each batch is checked
// (JSON, UTF-8, binary, empty) and tokenized on all threads, long documents
// in newline-aligned segments, then appended to the train or validation
// stream in document order by one thread, so the output never depends on the
// thread count. Whether the validation split is by documents or by tokens is
// decided before that pass, from a count of the documents (stopping once
// there are enough), so the pass itself writes every shard once.
#include "data/prepare.h"

#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <utility>

#include "core/check.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "data/shard.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBatchBytes = size_t(16) << 20;     // text read per batch
constexpr size_t kSegmentBytes = size_t(64) << 10;   // long documents are cut into ~this much
constexpr uint64_t kValTag = 0x76616c73706c6974ull;  // "valsplit": the split's own draws
constexpr double kDocValFraction = 0.005;            // default of the by-document split
constexpr double kTokenValFraction = 0.1;            // default of the by-token split (nanoGPT)
constexpr const char* kNoSeparator = "none";         // --doc-separator: a file is one document

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ----------------------------------------------------------------- sources

enum class SourceKind { kText, kJsonl };

struct Source {
    std::string path;
    SourceKind kind;
};

std::vector<Source> collect_sources(const PrepareOptions& o, int64_t* skipped) {
    std::vector<Source> sources;
    std::set<std::string> seen;  // canonical paths: a file reached twice is read once
    auto add = [&](const fs::path& p, SourceKind kind) {
        std::error_code ec;
        const std::string canon = fs::canonical(p, ec).string();
        if (seen.insert(ec ? p.string() : canon).second) sources.push_back({p.string(), kind});
    };
    for (const std::string& input : o.inputs) {
        std::error_code ec;
        const fs::file_status st = fs::status(input, ec);
        ZT_CHECK(fs::exists(st),
                 "--input %s does not exist; expected a .txt or .jsonl file or a "
                 "directory of them",
                 input.c_str());
        if (!fs::is_directory(st)) {
            add(input,
                fs::path(input).extension() == ".jsonl" ? SourceKind::kJsonl : SourceKind::kText);
            continue;
        }
        std::vector<fs::path> files;
        int64_t other = 0;
        auto it = fs::recursive_directory_iterator(
            input, fs::directory_options::skip_permission_denied, ec);
        ZT_CHECK(!ec, "--input %s: cannot list the directory (%s)", input.c_str(),
                 ec.message().c_str());
        for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
            ZT_CHECK(!ec, "--input %s: cannot list the directory (%s)", input.c_str(),
                     ec.message().c_str());
            if (it->is_regular_file(ec)) files.push_back(it->path());
        }
        std::sort(files.begin(), files.end());
        for (const fs::path& f : files) {
            const std::string ext = f.extension().string();
            if (ext == ".txt") {
                add(f, SourceKind::kText);
            } else if (ext == ".jsonl") {
                add(f, SourceKind::kJsonl);
            } else if (ext.empty() && o.doc_separator && *o.doc_separator != kNoSeparator) {
                add(f, SourceKind::kText);
            } else {
                other++;
            }
        }
        *skipped += other;
        ZT_CHECK(!files.empty(), "--input %s: no files in the directory", input.c_str());
    }
    ZT_CHECK(
        !sources.empty(),
        "--input: no usable files: %lld file(s) found, none ending in .txt or .jsonl%s",
        (long long)*skipped,
        o.doc_separator ? "" : " (files without extension are read only with --doc-separator)");
    return sources;
}

// --------------------------------------------------------------- documents

// One document as read, before checks: a whole .txt file, the lines between
// two separators, or one JSONL line (still JSON).
struct RawDoc {
    std::string text;
    uint32_t source = 0;
    int64_t line = 1;  // where the document starts in its file, 1-based
    bool json = false;
};

bool all_whitespace(std::string_view s) {
    return s.find_first_not_of(" \t\r\n\v\f") == std::string_view::npos;
}

// How .txt files split into documents (PrepareOptions::doc_separator).
enum class TextSplit { kBlankLines, kSeparator, kWholeFile };

TextSplit text_split(const std::optional<std::string>& separator) {
    if (!separator || separator->empty()) return TextSplit::kBlankLines;
    return *separator == kNoSeparator ? TextSplit::kWholeFile : TextSplit::kSeparator;
}

// Reads documents in input order, a batch at a time.
class DocumentReader {
  public:
    DocumentReader(const std::vector<Source>& sources, const std::optional<std::string>& separator)
        : sources_(sources), split_(text_split(separator)), separator_(separator.value_or("")) {}

    // Fills batch with the next documents, about max_bytes of text; false when
    // the input is exhausted.
    bool next_batch(std::vector<RawDoc>* batch, size_t max_bytes) {
        batch->clear();
        size_t bytes = 0;
        while (bytes < max_bytes) {
            if (!in_.is_open() && !open_next(batch, &bytes)) break;
            if (!in_.is_open()) continue;  // a whole-file document was read
            RawDoc doc;
            if (read_document(&doc)) {
                bytes += doc.text.size();
                batch->push_back(std::move(doc));
            }
        }
        return !batch->empty();
    }

    int64_t bytes_read() const { return bytes_read_; }
    const std::string& path(uint32_t source) const { return sources_[source].path; }

  private:
    // Opens the next file; a .txt file read as one document is read whole
    // into the batch. False when no file is left.
    bool open_next(std::vector<RawDoc>* batch, size_t* bytes) {
        if (next_ == sources_.size()) return false;
        current_ = uint32_t(next_++);
        const Source& s = sources_[current_];
        line_ = 0;
        documents_in_file_ = 0;
        in_.open(s.path, std::ios::binary);
        ZT_CHECK(in_.is_open(), "input %s: cannot open (%s)", s.path.c_str(), std::strerror(errno));
        if (s.kind == SourceKind::kText && split_ == TextSplit::kWholeFile) {
            RawDoc doc;
            doc.source = current_;
            doc.text.assign(std::istreambuf_iterator<char>(in_), {});
            ZT_CHECK(!in_.bad(), "input %s: read error (%s)", s.path.c_str(), std::strerror(errno));
            in_.close();
            bytes_read_ += int64_t(doc.text.size());
            *bytes += doc.text.size();
            batch->push_back(std::move(doc));
        }
        return true;
    }

    // One JSONL line or one .txt document from the open file; false (and the
    // file closed) at its end without a document.
    bool read_document(RawDoc* doc) {
        const Source& s = sources_[current_];
        doc->source = current_;
        std::string line;
        if (s.kind == SourceKind::kJsonl) {
            while (std::getline(in_, line)) {
                line_++;
                bytes_read_ += int64_t(line.size()) + (in_.eof() ? 0 : 1);
                if (all_whitespace(line)) continue;  // blank lines are not documents
                doc->text = std::move(line);
                doc->line = line_;
                doc->json = true;
                return true;
            }
            return close_at_end();
        }
        bool any_line = false;  // a line of this document (separator) or one with text (blank)
        doc->line = line_ + 1;
        while (std::getline(in_, line)) {
            line_++;
            const bool newline = !in_.eof();  // the last line may lack one: keep the text as is
            bytes_read_ += int64_t(line.size()) + (newline ? 1 : 0);
            if (split_ == TextSplit::kSeparator) {
                std::string_view bare = line;
                if (!bare.empty() && bare.back() == '\r') bare.remove_suffix(1);  // CRLF files
                any_line = true;
                if (bare == separator_) return found_document();
            } else if (all_whitespace(line)) {
                if (any_line) return found_document();
                doc->line = line_ + 1;  // blank lines before a document are not part of it
                continue;
            }
            any_line = true;
            doc->text += line;
            if (newline) doc->text += '\n';
        }
        close_at_end();
        if (any_line) return found_document();  // the text after the last separator
        // A file without any text still counts, as one empty document, so
        // that the user hears of it.
        doc->line = 1;
        return documents_in_file_ == 0 && found_document();
    }

    bool found_document() {
        documents_in_file_++;
        return true;
    }

    bool close_at_end() {
        ZT_CHECK(!in_.bad(), "input %s: read error (%s)", sources_[current_].path.c_str(),
                 std::strerror(errno));
        in_.close();
        return false;
    }

    const std::vector<Source>& sources_;
    const TextSplit split_;
    const std::string separator_;
    size_t next_ = 0;
    uint32_t current_ = 0;
    std::ifstream in_;
    int64_t line_ = 0;
    int64_t documents_in_file_ = 0;
    int64_t bytes_read_ = 0;
};

enum class DocStatus { kOk, kBinary, kMalformedJson, kEmpty };

// A document after its checks: its text (JSON decoded) or why it is skipped.
struct CheckedDoc {
    DocStatus status = DocStatus::kOk;
    std::string reason;                               // for a skipped document
    int64_t line = 1;                                 // where the reason applies
    std::vector<std::pair<size_t, size_t>> segments;  // [begin, end) byte ranges of text
    std::vector<std::vector<uint32_t>> tokens;        // per segment
    int64_t invalid_utf8_bytes = 0;                   // replaced by U+FFFD
    std::string invalid_utf8_where;                   // "line: reason" of the first
};

// The length of the well-formed UTF-8 character starting at s[0], or 0
// (Unicode's table 3-7: the second byte's range depends on the first, which
// excludes overlong forms, surrogates and code points past U+10FFFF). *valid
// is how many leading bytes could begin a well-formed character: a maximal
// invalid subsequence when the character is not complete.
size_t utf8_char_length(const unsigned char* s, size_t n, size_t* valid) {
    const unsigned char c = s[0];
    *valid = 1;
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;  // a continuation byte, C0, C1 or F5..FF: never starts a character
    }
    for (size_t k = 1; k < len; k++) {
        if (k == n) return 0;
        const unsigned char b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        *valid = k + 1;
    }
    return len;
}

// Replaces each maximal invalid subsequence of text, from offset `from` on
// (the first invalid byte), by U+FFFD, as Python's errors="replace" does;
// returns the number of bytes replaced.
int64_t replace_invalid_utf8(std::string* text, size_t from) {
    const auto* s = reinterpret_cast<const unsigned char*>(text->data());
    const size_t n = text->size();
    std::string out(*text, 0, from);
    out.reserve(n + 16);
    int64_t replaced = 0;
    for (size_t i = from; i < n;) {
        size_t valid = 0;
        const size_t len = utf8_char_length(s + i, n - i, &valid);
        if (len > 0) {
            out.append(text->data() + i, len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            replaced += int64_t(valid);
            i += valid;
        }
    }
    *text = std::move(out);
    return replaced;
}

// Checks raw (decoding JSON into raw->text) and, when the tokenizer allows,
// cuts a long text after newlines into segments of about kSegmentBytes.
CheckedDoc check_document(RawDoc* raw, const std::string& text_field, bool split_lines) {
    CheckedDoc d;
    d.line = raw->line;
    const size_t bad = utf8_error_offset(raw->text);
    if (bad != std::string_view::npos) {
        const int64_t line = raw->line + std::count(raw->text.begin(),
                                                    raw->text.begin() + std::ptrdiff_t(bad), '\n');
        d.invalid_utf8_where = strprintf("%lld: invalid UTF-8 (byte 0x%02x)", (long long)line,
                                         unsigned(uint8_t(raw->text[bad])));
        d.invalid_utf8_bytes = replace_invalid_utf8(&raw->text, bad);
    }
    if (raw->json) {
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(raw->text);
        } catch (const nlohmann::json::exception& e) {
            d.status = DocStatus::kMalformedJson;
            d.reason = strprintf("not valid JSON (%s)", e.what());
            return d;
        }
        auto it = j.is_object() ? j.find(text_field) : j.end();
        if (!j.is_object() || it == j.end() || !it->is_string()) {
            d.status = DocStatus::kMalformedJson;
            d.reason = !j.is_object() ? strprintf("a JSON %s, expected an object", j.type_name())
                       : it == j.end()
                           ? strprintf("no \"%s\" field (--text-field)", text_field.c_str())
                           : strprintf("\"%s\" is a %s, expected a string", text_field.c_str(),
                                       it->type_name());
            return d;
        }
        raw->text = it->get<std::string>();
    }
    if (std::memchr(raw->text.data(), 0, raw->text.size())) {
        d.status = DocStatus::kBinary;
        d.reason = "a NUL byte (binary data?)";
        return d;
    }
    if (all_whitespace(raw->text)) {
        d.status = DocStatus::kEmpty;
        d.reason = "no text";
        return d;
    }
    const std::string& t = raw->text;
    size_t pos = 0;
    while (split_lines && t.size() - pos > kSegmentBytes) {
        const size_t nl = t.find('\n', pos + kSegmentBytes - 1);
        if (nl == std::string::npos) break;
        d.segments.push_back({pos, nl + 1});
        pos = nl + 1;
    }
    if (pos < t.size()) d.segments.push_back({pos, t.size()});
    return d;
}

// Checks a batch and tokenizes its kept documents, all on `threads` threads.
// An exception on any thread is rethrown here (the first in document order).
std::vector<CheckedDoc> check_batch(std::vector<RawDoc>* batch, const std::string& text_field,
                                    const Tokenizer* tok, int threads) {
    const int64_t n = int64_t(batch->size());
    std::vector<CheckedDoc> docs(batch->size());
    std::vector<std::exception_ptr> errors(batch->size());
    const bool split_lines = tok && tok->splits_at_newlines();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; i++) {
        try {
            docs[size_t(i)] = check_document(&(*batch)[size_t(i)], text_field, split_lines);
        } catch (...) {
            errors[size_t(i)] = std::current_exception();
        }
    }
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
    if (!tok) return docs;

    std::vector<std::pair<size_t, size_t>> work;  // (document, segment)
    for (size_t i = 0; i < docs.size(); i++) {
        docs[i].tokens.resize(docs[i].segments.size());
        for (size_t s = 0; s < docs[i].segments.size(); s++) work.push_back({i, s});
    }
    errors.assign(work.size(), nullptr);
    const int64_t n_work = int64_t(work.size());
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t w = 0; w < n_work; w++) {
        const auto [i, s] = work[size_t(w)];
        try {
            const auto [begin, end] = docs[i].segments[s];
            const std::string_view text =
                std::string_view((*batch)[i].text).substr(begin, end - begin);
            docs[i].tokens[s] = s == 0 ? tok->encode(text) : tok->encode_continuation(text);
        } catch (...) {
            errors[size_t(w)] = std::current_exception();
        }
    }
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
    return docs;
}

// ------------------------------------------------------------------ output

// Where everything is written: a temporary sibling of out_dir, OUT.tmp-PID,
// that commit() renames to out_dir (or, when out_dir already holds other
// files, whose files it moves there, meta.json last). Without a commit the
// destructor removes it. files_mu is held while a file is created in or
// moved out of it, so the interrupt watcher never removes the directory
// under a half-done step.
class OutputDir {
  public:
    explicit OutputDir(const std::string& out, bool trains_tokenizer) : out_(out) {
        while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
        std::error_code ec;
        if (fs::exists(out_, ec)) {
            ZT_CHECK(fs::is_directory(out_, ec), "--out %s exists and is not a directory",
                     out_.c_str());
            for (const char* split : {"train", "val"}) {
                const std::vector<std::string> old = ShardSet::find_shards(out_, split);
                ZT_CHECK(old.empty(),
                         "--out %s already holds shards (%s, ...); remove them or choose another "
                         "directory, prepare never mixes its output with older data",
                         out_.c_str(), fs::path(old.front()).filename().c_str());
            }
            ZT_CHECK(!fs::exists(fs::path(out_) / "meta.json", ec),
                     "--out %s already holds a meta.json; remove it or choose another directory",
                     out_.c_str());
            ZT_CHECK(!trains_tokenizer || !fs::exists(fs::path(out_) / "tokenizer.model", ec),
                     "--out %s already holds a tokenizer.model, which --train-tokenizer would "
                     "replace; remove it or choose another directory",
                     out_.c_str());
        }
        const fs::path parent = fs::path(out_).parent_path();
        if (!parent.empty() && !fs::is_directory(parent, ec)) {
            fs::create_directories(parent, ec);
            ZT_CHECK(!ec, "--out %s: cannot create the directory (%s)", out_.c_str(),
                     ec.message().c_str());
        }
        tmp_ = strprintf("%s.tmp-%d", out_.c_str(), int(::getpid()));
        if (::mkdir(tmp_.c_str(), 0777) != 0) {
            const int e = errno;
            ZT_CHECK(e != EEXIST,
                     "--out %s: the temporary directory %s already exists (left by another "
                     "run?); remove it",
                     out_.c_str(), tmp_.c_str());
            ZT_FAIL(
                "--out %s: cannot create files beside it (%s: %s); is the directory "
                "writable?",
                out_.c_str(), tmp_.c_str(), std::strerror(e));
        }
    }
    OutputDir(const OutputDir&) = delete;
    OutputDir& operator=(const OutputDir&) = delete;
    ~OutputDir() {
        std::lock_guard<std::mutex> lock(files_mu);
        if (!committed_) remove_tmp();
    }

    const std::string& out() const { return out_; }
    const std::string& tmp() const { return tmp_; }
    std::string final_path(const std::string& name) const {
        return (fs::absolute(out_) / name).lexically_normal().string();
    }
    bool committed() const { return committed_; }

    // names: the files to move when out_dir already holds others.
    void commit(const std::vector<std::string>& names) {
        std::lock_guard<std::mutex> lock(files_mu);
        std::error_code ec;
        if (!fs::exists(out_, ec) || fs::is_empty(out_, ec)) {
            fs::rename(tmp_, out_, ec);  // replaces an empty out_dir
            ZT_CHECK(!ec, "--out %s: cannot rename %s to it (%s)", out_.c_str(), tmp_.c_str(),
                     ec.message().c_str());
            committed_ = true;
            return;
        }
        for (const std::string& name : names) {
            fs::rename(fs::path(tmp_) / name, fs::path(out_) / name, ec);
            ZT_CHECK(!ec, "--out %s: cannot move %s into place (%s)", out_.c_str(), name.c_str(),
                     ec.message().c_str());
        }
        committed_ = true;
        fs::remove_all(tmp_, ec);
    }

    // Removes the temporary directory; a file created meanwhile by a thread
    // outside files_mu (the tokenizer trainer) only costs another try.
    void remove_tmp() {
        std::error_code ec;
        for (int attempt = 0; attempt < 100 && fs::exists(tmp_, ec); attempt++)
            fs::remove_all(tmp_, ec);
    }

    std::mutex files_mu;

  private:
    std::string out_, tmp_;
    bool committed_ = false;
};

// SIGINT and SIGTERM while prepare runs. The handler only writes the signal
// number to a pipe (async-signal-safe); a watcher thread takes the output's
// files_mu, removes the temporary directory and exits 128 + signal, so an
// interrupt, even in the middle of tokenizer training, leaves no output.
// The previous handlers come back when prepare ends.
int g_signal_pipe[2] = {-1, -1};

extern "C" void prepare_on_signal(int sig) {
    const unsigned char b = (unsigned char)sig;
    const int saved = errno;
    // A full pipe already holds a signal for the watcher: nothing to add.
    [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &b, 1);
    errno = saved;
}

class InterruptCleanup {
  public:
    explicit InterruptCleanup(OutputDir* out) {
        ZT_CHECK(::pipe(g_signal_pipe) == 0, "prepare: cannot create a pipe (%s)",
                 std::strerror(errno));
        ::fcntl(g_signal_pipe[0], F_SETFD, FD_CLOEXEC);
        ::fcntl(g_signal_pipe[1], F_SETFD, FD_CLOEXEC);
        watcher_ = std::thread([out] { watch(out); });
        struct sigaction sa {};
        sa.sa_handler = prepare_on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        sigaction(SIGINT, &sa, &old_int_);
        sigaction(SIGTERM, &sa, &old_term_);
    }
    InterruptCleanup(const InterruptCleanup&) = delete;
    InterruptCleanup& operator=(const InterruptCleanup&) = delete;
    ~InterruptCleanup() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
        const unsigned char stop = 0;
        [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &stop, 1);
        watcher_.join();
        ::close(g_signal_pipe[0]);
        ::close(g_signal_pipe[1]);
        g_signal_pipe[0] = g_signal_pipe[1] = -1;
    }

  private:
    static void watch(OutputDir* out) {
        unsigned char sig = 0;
        for (;;) {
            const ssize_t n = ::read(g_signal_pipe[0], &sig, 1);
            if (n == 1) break;
            if (n < 0 && errno == EINTR) continue;
            return;
        }
        if (sig == 0) return;  // prepare ended
        out->files_mu.lock();  // held until the exit: nothing more is written
        const bool done = out->committed();
        if (!done) out->remove_tmp();
        const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
        if (done)
            std::fprintf(stderr, "prepare: interrupted by %s after %s was complete\n", name,
                         out->out().c_str());
        else
            std::fprintf(stderr,
                         "prepare: interrupted by %s; removed %s, nothing was written to %s\n",
                         name, out->tmp().c_str(), out->out().c_str());
        std::fflush(stderr);
        ::_exit(128 + sig);
    }

    std::thread watcher_;
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

// One split's token stream cut into shards of shard_tokens. The most recent
// document is held back until the next arrives, so finish-time fixes can
// move it to the other split without reordering anything.
class SplitWriter {
  public:
    SplitWriter(OutputDir* out, std::string split, int64_t shard_tokens, int version)
        : out_(out), split_(std::move(split)), shard_tokens_(shard_tokens), version_(version) {}

    void add(std::vector<uint32_t> doc) {
        flush_held();
        documents_++;
        tokens_ += int64_t(doc.size());
        held_ = std::move(doc);
        has_held_ = true;
    }
    std::vector<uint32_t> take_held() {
        ZT_CHECK(has_held_, "split '%s': no document to move", split_.c_str());
        has_held_ = false;
        documents_--;
        tokens_ -= int64_t(held_.size());
        return std::move(held_);
    }
    // Tokens that are not a whole document: the by-token split's tail.
    void add_tokens(const std::vector<uint32_t>& tokens) {
        flush_held();
        tokens_ += int64_t(tokens.size());
        buffer_.insert(buffer_.end(), tokens.begin(), tokens.end());
        write_full_shards();
    }
    // Moves the last n tokens of the stream to `to`, rewriting the shards
    // that hold them; the documents stay counted here.
    void move_tail(SplitWriter* to, int64_t n) {
        flush_held();
        const int64_t cut = tokens_ - n;
        const size_t first = size_t(cut / shard_tokens_);  // the shard holding the cut
        std::vector<uint32_t> keep;                        // tokens before the cut in it
        for (size_t s = first; s < shards_.size(); s++) {
            std::vector<uint32_t> tokens = read_and_remove(shards_[s]);
            auto split_at = tokens.begin();
            if (s == first) {
                split_at += std::ptrdiff_t(cut % shard_tokens_);
                keep.assign(tokens.begin(), split_at);
            }
            to->add_tokens(std::vector<uint32_t>(split_at, tokens.end()));
        }
        if (first == shards_.size()) {
            const auto split_at = buffer_.begin() + std::ptrdiff_t(cut % shard_tokens_);
            keep.assign(buffer_.begin(), split_at);
            to->add_tokens(std::vector<uint32_t>(split_at, buffer_.end()));
        } else {
            to->add_tokens(buffer_);
        }
        shards_.resize(first);
        buffer_ = std::move(keep);
        tokens_ = cut;
    }
    void finish() {
        flush_held();
        if (!buffer_.empty()) write(buffer_);
        buffer_.clear();
    }

    int64_t documents() const { return documents_; }
    int64_t tokens() const { return tokens_; }
    const std::vector<std::string>& shards() const { return shards_; }

  private:
    void flush_held() {
        if (!has_held_) return;
        buffer_.insert(buffer_.end(), held_.begin(), held_.end());
        has_held_ = false;
        write_full_shards();
    }
    void write_full_shards() {
        while (int64_t(buffer_.size()) >= shard_tokens_) {
            std::vector<uint32_t> rest(buffer_.begin() + shard_tokens_, buffer_.end());
            buffer_.resize(size_t(shard_tokens_));
            write(buffer_);
            buffer_ = std::move(rest);
        }
    }
    void write(const std::vector<uint32_t>& tokens) {
        const std::string name = strprintf("%s_%06zu.bin", split_.c_str(), shards_.size());
        std::lock_guard<std::mutex> lock(out_->files_mu);
        write_shard((fs::path(out_->tmp()) / name).string(), tokens, version_);
        shards_.push_back(name);
    }
    std::vector<uint32_t> read_and_remove(const std::string& name) {
        const std::string path = (fs::path(out_->tmp()) / name).string();
        std::vector<uint32_t> tokens;
        {
            const TokenShard shard = TokenShard::open(path);
            tokens.resize(size_t(shard.size()));
            for (int64_t i = 0; i < shard.size(); i++) tokens[size_t(i)] = shard.token(i);
        }
        std::lock_guard<std::mutex> lock(out_->files_mu);
        std::error_code ec;
        fs::remove(path, ec);
        ZT_CHECK(!ec, "cannot remove %s (%s)", path.c_str(), ec.message().c_str());
        return tokens;
    }

    OutputDir* out_;
    std::string split_;
    int64_t shard_tokens_;
    int version_;
    std::vector<uint32_t> buffer_;  // tokens not yet in a shard
    std::vector<uint32_t> held_;
    bool has_held_ = false;
    int64_t documents_ = 0, tokens_ = 0;
    std::vector<std::string> shards_;
};

// Progress on stderr: a line at the start, at most one a second while the
// input is read (share of its bytes, speed, time left), and one at the end.
class Progress {
  public:
    // total_bytes < 0: unknown (an input that is not a regular file).
    Progress(bool on, int64_t total_bytes, size_t files)
        : on_(on), total_(total_bytes), start_(Clock::now()), last_(start_) {
        if (!on_) return;
        if (total_ >= 0)
            std::fprintf(stderr, "prepare: reading %.1f MB in %zu file(s)\n", double(total_) / 1e6,
                         files);
        else
            std::fprintf(stderr, "prepare: reading %zu file(s)\n", files);
    }
    void update(int64_t documents, int64_t tokens, int64_t bytes) {
        if (!on_ || seconds_since(last_) < 1.0) return;
        last_ = Clock::now();
        const double s = seconds_since(start_);
        const double rate = double(bytes) / std::max(s, 1e-9);
        std::string where = strprintf("%.1f MB", double(bytes) / 1e6);
        if (total_ > 0)
            where = strprintf("%.0f%% of %.1f MB", 100.0 * double(bytes) / double(total_),
                              double(total_) / 1e6);
        std::string eta;
        if (total_ > 0 && rate > 0)
            eta = strprintf(", ETA %.0f s", double(std::max<int64_t>(total_ - bytes, 0)) / rate);
        std::fprintf(stderr, "prepare: %s, %.1f MB/s%s, %lld documents, %.2fM tokens\n",
                     where.c_str(), rate / 1e6, eta.c_str(), (long long)documents,
                     double(tokens) / 1e6);
    }
    void finish(int64_t documents, int64_t tokens, int64_t bytes) {
        if (!on_) return;
        const double s = seconds_since(start_);
        std::fprintf(stderr,
                     "prepare: read %.1f MB in %.1f s, %.1f MB/s, %lld documents, %.2fM tokens\n",
                     double(bytes) / 1e6, s, double(bytes) / 1e6 / std::max(s, 1e-9),
                     (long long)documents, double(tokens) / 1e6);
    }

  private:
    bool on_;
    int64_t total_;
    Clock::time_point start_, last_;
};

void note_skip(const CheckedDoc& d, const std::string& path, int64_t* count, std::string* first) {
    if ((*count)++ != 0) return;
    *first = strprintf("%s:%lld: %s", path.c_str(), (long long)d.line, d.reason.c_str());
    // A JSON parser's message quotes what it last read, which can end inside
    // a character; meta.json holds only valid UTF-8.
    const size_t bad = utf8_error_offset(*first);
    if (bad != std::string_view::npos) replace_invalid_utf8(first, bad);
}

std::string no_documents_message(const PrepareStats& st) {
    std::string why;
    auto add = [&](int64_t n, const char* what, const std::string& first) {
        if (n == 0) return;
        why += strprintf("; %lld %s (first: %s)", (long long)n, what, first.c_str());
    };
    add(st.binary, "binary", st.first_binary);
    add(st.malformed_json, "malformed JSON lines", st.first_malformed_json);
    if (st.empty) why += strprintf("; %lld empty", (long long)st.empty);
    return strprintf("--input: no documents with text in %lld file(s)%s",
                     (long long)st.source_files, why.c_str());
}

// The input's kept documents, counted until there are `enough` (the
// reading stops there: usually within the first batch).
int64_t count_documents(const PrepareOptions& o, const std::vector<Source>& sources, int threads,
                        int64_t enough) {
    DocumentReader reader(sources, o.doc_separator);
    std::vector<RawDoc> batch;
    int64_t documents = 0;
    while (documents < enough && reader.next_batch(&batch, kBatchBytes)) {
        const std::vector<CheckedDoc> docs = check_batch(&batch, o.text_field, nullptr, threads);
        for (const CheckedDoc& d : docs) documents += d.status == DocStatus::kOk ? 1 : 0;
    }
    return documents;
}

// Trains the SentencePiece model on the input's kept documents, line by
// line; returns how many documents it read.
int64_t train_tokenizer(const PrepareOptions& o, const std::vector<Source>& sources, int threads,
                        const std::string& prefix) {
    DocumentReader reader(sources, o.doc_separator);
    std::vector<RawDoc> batch;
    std::vector<std::string> lines;
    size_t next = 0;
    int64_t documents = 0;
    auto refill = [&]() {
        while (next == lines.size()) {
            lines.clear();
            next = 0;
            if (!reader.next_batch(&batch, kBatchBytes)) return false;
            const std::vector<CheckedDoc> docs =
                check_batch(&batch, o.text_field, nullptr, threads);
            for (size_t i = 0; i < docs.size(); i++) {
                if (docs[i].status != DocStatus::kOk) continue;
                documents++;
                const std::string& t = batch[i].text;
                for (size_t p = 0; p < t.size();) {
                    size_t e = t.find('\n', p);
                    if (e == std::string::npos) e = t.size();
                    if (e > p) lines.emplace_back(t, p, e - p);
                    p = e + 1;
                }
            }
        }
        return true;
    };
    ZT_CHECK(refill(),
             "--input: no documents with text to train a tokenizer on (every document "
             "is empty, binary or malformed JSON); run with --tokenizer byte to see the counts");
    SentencePieceTrainOptions so;
    so.vocab_size = o.train_vocab;
    so.model_type = o.tokenizer_type;
    so.threads = threads;
    so.seed = uint32_t(o.seed);
    const LineSource source = [&](std::string* line) {
        if (!refill()) return false;
        *line = std::move(lines[next++]);
        return true;
    };
    train_sentencepiece(source, prefix, so);
    return documents;
}

// The fewest documents for a by-document split at fraction f: n * f >= 1.
int64_t documents_for_split(double f) {
    int64_t n = int64_t(std::min(std::ceil(1.0 / f), 9e18));
    while (n > 1 && double(n - 1) * f >= 1) n--;
    while (double(n) * f < 1) n++;
    return n;
}

// Refuses an input that is not a regular file when it must be read twice.
void check_readable_twice(const std::vector<Source>& sources, const char* why) {
    for (const Source& s : sources) {
        std::error_code ec;
        ZT_CHECK(fs::is_regular_file(s.path, ec),
                 "--input %s is not a regular file (a pipe?); prepare reads its input twice %s, "
                 "so write it to a file first",
                 s.path.c_str(), why);
    }
}

}  // namespace

PrepareStats prepare_data(const PrepareOptions& o) {
    const Clock::time_point t0 = Clock::now();
    ZT_CHECK(!o.inputs.empty(), "--input is required: a .txt or .jsonl file or a directory");
    ZT_CHECK(!o.out_dir.empty(), "--out is required: the directory for shards and meta.json");
    ZT_CHECK(o.shard_tokens > 0 && o.shard_tokens <= int64_t(std::numeric_limits<int32_t>::max()),
             "--shard-tokens %lld: expected 1 .. %d (the shard header's int32 count)",
             (long long)o.shard_tokens, std::numeric_limits<int32_t>::max());
    ZT_CHECK(!o.val_fraction || (*o.val_fraction >= 0 && *o.val_fraction < 1),
             "--val-fraction %g: expected a fraction in [0, 1) of the documents (or tokens)",
             o.val_fraction.value_or(0));
    ZT_CHECK(o.threads >= 0, "--threads %d: expected 0 (every core) or more", o.threads);
    ZT_CHECK(o.train_vocab >= 0, "--train-tokenizer %d: expected a vocabulary size", o.train_vocab);
    ZT_CHECK(!o.text_field.empty(), "--text-field must not be empty");
    const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
    const double doc_fraction = o.val_fraction.value_or(kDocValFraction);

    PrepareStats st;
    const std::vector<Source> sources = collect_sources(o, &st.skipped_files);
    st.source_files = int64_t(sources.size());
    if (o.train_vocab > 0) check_readable_twice(sources, "(to train the tokenizer first)");
    if (doc_fraction > 0)
        check_readable_twice(sources,
                             "(to count documents for the validation split; --val-fraction 0 "
                             "reads it once)");
    int64_t total_bytes = 0;  // for the progress lines; -1: unknown (a pipe)
    for (const Source& s : sources) {
        std::error_code ec;
        const uintmax_t size = fs::is_regular_file(s.path, ec) ? fs::file_size(s.path, ec) : 0;
        if (ec || !fs::is_regular_file(s.path, ec)) total_bytes = -1;
        if (total_bytes >= 0) total_bytes += int64_t(size);
    }
    std::unique_ptr<Tokenizer> given;  // loaded before anything is written
    if (o.train_vocab == 0) given = load_tokenizer(o.tokenizer);

    OutputDir out(o.out_dir, o.train_vocab > 0);
    InterruptCleanup interrupt(&out);
    std::vector<std::string> outputs;  // files to move into out_dir, meta.json last
    std::unique_ptr<Tokenizer> tok;
    std::string tok_hash;
    int64_t counted = 0;  // kept documents, or a lower bound
    if (o.train_vocab > 0) {
        const Clock::time_point tt = Clock::now();
        if (o.progress)
            std::fprintf(stderr, "prepare: training a %s tokenizer of vocab %d on %zu file(s)\n",
                         o.tokenizer_type.c_str(), o.train_vocab, sources.size());
        const std::string prefix = (fs::path(out.tmp()) / "tokenizer").string();
        counted = train_tokenizer(o, sources, threads, prefix);
        tok = load_sentencepiece(prefix + ".model");
        tok_hash = sha256_file_hex(prefix + ".model");
        st.tokenizer_path = out.final_path("tokenizer.model");
        outputs = {"tokenizer.model", "tokenizer.vocab"};
        st.tokenizer_seconds = seconds_since(tt);
        if (o.progress)
            std::fprintf(stderr, "prepare: tokenizer trained in %.1f s\n", st.tokenizer_seconds);
    } else {
        tok = std::move(given);
        tok_hash = tokenizer_file_hash(o.tokenizer);
        st.tokenizer_path = tok->path();
    }
    st.vocab_size = tok->vocab_size();
    const int version = st.vocab_size <= 65536 ? 1 : 7;

    // By documents when there are enough of them for one validation document
    // on average; else by tokens, at its own default fraction.
    if (doc_fraction == 0) {
        st.val_split = "none";
    } else {
        const int64_t enough = documents_for_split(doc_fraction);
        if (counted < enough) counted = count_documents(o, sources, threads, enough);
        st.val_split = counted >= enough ? "documents" : "tokens";
    }
    st.val_fraction = st.val_split == "documents" ? doc_fraction
                      : st.val_split == "tokens"  ? o.val_fraction.value_or(kTokenValFraction)
                                                  : 0.0;
    const bool by_documents = st.val_split == "documents";

    SplitWriter train(&out, "train", o.shard_tokens, version);
    SplitWriter val(&out, "val", o.shard_tokens, version);
    DocumentReader reader(sources, o.doc_separator);
    Progress progress(o.progress, total_bytes, sources.size());
    std::vector<RawDoc> batch;
    int64_t kept = 0;
    while (reader.next_batch(&batch, kBatchBytes)) {
        std::vector<CheckedDoc> docs = check_batch(&batch, o.text_field, tok.get(), threads);
        for (size_t i = 0; i < docs.size(); i++) {
            CheckedDoc& d = docs[i];
            const std::string& path = reader.path(batch[i].source);
            switch (d.status) {
                case DocStatus::kBinary:
                    note_skip(d, path, &st.binary, &st.first_binary);
                    continue;
                case DocStatus::kMalformedJson:
                    note_skip(d, path, &st.malformed_json, &st.first_malformed_json);
                    continue;
                case DocStatus::kEmpty:
                    st.empty++;
                    continue;
                case DocStatus::kOk:
                    break;
            }
            if (d.invalid_utf8_bytes > 0) {
                if (st.invalid_utf8_documents++ == 0)
                    st.first_invalid_utf8 = path + ":" + d.invalid_utf8_where;
                st.invalid_utf8_bytes += d.invalid_utf8_bytes;
            }
            std::vector<uint32_t> ids = tok->document_start();
            for (const std::vector<uint32_t>& seg : d.tokens)
                ids.insert(ids.end(), seg.begin(), seg.end());
            if (tok->eos_id() >= 0) ids.push_back(uint32_t(tok->eos_id()));
            const bool to_val =
                by_documents && rng_uniform(o.seed, kValTag, uint64_t(kept)) < st.val_fraction;
            (to_val ? val : train).add(std::move(ids));
            kept++;
        }
        progress.update(kept, train.tokens() + val.tokens(), reader.bytes_read());
    }
    st.input_bytes = reader.bytes_read();
    progress.finish(kept, train.tokens() + val.tokens(), st.input_bytes);
    ZT_CHECK(kept > 0, "%s", no_documents_message(st).c_str());
    if (by_documents) {
        if (val.documents() == 0) val.add(train.take_held());
        if (train.documents() == 0) train.add(val.take_held());
    } else if (st.val_split == "tokens") {
        // nanoGPT's cut: the last ceil(f * n) tokens, leaving train at least one.
        const int64_t n = train.tokens();
        const int64_t n_val =
            std::min<int64_t>(n - 1, int64_t(std::ceil(st.val_fraction * double(n) - 1e-9)));
        if (n_val > 0) train.move_tail(&val, n_val);
    }
    train.finish();
    val.finish();
    st.documents_train = train.documents();
    st.documents_val = val.documents();
    st.tokens_train = train.tokens();
    st.tokens_val = val.tokens();
    st.train_shards = train.shards();
    st.val_shards = val.shards();
    st.seconds = seconds_since(t0);

    std::vector<std::string> abs_inputs;
    for (const std::string& in : o.inputs)
        abs_inputs.push_back(fs::absolute(in).lexically_normal().string());
    const double total_tokens = double(st.tokens_train + st.tokens_val);
    nlohmann::ordered_json skipped = {{"files_other_extension", st.skipped_files},
                                      {"binary", st.binary},
                                      {"malformed_json", st.malformed_json},
                                      {"empty", st.empty}};
    if (st.binary) skipped["first_binary"] = st.first_binary;
    if (st.malformed_json) skipped["first_malformed_json"] = st.first_malformed_json;
    nlohmann::ordered_json invalid_utf8 = {{"bytes_replaced", st.invalid_utf8_bytes},
                                           {"documents", st.invalid_utf8_documents}};
    if (st.invalid_utf8_documents) invalid_utf8["first"] = st.first_invalid_utf8;
    nlohmann::ordered_json meta = {
        {"tokenizer",
         {{"kind", tok->kind()},
          {"path", st.tokenizer_path},
          {"sha256",
           tok_hash.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(tok_hash)},
          {"trained_here", o.train_vocab > 0},
          {"type", o.train_vocab > 0 ? o.tokenizer_type : tok->kind()}}},
        {"vocab_size", st.vocab_size},
        {"bos_id", tok->bos_id()},
        {"eos_id", tok->eos_id()},
        {"document_start", tok->document_start()},
        {"document_end", tok->eos_id() >= 0 ? std::vector<int>{tok->eos_id()} : std::vector<int>{}},
        {"tokens", {{"train", st.tokens_train}, {"val", st.tokens_val}}},
        {"documents", {{"train", st.documents_train}, {"val", st.documents_val}}},
        // "documents": whole documents drawn by seed; "tokens": the stream's
        // last `fraction` (the first val document may start mid-document).
        {"val_split",
         {{"by", st.val_split},
          {"fraction", st.val_fraction},
          {"fraction_given", o.val_fraction.has_value()}}},
        {"source_files", st.source_files},
        {"input_bytes", st.input_bytes},
        {"inputs", abs_inputs},
        {"skipped", skipped},
        {"invalid_utf8", invalid_utf8},
        {"shard_version", version},
        {"shard_tokens", o.shard_tokens},
        {"shards", {{"train", st.train_shards}, {"val", st.val_shards}}},
        {"options",
         {{"text_field", o.text_field},
          {"doc_separator", o.doc_separator ? nlohmann::ordered_json(*o.doc_separator)
                                            : nlohmann::ordered_json(nullptr)},
          {"val_fraction", st.val_fraction},
          {"seed", o.seed}}},
        {"seconds", st.seconds},
        {"tokenizer_seconds", st.tokenizer_seconds},
        {"tokens_per_s", st.seconds > 0 ? total_tokens / st.seconds : 0.0},
    };
    {
        const std::string meta_path = (fs::path(out.tmp()) / "meta.json").string();
        std::lock_guard<std::mutex> lock(out.files_mu);
        std::ofstream f(meta_path);
        f << meta.dump(2) << "\n";
        f.close();
        ZT_CHECK(f.good(), "cannot write %s (%s); is the disk full?", meta_path.c_str(),
                 std::strerror(errno));
    }
    for (const std::string& s : st.train_shards) outputs.push_back(s);
    for (const std::string& s : st.val_shards) outputs.push_back(s);
    outputs.push_back("meta.json");
    out.commit(outputs);
    return st;
}

std::unique_ptr<Tokenizer> load_data_tokenizer(const std::string& data_dir) {
    const fs::path meta_path = fs::path(data_dir) / "meta.json";
    const std::optional<nlohmann::json> found = read_data_meta(data_dir);
    ZT_CHECK(found.has_value(),
             "%s: cannot open; a data directory made by `zerotrain prepare` has one",
             meta_path.c_str());
    const nlohmann::json& meta = *found;
    const auto tk = meta.find("tokenizer");
    ZT_CHECK(meta.is_object() && tk != meta.end() && tk->is_object() &&
                 tk->value("kind", "") != "" && tk->value("path", "") != "",
             "%s: no \"tokenizer\" object with \"kind\" and \"path\"; was it written by "
             "`zerotrain prepare`?",
             meta_path.c_str());
    if (tk->value("kind", "") == "byte") return make_byte_tokenizer();
    std::string path = tk->value("path", "");
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        const fs::path beside = fs::path(data_dir) / fs::path(path).filename();
        ZT_CHECK(fs::exists(beside, ec),
                 "%s names tokenizer %s, which does not exist (nor does %s)", meta_path.c_str(),
                 path.c_str(), beside.c_str());
        path = beside.string();
    }
    const auto sha = tk->find("sha256");
    if (sha != tk->end() && sha->is_string()) {
        const std::string actual = sha256_file_hex(path);
        ZT_CHECK(actual == sha->get<std::string>(),
                 "tokenizer %s has SHA-256 %s, but %s recorded %s: the file changed since the "
                 "data was prepared, so its ids would not match the shards",
                 path.c_str(), actual.c_str(), meta_path.c_str(), sha->get<std::string>().c_str());
    }
    return load_sentencepiece(path);
}

}  // namespace zt
