// Communicator dtypes without MPI: the size and name of every DType, the
// shared reduction kernels (comm/reduce.h) on every dtype with results known
// exactly, the refusals every backend shares (comm_check_dtype), the local
// backend carrying control data, and Work::wait_on_stream's host wait.
//
// Integer inputs sit above 2^53 (i64) and 2^24 (i32), so any trip through
// f64 or f32 would lose their low bits and fail the comparison.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/local.h"
#include "comm/reduce.h"
#include "comm/work.h"
#include "core/check.h"
#include "core/dtype.h"

namespace {

using zt::CommOp;
using zt::DType;
using zt::ReduceOp;

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const zt::Error& e) {
        return e.what();
    }
    return "(no error)";
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

TEST(CommDTypes, SizesAndNamesOfEveryDtype) {
    struct Case {
        DType t;
        size_t size;
        const char* name;
        int value;  // stable: ranks compare it in collective signatures
    };
    const Case cases[] = {{DType::f32, 4, "f32", 0}, {DType::bf16, 2, "bf16", 1},
                          {DType::f16, 2, "f16", 2}, {DType::i32, 4, "i32", 3},
                          {DType::i64, 8, "i64", 4}, {DType::u8, 1, "u8", 5},
                          {DType::f64, 8, "f64", 6}};
    ASSERT_EQ(int(std::size(cases)), zt::kDTypeCount);
    for (const Case& c : cases) {
        EXPECT_EQ(zt::dtype_size(c.t), c.size) << c.name;
        EXPECT_STREQ(zt::dtype_name(c.t), c.name);
        EXPECT_EQ(int(c.t), c.value) << c.name;
    }
    EXPECT_EQ(zt::dtype_size(DType(zt::kDTypeCount)), 0u);
    EXPECT_STREQ(zt::dtype_name(DType(zt::kDTypeCount)), "?");
    EXPECT_TRUE(zt::dtype_is_integer(DType::i64) && zt::dtype_is_integer(DType::u8));
    EXPECT_FALSE(zt::dtype_is_integer(DType::f64) || zt::dtype_is_integer(DType::bf16));
}

TEST(CommDTypes, IntegerSumsAreExactAndWrap) {
    const int64_t big = (int64_t(1) << 60) + 1;  // odd above 2^53: no double holds it
    std::vector<int64_t> a = {big, -big, 3, INT64_MAX};
    std::vector<int64_t> b = {big + 2, big - 7, -5, 1};
    std::vector<int64_t> d(4);
    zt::comm_combine(DType::i64, ReduceOp::sum, d.data(), a.data(), b.data(), 4);
    EXPECT_EQ(d[0], 2 * big + 2);
    EXPECT_EQ(d[1], -7);
    EXPECT_EQ(d[2], -2);
    EXPECT_EQ(d[3], INT64_MIN);  // wraps modulo 2^64, as documented
    zt::comm_combine(DType::i64, ReduceOp::max, d.data(), a.data(), b.data(), 4);
    EXPECT_EQ(d, (std::vector<int64_t>{big + 2, big - 7, 3, INT64_MAX}));

    std::vector<int32_t> a32 = {(1 << 24) + 1, -((1 << 30) + 3)}, b32 = {(1 << 24) + 2, 5};
    std::vector<int32_t> d32(2);
    zt::comm_combine(DType::i32, ReduceOp::sum, d32.data(), a32.data(), b32.data(), 2);
    EXPECT_EQ(d32, (std::vector<int32_t>{(1 << 25) + 3, -((1 << 30) - 2)}));
    zt::comm_combine(DType::i32, ReduceOp::max, d32.data(), a32.data(), b32.data(), 2);
    EXPECT_EQ(d32, (std::vector<int32_t>{(1 << 24) + 2, 5}));

    std::vector<uint8_t> a8 = {200, 7, 255}, b8 = {100, 9, 1}, d8(3);
    zt::comm_combine(DType::u8, ReduceOp::sum, d8.data(), a8.data(), b8.data(), 3);
    EXPECT_EQ(d8, (std::vector<uint8_t>{44, 16, 0}));  // modulo 256
    zt::comm_combine(DType::u8, ReduceOp::max, d8.data(), a8.data(), b8.data(), 3);
    EXPECT_EQ(d8, (std::vector<uint8_t>{200, 9, 255}));

    // dst aliasing an input, element for element, is allowed.
    zt::comm_combine(DType::i64, ReduceOp::sum, a.data(), a.data(), b.data(), 3);
    EXPECT_EQ(a[0], 2 * big + 2);
}

TEST(CommDTypes, FloatKernelsSumMaxAndDivide) {
    // f64: 2^40 + 0.25 survives (it would not in f32), and the divide is exact.
    std::vector<double> a = {1099511627776.25, -3.5}, b = {1099511627776.25, 2.0}, d(2);
    zt::comm_combine(DType::f64, ReduceOp::sum, d.data(), a.data(), b.data(), 2);
    EXPECT_EQ(d, (std::vector<double>{2199023255552.5, -1.5}));
    zt::comm_divide(DType::f64, d.data(), 2, 2);
    EXPECT_EQ(d, (std::vector<double>{1099511627776.25, -0.75}));
    zt::comm_combine(DType::f64, ReduceOp::max, d.data(), a.data(), b.data(), 2);
    EXPECT_EQ(d, (std::vector<double>{1099511627776.25, 2.0}));

    // bf16 max keeps the larger value's bits; negative values compare as values.
    std::vector<uint16_t> x = {zt::f32_to_bf16(-2.0f).bits, zt::f32_to_bf16(1.5f).bits};
    std::vector<uint16_t> y = {zt::f32_to_bf16(-3.0f).bits, zt::f32_to_bf16(2.5f).bits};
    std::vector<uint16_t> m(2);
    zt::comm_combine(DType::bf16, ReduceOp::max, m.data(), x.data(), y.data(), 2);
    EXPECT_EQ(m[0], x[0]);
    EXPECT_EQ(m[1], y[1]);
    zt::comm_combine(DType::bf16, ReduceOp::sum, m.data(), x.data(), y.data(), 2);
    EXPECT_EQ(zt::bf16_to_f32(zt::bf16{m[0]}), -5.0f);
    EXPECT_EQ(zt::bf16_to_f32(zt::bf16{m[1]}), 4.0f);

    float f[2] = {3.0f, -1.0f}, g[2] = {4.0f, -2.0f}, h[2];
    zt::comm_combine(DType::f32, ReduceOp::max, h, f, g, 2);
    EXPECT_EQ(h[0], 4.0f);
    EXPECT_EQ(h[1], -1.0f);
    EXPECT_TRUE(contains(message_of([&] { zt::comm_divide(DType::i32, f, 2, 2); }), "i32"));
}

TEST(CommDTypes, CheckRefusesWhatNoBackendDoes) {
    // Every new dtype is accepted by every op; sum and max everywhere.
    for (DType t : {DType::f32, DType::bf16, DType::i32, DType::i64, DType::u8, DType::f64}) {
        for (CommOp op : {CommOp::all_reduce, CommOp::reduce_scatter})
            for (ReduceOp r : {ReduceOp::sum, ReduceOp::max})
                EXPECT_NO_THROW(zt::comm_check_dtype(op, t, r)) << zt::dtype_name(t);
        for (CommOp op : {CommOp::all_gather, CommOp::broadcast, CommOp::send, CommOp::recv})
            EXPECT_NO_THROW(zt::comm_check_dtype(op, t)) << zt::dtype_name(t);
    }
    for (DType t : {DType::f32, DType::bf16, DType::f64})
        EXPECT_NO_THROW(zt::comm_check_dtype(CommOp::all_reduce, t, ReduceOp::avg));
    // avg on integers: refused, naming the dtype.
    for (DType t : {DType::i32, DType::i64, DType::u8}) {
        std::string m =
            message_of([&] { zt::comm_check_dtype(CommOp::reduce_scatter, t, ReduceOp::avg); });
        EXPECT_TRUE(contains(m, std::string("avg of ") + zt::dtype_name(t) + " is not defined"))
            << m;
        EXPECT_TRUE(contains(m, "reduce_scatter")) << m;
    }
    // avg is only read for the reducing ops.
    EXPECT_NO_THROW(zt::comm_check_dtype(CommOp::all_gather, DType::i64, ReduceOp::avg));
    std::string m = message_of([] { zt::comm_check_dtype(CommOp::broadcast, DType::f16); });
    EXPECT_TRUE(contains(m, "broadcast: dtype f16")) << m;
    EXPECT_TRUE(contains(m, "i32, i64 or u8")) << m;
    m = message_of([] { zt::comm_check_dtype(CommOp::send, DType(42)); });
    EXPECT_TRUE(contains(m, "(42)")) << m;
    m = message_of([] { zt::comm_check_dtype(CommOp::all_reduce, DType::i32, ReduceOp(9)); });
    EXPECT_TRUE(contains(m, "not sum, avg or max")) << m;
}

// The local backend (world 1): every dtype moves unchanged, byte for byte.
TEST(CommDTypes, LocalCarriesControlData) {
    zt::CommOptions opt;
    auto comm = zt::make_local_communicator(opt);
    const int64_t big = (int64_t(1) << 62) - 3;
    std::vector<int64_t> v = {big, -big, 1};
    comm->all_reduce(v.data(), 3, DType::i64, ReduceOp::sum);
    comm->all_reduce(v.data(), 3, DType::i64, ReduceOp::max);
    EXPECT_EQ(v, (std::vector<int64_t>{big, -big, 1}));
    std::vector<int64_t> g(3, 0);
    comm->all_gather(v.data(), g.data(), 3, DType::i64);
    EXPECT_EQ(g, v);
    std::vector<int64_t> rs(3, 0);
    comm->reduce_scatter(v.data(), rs.data(), 3, DType::i64, ReduceOp::max);
    EXPECT_EQ(rs, v);

    std::vector<uint8_t> name = {'r', 'u', 'n', 0, 255};
    comm->broadcast(name.data(), 5, DType::u8, 0);
    EXPECT_EQ(name, (std::vector<uint8_t>{'r', 'u', 'n', 0, 255}));
    double x = 0.1;
    comm->all_reduce(&x, 1, DType::f64, ReduceOp::avg);
    EXPECT_EQ(x, 0.1);

    zt::CommStats s = comm->stats();
    EXPECT_EQ(s[CommOp::all_reduce].calls, 3);
    // Refused at issue, before the queue; the communicator stays usable.
    int32_t flag = 1;
    std::string m = message_of([&] { comm->all_reduce(&flag, 1, DType::i32, ReduceOp::avg); });
    EXPECT_TRUE(contains(m, "all_reduce: avg of i32 is not defined")) << m;
    m = message_of([&] { comm->all_gather(&flag, &flag, 2, DType::f16); });
    EXPECT_TRUE(contains(m, "all_gather: dtype f16")) << m;
    comm->all_reduce(&flag, 1, DType::i32, ReduceOp::max);
    EXPECT_EQ(flag, 1);
    EXPECT_EQ(comm->stats()[CommOp::all_reduce].calls, 4);
}

// On the CPU backends wait_on_stream is a host wait: done afterwards, and an
// operation's error comes back from it as from wait().
TEST(CommDTypes, WaitOnStreamIsAHostWait) {
    zt::Work().wait_on_stream(nullptr);  // an empty handle is already done

    zt::CommOptions opt;
    auto comm = zt::make_local_communicator(opt);
    int64_t v = (int64_t(1) << 55) + 1;
    zt::Work w = comm->all_reduce_async(&v, 1, DType::i64, ReduceOp::sum);
    w.wait_on_stream(nullptr);
    EXPECT_TRUE(w.done());
    EXPECT_EQ(v, (int64_t(1) << 55) + 1);

    auto state = zt::detail::make_work_state(CommOp::broadcast, nullptr);
    state->fail("link down");
    std::string m = message_of([&] { zt::Work(state).wait_on_stream(nullptr); });
    EXPECT_TRUE(contains(m, "broadcast failed: link down")) << m;
}

}  // namespace
