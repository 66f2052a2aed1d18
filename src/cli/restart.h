// `zerotrain train --nproc N --max-restarts R`: the launching process runs the
// job again with --resume auto when a rank died or hung, at most R times.
// `zerotrain supervise --max-restarts R -- LAUNCHER ...` does the same for an
// outside launcher's command (cli/cmd_supervise.cpp).
//
// A failed attempt is restarted only when its ranks did not fail by
// themselves: a rank died (mpirun or the launcher names it, with its signal)
// or a collective timed out (RUN_DIR/hang/timeout.json, written during this
// attempt). Never restarted: a run that diverged (the non-finite gradient
// stop), a stop by SIGINT/SIGTERM (the launcher's 128 + signal), any error a
// rank raised itself (a bad setting, bad data), and a first attempt that
// failed before its first step (whatever failed there would fail again).
//
// Each restart appends {"kind":"restart","restart":k,"after_step":S,
// "exit_status":..,"reason":..,"resumed_from":DIR or null} to
// RUN_DIR/metrics.jsonl before the next attempt appends its own lines, and
// says so on stderr. With no complete checkpoint yet, the next attempt starts
// at step 0: the failed attempt's metrics.jsonl is kept as
// RUN_DIR/metrics-attempt-K.jsonl (a fresh start refuses a directory that
// holds a metrics.jsonl), and the restart line, written there too, is
// appended to the new metrics.jsonl once that attempt ends.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/launch.h"
#include "train/config.h"

namespace zt::cli {

// One launch of the job with these arguments (argv[0] the program); `seen`
// is to be called with the run directory when the launcher reports a failed
// job's rank at fault (its LaunchNotes). Returns the launcher's exit status.
using LaunchAttempt =
    std::function<int(int argc, char** argv, const std::function<void(const std::string&)>& seen)>;

struct RestartOptions {
    int max_restarts = 0;
    int nproc = 0;  // 0: the world size RUN_DIR/metrics.jsonl's run line records
    // Where the run writes when the command says (--out, or --fork's NEW_OUT);
    // "" when rank 0 picks the default, learned from the launcher's report.
    std::string run_dir;
};

// Refuses --max-restarts > 0 where no launcher of ours can restart the job:
// without --nproc, or under an outside launcher (mpirun, srun).
void check_restart_launch(const TrainConfig& cfg);

// Runs the job, and again after each restartable failure while restarts are
// left. Returns the last attempt's exit status.
int run_with_restarts(const RestartOptions& opt, int argc, char** argv,
                      const LaunchAttempt& launch);

// A restart's command line: argv without --resume, --out, --fork and
// --truncate (and their values), then --resume auto --out RUN_DIR.
std::vector<std::string> restart_args(const std::vector<std::string>& argv,
                                      const std::string& run_dir);

}  // namespace zt::cli
