// The process-wide MPI runtime (see runtime.h for the invariants).
#include "comm/mpi/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "core/check.h"

namespace zt {

namespace {
std::mutex g_live_mu;
}

void mpi_fail(const char* call, int rc, const char* file, int line) {
    char text[MPI_MAX_ERROR_STRING] = {0};
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof text, "?");
    fail(file, line, "%s failed: %s (MPI error %d)", call, text, rc);
}

MpiRuntime& MpiRuntime::instance() {
    static MpiRuntime runtime;
    return runtime;
}

MpiRuntime::MpiRuntime() {
    int initialized = 0;
    ZT_MPI_CHECK(MPI_Initialized(&initialized));
    if (initialized) {
        ZT_MPI_CHECK(MPI_Query_thread(&thread_level_));
    } else {
        ZT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_));
        we_initialized_ = true;
    }
    ZT_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    ZT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    ZT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_));
    set_error_rank(rank_);
    ZT_CHECK(thread_level_ >= MPI_THREAD_SERIALIZED,
             "MPI provides thread level %d, below MPI_THREAD_SERIALIZED (%d); zerotrain calls MPI "
             "from its communication thread and needs an MPI built with thread support",
             thread_level_, MPI_THREAD_SERIALIZED);
}

MpiRuntime::~MpiRuntime() {
    if (!we_initialized_) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    std::lock_guard<std::mutex> lock(g_live_mu);
    if (live_ > 0) {
        // A communication thread may still be inside MPI; finalizing under it
        // is undefined. mpirun will report the missing MPI_Finalize.
        std::fprintf(stderr,
                     "zerotrain: warning: rank %d: %d communicator(s) still alive at exit; "
                     "MPI_Finalize skipped (destroy communicators before exit)\n",
                     rank_, live_);
        return;
    }
    MPI_Finalize();
}

void MpiRuntime::acquire(const char* backend) {
    std::lock_guard<std::mutex> lock(g_live_mu);
    ZT_CHECK(live_ == 0 || thread_level_ >= MPI_THREAD_MULTIPLE,
             "%s: this MPI provides only MPI_THREAD_SERIALIZED, so only one MPI communicator may "
             "exist at a time (%d alive); destroy the other first",
             backend, live_);
    live_++;
}

void MpiRuntime::release() {
    std::lock_guard<std::mutex> lock(g_live_mu);
    live_--;
}

bool mpi_runtime_active() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

void mpi_abort_job(int exit_code) {
    std::fflush(stdout);
    std::fflush(stderr);
    if (mpi_runtime_active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
}

}  // namespace zt
