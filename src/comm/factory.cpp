// make_communicator: picks the backend this process runs, refuses what the
// build lacks (naming it), and wraps the backend in simnet when a slower
// network is asked for (flags --sim-bandwidth-gbps / --sim-latency-us win
// over env ZERO_SIM_BW_GBPS / ZERO_SIM_LATENCY_MS). Under --nproc it leaves
// this rank's pid for the launcher (comm/job.h).
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "comm/job.h"
#include "comm/launch.h"
#include "comm/local.h"
#include "comm/simnet.h"
#include "comm/tcp/tcp_backend.h"
#include "core/check.h"

#if ZT_HAVE_MPI
#include "comm/mpi/mpi_backend.h"
#endif
#if ZT_HAVE_CUDA
#include "comm/nccl/nccl.h"
#endif

namespace zt {

namespace {

// A non-negative number from the environment; unset or empty: 0.
double env_non_negative(const char* name, const char* meaning) {
    const char* v = std::getenv(name);
    if (!v || !*v) return 0;
    char* end = nullptr;
    double x = std::strtod(v, &end);
    ZT_CHECK(*end == '\0' && std::isfinite(x) && x >= 0,
             "%s='%s': expected a non-negative number (%s)", name, v, meaning);
    return x;
}

}  // namespace

std::unique_ptr<Communicator> make_communicator(const CommOptions& opt) {
    ZT_CHECK(std::isfinite(opt.timeout_s) && opt.timeout_s >= 0,
             "--comm-timeout-s %g: expected seconds >= 0 (0 turns the watchdog off)",
             opt.timeout_s);
    ZT_CHECK(std::isfinite(opt.sim_bandwidth_gbps) && opt.sim_bandwidth_gbps >= 0,
             "--sim-bandwidth-gbps %g: expected gigabits per second >= 0 (0: unlimited)",
             opt.sim_bandwidth_gbps);
    ZT_CHECK(std::isfinite(opt.sim_latency_us) && opt.sim_latency_us >= 0,
             "--sim-latency-us %g: expected microseconds >= 0 (0: none)", opt.sim_latency_us);
    double bandwidth_gbps = opt.sim_bandwidth_gbps;
    if (bandwidth_gbps == 0)
        bandwidth_gbps = env_non_negative("ZERO_SIM_BW_GBPS", "gigabits per second, 0: unlimited");
    double latency_us = opt.sim_latency_us;
    if (latency_us == 0)
        latency_us = 1000 * env_non_negative("ZERO_SIM_LATENCY_MS", "milliseconds, 0: none");

    const std::string& b = opt.backend;
    std::unique_ptr<Communicator> comm;
    if (b == "local") {
        RankInfo launcher = discover_ranks();
        ZT_CHECK(launcher.world == 1,
                 "--comm local runs one process, but the launcher (%s) started %d ranks; use "
                 "--comm mpi or --comm ring",
                 launcher.source.c_str(), launcher.world);
        comm = make_local_communicator(opt);
    } else if (b == "mpi" || b == "ring") {
#if ZT_HAVE_MPI
        comm = b == "mpi" ? make_mpi_communicator(opt) : make_ring_communicator(opt);
#else
        ZT_FAIL(
            "--comm %s: this build has no MPI; install an MPI (Debian: libopenmpi-dev) and "
            "rebuild with -DZT_MPI=ON, or use --comm tcp (sockets, no MPI) or local",
            b.c_str());
#endif
    } else if (b == "tcp") {
        comm = make_tcp_communicator(opt);
    } else if (b == "nccl") {
#if ZT_HAVE_CUDA
        comm = make_nccl_communicator(opt);
#else
        ZT_FAIL(
            "--comm nccl: this build has no CUDA/NCCL; rebuild with -DZT_CUDA=ON where the "
            "CUDA toolkit, cuDNN and NCCL are installed, or use --comm mpi, ring, tcp or local");
#endif
    } else {
        ZT_FAIL("--comm '%s': expected local, mpi, ring, tcp or nccl", b.c_str());
    }
    set_error_rank(comm->rank());
    job_note_rank(comm->rank());  // under --nproc: this rank's pid, for the launcher
    if (bandwidth_gbps > 0 || latency_us > 0)
        comm = make_simnet(std::move(comm), bandwidth_gbps, latency_us);
    return comm;
}

}  // namespace zt
