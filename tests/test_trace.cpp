// `zerotrain train --trace`: RUN_DIR/trace.json is a Chrome trace of every
// rank (pid = rank, tid 0 compute, tid 1 comm), and the order of its events
// shows the engine's overlap. Order, not duration: these checks hold however
// busy the machine is (STYLE.md), unlike an exposed-time bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/config.h"
#include "model/layout.h"
#include "prof/trace.h"
#include "test_util.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/policy.h"

namespace {

using zt_test::TempDir;

struct Span {
    std::string name;
    double ts = 0, end = 0;  // microseconds
    nlohmann::json args;
};

// One rank's events of the trace, by thread.
struct RankTrace {
    std::vector<Span> compute, comm;
    std::map<int, std::string> thread_names;
    std::string process_name;
};

std::map<int, RankTrace> read_trace(const std::string& path) {
    std::ifstream f(path);
    EXPECT_TRUE(f.good()) << path << " is missing";
    nlohmann::json j = nlohmann::json::parse(f);
    std::map<int, RankTrace> ranks;
    for (const auto& e : j.at("traceEvents")) {
        RankTrace& r = ranks[e.at("pid").get<int>()];
        const std::string ph = e.at("ph");
        if (ph == "M") {
            if (e["name"] == "process_name") r.process_name = e["args"]["name"];
            if (e["name"] == "thread_name") r.thread_names[e["tid"]] = e["args"]["name"];
            continue;
        }
        EXPECT_EQ(ph, "X") << e.dump();
        Span s{e.at("name"), e.at("ts"), e.at("ts").get<double>() + e.at("dur").get<double>(),
               e.value("args", nlohmann::json::object())};
        EXPECT_TRUE(e.at("dur").get<double>() >= 0) << e.dump();
        (e.at("tid") == 0 ? r.compute : r.comm).push_back(s);
    }
    for (auto& [pid, r] : ranks) {
        auto by_start = [](const Span& a, const Span& b) { return a.ts < b.ts; };
        std::stable_sort(r.compute.begin(), r.compute.end(), by_start);
        std::stable_sort(r.comm.begin(), r.comm.end(), by_start);
    }
    return ranks;
}

std::string train_cmd(const std::string& out, int nproc, int stage, const std::string& extra) {
    return zt_test::zerotrain_binary() +
           " train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2 --steps 4"
           " --eval-every 0 --eval-tokens 1024 --threads 1 --zero-stage " +
           std::to_string(stage) + (nproc > 1 ? " --nproc " + std::to_string(nproc) : "") +
           " --out " + out + " " + extra;
}

bool starts_with(const std::string& s, const char* prefix) {
    return s.rfind(prefix, 0) == 0;
}

TEST(Trace, ParsesTheStepWindow) {
    zt::TraceSteps s = zt::parse_trace_steps("2:5");
    EXPECT_EQ(s.first, 2);
    EXPECT_EQ(s.last, 5);
    s = zt::parse_trace_steps("7");
    EXPECT_EQ(s.first, 7);
    EXPECT_EQ(s.last, 7);
    for (const char* bad : {"0:3", "3:2", "a:b", "2:", ":4", "2:3x", "", "-1"})
        EXPECT_THROW(zt::parse_trace_steps(bad), std::exception) << bad;
}

// One process: the file is Chrome's format, with the spans DESIGN.md names,
// only for the steps asked for, and nothing is written without --trace.
TEST(Trace, OneProcessWritesTheAskedSteps) {
    TempDir dir;
    auto res = zt_test::run_command(train_cmd(dir / "run", 1, 0, "--trace-steps 2:3"));
    ASSERT_EQ(res.exit_code, 0) << res.output;
    auto ranks = read_trace(dir / "run/trace.json");
    ASSERT_EQ(ranks.size(), 1u);
    const RankTrace& r = ranks.at(0);
    EXPECT_EQ(r.process_name, "rank 0");
    EXPECT_EQ(r.thread_names.at(0), "compute");
    EXPECT_EQ(r.thread_names.at(1), "comm");
    std::map<std::string, int> count;
    for (const auto& s : r.compute) count[s.name]++;
    EXPECT_EQ(count["step"], 2) << "steps 2 and 3 of 4";
    EXPECT_EQ(count["data"], 2);
    EXPECT_EQ(count["optimizer step"], 2);
    EXPECT_EQ(count["checkpoint"], 0) << "the final checkpoint follows step 4, outside 2:3";
    for (const char* unit : {"embed", "block.0", "block.1"})
        EXPECT_EQ(count[std::string("forward ") + unit], 2) << unit;
    for (const char* unit : {"head", "block.1", "block.0", "embed"})
        EXPECT_EQ(count[std::string("backward ") + unit], 2) << unit;
    EXPECT_FALSE(std::filesystem::exists(dir / "run/trace-rank-0.json"));

    res = zt_test::run_command(train_cmd(dir / "plain", 1, 0, ""));
    ASSERT_EQ(res.exit_code, 0) << res.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "plain/trace.json"));

    res = zt_test::run_command(train_cmd(dir / "bad", 1, 0, "--trace-steps 3:1"));
    EXPECT_NE(res.exit_code, 0);
    EXPECT_NE(res.output.find("--trace-steps 3:1"), std::string::npos) << res.output;
}

// Overlap, read from the trace at 2 ranks. Reductions are bucketed small
// (4096 elements) so that every unit completes buckets, gathers one unit a
// bucket, and nothing persists in stage 3, so that every unit is gathered on
// use. Within each traced step:
//   - the gradient reductions (those issued before the optimizer step) are
//     the reduction plan's buckets, in plan order; the bucket completed at
//     unit u is issued before the backward span of unit u-1 (the next in
//     backward order) begins, so it overlaps the rest of backward;
//   - stage 3: each unit's all-gather, after the step's first, is issued
//     before the span that uses the unit begins (prefetch): the k-th span to
//     acquire a unit starts after at least k+1 gathers.
// The exposed-communication share of the step is printed, not asserted.
TEST(ZeroRanks, TraceShowsOverlap) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    const int world = 2;
    const int64_t reduce_bucket = 4096;
    const zt::ModelConfig cfg = zt::model_preset("test-tiny");
    const zt::ModelLayout ml = zt::model_layout(cfg);
    const zt::ZeroLayout zl = zt::make_zero_layout(ml, world);
    for (int stage = 0; stage <= 3; stage++) {
        SCOPED_TRACE("stage " + std::to_string(stage));
        TempDir dir;
        std::ofstream(dir / "c.json") << R"({"reduce_bucket_size": 4096, "allgather_bucket_size": 1,
                                             "param_persistence_threshold": 0})";
        auto res = zt_test::run_command(train_cmd(
            dir / "run", world, stage, "--trace --trace-steps 2:4 --config " + (dir / "c.json")));
        ASSERT_EQ(res.exit_code, 0) << res.output;
        auto ranks = read_trace(dir / "run/trace.json");
        ASSERT_EQ(ranks.size(), size_t(world));

        const zt::BucketPlan plan = zt::reduce_plan(zl, zt::stage_policy(stage), reduce_bucket);
        std::vector<int> completing(ml.n_units(), 0);
        for (const auto& b : plan.buckets) completing[size_t(b.segments.back().unit)]++;
        for (int u = 1; u < ml.n_units(); u++)
            ASSERT_GT(completing[size_t(u)], 0) << "unit " << u << " completes no bucket";

        for (const auto& [rank, r] : ranks) {
            EXPECT_EQ(r.process_name, "rank " + std::to_string(rank));
            std::vector<Span> steps;
            for (const auto& s : r.compute)
                if (s.name == "step") steps.push_back(s);
            ASSERT_EQ(steps.size(), 3u) << "rank " << rank << ": steps 2 to 4";
            for (size_t k = 0; k < steps.size(); k++) {
                const Span& step = steps[k];
                auto in_step = [&](const Span& s) { return s.ts >= step.ts && s.ts <= step.end; };
                const Span* optimizer = nullptr;
                std::map<std::string, const Span*> backward;
                std::vector<const Span*> uses;  // spans that acquire a unit, in order
                for (const auto& s : r.compute) {
                    if (!in_step(s)) continue;
                    if (s.name == "optimizer step") optimizer = &s;
                    if (starts_with(s.name, "backward ")) backward[s.name.substr(9)] = &s;
                    // The embedding's backward reads no parameters.
                    if (starts_with(s.name, "forward ") ||
                        (starts_with(s.name, "backward ") && s.name != "backward embed"))
                        uses.push_back(&s);
                }
                ASSERT_NE(optimizer, nullptr);
                std::vector<const Span*> reductions, gathers;
                for (const auto& c : r.comm) {
                    if (c.ts < step.ts || c.ts >= optimizer->ts) continue;
                    const std::string op = c.args.at("op");
                    if (op == "reduce_scatter" || op == "all_reduce") reductions.push_back(&c);
                    if (op == "all_gather") gathers.push_back(&c);
                    EXPECT_TRUE(c.args.contains("bytes") && c.args.contains("seq")) << c.name;
                }
                ASSERT_EQ(reductions.size(), plan.buckets.size())
                    << "rank " << rank << " step " << k + 2;
                for (size_t i = 0; i < reductions.size(); i++) {
                    const int u = plan.buckets[i].segments.back().unit;
                    const std::string op = reductions[i]->args.at("op");
                    EXPECT_EQ(op, stage == 0 ? "all_reduce" : "reduce_scatter");
                    if (u == 0) continue;  // the last unit of backward: nothing left to overlap
                    const std::string next = ml.units[size_t(u - 1)].name;
                    ASSERT_TRUE(backward.count(next)) << "no backward span of " << next;
                    EXPECT_LT(reductions[i]->ts, backward.at(next)->ts)
                        << "rank " << rank << " step " << k + 2 << ": bucket " << i
                        << " completed at " << ml.units[size_t(u)].name
                        << " is issued after the backward of " << next << " began";
                }
                if (stage == 3) {
                    EXPECT_EQ(gathers.size(), uses.size()) << "one gather per use of a unit";
                    for (size_t j = 1; j < uses.size(); j++) {
                        size_t before = 0;
                        for (const Span* g : gathers) before += g->ts < uses[j]->ts;
                        EXPECT_GE(before, j + 1)
                            << "rank " << rank << " step " << k + 2 << ": " << uses[j]->name
                            << " began before its unit's all-gather was issued";
                    }
                } else {
                    EXPECT_TRUE(gathers.empty()) << "stages 0-2 gather only after the update";
                }
            }
        }

        // For the record, not asserted: the share of the step the training thread waited.
        zt_test::RunLog log = zt_test::read_run(dir / "run");
        double step_s = 0, comm = 0, exposed = 0;
        for (int64_t s = 2; s <= 4; s++) {
            const auto& j = log.steps.at(s);
            step_s += j["step_s"].get<double>();
            comm += j["time_s"]["comm"].get<double>();
            exposed += j["time_s"]["comm_exposed"].get<double>();
        }
        std::printf(
            "stage %d: %zu reduction buckets a step; comm %.4f s, exposed %.4f s = %.1f%% "
            "of %.4f s\n",
            stage, plan.buckets.size(), comm, exposed, 100 * exposed / step_s, step_s);
    }
}

}  // namespace

namespace {

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Step lines carry overlap = 1 - comm_exposed / comm, and the summary the
// medians of the steps after the first, recomputed here from the step lines.
TEST(Metrics, StepOverlapAndSummaryMedians) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    for (int world : {1, 2}) {
        SCOPED_TRACE("world " + std::to_string(world));
        TempDir dir;
        auto res = zt_test::run_command(train_cmd(dir / "run", world, 2, ""));
        ASSERT_EQ(res.exit_code, 0) << res.output;
        const zt_test::RunLog log = zt_test::read_run(dir / "run");
        ASSERT_EQ(log.steps.size(), 4u);
        std::vector<double> step_s, comm, exposed, overlap;
        std::map<std::string, std::vector<double>> calls;
        for (const auto& [step, line] : log.steps) {
            const double c = line["time_s"]["comm"], e = line["time_s"]["comm_exposed"];
            EXPECT_EQ(line.contains("overlap"), c > 0) << line.dump();
            if (c > 0) EXPECT_DOUBLE_EQ(line["overlap"].get<double>(), 1.0 - e / c);
            if (step == 1) continue;
            step_s.push_back(line["step_s"]);
            comm.push_back(c);
            exposed.push_back(e);
            if (c > 0) overlap.push_back(1.0 - e / c);
            for (const auto& [op, n] : line["comm_calls"].items()) calls[op].push_back(n);
        }
        ASSERT_TRUE(log.summary.contains("medians")) << log.summary.dump();
        const auto& m = log.summary["medians"];
        EXPECT_EQ(m["steps"], 3);
        EXPECT_DOUBLE_EQ(m["step_s"].get<double>(), median_of(step_s));
        EXPECT_DOUBLE_EQ(m["comm_s"].get<double>(), median_of(comm));
        EXPECT_DOUBLE_EQ(m["comm_exposed_s"].get<double>(), median_of(exposed));
        EXPECT_EQ(m.contains("overlap"), world > 1);
        if (world > 1) EXPECT_DOUBLE_EQ(m["overlap"].get<double>(), median_of(overlap));
        for (const auto& [op, v] : calls)
            EXPECT_EQ(m["comm_calls"][op].get<double>(), median_of(v));
        if (world > 1) EXPECT_GT(m["comm_calls"]["reduce_scatter"].get<double>(), 0);
    }
}

}  // namespace
