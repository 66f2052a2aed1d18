#include "lab/figure.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"
#include "lab/jsonl.h"
#include "lab/sweep.h"

namespace fs = std::filesystem;

namespace zt {

namespace {

// ---- inputs ---------------------------------------------------------------------------

// Every ok result of the sweep directories given, each with its directory.
struct SweepRow {
    nlohmann::json r;
    std::string dir;
};

std::vector<SweepRow> sweep_rows(const PlotOptions& o) {
    std::vector<SweepRow> rows;
    for (const std::string& dir : o.run_dirs) {
        ZT_CHECK(fs::exists(dir + "/results.jsonl"),
                 "--run-dir '%s': no results.jsonl: --kind %s draws a sweep directory (zerotrain "
                 "sweep --out DIR)",
                 dir.c_str(), o.kind.c_str());
        for (const nlohmann::json& r : read_sweep_results(dir))
            if (r.value("status", "") == "ok") rows.push_back({r, dir});
    }
    ZT_CHECK(!rows.empty(), "--run-dir %s: no finished case to draw", o.run_dirs.front().c_str());
    return rows;
}

// What a series is apart from its stage: model, world size, precision, mode.
std::string setting_of(const nlohmann::json& r) {
    std::string s = strprintf("%s w%d %s", r.value("model", "").c_str(), r.value("world_size", 0),
                              r.value("precision", "").c_str());
    if (r.value("bandwidth_mode", "simulated") != "simulated")
        s += " " + r.value("bandwidth_mode", "");
    if (r.value("latency_us", 0.0) > 0) s += strprintf(" %gus", r.value("latency_us", 0.0));
    return s;
}

// What every figure's title names: models, world sizes, devices, precisions.
struct RunsDescribed {
    std::set<std::string> models, worlds, devices, precisions;
    // "tiny, 4 ranks, cpu, fp32"; several values of one joined by commas.
    std::string text() const {
        auto join = [](const std::set<std::string>& s) {
            std::string out;
            for (const std::string& x : s) out += (out.empty() ? "" : ", ") + x;
            return out;
        };
        return strprintf("%s, %s ranks, %s, %s", join(models).c_str(), join(worlds).c_str(),
                         join(devices).c_str(), join(precisions).c_str());
    }
};

std::string describe_rows(const std::vector<SweepRow>& rows) {
    RunsDescribed d;
    for (const SweepRow& row : rows) {
        d.models.insert(row.r.value("model", ""));
        d.devices.insert(row.r.value("device", "cpu"));
        d.precisions.insert(row.r.value("precision", "fp32"));
        d.worlds.insert(std::to_string(row.r.value("world_size", 0)));
    }
    return d.text();
}

// The same from the runs' first "run" lines (their resolved configuration).
std::string describe_run_dirs(const std::vector<std::string>& dirs) {
    RunsDescribed d;
    for (const std::string& dir : dirs)
        for (const nlohmann::json& l : read_jsonl(dir + "/metrics.jsonl", true)) {
            if (l.value("kind", "") != "run" || !l.contains("config")) continue;
            const nlohmann::json& c = l["config"];
            d.models.insert(c.value("model", ""));
            d.devices.insert(c.value("device", "cpu"));
            d.precisions.insert(c.value("precision", "fp32"));
            d.worlds.insert(std::to_string(l.value("world_size", c.value("nproc", 1))));
            break;
        }
    return d.models.empty() ? std::string() : d.text();
}

// ---- gnuplot --------------------------------------------------------------------------

std::string find_gnuplot() {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
        const size_t colon = dirs.find(':', start);
        const std::string dir =
            dirs.substr(start, colon == std::string::npos ? colon : colon - start);
        const std::string p = (dir.empty() ? "." : dir) + "/gnuplot";
        if (::access(p.c_str(), X_OK) == 0) return p;
        if (colon == std::string::npos) break;
        start = colon + 1;
    }
    return "";
}

// A directory removed when the object goes.
class ScratchDir {
  public:
    ScratchDir() {
        std::string tmpl = (fs::temp_directory_path() / "zt-plot-XXXXXX").string();
        ZT_CHECK(::mkdtemp(tmpl.data()), "plot: cannot make a temporary directory: %s",
                 std::strerror(errno));
        path_ = tmpl;
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// A gnuplot string: single quotes, the quote itself doubled.
std::string quoted(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
    return q + "'";
}

struct Figure {
    std::string settings;                     // set ... lines
    std::string plot;                         // the plot command
    std::map<std::string, std::string> data;  // file name -> contents
};

// Runs gnuplot on the figure and moves its output to `out`.
void render(const Figure& fig, const std::string& out) {
    const std::string gnuplot = find_gnuplot();
    ZT_CHECK(!gnuplot.empty(),
             "plot: gnuplot is not installed (not on PATH): apt-get install gnuplot-nox");
    const std::string ext = fs::path(out).extension().string();
    ScratchDir scratch;
    for (const auto& [name, text] : fig.data) {
        std::ofstream f(scratch.path() + "/" + name);
        f << text;
        ZT_CHECK(f.good(), "plot: cannot write %s/%s", scratch.path().c_str(), name.c_str());
    }
    const std::string image = scratch.path() + "/figure" + ext;
    std::string script = ext == ".svg"
                             ? "set terminal svg size 900,560 dynamic enhanced font 'Sans,11'\n"
                             : "set terminal pngcairo size 900,560 enhanced font 'Sans,10'\n";
    script += "set output " + quoted(image) + "\n";
    script += "cd " + quoted(scratch.path()) + "\n";
    script += "set grid\nset key outside right top box\n";
    script += fig.settings + fig.plot + "\nunset output\n";
    const std::string script_path = scratch.path() + "/figure.gp";
    {
        std::ofstream f(script_path);
        f << script;
    }
    const std::string log = scratch.path() + "/gnuplot.log";
    const std::string cmd = gnuplot + " " + quoted(script_path) + " > " + quoted(log) + " 2>&1";
    const int status = std::system(cmd.c_str());
    std::ifstream lf(log);
    std::string said((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
    ZT_CHECK(status == 0 && fs::exists(image) && fs::file_size(image) > 0,
             "plot: gnuplot failed (exit status %d): %s",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1, said.c_str());
    const fs::path dst(out);
    if (dst.has_parent_path()) fs::create_directories(dst.parent_path());
    const std::string tmp = out + ".tmp";
    fs::copy_file(image, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, dst);
}

// ---- the figures ------------------------------------------------------------------------

// Bandwidth on the x axis: unlimited (0) at 4x the largest finite one.
struct BandwidthAxis {
    double unlimited_at = 1;
    std::string tics;  // gnuplot's set xtics (...)

    explicit BandwidthAxis(const std::vector<SweepRow>& rows) {
        std::set<double> bws;
        for (const SweepRow& row : rows) bws.insert(row.r.value("bandwidth_gbps", 0.0));
        double largest = 0;
        for (double b : bws) largest = std::max(largest, b);
        unlimited_at = largest > 0 ? 4 * largest : 1;
        for (double b : bws)
            tics += strprintf("%s\"%s\" %g", tics.empty() ? "" : ", ",
                              b > 0 ? strprintf("%g", b).c_str() : "unlimited", x(b));
    }
    double x(double bandwidth) const { return bandwidth > 0 ? bandwidth : unlimited_at; }
};

// The series of a sweep: one per setting and stage, points sorted by bandwidth.
using Series = std::map<std::string, std::vector<const SweepRow*>>;

Series series_by_stage(const std::vector<SweepRow>& rows) {
    std::set<std::string> settings;
    for (const SweepRow& row : rows) settings.insert(setting_of(row.r));
    Series s;
    for (const SweepRow& row : rows) {
        std::string label = strprintf("stage %d", row.r.value("zero_stage", 0));
        if (settings.size() > 1) label = setting_of(row.r) + " " + label;
        s[label].push_back(&row);
    }
    for (auto& [label, points] : s)
        std::sort(points.begin(), points.end(), [](const SweepRow* a, const SweepRow* b) {
            auto x = [](const SweepRow* r) {
                const double bw = r->r.value("bandwidth_gbps", 0.0);
                return bw > 0 ? bw : 1e300;
            };
            return x(a) < x(b);
        });
    return s;
}

std::string xrange_of(const std::vector<SweepRow>& rows, const BandwidthAxis& axis) {
    double lo = axis.unlimited_at;
    for (const SweepRow& row : rows) {
        const double bw = row.r.value("bandwidth_gbps", 0.0);
        if (bw > 0) lo = std::min(lo, bw);
    }
    return strprintf("set xrange [%g:%g]\n", lo / 1.6, axis.unlimited_at * 1.6);
}

Figure throughput_figure(const std::vector<SweepRow>& rows, const std::string& title) {
    const BandwidthAxis axis(rows);
    Figure fig;
    fig.settings = "set logscale x\nset xtics (" + axis.tics + ")\n" + xrange_of(rows, axis) +
                   "set xlabel 'link bandwidth per rank (Gbit/s)'\n"
                   "set ylabel 'throughput (tokens/s)'\nset yrange [0:*]\n"
                   "set title " +
                   quoted(title) + "\n";
    std::string plot;
    int k = 0;
    for (const auto& [label, points] : series_by_stage(rows)) {
        std::string text;
        for (const SweepRow* p : points)
            text += strprintf("%g %g\n", axis.x(p->r.value("bandwidth_gbps", 0.0)),
                              p->r.value("tokens_per_s", 0.0));
        const std::string file = strprintf("s%d.dat", k++);
        fig.data[file] = text;
        plot +=
            strprintf("%s%s using 1:2 with linespoints lw 2 pt 7 title %s",
                      plot.empty() ? "plot " : ", ", quoted(file).c_str(), quoted(label).c_str());
    }
    fig.plot = plot;
    return fig;
}

Figure comm_figure(const std::vector<SweepRow>& rows, const std::string& title) {
    const BandwidthAxis axis(rows);
    Figure fig;
    fig.settings = "set logscale xy\nset xtics (" + axis.tics + ")\n" + xrange_of(rows, axis) +
                   "set xlabel 'link bandwidth per rank (Gbit/s)'\n"
                   "set ylabel 'time per step (s)'\nset format y '%g'\n"
                   "set title " +
                   quoted(title) + "\n";
    std::string plot;
    int k = 0;
    for (const auto& [label, points] : series_by_stage(rows)) {
        std::string measured, model;
        for (const SweepRow* p : points) {
            const double x = axis.x(p->r.value("bandwidth_gbps", 0.0));
            const double comm = p->r.value("comm_s", 0.0),
                         exposed = p->r.value("comm_exposed_s", 0.0);
            // A log axis has no place for 0: a step without exposure is left out.
            measured += strprintf("%g %s %s\n", x, comm > 0 ? strprintf("%g", comm).c_str() : "NaN",
                                  exposed > 0 ? strprintf("%g", exposed).c_str() : "NaN");
            const nlohmann::json& pred = p->r["predicted_comm_s"];
            if (pred.is_number() && pred.get<double>() > 0)
                model += strprintf("%g %g\n", x, pred.get<double>());
        }
        const int color = k + 1;
        const std::string mfile = strprintf("m%d.dat", k), pfile = strprintf("p%d.dat", k);
        k++;
        fig.data[mfile] = measured;
        plot += strprintf("%s%s using 1:2 with linespoints lw 2 pt 7 lc %d title %s",
                          plot.empty() ? "plot " : ", ", quoted(mfile).c_str(), color,
                          quoted(label + " comm").c_str());
        plot += strprintf(", %s using 1:3 with linespoints lw 1 pt 6 lc %d title %s",
                          quoted(mfile).c_str(), color, quoted(label + " exposed").c_str());
        if (!model.empty()) {
            fig.data[pfile] = model;
            plot += strprintf(", %s using 1:2 with lines dt 2 lw 1 lc %d title %s",
                              quoted(pfile).c_str(), color, quoted(label + " model").c_str());
        }
    }
    fig.plot = plot;
    return fig;
}

// A run directory's step losses as "step loss" lines.
std::string loss_data(const std::string& run_dir) {
    std::string text;
    for (const nlohmann::json& l : read_jsonl(run_dir + "/metrics.jsonl"))
        if (l.value("kind", "") == "step" && l.contains("loss") && l["loss"].is_number())
            text += strprintf("%lld %g\n", (long long)l.value("step", int64_t(0)),
                              l["loss"].get<double>());
    return text;
}

Figure loss_figure(const PlotOptions& o) {
    std::vector<std::pair<std::string, std::string>> runs;  // label, run dir
    for (const std::string& dir : o.run_dirs) {
        if (fs::exists(dir + "/results.jsonl")) {
            for (const nlohmann::json& r : read_sweep_results(dir))
                if (r.value("status", "") == "ok")
                    runs.push_back(
                        {r.value("case", ""), (fs::path(dir) / r.value("run_dir", "")).string()});
            continue;
        }
        ZT_CHECK(fs::exists(dir + "/metrics.jsonl"),
                 "--run-dir '%s': neither a training run (metrics.jsonl) nor a sweep "
                 "(results.jsonl)",
                 dir.c_str());
        // A sweep case's run is "run": its case names it.
        const fs::path p = fs::path(dir).lexically_normal();
        std::string label = p.filename().string();
        if (label == "run" && p.has_parent_path())
            label = p.parent_path().filename().string() + "/" + label;
        runs.push_back({label, dir});
    }
    ZT_CHECK(!runs.empty(), "--run-dir %s: no finished run to draw", o.run_dirs.front().c_str());
    std::vector<std::string> dirs;
    for (const auto& run : runs) dirs.push_back(run.second);
    const std::string described = describe_run_dirs(dirs);
    const std::string title =
        !o.title.empty() ? o.title : "training loss" + (described.empty() ? "" : ": " + described);
    Figure fig;
    fig.settings =
        "set xlabel 'step'\nset ylabel 'training loss (nats)'\nset title " + quoted(title) + "\n";
    if (runs.size() > 8) fig.settings += "set key font ',7'\n";
    std::string plot;
    int k = 0;
    for (const auto& [label, dir] : runs) {
        const std::string file = strprintf("l%d.dat", k++);
        fig.data[file] = loss_data(dir);
        plot += strprintf("%s%s using 1:2 with lines lw 2 title %s", plot.empty() ? "plot " : ", ",
                          quoted(file).c_str(), quoted(label).c_str());
    }
    fig.plot = plot;
    return fig;
}

Figure memory_figure(const std::vector<SweepRow>& rows, const std::string& title) {
    // One case per setting and stage: the unlimited bandwidth's, else the first.
    std::map<std::string, const SweepRow*> chosen;
    std::set<std::string> settings;
    for (const SweepRow& row : rows) settings.insert(setting_of(row.r));
    for (const SweepRow& row : rows) {
        std::string key = strprintf("z%d", row.r.value("zero_stage", 0));
        if (settings.size() > 1) key = setting_of(row.r) + " " + key;
        auto it = chosen.find(key);
        if (it == chosen.end() || (row.r.value("bandwidth_gbps", 0.0) == 0 &&
                                   it->second->r.value("bandwidth_gbps", 0.0) != 0))
            chosen[key] = &row;
    }
    const char* cats[] = {"params", "grads", "optimizer", "activations", "buffers"};
    std::string text = "case";
    for (const char* c : cats) text += std::string(" ") + c;
    text += "\n";
    for (const auto& [key, row] : chosen) {
        for (const char* which : {"mem_bytes", "estimate_mem_bytes"}) {
            text += "\"" + key + (std::strcmp(which, "mem_bytes") ? " est" : " meas") + "\"";
            const nlohmann::json& m = row->r[which];
            for (const char* c : cats)
                text += strprintf(" %g", m.is_object() ? m.value(c, 0.0) / double(1 << 20) : 0.0);
            text += "\n";
        }
    }
    Figure fig;
    fig.data["mem.dat"] = text;
    fig.settings =
        "set style data histograms\nset style histogram rowstacked\n"
        "set style fill solid 0.85 border -1\nset boxwidth 0.75\n"
        "set ylabel 'memory per rank (MiB)'\nset xlabel 'ZeRO stage: measured, estimate'\n"
        "set xtics rotate by -30\nset yrange [0:*]\n"
        "set title " +
        quoted(title) + "\n";
    fig.plot = "plot for [i=2:6] 'mem.dat' using i:xtic(1) title columnheader(i)";
    return fig;
}

}  // namespace

void draw_plot(const PlotOptions& o) {
    ZT_CHECK(!o.run_dirs.empty(), "--run-dir DIR is required (a sweep or a training run)");
    for (const std::string& d : o.run_dirs)
        ZT_CHECK(fs::is_directory(d), "--run-dir '%s': no such directory", d.c_str());
    const std::string ext = fs::path(o.out).extension().string();
    ZT_CHECK(ext == ".png" || ext == ".svg", "--out '%s': expected a .png or .svg file name",
             o.out.c_str());
    Figure fig;
    if (o.kind == "loss") {
        fig = loss_figure(o);
    } else {
        ZT_CHECK(o.kind == "throughput" || o.kind == "comm" || o.kind == "memory",
                 "--kind '%s': expected throughput, comm, loss or memory", o.kind.c_str());
        const std::vector<SweepRow> rows = sweep_rows(o);
        const std::string what = o.kind == "throughput" ? "throughput against bandwidth"
                                 : o.kind == "comm"     ? "communication per step against bandwidth"
                                                        : "memory per rank by category";
        const std::string title = o.title.empty() ? what + ": " + describe_rows(rows) : o.title;
        fig = o.kind == "throughput" ? throughput_figure(rows, title)
              : o.kind == "comm"     ? comm_figure(rows, title)
                                     : memory_figure(rows, title);
    }
    render(fig, o.out);
    std::printf("plot: wrote %s (%s)\n", o.out.c_str(), o.kind.c_str());
}

}  // namespace zt
