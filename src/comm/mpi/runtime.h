// The process-wide MPI runtime shared by the mpi and ring communicators, and
// the check macro every MPI call goes through.
//
// Invariants: MPI is initialised once per process, on first use, with
// MPI_Init_thread asking for MPI_THREAD_MULTIPLE (each communicator has its
// own communication thread and its own duplicated MPI_Comm; the watchdog may
// call MPI_Abort while a communication thread is blocked). After init, MPI is
// called only from communication threads, except MPI_Abort and MPI_Finalize.
// MPI_Finalize runs at process exit when no communicator is alive; an
// MPI_Init by someone else is respected (then we never finalize).
#pragma once

// The C API only: OpenMPI's mpi.h otherwise pulls in its deprecated C++
// bindings, which the C library target (MPI::MPI_C) does not link.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

namespace zt {

// Throws zt::Error "rank R, file:line: <call> failed: <MPI error string>".
[[noreturn]] void mpi_fail(const char* call, int rc, const char* file, int line);

}  // namespace zt

#define ZT_MPI_CHECK(call)                                                                    \
    do {                                                                                      \
        int zt_mpi_rc_ = (call);                                                              \
        if (zt_mpi_rc_ != MPI_SUCCESS) ::zt::mpi_fail(#call, zt_mpi_rc_, __FILE__, __LINE__); \
    } while (0)

namespace zt {

class MpiRuntime {
  public:
    // Initialises MPI on the first call (from the thread that creates the
    // first communicator) and sets the error rank to the world rank.
    static MpiRuntime& instance();

    int rank() const { return rank_; }
    int world_size() const { return world_; }
    int thread_level() const { return thread_level_; }

    // Communicators register while alive; below MPI_THREAD_MULTIPLE only one
    // may live at a time (two communication threads would call MPI at once).
    void acquire(const char* backend);
    void release();

    ~MpiRuntime();

  private:
    MpiRuntime();
    int rank_ = 0;
    int world_ = 1;
    int thread_level_ = MPI_THREAD_SINGLE;
    bool we_initialized_ = false;
    int live_ = 0;  // guarded by a mutex in the .cpp
};

// True once MPI_Init has run and MPI_Finalize has not.
bool mpi_runtime_active();
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is active; otherwise _Exit(code).
[[noreturn]] void mpi_abort_job(int exit_code);

}  // namespace zt
