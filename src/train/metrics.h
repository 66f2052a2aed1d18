// metrics.jsonl: one JSON object a line, written with one write(2) each so a
// crashed or interrupted run keeps every line it reached, and never half of
// one: a short write (a full disk) is cut back to the line's start, and a file
// continued by a resumed run first loses a torn last line that a dead run
// left (DESIGN.md defines the lines).
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "prof/memory.h"

namespace zt {

class MetricsWriter {
  public:
    // append: continue an existing file (a run resumed in its own directory).
    explicit MetricsWriter(const std::string& path, bool append = false);
    ~MetricsWriter();
    MetricsWriter(const MetricsWriter&) = delete;
    MetricsWriter& operator=(const MetricsWriter&) = delete;
    void write(const nlohmann::ordered_json& line);

  private:
    void drop_torn_tail();

    std::string path_;
    int fd_ = -1;
    int64_t end_ = 0;  // bytes of complete lines
};

// Rewrites metrics.jsonl (atomically) without what happened after `step`:
// step and eval lines of a later step, summary lines of runs that went past
// it, and run lines of runs that started at or after it. Lines that do not
// parse are kept; a torn last line is left for MetricsWriter to drop. Returns
// how many lines were removed (0 when the file does not exist).
int64_t truncate_metrics_after(const std::string& path, int64_t step);

// {"params":..,"grads":..,"optimizer":..,"activations":..,"buffers":..,"peak":..}
nlohmann::ordered_json mem_bytes_json(const MemoryLedger& ledger);

}  // namespace zt
