// Rank discovery and local launch.
//
// discover_ranks() reads what the launcher set, first match wins:
//   mpirun (OpenMPI)  OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK
//   PMI (MPICH, srun --mpi=pmi2)  PMI_RANK / PMI_SIZE (local: MPI_LOCALRANKID, PMI_LOCAL_RANK)
//   Slurm srun        SLURM_PROCID / SLURM_STEP_NUM_TASKS (else SLURM_NTASKS) / SLURM_LOCALID
//   torchrun          RANK / WORLD_SIZE / LOCAL_RANK
// and none of them means rank 0 of 1. A half-set pair, a value that is not
// an integer, or a rank outside [0, world) is an error naming the variable.
//
// launch_local_ranks() is `--nproc N`: it re-executes this binary N times
// under the mpiexec the build linked against (or, in a build without MPI or
// for --comm tcp, itself, as torchrun would) and returns its exit status.
// When the job fails it names the rank at fault, from what the ranks left in
// its job directory (comm/job.h) and the run directory's hang records
// (comm/flight.h): the rank that died and its signal, or the rank the others
// waited for when a collective timed out.
#pragma once

#include <functional>
#include <string>

#include "comm/netns.h"

namespace zt {

struct RankInfo {
    int rank = 0;
    int world = 1;
    int local_rank = 0;
    std::string source;  // "mpirun", "pmi", "slurm", "torchrun" or "none"
};

RankInfo discover_ranks();

// The backend `--comm auto` means: local for one rank; for several, mpi
// where MPI started them (a build with MPI, ranks from mpirun, srun or
// --nproc), tcp where it cannot have (a build without MPI, torchrun's ranks,
// --nproc's own ranks, which it starts as torchrun would).
std::string default_comm_backend(const RankInfo& ranks);

// True when any launcher's rank or size variable is set (this process is one
// of several ranks, or was started by a launcher as a single rank).
bool under_launcher();

// What a failed job's report adds about its run directory (the directory
// rank 0 was given, Communicator::set_run_dir): for training, the step
// reached, the last complete checkpoint and the command that resumes. Lines
// end in '\n'.
using LaunchNotes = std::function<std::string(const std::string& run_dir)>;

// Runs `ZT_MPIEXEC --allow-run-as-root --oversubscribe --bind-to none -np N
// /path/to/this/exe argv[1..]` with `--nproc N` / `--nproc=N` removed from
// argv, waits, and returns its exit status (128 + signal when it was killed).
// mpirun runs in its own process group, without stdin. SIGINT/SIGTERM sent
// to this process while it waits (a terminal's Ctrl-C too) reach the ranks
// as SIGUSR1/SIGUSR2 through mpirun, which they take for SIGINT/SIGTERM (a
// clean stop); a second one ends the job, a third kills it; the status is
// then 128 + the first signal. mpirun's stderr passes through this process,
// which reads the deaths it reports and says once what several ranks report
// alike. When the job fails otherwise, prints to stderr which rank died
// (pid, signal) or, after a collective timeout, the hang diagnosis
// (diagnose_hang), then notes(run_dir) when rank 0 had a run directory.
// With `network` (comm/netns.h), mpirun runs under its prefix with its
// arguments and environment added, and rank k under rank_prefix[k].
// In a build without MPI, or when `comm` is "tcp", there is no
// mpirun: the ranks are started directly with torchrun's variables (RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR 127.0.0.1, a free
// MASTER_PORT) in one process group, stop signals reach them the same way,
// a failed rank's peers are killed 10 s after it, and a rank a signal ended
// is named, with the hang diagnosis and notes(run_dir); `network` is then
// refused. Refuses nproc < 1 and being called under a launcher.
// `comm` is the backend the ranks will run (`--comm`, from the flags or a
// config file): "tcp" starts them without mpirun.
int launch_local_ranks(int nproc, int argc, char** argv, const LaunchNotes& notes = {},
                       const LaunchNetwork* network = nullptr, const std::string& comm = "");

// Ends the whole job with exit_code: MPI_Abort when MPI is running (so no
// peer rank is left waiting in a collective), otherwise _Exit. For the CLI's
// top-level error handler when world > 1: returning normally would reach
// MPI_Finalize, which waits for ranks that may be waiting for this one.
[[noreturn]] void abort_all_ranks(int exit_code);

}  // namespace zt
