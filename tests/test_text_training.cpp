// Real text end to end: `prepare` tinyshakespeare with a 4096-piece
// SentencePiece model, train test-tiny on it, and the validation loss must
// fall below the corpus's unigram entropy: the model has learned more than
// token frequencies. Then the checkpoint generates text with its own tokenizer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/shard.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using zt_test::TempDir;

// Entropy in nats of the token frequencies of a source's sequences' tokens.
double unigram_entropy(const zt::ShardSet& shards) {
    std::vector<double> counts;
    double total = 0;
    for (const zt::TokenShard& s : shards.shards()) {
        for (int64_t i = 0; i < s.size(); i++) {
            uint32_t t = s.token(i);
            if (t >= counts.size()) counts.resize(t + 1, 0.0);
            counts[t] += 1;
            total += 1;
        }
    }
    double h = 0;
    for (double c : counts)
        if (c > 0) h -= c / total * std::log(c / total);
    return h;
}

TEST(TextTraining, ShakespeareBeatsItsUnigramEntropy) {
    const std::string text = zt_test::source_dir() + "/../shared/data/tinyshakespeare.txt";
    if (!fs::exists(text)) GTEST_SKIP() << text << " is not present";
    TempDir dir;
    const std::string z = zt_test::zerotrain_binary(), data = dir / "data", run = dir / "run";
    auto prep = zt_test::run_command(z + " prepare --input " + text + " --out " + data +
                                     " --train-tokenizer 4096 --doc-separator '' --val-fraction 0.02");
    ASSERT_EQ(prep.exit_code, 0) << prep.output;
    const double h = unigram_entropy(*zt::ShardSet::open(data, "train"));
    // ~6.07 nats for this tokenizer; a model that only learned frequencies sits there.
    EXPECT_GT(h, 5.0);
    auto tr = zt_test::run_command(z + " train --data " + data +
                                   " --model test-tiny --steps 150 --seq-len 64 --micro-batch 16"
                                   " --eval-every 0 --eval-tokens 8192 --save-every 150"
                                   " --sample-tokens 16 --out " + run);
    ASSERT_EQ(tr.exit_code, 0) << tr.output;
    double eval_loss = -1;
    std::ifstream f(run + "/metrics.jsonl");
    std::string line;
    while (std::getline(f, line)) {
        auto j = nlohmann::json::parse(line);
        if (j["kind"] == "eval") eval_loss = j["loss"];
    }
    EXPECT_TRUE(eval_loss > 0 && eval_loss < h - 0.5)
        << "validation loss " << eval_loss << " vs unigram entropy " << h;
    EXPECT_NE(tr.output.find("zerotrain: sample"), std::string::npos) << tr.output;

    // The checkpoint carries its tokenizer: generate needs nothing else.
    fs::remove_all(data);
    auto gen = zt_test::run_command(z + " generate --checkpoint " + run +
                                    " --prompt 'ROMEO:' --tokens 12 --seed 3");
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
    EXPECT_EQ(gen.output.rfind("ROMEO:", 0), 0u) << gen.output;
    EXPECT_NE(gen.output.find("tokens/s"), std::string::npos) << gen.output;
}

}  // namespace
