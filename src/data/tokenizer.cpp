// The byte and SentencePiece tokenizers, SentencePiece training, UTF-8
// validation (see tokenizer.h for the document convention).
//
// Every libsentencepiece status is checked and turned into a zt::Error that
// names the model file; the library is never allowed to abort the process.
// A build without SentencePiece (ZT_HAVE_SENTENCEPIECE 0) keeps the byte
// tokenizer, and every SentencePiece entry point refuses, naming the option.
#include "data/tokenizer.h"

#if ZT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <thread>
#include <unordered_map>

#include "core/check.h"
#include "core/sha256.h"

namespace zt {

namespace fs = std::filesystem;

// ------------------------------------------------------------------ UTF-8

size_t utf8_error_offset(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        uint32_t cp, min_cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min_cp = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min_cp = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min_cp = 0x10000;
        } else {
            return i;  // a continuation byte or 0xF8..0xFF where a character must start
        }
        if (i + size_t(len) > n) return i;
        for (int k = 1; k < len; k++) {
            const unsigned char cc = s[i + size_t(k)];
            if ((cc & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += size_t(len);
    }
    return std::string_view::npos;
}

// -------------------------------------------------------------- Tokenizer

std::vector<uint32_t> Tokenizer::document_start() const {
    if (bos_id() >= 0) return {uint32_t(bos_id())};
    return {};
}

std::vector<uint32_t> Tokenizer::encode_document(std::string_view text) const {
    std::vector<uint32_t> ids = encode_prompt(text);
    if (eos_id() >= 0) ids.push_back(uint32_t(eos_id()));
    return ids;
}

std::vector<uint32_t> Tokenizer::encode_prompt(std::string_view text) const {
    std::vector<uint32_t> ids = document_start();
    const std::vector<uint32_t> body = encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
}

namespace {

// ------------------------------------------------------------------- byte

class ByteTokenizer : public Tokenizer {
  public:
    std::vector<uint32_t> encode(std::string_view text) const override {
        std::vector<uint32_t> ids(text.size());
        for (size_t i = 0; i < text.size(); i++) ids[i] = static_cast<unsigned char>(text[i]);
        return ids;
    }
    std::string decode(const std::vector<uint32_t>& ids) const override {
        std::string out;
        out.reserve(ids.size());
        for (uint32_t id : ids) out += decode_piece(id);
        return out;
    }
    std::string decode_piece(uint32_t id) const override {
        ZT_CHECK(id < uint32_t(kByteVocab),
                 "byte tokenizer: token id %u is outside its vocabulary of %d (bytes 0-255, BOS "
                 "256, EOS 257)",
                 id, kByteVocab);
        if (id >= 256) return "";
        return std::string(1, char(id));
    }
    int vocab_size() const override { return kByteVocab; }
    int bos_id() const override { return kByteBos; }
    int eos_id() const override { return kByteEos; }
    std::string kind() const override { return "byte"; }
    const std::string& path() const override { return path_; }
    std::vector<uint32_t> encode_continuation(std::string_view text) const override {
        return encode(text);
    }
    bool splits_at_newlines() const override { return true; }

  private:
    std::string path_ = "byte";
};

#if ZT_HAVE_SENTENCEPIECE
// ---------------------------------------------------------- SentencePiece

class SentencePieceTokenizer : public Tokenizer {
  public:
    explicit SentencePieceTokenizer(const std::string& model_path) {
        std::error_code ec;
        ZT_CHECK(fs::is_regular_file(model_path, ec),
                 "tokenizer %s: no such file; expected 'byte' or the path of a SentencePiece "
                 ".model file",
                 model_path.c_str());
        path_ = fs::absolute(model_path).lexically_normal().string();
        const auto status = sp_.Load(model_path);
        ZT_CHECK(status.ok(), "tokenizer %s: not a SentencePiece model (%s)", path_.c_str(),
                 status.ToString().c_str());
        vocab_ = sp_.GetPieceSize();
        newline_ids_ = encode("\n");
        splits_at_newlines_ = probe_newline_splits();
    }

    std::vector<uint32_t> encode(std::string_view text) const override {
        std::vector<int> ids;
        const auto status = sp_.Encode(text, &ids);
        ZT_CHECK(status.ok(), "tokenizer %s: cannot encode %zu bytes of text (%s)", path_.c_str(),
                 text.size(), status.ToString().c_str());
        return std::vector<uint32_t>(ids.begin(), ids.end());
    }

    std::string decode(const std::vector<uint32_t>& ids) const override {
        std::vector<int> v(ids.size());
        for (size_t i = 0; i < ids.size(); i++) {
            check_id(ids[i]);
            v[i] = int(ids[i]);
        }
        std::string text;
        const auto status = sp_.Decode(v, &text);
        ZT_CHECK(status.ok(), "tokenizer %s: cannot decode %zu ids (%s)", path_.c_str(), ids.size(),
                 status.ToString().c_str());
        return text;
    }

    std::string decode_piece(uint32_t id) const override {
        check_id(id);
        const int i = int(id);
        if (sp_.IsControl(i)) return "";
        if (sp_.IsUnknown(i)) return " \xE2\x81\x87 ";  // " ⁇ ", as the library decodes it
        const std::string& piece = sp_.IdToPiece(i);
        if (sp_.IsByte(i)) return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
        static const std::string kSpaceMark = "\xE2\x96\x81";  // U+2581, the space marker
        std::string out;
        for (size_t p = 0; p < piece.size();) {
            if (piece.compare(p, kSpaceMark.size(), kSpaceMark) == 0) {
                out += ' ';
                p += kSpaceMark.size();
            } else {
                out += piece[p++];
            }
        }
        return out;
    }

    int vocab_size() const override { return vocab_; }
    int bos_id() const override { return sp_.bos_id(); }
    int eos_id() const override { return sp_.eos_id(); }
    std::string kind() const override { return "sentencepiece"; }
    const std::string& path() const override { return path_; }

    // Encodes "\n" + text and drops the newline's own ids: the model then
    // sees text exactly where it stands in the whole document.
    std::vector<uint32_t> encode_continuation(std::string_view text) const override {
        std::string s;
        s.reserve(text.size() + 1);
        s += '\n';
        s += text;
        std::vector<uint32_t> ids = encode(s);
        ZT_CHECK(ids.size() >= newline_ids_.size() &&
                     std::equal(newline_ids_.begin(), newline_ids_.end(), ids.begin()),
                 "tokenizer %s: a newline followed by text does not start with the newline's "
                 "own ids; this model cannot encode a document in parts",
                 path_.c_str());
        ids.erase(ids.begin(), ids.begin() + std::ptrdiff_t(newline_ids_.size()));
        return ids;
    }
    bool splits_at_newlines() const override { return splits_at_newlines_; }

  private:
    void check_id(uint32_t id) const {
        ZT_CHECK(id < uint32_t(vocab_), "tokenizer %s: token id %u is outside its vocabulary of %d",
                 path_.c_str(), id, vocab_);
    }

    // Checks encode(a + "\n") + encode_continuation(b) == encode(a + "\n" + b)
    // on texts with the hard cases: leading and repeated spaces, empty lines,
    // digits, tabs, non-Latin scripts.
    bool probe_newline_splits() const {
        if (decode(newline_ids_) != "\n") return false;  // the normaliser rewrites newlines
        const char* heads[] = {"", "Hello world.", "  indented line", "x"};
        const char* tails[] = {"second line", " leading space", "\n\nafter two empty lines",
                               "\ttab 3.14159 and 漢字 ünïcödé 🙂", "   "};
        try {
            for (const char* a : heads) {
                for (const char* b : tails) {
                    const std::string head = std::string(a) + "\n";
                    std::vector<uint32_t> parts = encode(head);
                    const std::vector<uint32_t> tail = encode_continuation(b);
                    parts.insert(parts.end(), tail.begin(), tail.end());
                    if (parts != encode(head + b)) return false;
                }
            }
        } catch (const Error&) {
            return false;
        }
        return true;
    }

    sentencepiece::SentencePieceProcessor sp_;  // Encode/Decode are const and thread-safe
    std::string path_;
    int vocab_ = 0;
    std::vector<uint32_t> newline_ids_;  // encode("\n")
    bool splits_at_newlines_ = false;
};

// Feeds a LineSource to the trainer, skipping empty lines. An exception from
// the source is kept and rethrown after training returns, so it never unwinds
// through the library.
class LineIterator : public sentencepiece::SentenceIterator {
  public:
    explicit LineIterator(const LineSource& src) : src_(src) { Next(); }
    bool done() const override { return done_; }
    void Next() override {
        try {
            do {
                done_ = !src_(&line_);
            } while (!done_ && line_.empty());
        } catch (...) {
            error_ = std::current_exception();
            done_ = true;
        }
    }
    const std::string& value() const override { return line_; }
    sentencepiece::util::Status status() const override {
        if (error_)
            return sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal,
                                               "the line source failed");
        return sentencepiece::util::Status();
    }
    std::exception_ptr error() const { return error_; }

  private:
    const LineSource& src_;
    std::string line_;
    bool done_ = false;
    std::exception_ptr error_;
};

// Writes path + ".tmp", then renames it to path.
void write_file_atomic(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary);
        out.write(bytes.data(), std::streamsize(bytes.size()));
        out.close();
        ZT_CHECK(out.good(), "cannot write %s (%s)", tmp.c_str(), std::strerror(errno));
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    ZT_CHECK(!ec, "cannot rename %s to %s (%s)", tmp.c_str(), path.c_str(), ec.message().c_str());
}

#else

// The refusal every SentencePiece entry point gives in a build without it.
[[noreturn]] void refuse_without_sentencepiece(const std::string& what) {
    ZT_FAIL(
        "%s needs SentencePiece, which this zerotrain was built without (ZT_SENTENCEPIECE=OFF, "
        "or AUTO without libsentencepiece); rebuild with -DZT_SENTENCEPIECE=ON (Debian: "
        "libsentencepiece-dev), or use the byte tokenizer or pre-tokenized shards",
        what.c_str());
}

#endif  // ZT_HAVE_SENTENCEPIECE

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() {
    return std::make_unique<ByteTokenizer>();
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
#if ZT_HAVE_SENTENCEPIECE
    return std::make_unique<SentencePieceTokenizer>(model_path);
#else
    refuse_without_sentencepiece("tokenizer " + model_path);
#endif
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
    if (spec == "byte") return make_byte_tokenizer();
    return load_sentencepiece(spec);
}

std::string tokenizer_file_hash(const std::string& spec) {
    if (spec == "byte") return "";
    return sha256_file_hex(spec);
}

// --------------------------------------------------------------- training

#if ZT_HAVE_SENTENCEPIECE

std::string train_sentencepiece(const LineSource& lines, const std::string& out_prefix,
                                const SentencePieceTrainOptions& opts) {
    ZT_CHECK(opts.model_type == "bpe" || opts.model_type == "unigram",
             "tokenizer type '%s' is unknown; expected 'bpe' or 'unigram'",
             opts.model_type.c_str());
    // Byte fallback reserves 256 pieces and the specials 3 more.
    ZT_CHECK(opts.vocab_size > 259 + 16,
             "tokenizer vocab %d is too small: byte fallback takes 256 ids and unk/BOS/EOS 3 "
             "more; use at least 276 (typical: 2048-32000)",
             opts.vocab_size);
    ZT_CHECK(opts.max_sentences > 0, "max_sentences %lld must be positive",
             (long long)opts.max_sentences);
    const int threads =
        opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const std::unordered_map<std::string, std::string> args = {
        // No model_prefix: the library returns the model instead of writing it,
        // and no output path is recorded inside it (so where it is written
        // does not change its bytes).
        {"model_type", opts.model_type},
        {"vocab_size", std::to_string(opts.vocab_size)},
        {"byte_fallback", "true"},
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"add_dummy_prefix", "true"},
        {"split_digits", "true"},
        {"allow_whitespace_only_pieces", "true"},
        {"character_coverage", "0.9995"},
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "-1"},
        {"num_threads", std::to_string(threads)},
        {"input_sentence_size", std::to_string(opts.max_sentences)},
        {"shuffle_input_sentence", "true"},
        {"minloglevel", opts.verbose ? "0" : "2"},
    };
    sentencepiece::SetRandomGeneratorSeed(opts.seed);
    LineIterator it(lines);
    std::string model;
    const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
    if (it.error()) std::rethrow_exception(it.error());
    ZT_CHECK(status.ok(), "training a %s tokenizer of vocab %d into %s.model failed: %s",
             opts.model_type.c_str(), opts.vocab_size, out_prefix.c_str(),
             status.ToString().c_str());

    // The model and a human-readable "piece<TAB>score" list beside it.
    sentencepiece::SentencePieceProcessor sp;
    const auto loaded = sp.LoadFromSerializedProto(model);
    ZT_CHECK(loaded.ok(), "the trained tokenizer does not load (%s)", loaded.ToString().c_str());
    std::string vocab;
    for (int i = 0; i < sp.GetPieceSize(); i++)
        vocab += sp.IdToPiece(i) + strprintf("\t%g\n", double(sp.GetScore(i)));
    write_file_atomic(out_prefix + ".vocab", vocab);
    write_file_atomic(out_prefix + ".model", model);
    return out_prefix + ".model";
}

std::string train_sentencepiece(const std::vector<std::string>& files,
                                const std::string& out_prefix,
                                const SentencePieceTrainOptions& opts) {
    ZT_CHECK(!files.empty(), "train_sentencepiece: no input files");
    size_t file = 0;
    std::ifstream in;
    const LineSource lines = [&](std::string* line) {
        for (;;) {
            if (!in.is_open()) {
                if (file == files.size()) return false;
                in.open(files[file]);
                ZT_CHECK(in.is_open(), "tokenizer training input %s: cannot open (%s)",
                         files[file].c_str(), std::strerror(errno));
            }
            if (std::getline(in, *line)) {
                if (utf8_error_offset(*line) == std::string_view::npos) return true;
                continue;
            }
            in.close();
            file++;
        }
    };
    return train_sentencepiece(lines, out_prefix, opts);
}

#else

std::string train_sentencepiece(const LineSource&, const std::string& out_prefix,
                                const SentencePieceTrainOptions&) {
    refuse_without_sentencepiece("training a tokenizer into " + out_prefix + ".model");
}

std::string train_sentencepiece(const std::vector<std::string>&, const std::string& out_prefix,
                                const SentencePieceTrainOptions&) {
    refuse_without_sentencepiece("training a tokenizer into " + out_prefix + ".model");
}

#endif  // ZT_HAVE_SENTENCEPIECE

}  // namespace zt
