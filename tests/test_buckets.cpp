// Communication buckets: the plan is a pure function of the layout and the
// bucket keys, the losses do not depend on the bucket size, and a step issues
// exactly the collectives the plan predicts.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "model/config.h"
#include "model/layout.h"
#include "stage3_schedule.h"
#include "test_util.h"
#include "zero/bucket.h"
#include "zero/grad_reducer.h"
#include "zero/layout.h"
#include "zero/param_store.h"
#include "zero/policy.h"

namespace {

using zt_test::read_run;
using zt_test::RunLog;
using zt_test::TempDir;

// Every element of every unit lands in exactly one bucket, in order, at its
// offset; buckets hold at most the capacity, and all but the last are full.
void check_plan(const zt::BucketPlan& plan, const std::vector<int64_t>& span,
                const std::vector<int>& order, int64_t cap) {
    std::vector<std::vector<char>> seen(span.size());
    for (size_t u = 0; u < span.size(); u++) seen[u].assign(size_t(span[u]), 0);
    int64_t total = 0;
    for (size_t b = 0; b < plan.buckets.size(); b++) {
        const auto& bucket = plan.buckets[b];
        EXPECT_LE(bucket.size, cap);
        if (b + 1 < plan.buckets.size()) {
            EXPECT_EQ(bucket.size, cap) << "bucket " << b;
        }
        int64_t off = 0;
        for (const auto& s : bucket.segments) {
            EXPECT_EQ(s.offset, off);
            off += s.size();
            for (int64_t e = s.begin; e < s.end; e++) seen[size_t(s.unit)][size_t(e)]++;
        }
        EXPECT_EQ(off, bucket.size);
        total += bucket.size;
        // A bucket completes at its last segment's unit, and only there.
        const int last = bucket.segments.back().unit;
        const auto& at = plan.completes_at[size_t(last)];
        EXPECT_NE(std::find(at.begin(), at.end(), int(b)), at.end());
    }
    int64_t want = 0;
    for (size_t u = 0; u < span.size(); u++) {
        want += span[u];
        for (char c : seen[u]) ASSERT_EQ(c, 1) << "unit " << u;
    }
    EXPECT_EQ(total, want);
    // Units appear in the plan in `order`.
    int prev = -1;
    for (const auto& bucket : plan.buckets)
        for (const auto& s : bucket.segments) {
            auto pos = std::find(order.begin(), order.end(), s.unit) - order.begin();
            EXPECT_GE(pos, prev);
            prev = int(pos);
        }
}

TEST(Buckets, PlanTilesEveryUnitOnceWithinTheCapacity) {
    const std::vector<int64_t> span = {10, 3, 25, 1, 7};
    const std::vector<int> order = {4, 3, 2, 1, 0};
    for (int64_t cap : {1, 2, 5, 7, 10, 11, 46, 1000}) {
        zt::BucketPlan a = zt::plan_buckets(span, order, cap);
        check_plan(a, span, order, cap);
        zt::BucketPlan b = zt::plan_buckets(span, order, cap);
        ASSERT_EQ(a.buckets.size(), b.buckets.size());
        for (size_t i = 0; i < a.buckets.size(); i++) {
            ASSERT_EQ(a.buckets[i].segments.size(), b.buckets[i].segments.size());
            for (size_t k = 0; k < a.buckets[i].segments.size(); k++) {
                EXPECT_EQ(a.buckets[i].segments[k].unit, b.buckets[i].segments[k].unit);
                EXPECT_EQ(a.buckets[i].segments[k].begin, b.buckets[i].segments[k].begin);
            }
        }
    }
    // Concrete: capacity 11 over 7,1,25,3,10 (back to front within a unit).
    zt::BucketPlan p = zt::plan_buckets(span, order, 11);
    ASSERT_EQ(p.buckets.size(), 5u);              // 46 elements: 11 11 11 11 2
    EXPECT_EQ(p.buckets[0].segments.size(), 3u);  // 7 of unit 4, 1 of unit 3, 3 of unit 2
    EXPECT_EQ(p.buckets[0].segments[2].unit, 2);
    EXPECT_EQ(p.buckets[0].segments[2].begin, 22);
    EXPECT_EQ(p.buckets[0].segments[2].end, 25);
    EXPECT_THROW(zt::plan_buckets(span, order, 0), zt::Error);
}

// The stage-0 plan runs its all-reduces in place: each bucket is one
// contiguous range of the flat full layout (GradReducer checks it too).
TEST(Buckets, AllReduceBucketsAreContiguous) {
    zt::ZeroLayout zl = zt::make_zero_layout(zt::model_layout(zt::model_preset("test-tiny")), 3);
    for (int64_t cap : {int64_t(1000), int64_t(77777), int64_t(1) << 22}) {
        zt::BucketPlan p = zt::reduce_plan(zl, zt::stage_policy(0), cap);
        for (const auto& b : p.buckets)
            for (size_t k = 1; k < b.segments.size(); k++) {
                const auto &prev = b.segments[k - 1], &s = b.segments[k];
                EXPECT_EQ(zl.units[size_t(s.unit)].full_offset + s.end,
                          zl.units[size_t(prev.unit)].full_offset + prev.begin);
            }
    }
}

RunLog train(const std::string& out, int stage, int grad_accum, int64_t bucket,
             const std::string& extra_cfg = "") {
    std::ofstream(out + ".json") << "{\"reduce_bucket_size\": " << bucket
                                 << ", \"allgather_bucket_size\": " << bucket
                                 << ", \"param_persistence_threshold\": 0" << extra_cfg << "}";
    std::string cmd = zt_test::zerotrain_binary() +
                      " train --data synthetic --model test-tiny --seq-len 32 --micro-batch 2"
                      " --grad-accum " +
                      std::to_string(grad_accum) +
                      " --steps 4 --lr 3e-3 --eval-every 0 --sample-tokens 0 --threads 1"
                      " --nproc 2 --zero-stage " +
                      std::to_string(stage) + " --config " + out + ".json --out " + out;
    auto res = zt_test::run_command(cmd);
    EXPECT_EQ(res.exit_code, 0) << cmd << "\n" << res.output;
    return read_run(out);
}

// fp32 at 2 ranks: the average of two values is the same whichever
// collective carries it, so losses agree exactly for every bucket size, and
// comm_calls equals the plans' counts (reductions, gathers after the update,
// stage 3's gathers on use with persistence 0, the norm's all-reduce and the
// loss and stop agreement's two).
TEST(Buckets, LossesIgnoreTheBucketSizeAndCallsFollowThePlan) {
    if (!ZT_HAVE_MPI) GTEST_SKIP() << "this build has no MPI";
    const int world = 2;
    zt::ModelConfig cfg = zt::model_preset("test-tiny");
    zt::ZeroLayout zl = zt::make_zero_layout(zt::model_layout(cfg), world);
    for (int stage = 0; stage <= 3; stage++) {
        const int K = stage >= 2 ? 2 : 1;
        TempDir dir;
        std::map<int64_t, RunLog> runs;
        for (int64_t bucket : {int64_t(4000), int64_t(150001), int64_t(1) << 22}) {
            RunLog r = train(dir / ("b" + std::to_string(bucket)), stage, K, bucket);
            ASSERT_EQ(r.steps.size(), 4u) << "stage " << stage << " bucket " << bucket;
            const zt::StagePolicy& pol = zt::stage_policy(stage);
            const int64_t reductions = int64_t(zt::reduce_plan(zl, pol, bucket).buckets.size()) *
                                       (pol.reduce_every_micro ? K : 1);
            int64_t gathers = 0;
            if (stage == 1 || stage == 2)
                gathers = int64_t(zt::gather_plan(zl, bucket).buckets.size());
            if (stage == 3)
                gathers = K * zt_test::stage3_gathers(cfg, zl, zt::gather_plan(zl, bucket)).calls;
            const auto& calls = r.steps.at(3)["comm_calls"];
            // The norm's all-reduce, then the loss and stop agreement's two.
            EXPECT_EQ(calls["all_reduce"].get<int64_t>(), 3 + (stage == 0 ? reductions : 0))
                << "stage " << stage << " bucket " << bucket;
            EXPECT_EQ(calls["reduce_scatter"].get<int64_t>(), stage == 0 ? 0 : reductions)
                << "stage " << stage << " bucket " << bucket;
            EXPECT_EQ(calls["all_gather"].get<int64_t>(), gathers)
                << "stage " << stage << " bucket " << bucket;
            runs[bucket] = r;
        }
        EXPECT_GT(zt::reduce_plan(zl, zt::stage_policy(stage), 4000).buckets.size(), 10u);
        // The largest buckets group several units into one gather.
        EXPECT_LT(zt::gather_plan(zl, int64_t(1) << 22).buckets.size(), zl.units.size());
        const RunLog& ref = runs.begin()->second;
        for (const auto& [bucket, r] : runs)
            for (int s = 1; s <= 4; s++)
                EXPECT_EQ(r.steps.at(s)["loss"].get<double>(),
                          ref.steps.at(s)["loss"].get<double>())
                    << "stage " << stage << " bucket " << bucket << " step " << s;
    }
}

}  // namespace
