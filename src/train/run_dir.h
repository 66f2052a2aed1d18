// The run directory a training run writes: one run at a time, and a history
// that a resume never rewrites behind the user's back.
//
// Invariant: at most one process writes a run directory. The run's rank 0
// holds an exclusive flock(2) on RUN_DIR/.lock (which records its pid and
// host) from before anything is written there until it exits; the kernel
// drops the lock however the process ends, SIGKILL included. With --nproc
// the launching process takes no lock: the rank 0 it starts does, exactly
// as under mpirun or srun, so no rank ever waits on its own launcher's lock.
//
// A resume in the directory of its checkpoint continues that history. From a
// checkpoint older than the newest one there it is refused unless asked to
// --fork (continue in a new run directory, leaving the old one as it is) or
// to --truncate (first delete the later checkpoints and metrics lines).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "train/config.h"
#include "train/resolve.h"

namespace zt {

// RUN_DIR/.lock, held while the object lives.
class RunDirLock {
  public:
    // Creates run_dir when needed and takes the lock; refuses, naming the
    // holder's pid and host, when another process holds it.
    explicit RunDirLock(const std::string& run_dir);
    // Removes the directory (and the parents it created) again when this
    // lock created it and the run wrote nothing into it: it failed before
    // its first line.
    ~RunDirLock();
    RunDirLock(const RunDirLock&) = delete;
    RunDirLock& operator=(const RunDirLock&) = delete;

    // The run has written into the directory: keep it whatever happens next.
    void keep() { kept_ = true; }

  private:
    std::string dir_;
    std::string path_;  // dir_/.lock
    int fd_ = -1;
    std::vector<std::filesystem::path> created_dirs_;  // by this lock, the run directory first
    bool kept_ = false;
};

// What a resume does to the run directory it continues; given once on the
// command line, never saved with the run's settings.
struct ResumeActions {
    std::string fork;       // --fork NEW_OUT: continue in this new run directory
    bool truncate = false;  // --truncate: delete what --out holds after the checkpoint
};

// Refuses (zt::Error, the message RunDirLock gives) when a run holds
// run_dir's lock now; takes no lock and creates nothing. For the launcher's
// check before it starts any rank.
void check_run_dir_not_locked(const std::string& run_dir);

// Before the run is resolved: with --fork NEW_OUT, the flags with --out set
// to NEW_OUT, after checking that NEW_OUT is a new directory and --resume
// names the checkpoint to continue. Without --fork, the flags as they are.
TrainConfig apply_fork(const TrainConfig& flags, const ResumeActions& actions);

// Rank 0, holding the lock: refuses --truncate outside an in-place resume,
// and an in-place resume from a checkpoint older than the newest complete
// step in --out unless --truncate is given (the message names both steps
// and both ways on).
void check_resume_point(const ResolvedRun& run, const ResumeActions& actions);

// Rank 0, holding the lock, before the resumed run appends anything:
// --truncate's removal of every checkpoint and metrics line after `step`.
void truncate_run_history(const std::string& run_dir, int64_t step);

}  // namespace zt
