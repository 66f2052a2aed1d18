#include "lab/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "comm/communicator.h"
#include "comm/spawn.h"
#include "core/check.h"
#include "lab/jsonl.h"
#include "model/config.h"
#include "zero/estimate.h"

namespace fs = std::filesystem;

namespace zt {

namespace {

// ---- the matrix file ----------------------------------------------------------------

// The matrix's keys; each may be one value or a list of values (an axis).
const std::vector<std::string> kMatrixKeys = {
    "name",       "stages",         "models",  "world_sizes", "bandwidth_gbps",
    "latency_us", "bandwidth_mode", "seq_len", "micro_batch", "grad_accum",
    "steps",      "precision",      "device",  "data"};

// The values of `key`: a list, or one value as a list of one.
std::vector<nlohmann::json> axis_values(const nlohmann::json& j, const std::string& key,
                                        const std::string& path, nlohmann::json fallback) {
    if (!j.contains(key)) return {fallback};
    const nlohmann::json& v = j[key];
    if (!v.is_array()) return {v};
    ZT_CHECK(!v.empty(), "%s: \"%s\" is an empty list; give at least one value", path.c_str(),
             key.c_str());
    return std::vector<nlohmann::json>(v.begin(), v.end());
}

std::vector<int> int_axis(const nlohmann::json& j, const std::string& key, const std::string& path,
                          int fallback, int lo, int hi) {
    std::vector<int> out;
    for (const nlohmann::json& v : axis_values(j, key, path, fallback)) {
        ZT_CHECK(v.is_number_integer(), "%s: \"%s\": %s is not an integer", path.c_str(),
                 key.c_str(), v.dump().c_str());
        const int64_t x = v.get<int64_t>();
        ZT_CHECK(x >= lo && x <= hi, "%s: \"%s\": %lld is out of range; expected %d to %d",
                 path.c_str(), key.c_str(), (long long)x, lo, hi);
        out.push_back(int(x));
    }
    return out;
}

std::vector<double> number_axis(const nlohmann::json& j, const std::string& key,
                                const std::string& path, const char* meaning) {
    std::vector<double> out;
    for (const nlohmann::json& v : axis_values(j, key, path, 0)) {
        ZT_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= 0,
                 "%s: \"%s\": %s is not a number >= 0 (%s)", path.c_str(), key.c_str(),
                 v.dump().c_str(), meaning);
        out.push_back(v.get<double>());
    }
    return out;
}

std::vector<std::string> string_axis(const nlohmann::json& j, const std::string& key,
                                     const std::string& path, const std::string& fallback,
                                     const std::vector<std::string>& allowed) {
    std::vector<std::string> out;
    for (const nlohmann::json& v : axis_values(j, key, path, fallback)) {
        ZT_CHECK(v.is_string() && !v.get<std::string>().empty(),
                 "%s: \"%s\": %s is not a non-empty string", path.c_str(), key.c_str(),
                 v.dump().c_str());
        const std::string s = v.get<std::string>();
        if (!allowed.empty()) {
            std::string list;
            for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
            ZT_CHECK(std::find(allowed.begin(), allowed.end(), s) != allowed.end(),
                     "%s: \"%s\": '%s' is not one of %s", path.c_str(), key.c_str(), s.c_str(),
                     list.c_str());
        }
        out.push_back(s);
    }
    return out;
}

// A number as the shortest text that reads back the same: 0.5, 10, 2.5.
std::string short_number(double x) {
    return strprintf("%g", x);
}

// A file name's stem, kept to letters, digits, '.', '_' and '-'.
std::string name_part(const std::string& s) {
    std::string stem = fs::path(s).stem().string();
    if (stem.empty()) stem = s;
    for (char& c : stem)
        if (!std::isalnum((unsigned char)c) && c != '.' && c != '_' && c != '-') c = '_';
    return stem;
}

}  // namespace

std::string SweepCase::name() const {
    std::string n = strprintf(
        "%s-z%d-w%d-bw%sg-lat%sus-%s-mb%d-t%d-ga%d-s%d", name_part(model).c_str(), zero_stage,
        world_size, short_number(bandwidth_gbps).c_str(), short_number(latency_us).c_str(),
        precision.c_str(), micro_batch, seq_len, grad_accum, steps);
    if (bandwidth_mode != "simulated") n += "-" + bandwidth_mode;
    if (device != "cpu") n += "-" + device;
    if (data != "synthetic") n += "-d" + name_part(data);
    return n;
}

std::vector<std::string> SweepCase::train_args(const std::string& run_dir) const {
    const bool netns = bandwidth_mode == "netns";
    // One evaluation batch: the run always evaluates at its last step, and
    // the sweep measures training.
    const int eval_tokens = world_size * micro_batch * seq_len;
    return {"train",
            "--model",
            model,
            "--data",
            data,
            "--zero-stage",
            std::to_string(zero_stage),
            "--nproc",
            std::to_string(world_size),
            "--device",
            device,
            "--precision",
            precision,
            "--seq-len",
            std::to_string(seq_len),
            "--micro-batch",
            std::to_string(micro_batch),
            "--grad-accum",
            std::to_string(grad_accum),
            "--steps",
            std::to_string(steps),
            netns ? "--netns-bandwidth-gbps" : "--sim-bandwidth-gbps",
            short_number(bandwidth_gbps),
            netns ? "--netns-latency-us" : "--sim-latency-us",
            short_number(latency_us),
            "--eval-tokens",
            std::to_string(eval_tokens),
            "--sample-tokens",
            "0",
            "--no-save",
            "--out",
            run_dir};
}

SweepMatrix read_sweep_matrix(const std::string& path) {
    std::ifstream in(path);
    ZT_CHECK(in.good(), "--matrix '%s': cannot open: %s", path.c_str(), std::strerror(errno));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        ZT_FAIL("--matrix '%s': not valid JSON: %s", path.c_str(), e.what());
    }
    ZT_CHECK(j.is_object(),
             "--matrix '%s': expected a JSON object of axes (DESIGN.md's sweep "
             "matrix), found %s",
             path.c_str(), j.type_name());
    for (auto it = j.begin(); it != j.end(); ++it) {
        std::string keys;
        for (const std::string& k : kMatrixKeys) keys += (keys.empty() ? "" : ", ") + k;
        ZT_CHECK(std::find(kMatrixKeys.begin(), kMatrixKeys.end(), it.key()) != kMatrixKeys.end(),
                 "%s: unknown key \"%s\"; a matrix has %s", path.c_str(), it.key().c_str(),
                 keys.c_str());
    }
    ZT_CHECK(j.contains("models"), "%s: \"models\" is required (presets or config.json paths)",
             path.c_str());

    SweepMatrix m;
    m.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>()
                                                         : fs::path(path).stem().string();
    const auto models = string_axis(j, "models", path, "", {});
    const auto stages = int_axis(j, "stages", path, 0, 0, 3);
    const auto worlds = int_axis(j, "world_sizes", path, 1, 1, 1024);
    const auto bandwidths = number_axis(j, "bandwidth_gbps", path, "Gbit/s; 0 = unlimited");
    const auto latencies = number_axis(j, "latency_us", path, "microseconds per message");
    const auto modes = string_axis(j, "bandwidth_mode", path, "simulated", {"simulated", "netns"});
    const auto precisions = string_axis(j, "precision", path, "fp32", {"fp32", "bf16"});
    const auto devices = string_axis(j, "device", path, "cpu", {"cpu", "cuda"});
    const auto datas = string_axis(j, "data", path, "synthetic", {});
    const auto seq_lens = int_axis(j, "seq_len", path, SweepCase().seq_len, 1, 1 << 20);
    const auto micro_batches =
        int_axis(j, "micro_batch", path, SweepCase().micro_batch, 1, 1 << 16);
    const auto accums = int_axis(j, "grad_accum", path, SweepCase().grad_accum, 1, 1 << 16);
    const auto steps = int_axis(j, "steps", path, SweepCase().steps, 2, 1 << 24);

    std::set<std::string> names;
    for (const auto& model : models)
        for (int stage : stages)
            for (int world : worlds)
                for (double bw : bandwidths)
                    for (double lat : latencies)
                        for (const auto& mode : modes)
                            for (const auto& precision : precisions)
                                for (const auto& device : devices)
                                    for (const auto& data : datas)
                                        for (int t : seq_lens)
                                            for (int mb : micro_batches)
                                                for (int ga : accums)
                                                    for (int s : steps) {
                                                        SweepCase c;
                                                        c.model = model;
                                                        c.zero_stage = stage;
                                                        c.world_size = world;
                                                        c.bandwidth_gbps = bw;
                                                        c.latency_us = lat;
                                                        c.bandwidth_mode = mode;
                                                        c.precision = precision;
                                                        c.device = device;
                                                        c.data = data;
                                                        c.seq_len = t;
                                                        c.micro_batch = mb;
                                                        c.grad_accum = ga;
                                                        c.steps = s;
                                                        if (names.insert(c.name()).second)
                                                            m.cases.push_back(c);
                                                    }
    return m;
}

// ---- one case's outcome ---------------------------------------------------------------

namespace {

nlohmann::json case_params(const SweepCase& c) {
    return {{"model", c.model},
            {"zero_stage", c.zero_stage},
            {"world_size", c.world_size},
            {"bandwidth_gbps", c.bandwidth_gbps},
            {"latency_us", c.latency_us},
            {"bandwidth_mode", c.bandwidth_mode},
            {"precision", c.precision},
            {"device", c.device},
            {"data", c.data},
            {"seq_len", c.seq_len},
            {"micro_batch", c.micro_batch},
            {"grad_accum", c.grad_accum},
            {"steps", c.steps}};
}

double median_of(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char* const kMemKeys[] = {"params", "grads", "optimizer", "activations", "buffers", "peak"};

nlohmann::json estimate_json(const MemoryEstimate& e) {
    return {{"params", e.params},           {"grads", e.grads},     {"optimizer", e.optimizer},
            {"activations", e.activations}, {"buffers", e.buffers}, {"peak", e.peak()}};
}

// zerotrain estimate's numbers for the run as it resolved its settings.
MemoryEstimate estimate_for_run(const nlohmann::json& run_line, const std::string& source) {
    const nlohmann::json& cfg = run_line.at("config");
    EstimateInput in;
    in.model = model_config_from_json(cfg.at("model_config"), source);
    in.world = run_line.at("world_size").get<int>();
    in.stage = run_line.at("zero_stage").get<int>();
    in.precision = cfg.at("precision").get<std::string>();
    const std::string grad_dtype = cfg.value("grad_accum_dtype", std::string("auto"));
    in.grad_dtype = grad_dtype == "auto" ? "" : grad_dtype;
    in.micro_batch = cfg.at("micro_batch").get<int>();
    in.seq_len = cfg.at("seq_len").get<int>();
    in.offload_optimizer = cfg.value("offload_optimizer", std::string("none"));
    in.offload_params = cfg.value("offload_params", std::string("none"));
    in.recompute = parse_recompute(cfg.value("recompute", std::string("none")));
    in.prefetch_elements = cfg.value("prefetch_bucket_size", in.prefetch_elements);
    in.reduce_bucket_elements = cfg.value("reduce_bucket_size", in.reduce_bucket_elements);
    in.gather_bucket_elements = cfg.value("allgather_bucket_size", in.gather_bucket_elements);
    return estimate_memory(in);
}

// The result line of a finished run: the medians over its steps after the
// first (which pays for first-touch allocation), its memory and estimate's.
nlohmann::json measure_run(const SweepCase& c, const std::string& run_dir) {
    const std::string path = run_dir + "/metrics.jsonl";
    const std::vector<nlohmann::json> lines = read_jsonl(path);
    nlohmann::json run_line, summary;
    std::vector<double> step_s, comm_s, exposed_s, overlap, bytes, messages, tokens_per_s;
    const std::pair<const char*, CommOp> ops[] = {{"all_reduce", CommOp::all_reduce},
                                                  {"reduce_scatter", CommOp::reduce_scatter},
                                                  {"all_gather", CommOp::all_gather}};
    bool first_step = true;
    for (const nlohmann::json& l : lines) {
        const std::string kind = l.value("kind", "");
        if (kind == "run") run_line = l;
        if (kind == "summary") summary = l;
        if (kind != "step") continue;
        if (first_step) {
            first_step = false;
            continue;
        }
        const nlohmann::json& t = l.at("time_s");
        step_s.push_back(l.at("step_s").get<double>());
        tokens_per_s.push_back(l.at("tokens_per_s").get<double>());
        comm_s.push_back(t.at("comm").get<double>());
        exposed_s.push_back(t.at("comm_exposed").get<double>());
        if (l.contains("overlap")) overlap.push_back(l["overlap"].get<double>());
        double b = 0, msgs = 0;
        for (const auto& [name, op] : ops) {
            b += l.at("comm_bytes").value(name, 0.0);
            msgs += l.at("comm_calls").value(name, 0.0) * comm_ring_steps(op, c.world_size);
        }
        bytes.push_back(b);
        messages.push_back(msgs);
    }
    ZT_CHECK(!run_line.is_null() && !summary.is_null() && !step_s.empty(),
             "%s: no run line, summary line or timed step (a run of %d steps has %zu timed)",
             path.c_str(), c.steps, step_s.size());

    nlohmann::json r;
    r["n_params"] = run_line.value("n_params", int64_t(0));
    r["tokens_per_s"] = median_of(tokens_per_s);
    r["step_s"] = median_of(step_s);
    const double comm = median_of(comm_s), b = median_of(bytes), msgs = median_of(messages);
    r["comm_s"] = comm;
    r["comm_exposed_s"] = median_of(exposed_s);
    r["overlap"] = overlap.empty() ? nlohmann::json(nullptr) : nlohmann::json(median_of(overlap));
    r["bytes_per_step"] = b;
    r["messages_per_step"] = msgs;
    r["achieved_gbps"] = comm > 0 ? b * 8 / comm / 1e9 : 0.0;
    // The alpha-beta model; nothing to predict on an unlimited, instant link.
    const double beta_s = c.bandwidth_gbps > 0 ? b * 8 / (c.bandwidth_gbps * 1e9) : 0;
    r["predicted_comm_s"] = c.bandwidth_gbps > 0 || c.latency_us > 0
                                ? nlohmann::json(beta_s + c.latency_us * 1e-6 * msgs)
                                : nlohmann::json(nullptr);
    // The rank with the largest peak.
    nlohmann::json mem = summary.at("mem_bytes");
    for (const nlohmann::json& rank : summary.value("ranks", nlohmann::json::array()))
        if (rank.at("mem_bytes").at("peak").get<int64_t>() > mem.at("peak").get<int64_t>())
            mem = rank.at("mem_bytes");
    r["peak_mem_bytes"] = mem.at("peak");
    const MemoryEstimate e = estimate_for_run(run_line, path);
    r["estimate_peak_bytes"] = e.peak();
    nlohmann::json measured;
    for (const char* k : kMemKeys) measured[k] = mem.value(k, int64_t(0));
    r["mem_bytes"] = measured;
    r["estimate_mem_bytes"] = estimate_json(e);
    return r;
}

bool has_summary(const std::string& run_dir) {
    const std::string path = run_dir + "/metrics.jsonl";
    if (!fs::exists(path)) return false;
    for (const nlohmann::json& l : read_jsonl(path, /*quiet=*/true))
        if (l.value("kind", "") == "summary") return true;
    return false;
}

nlohmann::json read_json_object(const std::string& path) {
    std::ifstream in(path);
    if (!in) return nullptr;
    try {
        nlohmann::json j = nlohmann::json::parse(in);
        return j.is_object() ? j : nlohmann::json(nullptr);
    } catch (const nlohmann::json::exception&) {
        return nullptr;
    }
}

void write_json_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        out.flush();
        ZT_CHECK(out.good(), "cannot write %s: %s", tmp.c_str(), std::strerror(errno));
    }
    ZT_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename %s to %s: %s", tmp.c_str(),
             path.c_str(), std::strerror(errno));
}

// ---- running a case -------------------------------------------------------------------

std::string this_executable() {
    std::vector<char> exe(PATH_MAX + 1, '\0');
    const ssize_t n = readlink("/proc/self/exe", exe.data(), PATH_MAX);
    ZT_CHECK(n > 0, "cannot find this executable (/proc/self/exe): %s", std::strerror(errno));
    return std::string(exe.data(), size_t(n));
}

volatile sig_atomic_t g_sweep_stop = 0;
void on_stop_signal(int sig) {
    g_sweep_stop = sig;
}

// Runs `exe args...` with stdout and stderr into `log`; returns its exit
// status (128 + signal when a signal ended it).
int run_logged(const std::string& exe, const std::vector<std::string>& args,
               const std::string& log) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ZT_CHECK(fd >= 0, "cannot create %s: %s", log.c_str(), std::strerror(errno));
    std::vector<std::string> argv = {exe};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_t pid;
    try {
        pid = spawn_process(argv, fd);
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    // The case saw the terminal's Ctrl-C itself; a signal sent to this
    // process alone is passed on.
    return wait_process(pid, [pid] {
        if (g_sweep_stop) ::kill(pid, SIGTERM);
    });
}

// The error a failed case printed: its last "zerotrain: error:" line, else
// its last line, else its exit status.
std::string case_error(const std::string& log, int status) {
    std::ifstream in(log);
    std::string line, last, last_error;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        last = line;
        if (line.find("zerotrain: error:") != std::string::npos) last_error = line;
    }
    std::string what = !last_error.empty() ? last_error : last;
    const std::string prefix = "zerotrain: error: ";
    if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
    return strprintf("exit status %d%s%s", status, what.empty() ? "" : ": ", what.c_str());
}

std::string duration_text(double s) {
    if (s < 60) return strprintf("%.1fs", s);
    if (s < 3600) return strprintf("%dm%02ds", int(s) / 60, int(s) % 60);
    return strprintf("%dh%02dm", int(s) / 3600, int(s) % 3600 / 60);
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

enum class CaseState { finished, failed, pending };

struct CaseRecord {
    SweepCase c;
    CaseState state = CaseState::pending;
    nlohmann::json result;  // the result line (status ok or failed)
};

std::string case_dir(const SweepOptions& o, const SweepCase& c) {
    return o.out + "/" + c.name();
}

// What is on disk for the case: finished (its run has a summary line),
// failed (case.json says so), or still to run.
CaseRecord look_up(const SweepOptions& o, const SweepCase& c) {
    CaseRecord r{c, CaseState::pending, nullptr};
    const std::string dir = case_dir(o, c);
    if (has_summary(dir + "/run")) {
        r.state = CaseState::finished;
        return r;
    }
    nlohmann::json recorded = read_json_object(dir + "/case.json");
    if (!recorded.is_null() && recorded.value("status", "") == "failed") {
        r.state = CaseState::failed;
        r.result = recorded;
    }
    return r;
}

nlohmann::json result_line(const SweepOptions& o, const CaseRecord& rec) {
    const SweepCase& c = rec.c;
    nlohmann::json line = {{"case", c.name()}};
    line["status"] = rec.state == CaseState::finished ? "ok" : "failed";
    line["run_dir"] = c.name() + "/run";
    line.update(case_params(c));
    if (rec.state == CaseState::finished) {
        line.update(measure_run(c, case_dir(o, c) + "/run"));
    } else {
        line["error"] = rec.result.value("error", "did not finish");
    }
    return line;
}

// Runs one case from nothing; returns its record.
CaseRecord run_case(const SweepOptions& o, const std::string& exe, const SweepCase& c) {
    const std::string dir = case_dir(o, c);
    fs::create_directories(dir);
    fs::remove_all(dir + "/run");  // an unfinished run of a stopped sweep
    fs::remove(dir + "/case.json");
    const double t0 = now_s();
    const int status = run_logged(exe, c.train_args(dir + "/run"), dir + "/log.txt");
    CaseRecord r{c, CaseState::pending, nullptr};
    if (g_sweep_stop || status == 128 + SIGINT || status == 128 + SIGTERM) return r;
    nlohmann::json record = case_params(c);
    record["case"] = c.name();
    record["exit_status"] = status;
    record["elapsed_s"] = now_s() - t0;
    if (status == 0 && has_summary(dir + "/run")) {
        r.state = CaseState::finished;
        record["status"] = "ok";
    } else {
        r.state = CaseState::failed;
        record["status"] = "failed";
        record["error"] = case_error(dir + "/log.txt", status);
        r.result = record;
    }
    write_json_atomically(dir + "/case.json", record.dump(2) + "\n");
    return r;
}

// ---- the results ------------------------------------------------------------------------

const std::vector<std::string> kCsvColumns = {"case",
                                              "status",
                                              "model",
                                              "zero_stage",
                                              "world_size",
                                              "bandwidth_gbps",
                                              "latency_us",
                                              "bandwidth_mode",
                                              "precision",
                                              "device",
                                              "seq_len",
                                              "micro_batch",
                                              "grad_accum",
                                              "steps",
                                              "n_params",
                                              "tokens_per_s",
                                              "step_s",
                                              "comm_s",
                                              "comm_exposed_s",
                                              "overlap",
                                              "bytes_per_step",
                                              "messages_per_step",
                                              "achieved_gbps",
                                              "predicted_comm_s",
                                              "peak_mem_bytes",
                                              "estimate_peak_bytes",
                                              "mem_bytes.params",
                                              "mem_bytes.grads",
                                              "mem_bytes.optimizer",
                                              "mem_bytes.activations",
                                              "mem_bytes.buffers",
                                              "estimate_mem_bytes.params",
                                              "estimate_mem_bytes.grads",
                                              "estimate_mem_bytes.optimizer",
                                              "estimate_mem_bytes.activations",
                                              "estimate_mem_bytes.buffers",
                                              "error"};

std::string csv_field(const nlohmann::json& line, const std::string& column) {
    nlohmann::json v = line;
    size_t start = 0;
    while (true) {
        const size_t dot = column.find('.', start);
        const std::string key = column.substr(start, dot == std::string::npos ? dot : dot - start);
        if (!v.is_object() || !v.contains(key)) return "";
        v = v[key];
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    if (v.is_null()) return "";
    if (!v.is_string()) return v.dump();
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string quoted = "\"";
    for (char ch : s) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return quoted + "\"";
}

std::string results_csv(const std::vector<nlohmann::json>& lines) {
    std::string out;
    for (size_t i = 0; i < kCsvColumns.size(); i++) out += (i ? "," : "") + kCsvColumns[i];
    out += "\n";
    for (const nlohmann::json& l : lines) {
        for (size_t i = 0; i < kCsvColumns.size(); i++)
            out += (i ? "," : "") + csv_field(l, kCsvColumns[i]);
        out += "\n";
    }
    return out;
}

double mib(const nlohmann::json& v) {
    return v.is_number() ? v.get<double>() / double(1 << 20) : 0;
}

void print_table(const std::vector<nlohmann::json>& lines) {
    int w = 4;
    for (const nlohmann::json& l : lines) w = std::max(w, int(l.value("case", "").size()));
    std::printf("%-*s %6s %9s %8s %8s %8s %7s %9s %8s %9s %9s\n", w, "case", "status", "tok/s",
                "step s", "comm s", "exposed", "overlap", "MB/step", "Gbit/s", "peak MiB",
                "est MiB");
    for (const nlohmann::json& l : lines) {
        const std::string name = l.value("case", "");
        if (l.value("status", "") != "ok") {
            std::printf("%-*s %6s %s\n", w, name.c_str(), "FAILED", l.value("error", "").c_str());
            continue;
        }
        const nlohmann::json& ov = l["overlap"];
        std::printf("%-*s %6s %9.0f %8.3f %8.3f %8.3f %7s %9.2f %8.3f %9.1f %9.1f\n", w,
                    name.c_str(), "ok", l["tokens_per_s"].get<double>(), l["step_s"].get<double>(),
                    l["comm_s"].get<double>(), l["comm_exposed_s"].get<double>(),
                    ov.is_number() ? strprintf("%.2f", ov.get<double>()).c_str() : "-",
                    l["bytes_per_step"].get<double>() / 1e6, l["achieved_gbps"].get<double>(),
                    mib(l["peak_mem_bytes"]), mib(l["estimate_peak_bytes"]));
    }
}

}  // namespace

std::vector<nlohmann::json> read_sweep_results(const std::string& dir) {
    return read_jsonl(dir + "/results.jsonl");
}

int run_sweep(const SweepOptions& opts) {
    ZT_CHECK(!opts.out.empty(), "--out DIR is required: where the cases and results go");
    const SweepMatrix m = read_sweep_matrix(opts.matrix);
    ZT_CHECK(!fs::exists(opts.out) || fs::is_directory(opts.out),
             "--out '%s' exists and is not a directory", opts.out.c_str());
    fs::create_directories(opts.out);
    const std::string exe = opts.zerotrain.empty() ? this_executable() : opts.zerotrain;

    std::vector<CaseRecord> records;
    size_t to_run = 0;
    for (const SweepCase& c : m.cases) {
        records.push_back(look_up(opts, c));
        const CaseState s = records.back().state;
        if (s == CaseState::pending || (s == CaseState::failed && opts.retry_failed)) to_run++;
    }
    const size_t n = records.size(), done = n - to_run;
    std::printf("sweep %s: %zu cases, %zu to run, %zu already done%s (%s)\n", m.name.c_str(), n,
                to_run, done, opts.retry_failed ? " or retried" : "", opts.out.c_str());
    std::fflush(stdout);

    g_sweep_stop = 0;
    struct sigaction sa {
    }, old_int{}, old_term{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    const double t0 = now_s();
    size_t ran = 0;
    for (size_t i = 0; i < n && !g_sweep_stop; i++) {
        CaseRecord& rec = records[i];
        const bool run = rec.state == CaseState::pending ||
                         (rec.state == CaseState::failed && opts.retry_failed);
        if (!run) continue;
        const double c0 = now_s();
        rec = run_case(opts, exe, rec.c);
        if (rec.state == CaseState::pending) break;  // stopped by a signal
        ran++;
        const double elapsed = now_s() - t0;
        const double eta = elapsed / double(ran) * double(to_run - ran);
        std::printf("sweep: case %zu/%zu %s %s (%s) | elapsed %s | eta %s%s%s\n", done + ran, n,
                    rec.c.name().c_str(), rec.state == CaseState::finished ? "ok" : "FAILED",
                    duration_text(now_s() - c0).c_str(), duration_text(elapsed).c_str(),
                    duration_text(eta).c_str(), rec.state == CaseState::failed ? ": " : "",
                    rec.state == CaseState::failed ? rec.result.value("error", "").c_str() : "");
        std::fflush(stdout);
    }
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);

    // The results of every case done so far; a stopped sweep's others are
    // pending.
    std::vector<nlohmann::json> lines;
    int failed = 0;
    for (const CaseRecord& rec : records) {
        if (rec.state == CaseState::pending) continue;
        lines.push_back(result_line(opts, rec));
        if (rec.state == CaseState::failed) failed++;
    }
    std::string jsonl;
    for (const nlohmann::json& l : lines) jsonl += l.dump() + "\n";
    write_json_atomically(opts.out + "/results.jsonl", jsonl);
    write_json_atomically(opts.out + "/results.csv", results_csv(lines));
    print_table(lines);
    std::printf(
        "sweep %s: %zu ok, %d failed%s; results in %s/results.jsonl and results.csv\n",
        m.name.c_str(), lines.size() - size_t(failed), failed,
        failed && !opts.retry_failed ? " (run again with --retry-failed to retry them)" : "",
        opts.out.c_str());
    if (g_sweep_stop) {
        std::printf(
            "sweep: stopped by %s with %zu of %zu cases still to run; the same command "
            "continues with the next\n",
            g_sweep_stop == SIGINT ? "SIGINT" : "SIGTERM", n - lines.size(), n);
        return 128 + int(g_sweep_stop);
    }
    return failed;
}

}  // namespace zt
