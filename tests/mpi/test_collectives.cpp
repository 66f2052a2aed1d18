// Every collective on every CPU backend (local at world 1, mpi, ring) in f32
// and bf16, at sizes from 1 element to 2^20 + 3 (primes and non-powers of two
// included), with verifiable inputs; wrong elements are counted on each rank
// (each must be 0) and summed over ranks (the sum must be 0). Also async
// ordering, accounting and argument refusal. CommDTypeTest does the same for
// the control dtypes (i32, i64, u8, f64): sum and max, avg on f64 and its
// refusal on integers, gathers, broadcasts and send/recv.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "comm/launch.h"
#include "comm/work.h"
#include "comm_test_util.h"
#include "core/check.h"
#include "prof/timer.h"

namespace zt {
// GoogleTest prints parameters through PrintTo: "f32" rather than raw bytes.
inline void PrintTo(DType t, std::ostream* os) {
    *os << dtype_name(t);
}
}  // namespace zt

namespace zt_mpi_test {
namespace {

using zt::DType;
using zt::ReduceOp;

const std::vector<int64_t> kCounts = {1, 2, 7, 31, 1000, 65537, (1 << 20) + 3};
const std::vector<int64_t> kBlockCounts = {1, 2, 7, 31, 1000, 65537};

using Param = std::tuple<std::string, DType>;

class CommTest : public testing::TestWithParam<Param> {
  protected:
    void SetUp() override {
        backend_ = std::get<0>(GetParam());
        dtype_ = std::get<1>(GetParam());
        comm_ = make_test_comm(backend_);
        n_ = comm_->world_size();
        r_ = comm_->rank();
    }
    void TearDown() override { comm_.reset(); }

    // Each rank's own count must be 0, and so must the sum over ranks (which
    // makes every rank agree on the verdict).
    void expect_no_errors(int64_t local, const std::string& what) {
        EXPECT_EQ(local, 0) << what << ": wrong elements on rank " << r_;
        EXPECT_EQ(global_errors(local), 0) << what << ": wrong elements summed over ranks";
    }
    std::string what(const char* op, int64_t count) const {
        return zt::strprintf("%s %s %s count %lld world %d", backend_.c_str(), op,
                             zt::dtype_name(dtype_), (long long)count, n_);
    }

    std::string backend_;
    DType dtype_ = DType::f32;
    std::unique_ptr<zt::Communicator> comm_;
    int n_ = 1, r_ = 0;
};

TEST_P(CommTest, AllReduceSum) {
    for (int64_t count : kCounts) {
        TypedBuf buf(dtype_, count);
        for (int64_t i = 0; i < count; i++) buf.set(i, sum_input(r_, i));
        comm_->all_reduce(buf.data(), count, dtype_, ReduceOp::sum);
        int64_t errors = 0;
        for (int64_t i = 0; i < count; i++) {
            float expected = 0;
            for (int p = 0; p < n_; p++) expected += sum_input(p, i);
            errors += !(buf.get(i) == expected);
        }
        expect_no_errors(errors, what("all_reduce sum", count));
    }
}

TEST_P(CommTest, AllReduceAvg) {
    for (int64_t count : kCounts) {
        TypedBuf buf(dtype_, count);
        for (int64_t i = 0; i < count; i++) buf.set(i, avg_input(r_, n_, i));
        comm_->all_reduce(buf.data(), count, dtype_, ReduceOp::avg);
        int64_t errors = 0;
        for (int64_t i = 0; i < count; i++) errors += !(buf.get(i) == avg_mean(i));
        expect_no_errors(errors, what("all_reduce avg", count));
    }
}

TEST_P(CommTest, ReduceScatterSumAndAvg) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
        for (int64_t c : kBlockCounts) {
            TypedBuf send(dtype_, c * n_);
            TypedBuf recv(dtype_, c, -100);
            for (int64_t k = 0; k < c * n_; k++)
                send.set(k, op == ReduceOp::sum ? sum_input(r_, k) : avg_input(r_, n_, k));
            comm_->reduce_scatter(send.data(), recv.data(), c, dtype_, op);
            int64_t errors = 0;
            for (int64_t i = 0; i < c; i++) {
                int64_t k = r_ * c + i;
                float expected = 0;
                for (int p = 0; p < n_; p++) expected += sum_input(p, k);
                if (op == ReduceOp::avg) expected = avg_mean(k);
                errors += !(recv.get(i) == expected);
            }
            expect_no_errors(
                errors, what(op == ReduceOp::sum ? "reduce_scatter sum" : "reduce_scatter avg", c));
        }
    }
}

TEST_P(CommTest, ReduceScatterInPlace) {
    for (int64_t c : {int64_t(1), int64_t(31), int64_t(65537)}) {
        TypedBuf buf(dtype_, c * n_);
        for (int64_t k = 0; k < c * n_; k++) buf.set(k, sum_input(r_, k));
        void* own = buf.bytes() + r_ * c * int64_t(zt::dtype_size(dtype_));
        comm_->reduce_scatter(buf.data(), own, c, dtype_, ReduceOp::sum);
        int64_t errors = 0;
        for (int64_t i = 0; i < c; i++) {
            float expected = 0;
            for (int p = 0; p < n_; p++) expected += sum_input(p, r_ * c + i);
            errors += !(buf.get(r_ * c + i) == expected);
        }
        expect_no_errors(errors, what("reduce_scatter in place", c));
    }
}

TEST_P(CommTest, AllGather) {
    for (bool in_place : {false, true}) {
        for (int64_t c : kBlockCounts) {
            TypedBuf send(dtype_, c);
            TypedBuf recv(dtype_, c * n_, -100);
            for (int64_t i = 0; i < c; i++) {
                send.set(i, gather_input(r_, i));
                if (in_place) recv.set(r_ * c + i, gather_input(r_, i));
            }
            const void* src =
                in_place ? recv.bytes() + r_ * c * int64_t(zt::dtype_size(dtype_)) : send.data();
            comm_->all_gather(src, recv.data(), c, dtype_);
            int64_t errors = 0;
            for (int b = 0; b < n_; b++)
                for (int64_t i = 0; i < c; i++)
                    errors += !(recv.get(b * c + i) == gather_input(b, i));
            expect_no_errors(errors, what(in_place ? "all_gather in place" : "all_gather", c));
        }
    }
}

TEST_P(CommTest, BroadcastFromEveryRoot) {
    for (int64_t count :
         {int64_t(1), int64_t(7), int64_t(1000), int64_t(65537), int64_t((1 << 20) + 3)}) {
        for (int root = 0; root < n_; root++) {
            TypedBuf buf(dtype_, count, -100);
            if (r_ == root)
                for (int64_t i = 0; i < count; i++) buf.set(i, gather_input(root, i));
            comm_->broadcast(buf.data(), count, dtype_, root);
            int64_t errors = 0;
            for (int64_t i = 0; i < count; i++) errors += !(buf.get(i) == gather_input(root, i));
            expect_no_errors(errors, what("broadcast", count) + zt::strprintf(" root %d", root));
        }
    }
}

// Each rank sends to its right neighbour and receives from its left. A send
// holds the communication thread until it is matched (as MPI_Send may), so
// even ranks send first and odd ranks receive first.
TEST_P(CommTest, SendRecvRing) {
    if (n_ == 1) {
        TypedBuf buf(dtype_, 4);
        EXPECT_THROW(comm_->send(buf.data(), 4, dtype_, 0), zt::Error);
        EXPECT_THROW(comm_->recv(buf.data(), 4, dtype_, 0), zt::Error);
        return;
    }
    int right = (r_ + 1) % n_, left = (r_ + n_ - 1) % n_;
    for (int64_t count : {int64_t(0), int64_t(1), int64_t(1000), int64_t(300007)}) {
        TypedBuf out(dtype_, count), in(dtype_, count, -100);
        for (int64_t i = 0; i < count; i++) out.set(i, gather_input(r_, i));
        zt::Work a, b;
        if (r_ % 2 == 0) {
            a = comm_->send_async(out.data(), count, dtype_, right);
            b = comm_->recv_async(in.data(), count, dtype_, left);
        } else {
            a = comm_->recv_async(in.data(), count, dtype_, left);
            b = comm_->send_async(out.data(), count, dtype_, right);
        }
        a.wait();
        b.wait();
        int64_t errors = 0;
        for (int64_t i = 0; i < count; i++) errors += !(in.get(i) == gather_input(left, i));
        expect_no_errors(errors, what("send/recv ring", count));
    }
}

// A recv whose count differs from the matching send fails with a message on
// the receiving rank, and that communicator refuses further operations.
TEST_P(CommTest, SendRecvCountMismatchIsReported) {
    if (n_ == 1) GTEST_SKIP() << "needs two ranks";
    for (int64_t sent : {int64_t(10), int64_t(5)}) {
        auto c = make_test_comm(backend_);  // on every rank: creation is collective
        TypedBuf buf(dtype_, 10);
        std::string error;
        if (r_ == 0) c->send(buf.data(), sent, dtype_, 1);
        if (r_ == 1) {
            try {
                c->recv(buf.data(), 15 - sent, dtype_, 0);
            } catch (const zt::Error& e) {
                error = e.what();
            }
            EXPECT_NE(error.find("recv #0"), std::string::npos) << error;
            EXPECT_NE(error.find("send and recv counts or dtypes differ"), std::string::npos)
                << error;
            EXPECT_THROW(c->barrier(), zt::Error);  // broken: refused at issue
        }
        int64_t errors = (r_ == 1 && error.empty()) ? 1 : 0;
        c.reset();
        expect_no_errors(errors, what("recv count mismatch", sent));
    }
}

TEST_P(CommTest, BarrierWaitsForTheLastRank) {
    comm_->barrier();
    const double delay = 0.2;
    if (r_ == 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    double t0 = zt::now_seconds();
    comm_->barrier();
    double waited = zt::now_seconds() - t0;
    // Every other rank entered the barrier before rank 0 woke, so it waited
    // most of the delay (0.5 of it leaves room for a slow start).
    int64_t errors = (r_ != 0 && !(waited >= 0.5 * delay)) ? 1 : 0;
    expect_no_errors(errors, what("barrier", 0) + zt::strprintf(" waited %.3f s", waited));
}

// 50 operations of four kinds in flight at once while this thread computes;
// handles complete in issue order, results are right, stats count exactly.
TEST_P(CommTest, AsyncManyOutstandingCompleteInOrder) {
    constexpr int kOps = 50;
    struct Op {
        int kind;
        int64_t count;  // all_reduce/broadcast: elements; rs/ag: per-rank block
        std::unique_ptr<TypedBuf> in, out;
        zt::Work work;
    };
    comm_->reset_stats();
    std::vector<Op> ops(kOps);
    for (int k = 0; k < kOps; k++) {
        Op& o = ops[k];
        o.kind = k % 4;
        switch (o.kind) {
            case 0:
                o.count = 1000 + 37 * k;
                o.out = std::make_unique<TypedBuf>(dtype_, o.count);
                for (int64_t i = 0; i < o.count; i++) o.out->set(i, sum_input(r_, i + k));
                o.work = comm_->all_reduce_async(o.out->data(), o.count, dtype_, ReduceOp::sum);
                break;
            case 1:
                o.count = 100 + k;
                o.in = std::make_unique<TypedBuf>(dtype_, o.count * n_);
                o.out = std::make_unique<TypedBuf>(dtype_, o.count, -100);
                for (int64_t i = 0; i < o.count * n_; i++) o.in->set(i, sum_input(r_, i + k));
                o.work = comm_->reduce_scatter_async(o.in->data(), o.out->data(), o.count, dtype_,
                                                     ReduceOp::sum);
                break;
            case 2:
                o.count = 50 + k;
                o.in = std::make_unique<TypedBuf>(dtype_, o.count);
                o.out = std::make_unique<TypedBuf>(dtype_, o.count * n_, -100);
                for (int64_t i = 0; i < o.count; i++) o.in->set(i, gather_input(r_, i + k));
                o.work = comm_->all_gather_async(o.in->data(), o.out->data(), o.count, dtype_);
                break;
            case 3:
                o.count = 300 + k;
                o.out = std::make_unique<TypedBuf>(dtype_, o.count, -100);
                if (r_ == k % n_)
                    for (int64_t i = 0; i < o.count; i++)
                        o.out->set(i, gather_input(k % n_, i + k));
                o.work = comm_->broadcast_async(o.out->data(), o.count, dtype_, k % n_);
                break;
        }
    }
    // Compute while they run; whenever handle k is seen done, every earlier
    // one must be done (checked last-to-first, so a later observation of an
    // earlier handle cannot race ahead of its completion).
    int64_t order_errors = 0;
    double acc = 0;
    for (int round = 0; round < 200 && !ops.back().work.done(); round++) {
        for (int i = 0; i < 20000; i++) acc += std::sin(double(i + round));
        bool later_done = false;
        for (int k = kOps - 1; k >= 0; k--) {
            bool d = ops[k].work.done();
            if (later_done && !d) order_errors++;
            later_done = later_done || d;
        }
    }
    EXPECT_TRUE(std::isfinite(acc));
    for (auto& o : ops) o.work.wait();
    for (auto& o : ops) EXPECT_TRUE(o.work.done());

    int64_t errors = 0;
    for (int k = 0; k < kOps; k++) {
        Op& o = ops[k];
        switch (o.kind) {
            case 0:
                for (int64_t i = 0; i < o.count; i++) {
                    float e = 0;
                    for (int p = 0; p < n_; p++) e += sum_input(p, i + k);
                    errors += !(o.out->get(i) == e);
                }
                break;
            case 1:
                for (int64_t i = 0; i < o.count; i++) {
                    float e = 0;
                    for (int p = 0; p < n_; p++) e += sum_input(p, r_ * o.count + i + k);
                    errors += !(o.out->get(i) == e);
                }
                break;
            case 2:
                for (int b = 0; b < n_; b++)
                    for (int64_t i = 0; i < o.count; i++)
                        errors += !(o.out->get(b * o.count + i) == gather_input(b, i + k));
                break;
            case 3:
                for (int64_t i = 0; i < o.count; i++)
                    errors += !(o.out->get(i) == gather_input(k % n_, i + k));
                break;
        }
    }
    EXPECT_EQ(order_errors, 0) << "a later handle completed before an earlier one";
    expect_no_errors(errors + order_errors, what("50 async ops", kOps));

    zt::CommStats s = comm_->stats();
    int64_t esize = int64_t(zt::dtype_size(dtype_));
    int64_t calls[4] = {0, 0, 0, 0}, wire[4] = {0, 0, 0, 0};
    const zt::CommOp kinds[4] = {zt::CommOp::all_reduce, zt::CommOp::reduce_scatter,
                                 zt::CommOp::all_gather, zt::CommOp::broadcast};
    for (auto& o : ops) {
        int64_t full = (o.kind == 1 || o.kind == 2) ? o.count * n_ * esize : o.count * esize;
        calls[o.kind]++;
        wire[o.kind] += zt::comm_wire_bytes(kinds[o.kind], full, n_);
    }
    for (int kind = 0; kind < 4; kind++) {
        EXPECT_EQ(s[kinds[kind]].calls, calls[kind]) << zt::comm_op_name(kinds[kind]);
        EXPECT_EQ(s[kinds[kind]].wire_bytes, wire[kind]) << zt::comm_op_name(kinds[kind]);
        EXPECT_GT(s[kinds[kind]].busy_s, 0) << zt::comm_op_name(kinds[kind]);
        EXPECT_GE(s[kinds[kind]].exposed_s, 0) << zt::comm_op_name(kinds[kind]);
    }
}

TEST_P(CommTest, StatsCountEveryOpAndReset) {
    TypedBuf a(dtype_, 1000), b(dtype_, 100 * n_), c(dtype_, 100);
    comm_->all_reduce(a.data(), 1000, dtype_, ReduceOp::sum);  // before the reset: not counted
    comm_->reset_stats();
    EXPECT_EQ(comm_->stats()[zt::CommOp::all_reduce].calls, 0);
    comm_->all_reduce(a.data(), 1000, dtype_, ReduceOp::avg);
    comm_->reduce_scatter(b.data(), c.data(), 100, dtype_, ReduceOp::sum);
    comm_->all_gather(c.data(), b.data(), 100, dtype_);
    comm_->broadcast(a.data(), 1000, dtype_, n_ - 1);
    comm_->barrier();
    comm_->barrier();
    int64_t es = int64_t(zt::dtype_size(dtype_));
    zt::CommStats s = comm_->stats();
    EXPECT_EQ(s[zt::CommOp::all_reduce].calls, 1);
    EXPECT_EQ(s[zt::CommOp::all_reduce].wire_bytes,
              zt::comm_wire_bytes(zt::CommOp::all_reduce, 1000 * es, n_));
    EXPECT_EQ(s[zt::CommOp::reduce_scatter].wire_bytes,
              zt::comm_wire_bytes(zt::CommOp::reduce_scatter, 100 * n_ * es, n_));
    EXPECT_EQ(s[zt::CommOp::all_gather].wire_bytes,
              zt::comm_wire_bytes(zt::CommOp::all_gather, 100 * n_ * es, n_));
    EXPECT_EQ(s[zt::CommOp::broadcast].wire_bytes,
              zt::comm_wire_bytes(zt::CommOp::broadcast, 1000 * es, n_));
    EXPECT_EQ(s[zt::CommOp::barrier].calls, 2);
    EXPECT_EQ(s[zt::CommOp::barrier].wire_bytes, 0);
    if (n_ > 1) {
        EXPECT_GT(s[zt::CommOp::all_reduce].wire_bytes, 0);
        int right = (r_ + 1) % n_, left = (r_ + n_ - 1) % n_;
        if (r_ % 2 == 0) {
            comm_->send(c.data(), 100, dtype_, right);
            comm_->recv(c.data(), 100, dtype_, left);
        } else {
            comm_->recv(c.data(), 100, dtype_, left);
            comm_->send(c.data(), 100, dtype_, right);
        }
        s = comm_->stats();
        EXPECT_EQ(s[zt::CommOp::send].calls, 1);
        EXPECT_EQ(s[zt::CommOp::send].wire_bytes, 100 * es);
        EXPECT_EQ(s[zt::CommOp::recv].calls, 1);
        EXPECT_EQ(s[zt::CommOp::recv].wire_bytes, 0);
    }
    EXPECT_GE(s.exposed_s(), 0);
    EXPECT_GE(s.busy_s(), 0);
    comm_->reset_stats();
    EXPECT_EQ(comm_->stats()[zt::CommOp::barrier].calls, 0);
}

// Refused at issue, on the caller's thread, before anything reaches the wire
// (so the ranks stay in step).
TEST_P(CommTest, InvalidArgumentsAreRefused) {
    TypedBuf a(dtype_, 64 * n_);
    auto message_of = [](auto&& f) {
        try {
            f();
        } catch (const zt::Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    EXPECT_NE(message_of([&] {
                  comm_->all_reduce(a.data(), 4, DType::f16, ReduceOp::sum);
              }).find("all_reduce: dtype f16 (2) is not supported by communicators"),
              std::string::npos);
    EXPECT_NE(message_of([&] {
                  comm_->all_reduce(a.data(), -1, dtype_, ReduceOp::sum);
              }).find("negative"),
              std::string::npos);
    EXPECT_NE(message_of([&] { comm_->broadcast(a.data(), 4, dtype_, n_); }).find("root"),
              std::string::npos);
    EXPECT_NE(message_of([&] { comm_->send(a.data(), 4, dtype_, r_); }).find("send"),
              std::string::npos);
    // recv overlapping send anywhere but block rank() is refused.
    char* base = a.bytes();
    int64_t es = int64_t(zt::dtype_size(dtype_));
    void* bad = base + ((r_ * 8 + 1) % (8 * n_)) * es;
    if (bad != base + r_ * 8 * es) {
        EXPECT_NE(message_of([&] {
                      comm_->reduce_scatter(base, bad, 8, dtype_, ReduceOp::sum);
                  }).find("overlaps"),
                  std::string::npos);
    }
    // Still usable afterwards.
    comm_->barrier();
}

std::string param_name(const testing::TestParamInfo<Param>& info) {
    return std::get<0>(info.param) + "_" + zt::dtype_name(std::get<1>(info.param));
}

// local runs only when the launcher started one rank; tcp where MASTER_ADDR
// and MASTER_PORT are set.
std::vector<std::string> backends_for_this_world() {
    std::vector<std::string> b;
    if (zt::discover_ranks().world == 1) b.push_back("local");
#if ZT_HAVE_MPI
    b.push_back("mpi");
    b.push_back("ring");
#endif
    // tcp needs rank 0's address and port (the ctest command passes them).
    if (std::getenv("MASTER_ADDR") && std::getenv("MASTER_PORT")) b.push_back("tcp");
    return b;
}

INSTANTIATE_TEST_SUITE_P(Backends, CommTest,
                         testing::Combine(testing::ValuesIn(backends_for_this_world()),
                                          testing::Values(DType::f32, DType::bf16)),
                         param_name);

// ---- control dtypes ---------------------------------------------------------

const std::vector<int64_t> kControlCounts = {1, 2, 7, 31, 1000, 65537, 300007};

class CommDTypeTest : public CommTest {
  protected:
    // The reduction of control_input over ranks at element k, in units.
    int64_t expected(ReduceOp op, int64_t k) const {
        int64_t e = control_input(dtype_, 0, k);
        for (int p = 1; p < n_; p++) {
            int64_t v = control_input(dtype_, p, k);
            e = op == ReduceOp::max ? std::max(e, v) : e + v;
        }
        return e;
    }
    static const char* op_name(ReduceOp op) { return zt::reduce_op_name(op); }
};

TEST_P(CommDTypeTest, AllReduceSumAndMax) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
        for (int64_t count : kControlCounts) {
            ControlBuf buf(dtype_, count);
            for (int64_t i = 0; i < count; i++) buf.set(i, control_input(dtype_, r_, i));
            comm_->all_reduce(buf.data(), count, dtype_, op);
            int64_t errors = 0;
            for (int64_t i = 0; i < count; i++) errors += !buf.equals(i, expected(op, i));
            expect_no_errors(errors, what("all_reduce", count) + " " + op_name(op));
        }
    }
}

// avg is defined on floating types only: exact on f64 with a mean that is
// representable, refused at issue on every rank for integers (so the ranks
// stay in step and the communicator stays usable).
TEST_P(CommDTypeTest, AllReduceAvgIsExactOnF64AndRefusedOnIntegers) {
    for (int64_t count : {int64_t(1), int64_t(31), int64_t(65537)}) {
        ControlBuf buf(dtype_, count);
        for (int64_t i = 0; i < count; i++) buf.set(i, control_avg_input(r_, n_, i));
        if (dtype_ != DType::f64) {
            std::string error;
            try {
                comm_->all_reduce(buf.data(), count, dtype_, ReduceOp::avg);
            } catch (const zt::Error& e) {
                error = e.what();
            }
            std::string want = std::string("avg of ") + zt::dtype_name(dtype_) + " is not defined";
            EXPECT_NE(error.find(want), std::string::npos) << error;
            ControlBuf out(dtype_, count * n_);
            EXPECT_THROW(
                comm_->reduce_scatter(out.data(), buf.data(), count, dtype_, ReduceOp::avg),
                zt::Error);
            comm_->barrier();  // still usable
            expect_no_errors(error.find(want) == std::string::npos ? 1 : 0,
                             what("avg refusal", count));
            continue;
        }
        comm_->all_reduce(buf.data(), count, dtype_, ReduceOp::avg);
        int64_t errors = 0;
        for (int64_t i = 0; i < count; i++) errors += !buf.equals(i, control_avg_mean(i));
        expect_no_errors(errors, what("all_reduce avg", count));
    }
}

TEST_P(CommDTypeTest, ReduceScatterSumMaxAndInPlace) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
        for (bool in_place : {false, true}) {
            for (int64_t c : kBlockCounts) {
                ControlBuf send(dtype_, c * n_);
                ControlBuf recv(dtype_, c, -100);
                for (int64_t k = 0; k < c * n_; k++) send.set(k, control_input(dtype_, r_, k));
                void* out = in_place ? send.bytes() + r_ * c * int64_t(zt::dtype_size(dtype_))
                                     : recv.data();
                comm_->reduce_scatter(send.data(), out, c, dtype_, op);
                int64_t errors = 0;
                for (int64_t i = 0; i < c; i++) {
                    int64_t want = expected(op, r_ * c + i);
                    errors += !(in_place ? send.equals(r_ * c + i, want) : recv.equals(i, want));
                }
                expect_no_errors(
                    errors, what(in_place ? "reduce_scatter in place" : "reduce_scatter", c) + " " +
                                op_name(op));
            }
        }
    }
}

TEST_P(CommDTypeTest, AllGatherAndBroadcast) {
    for (bool in_place : {false, true}) {
        for (int64_t c : kBlockCounts) {
            ControlBuf send(dtype_, c);
            ControlBuf recv(dtype_, c * n_, -100);
            for (int64_t i = 0; i < c; i++) {
                send.set(i, control_input(dtype_, r_, i));
                if (in_place) recv.set(r_ * c + i, control_input(dtype_, r_, i));
            }
            const void* src =
                in_place ? recv.bytes() + r_ * c * int64_t(zt::dtype_size(dtype_)) : send.data();
            comm_->all_gather(src, recv.data(), c, dtype_);
            int64_t errors = 0;
            for (int b = 0; b < n_; b++)
                for (int64_t i = 0; i < c; i++)
                    errors += !recv.equals(b * c + i, control_input(dtype_, b, i));
            expect_no_errors(errors, what(in_place ? "all_gather in place" : "all_gather", c));
        }
    }
    for (int64_t count : {int64_t(1), int64_t(1000), int64_t(300007)}) {
        for (int root = 0; root < n_; root++) {
            ControlBuf buf(dtype_, count, -100);
            if (r_ == root)
                for (int64_t i = 0; i < count; i++) buf.set(i, control_input(dtype_, root, i));
            comm_->broadcast(buf.data(), count, dtype_, root);
            int64_t errors = 0;
            for (int64_t i = 0; i < count; i++)
                errors += !buf.equals(i, control_input(dtype_, root, i));
            expect_no_errors(errors, what("broadcast", count) + zt::strprintf(" root %d", root));
        }
    }
}

// As CommTest.SendRecvRing: even ranks send first, odd ranks receive first.
TEST_P(CommDTypeTest, SendRecvRing) {
    if (n_ == 1) GTEST_SKIP() << "needs two ranks";
    int right = (r_ + 1) % n_, left = (r_ + n_ - 1) % n_;
    for (int64_t count : {int64_t(0), int64_t(1), int64_t(1000), int64_t(300007)}) {
        ControlBuf out(dtype_, count), in(dtype_, count, -100);
        for (int64_t i = 0; i < count; i++) out.set(i, control_input(dtype_, r_, i));
        zt::Work a, b;
        if (r_ % 2 == 0) {
            a = comm_->send_async(out.data(), count, dtype_, right);
            b = comm_->recv_async(in.data(), count, dtype_, left);
        } else {
            a = comm_->recv_async(in.data(), count, dtype_, left);
            b = comm_->send_async(out.data(), count, dtype_, right);
        }
        a.wait();
        b.wait();
        int64_t errors = 0;
        for (int64_t i = 0; i < count; i++) errors += !in.equals(i, control_input(dtype_, left, i));
        expect_no_errors(errors, what("send/recv ring", count));
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, CommDTypeTest,
                         testing::Combine(testing::ValuesIn(backends_for_this_world()),
                                          testing::Values(DType::i32, DType::i64, DType::u8,
                                                          DType::f64)),
                         param_name);

// The checker itself: one corrupted element on rank 0 must count as exactly
// one error over all ranks (a verification that cannot fail is no test).
TEST(CommVerify, CorruptedElementIsCounted) {
    TypedBuf buf(DType::f32, 1000);
    int n = world_size(), r = world_rank();
    for (int64_t i = 0; i < 1000; i++) buf.set(i, sum_input(r, i));
    referee().all_reduce(buf.data(), 1000, DType::f32, ReduceOp::sum);
    if (r == 0) buf.set(5, buf.get(5) + 1);
    int64_t errors = 0;
    for (int64_t i = 0; i < 1000; i++) {
        float e = 0;
        for (int p = 0; p < n; p++) e += sum_input(p, i);
        errors += !(buf.get(i) == e);
    }
    EXPECT_EQ(errors, r == 0 ? 1 : 0);
    EXPECT_EQ(global_errors(errors), 1);
}

}  // namespace
}  // namespace zt_mpi_test
