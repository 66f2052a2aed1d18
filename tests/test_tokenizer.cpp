// Tokenizers and SHA-256: round trips on UTF-8 edge cases (both tokenizers,
// invalid UTF-8 for bytes), the document convention, SentencePiece training
// (deterministic, BPE and unigram) and agreement with the library's own
// spm_encode tool, and SHA-256 against the standard vectors and sha256sum.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/sha256.h"
#include "data/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zt_test::expect_error;

std::string shakespeare_path() {
    return zt_test::source_dir() + "/../shared/data/tinyshakespeare.txt";
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Valid UTF-8 texts that stress a tokenizer: empty, ASCII, 2/3/4-byte
// characters, emoji with modifiers and joiners, combining marks, CJK,
// control characters other than NUL, whitespace runs, newlines.
std::vector<std::string> utf8_cases() {
    return {"",
            "a",
            "Hello, world!",
            "caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m",               // 2-byte
            "\xE2\x82\xAC 100 \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D",  // 3-byte
            "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D"
            "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",  // emoji, ZWJ
            "\xF0\x90\x8D\x88 \xF0\x9D\x84\x9E",             // 4-byte non-emoji
            "e\xCC\x81 a\xCC\x8A n\xCC\x83\xCC\x83",         // combining marks
            "\xE6\xBC\xA2\xE5\xAD\x97\xE3\x81\x8B\xE3\x81\xAA \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
            "tab\there\x01\x02\x1B[0m\x7F bell\x07",  // controls, no NUL
            "     leading and trailing     ",
            "many          spaces\t\t\ttabs",
            "line one\nline two\r\nline three\n\n\nafter empty lines\n",
            "\n",
            " ",
            "digits 1234567890 3.14159 -42",
            "\xEF\xBB\xBF BOM and \xEF\xBF\xBD replacement char",
            "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D"};  // RTL
}

// ----------------------------------------------------------------- SHA-256

TEST(Sha256, KnownVectors) {
    EXPECT_EQ(zt::sha256_hex("", 0),
              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(zt::sha256_hex("abc", 3),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    EXPECT_EQ(zt::sha256_hex(two_blocks.data(), two_blocks.size()),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    EXPECT_EQ(zt::sha256_hex(million.data(), million.size()),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalEqualsOneShot) {
    std::mt19937 rng(7);
    std::string data(5000, '\0');
    for (char& c : data) c = char(rng());
    const std::string whole = zt::sha256_hex(data.data(), data.size());
    // Every length 0..200 (all padding cases: 55, 56, 63, 64 bytes ...), and
    // the whole buffer fed in random pieces, some empty.
    for (size_t n = 0; n <= 200; n++) {
        zt::Sha256 h;
        for (size_t i = 0; i < n; i++) h.update(&data[i], 1);
        EXPECT_EQ(h.hex_digest(), zt::sha256_hex(data.data(), n)) << "length " << n;
    }
    zt::Sha256 h;
    for (size_t pos = 0; pos < data.size();) {
        const size_t take = std::min(data.size() - pos, size_t(rng() % 150));
        h.update(data.data() + pos, take);
        pos += take;
    }
    EXPECT_EQ(h.hex_digest(), whole);
    expect_error([&] { h.hex_digest(); }, {"twice"});
    expect_error([&] { h.update("x", 1); }, {"after hex_digest"});
}

TEST(Sha256, FileMatchesSha256sum) {
    zt_test::TempDir dir;
    std::string data(3 << 20, '\0');  // 3 MiB: crosses the streaming block size
    std::mt19937 rng(3);
    for (char& c : data) c = char(rng());
    zt_test::write_raw(dir / "blob.bin", data.data(), data.size());
    const std::string ours = zt::sha256_file_hex(dir / "blob.bin");
    EXPECT_EQ(ours, zt::sha256_hex(data.data(), data.size()));
    const zt_test::CommandResult r = zt_test::run_command("sha256sum " + (dir / "blob.bin"));
    if (r.exit_code != 0) GTEST_SKIP() << "sha256sum not available: " << r.output;
    EXPECT_EQ(r.output.substr(0, 64), ours);
    expect_error([&] { zt::sha256_file_hex(dir / "missing.bin"); }, {"missing.bin", "cannot open"});
}

// ------------------------------------------------------------------- UTF-8

TEST(Utf8, FindsTheFirstInvalidByte) {
    for (const std::string& s : utf8_cases())
        EXPECT_EQ(zt::utf8_error_offset(s), std::string_view::npos) << s;
    const std::string_view max_cp = "\xF4\x8F\xBF\xBF";  // U+10FFFF, the last code point
    EXPECT_EQ(zt::utf8_error_offset(max_cp), std::string_view::npos);
    struct Case {
        std::string text;
        size_t offset;
    };
    const Case bad[] = {
        {"ab\x80", 2},                // a lone continuation byte
        {"ab\xC3", 2},                // truncated 2-byte sequence
        {"\xE2\x82x", 0},             // truncated 3-byte sequence
        {"ok\xC0\x80", 2},            // overlong NUL
        {"\xE0\x80\xAF", 0},          // overlong '/'
        {"\xED\xA0\x80", 0},          // UTF-16 surrogate U+D800
        {"x\xF4\x90\x80\x80", 1},     // U+110000, past the last code point
        {"\xF8\x88\x80\x80\x80", 0},  // 5-byte form
        {"valid \xE2\x82\xAC then \xFF", 15},
    };
    for (const Case& c : bad) EXPECT_EQ(zt::utf8_error_offset(c.text), c.offset) << c.text;
}

// ------------------------------------------------------------------- bytes

TEST(ByteTokenizer, RoundTripsAnyBytes) {
    std::unique_ptr<zt::Tokenizer> tok = zt::load_tokenizer("byte");
    EXPECT_EQ(tok->kind(), "byte");
    EXPECT_EQ(tok->path(), "byte");
    EXPECT_EQ(tok->vocab_size(), 258);
    EXPECT_EQ(tok->bos_id(), 256);
    EXPECT_EQ(tok->eos_id(), 257);
    std::vector<std::string> cases = utf8_cases();
    cases.push_back("invalid \xFF\xFE utf-8 \xC3 \xED\xA0\x80 \x80");
    std::string all(256, '\0');
    for (int i = 0; i < 256; i++) all[size_t(i)] = char(i);
    cases.push_back(all);
    for (const std::string& s : cases) {
        const std::vector<uint32_t> ids = tok->encode(s);
        ASSERT_EQ(ids.size(), s.size());
        for (size_t i = 0; i < s.size(); i++) EXPECT_EQ(ids[i], uint32_t(uint8_t(s[i])));
        EXPECT_EQ(tok->decode(ids), s);
        std::string streamed;
        for (uint32_t id : ids) streamed += tok->decode_piece(id);
        EXPECT_EQ(streamed, s);
    }
    EXPECT_EQ(tok->encode_document("hi"), (std::vector<uint32_t>{256, 'h', 'i', 257}));
    EXPECT_EQ(tok->encode_prompt("hi"), (std::vector<uint32_t>{256, 'h', 'i'}));
    EXPECT_EQ(tok->encode_document(""), (std::vector<uint32_t>{256, 257}));
    EXPECT_EQ(tok->decode({256, 'o', 'k', 257, 256}), "ok");  // specials decode to nothing
    expect_error([&] { tok->decode({'a', 258}); }, {"258", "vocabulary of 258"});
    EXPECT_TRUE(tok->splits_at_newlines());
    EXPECT_EQ(zt::tokenizer_file_hash("byte"), "");
}

// ----------------------------------------------------------- SentencePiece

// One 1000-piece BPE model trained on the first ~200 KB of tinyshakespeare,
// shared by the tests below (training takes about a second).
class SentencePieceTest : public testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (!fs::exists(shakespeare_path())) return;
        dir_ = new zt_test::TempDir();
        const std::string text = read_file(shakespeare_path()).substr(0, 200000);
        std::ofstream(*dir_ / "corpus.txt", std::ios::binary) << text;
        zt::SentencePieceTrainOptions o;
        o.vocab_size = 1000;
        o.threads = 2;
        model_ = new std::string(zt::train_sentencepiece(
            std::vector<std::string>{*dir_ / "corpus.txt"}, *dir_ / "bpe", o));
    }
    static void TearDownTestSuite() {
        delete model_;
        delete dir_;
        model_ = nullptr;
        dir_ = nullptr;
    }
    void SetUp() override {
        if (!model_) GTEST_SKIP() << "needs " << shakespeare_path();
    }

    static zt_test::TempDir* dir_;
    static std::string* model_;
};

zt_test::TempDir* SentencePieceTest::dir_ = nullptr;
std::string* SentencePieceTest::model_ = nullptr;

TEST_F(SentencePieceTest, LoadsWithLlamaSpecials) {
    std::unique_ptr<zt::Tokenizer> tok = zt::load_tokenizer(*model_);
    EXPECT_EQ(tok->kind(), "sentencepiece");
    EXPECT_EQ(tok->path(), fs::absolute(*model_).lexically_normal().string());
    EXPECT_EQ(tok->vocab_size(), 1000);
    // LLaMA-2's tokenizer.model layout: unk 0, BOS 1, EOS 2, then 256 byte pieces.
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    EXPECT_EQ(tok->decode_piece(1), "");
    EXPECT_EQ(tok->decode_piece(2), "");
    EXPECT_EQ(tok->decode_piece(3 + 0x41), "A");  // byte piece <0x41>
    const std::vector<uint32_t> ids = tok->encode("KING");
    std::vector<uint32_t> doc = {1};
    doc.insert(doc.end(), ids.begin(), ids.end());
    EXPECT_EQ(tok->encode_prompt("KING"), doc);
    doc.push_back(2);
    EXPECT_EQ(tok->encode_document("KING"), doc);
    EXPECT_EQ(zt::tokenizer_file_hash(*model_), zt::sha256_file_hex(*model_));
    expect_error([&] { tok->decode({5, 1000}); }, {"1000", "vocabulary of 1000"});
}

TEST_F(SentencePieceTest, RoundTripsUtf8EdgeCases) {
    std::unique_ptr<zt::Tokenizer> tok = zt::load_sentencepiece(*model_);
    for (const std::string& s : utf8_cases()) {
        const std::vector<uint32_t> ids = tok->encode(s);
        EXPECT_EQ(tok->decode(ids), s) << "text: " << s;
        // Streaming decode is the same text plus the dummy leading space.
        std::string streamed;
        for (uint32_t id : ids) streamed += tok->decode_piece(id);
        EXPECT_EQ(streamed, s.empty() ? "" : " " + s) << "text: " << s;
        for (uint32_t id : ids) EXPECT_TRUE(id != 1 && id != 2) << "encode emitted BOS/EOS";
    }
    // Characters absent from the training text use byte fallback, not unk.
    const std::vector<uint32_t> ids = tok->encode("\xF0\x9F\x98\x80");
    for (uint32_t id : ids) EXPECT_NE(id, 0u) << "unk emitted for an emoji";
}

TEST_F(SentencePieceTest, SplitsAtNewlinesLikeTheWholeText) {
    std::unique_ptr<zt::Tokenizer> tok = zt::load_sentencepiece(*model_);
    ASSERT_TRUE(tok->splits_at_newlines());
    const std::string text = read_file(shakespeare_path()).substr(300000, 20000);
    const std::vector<uint32_t> whole = tok->encode(text);
    // Cut after every 37th newline: the pieces must concatenate to the whole.
    std::vector<uint32_t> parts;
    size_t pos = 0;
    int newlines = 0, cuts = 0;
    for (size_t i = 0; i < text.size(); i++) {
        if (text[i] != '\n' || ++newlines % 37) continue;
        const std::string_view piece = std::string_view(text).substr(pos, i + 1 - pos);
        const std::vector<uint32_t> ids =
            pos == 0 ? tok->encode(piece) : tok->encode_continuation(piece);
        parts.insert(parts.end(), ids.begin(), ids.end());
        pos = i + 1;
        cuts++;
    }
    const std::vector<uint32_t> rest = tok->encode_continuation(std::string_view(text).substr(pos));
    parts.insert(parts.end(), rest.begin(), rest.end());
    EXPECT_GT(cuts, 5);
    EXPECT_EQ(parts, whole);
}

TEST_F(SentencePieceTest, MatchesSpmEncode) {
    if (zt_test::run_command("command -v spm_encode").exit_code != 0)
        GTEST_SKIP() << "spm_encode (Debian: sentencepiece) not installed";
    // spm_encode encodes each input line on its own.
    const std::vector<std::string> lines = {
        "First Citizen: Before we proceed any further, hear me speak.",
        "  What say you to   this? 1599 and 42 ducats",
        "caf\xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97 \xF0\x9F\x98\x80 e\xCC\x81",
        "ROMEO:\tBut, soft! what light through yonder window breaks?", "x"};
    zt_test::TempDir dir;
    {
        std::ofstream f(dir / "in.txt", std::ios::binary);
        for (const std::string& l : lines) f << l << "\n";
    }
    const zt_test::CommandResult r = zt_test::run_command(
        "spm_encode --model=" + *model_ + " --output_format=id < " + (dir / "in.txt"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::unique_ptr<zt::Tokenizer> tok = zt::load_sentencepiece(*model_);
    std::istringstream out(r.output);
    std::string row;
    for (const std::string& l : lines) {
        ASSERT_TRUE(std::getline(out, row)) << "spm_encode printed fewer lines: " << r.output;
        std::vector<uint32_t> expected;
        std::istringstream ids(row);
        for (uint32_t id; ids >> id;) expected.push_back(id);
        EXPECT_EQ(tok->encode(l), expected) << "line: " << l;
    }
}

TEST_F(SentencePieceTest, TrainingIsDeterministicAndUnigramWorks) {
    zt::SentencePieceTrainOptions o;
    o.vocab_size = 1000;
    o.threads = 2;
    zt_test::TempDir dir;
    const std::string again =
        zt::train_sentencepiece(std::vector<std::string>{*dir_ / "corpus.txt"}, dir / "again", o);
    EXPECT_EQ(zt::sha256_file_hex(again), zt::sha256_file_hex(*model_));

    // Unigram on a quarter of the text, trained from lines in memory.
    const std::string text = read_file(*dir_ / "corpus.txt").substr(0, 50000);
    std::istringstream in(text);
    const zt::LineSource lines = [&](std::string* line) { return bool(std::getline(in, *line)); };
    o.model_type = "unigram";
    o.vocab_size = 600;
    std::unique_ptr<zt::Tokenizer> uni =
        zt::load_sentencepiece(zt::train_sentencepiece(lines, dir / "uni", o));
    EXPECT_EQ(uni->vocab_size(), 600);
    for (const std::string& s : utf8_cases()) EXPECT_EQ(uni->decode(uni->encode(s)), s);

    o.model_type = "wordpiece";
    expect_error([&] { zt::train_sentencepiece(lines, dir / "bad", o); },
                 {"'wordpiece'", "'bpe' or 'unigram'"});
    o.model_type = "bpe";
    o.vocab_size = 100;
    expect_error([&] { zt::train_sentencepiece(lines, dir / "bad", o); }, {"vocab 100"});
}

TEST(SentencePieceLoad, RefusesMissingAndCorruptModels) {
    zt_test::TempDir dir;
    expect_error([&] { zt::load_tokenizer(dir / "missing.model"); },
                 {"missing.model", "no such file", "'byte'"});
    const std::string junk = "this is not a protobuf model";
    zt_test::write_raw(dir / "junk.model", junk.data(), junk.size());
    expect_error([&] { zt::load_tokenizer(dir / "junk.model"); },
                 {"junk.model", "not a SentencePiece model"});
}

}  // namespace
