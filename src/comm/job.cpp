// The notes a --nproc job's ranks leave for their launcher (see job.h).
#include "comm/job.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace zt {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

void write_note(const std::string& name, const json& j) {
    const std::string dir = job_dir();
    if (dir.empty()) return;
    try {
        const std::string path = (fs::path(dir) / name).string();
        {
            std::ofstream f(path + ".tmp", std::ios::trunc);
            f << j.dump() << "\n";
            if (!f) return;
        }
        std::error_code ec;
        fs::rename(path + ".tmp", path, ec);
    } catch (const std::exception&) {
    }
}

json read_note(const fs::path& path) {
    try {
        std::ifstream f(path);
        if (!f) return json();
        return json::parse(f);
    } catch (const std::exception&) {
        return json();
    }
}

}  // namespace

std::string job_dir() {
    const char* d = std::getenv(kJobDirEnv);
    return d ? d : "";
}

void job_note_rank(int rank) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    write_note(strprintf("rank-%d.json", rank),
               {{"rank", rank}, {"pid", int64_t(getpid())}, {"host", host}});
}

void job_note_run_dir(const std::string& run_dir) {
    write_note("run.json", {{"run_dir", run_dir}});
}

std::vector<JobRank> job_read_ranks(const std::string& dir) {
    std::vector<JobRank> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind("rank-", 0) != 0 || it->path().extension() != ".json") continue;
        json j = read_note(it->path());
        if (!j.is_object()) continue;
        JobRank r;
        r.rank = j.value("rank", -1);
        r.pid = j.value("pid", int64_t(0));
        r.host = j.value("host", std::string());
        if (r.rank >= 0 && r.pid > 0) out.push_back(r);
    }
    std::sort(out.begin(), out.end(),
              [](const JobRank& a, const JobRank& b) { return a.rank < b.rank; });
    return out;
}

std::string job_read_run_dir(const std::string& dir) {
    json j = read_note(fs::path(dir) / "run.json");
    return j.is_object() ? j.value("run_dir", std::string()) : "";
}

}  // namespace zt
