// JSON Lines files as the lab reads them: metrics.jsonl and results.jsonl.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zt {

// Every line of `path` as JSON. A last line that does not parse is a record
// torn by a run that died while writing it: it is skipped, with a warning on
// stderr unless `quiet`. Any other line that does not parse is refused with
// the file and line number, as is a file that cannot be read.
std::vector<nlohmann::json> read_jsonl(const std::string& path, bool quiet = false);

}  // namespace zt
