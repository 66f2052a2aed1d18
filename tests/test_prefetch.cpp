// The loader's read-ahead thread: it returns exactly what DataLoader::load
// returns (in order, from a resumed step, out of order), reads ahead only as
// far as its ring, hands a loader exception to the caller, and shuts down
// cleanly whatever its thread is doing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"
#include "data/loader.h"

namespace {

using namespace std::chrono_literals;

// Sequence k holds k*1000 + i at position i, so a row names its sequence.
// Counts its reads, can sleep on each, and throws on one chosen sequence.
class ProbeSource : public zt::TokenSource {
  public:
    explicit ProbeSource(int64_t n, int64_t poison = -1, std::chrono::milliseconds delay = 0ms)
        : n_(n), poison_(poison), delay_(delay) {}
    int64_t n_sequences(int) const override { return n_; }
    void read_sequence(int64_t k, int T, int32_t* out) const override {
        reads_++;
        if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
        ZT_CHECK(k != poison_, "probe source: sequence %lld is unreadable", (long long)k);
        for (int i = 0; i <= T; i++) out[i] = int32_t(k * 1000 + i);
    }
    uint32_t max_token() const override { return uint32_t(n_ * 1000 + 999); }
    std::string describe() const override { return "probe source"; }
    int64_t reads() const { return reads_.load(); }

  private:
    int64_t n_, poison_;
    std::chrono::milliseconds delay_;
    mutable std::atomic<int64_t> reads_{0};
};

struct Batch {
    std::vector<int32_t> inputs, targets;
    bool operator==(const Batch&) const = default;
};

Batch direct(const zt::DataLoader& l, int64_t step, int micro) {
    const size_t n = size_t(l.micro_batch()) * l.seq_len();
    Batch b{std::vector<int32_t>(n), std::vector<int32_t>(n)};
    l.load(step, micro, b.inputs.data(), b.targets.data());
    return b;
}

Batch prefetched(zt::PrefetchLoader& p, int64_t step, int micro) {
    const size_t n = size_t(p.loader().micro_batch()) * p.loader().seq_len();
    Batch b{std::vector<int32_t>(n), std::vector<int32_t>(n)};
    p.next(step, micro, b.inputs.data(), b.targets.data());
    return b;
}

// Waits up to 5 s for cond; true if it became true.
template <class Cond>
bool eventually(Cond cond) {
    for (auto t0 = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - t0 < 5s;
         std::this_thread::sleep_for(1ms))
        if (cond()) return true;
    return cond();
}

TEST(PrefetchLoader, MatchesDataLoaderAcrossEpochs) {
    ProbeSource src(50);  // 50 sequences, G = 2 * 3 * 3 = 18: steps straddle epochs
    const int T = 4, B = 3, K = 3;
    for (int depth : {1, 2, 4}) {
        for (int rank : {0, 1}) {
            zt::DataLoader loader(src, T, B, K, rank, 2, 21);
            zt::PrefetchLoader pre(loader, 0, depth);
            for (int64_t s = 0; s < 40; s++)
                for (int m = 0; m < K; m++)
                    ASSERT_EQ(prefetched(pre, s, m), direct(loader, s, m))
                        << "depth " << depth << " rank " << rank << " step " << s << " micro " << m;
        }
    }
}

TEST(PrefetchLoader, ResumedAtAStepMatchesTheUninterruptedRun) {
    ProbeSource src(37);
    const int T = 8, B = 2, K = 2;
    zt::DataLoader loader(src, T, B, K, 0, 1, 5);
    std::vector<Batch> uninterrupted;
    {
        zt::PrefetchLoader pre(loader, 0, 3);
        for (int64_t s = 0; s < 30; s++)
            for (int m = 0; m < K; m++) uninterrupted.push_back(prefetched(pre, s, m));
    }
    zt::DataLoader fresh(src, T, B, K, 0, 1, 5);  // as after a restart
    const int64_t start = 13;
    zt::PrefetchLoader resumed(fresh, start, 3);
    for (int64_t s = start; s < 30; s++)
        for (int m = 0; m < K; m++)
            ASSERT_EQ(prefetched(resumed, s, m), uninterrupted[size_t(s * K + m)]) << "step " << s;
}

TEST(PrefetchLoader, EveryRankSeesEachSequenceOnceAnEpoch) {
    const int T = 4, B = 2;
    for (int world : {1, 2, 3, 4}) {
        for (int K : {1, 2}) {
            const int64_t G = int64_t(world) * B * K;
            const int64_t N = G * 5;  // five steps an epoch
            ProbeSource src(N);
            std::multiset<int32_t> seen;
            for (int r = 0; r < world; r++) {
                zt::DataLoader loader(src, T, B, K, r, world, 3);
                zt::PrefetchLoader pre(loader, 0, 2);
                for (int64_t s = 0; s < 5; s++)
                    for (int m = 0; m < K; m++) {
                        const Batch b = prefetched(pre, s, m);
                        for (int row = 0; row < B; row++)
                            seen.insert(b.inputs[size_t(row * T)] / 1000);
                    }
            }
            ASSERT_EQ(int64_t(seen.size()), N) << "world " << world << " K " << K;
            for (int64_t k = 0; k < N; k++)
                ASSERT_EQ(seen.count(int32_t(k)), 1u)
                    << "world " << world << " K " << K << " seq " << k;
        }
    }
}

TEST(PrefetchLoader, OutOfOrderCallsAreServedExactly) {
    ProbeSource src(40);
    zt::DataLoader loader(src, 4, 2, 3, 1, 3, 8);
    zt::PrefetchLoader pre(loader, 0, 3);
    const std::pair<int64_t, int> order[] = {{0, 0}, {0, 1}, {5, 0},   {2, 1}, {2, 1},
                                             {2, 2}, {3, 0}, {100, 2}, {0, 0}, {0, 1}};
    for (const auto& [s, m] : order)
        ASSERT_EQ(prefetched(pre, s, m), direct(loader, s, m)) << s << "," << m;
    try {
        std::vector<int32_t> in(8), tg(8);
        pre.next(1, 3, in.data(), tg.data());
        ADD_FAILURE() << "micro 3 of grad-accum 3 was accepted";
    } catch (const zt::Error& e) {
        EXPECT_NE(std::string(e.what()).find("micro-batch index 3"), std::string::npos) << e.what();
    }
}

TEST(PrefetchLoader, ReadsAheadOnlyAsFarAsItsRing) {
    ProbeSource src(1000);
    const int B = 4, depth = 3;
    zt::DataLoader loader(src, 8, B, 2, 0, 1, 1);
    zt::PrefetchLoader pre(loader, 7, depth);
    // Without a single next(), the thread fills the ring ...
    ASSERT_TRUE(eventually([&] { return src.reads() == depth * B; })) << src.reads() << " reads";
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(src.reads(), depth * B);  // ... and stops there.
    // Each micro-batch taken frees one slot, which is refilled.
    prefetched(pre, 7, 0);
    ASSERT_TRUE(eventually([&] { return src.reads() == (depth + 1) * B; })) << src.reads();
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(src.reads(), (depth + 1) * B);
}

TEST(PrefetchLoader, LoaderErrorsReachTheCaller) {
    const int T = 4, B = 2, K = 2;
    const int64_t N = 30, poison = 17;
    ProbeSource src(N, poison);
    zt::DataLoader loader(src, T, B, K, 0, 1, 4);
    // The first micro-batch that reads the poisoned sequence.
    int64_t bad = 0;
    while (loader.sequence_at(bad) != poison) bad++;
    const int64_t bad_step = bad / (B * K);
    const int bad_micro = int(bad % (B * K)) / B;
    std::string expected;
    try {
        direct(loader, bad_step, bad_micro);
    } catch (const zt::Error& e) {
        expected = e.what();
    }
    ASSERT_NE(expected.find("sequence 17 is unreadable"), std::string::npos) << expected;

    zt::PrefetchLoader pre(loader, 0, 3);
    for (int64_t p = 0; p < bad_step * K + bad_micro; p++)
        ASSERT_EQ(prefetched(pre, p / K, int(p % K)), direct(loader, p / K, int(p % K)));
    for (int attempt = 0; attempt < 2; attempt++) {  // the same error again on a retry
        try {
            prefetched(pre, bad_step, bad_micro);
            ADD_FAILURE() << "the loader's error did not reach next()";
        } catch (const zt::Error& e) {
            EXPECT_EQ(std::string(e.what()), expected);
        }
    }
    // Moving past the bad micro-batch restarts reading ahead from there.
    const int64_t after = bad_step * K + bad_micro + 1;
    for (int64_t p = after; p < after + 4; p++) {
        if (loader.sequence_at(p * B) == poison || loader.sequence_at(p * B + 1) == poison)
            continue;
        ASSERT_EQ(prefetched(pre, p / K, int(p % K)), direct(loader, p / K, int(p % K)));
    }
}

TEST(PrefetchLoader, DestructionMidStream) {
    using Clock = std::chrono::steady_clock;
    {  // right after construction, the thread perhaps mid-load
        ProbeSource src(20);
        zt::DataLoader loader(src, 4, 2, 1, 0, 1, 1);
        for (int i = 0; i < 20; i++) zt::PrefetchLoader pre(loader, i, 2);
    }
    {  // the ring full, the thread waiting for room
        ProbeSource src(20);
        zt::DataLoader loader(src, 4, 2, 1, 0, 1, 1);
        auto pre = std::make_unique<zt::PrefetchLoader>(loader, 0, 2);
        prefetched(*pre, 0, 0);
        ASSERT_TRUE(eventually([&] { return src.reads() == 3 * 2; }));
        pre.reset();
    }
    {  // the thread inside a slow load: the destructor waits for that load only
        ProbeSource src(20, -1, 30ms);
        zt::DataLoader loader(src, 4, 2, 1, 0, 1, 1);
        auto pre = std::make_unique<zt::PrefetchLoader>(loader, 0, 4);
        prefetched(*pre, 0, 0);
        const auto t0 = Clock::now();
        pre.reset();
        // One micro-batch of 2 sequences is 60 ms; filling the ring would be 240 ms.
        EXPECT_LT(Clock::now() - t0, 2s);
        EXPECT_LT(src.reads(), 2 * 5);
    }
    {  // after an error nobody collected
        ProbeSource src(10, 3);
        zt::DataLoader loader(src, 4, 10, 1, 0, 1, 1);  // every batch reads sequence 3
        zt::PrefetchLoader pre(loader, 0, 2);
        ASSERT_TRUE(eventually([&] { return src.reads() > 0; }));
    }
}

}  // namespace
