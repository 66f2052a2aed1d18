// `zerotrain prepare` and the default corpus: .txt / .jsonl / fortune inputs
// to shards the loader opens, the document convention in the token stream,
// meta.json, the validation split (by documents or by tokens), identical
// output for any thread count, invalid UTF-8 replaced as Python does, every
// kind of bad input either counted or refused with a message that names it,
// nothing half-written after a failure or an interrupt, and the CLI.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "core/sha256.h"
#include "data/default_corpus.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zt_test::expect_error;

void write_file(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << text;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json read_meta(const std::string& dir) {
    std::ifstream in(dir + "/meta.json");
    return nlohmann::json::parse(in);
}

std::string shakespeare_path() {
    return zt_test::source_dir() + "/../shared/data/tinyshakespeare.txt";
}

// Every token of a split, shard after shard.
std::vector<uint32_t> split_tokens(const std::string& dir, const std::string& split) {
    std::vector<uint32_t> all;
    for (const std::string& path : zt::ShardSet::find_shards(dir, split)) {
        zt::TokenShard s = zt::TokenShard::open(path);
        for (int64_t i = 0; i < s.size(); i++) all.push_back(s.token(i));
    }
    return all;
}

// The byte-tokenizer stream [256 bytes.. 257]* cut back into documents.
std::vector<std::string> byte_documents(const std::vector<uint32_t>& stream) {
    std::vector<std::string> docs;
    std::string cur;
    bool open = false;
    for (uint32_t t : stream) {
        if (t == 256) {
            EXPECT_FALSE(open) << "BOS inside a document";
            open = true;
            cur.clear();
        } else if (t == 257) {
            EXPECT_TRUE(open) << "EOS without BOS";
            open = false;
            docs.push_back(cur);
        } else {
            EXPECT_TRUE(open) << "token outside a document";
            cur += char(t);
        }
    }
    EXPECT_FALSE(open) << "the stream ends inside a document";
    return docs;
}

zt::PrepareOptions byte_options(const std::string& input, const std::string& out) {
    zt::PrepareOptions o;
    o.inputs = {input};
    o.out_dir = out;
    o.tokenizer = "byte";
    o.progress = false;
    return o;
}

// -------------------------------------------------------------- contents

TEST(Prepare, TextAndJsonlDirectory) {
    zt_test::TempDir tmp;
    const std::string in = tmp / "in";
    write_file(in + "/a.txt", "Hello, world.\nSecond line.\n");
    write_file(in + "/b.jsonl",
               "{\"text\": \"first json \\u00e9\"}\n"
               "\n"  // blank: not a document
               "{\"text\": \"second json\", \"id\": 7}\n"
               "{\"text\": \"broken\"\n"          // line 4: malformed
               "{\"body\": \"no text field\"}\n"  // line 5
               "{\"text\": 42}\n"                 // line 6
               "[\"an\", \"array\"]\n"            // line 7
               "{\"text\": \"third json\"}");     // no final newline
    write_file(in + "/sub/c.txt", "nested file \xF0\x9F\x99\x82");
    write_file(in + "/sub/empty.txt", "");
    write_file(in + "/blank.txt", " \n\t\n");
    write_file(in + "/notes.md", "skipped: other extension");
    write_file(in + "/fortunes", "skipped: no extension without --doc-separator\n");

    zt::PrepareOptions o = byte_options(in, tmp / "out");
    o.shard_tokens = 16;  // several shards, documents crossing them
    o.val_fraction = 0.3;
    const zt::PrepareStats st = zt::prepare_data(o);

    EXPECT_EQ(st.source_files, 5);  // a.txt, b.jsonl, blank.txt, sub/c.txt, sub/empty.txt
    EXPECT_EQ(st.skipped_files, 2);
    EXPECT_EQ(st.malformed_json, 4);
    EXPECT_NE(st.first_malformed_json.find("b.jsonl:4: not valid JSON"), std::string::npos)
        << st.first_malformed_json;
    EXPECT_EQ(st.empty, 2);
    EXPECT_EQ(st.invalid_utf8_bytes, 0);
    EXPECT_EQ(st.binary, 0);
    EXPECT_EQ(st.documents_train + st.documents_val, 5);
    EXPECT_GE(st.documents_val, 1);
    EXPECT_GE(st.documents_train, 1);

    // Both splits hold exactly the kept documents, in input order.
    const std::vector<std::string> expected = {"Hello, world.\nSecond line.\n",
                                               "first json \xC3\xA9", "second json", "third json",
                                               "nested file \xF0\x9F\x99\x82"};
    const std::vector<std::string> train = byte_documents(split_tokens(tmp / "out", "train"));
    const std::vector<std::string> val = byte_documents(split_tokens(tmp / "out", "val"));
    EXPECT_EQ(int64_t(train.size()), st.documents_train);
    EXPECT_EQ(int64_t(val.size()), st.documents_val);
    size_t ti = 0, vi = 0;
    for (const std::string& doc : expected) {  // a merge of the two splits gives the input order
        if (ti < train.size() && train[ti] == doc) {
            ti++;
        } else {
            ASSERT_LT(vi, val.size()) << "document missing: " << doc;
            EXPECT_EQ(val[vi++], doc);
        }
    }
    EXPECT_EQ(ti, train.size());
    EXPECT_EQ(vi, val.size());

    // meta.json describes what is there.
    const nlohmann::json meta = read_meta(tmp / "out");
    EXPECT_EQ(meta["vocab_size"], 258);
    EXPECT_EQ(zt::read_meta_vocab_size(tmp / "out"), 258);
    EXPECT_EQ(meta["bos_id"], 256);
    EXPECT_EQ(meta["eos_id"], 257);
    EXPECT_EQ(meta["document_start"], nlohmann::json::array({256}));
    EXPECT_EQ(meta["tokenizer"]["kind"], "byte");
    EXPECT_TRUE(meta["tokenizer"]["sha256"].is_null());
    EXPECT_EQ(meta["tokens"]["train"], st.tokens_train);
    EXPECT_EQ(meta["tokens"]["val"], st.tokens_val);
    EXPECT_EQ(int64_t(split_tokens(tmp / "out", "train").size()), st.tokens_train);
    EXPECT_EQ(meta["documents"]["val"], st.documents_val);
    EXPECT_EQ(meta["source_files"], 5);
    EXPECT_EQ(meta["skipped"]["malformed_json"], 4);
    EXPECT_EQ(meta["skipped"]["empty"], 2);
    EXPECT_EQ(meta["skipped"]["files_other_extension"], 2);
    EXPECT_EQ(meta["shard_version"], 1);
    EXPECT_GT(meta["tokens_per_s"].get<double>(), 0);
    ASSERT_EQ(meta["shards"]["train"].size(), st.train_shards.size());
    EXPECT_EQ(meta["shards"]["train"][0], "train_000000.bin");
    // Full shards of 16 tokens, the last of a split shorter: ~100 tokens in all.
    EXPECT_EQ(int64_t(st.train_shards.size()), (st.tokens_train + 15) / 16);
    EXPECT_EQ(int64_t(st.val_shards.size()), (st.tokens_val + 15) / 16);
    EXPECT_GE(st.train_shards.size() + st.val_shards.size(), 4u);
    for (const std::string& s : st.train_shards) {
        const int64_t n = zt::TokenShard::open(tmp / "out/" + s).size();
        EXPECT_TRUE(n == 16 || s == st.train_shards.back()) << s << " holds " << n;
    }
    // The loader opens the result; nothing temporary is left.
    EXPECT_EQ(zt::ShardSet::open(tmp / "out", "train")->total_tokens(), st.tokens_train);
    EXPECT_EQ(zt::ShardSet::open(tmp / "out", "val")->total_tokens(), st.tokens_val);
    for (const auto& e : fs::directory_iterator(tmp.path()))
        EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
    EXPECT_EQ(zt::load_data_tokenizer(tmp / "out")->kind(), "byte");
}

TEST(Prepare, FortuneFilesWithSeparator) {
    zt_test::TempDir tmp;
    write_file(tmp / "f/jokes", "One.\n%\nTwo\nlines.\n%\n%\nThree.\r\n%\r\n");  // CRLF too
    write_file(tmp / "f/jokes.dat", std::string("\x00\x01\x02\x03", 4));         // index: skipped
    fs::create_symlink(tmp / "f/jokes", tmp / "f/jokes.u8");                     // other extension
    zt::PrepareOptions o = byte_options(tmp / "f", tmp / "out");
    o.doc_separator = "%";
    o.val_fraction = 0;
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.source_files, 1);
    EXPECT_EQ(st.skipped_files, 2);
    EXPECT_EQ(st.empty, 1);  // between the two adjacent separators
    EXPECT_EQ(st.documents_val, 0);
    EXPECT_TRUE(zt::ShardSet::find_shards(tmp / "out", "val").empty());
    EXPECT_EQ(byte_documents(split_tokens(tmp / "out", "train")),
              (std::vector<std::string>{"One.\n", "Two\nlines.\n", "Three.\r\n"}));
}

TEST(Prepare, ValidationSplitTakesAtLeastOneDocument) {
    zt_test::TempDir tmp;
    // 4 documents at 0.3 (1.2 expected in val) split by documents; without
    // the move, about a quarter of the seeds would leave val empty at 0.3
    // (0.7^4), and as many train empty at 0.7.
    std::string jsonl;
    for (int i = 0; i < 4; i++) jsonl += "{\"text\": \"doc " + std::to_string(i) + "\"}\n";
    write_file(tmp / "d.jsonl", jsonl);
    int one_val = 0;
    for (uint64_t seed = 1; seed <= 24; seed++) {
        for (double f : {0.3, 0.7}) {
            zt::PrepareOptions o = byte_options(tmp / "d.jsonl", tmp / "out");
            o.val_fraction = f;
            o.seed = seed;
            const zt::PrepareStats st = zt::prepare_data(o);
            EXPECT_EQ(st.val_split, "documents");
            EXPECT_GE(st.documents_val, 1) << "seed " << seed << " at " << f;
            EXPECT_GE(st.documents_train, 1) << "seed " << seed << " at " << f;
            const std::vector<std::string> val = byte_documents(split_tokens(tmp / "out", "val"));
            if (f == 0.3 && val == std::vector<std::string>{"doc 3"}) one_val++;
            fs::remove_all(tmp / "out");
        }
    }
    EXPECT_GT(one_val, 0);  // the seeds that drew no val document gave it the last one
    EXPECT_LT(one_val, 24);

    // A seed picks the split; the same seed the same split, another seed another one.
    std::string many;
    for (int i = 0; i < 400; i++) many += "{\"text\": \"doc " + std::to_string(i) + "\"}\n";
    write_file(tmp / "many.jsonl", many);
    auto val_docs = [&](uint64_t seed, const std::string& out) {
        zt::PrepareOptions m = byte_options(tmp / "many.jsonl", out);
        m.val_fraction = 0.1;
        m.seed = seed;
        zt::prepare_data(m);
        return byte_documents(split_tokens(out, "val"));
    };
    const std::vector<std::string> a = val_docs(1, tmp / "s1"), b = val_docs(1, tmp / "s1b"),
                                   c = val_docs(2, tmp / "s2");
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    // 400 draws at p = 0.1: mean 40, sd 6; 15..65 is four sd either side.
    EXPECT_TRUE(a.size() >= 15 && a.size() <= 65) << a.size();
}

// A SentencePiece model trained here on ~200 KB of Shakespeare, for the two
// tests that need one.
class PrepareSentencePiece : public testing::Test {
  protected:
    void SetUp() override {
        if (!fs::exists(shakespeare_path())) GTEST_SKIP() << "needs " << shakespeare_path();
        text_ = read_file(shakespeare_path()).substr(0, 200000);
        write_file(tmp_ / "in/shakespeare.txt", text_);
    }
    zt_test::TempDir tmp_;
    std::string text_;
};

TEST_F(PrepareSentencePiece, TrainedTokenizerAndThreadCountIndependence) {
    auto run = [&](int threads, const std::string& out) {
        zt::PrepareOptions o = byte_options(tmp_ / "in", out);
        o.train_vocab = 1000;
        o.doc_separator = "";  // blank lines end documents: one per speech
        o.threads = threads;
        return zt::prepare_data(o);
    };
    const zt::PrepareStats one = run(1, tmp_ / "t1");
    const zt::PrepareStats two = run(2, tmp_ / "t2");
    EXPECT_GT(one.documents_train, 500);
    EXPECT_GE(one.documents_val, 1);
    EXPECT_EQ(one.vocab_size, 1000);
    EXPECT_EQ(one.tokenizer_path, fs::absolute(tmp_ / "t1/tokenizer.model").string());
    // tokenizer.model records the thread count among its training options,
    // so compare its pieces and scores (tokenizer.vocab) instead.
    for (const char* f : {"tokenizer.vocab", "train_000000.bin", "val_000000.bin"})
        EXPECT_EQ(zt::sha256_file_hex(tmp_ / "t1/" + f), zt::sha256_file_hex(tmp_ / "t2/" + f))
            << f << " differs between 1 and 2 threads";

    const nlohmann::json meta = read_meta(tmp_ / "t1");
    EXPECT_EQ(meta["tokenizer"]["kind"], "sentencepiece");
    EXPECT_EQ(meta["tokenizer"]["sha256"], zt::sha256_file_hex(tmp_ / "t1/tokenizer.model"));
    EXPECT_EQ(meta["bos_id"], 1);
    EXPECT_EQ(meta["eos_id"], 2);
    EXPECT_EQ(meta["vocab_size"], 1000);

    // The stream is [BOS] encode(speech) [EOS] per speech; check the first.
    std::unique_ptr<zt::Tokenizer> tok = zt::load_data_tokenizer(tmp_ / "t1");
    const std::string first = text_.substr(0, text_.find("\n\n") + 1);
    const std::vector<uint32_t> doc = tok->encode_document(first);
    const std::vector<uint32_t> train = split_tokens(tmp_ / "t1", "train");
    ASSERT_GE(train.size(), doc.size());
    EXPECT_TRUE(std::equal(doc.begin(), doc.end(), train.begin()));

    // A tampered tokenizer is refused by hash.
    std::ofstream(tmp_ / "t2/tokenizer.model", std::ios::app) << "x";
    expect_error([&] { zt::load_data_tokenizer(tmp_ / "t2"); },
                 {"tokenizer.model", "SHA-256", "changed"});
}

TEST_F(PrepareSentencePiece, LongDocumentInSegmentsEqualsWholeEncoding) {
    zt_test::TempDir models;
    zt::SentencePieceTrainOptions so;
    so.vocab_size = 800;
    const std::string model = zt::train_sentencepiece(
        std::vector<std::string>{tmp_ / "in/shakespeare.txt"}, models / "m", so);
    // One 200 KB document: cut into ~64 KB segments on two threads.
    zt::PrepareOptions o = byte_options(tmp_ / "in/shakespeare.txt", tmp_ / "out");
    o.tokenizer = model;
    o.threads = 2;
    o.doc_separator = "none";
    o.shard_tokens = 10000;  // the val tail is cut across shards
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.documents_train, 1);
    EXPECT_EQ(st.documents_val, 0);  // one document: split by tokens
    EXPECT_EQ(st.val_split, "tokens");
    std::unique_ptr<zt::Tokenizer> tok = zt::load_sentencepiece(model);
    std::vector<uint32_t> stream = split_tokens(tmp_ / "out", "train");
    const std::vector<uint32_t> val = split_tokens(tmp_ / "out", "val");
    EXPECT_EQ(int64_t(val.size()), (int64_t(stream.size() + val.size()) + 9) / 10);
    stream.insert(stream.end(), val.begin(), val.end());
    EXPECT_EQ(stream, tok->encode_document(text_));
    const nlohmann::json meta = read_meta(tmp_ / "out");
    EXPECT_EQ(meta["tokenizer"]["path"], fs::absolute(model).lexically_normal().string());
    EXPECT_EQ(meta["tokenizer"]["trained_here"], false);
    EXPECT_FALSE(fs::exists(tmp_ / "out/tokenizer.model"));  // a given tokenizer is not copied
}

// A .txt file splits at blank lines unless told otherwise, so one file of
// paragraphs gets a validation split of whole paragraphs.
TEST(Prepare, TextFileSplitsAtBlankLines) {
    zt_test::TempDir tmp;
    const std::string text = "\n\nA\nB\n\n\n  \nC\r\n\t\r\nD";  // no final newline
    write_file(tmp / "t.txt", text);
    auto docs = [&](const std::optional<std::string>& sep, const std::string& out) {
        zt::PrepareOptions o = byte_options(tmp / "t.txt", out);
        o.doc_separator = sep;
        o.val_fraction = 0;
        zt::prepare_data(o);
        return byte_documents(split_tokens(out, "train"));
    };
    const std::vector<std::string> blank = {"A\nB\n", "C\r\n", "D"};
    EXPECT_EQ(docs(std::nullopt, tmp / "o1"), blank);
    EXPECT_EQ(docs(std::string(""), tmp / "o2"), blank);  // '' is the default made explicit
    EXPECT_EQ(docs(std::string("none"), tmp / "o3"), std::vector<std::string>{text});
    EXPECT_EQ(docs(std::string("C"), tmp / "o4"),
              (std::vector<std::string>{"\n\nA\nB\n\n\n  \n", "\t\r\nD"}));

    std::string paragraphs;
    for (int i = 0; i < 1000; i++) paragraphs += "Paragraph " + std::to_string(i) + ".\nMore.\n\n";
    write_file(tmp / "p.txt", paragraphs);
    const zt::PrepareStats st = zt::prepare_data(byte_options(tmp / "p.txt", tmp / "p"));
    EXPECT_EQ(st.val_split, "documents");
    EXPECT_EQ(st.val_fraction, 0.005);
    EXPECT_EQ(st.documents_train + st.documents_val, 1000);
    EXPECT_GE(st.documents_val, 1);
    const nlohmann::json meta = read_meta(tmp / "p");
    EXPECT_EQ(meta["val_split"]["by"], "documents");
    EXPECT_EQ(meta["val_split"]["fraction_given"], false);
    EXPECT_EQ(meta["options"]["val_fraction"], 0.005);  // what older readers read
    for (const std::string& d : byte_documents(split_tokens(tmp / "p", "val")))
        EXPECT_EQ(d.rfind("Paragraph ", 0), 0u) << d;
}

// Too few documents for the fraction asked: the validation split is the end
// of the token stream, 0.1 of it by default, cut across shards.
TEST(Prepare, FewDocumentsSplitByTokens) {
    zt_test::TempDir tmp;
    write_file(tmp / "one.txt", std::string(98, 'x') + "\n");  // 101 tokens with BOS and EOS
    zt::PrepareOptions o = byte_options(tmp / "one.txt", tmp / "a");
    o.shard_tokens = 16;
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.val_split, "tokens");
    EXPECT_EQ(st.val_fraction, 0.1);
    EXPECT_EQ(st.tokens_val, 11);  // ceil(0.1 * 101)
    EXPECT_EQ(st.tokens_train, 90);
    EXPECT_EQ(st.documents_train, 1);
    EXPECT_EQ(st.documents_val, 0);
    std::vector<uint32_t> stream = split_tokens(tmp / "a", "train");
    const std::vector<uint32_t> val = split_tokens(tmp / "a", "val");
    EXPECT_EQ(int64_t(stream.size()), 90);
    EXPECT_EQ(val.back(), 257u);  // the stream's end
    stream.insert(stream.end(), val.begin(), val.end());
    EXPECT_EQ(byte_documents(stream), std::vector<std::string>{std::string(98, 'x') + "\n"});
    // Full shards of 16 but the last of each split.
    EXPECT_EQ(st.train_shards.size(), 6u);  // 5 x 16 + 10
    EXPECT_EQ(st.val_shards.size(), 1u);
    EXPECT_EQ(zt::TokenShard::open(tmp / "a/train_000005.bin").size(), 10);
    const nlohmann::json meta = read_meta(tmp / "a");
    EXPECT_EQ(meta["val_split"]["by"], "tokens");
    EXPECT_EQ(meta["val_split"]["fraction"], 0.1);
    EXPECT_EQ(meta["tokens"]["val"], 11);

    // 3 documents at a given 0.2 (0.6 of a document): by tokens, at 0.2.
    write_file(tmp / "three.jsonl",
               "{\"text\": \"first\"}\n{\"text\": \"second\"}\n{\"text\": \"third\"}\n");
    zt::PrepareOptions t = byte_options(tmp / "three.jsonl", tmp / "b");
    t.val_fraction = 0.2;
    const zt::PrepareStats ts = zt::prepare_data(t);
    EXPECT_EQ(ts.val_split, "tokens");
    EXPECT_EQ(ts.tokens_train + ts.tokens_val, 22);
    EXPECT_EQ(ts.tokens_val, 5);  // ceil(0.2 * 22)
    EXPECT_EQ(read_meta(tmp / "b")["val_split"]["fraction_given"], true);
    // And with enough of them, by documents at the same fraction.
    t.inputs = {tmp / "p.jsonl"};
    t.out_dir = tmp / "c";
    std::string five;
    for (int i = 0; i < 5; i++) five += "{\"text\": \"d" + std::to_string(i) + "\"}\n";
    write_file(tmp / "p.jsonl", five);
    EXPECT_EQ(zt::prepare_data(t).val_split, "documents");
    t.out_dir = tmp / "d";
    t.val_fraction = 0;
    const zt::PrepareStats none = zt::prepare_data(t);
    EXPECT_EQ(none.val_split, "none");
    EXPECT_EQ(none.tokens_val, 0);
}

// --------------------------------------------------------------- bad input

TEST(Prepare, BadDocumentsAreCountedAndNamed) {
    zt_test::TempDir tmp;
    write_file(tmp / "in/latin1.txt", "ok line\nsecond line\ncaf\xE9 in Latin-1\n");
    write_file(tmp / "in/nul.txt", std::string("text with a \0 NUL byte", 22));
    write_file(tmp / "in/good.txt", "the one good document");
    write_file(tmp / "in/lines.jsonl",
               "{\"text\": \"bad \xFF byte\"}\n{\"text\": \"nul \\u0000\"}\n");
    zt::PrepareOptions bo = byte_options(tmp / "in", tmp / "out");
    bo.val_fraction = 0;  // whole documents in train, to compare them
    const zt::PrepareStats st = zt::prepare_data(bo);
    // Invalid UTF-8 is replaced, not a reason to skip (it was until the
    // replacement): latin1.txt and lines.jsonl:1 are kept.
    EXPECT_EQ(st.invalid_utf8_bytes, 2);
    EXPECT_EQ(st.invalid_utf8_documents, 2);
    EXPECT_NE(st.first_invalid_utf8.find("latin1.txt:3: invalid UTF-8 (byte 0xe9)"),
              std::string::npos)
        << st.first_invalid_utf8;
    EXPECT_EQ(st.binary, 2);  // nul.txt and lines.jsonl:2
    EXPECT_NE(st.first_binary.find("lines.jsonl:2"), std::string::npos) << st.first_binary;
    EXPECT_EQ(st.documents_train + st.documents_val, 3);
    std::vector<std::string> docs = byte_documents(split_tokens(tmp / "out", "train"));
    EXPECT_EQ(docs, (std::vector<std::string>{"the one good document",
                                              "ok line\nsecond line\ncaf\xEF\xBF\xBD in Latin-1\n",
                                              "bad \xEF\xBF\xBD byte"}));
    const nlohmann::json meta = read_meta(tmp / "out");
    EXPECT_EQ(meta["invalid_utf8"]["bytes_replaced"], 2);
    EXPECT_EQ(meta["invalid_utf8"]["documents"], 2);

    // Random bytes: whatever is kept is valid UTF-8.
    std::mt19937 rng(5);
    std::string garbage(4096, '\0');
    for (char& c : garbage) c = char(1 + rng() % 255);  // no NUL: not binary
    write_file(tmp / "garbage.txt", garbage);
    zt::PrepareOptions g = byte_options(tmp / "garbage.txt", tmp / "gout");
    g.doc_separator = "none";
    const zt::PrepareStats gs = zt::prepare_data(g);
    EXPECT_GT(gs.invalid_utf8_bytes, 1000);
    EXPECT_EQ(gs.invalid_utf8_documents, 1);
    std::vector<uint32_t> all = split_tokens(tmp / "gout", "train");
    const std::vector<uint32_t> val = split_tokens(tmp / "gout", "val");
    all.insert(all.end(), val.begin(), val.end());
    const std::vector<std::string> gdocs = byte_documents(all);
    ASSERT_EQ(gdocs.size(), 1u);
    EXPECT_EQ(zt::utf8_error_offset(gdocs[0]), std::string_view::npos);

    write_file(tmp / "nul_only.txt", std::string("\0\0", 2));
    zt::PrepareOptions o = byte_options(tmp / "nul_only.txt", tmp / "out2");
    expect_error([&] { zt::prepare_data(o); }, {"no documents", "1 binary", "nul_only.txt:1"});
    EXPECT_FALSE(fs::exists(tmp / "out2"));  // a failure leaves nothing behind
}

// Each document below is one case; what Python's
// bytes.decode("utf-8", errors="replace") gives, re-encoded (one U+FFFD per
// maximal invalid subsequence, Unicode's recommended practice).
TEST(Prepare, InvalidUtf8IsReplacedAsPythonDoes) {
    zt_test::TempDir tmp;
    const std::string R = "\xEF\xBF\xBD";  // U+FFFD
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"a\xE2\x82"
         "b",
         "a" + R + "b"},                      // truncated 3-byte character
        {"\xF0\x9F\x99!", R + "!"},           // truncated 4-byte character
        {"\xED\xA0\x80", R + R + R},          // a surrogate
        {"\xC0\xAF", R + R},                  // overlong
        {"\xF5\xFF", R + R},                  // never valid
        {"\xF4\x90\x80\x80", R + R + R + R},  // past U+10FFFF
        {"\xE0\x80\xAF", R + R + R},          // overlong 3-byte
        {"ok \xC3\xA9 \xF0\x9F\x99\x82", "ok \xC3\xA9 \xF0\x9F\x99\x82"},  // valid
        {"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF"
         "A",
         R + R + R + R + "A"},
        {"end\xE2", "end" + R},
    };
    std::string text;
    for (const auto& c : cases) text += c.first + "\n%\n";
    write_file(tmp / "cases.txt", text);
    zt::PrepareOptions o = byte_options(tmp / "cases.txt", tmp / "out");
    o.doc_separator = "%";
    o.val_fraction = 0;
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.invalid_utf8_bytes, 28);  // 2 + 3 + 3 + 2 + 2 + 4 + 3 + 0 + 8 + 1
    EXPECT_EQ(st.invalid_utf8_documents, 9);
    EXPECT_NE(st.first_invalid_utf8.find("cases.txt:1: invalid UTF-8 (byte 0xe2)"),
              std::string::npos)
        << st.first_invalid_utf8;
    const std::vector<std::string> docs = byte_documents(split_tokens(tmp / "out", "train"));
    ASSERT_EQ(docs.size(), cases.size());
    for (size_t i = 0; i < cases.size(); i++) EXPECT_EQ(docs[i], cases[i].second + "\n") << i;
}

TEST(Prepare, RefusesUnusableInputAndOutput) {
    zt_test::TempDir tmp;
    expect_error([&] { zt::prepare_data(byte_options(tmp / "nowhere", tmp / "out")); },
                 {"nowhere", "does not exist"});
    write_file(tmp / "useless/a.md", "markdown");
    write_file(tmp / "useless/b.bin", "data");
    expect_error([&] { zt::prepare_data(byte_options(tmp / "useless", tmp / "out")); },
                 {"no usable files", "2 file(s)", ".txt or .jsonl"});
    fs::create_directories(tmp / "emptydir");
    expect_error([&] { zt::prepare_data(byte_options(tmp / "emptydir", tmp / "out")); },
                 {"emptydir", "no files"});
    write_file(tmp / "empty.jsonl", "\n\n");
    expect_error([&] { zt::prepare_data(byte_options(tmp / "empty.jsonl", tmp / "out")); },
                 {"no documents"});
    EXPECT_FALSE(fs::exists(tmp / "out"));

    write_file(tmp / "good.txt", "some text");
    // --out under a regular file cannot be created.
    expect_error([&] { zt::prepare_data(byte_options(tmp / "good.txt", tmp / "good.txt/out")); },
                 {"good.txt/out", "cannot create"});
    expect_error([&] { zt::prepare_data(byte_options(tmp / "good.txt", tmp / "good.txt")); },
                 {"good.txt", "not a directory"});
    // --out that already holds shards or a meta.json is left alone.
    zt::prepare_data(byte_options(tmp / "good.txt", tmp / "done"));
    const std::string before = zt::sha256_file_hex(tmp / "done/train_000000.bin");
    expect_error([&] { zt::prepare_data(byte_options(tmp / "good.txt", tmp / "done")); },
                 {"done", "already holds shards", "train_000000.bin"});
    EXPECT_EQ(zt::sha256_file_hex(tmp / "done/train_000000.bin"), before);
    fs::create_directories(tmp / "metaonly");
    write_file(tmp / "metaonly/meta.json", "{}");
    expect_error([&] { zt::prepare_data(byte_options(tmp / "good.txt", tmp / "metaonly")); },
                 {"metaonly", "meta.json"});
    // An existing empty directory is fine, and a failure in it leaves it empty.
    fs::create_directories(tmp / "emptyout");
    zt::PrepareOptions bad = byte_options(tmp / "good.txt", tmp / "emptyout");
    bad.tokenizer = tmp / "missing.model";
    expect_error([&] { zt::prepare_data(bad); }, {"missing.model"});
    zt::PrepareOptions untrainable = byte_options(tmp / "good.txt", tmp / "emptyout");
    untrainable.train_vocab = 5000;  // far more pieces than "some text" can give
    expect_error([&] { zt::prepare_data(untrainable); }, {"vocab 5000"});
    EXPECT_TRUE(fs::is_empty(tmp / "emptyout"));
    zt::PrepareOptions range = byte_options(tmp / "good.txt", tmp / "emptyout");
    range.val_fraction = 1;
    expect_error([&] { zt::prepare_data(range); }, {"--val-fraction 1", "[0, 1)"});
    range.val_fraction = 0;
    range.shard_tokens = 0;
    expect_error([&] { zt::prepare_data(range); }, {"--shard-tokens 0"});
    EXPECT_NO_THROW(zt::prepare_data(byte_options(tmp / "good.txt", tmp / "emptyout")));
}

// --------------------------------------------------------------------- CLI

TEST(PrepareCli, RunsAndRefuses) {
    zt_test::TempDir tmp;
    write_file(tmp / "a.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}\nnot json\n");
    const std::string bin = zt_test::zerotrain_binary();
    zt_test::CommandResult r =
        zt_test::run_command(bin + " prepare --input " + (tmp / "a.jsonl") + " --out " +
                             (tmp / "out") + " --tokenizer byte --val-fraction 0.5 --threads 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2 documents (1 train, 1 val)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1 malformed JSON"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("a.jsonl:3"), std::string::npos) << r.output;
    EXPECT_EQ(zt::read_meta_vocab_size(tmp / "out"), 258);

    r = zt_test::run_command(bin + " prepare --input " + (tmp / "a.jsonl") + " --out " +
                             (tmp / "out") + " --tokenizer byte");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("already holds shards"), std::string::npos) << r.output;
    r = zt_test::run_command(bin + " prepare --input " + (tmp / "nope.txt") + " --out " +
                             (tmp / "o2"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("nope.txt does not exist"), std::string::npos) << r.output;
    r = zt_test::run_command(bin + " prepare --input " + (tmp / "a.jsonl") + " --out " +
                             (tmp / "o3") + " --tokenizer byte --train-tokenizer 500");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("excludes"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "o3"));
}

TEST(PrepareCli, PrintsSplitProgressAndReplacements) {
    zt_test::TempDir tmp;
    write_file(tmp / "a.txt", "caf\xE9\n\nsecond paragraph\n");
    const std::string bin = zt_test::zerotrain_binary();
    zt_test::CommandResult r = zt_test::run_command(bin + " prepare --input " + (tmp / "a.txt") +
                                                    " --out " + (tmp / "out") + " --threads 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("2 documents (2 train, 0 val)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("validation split by tokens"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1 invalid UTF-8 byte(s) replaced by U+FFFD in 1 document(s)"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("prepare: reading 0.0 MB in 1 file(s)"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("prepare: read 0.0 MB in"), std::string::npos) << r.output;
    r = zt_test::run_command(bin + " prepare --help");
    EXPECT_NE(r.output.find("'none'"), std::string::npos) << r.output;
}

// The process id in OUT.tmp-PID, the run's temporary directory, or 0.
pid_t temporary_dir_pid(const std::string& out) {
    const fs::path p(out);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(p.parent_path(), ec)) {
        const std::string name = e.path().filename().string();
        const std::string prefix = p.filename().string() + ".tmp-";
        if (name.rfind(prefix, 0) == 0) return pid_t(std::atol(name.c_str() + prefix.size()));
    }
    return 0;
}

// A named pipe as input keeps prepare reading for as long as the test holds
// the pipe open, so the signal arrives mid-run whatever the machine's speed.
void expect_interrupt_leaves_nothing(int sig, bool out_exists) {
    zt_test::TempDir tmp;
    const std::string fifo = tmp / "in.txt", out = tmp / "out", log = tmp / "log";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    if (out_exists) fs::create_directories(out);
    const std::string cmd = zt_test::zerotrain_binary() + " prepare --input " + fifo + " --out " +
                            out + " --tokenizer byte --val-fraction 0 --threads 1";
    ASSERT_TRUE(zt_test::start_and_wait_for(
        cmd, log,
        [&] {
            return read_file(log).find("prepare: reading") != std::string::npos &&
                   temporary_dir_pid(out) > 0;
        },
        60))
        << read_file(log);
    // Some text in the pipe, the write end kept open: prepare waits for more.
    int fd = -1;
    for (int i = 0; i < 3000 && fd < 0; i++) {
        fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_GE(fd, 0) << "prepare never opened its input";
    const std::string text = "A paragraph.\n\nAnother one.\n\n";
    EXPECT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size()));
    const pid_t pid = temporary_dir_pid(out);
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::kill(pid, sig), 0);
    EXPECT_EQ(zt_test::wait_exit_code(log, 60), 128 + sig) << read_file(log);
    ::close(fd);
    EXPECT_NE(read_file(log).find("interrupted by"), std::string::npos) << read_file(log);
    if (out_exists)
        EXPECT_TRUE(fs::is_directory(out) && fs::is_empty(out));
    else
        EXPECT_FALSE(fs::exists(out));
    EXPECT_EQ(temporary_dir_pid(out), 0) << "a temporary directory is left";
}

TEST(PrepareCli, SigintLeavesNoOutput) {
    expect_interrupt_leaves_nothing(SIGINT, false);
}

TEST(PrepareCli, SigtermLeavesAnEmptyOutEmpty) {
    expect_interrupt_leaves_nothing(SIGTERM, true);
}

TEST(PrepareCli, RefusesAPipeItWouldReadTwice) {
    zt_test::TempDir tmp;
    ASSERT_EQ(::mkfifo((tmp / "in.txt").c_str(), 0600), 0);
    const zt_test::CommandResult r =
        zt_test::run_command(zt_test::zerotrain_binary() + " prepare --input " + (tmp / "in.txt") +
                             " --out " + (tmp / "out") + " --tokenizer byte");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("in.txt is not a regular file"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--val-fraction 0"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "out"));
}

// ---------------------------------------------------------- default corpus

TEST(DefaultCorpus, PreparesOnceThenReuses) {
    if (!fs::is_directory(zt::kFortunesDir))
        GTEST_SKIP() << zt::kFortunesDir << " missing (Debian package: fortunes)";
    zt_test::TempDir cache;
    const std::string dir = zt::ensure_default_corpus(false, zt::kFortunesDir, cache.path());
    EXPECT_EQ(dir, cache / zt::kDefaultCorpusVersion);
    const nlohmann::json meta = read_meta(dir);
    EXPECT_EQ(meta["vocab_size"], zt::kDefaultCorpusVocab);
    EXPECT_EQ(meta["source_files"], int64_t(zt::fortune_files().size()));
    EXPECT_GT(meta["documents"]["train"].get<int64_t>(), 10000);  // ~16k fortunes
    EXPECT_GT(meta["tokens"]["val"].get<int64_t>(), 5000);
    EXPECT_EQ(meta["invalid_utf8"]["documents"], 0);
    EXPECT_EQ(meta["val_split"]["by"], "documents");
    auto train = zt::ShardSet::open(dir, "train");
    EXPECT_GT(train->total_tokens(), 500000);
    EXPECT_LT(train->max_token(), uint32_t(zt::kDefaultCorpusVocab));
    std::unique_ptr<zt::Tokenizer> tok = zt::load_data_tokenizer(dir);
    EXPECT_EQ(tok->decode(tok->encode("A fortune for you.")), "A fortune for you.");

    // The second call reuses it untouched; a damaged cache is rebuilt.
    const auto stamp = fs::last_write_time(dir + "/meta.json");
    EXPECT_EQ(zt::ensure_default_corpus(false, zt::kFortunesDir, cache.path()), dir);
    EXPECT_EQ(fs::last_write_time(dir + "/meta.json"), stamp);
    fs::remove(dir + "/train_000000.bin");
    EXPECT_EQ(zt::ensure_default_corpus(false, zt::kFortunesDir, cache.path()), dir);
    EXPECT_TRUE(fs::exists(dir + "/train_000000.bin"));
}

TEST(DefaultCorpus, ListsFortuneFilesAndNamesThePackage) {
    zt_test::TempDir tmp;
    expect_error([&] { zt::ensure_default_corpus(false, tmp / "nowhere", tmp / "cache"); },
                 {"nowhere", "fortunes", "apt-get install fortunes"});
    write_file(tmp / "f/zen", "a\n%\nb\n");
    write_file(tmp / "f/art", "c\n%\n");
    write_file(tmp / "f/art.dat", "index");
    fs::create_symlink(tmp / "f/art", tmp / "f/art.u8");
    fs::create_symlink(tmp / "f/zen", tmp / "f/zen2");  // a link without extension
    EXPECT_EQ(zt::fortune_files(tmp / "f"),
              (std::vector<std::string>{tmp / "f/art", tmp / "f/zen"}));
    setenv("ZT_CACHE_DIR", (tmp / "c1").c_str(), 1);
    EXPECT_EQ(zt::zerotrain_cache_dir(), tmp / "c1");
    unsetenv("ZT_CACHE_DIR");
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const std::string saved = xdg ? xdg : "";
    setenv("XDG_CACHE_HOME", (tmp / "x").c_str(), 1);
    EXPECT_EQ(zt::zerotrain_cache_dir(), tmp / "x/zerotrain");
    if (xdg)
        setenv("XDG_CACHE_HOME", saved.c_str(), 1);
    else
        unsetenv("XDG_CACHE_HOME");
}

}  // namespace
