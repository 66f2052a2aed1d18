// zerotrain bench-comm end to end on the local backend: JSON rows parse and
// carry every field, every result verifies (errors == 0), sizes follow the
// x2 sweep with the announced rounding, and bad flags are refused with exit
// status 1 and a message naming the flag. Multi-rank runs live in tests/mpi.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using zt_test::CommandResult;

CommandResult bench(const std::string& args) {
    return zt_test::run_command(zt_test::zerotrain_binary() + " bench-comm " + args);
}

// The JSON rows of an output (notes on stderr are mixed in; they are not rows).
std::vector<nlohmann::json> json_rows(const std::string& output) {
    std::vector<nlohmann::json> rows;
    std::istringstream in(output);
    std::string line;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') rows.push_back(nlohmann::json::parse(line));
    return rows;
}

void expect_refused(const CommandResult& r, std::initializer_list<const char*> fragments) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("zerotrain: error:"), std::string::npos) << r.output;
    for (const char* f : fragments)
        EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
}

TEST(BenchComm, LocalJsonRowsVerify) {
    auto r = bench("--op all --comm local --json --max-bytes 1M --warmup 1 --iters 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto rows = json_rows(r.output);
    // 8 B .. 1 MiB in x2 steps: 18 sizes for each of the 3 ops.
    ASSERT_EQ(rows.size(), 3u * 18u) << r.output;
    std::set<std::string> ops;
    int64_t previous = 0;
    for (const auto& j : rows) {
        for (const char* k :
             {"op", "comm", "world_size", "bytes", "time_s", "algbw_gbps", "busbw_gbps", "errors"})
            ASSERT_TRUE(j.contains(k)) << "row lacks " << k << ": " << j.dump();
        ops.insert(j["op"].get<std::string>());
        EXPECT_EQ(j["comm"], "local");
        EXPECT_EQ(j["world_size"], 1);
        EXPECT_EQ(j["errors"], 0) << j.dump();
        EXPECT_GT(j["time_s"].get<double>(), 0.0);
        int64_t bytes = j["bytes"];
        EXPECT_EQ(bytes, previous == 0 || previous == 1 << 20 ? 8 : 2 * previous) << j.dump();
        previous = bytes;
        // algbw = S / t in gigabits; one rank moves nothing over a link, so busbw is 0.
        double algbw = double(bytes) * 8 / j["time_s"].get<double>() / 1e9;
        EXPECT_NEAR(j["algbw_gbps"].get<double>(), algbw, 1e-6 * algbw);
        EXPECT_EQ(j["busbw_gbps"].get<double>(), 0.0);
    }
    EXPECT_EQ(ops, (std::set<std::string>{"all_reduce", "reduce_scatter", "all_gather"}));
}

TEST(BenchComm, Bf16AndTable) {
    auto r = bench("--op all_reduce --comm local --dtype bf16 --json --max-bytes 64K --iters 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto rows = json_rows(r.output);
    ASSERT_EQ(rows.size(), 14u) << r.output;  // 8 B .. 64 KiB
    for (const auto& j : rows) EXPECT_EQ(j["errors"], 0) << j.dump();

    r = bench("--op reduce_scatter --comm local --max-bytes 4K --iters 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (const char* f : {"machine:", "cores", "backend local", "world size 1", "dtype f32",
                          "busbw(Gbps)", "algbw(GB/s)", "errors", "(OK)"})
        EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
    EXPECT_TRUE(json_rows(r.output).empty()) << "the table must not print JSON rows";
}

// Three ranks that --nproc starts itself, joined by TCP sockets: every
// operation verifies at every size (odd byte counts split unevenly).
TEST(BenchComm, TcpAtThreeRanksVerifies) {
    auto r = bench("--op all --nproc 3 --comm tcp --dtype bf16 --json --max-bytes 256K --iters 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto rows = json_rows(r.output);
    ASSERT_FALSE(rows.empty()) << r.output;
    std::set<std::string> ops;
    for (const auto& j : rows) {
        EXPECT_EQ(j["comm"], "tcp") << j.dump();
        EXPECT_EQ(j["world_size"], 3) << j.dump();
        EXPECT_EQ(j["errors"], 0) << j.dump();
        ops.insert(j["op"].get<std::string>());
    }
    EXPECT_EQ(ops, (std::set<std::string>{"all_reduce", "reduce_scatter", "all_gather"}));
}

TEST(BenchComm, SizesRoundDownAndSaySo) {
    // f32 at world 1: multiples of 4 bytes. 6 -> 4, 12, 24.
    auto r = bench("--op all_gather --comm local --json --min-bytes 6 --max-bytes 24 --iters 1");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("rounded down to a multiple of"), std::string::npos) << r.output;
    auto rows = json_rows(r.output);
    ASSERT_EQ(rows.size(), 3u) << r.output;
    EXPECT_EQ(rows[0]["bytes"], 4);
    EXPECT_EQ(rows[1]["bytes"], 12);
    EXPECT_EQ(rows[2]["bytes"], 24);
    expect_refused(bench("--op all_gather --comm local --min-bytes 1 --max-bytes 3"),
                   {"--max-bytes 3", "multiple of world size x element size = 4 bytes"});
}

TEST(BenchComm, RefusesBadFlags) {
    expect_refused(bench("--op all_to_all --comm local"), {"--op 'all_to_all'", "reduce_scatter"});
    expect_refused(bench("--comm local"), {"--op is required"});
    expect_refused(bench("--op all --comm gloo"), {"--comm 'gloo'", "mpi, ring, tcp or nccl"});
    expect_refused(bench("--op all --comm local --dtype f64"), {"--dtype 'f64'", "bf16"});
    expect_refused(bench("--op all --comm local --min-bytes 2M --max-bytes 1M"),
                   {"--min-bytes 2M", "--max-bytes 1M"});
    expect_refused(bench("--op all --comm local --min-bytes 0"), {"--min-bytes '0'", "positive"});
    expect_refused(bench("--op all --comm local --max-bytes -8"), {"--max-bytes '-8'"});
    expect_refused(bench("--op all --comm local --max-bytes 12X"), {"unknown suffix 'X'", "64K"});
    expect_refused(bench("--op all --comm local --iters 0"), {"--iters '0'"});
    expect_refused(bench("--op all --comm local --warmup many"), {"--warmup 'many'"});
    expect_refused(bench("--op all --comm local --nproc 0"), {"--nproc '0'"});
    expect_refused(bench("--op all --comm local --sim-bandwidth-gbps -1"),
                   {"--sim-bandwidth-gbps '-1'", "gigabits"});
}

}  // namespace
