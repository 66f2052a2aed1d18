// metrics.jsonl: one JSON object a line, flushed as written so a crashed or
// interrupted run keeps every line it reached (DESIGN.md defines the lines).
#pragma once

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
    std::string path_;
    std::FILE* f_ = nullptr;
};

// {"params":..,"grads":..,"optimizer":..,"activations":..,"buffers":..,"peak":..}
nlohmann::ordered_json mem_bytes_json(const MemoryLedger& ledger);

}  // namespace zt
