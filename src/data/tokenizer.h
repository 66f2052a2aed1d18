// Tokenizers: text <-> token ids, for `prepare` (text to shards) and
// `generate` (prompt in, streamed text out).
//
// Two kinds:
//  - "sentencepiece": any SentencePiece .model through libsentencepiece
//    (LLaMA-2's tokenizer.model included: unk 0, BOS 1, EOS 2, byte fallback),
//    or one trained here by train_sentencepiece (BPE or unigram, byte
//    fallback, identity normalisation, so every valid UTF-8 text round trips).
//  - "byte": ids 0..255 are the bytes themselves, 256 = BOS, 257 = EOS,
//    vocab 258; no training, and any byte string round trips, invalid UTF-8
//    included.
//
// Document convention (prepare writes it, generate relies on it): every
// document becomes  [BOS] text-tokens [EOS]  in the token stream, with BOS
// only when the tokenizer has one (LLaMA style) and EOS only when it has one
// (GPT-2's <|endoftext|> between documents). The loader packs that stream into
// fixed-length sequences across document boundaries. A prompt is encoded as
// the start of a document, [BOS] text-tokens (encode_prompt), so the model
// sees it exactly as it saw document starts in training.
//
// Invariant: encode() never emits BOS/EOS and decode() drops them; for every
// valid UTF-8 text (byte tokenizer: every byte string) decode(encode(t)) == t.
// SentencePiece's one exception is U+2581 ("▁"), its own space marker, which
// decodes as a space.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zt {

class Tokenizer {
  public:
    virtual ~Tokenizer() = default;

    // Text to ids, without BOS/EOS.
    virtual std::vector<uint32_t> encode(std::string_view text) const = 0;
    // Ids to text; BOS/EOS (and other control ids) decode to nothing. Refuses,
    // naming it, an id >= vocab_size().
    virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
    // The bytes one id contributes when text is printed as it is generated:
    // a SentencePiece piece with its space marker as ' ', a byte-fallback
    // piece as its raw byte (a multi-byte character arrives over several
    // calls), "" for BOS/EOS. Concatenated over a document's ids this equals
    // decode() except that decode() drops SentencePiece's dummy leading space.
    virtual std::string decode_piece(uint32_t id) const = 0;

    virtual int vocab_size() const = 0;
    virtual int bos_id() const = 0;        // -1 when the tokenizer has none
    virtual int eos_id() const = 0;        // -1 when the tokenizer has none
    virtual std::string kind() const = 0;  // "byte" or "sentencepiece"
    // "byte", or the absolute path of the .model file it was loaded from.
    virtual const std::string& path() const = 0;

    // Encodes text that continues a document directly after a '\n', so that
    // encode(a + "\n") + encode_continuation(b) == encode(a + "\n" + b) when
    // splits_at_newlines(). Lets prepare tokenize one long document on many
    // threads.
    virtual std::vector<uint32_t> encode_continuation(std::string_view text) const = 0;
    // Whether the identity above holds for this tokenizer: always for bytes;
    // for a SentencePiece model, checked on probe texts at load (false, e.g.,
    // for models whose normaliser folds newlines into spaces).
    virtual bool splits_at_newlines() const = 0;

    // [BOS] when the tokenizer has one, else nothing: what starts a document.
    std::vector<uint32_t> document_start() const;
    // [BOS] encode(text) [EOS], each special only when the tokenizer has it.
    std::vector<uint32_t> encode_document(std::string_view text) const;
    // [BOS] encode(text): a generation prompt, the start of a document.
    std::vector<uint32_t> encode_prompt(std::string_view text) const;
};

// The byte tokenizer's ids.
constexpr int kByteBos = 256;
constexpr int kByteEos = 257;
constexpr int kByteVocab = 258;

std::unique_ptr<Tokenizer> make_byte_tokenizer();
// Loads a SentencePiece .model; refuses, naming the file, one that is missing
// or not a model.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);
// "byte" or the path of a SentencePiece .model.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);
// SHA-256 hex of the tokenizer's file; "" for "byte", which has none.
std::string tokenizer_file_hash(const std::string& spec);

struct SentencePieceTrainOptions {
    int vocab_size = 4096;            // pieces, specials and the 256 byte pieces included
    std::string model_type = "bpe";   // "bpe" or "unigram"
    int threads = 0;                  // 0: every core
    uint32_t seed = 1;                // seeds the library's sentence sampling
    int64_t max_sentences = 2000000;  // more input lines than this are sampled down
    bool verbose = false;             // the library's own progress log on stderr
};

// Sets *line to the next training sentence and returns true, or returns false
// at the end. Lines hold no '\n' (SentencePiece trains on lines).
using LineSource = std::function<bool(std::string* line)>;

// Trains a SentencePiece model (LLaMA-style options: identity normalisation,
// whitespace kept, digits split, byte fallback, unk 0 / BOS 1 / EOS 2) and
// writes out_prefix + ".model" and ".vocab"; returns the .model path. Training
// is deterministic for a given input, seed and thread count.
std::string train_sentencepiece(const LineSource& lines, const std::string& out_prefix,
                                const SentencePieceTrainOptions& opts);
// The same on the lines of text files (lines that are not valid UTF-8 skipped).
std::string train_sentencepiece(const std::vector<std::string>& files,
                                const std::string& out_prefix,
                                const SentencePieceTrainOptions& opts);

// The byte offset of the first byte that does not begin a valid UTF-8
// sequence (overlong forms, surrogates and code points past U+10FFFF are
// invalid), or std::string_view::npos when the whole text is valid.
size_t utf8_error_offset(std::string_view text);

}  // namespace zt
