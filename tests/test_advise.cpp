// zerotrain advise: its ranking against a small measured sweep on simnet,
// and the memory limit that takes configurations out of it.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "test_util.h"

namespace {

using zt_test::run_command;
using zt_test::TempDir;

nlohmann::json advise_json(const std::string& flags) {
    const zt_test::CommandResult r =
        run_command(zt_test::zerotrain_binary() + " advise --json " + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const size_t start = r.output.find('{');
    if (start == std::string::npos) return nullptr;
    return nlohmann::json::parse(r.output.substr(start));
}

// Predicted tokens/s of each plain stage (no offload, no recompute).
std::map<int, double> plain_stages(const nlohmann::json& advice) {
    std::map<int, double> out;
    for (const nlohmann::json& c : advice["ranked"])
        if (c["offload_optimizer"] == "none" && c["recompute"] == "none")
            out[c["zero_stage"]] = c["tokens_per_s"];
    return out;
}

TEST(Advise, RanksStagesAsAMeasuredSimnetSweepDoes) {
    TempDir dir;
    {
        std::ofstream m(dir / "m.json");
        m << R"({"models": ["test-tiny"], "stages": [0, 1, 2, 3], "world_sizes": [2],
                 "bandwidth_gbps": [0.05, 0], "seq_len": 64, "micro_batch": 2, "steps": 5})";
    }
    const zt_test::CommandResult s = run_command(zt_test::zerotrain_binary() + " sweep --matrix " +
                                                 (dir / "m.json") + " --out " + (dir / "sweep"));
    ASSERT_EQ(s.exit_code, 0) << s.output;
    std::map<int, double> measured;
    std::ifstream results(dir / "sweep/results.jsonl");
    for (std::string line; std::getline(results, line);) {
        const nlohmann::json r = nlohmann::json::parse(line);
        if (r["bandwidth_gbps"] == 0.05) measured[r["zero_stage"]] = r["tokens_per_s"];
    }
    ASSERT_EQ(measured.size(), 4u);

    const nlohmann::json advice = advise_json(
        "--model test-tiny --world-size 2 --bandwidth-gbps 0.05 --seq-len 64 "
        "--micro-batch 2 --calibrate " +
        (dir / "sweep"));
    ASSERT_TRUE(advice.is_object());
    const std::map<int, double> predicted = plain_stages(advice);
    ASSERT_EQ(predicted.size(), 4u);
    for (int stage = 0; stage < 4; stage++) {
        std::printf("stage %d: measured %.0f tokens/s, predicted %.0f\n", stage, measured[stage],
                    predicted.at(stage));
        EXPECT_NEAR(predicted.at(stage) / measured[stage], 1.0, 0.3) << "stage " << stage;
    }
    // Every pair the measurement separates clearly, the advisor orders alike.
    int separated = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            if (measured[a] <= 1.25 * measured[b]) continue;
            separated++;
            EXPECT_GT(predicted.at(a), predicted.at(b)) << "stage " << a << " vs " << b;
        }
    // Stage 3 moves half as many bytes again as the others: at 0.05 Gbit/s
    // it is clearly the slowest, so some pair is separated.
    EXPECT_GE(separated, 1);
}

TEST(Advise, AMemoryLimitLeavesOutWhatDoesNotFit) {
    const nlohmann::json advice = advise_json(
        "--model tiny --world-size 4 --bandwidth-gbps 10 --memory-gb 0.5 "
        "--seq-len 64 --micro-batch 2 --compute-gflops 50");
    ASSERT_TRUE(advice.is_object());
    const nlohmann::json& ranked = advice["ranked"];
    ASSERT_EQ(ranked.size(), 16u);
    EXPECT_TRUE(ranked[0]["fits"].get<bool>());
    bool seen_unfit = false;
    for (const nlohmann::json& c : ranked) {
        const bool fits = c["fits"];
        EXPECT_EQ(fits, c["peak_bytes"].get<double>() <= 0.5 * double(1 << 30)) << c.dump();
        if (!fits) seen_unfit = true;
        EXPECT_FALSE(fits && seen_unfit) << "a fitting configuration after an unfitting one";
        if (c["zero_stage"] == 0 && c["offload_optimizer"] == "none") EXPECT_FALSE(fits);
    }
    EXPECT_TRUE(seen_unfit);
}

TEST(Advise, BadValuesAreRefused) {
    const std::string advise = zt_test::zerotrain_binary() + " advise --model test-tiny ";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"--world-size 0 --bandwidth-gbps 1", "--world-size 0"},
        {"--world-size 2 --bandwidth-gbps -1", "--bandwidth-gbps -1"},
        {"--world-size 2 --bandwidth-gbps 1 --seq-len 100000", "--seq-len 100000"},
        {"--world-size 2 --bandwidth-gbps 1 --calibrate /nonexistent", "/nonexistent"},
    };
    for (const auto& [flags, fragment] : cases) {
        const zt_test::CommandResult r = run_command(advise + flags);
        EXPECT_NE(r.exit_code, 0) << flags;
        EXPECT_NE(r.output.find(fragment), std::string::npos) << flags << ": " << r.output;
    }
}

}  // namespace
