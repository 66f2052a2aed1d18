// CPU AdamW throughput: zerotrain's fused step (each code path) against the
// plain loop it replaced and torch.optim.AdamW, next to this machine's memory
// bandwidth (a STREAM triad), all in one invocation with the same threads.
//
// AdamW is memory-bound: per parameter the fp32 step moves 28 bytes (param
// read+write 8, grad read 4, m read+write 8, v read+write 8), so its ceiling
// is triad bandwidth / 28 B. The triad counts 12 bytes per element the way
// STREAM does (b and c read, a written; a's write-allocate read not counted).
// A single core's triad is bounded by how many misses it keeps in flight,
// and AdamW's five in-place streams keep more (with no write-allocate reads),
// so one thread can pass 100% of its triad. Rows give params/s from the
// median step and from the fastest. Implementations run one after another,
// each freeing its memory before the next allocates, so 1B parameters fit in
// 24 GB.
//
// Usage: zt_bench_cpu_adam --params N [--threads T] [--steps S] [--json]
//            [--no-torch] [--torch-script bench/torch_adam.py]
//   N: an integer or with a suffix: 10M, 100M, 1B (K, M, B/G are powers of 1000).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "ops/adamw.h"
#include "ops/cast.h"

namespace {

using zt::bf16;
using zt::cpu::AdamWPath;
using json = nlohmann::json;

struct Options {
    int64_t params = 0;
    int threads = 0;
    int steps = 5;
    bool json_lines = false;
    bool torch = true;
    std::string torch_script = ZT_SOURCE_DIR "/bench/torch_adam.py";
};

int64_t parse_count(const std::string& s) {
    char* end = nullptr;
    const double x = std::strtod(s.c_str(), &end);
    double unit = 1;
    const std::string suffix(end);
    if (suffix == "K" || suffix == "k")
        unit = 1e3;
    else if (suffix == "M" || suffix == "m")
        unit = 1e6;
    else if (suffix == "B" || suffix == "b" || suffix == "G" || suffix == "g")
        unit = 1e9;
    else
        ZT_CHECK(suffix.empty(), "--params %s: expected a count like 10M, 100M, 1B or 12345",
                 s.c_str());
    ZT_CHECK(end != s.c_str() && x * unit >= 1, "--params %s: expected a positive count",
             s.c_str());
    return int64_t(x * unit);
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            ZT_CHECK(i + 1 < argc, "%s needs a value", a.c_str());
            return argv[++i];
        };
        if (a == "--params")
            o.params = parse_count(value());
        else if (a == "--threads")
            o.threads = std::atoi(value().c_str());
        else if (a == "--steps")
            o.steps = std::atoi(value().c_str());
        else if (a == "--json")
            o.json_lines = true;
        else if (a == "--no-torch")
            o.torch = false;
        else if (a == "--torch-script")
            o.torch_script = value();
        else
            ZT_CHECK(false,
                     "unknown option %s; usage: --params N [--threads T] [--steps S] "
                     "[--json] [--no-torch] [--torch-script PATH]",
                     a.c_str());
    }
    ZT_CHECK(o.params > 0, "--params N is required (e.g. --params 100M)");
    ZT_CHECK(o.steps >= 1, "--steps must be >= 1, got %d", o.steps);
    if (o.threads <= 0) o.threads = omp_get_max_threads();
    return o;
}

// A 64-byte aligned array, first touched by the threads that will use it
// (same static split as the kernels) so its pages sit where they run.
template <class T>
struct Buffer {
    std::unique_ptr<T[], decltype(&std::free)> data{nullptr, &std::free};
    explicit Buffer(int64_t n, T fill) {
        const size_t bytes = (size_t(n) * sizeof(T) + 63) / 64 * 64;
        data.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
        ZT_CHECK(data != nullptr, "cannot allocate %.2f GB", double(bytes) / 1e9);
        T* p = data.get();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) p[i] = fill;
    }
    T* get() {
        return data.get();
    }
};

struct Timing {
    double median = 0, best = 0;
};

// One untimed call, then `steps` timed ones.
Timing time_steps(int steps, const std::function<void(int64_t)>& step) {
    step(1);
    std::vector<double> t;
    for (int s = 0; s < steps; s++) {
        const auto t0 = std::chrono::steady_clock::now();
        step(s + 2);
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return {t[t.size() / 2], t.front()};
}

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown";
}

struct Report {
    bool json_lines;
    std::vector<json> rows;
    void add(json row) {
        if (json_lines) std::printf("%s\n", row.dump().c_str());
        std::fflush(stdout);
        rows.push_back(std::move(row));
    }
};

// a = b + s c over arrays as large as the AdamW state (and at least 2 GB
// together, past any cache), best of `steps`; bytes per second, STREAM's way.
double triad_bandwidth(int64_t params, int steps) {
    const int64_t n = std::max<int64_t>(params * 4 / 3, (int64_t(1) << 31) / 12);
    Buffer<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    float *pa = a.get(), *pb = b.get(), *pc = c.get();
    const float s = 3.0f;
    const Timing t = time_steps(steps, [&](int64_t) {
#pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) pa[i] = pb[i] + s * pc[i];
    });
    ZT_CHECK(pa[n / 2] == 7.0f, "triad computed %g, expected 7", double(pa[n / 2]));
    return 12.0 * double(n) / t.best;
}

zt::cpu::AdamWHyper hyper(int64_t step) {
    zt::cpu::AdamWHyper h;
    h.lr = 1e-3f;
    h.beta1 = 0.9f;
    h.beta2 = 0.95f;
    h.weight_decay = 0.1f;
    h.step = step;
    return h;
}

json adam_row(const std::string& impl, const Options& o, double bytes_per_param, const Timing& t) {
    return {{"impl", impl},
            {"params", o.params},
            {"threads", o.threads},
            {"bytes_per_param", bytes_per_param},
            {"seconds_median", t.median},
            {"seconds_best", t.best},
            {"params_per_s", double(o.params) / t.median},
            {"params_per_s_best", double(o.params) / t.best},
            {"gb_per_s", bytes_per_param * double(o.params) / t.median / 1e9}};
}

// Ours and the plain loop: fp32 grads first, then bf16 grads with the bf16
// compute copy written back (the mixed-precision step ShardOptimizer runs).
void bench_zerotrain(const Options& o, Report& r) {
    const int64_t n = o.params;
    Buffer<float> p(n, 0.5f), m(n, 0.01f), v(n, 1e-4f);
    {
        Buffer<float> g(n, 0.1f);
        for (AdamWPath path :
             {AdamWPath::automatic, AdamWPath::avx512, AdamWPath::avx2, AdamWPath::scalar}) {
            if (!zt::cpu::adamw_path_supported(path)) continue;
            const std::string impl =
                path == AdamWPath::automatic
                    ? std::string("zerotrain adamw_step (automatic: ") +
                          zt::cpu::adamw_path_name() + ")"
                    : std::string("zerotrain adamw_step (") + zt::cpu::adamw_path_name(path) + ")";
            r.add(adam_row(impl, o, 28, time_steps(o.steps, [&](int64_t step) {
                               zt::cpu::adamw_step(p.get(), g.get(), m.get(), v.get(), nullptr, n,
                                                   hyper(step), true, path);
                           })));
        }
        r.add(adam_row(
            "plain adamw_update (reference loop)", o, 28, time_steps(o.steps, [&](int64_t step) {
                zt::cpu::adamw_update(p.get(), g.get(), m.get(), v.get(), n, hyper(step), true);
            })));
    }
    Buffer<bf16> g(n, zt::f32_to_bf16(0.1f)), out(n, bf16{0});
    r.add(adam_row("zerotrain adamw_step bf16 grads + bf16 write-back", o, 28,
                   time_steps(o.steps, [&](int64_t step) {
                       zt::cpu::adamw_step(p.get(), g.get(), 0.5f, m.get(), v.get(), out.get(), n,
                                           hyper(step), true);
                   })));
    // The old ShardOptimizer step: the update, then a second pass to cast.
    r.add(adam_row("plain adamw_update bf16 grads + cast_f32_to_bf16", o, 28,
                   time_steps(o.steps, [&](int64_t step) {
                       zt::cpu::adamw_update(p.get(), g.get(), 0.5f, m.get(), v.get(), n,
                                             hyper(step), true);
                       zt::cpu::cast_f32_to_bf16(out.get(), p.get(), n);
                   })));
}

// Runs torch_adam.py under Debian's interpreter (the one that sees
// python3-torch); a missing torch is reported, not fatal.
void bench_torch(const Options& o, Report& r) {
    const std::string cmd = "/usr/bin/python3 " + o.torch_script + " --params " +
                            std::to_string(o.params) + " --threads " + std::to_string(o.threads) +
                            " --steps " + std::to_string(o.steps) + " 2>&1";
    FILE* f = popen(cmd.c_str(), "r");
    ZT_CHECK(f != nullptr, "cannot run %s", cmd.c_str());
    std::string text;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f)) text += buf;
    const int rc = pclose(f);
    size_t rows = 0;
    for (size_t at = 0; at < text.size();) {
        const size_t eol = std::min(text.find('\n', at), text.size());
        const std::string line = text.substr(at, eol - at);
        at = eol + 1;
        if (line.empty() || line[0] != '{') continue;
        json row = json::parse(line, nullptr, false);
        if (row.is_discarded() || !row.contains("impl")) continue;
        r.add(std::move(row));
        rows++;
    }
    if (rc != 0 || rows == 0)
        r.add({{"impl", "torch.optim.AdamW"},
               {"error", "'" + cmd + "' exited " + std::to_string(rc) +
                             " (is python3-torch installed?): " + text.substr(0, 400)}});
}

// The highest `key` (params_per_s: from the median step; params_per_s_best:
// from the fastest) among the rows whose impl starts with prefix.
double best_rate(const Report& r, const std::string& prefix, const char* key) {
    double best = 0;
    for (const json& row : r.rows)
        if (row.contains(key) && row["impl"].get<std::string>().rfind(prefix, 0) == 0)
            best = std::max(best, row[key].get<double>());
    return best;
}

void print_table(const Report& r) {
    std::printf("%-58s %14s %10s %9s\n", "impl", "params/s", "GB/s", "median s");
    for (const json& row : r.rows) {
        if (!row.contains("impl")) continue;
        const std::string impl = row["impl"];
        if (!row.contains("params_per_s")) {
            std::printf("%-58s %s\n", impl.c_str(),
                        row.value("skipped", row.value("error", std::string("?"))).c_str());
            continue;
        }
        const double rate = row["params_per_s"];
        const double gbs =
            row.contains("gb_per_s") ? row["gb_per_s"].get<double>() : 28 * rate / 1e9;
        std::printf("%-58s %14.4g %10.2f %9.4f\n", impl.c_str(), rate, gbs,
                    row["seconds_median"].get<double>());
    }
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_options(argc, argv);
    omp_set_num_threads(o.threads);
    Report r{o.json_lines, {}};
    r.add({{"machine", cpu_model()},
           {"threads", o.threads},
           {"params", o.params},
           {"automatic_path", zt::cpu::adamw_path_name()}});
    const double triad = triad_bandwidth(o.params, o.steps);
    r.add({{"metric", "stream_triad"},
           {"threads", o.threads},
           {"gb_per_s", triad / 1e9},
           {"bytes_counted", "12 per element (STREAM)"}});
    bench_zerotrain(o, r);
    if (o.torch) bench_torch(o, r);

    const char* ours_impl = "zerotrain adamw_step (automatic";
    const double ours = best_rate(r, ours_impl, "params_per_s");
    const double torch = best_rate(r, "torch.optim.AdamW", "params_per_s");
    const double limit = triad / 28.0;  // params/s if AdamW moved its 28 B at triad speed
    json summary = {{"summary", "fused AdamW (automatic path, fp32 grads)"},
                    {"params", o.params},
                    {"threads", o.threads},
                    {"params_per_s", ours},
                    {"triad_limit_params_per_s", limit},
                    {"fraction_of_triad_limit", ours / limit}};
    if (torch > 0) {
        const double torch_best = best_rate(r, "torch.optim.AdamW", "params_per_s_best");
        summary["best_torch_params_per_s"] = torch;
        summary["ratio_vs_best_torch"] = ours / torch;
        summary["ratio_vs_best_torch_fastest_steps"] =
            best_rate(r, ours_impl, "params_per_s_best") / torch_best;
    }
    if (!o.json_lines) {
        std::printf("zt_bench_cpu_adam: %lld params, %d threads, %s; automatic path %s\n",
                    (long long)o.params, o.threads, cpu_model().c_str(),
                    zt::cpu::adamw_path_name());
        std::printf("STREAM triad: %.2f GB/s -> AdamW limit %.4g params/s at 28 B/param\n\n",
                    triad / 1e9, limit);
        print_table(r);
        std::printf("\nfused AdamW: %.1f%% of the triad limit", 100 * ours / limit);
        if (torch > 0)
            std::printf(", %.2fx the best torch.optim.AdamW (%.2fx by fastest steps)", ours / torch,
                        summary["ratio_vs_best_torch_fastest_steps"].get<double>());
        std::printf("\n");
    }
    r.add(summary);
    return 0;
}
