// Rank discovery, the factory's refusals, and launch guards, in the rank
// processes that mpirun started.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

#include "comm/launch.h"
#include "comm_test_util.h"
#include "core/check.h"

namespace zt_mpi_test {
namespace {

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const zt::Error& e) {
        return e.what();
    }
    return "(no error)";
}

// Unsets every launcher variable for its lifetime and restores them after.
class ScopedLauncherEnv {
  public:
    ScopedLauncherEnv() {
        for (const char* n : kNames) {
            if (const char* v = std::getenv(n)) saved_[n] = v;
            unsetenv(n);
        }
    }
    ~ScopedLauncherEnv() {
        for (const char* n : kNames) unsetenv(n);
        for (auto& [n, v] : saved_) setenv(n.c_str(), v.c_str(), 1);
    }

  private:
    static constexpr const char* kNames[] = {"OMPI_COMM_WORLD_RANK",
                                             "OMPI_COMM_WORLD_SIZE",
                                             "OMPI_COMM_WORLD_LOCAL_RANK",
                                             "PMI_RANK",
                                             "PMI_SIZE",
                                             "MPI_LOCALRANKID",
                                             "PMI_LOCAL_RANK",
                                             "SLURM_PROCID",
                                             "SLURM_STEP_NUM_TASKS",
                                             "SLURM_NTASKS",
                                             "SLURM_LOCALID",
                                             "RANK",
                                             "WORLD_SIZE",
                                             "LOCAL_RANK"};
    std::map<std::string, std::string> saved_;
};

TEST(CommLaunch, DiscoveredRanksMatchMpi) {
    if (!zt::under_launcher()) GTEST_SKIP() << "not started by mpirun";
    zt::RankInfo info = zt::discover_ranks();
    EXPECT_EQ(info.source, "mpirun");
    EXPECT_EQ(info.rank, world_rank());
    EXPECT_EQ(info.world, world_size());
    EXPECT_GE(info.local_rank, 0);
    EXPECT_TRUE(zt::under_launcher());
}

TEST(CommLaunch, ParsesEachLauncherAndRefusesInconsistentValues) {
    ScopedLauncherEnv clean;
    zt::RankInfo none = zt::discover_ranks();
    EXPECT_EQ(none.source, "none");
    EXPECT_EQ(none.rank, 0);
    EXPECT_EQ(none.world, 1);
    EXPECT_FALSE(zt::under_launcher());

    setenv("RANK", "2", 1);
    setenv("WORLD_SIZE", "4", 1);
    setenv("LOCAL_RANK", "1", 1);
    zt::RankInfo t = zt::discover_ranks();
    EXPECT_EQ(t.source, "torchrun");
    EXPECT_EQ(t.rank, 2);
    EXPECT_EQ(t.world, 4);
    EXPECT_EQ(t.local_rank, 1);

    setenv("SLURM_PROCID", "3", 1);  // srun wins over torchrun's variables
    setenv("SLURM_NTASKS", "8", 1);
    setenv("SLURM_LOCALID", "0", 1);
    zt::RankInfo s = zt::discover_ranks();
    EXPECT_EQ(s.source, "slurm");
    EXPECT_EQ(s.rank, 3);
    EXPECT_EQ(s.world, 8);
    unsetenv("SLURM_PROCID");
    unsetenv("SLURM_NTASKS");
    unsetenv("SLURM_LOCALID");

    setenv("RANK", "4", 1);
    EXPECT_NE(error_of([] { zt::discover_ranks(); }).find("RANK=4 is not below WORLD_SIZE=4"),
              std::string::npos);
    setenv("RANK", "two", 1);
    EXPECT_NE(error_of([] { zt::discover_ranks(); }).find("RANK='two'"), std::string::npos);
    unsetenv("WORLD_SIZE");
    setenv("RANK", "0", 1);
    EXPECT_NE(error_of([] { zt::discover_ranks(); }).find("half set"), std::string::npos);
}

TEST(CommLaunch, NprocRefusedUnderALauncher) {
    // Without a launcher the call would really start ranks (of this binary).
    if (!zt::under_launcher()) GTEST_SKIP() << "not started by mpirun";
    char arg0[] = "zerotrain";
    char* argv[] = {arg0, nullptr};
    EXPECT_NE(error_of([&] { zt::launch_local_ranks(2, 1, argv); }).find("under a launcher"),
              std::string::npos);
    EXPECT_NE(error_of([&] { zt::launch_local_ranks(0, 1, argv); }).find("--nproc 0"),
              std::string::npos);
}

TEST(CommFactory, RefusesWhatItCannotRun) {
    auto make = [](zt::CommOptions o) { return [o] { zt::make_communicator(o); }; };
    zt::CommOptions o;
    o.backend = "gloo";
    EXPECT_NE(error_of(make(o)).find("expected local, mpi, ring, tcp or nccl"), std::string::npos);
    o.backend = "mpi";
    o.timeout_s = -1;
    EXPECT_NE(error_of(make(o)).find("--comm-timeout-s"), std::string::npos);
    o.timeout_s = 60;
    o.sim_bandwidth_gbps = -2;
    EXPECT_NE(error_of(make(o)).find("--sim-bandwidth-gbps"), std::string::npos);
    o.sim_bandwidth_gbps = 0;
    setenv("ZERO_SIM_BW_GBPS", "fast", 1);
    EXPECT_NE(error_of(make(o)).find("ZERO_SIM_BW_GBPS='fast'"), std::string::npos);
    unsetenv("ZERO_SIM_BW_GBPS");
    setenv("ZERO_SIM_LATENCY_MS", "-1", 1);
    EXPECT_NE(error_of(make(o)).find("ZERO_SIM_LATENCY_MS='-1'"), std::string::npos);
    unsetenv("ZERO_SIM_LATENCY_MS");
    setenv("ZT_COMM_CHECK", "yes", 1);
    EXPECT_NE(error_of(make(o)).find("ZT_COMM_CHECK='yes'"), std::string::npos);
    unsetenv("ZT_COMM_CHECK");
#if !ZT_HAVE_CUDA
    o.backend = "nccl";
    EXPECT_NE(error_of(make(o)).find("no CUDA/NCCL"), std::string::npos);
#endif
    o.backend = "local";
    if (world_size() > 1) {
        EXPECT_NE(error_of(make(o)).find("--comm local runs one process"), std::string::npos);
    } else {
        EXPECT_EQ(zt::make_communicator(o)->world_size(), 1);
    }
}

// A simulated network wraps the backend; the env variables work as the flags.
TEST(CommFactory, SimnetWrapsTheBackend) {
    zt::CommOptions o;
    o.backend = "mpi";
    o.timeout_s = 60;
    o.sim_bandwidth_gbps = 100;
    auto c = zt::make_communicator(o);
    EXPECT_EQ(std::string(c->backend_name()), "simnet(mpi)");
    float x = float(world_rank());
    c->all_reduce(&x, 1, zt::DType::f32, zt::ReduceOp::sum);
    EXPECT_EQ(x, float(world_size() * (world_size() - 1) / 2));
    c.reset();
    o.sim_bandwidth_gbps = 0;
    setenv("ZERO_SIM_LATENCY_MS", "0.01", 1);
    c = zt::make_communicator(o);
    unsetenv("ZERO_SIM_LATENCY_MS");
    EXPECT_EQ(std::string(c->backend_name()), "simnet(mpi)");
    c->barrier();
}

}  // namespace
}  // namespace zt_mpi_test
