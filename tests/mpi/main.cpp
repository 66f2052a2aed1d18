// zt_mpi_tests' main: GoogleTest plus the referee communicator, which must be
// destroyed before exit so MPI_Finalize runs with no communicator alive.
#include <gtest/gtest.h>

#include "comm/launch.h"
#include "comm_test_util.h"
#include "core/check.h"

namespace zt_mpi_test {

namespace {
std::unique_ptr<zt::Communicator> g_referee;
}

zt::Communicator& referee() {
    if (!g_referee) {
        zt::CommOptions o;
        o.backend = ZT_HAVE_MPI ? "mpi" : "local";
        o.timeout_s = 60;
        g_referee = zt::make_communicator(o);
    }
    return *g_referee;
}

void shutdown_referee() {
    g_referee.reset();
}

int world_size() {
    return referee().world_size();
}
int world_rank() {
    return referee().rank();
}

int64_t global_errors(int64_t local) {
    int64_t v = local;  // an i64 sum is exact
    referee().all_reduce(&v, 1, zt::DType::i64, zt::ReduceOp::sum);
    return v;
}

std::unique_ptr<zt::Communicator> make_test_comm(const std::string& backend) {
    zt::CommOptions o;
    o.backend = backend;
    o.timeout_s = 60;  // a rank that fails an ASSERT and leaves the others waiting
    return zt::make_communicator(o);
}

}  // namespace zt_mpi_test

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    int rc = 1;
    try {
        zt_mpi_test::referee();
        rc = RUN_ALL_TESTS();
        zt_mpi_test::shutdown_referee();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zt_mpi_tests: error: %s\n", e.what());
        zt::abort_all_ranks(1);
    }
    return rc;
}
