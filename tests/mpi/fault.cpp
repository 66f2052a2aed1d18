// zt_comm_fault: a rank misbehaves on purpose, so tests can check that every
// rank ends with a non-zero exit and a message naming the rank and the op,
// within the watchdog timeout, never a hang.
//
//   zt_comm_fault MODE BACKEND [--timeout S]     (under mpirun, world >= 2)
//     mismatch  rank 1 issues all_gather #2 while the others issue all_reduce #2
//     skip      rank 1 skips all_reduce #2 (the next one differs in count)
//     hang      rank 1 skips the last all_reduce and waits: the watchdog fires
//     kill      rank 1 raises SIGKILL before all_reduce #2
//     ok        no fault (exit 0)
//   zt_comm_fault launch --nproc N|--nproc=N [--expect-world W] [--exit-rank R --exit-code C]
//     (not under a launcher) starts N ranks through launch_local_ranks; each
//     checks its world size and runs an all_reduce; rank R exits with C.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/launch.h"
#include "core/check.h"

namespace {

// "--name V" or "--name=V".
int arg_int(int argc, char** argv, const char* name, int fallback) {
    size_t len = std::strlen(name);
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], name) && i + 1 < argc) return std::atoi(argv[i + 1]);
        if (!std::strncmp(argv[i], name, len) && argv[i][len] == '=')
            return std::atoi(argv[i] + len + 1);
    }
    return fallback;
}

int run_launch(int argc, char** argv) {
    int nproc = arg_int(argc, argv, "--nproc", 0);
    if (nproc > 0) return zt::launch_local_ranks(nproc, argc, argv);
    // A rank started by the launch above (--nproc was removed from argv).
    zt::CommOptions o;
    o.backend = "mpi";
    o.timeout_s = 30;
    auto comm = zt::make_communicator(o);
    float x = 1;
    comm->all_reduce(&x, 1, zt::DType::f32, zt::ReduceOp::sum);
    ZT_CHECK(x == float(comm->world_size()), "all_reduce of ones gave %g, world %d", x,
             comm->world_size());
    int expect_world = arg_int(argc, argv, "--expect-world", 0);
    ZT_CHECK(expect_world == 0 || comm->world_size() == expect_world, "world size %d, expected %d",
             comm->world_size(), expect_world);
    int rank = comm->rank(), world = comm->world_size();
    comm.reset();
    if (rank == arg_int(argc, argv, "--exit-rank", -1))
        return arg_int(argc, argv, "--exit-code", 0);
    std::printf("rank %d of %d: ok\n", rank, world);
    return 0;
}

int run_fault(const std::string& mode, const std::string& backend, double timeout_s) {
    zt::CommOptions o;
    o.backend = backend;
    o.timeout_s = timeout_s;
    auto comm = zt::make_communicator(o);
    int rank = comm->rank();
    ZT_CHECK(comm->world_size() >= 2, "zt_comm_fault needs at least 2 ranks");
    const int kIters = 5;
    std::vector<float> buf(4096, 1.0f), out(4096 * size_t(comm->world_size()));
    for (int i = 0; i < kIters; i++) {
        int64_t count = 1000 + i;  // each collective's signature differs from the next
        bool faulty = rank == 1;
        if (faulty && mode == "kill" && i == 2) {
            std::fprintf(stderr, "rank %d: fault injection: SIGKILL before all_reduce #%d\n", rank,
                         i);
            std::fflush(stderr);
            raise(SIGKILL);
        }
        if (faulty && mode == "skip" && i == 2) continue;
        if (faulty && mode == "hang" && i == kIters - 1) {
            std::fprintf(stderr, "rank %d: fault injection: skipping all_reduce #%d\n", rank, i);
            std::fflush(stderr);
            std::this_thread::sleep_for(std::chrono::seconds(600));
        }
        if (faulty && mode == "mismatch" && i == 2) {
            comm->all_gather(buf.data(), out.data(), count, zt::DType::f32);
            continue;
        }
        comm->all_reduce(buf.data(), count, zt::DType::f32, zt::ReduceOp::sum);
    }
    comm->barrier();
    comm.reset();
    std::printf("rank %d: finished without a fault\n", rank);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc < 2) {
            std::fprintf(stderr,
                         "usage: zt_comm_fault mismatch|skip|hang|kill|ok BACKEND "
                         "[--timeout S] | launch --nproc N\n");
            return 2;
        }
        std::string mode = argv[1];
        if (mode == "launch") return run_launch(argc, argv);
        std::string backend = argc > 2 ? argv[2] : "mpi";
        return run_fault(mode, backend, arg_int(argc, argv, "--timeout", 300));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zt_comm_fault: error: %s\n", e.what());
        zt::abort_all_ranks(1);
    }
}
