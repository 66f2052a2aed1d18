// Data layer: token shards (format, refusals), shard sets (sequence numbering,
// vocabulary checks, meta.json), synthetic data, and the global data order of
// the distributed loader (world size and accumulation never change what a
// step sees).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/synthetic.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using zt_test::expect_error;

// A fresh directory under /tmp, removed with everything in it at scope exit.
class TempDir {
  public:
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "zt-test-XXXXXX").string();
        const char* made = ::mkdtemp(templ.data());
        if (!made) throw std::runtime_error("mkdtemp failed for " + templ);
        path_ = made;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

std::vector<uint32_t> iota_tokens(uint32_t first, int n) {
    std::vector<uint32_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) t[size_t(i)] = first + uint32_t(i);
    return t;
}

void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void set_header_int(std::vector<char>& bytes, int index, int32_t value) {
    std::memcpy(bytes.data() + index * sizeof(int32_t), &value, sizeof(value));
}

// Sequence k holds k*1000 + i at position i, so a row names its sequence.
class IdentitySource : public zt::TokenSource {
  public:
    explicit IdentitySource(int64_t n) : n_(n) {}
    int64_t n_sequences(int) const override { return n_; }
    void read_sequence(int64_t k, int T, int32_t* out) const override {
        ZT_CHECK(k >= 0 && k < n_, "identity source: sequence %lld out of range", (long long)k);
        for (int i = 0; i <= T; i++) out[i] = int32_t(k * 1000 + i);
    }
    uint32_t max_token() const override { return uint32_t(n_ * 1000 + 999); }
    std::string describe() const override { return "identity source"; }

  private:
    int64_t n_;
};

// --------------------------------------------------------------- shards

TEST(DataShard, RoundTripVersion1) {
    TempDir dir;
    const std::string path = dir.file("train_000.bin");
    std::vector<uint32_t> tokens = {0, 1, 2, 50256, 65535, 7, 65534};
    zt::write_shard(path, tokens, 1);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    EXPECT_EQ(fs::file_size(path), 1024u + 2u * tokens.size());

    zt::TokenShard shard = zt::TokenShard::open(path);
    ASSERT_EQ(shard.size(), int64_t(tokens.size()));
    for (size_t i = 0; i < tokens.size(); i++) EXPECT_EQ(shard.token(int64_t(i)), tokens[i]);
    EXPECT_EQ(shard.max_token(), 65535u);
    EXPECT_EQ(shard.version(), 1);
    EXPECT_EQ(shard.path(), path);
    std::vector<int32_t> out(3);
    shard.read(3, 3, out.data());
    EXPECT_EQ(out, (std::vector<int32_t>{50256, 65535, 7}));
    EXPECT_THROW(shard.token(int64_t(tokens.size())), zt::Error);
}

TEST(DataShard, RoundTripVersion7) {
    TempDir dir;
    const std::string path = dir.file("train_000.bin");
    std::vector<uint32_t> tokens = {65535, 70000, 0, 65536, 128255, 3};
    zt::write_shard(path, tokens, 7);
    EXPECT_EQ(fs::file_size(path), 1024u + 4u * tokens.size());

    zt::TokenShard shard = zt::TokenShard::open(path);
    ASSERT_EQ(shard.size(), int64_t(tokens.size()));
    for (size_t i = 0; i < tokens.size(); i++) EXPECT_EQ(shard.token(int64_t(i)), tokens[i]);
    EXPECT_EQ(shard.max_token(), 128255u);
    EXPECT_EQ(shard.version(), 7);

    // Moving keeps the mapping alive in the new owner.
    zt::TokenShard moved = std::move(shard);
    EXPECT_EQ(moved.token(1), 70000u);
}

TEST(DataShard, Version1RefusesTokensAbove65535) {
    TempDir dir;
    const std::string path = dir.file("train_000.bin");
    expect_error(
        [&] {
            zt::write_shard(path, {1, 65536, 2}, 1);
        },
        {"train_000.bin", "65536", "version 7"});
    EXPECT_FALSE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    expect_error([&] { zt::write_shard(path, {1, 2}, 3); }, {"version 3"});
    expect_error([&] { zt::write_shard(path, {}, 7); }, {"no tokens"});
}

TEST(DataShard, RefusesCorruptShards) {
    TempDir dir;
    const std::string good = dir.file("good.bin");
    zt::write_shard(good, iota_tokens(0, 100), 1);
    const std::vector<char> bytes = read_bytes(good);

    {  // wrong magic: both known magics are named
        std::vector<char> b = bytes;
        set_header_int(b, 0, 12345);
        write_bytes(dir.file("bad_magic.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("bad_magic.bin")); },
                     {"bad_magic.bin", "12345", "20240520", "20240801"});
    }
    {  // magic of the uint16 format with the uint32 format's version
        std::vector<char> b = bytes;
        set_header_int(b, 1, 7);
        write_bytes(dir.file("bad_version.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("bad_version.bin")); },
                     {"bad_version.bin", "version 1", "found version 7"});
    }
    {  // truncated: the last token and a half are missing
        std::vector<char> b(bytes.begin(), bytes.end() - 3);
        write_bytes(dir.file("truncated.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("truncated.bin")); },
                     {"truncated.bin", "100 tokens", "truncated", "missing 3 bytes"});
    }
    {  // trailing bytes after the tokens
        std::vector<char> b = bytes;
        b.resize(b.size() + 4, 0);
        write_bytes(dir.file("trailing.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("trailing.bin")); },
                     {"trailing.bin", "trailing 4 bytes"});
    }
    {  // header count disagrees with the file size
        std::vector<char> b = bytes;
        set_header_int(b, 2, 500);
        write_bytes(dir.file("count.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("count.bin")); },
                     {"count.bin", "header says 500 tokens", "truncated"});
    }
    {  // empty file and a file shorter than the header
        write_bytes(dir.file("empty.bin"), {});
        expect_error([&] { zt::TokenShard::open(dir.file("empty.bin")); },
                     {"empty.bin", "0 bytes", "shorter than the 1024-byte header"});
        write_bytes(dir.file("short.bin"), std::vector<char>(bytes.begin(), bytes.begin() + 100));
        expect_error([&] { zt::TokenShard::open(dir.file("short.bin")); },
                     {"short.bin", "100 bytes", "shorter than the 1024-byte header"});
    }
    {  // a valid header announcing zero tokens
        std::vector<char> b(bytes.begin(), bytes.begin() + 1024);
        set_header_int(b, 2, 0);
        write_bytes(dir.file("zero.bin"), b);
        expect_error([&] { zt::TokenShard::open(dir.file("zero.bin")); },
                     {"zero.bin", "0 tokens", "remove it"});
    }
    expect_error([&] { zt::TokenShard::open(dir.file("missing.bin")); },
                 {"missing.bin", "cannot open", "No such file"});
    // The untouched original still opens.
    EXPECT_EQ(zt::TokenShard::open(good).size(), 100);
}

// ------------------------------------------------------------ shard sets

// train_000: tokens 0..10 (11), train_001: 100..107 (8), val_000: 200..209.
void write_two_shard_dir(const TempDir& dir) {
    zt::write_shard(dir.file("train_001.bin"), iota_tokens(100, 8), 7);  // written first:
    zt::write_shard(dir.file("train_000.bin"), iota_tokens(0, 11), 1);   // order is by name
    zt::write_shard(dir.file("val_000.bin"), iota_tokens(200, 10), 1);
    write_bytes(dir.file("notes.txt"), {'h', 'i'});
    write_bytes(dir.file("train.idx"), {'x'});
}

TEST(DataShardSet, NumbersSequencesShardByShard) {
    TempDir dir;
    write_two_shard_dir(dir);
    auto train = zt::ShardSet::open(dir.path(), "train");
    ASSERT_EQ(train->shards().size(), 2u);
    EXPECT_NE(train->shards()[0].path().find("train_000.bin"), std::string::npos);
    EXPECT_EQ(train->total_tokens(), 19);

    // T=4: floor(10/4) = 2 sequences from train_000, floor(7/4) = 1 from train_001.
    const int T = 4;
    ASSERT_EQ(train->n_sequences(T), 3);
    std::vector<int32_t> seq(T + 1);
    train->read_sequence(0, T, seq.data());
    EXPECT_EQ(seq, (std::vector<int32_t>{0, 1, 2, 3, 4}));
    train->read_sequence(1, T, seq.data());
    EXPECT_EQ(seq, (std::vector<int32_t>{4, 5, 6, 7, 8}));
    train->read_sequence(2, T, seq.data());  // never straddles: starts the next shard
    EXPECT_EQ(seq, (std::vector<int32_t>{100, 101, 102, 103, 104}));
    expect_error([&] { train->read_sequence(3, T, seq.data()); }, {"sequence 3", "past the end"});

    EXPECT_EQ(train->n_sequences(10), 1);  // only train_000 holds 11 tokens
    EXPECT_EQ(train->n_sequences(1), 10 + 7);
    expect_error([&] { train->n_sequences(11); },
                 {"'train'", "19 tokens", "largest shard 11", "needs 12 tokens"});

    auto val = zt::ShardSet::open(dir.path(), "val");
    ASSERT_EQ(val->shards().size(), 1u);
    EXPECT_EQ(val->n_sequences(3), 3);
    EXPECT_EQ(val->max_token(), 209u);
}

TEST(DataShardSet, SingleFileIsTheTrainSplit) {
    TempDir dir;
    zt::write_shard(dir.file("data.bin"), iota_tokens(5, 9), 1);
    auto set = zt::ShardSet::open(dir.file("data.bin"), "train");
    EXPECT_EQ(set->n_sequences(4), 2);
    EXPECT_TRUE(zt::ShardSet::find_shards(dir.file("data.bin"), "val").empty());
    expect_error([&] { zt::ShardSet::open(dir.file("data.bin"), "val"); },
                 {"data.bin", "single shard file", "'val'"});
}

TEST(DataShardSet, Refusals) {
    TempDir dir;
    expect_error([&] { zt::ShardSet::open(dir.file("nowhere"), "train"); },
                 {"nowhere", "does not exist"});
    expect_error([&] { zt::ShardSet::open(dir.path(), "train"); }, {"'train'", "empty directory"});
    zt::write_shard(dir.file("train_000.bin"), iota_tokens(0, 20), 1);
    write_bytes(dir.file("readme.md"), {'x'});
    expect_error([&] { zt::ShardSet::open(dir.path(), "val"); },
                 {dir.path(), "'val'", "found: readme.md, train_000.bin"});
    expect_error([&] { zt::ShardSet::open(dir.path(), "test"); }, {"'test'", "'train' or 'val'"});
    EXPECT_TRUE(zt::ShardSet::find_shards(dir.path(), "val").empty());
    // A corrupt shard in the set is refused by name at open.
    write_bytes(dir.file("train_001.bin"), std::vector<char>(10, 0));
    expect_error([&] { zt::ShardSet::open(dir.path(), "train"); }, {"train_001.bin", "shorter"});
}

TEST(DataShardSet, CheckVocabNamesShardAndLargestId) {
    TempDir dir;
    zt::write_shard(dir.file("train_000.bin"), {1, 2, 3, 40}, 1);
    zt::write_shard(dir.file("train_001.bin"), {5, 500, 6, 7}, 1);
    auto set = zt::ShardSet::open(dir.path(), "train");
    EXPECT_EQ(set->max_token(), 500u);
    EXPECT_NO_THROW(zt::check_vocab(*set, 501));
    expect_error([&] { zt::check_vocab(*set, 500); },
                 {"train_001.bin", "token id 500", "vocab_size is 500"});
    expect_error([&] { zt::check_vocab(*set, 41); }, {"train_001.bin", "500"});

    zt::SyntheticSource synth(64, 1);
    EXPECT_NO_THROW(zt::check_vocab(synth, 64));
    expect_error([&] { zt::check_vocab(synth, 63); }, {"synthetic", "63"});
}

TEST(DataShardSet, MetaVocabSize) {
    TempDir dir;
    EXPECT_FALSE(zt::read_meta_vocab_size(dir.path()).has_value());
    auto write_meta = [&](const std::string& text) {
        std::ofstream(dir.file("meta.json")) << text;
    };
    write_meta(R"({"tokenizer": "gpt2", "vocab_size": 50257})");
    EXPECT_EQ(zt::read_meta_vocab_size(dir.path()), 50257);
    zt::write_shard(dir.file("train_000.bin"), {1, 2}, 1);  // a shard path reads the meta beside it
    EXPECT_EQ(zt::read_meta_vocab_size(dir.file("train_000.bin")), 50257);
    write_meta(R"({"tokenizer": "gpt2"})");
    EXPECT_FALSE(zt::read_meta_vocab_size(dir.path()).has_value());
    write_meta(R"({"vocab_size": 50257,)");
    expect_error([&] { zt::read_meta_vocab_size(dir.path()); }, {"meta.json", "malformed"});
    write_meta(R"({"vocab_size": "big"})");
    expect_error([&] { zt::read_meta_vocab_size(dir.path()); }, {"meta.json", "\"big\""});
    write_meta(R"({"vocab_size": 3.5})");
    expect_error([&] { zt::read_meta_vocab_size(dir.path()); }, {"meta.json", "3.5"});
}

// -------------------------------------------------------------- synthetic

TEST(DataSynthetic, DeterministicAndInRange) {
    const int V = 50, T = 64;
    zt::SyntheticSource a(V, 7), b(V, 7), c(V, 8);
    EXPECT_EQ(a.n_sequences(T), 1 << 16);
    std::vector<int32_t> sa(T + 1), sb(T + 1), sc(T + 1), longer(2 * T + 1);
    int differ = 0;
    for (int64_t k : {0, 1, 2, 1000, 65535}) {
        a.read_sequence(k, T, sa.data());
        b.read_sequence(k, T, sb.data());
        c.read_sequence(k, T, sc.data());
        EXPECT_EQ(sa, sb) << "sequence " << k;
        differ += sa != sc;
        for (int32_t t : sa) EXPECT_TRUE(t >= 0 && t < V) << t;
        // Independent of T except for length: a longer read extends the same walk.
        a.read_sequence(k, 2 * T, longer.data());
        EXPECT_TRUE(std::equal(sa.begin(), sa.end(), longer.begin())) << "sequence " << k;
    }
    EXPECT_EQ(differ, 5);  // another seed, another chain and other walks
    EXPECT_THROW(a.read_sequence(1 << 16, T, sa.data()), zt::Error);
    expect_error([] { zt::SyntheticSource(7, 1); }, {"vocab_size 7", "at least 8"});
}

TEST(DataSynthetic, EmpiricalEntropyMatchesChain) {
    const int V = 64, T = 256, n_seq = 4096;
    zt::SyntheticSource src(V, 3, n_seq);
    const double h = src.entropy_per_token();
    // -(0.55 ln 0.55 + 0.25 ln 0.25 + 0.12 ln 0.12 + 0.08 ln 0.08)
    EXPECT_NEAR(h, 1.1319, 1e-3);
    EXPECT_LT(h, 0.5 * std::log(double(V)));  // learnable: far below the uniform loss

    std::vector<int64_t> counts(size_t(V) * V, 0);
    std::vector<int32_t> seq(T + 1);
    int64_t off_chain = 0;
    for (int k = 0; k < n_seq; k++) {
        src.read_sequence(k, T, seq.data());
        for (int i = 0; i < T; i++) {
            const int32_t* succ = src.successors(seq[size_t(i)]);
            off_chain += std::find(succ, succ + 4, seq[size_t(i) + 1]) == succ + 4;
            counts[size_t(seq[size_t(i)]) * V + size_t(seq[size_t(i) + 1])]++;
        }
    }
    EXPECT_EQ(off_chain, 0);
    // Plug-in estimate of H(next | current) over ~1M transitions. Its bias is
    // about (cells - rows) / (2N) = 1e-4 and its standard error about
    // sqrt(Var[-ln p] / N) < 1e-3, so 0.01 nats is ten standard errors.
    double est = 0.0, total = 0.0;
    for (int a = 0; a < V; a++) {
        double row = 0.0;
        for (int b = 0; b < V; b++) row += double(counts[size_t(a) * V + size_t(b)]);
        for (int b = 0; b < V; b++) {
            const double c = double(counts[size_t(a) * V + size_t(b)]);
            if (c > 0) est -= c * std::log(c / row);
        }
        total += row;
    }
    est /= total;
    EXPECT_TRUE(std::fabs(est - h) <= 0.01) << "empirical " << est << " vs chain " << h;
}

// ---------------------------------------------------------------- loader

// All rows that one optimizer step hands to all ranks and micro-batches,
// named by sequence index, sorted (the multiset of the step).
std::vector<int64_t> step_sequences(const zt::TokenSource& src, int T, int B, int K, int world,
                                    uint64_t seed, int64_t step) {
    std::vector<int64_t> seqs;
    std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
    for (int r = 0; r < world; r++) {
        zt::DataLoader loader(src, T, B, K, r, world, seed);
        for (int m = 0; m < K; m++) {
            loader.load(step, m, in.data(), tg.data());
            for (int b = 0; b < B; b++) {
                const int32_t* row_in = &in[size_t(b) * T];
                const int32_t* row_tg = &tg[size_t(b) * T];
                const int64_t k = row_in[0] / 1000;
                for (int t = 0; t < T; t++) {  // inputs = seq[0..T), targets = seq[1..T]
                    EXPECT_EQ(row_in[t], k * 1000 + t);
                    EXPECT_EQ(row_tg[t], k * 1000 + t + 1);
                }
                seqs.push_back(k);
            }
        }
    }
    std::sort(seqs.begin(), seqs.end());
    return seqs;
}

TEST(DataLoader, GlobalOrderIndependentOfWorldAndAccumulation) {
    const int T = 8, B = 2;
    const uint64_t seed = 11;
    for (int64_t N : {48, 50}) {  // 48: every G divides an epoch; 50: steps straddle epochs
        IdentitySource src(N);
        for (int world : {1, 2, 3, 4}) {
            for (int K : {1, 2}) {
                SCOPED_TRACE(testing::Message() << "N " << N << " world " << world << " K " << K);
                const int64_t G = int64_t(world) * B * K;
                zt::DataLoader probe(src, T, B, K, 0, world, seed);
                ASSERT_EQ(probe.global_batch(), G);
                ASSERT_EQ(probe.sequences_per_epoch(), N);
                const int64_t steps = (2 * N + G - 1) / G;  // covers two epochs
                std::vector<int64_t> epoch_counts(size_t(3 * N), 0);
                for (int64_t s = 0; s < steps; s++) {
                    std::vector<int64_t> got = step_sequences(src, T, B, K, world, seed, s);
                    std::vector<int64_t> ref = step_sequences(src, T, B * world * K, 1, 1, seed, s);
                    ASSERT_EQ(got, ref) << "step " << s;
                    if (N % G == 0) {  // a step lies in one epoch: count the rows it loaded
                        for (int64_t k : got) epoch_counts[size_t((s * G / N) * N + k)]++;
                    } else {  // position -> (epoch, sequence); rows = sequence_at is tested below
                        for (int64_t i = 0; i < G; i++) {
                            const int64_t p = s * G + i;
                            epoch_counts[size_t((p / N) * N + probe.sequence_at(p))]++;
                        }
                    }
                }
                for (int64_t e = 0; e < 2; e++)  // each full epoch sees every sequence once
                    for (int64_t k = 0; k < N; k++)
                        ASSERT_EQ(epoch_counts[size_t(e * N + k)], 1)
                            << "epoch " << e << " sequence " << k;
            }
        }
    }
}

TEST(DataLoader, RanksAndMicroBatchesAreDisjointWithinAStep) {
    IdentitySource src(48);
    const int T = 4, B = 3, K = 2, world = 4;
    std::set<int64_t> seen;
    std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
    for (int r = 0; r < world; r++) {
        zt::DataLoader loader(src, T, B, K, r, world, 5);
        for (int m = 0; m < K; m++) {
            loader.load(1, m, in.data(), tg.data());
            for (int b = 0; b < B; b++) {
                const int64_t p = loader.global_position(1, m, b);
                EXPECT_EQ(p, 24 + (r * K + m) * B + b);
                EXPECT_EQ(in[size_t(b) * T] / 1000, loader.sequence_at(p));
                EXPECT_TRUE(seen.insert(in[size_t(b) * T] / 1000).second);
            }
        }
    }
    EXPECT_EQ(seen.size(), 24u);
}

TEST(DataLoader, SeedsAndEpochsGiveDifferentOrders) {
    const int64_t N = 1000;
    const std::vector<uint32_t> a = zt::epoch_permutation(N, 1, 0);
    EXPECT_EQ(a, zt::epoch_permutation(N, 1, 0));
    EXPECT_NE(a, zt::epoch_permutation(N, 2, 0));
    EXPECT_NE(a, zt::epoch_permutation(N, 1, 1));
    std::vector<uint32_t> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < N; i++) ASSERT_EQ(sorted[size_t(i)], uint32_t(i));
    int64_t fixed = 0;  // a shuffle, not the identity: E[fixed points] = 1
    for (int64_t i = 0; i < N; i++) fixed += a[size_t(i)] == uint32_t(i);
    EXPECT_LT(fixed, 10);

    IdentitySource src(N);
    zt::DataLoader l1(src, 4, 8, 1, 0, 1, 1), l2(src, 4, 8, 1, 0, 1, 2);
    std::vector<int32_t> in1(32), tg1(32), in2(32), tg2(32);
    l1.load(0, 0, in1.data(), tg1.data());
    l2.load(0, 0, in2.data(), tg2.data());
    EXPECT_NE(in1, in2);
    // Step 125 starts epoch 1 (position 1000): a fresh permutation, not a replay.
    l1.load(125, 0, in2.data(), tg2.data());
    EXPECT_NE(in1, in2);
    EXPECT_EQ(in2[0] / 1000, int32_t(zt::epoch_permutation(N, 1, 1)[0]));
}

TEST(DataLoader, ConcurrentLoadsMatchSerial) {
    IdentitySource src(30);  // small epochs so threads keep crossing epoch boundaries
    zt::DataLoader loader(src, 4, 4, 1, 0, 1, 9);
    const int steps = 40;
    std::vector<std::vector<int32_t>> serial(steps, std::vector<int32_t>(16));
    std::vector<int32_t> tg(16);
    for (int s = 0; s < steps; s++) loader.load(s, 0, serial[size_t(s)].data(), tg.data());
    std::vector<std::vector<int32_t>> parallel(steps, std::vector<int32_t>(16));
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; t++) {
        threads.emplace_back([&, t] {
            std::vector<int32_t> targets(16);
            for (int s = t; s < steps; s += 4)
                loader.load(s, 0, parallel[size_t(s)].data(), targets.data());
        });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(serial, parallel);
}

TEST(DataLoader, RefusesBadArguments) {
    IdentitySource src(10);
    expect_error([&] { zt::DataLoader(src, 0, 1, 1, 0, 1, 0); }, {"seq-len 0"});
    expect_error([&] { zt::DataLoader(src, 4, -2, 1, 0, 1, 0); }, {"micro-batch -2"});
    expect_error([&] { zt::DataLoader(src, 4, 1, 0, 0, 1, 0); }, {"grad-accum 0"});
    expect_error([&] { zt::DataLoader(src, 4, 1, 1, 2, 2, 0); }, {"rank 2", "world size 2"});
    expect_error([&] { zt::DataLoader(src, 4, 1, 1, -1, 2, 0); }, {"rank -1"});
    expect_error([&] { zt::DataLoader(src, 4, 1, 1, 0, 0, 0); }, {"world size 0"});
    zt::DataLoader loader(src, 4, 2, 2, 0, 1, 0);
    std::vector<int32_t> in(8), tg(8);
    expect_error([&] { loader.load(0, 2, in.data(), tg.data()); }, {"micro-batch index 2"});
    expect_error([&] { loader.load(-1, 0, in.data(), tg.data()); }, {"step -1"});
}

// ------------------------------------------------------------------- eval

TEST(DataEval, ReadsSequencesInOrderWithoutWrapping) {
    IdentitySource src(10);
    const int T = 4, B = 3;
    EXPECT_EQ(zt::eval_batches(src, T, B, 0), 3);   // 10 sequences: 3 full batches of 3
    EXPECT_EQ(zt::eval_batches(src, T, B, 25), 2);  // 12 tokens a batch
    EXPECT_EQ(zt::eval_batches(src, T, B, 5), 0);
    EXPECT_EQ(zt::eval_batches(src, T, B, 1000), 3);
    std::vector<int32_t> in(size_t(B) * T), tg(size_t(B) * T);
    for (int64_t idx = 0; idx < 3; idx++) {
        zt::load_eval(src, T, idx, B, in.data(), tg.data());
        for (int b = 0; b < B; b++) {
            EXPECT_EQ(in[size_t(b) * T], (idx * B + b) * 1000);
            EXPECT_EQ(tg[size_t(b) * T + T - 1], (idx * B + b) * 1000 + T);
        }
    }
    expect_error([&] { zt::load_eval(src, T, 3, B, in.data(), tg.data()); },
                 {"eval batch 3", "does not wrap"});

    TempDir dir;  // on shards: the ShardSet numbering, in order
    write_two_shard_dir(dir);
    auto val = zt::ShardSet::open(dir.path(), "train");
    ASSERT_EQ(zt::eval_batches(*val, 4, 3, 0), 1);
    std::vector<int32_t> vin(12), vtg(12);
    zt::load_eval(*val, 4, 0, 3, vin.data(), vtg.data());
    EXPECT_EQ(vin, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103}));
    EXPECT_EQ(vtg, (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 101, 102, 103, 104}));
}

}  // namespace
