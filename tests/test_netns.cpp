// --netns: ranks in private network namespaces over shaped TCP links. The
// bandwidth test needs root, iproute2 and namespaces (skipped, with the
// reason, where any is missing); the refusals run everywhere.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "test_util.h"

namespace {

using zt_test::run_command;

// Why this machine cannot make a shaped network, or "" when it can.
std::string netns_unavailable() {
    if (::geteuid() != 0) return "not root";
    if (run_command("command -v ip && command -v tc").exit_code != 0)
        return "iproute2 (ip, tc) is not installed";
    const std::string probe = "ztprobe" + std::to_string(::getpid());
    const zt_test::CommandResult made = run_command("ip netns add " + probe);
    if (made.exit_code != 0) return "cannot make a network namespace: " + made.output;
    run_command("ip netns delete " + probe);
    return "";
}

std::vector<std::string> our_namespaces() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("zt", 0) == 0 && name.find("probe") == std::string::npos)
            out.push_back(name);
    }
    return out;
}

// A large all-reduce at 4 ranks over links shaped to 1 Gbit/s: the ring's
// bus bandwidth is each rank's send rate, so it reaches the shaping rate.
TEST(Netns, AllReduceOverShapedLinksReachesTheShapedBandwidth) {
    const std::string why = netns_unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    const std::vector<std::string> before = our_namespaces();
    // The shaper caps the rate whatever the load (unshaped veth links carry
    // several Gbit/s here); a busy machine can only slow a run down, so the
    // best of up to three runs is the one held to the shaping rate.
    double best = -1;
    for (int attempt = 0; attempt < 3 && best < 0.8; attempt++) {
        const zt_test::CommandResult r = run_command(
            zt_test::zerotrain_binary() +
            " bench-comm --op all_reduce --nproc 4 --comm ring --netns --netns-bandwidth-gbps 1 "
            "--min-bytes 64M --max-bytes 64M --warmup 1 --iters 3 --json");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_NE(r.output.find("netns: 4 ranks in private network namespaces"), std::string::npos)
            << r.output;
        double busbw = -1;
        std::istringstream in(r.output);
        for (std::string line; std::getline(in, line);) {
            if (line.empty() || line[0] != '{') continue;
            const nlohmann::json j = nlohmann::json::parse(line);
            EXPECT_EQ(j["errors"], 0) << line;
            busbw = j["busbw_gbps"];
        }
        std::printf("bus bandwidth over links shaped to 1 Gbit/s: %.3f Gbit/s\n", busbw);
        EXPECT_LE(busbw, 1.2) << r.output;
        best = std::max(best, busbw);
    }
    EXPECT_NEAR(best, 1.0, 0.2);
    EXPECT_EQ(our_namespaces(), before) << "the run left namespaces behind";
}

// The same run over shaped links and over shared memory: the ring reduces in
// the same order, so the losses are the same.
TEST(Netns, TrainingOverShapedLinksMatchesSharedMemory) {
    const std::string why = netns_unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    zt_test::TempDir dir;
    const std::string base = zt_test::zerotrain_binary() +
                             " train --model test-tiny --data synthetic --nproc 2 --comm ring "
                             "--zero-stage 3 --steps 3 --seq-len 32 --micro-batch 2 --no-save "
                             "--sample-tokens 0 --eval-tokens 128 --out ";
    const zt_test::CommandResult shaped =
        run_command(base + (dir / "netns") + " --netns --netns-bandwidth-gbps 2");
    ASSERT_EQ(shaped.exit_code, 0) << shaped.output;
    const zt_test::CommandResult plain = run_command(base + (dir / "plain"));
    ASSERT_EQ(plain.exit_code, 0) << plain.output;
    const zt_test::RunLog a = zt_test::read_run(dir / "netns"),
                          b = zt_test::read_run(dir / "plain");
    ASSERT_EQ(a.steps.size(), 3u);
    for (const auto& [step, line] : b.steps)
        EXPECT_EQ(a.steps.at(step)["loss"], line["loss"]) << "step " << step;
}

TEST(Netns, FlagsThatCannotWorkAreRefusedBeforeLaunch) {
    const std::string train = zt_test::zerotrain_binary() +
                              " train --model test-tiny --data synthetic --steps 1 --no-save ";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {train + "--netns", "--netns: needs --nproc N with N >= 2"},
        {train + "--nproc 2 --netns-bandwidth-gbps 1", "add --netns"},
        {train + "--nproc 2 --netns --sim-bandwidth-gbps 1", "not both"},
        {train + "--nproc 2 --netns --comm local", "--netns with --comm local"},
        {zt_test::zerotrain_binary() + " bench-comm --op all_reduce --netns-bandwidth-gbps 1",
         "add --netns"},
    };
    for (const auto& [cmd, fragment] : cases) {
        const zt_test::CommandResult r = run_command(cmd);
        EXPECT_NE(r.exit_code, 0) << cmd;
        EXPECT_NE(r.output.find(fragment), std::string::npos) << cmd << ": " << r.output;
    }
}

}  // namespace
