// `zerotrain prepare` (see prepare.h): sources -> documents -> tokens -> shards.
//
// The input is read in batches of documents, in order. Each batch is checked
// (JSON, UTF-8, binary, empty) and tokenized on all threads, long documents
// in newline-aligned segments, then appended to the train or validation
// stream in document order by one thread, so the output never depends on the
// thread count.
#include "data/prepare.h"

#include <omp.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
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
            } else if (ext.empty() && o.doc_separator) {
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

// Reads documents in input order, a batch at a time.
class DocumentReader {
  public:
    DocumentReader(const std::vector<Source>& sources, const std::optional<std::string>& separator)
        : sources_(sources), separator_(separator) {}

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
    // Opens the next file; a .txt file without a separator is read whole
    // into the batch. False when no file is left.
    bool open_next(std::vector<RawDoc>* batch, size_t* bytes) {
        if (next_ == sources_.size()) return false;
        current_ = uint32_t(next_++);
        const Source& s = sources_[current_];
        line_ = 0;
        in_.open(s.path, std::ios::binary);
        ZT_CHECK(in_.is_open(), "input %s: cannot open (%s)", s.path.c_str(), std::strerror(errno));
        if (s.kind == SourceKind::kText && !separator_) {
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

    // One JSONL line or one separated .txt document from the open file;
    // false (and the file closed) at its end without a document.
    bool read_document(RawDoc* doc) {
        const Source& s = sources_[current_];
        doc->source = current_;
        std::string line;
        if (s.kind == SourceKind::kJsonl) {
            while (std::getline(in_, line)) {
                line_++;
                bytes_read_ += int64_t(line.size()) + 1;
                if (all_whitespace(line)) continue;  // blank lines are not documents
                doc->text = std::move(line);
                doc->line = line_;
                doc->json = true;
                return true;
            }
            return close_at_end();
        }
        bool any_line = false;
        doc->line = line_ + 1;
        while (std::getline(in_, line)) {
            line_++;
            any_line = true;
            bytes_read_ += int64_t(line.size()) + 1;
            std::string_view bare = line;
            if (!bare.empty() && bare.back() == '\r') bare.remove_suffix(1);  // CRLF files
            if (bare == *separator_) return true;
            doc->text += line;
            doc->text += '\n';
        }
        close_at_end();
        return any_line;  // the text after the last separator, if any
    }

    bool close_at_end() {
        ZT_CHECK(!in_.bad(), "input %s: read error (%s)", sources_[current_].path.c_str(),
                 std::strerror(errno));
        in_.close();
        return false;
    }

    const std::vector<Source>& sources_;
    const std::optional<std::string>& separator_;
    size_t next_ = 0;
    uint32_t current_ = 0;
    std::ifstream in_;
    int64_t line_ = 0;
    int64_t bytes_read_ = 0;
};

enum class DocStatus { kOk, kInvalidUtf8, kBinary, kMalformedJson, kEmpty };

// A document after its checks: its text (JSON decoded) or why it is skipped.
struct CheckedDoc {
    DocStatus status = DocStatus::kOk;
    std::string reason;                               // for a skipped document
    int64_t line = 1;                                 // where the reason applies
    std::vector<std::pair<size_t, size_t>> segments;  // [begin, end) byte ranges of text
    std::vector<std::vector<uint32_t>> tokens;        // per segment
};

// Checks raw (decoding JSON into raw->text) and, when the tokenizer allows,
// cuts a long text after newlines into segments of about kSegmentBytes.
CheckedDoc check_document(RawDoc* raw, const std::string& text_field, bool split_lines) {
    CheckedDoc d;
    d.line = raw->line;
    const size_t bad = utf8_error_offset(raw->text);
    if (bad != std::string_view::npos) {
        d.status = DocStatus::kInvalidUtf8;
        d.line += std::count(raw->text.begin(), raw->text.begin() + std::ptrdiff_t(bad), '\n');
        d.reason = strprintf("invalid UTF-8 (byte 0x%02x)", unsigned(uint8_t(raw->text[bad])));
        return d;
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

// One split's token stream cut into shards of shard_tokens. The most recent
// document is held back until the next arrives, so finish-time fixes can
// move it to the other split without reordering anything.
class SplitWriter {
  public:
    SplitWriter(std::string dir, std::string split, int64_t shard_tokens, int version)
        : dir_(std::move(dir)),
          split_(std::move(split)),
          shard_tokens_(shard_tokens),
          version_(version) {}

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
        while (int64_t(buffer_.size()) >= shard_tokens_) {
            std::vector<uint32_t> rest(buffer_.begin() + shard_tokens_, buffer_.end());
            buffer_.resize(size_t(shard_tokens_));
            write(buffer_);
            buffer_ = std::move(rest);
        }
    }
    void write(const std::vector<uint32_t>& tokens) {
        const std::string name = strprintf("%s_%06zu.bin", split_.c_str(), shards_.size());
        write_shard((fs::path(dir_) / name).string(), tokens, version_);
        shards_.push_back(name);
    }

    std::string dir_, split_;
    int64_t shard_tokens_;
    int version_;
    std::vector<uint32_t> buffer_;  // tokens not yet in a shard
    std::vector<uint32_t> held_;
    bool has_held_ = false;
    int64_t documents_ = 0, tokens_ = 0;
    std::vector<std::string> shards_;
};

// out_dir and the temporary directory inside it that everything is written
// to. commit() moves the files up, meta.json last; without a commit the
// destructor removes the temporary directory, and out_dir when it made it.
class OutputDir {
  public:
    explicit OutputDir(const std::string& out, bool trains_tokenizer) : out_(out) {
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
        } else {
            fs::create_directories(out_, ec);
            ZT_CHECK(!ec, "--out %s: cannot create the directory (%s)", out_.c_str(),
                     ec.message().c_str());
            created_ = true;
        }
        std::string templ = (fs::path(out_) / ".prepare-XXXXXX").string();
        if (!::mkdtemp(templ.data())) {
            const int e = errno;
            cleanup();
            ZT_FAIL("--out %s: cannot create files there (%s); is the directory writable?",
                    out_.c_str(), std::strerror(e));
        }
        tmp_ = templ;
    }
    OutputDir(const OutputDir&) = delete;
    OutputDir& operator=(const OutputDir&) = delete;
    ~OutputDir() {
        if (!committed_) cleanup();
    }

    const std::string& tmp() const { return tmp_; }
    std::string final_path(const std::string& name) const {
        return (fs::absolute(out_) / name).lexically_normal().string();
    }

    void commit(const std::vector<std::string>& names) {
        for (const std::string& name : names) {
            std::error_code ec;
            fs::rename(fs::path(tmp_) / name, fs::path(out_) / name, ec);
            ZT_CHECK(!ec, "--out %s: cannot move %s into place (%s)", out_.c_str(), name.c_str(),
                     ec.message().c_str());
        }
        std::error_code ec;
        fs::remove_all(tmp_, ec);
        committed_ = true;
    }

  private:
    void cleanup() {
        std::error_code ec;
        if (!tmp_.empty()) fs::remove_all(tmp_, ec);
        if (created_) fs::remove(out_, ec);  // only if still empty
    }

    std::string out_, tmp_;
    bool created_ = false, committed_ = false;
};

// Prints progress on stderr at most once a second.
class Progress {
  public:
    explicit Progress(bool on) : on_(on), start_(Clock::now()), last_(start_) {}
    void update(int64_t documents, int64_t tokens, int64_t bytes) {
        if (!on_ || seconds_since(last_) < 1.0) return;
        last_ = Clock::now();
        const double s = seconds_since(start_);
        std::fprintf(stderr, "prepare: %lld documents, %.2fM tokens, %.1f MB read, %.1f MB/s\n",
                     (long long)documents, double(tokens) / 1e6, double(bytes) / 1e6,
                     double(bytes) / 1e6 / std::max(s, 1e-9));
    }

  private:
    bool on_;
    Clock::time_point start_, last_;
};

void note_skip(const CheckedDoc& d, const std::string& path, int64_t* count, std::string* first) {
    if ((*count)++ == 0)
        *first = strprintf("%s:%lld: %s", path.c_str(), (long long)d.line, d.reason.c_str());
}

std::string no_documents_message(const PrepareStats& st) {
    std::string why;
    auto add = [&](int64_t n, const char* what, const std::string& first) {
        if (n == 0) return;
        why += strprintf("; %lld %s (first: %s)", (long long)n, what, first.c_str());
    };
    add(st.invalid_utf8, "not valid UTF-8", st.first_invalid_utf8);
    add(st.binary, "binary", st.first_binary);
    add(st.malformed_json, "malformed JSON lines", st.first_malformed_json);
    if (st.empty) why += strprintf("; %lld empty", (long long)st.empty);
    return strprintf("--input: no documents with text in %lld file(s)%s",
                     (long long)st.source_files, why.c_str());
}

// Trains the SentencePiece model on the input's kept documents, line by line.
void train_tokenizer(const PrepareOptions& o, const std::vector<Source>& sources, int threads,
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
             "is empty, binary, not valid UTF-8 or malformed JSON); run with --tokenizer byte to "
             "see the counts");
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
}

}  // namespace

PrepareStats prepare_data(const PrepareOptions& o) {
    const Clock::time_point t0 = Clock::now();
    ZT_CHECK(!o.inputs.empty(), "--input is required: a .txt or .jsonl file or a directory");
    ZT_CHECK(!o.out_dir.empty(), "--out is required: the directory for shards and meta.json");
    ZT_CHECK(o.shard_tokens > 0 && o.shard_tokens <= int64_t(std::numeric_limits<int32_t>::max()),
             "--shard-tokens %lld: expected 1 .. %d (the shard header's int32 count)",
             (long long)o.shard_tokens, std::numeric_limits<int32_t>::max());
    ZT_CHECK(o.val_fraction >= 0 && o.val_fraction < 1,
             "--val-fraction %g: expected a fraction in [0, 1) of the documents", o.val_fraction);
    ZT_CHECK(o.threads >= 0, "--threads %d: expected 0 (every core) or more", o.threads);
    ZT_CHECK(o.train_vocab >= 0, "--train-tokenizer %d: expected a vocabulary size", o.train_vocab);
    ZT_CHECK(!o.text_field.empty(), "--text-field must not be empty");
    const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();

    PrepareStats st;
    const std::vector<Source> sources = collect_sources(o, &st.skipped_files);
    st.source_files = int64_t(sources.size());
    std::unique_ptr<Tokenizer> given;  // loaded before anything is written
    if (o.train_vocab == 0) given = load_tokenizer(o.tokenizer);

    OutputDir out(o.out_dir, o.train_vocab > 0);
    std::vector<std::string> outputs;  // files to move into out_dir, meta.json last
    std::unique_ptr<Tokenizer> tok;
    std::string tok_hash;
    if (o.train_vocab > 0) {
        const Clock::time_point tt = Clock::now();
        if (o.progress)
            std::fprintf(stderr, "prepare: training a %s tokenizer of vocab %d on %zu file(s)\n",
                         o.tokenizer_type.c_str(), o.train_vocab, sources.size());
        const std::string prefix = (fs::path(out.tmp()) / "tokenizer").string();
        train_tokenizer(o, sources, threads, prefix);
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

    SplitWriter train(out.tmp(), "train", o.shard_tokens, version);
    SplitWriter val(out.tmp(), "val", o.shard_tokens, version);
    DocumentReader reader(sources, o.doc_separator);
    Progress progress(o.progress);
    std::vector<RawDoc> batch;
    int64_t kept = 0;
    while (reader.next_batch(&batch, kBatchBytes)) {
        std::vector<CheckedDoc> docs = check_batch(&batch, o.text_field, tok.get(), threads);
        for (size_t i = 0; i < docs.size(); i++) {
            CheckedDoc& d = docs[i];
            const std::string& path = reader.path(batch[i].source);
            switch (d.status) {
                case DocStatus::kInvalidUtf8:
                    note_skip(d, path, &st.invalid_utf8, &st.first_invalid_utf8);
                    continue;
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
            std::vector<uint32_t> ids = tok->document_start();
            for (const std::vector<uint32_t>& seg : d.tokens)
                ids.insert(ids.end(), seg.begin(), seg.end());
            if (tok->eos_id() >= 0) ids.push_back(uint32_t(tok->eos_id()));
            const bool to_val = rng_uniform(o.seed, kValTag, uint64_t(kept)) < o.val_fraction;
            (to_val ? val : train).add(std::move(ids));
            kept++;
        }
        progress.update(kept, train.tokens() + val.tokens(), reader.bytes_read());
    }
    st.input_bytes = reader.bytes_read();
    ZT_CHECK(kept > 0, "%s", no_documents_message(st).c_str());
    if (o.val_fraction > 0 && kept >= 2) {
        if (val.documents() == 0) val.add(train.take_held());
        if (train.documents() == 0) train.add(val.take_held());
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
                                      {"invalid_utf8", st.invalid_utf8},
                                      {"binary", st.binary},
                                      {"malformed_json", st.malformed_json},
                                      {"empty", st.empty}};
    if (st.invalid_utf8) skipped["first_invalid_utf8"] = st.first_invalid_utf8;
    if (st.binary) skipped["first_binary"] = st.first_binary;
    if (st.malformed_json) skipped["first_malformed_json"] = st.first_malformed_json;
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
        {"source_files", st.source_files},
        {"input_bytes", st.input_bytes},
        {"inputs", abs_inputs},
        {"skipped", skipped},
        {"shard_version", version},
        {"shard_tokens", o.shard_tokens},
        {"shards", {{"train", st.train_shards}, {"val", st.val_shards}}},
        {"options",
         {{"text_field", o.text_field},
          {"doc_separator", o.doc_separator ? nlohmann::ordered_json(*o.doc_separator)
                                            : nlohmann::ordered_json(nullptr)},
          {"val_fraction", o.val_fraction},
          {"seed", o.seed}}},
        {"seconds", st.seconds},
        {"tokenizer_seconds", st.tokenizer_seconds},
        {"tokens_per_s", st.seconds > 0 ? total_tokens / st.seconds : 0.0},
    };
    {
        const std::string meta_path = (fs::path(out.tmp()) / "meta.json").string();
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
