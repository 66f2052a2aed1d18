#include "train/metrics.h"

#include "core/check.h"

namespace zt {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
    f_ = std::fopen(path.c_str(), append ? "a" : "w");
    ZT_CHECK(f_ != nullptr, "cannot create metrics file '%s'", path.c_str());
}

MetricsWriter::~MetricsWriter() {
    if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::ordered_json& line) {
    std::string s = line.dump() + "\n";
    ZT_CHECK(std::fwrite(s.data(), 1, s.size(), f_) == s.size() && std::fflush(f_) == 0,
             "writing metrics file '%s' failed (disk full?)", path_.c_str());
}

nlohmann::ordered_json mem_bytes_json(const MemoryLedger& ledger) {
    nlohmann::ordered_json j;
    for (int c = 0; c < int(MemCategory::count); c++)
        j[mem_category_name(MemCategory(c))] = ledger.current(MemCategory(c));
    j["peak"] = ledger.peak();
    return j;
}

}  // namespace zt
