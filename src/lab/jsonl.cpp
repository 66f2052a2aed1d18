#include "lab/jsonl.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/check.h"

namespace zt {

std::vector<nlohmann::json> read_jsonl(const std::string& path, bool quiet) {
    std::ifstream in(path);
    ZT_CHECK(in.good(), "cannot read %s: %s", path.c_str(), std::strerror(errno));
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) lines.push_back(line);
    std::vector<nlohmann::json> out;
    for (size_t i = 0; i < lines.size(); i++) {
        try {
            out.push_back(nlohmann::json::parse(lines[i]));
        } catch (const nlohmann::json::exception& e) {
            ZT_CHECK(i + 1 == lines.size(), "%s:%zu: not a JSON line: %s", path.c_str(), i + 1,
                     e.what());
            if (!quiet)
                std::fprintf(stderr,
                             "zerotrain: warning: %s ends in a torn line of %zu bytes (a run "
                             "that died while writing it); it is skipped\n",
                             path.c_str(), lines[i].size());
        }
    }
    return out;
}

}  // namespace zt
