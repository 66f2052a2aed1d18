// Helpers shared by the test files: temporary directories, raw float files,
// running the zerotrain binary, and error measures that fail on NaN.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"

namespace zt_test {

// A fresh directory removed when the object goes out of scope.
class TempDir {
  public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "zt-test-XXXXXX").string();
        path_ = mkdtemp(tmpl.data()) ? tmpl : "";
        if (path_.empty()) ADD_FAILURE() << "mkdtemp failed";
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

template <typename T>
inline void write_raw(const std::string& path, const T* data, size_t n) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), std::streamsize(n * sizeof(T)));
    ASSERT_TRUE(f.good()) << "cannot write " << path;
}

inline std::vector<float> read_floats(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    EXPECT_TRUE(f.good()) << "cannot read " << path;
    std::vector<float> v(size_t(f.tellg()) / sizeof(float));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
    return v;
}

// ||a - b|| / ||b|| in double; NaN if either holds a NaN.
inline double rel_error(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = double(a[i]) - double(b[i]);
        num += d * d;
        den += double(b[i]) * double(b[i]);
    }
    if (den == 0) return std::sqrt(num);
    return std::sqrt(num / den);
}

struct CommandResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing its output and exit status.
inline CommandResult run_command(const std::string& cmd) {
    CommandResult r;
    std::FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int status = pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

inline std::string zerotrain_binary() {
    return ZT_BINARY;
}

// A run directory's metrics.jsonl, by kind of line.
struct RunLog {
    std::map<int64_t, nlohmann::json> steps;  // by step number; a later line of a step wins
    std::vector<nlohmann::json> evals;        // in file order
    nlohmann::json summary;                   // the last summary line (null if none)
};

inline RunLog read_run(const std::string& dir) {
    RunLog r;
    std::ifstream f(dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(f, line)) {
        auto j = nlohmann::json::parse(line);
        if (j["kind"] == "step") r.steps[j["step"].get<int64_t>()] = j;
        if (j["kind"] == "eval") r.evals.push_back(j);
        if (j["kind"] == "summary") r.summary = j;
    }
    return r;
}

// Runs fn, expects zt::Error, and checks its message holds every fragment.
template <class Fn>
void expect_error(Fn fn, const std::vector<std::string>& fragments) {
    try {
        fn();
        ADD_FAILURE() << "expected zt::Error, nothing was thrown";
    } catch (const zt::Error& e) {
        const std::string msg = e.what();
        for (const std::string& f : fragments)
            EXPECT_NE(msg.find(f), std::string::npos) << "message lacks '" << f << "': " << msg;
    }
}
inline std::string source_dir() {
    return ZT_SOURCE_DIR;
}

// A JSON object's body that `load` must refuse, with what its message names.
struct JsonErrorCase {
    std::string json;
    std::vector<std::string> fragments;
};

// Writes each case to its own file under dir and expects load(path) to throw
// zt::Error naming every fragment and the file.
template <class Load>
void expect_json_errors(const std::string& dir, const std::vector<JsonErrorCase>& cases,
                        Load load) {
    int k = 0;
    for (const JsonErrorCase& c : cases) {
        const std::string path = dir + "/case" + std::to_string(k++) + ".json";
        std::ofstream(path) << "{" << c.json << "}";
        std::vector<std::string> fragments = c.fragments;
        fragments.push_back(path);
        SCOPED_TRACE(c.json);
        expect_error([&] { load(path); }, fragments);
    }
}

// tests/hf/reference_model.py's logits (PyTorch) for the export in hf_dir on
// `tokens` (batch B) as rows; dir holds the files passed between them.
inline std::vector<float> hf_reference_logits(const std::string& hf_dir, const std::string& dir,
                                              const std::vector<int32_t>& tokens, int B) {
    write_raw(dir + "/tokens.bin", tokens.data(), tokens.size());
    auto r =
        run_command("/usr/bin/python3 " + source_dir() + "/tests/hf/reference_model.py " + hf_dir +
                    " " + dir + "/tokens.bin " + std::to_string(B) + " " + dir + "/logits.bin");
    EXPECT_EQ(r.exit_code, 0) << "tests/hf/reference_model.py failed:\n" << r.output;
    if (r.exit_code != 0) return {};
    return read_floats(dir + "/logits.bin");
}

// Runs `cmd` in the background through a script writing its output to `log`
// and its exit code to `log`.rc (so that no shell's own command line names
// the run: tests signal a run's processes by a pattern of its arguments);
// true once `ready` holds, false after timeout_s.
inline bool start_and_wait_for(const std::string& cmd, const std::string& log,
                               const std::function<bool()>& ready, double timeout_s) {
    std::ofstream(log + ".sh") << cmd << " > " << log << " 2>&1\necho $? > " << log << ".rc\n";
    if (std::system(("sh " + log + ".sh &").c_str()) != 0) return false;
    auto t0 = std::chrono::steady_clock::now();
    while (!ready()) {
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >
            timeout_s)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

// The exit code of a run started by start_and_wait_for, or -1 after timeout_s.
inline int wait_exit_code(const std::string& log, double timeout_s) {
    namespace fs = std::filesystem;
    auto t0 = std::chrono::steady_clock::now();
    while (!fs::exists(log + ".rc") || fs::file_size(log + ".rc") == 0) {
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >
            timeout_s)
            return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    int rc = -1;
    std::ifstream(log + ".rc") >> rc;
    return rc;
}

}  // namespace zt_test
