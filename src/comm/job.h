// What the ranks of a `--nproc` job tell the process that launched them, so
// that it can name a rank that died or hung after mpirun returns.
//
// launch_local_ranks makes a private directory and passes its path to the
// ranks in ZT_JOB_DIR. There the ranks write
//   rank-K.json  {"rank":K,"pid":P,"host":H}   when the communicator starts
//   run.json     {"run_dir":"RUN_DIR"}          rank 0, when given the run directory
// each to a .tmp name renamed into place. Without ZT_JOB_DIR (an outside
// launcher) nothing is written. The writers never throw: a job that cannot
// leave these notes still trains, and its launcher then names less.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zt {

constexpr const char* kJobDirEnv = "ZT_JOB_DIR";

// ZT_JOB_DIR, or "" when this process was not started by --nproc.
std::string job_dir();

void job_note_rank(int rank);
void job_note_run_dir(const std::string& run_dir);

struct JobRank {
    int rank = -1;
    int64_t pid = 0;
    std::string host;
};

// The launcher's side: what the ranks wrote into `dir` (by rank; absent
// ones skipped), and the run directory ("" when rank 0 did not get that far).
std::vector<JobRank> job_read_ranks(const std::string& dir);
std::string job_read_run_dir(const std::string& dir);

}  // namespace zt
