// `zerotrain prepare` and the default corpus: .txt / .jsonl / fortune inputs
// to shards the loader opens, the document convention in the token stream,
// meta.json, the validation split, identical output for any thread count,
// every kind of bad input either counted or refused with a message that
// names it, nothing half-written after a failure, and the CLI.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
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
    EXPECT_EQ(st.invalid_utf8, 0);
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
    for (const auto& e : fs::directory_iterator(tmp / "out"))
        EXPECT_EQ(e.path().filename().string().find(".prepare"), std::string::npos);
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
    std::string jsonl;
    for (int i = 0; i < 3; i++) jsonl += "{\"text\": \"doc " + std::to_string(i) + "\"}\n";
    write_file(tmp / "d.jsonl", jsonl);
    zt::PrepareOptions o = byte_options(tmp / "d.jsonl", tmp / "out");
    o.val_fraction = 1e-6;  // rounds to no document, but a val split is asked for
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.documents_val, 1);
    EXPECT_EQ(byte_documents(split_tokens(tmp / "out", "val")), std::vector<std::string>{"doc 2"});
    EXPECT_EQ(byte_documents(split_tokens(tmp / "out", "train")),
              (std::vector<std::string>{"doc 0", "doc 1"}));

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
    const zt::PrepareStats st = zt::prepare_data(o);
    EXPECT_EQ(st.documents_train, 1);
    EXPECT_EQ(st.documents_val, 0);  // one document: no split
    std::unique_ptr<zt::Tokenizer> tok = zt::load_sentencepiece(model);
    EXPECT_EQ(split_tokens(tmp_ / "out", "train"), tok->encode_document(text_));
    const nlohmann::json meta = read_meta(tmp_ / "out");
    EXPECT_EQ(meta["tokenizer"]["path"], fs::absolute(model).lexically_normal().string());
    EXPECT_EQ(meta["tokenizer"]["trained_here"], false);
    EXPECT_FALSE(fs::exists(tmp_ / "out/tokenizer.model"));  // a given tokenizer is not copied
}

// --------------------------------------------------------------- bad input

TEST(Prepare, BadDocumentsAreCountedAndNamed) {
    zt_test::TempDir tmp;
    std::mt19937 rng(5);
    std::string garbage(4096, '\0');
    for (char& c : garbage) c = char(rng());
    write_file(tmp / "in/garbage.txt", garbage);
    write_file(tmp / "in/latin1.txt", "ok line\nsecond line\ncaf\xE9 in Latin-1\n");
    write_file(tmp / "in/nul.txt", std::string("text with a \0 NUL byte", 22));
    write_file(tmp / "in/good.txt", "the one good document");
    write_file(tmp / "in/lines.jsonl",
               "{\"text\": \"bad \xFF byte\"}\n{\"text\": \"nul \\u0000\"}\n");
    const zt::PrepareStats st = zt::prepare_data(byte_options(tmp / "in", tmp / "out"));
    EXPECT_EQ(st.invalid_utf8, 3);  // garbage.txt, latin1.txt, lines.jsonl:1
    EXPECT_NE(st.first_invalid_utf8.find("garbage.txt:"), std::string::npos)
        << st.first_invalid_utf8;
    EXPECT_EQ(st.binary, 2);  // nul.txt and lines.jsonl:2
    EXPECT_NE(st.first_binary.find("lines.jsonl:2"), std::string::npos) << st.first_binary;
    EXPECT_EQ(st.documents_train, 1);

    zt::PrepareOptions o = byte_options(tmp / "in/latin1.txt", tmp / "out2");
    expect_error([&] { zt::prepare_data(o); },
                 {"no documents", "1 not valid UTF-8", "latin1.txt:3: invalid UTF-8 (byte 0xe9)"});
    EXPECT_FALSE(fs::exists(tmp / "out2"));  // a failure leaves nothing behind
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
    EXPECT_EQ(meta["skipped"]["invalid_utf8"], 0);
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
