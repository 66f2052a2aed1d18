// zerotrain plot end to end: figures of a synthetic sweep and of training runs
// come out as PNG files of the asked size and as SVG files whose series,
// colours and labels can be read back; bad input is refused by name.
//
// No PNG decoder is at hand, so a PNG is checked by its header and size, and
// what it shows by the SVG of the same figure: gnuplot writes each series as
// a group titled with its legend label, and each line with its stroke colour.
// The sweep's numbers are fixture input made up for these tests, not
// measurements.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using zt_test::CommandResult;
using zt_test::TempDir;

CommandResult zerotrain(const std::string& args) {
    return zt_test::run_command(zt_test::zerotrain_binary() + " " + args);
}

bool gnuplot_on_path() {
    return zt_test::run_command("command -v gnuplot").exit_code == 0;
}

#define SKIP_WITHOUT_GNUPLOT() \
    if (!gnuplot_on_path()) GTEST_SKIP() << "gnuplot is not on PATH (apt-get install gnuplot-nox)"

// Exit status 1 (our error path, not a signal) and every fragment in the message.
void expect_refused(const CommandResult& r, const std::vector<std::string>& fragments) {
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("zerotrain: error:"), std::string::npos) << r.output;
    for (const std::string& f : fragments)
        EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// ---- fixtures ---------------------------------------------------------------------------

// A metrics.jsonl of `steps` steps with a falling loss, an eval line every 4
// steps and a summary, for `model` on `world` ranks.
void write_metrics(const std::string& run_dir, const std::string& model, int world, int stage,
                   int steps, double loss0) {
    fs::create_directories(run_dir);
    std::ofstream f(run_dir + "/metrics.jsonl");
    nlohmann::json run = {
        {"kind", "run"},
        {"config",
         {{"model", model}, {"device", "cpu"}, {"precision", "fp32"}, {"zero_stage", stage}}},
        {"world_size", world},
        {"zero_stage", stage},
        {"n_params", 123456}};
    f << run.dump() << "\n";
    for (int s = 1; s <= steps; s++) {
        const double loss = loss0 / (1.0 + 0.1 * s);
        f << nlohmann::json{{"kind", "step"}, {"step", s}, {"loss", loss}, {"tokens", 512}}.dump()
          << "\n";
        if (s % 4 == 0)
            f << nlohmann::json{{"kind", "eval"},
                                {"step", s},
                                {"loss", loss + 0.1},
                                {"tokens", 512}}
                     .dump()
              << "\n";
    }
    f << nlohmann::json{{"kind", "summary"}, {"steps", steps}}.dump() << "\n";
}

std::string case_name(const std::string& model, int stage, int world, double bw) {
    return zt::strprintf("%s-z%d-w%d-bw%gg-lat0us-fp32", model.c_str(), stage, world, bw);
}

// One ok result line as zerotrain sweep writes it (lab/sweep.h's format).
nlohmann::json ok_result(const std::string& model, int stage, int world, double bw) {
    const double bytes = 4.0e6 * (stage == 3 ? 1.5 : 1.0);
    const double wire_s = bw > 0 ? bytes * 8 / (bw * 1e9) : 0.0;
    const double comm_s = wire_s + 0.002;
    const double step_s = 0.05 + 0.5 * wire_s;
    const double mib = double(1 << 20);
    const std::string name = case_name(model, stage, world, bw);
    nlohmann::json r = {
        {"case", name},
        {"status", "ok"},
        {"run_dir", name + "/run"},
        {"model", model},
        {"zero_stage", stage},
        {"world_size", world},
        {"bandwidth_gbps", bw},
        {"latency_us", 0},
        {"bandwidth_mode", "simulated"},
        {"precision", "fp32"},
        {"device", "cpu"},
        {"seq_len", 64},
        {"micro_batch", 2},
        {"grad_accum", 1},
        {"steps", 6},
        {"n_params", 123456},
        {"tokens_per_s", 2.0 * 64 * world / step_s},
        {"step_s", step_s},
        {"comm_s", comm_s},
        {"comm_exposed_s", 0.25 * comm_s},
        {"overlap", 0.75},
        {"bytes_per_step", bytes},
        {"messages_per_step", 24},
        {"achieved_gbps", bytes * 8 / comm_s / 1e9},
        {"predicted_comm_s", bw > 0 ? nlohmann::json(wire_s) : nlohmann::json(nullptr)},
        {"peak_mem_bytes", 40 * mib},
        {"estimate_peak_bytes", 41 * mib}};
    const double shard = stage >= 1 ? 1.0 / world : 1.0;
    r["mem_bytes"] = {{"params", (stage == 3 ? shard : 1.0) * 4 * mib},
                      {"grads", (stage >= 2 ? shard : 1.0) * 4 * mib},
                      {"optimizer", shard * 8 * mib},
                      {"activations", 6 * mib},
                      {"buffers", 2 * mib},
                      {"peak", 24 * mib}};
    r["estimate_mem_bytes"] = r["mem_bytes"];
    r["estimate_mem_bytes"]["activations"] = 6.5 * mib;
    return r;
}

struct SweepSpec {
    std::vector<std::string> models = {"tiny"};
    int world = 6;
    std::vector<double> bandwidths = {1, 10, 0};
};

// DIR/results.jsonl with every stage 0-3 at every bandwidth of every model,
// one failed case, and each ok case's run directory; returns the ok cases' names.
std::vector<std::string> write_sweep(const std::string& dir, const SweepSpec& spec) {
    fs::create_directories(dir);
    std::ofstream f(dir + "/results.jsonl");
    std::vector<std::string> names;
    double loss0 = 5.0;
    for (const std::string& model : spec.models) {
        for (int stage = 0; stage <= 3; stage++) {
            for (double bw : spec.bandwidths) {
                nlohmann::json r = ok_result(model, stage, spec.world, bw);
                f << r.dump() << "\n";
                names.push_back(r["case"]);
                write_metrics(dir + "/" + r["run_dir"].get<std::string>(), model, spec.world, stage,
                              12, loss0);
                loss0 += 0.05;
            }
        }
    }
    nlohmann::json failed = {{"case", "tiny-z1-w6-bw0.1g-lat0us-fp32"},
                             {"status", "failed"},
                             {"error", "rank 2 died"},
                             {"model", "tiny"},
                             {"zero_stage", 1},
                             {"world_size", spec.world},
                             {"bandwidth_gbps", 0.1}};
    f << failed.dump() << "\n";
    return names;
}

// ---- reading the figures back -----------------------------------------------------------

struct PngHeader {
    bool signature = false;
    uint32_t width = 0, height = 0;
};

uint32_t big_endian32(const std::string& s, size_t at) {
    return uint32_t(uint8_t(s[at])) << 24 | uint32_t(uint8_t(s[at + 1])) << 16 |
           uint32_t(uint8_t(s[at + 2])) << 8 | uint32_t(uint8_t(s[at + 3]));
}

// The signature and the IHDR chunk, which the PNG format puts first.
PngHeader png_header(const std::string& bytes) {
    PngHeader h;
    if (bytes.size() < 24) return h;
    h.signature =
        bytes.compare(0, 8, "\x89PNG\r\n\x1a\n", 8) == 0 && bytes.compare(12, 4, "IHDR") == 0;
    h.width = big_endian32(bytes, 16);
    h.height = big_endian32(bytes, 20);
    return h;
}

// The legend label of every series: gnuplot's SVG terminal writes each plot
// element as <g id="gnuplot_plot_N" ><title>label</title>.
std::vector<std::string> svg_series(const std::string& svg) {
    static const std::regex re("<g id=\"gnuplot_plot_[0-9]+[a-z]?\" ?><title>([^<]*)</title>");
    std::vector<std::string> labels;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
         ++it)
        labels.push_back((*it)[1]);
    return labels;
}

// Distinct rgb(...) colours of one attribute ("stroke" for lines, "fill" for
// bars), spaces removed; gnuplot writes both attr='rgb(r, g, b)' and
// attr = 'rgb(r, g, b)'.
std::set<std::string> svg_colours(const std::string& svg, const std::string& attr) {
    const std::regex re(attr + "\\s*=\\s*['\"]rgb\\(([^)]*)\\)");
    std::set<std::string> colours;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
         ++it) {
        std::string c = (*it)[1];
        c.erase(std::remove(c.begin(), c.end(), ' '), c.end());
        colours.insert(c);
    }
    return colours;
}

// Every text the figure shows (tick labels, axis labels, title, legend).
std::string svg_texts(const std::string& svg) {
    static const std::regex re(">([^<>]+)</tspan>");
    std::string all;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
         ++it)
        all += std::string((*it)[1]) + "\n";
    return all;
}

bool has_label(const std::vector<std::string>& labels, const std::vector<std::string>& parts) {
    for (const std::string& l : labels) {
        bool all = true;
        for (const std::string& p : parts) all = all && l.find(p) != std::string::npos;
        if (all) return true;
    }
    return false;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// Draws `args` as PNG and SVG into dir; checks the PNG's header and size and
// that neither a .tmp file nor a scratch directory is left; returns the SVG.
std::string draw_both(const TempDir& dir, const std::string& args, const std::string& stem) {
    const std::string scratch = dir / ("scratch-" + stem);
    fs::create_directories(scratch);
    const std::string env = "TMPDIR=" + scratch + " ";
    const std::string png = dir / (stem + ".png"), svg = dir / (stem + ".svg");
    CommandResult r =
        zt_test::run_command(env + zt_test::zerotrain_binary() + " plot " + args + " --out " + png);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const std::string bytes = read_file(png);
    const PngHeader h = png_header(bytes);
    EXPECT_TRUE(h.signature) << png << " is not a PNG";
    EXPECT_EQ(h.width, 900u);
    EXPECT_EQ(h.height, 560u);
    // A 900x560 PNG of axes alone compresses to a few KB; lines and labels add more.
    EXPECT_GT(bytes.size(), 8000u) << png;
    EXPECT_FALSE(fs::exists(png + ".tmp"));
    r = zt_test::run_command(env + zt_test::zerotrain_binary() + " plot " + args + " --out " + svg);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(fs::exists(svg + ".tmp"));
    EXPECT_TRUE(fs::is_empty(scratch)) << "plot left its temporary files in " << scratch;
    const std::string text = read_file(svg);
    EXPECT_NE(text.find("<svg"), std::string::npos) << svg << " is not an SVG";
    return text;
}

// ---- figures ----------------------------------------------------------------------------

TEST(Plot, ThroughputHasOneSeriesPerStageAndAnUnlimitedTick) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    const std::string svg =
        draw_both(dir, "--run-dir " + (dir / "sweep") + " --kind throughput", "throughput");
    const std::vector<std::string> series = svg_series(svg);
    EXPECT_EQ(series.size(), 4u) << "one series per stage, the failed case left out";
    for (int s = 0; s <= 3; s++)
        EXPECT_TRUE(has_label(series, {std::to_string(s)})) << "no series for stage " << s;
    EXPECT_GE(svg_colours(svg, "stroke").size(), 4u) << "four series need four colours";
    const std::string texts = svg_texts(svg);
    EXPECT_NE(texts.find("unlimited"), std::string::npos) << texts;
    EXPECT_NE(texts.find("tokens/s"), std::string::npos) << "the y axis names its unit";
    EXPECT_NE(texts.find("Gbit/s"), std::string::npos) << "the x axis names its unit";
    // The default title names the model, world size, device and precision.
    EXPECT_TRUE(has_label(lines_of(texts), {"tiny", "6", "cpu", "fp32"})) << "no title line:\n"
                                                                          << texts;
}

TEST(Plot, ThroughputOfSeveralModelsLabelsEachCombination) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    SweepSpec spec;
    spec.models = {"tiny", "small"};
    write_sweep(dir / "sweep", spec);
    const std::string svg = draw_both(
        dir, "--run-dir " + (dir / "sweep") + " --kind throughput --title 'my sweep'", "two");
    const std::vector<std::string> series = svg_series(svg);
    EXPECT_EQ(series.size(), 8u);
    for (const char* model : {"tiny", "small"})
        for (int s = 0; s <= 3; s++)
            EXPECT_TRUE(has_label(series, {model, std::to_string(s)}))
                << "no series for " << model << " stage " << s;
    EXPECT_NE(svg_texts(svg).find("my sweep"), std::string::npos) << "--title is the title";
}

TEST(Plot, CommDrawsMeasuredExposedAndDashedPrediction) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    const std::string svg = draw_both(dir, "--run-dir " + (dir / "sweep") + " --kind comm", "comm");
    const std::vector<std::string> series = svg_series(svg);
    // Per stage: communication, exposed communication and the model's prediction.
    EXPECT_EQ(series.size(), 12u);
    EXPECT_GE(svg_colours(svg, "stroke").size(), 4u);
    EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos) << "the prediction is dashed";
    const std::string texts = svg_texts(svg);
    EXPECT_NE(texts.find("unlimited"), std::string::npos);
    EXPECT_NE(texts.find("(s)"), std::string::npos) << "the y axis is in seconds:\n" << texts;
}

TEST(Plot, LossDrawsOneCurvePerRunDirAndEverySweepCase) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    write_metrics(dir / "alpha", "tiny", 6, 2, 20, 5.5);
    write_metrics(dir / "beta", "tiny", 6, 3, 16, 5.0);
    std::string svg = draw_both(
        dir, "--run-dir " + (dir / "alpha") + " --run-dir " + (dir / "beta") + " --kind loss",
        "loss");
    std::vector<std::string> series = svg_series(svg);
    EXPECT_TRUE(has_label(series, {"alpha"})) << "a run is labelled by its directory's name";
    EXPECT_TRUE(has_label(series, {"beta"}));
    EXPECT_GE(svg_colours(svg, "stroke").size(), 2u);
    EXPECT_NE(svg_texts(svg).find("step"), std::string::npos) << "the x axis is steps";
    // The title names the model, world sizes, device and precision of the runs.
    EXPECT_TRUE(has_label(lines_of(svg_texts(svg)), {"training loss", "tiny", "6", "cpu", "fp32"}))
        << svg_texts(svg);

    const std::vector<std::string> cases = write_sweep(dir / "sweep", SweepSpec());
    svg = draw_both(dir, "--run-dir " + (dir / "sweep") + " --kind loss", "sweep-loss");
    series = svg_series(svg);
    for (const std::string& c : cases) EXPECT_TRUE(has_label(series, {c})) << "no curve for " << c;
    EXPECT_FALSE(has_label(series, {"bw0.1g"})) << "a failed case has no curve";
}

TEST(Plot, MemoryStacksCategoriesMeasuredBesideEstimated) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    const std::string svg =
        draw_both(dir, "--run-dir " + (dir / "sweep") + " --kind memory", "memory");
    const std::vector<std::string> series = svg_series(svg);
    for (const char* cat : {"params", "grads", "optimizer", "activations", "buffers"})
        EXPECT_TRUE(has_label(series, {cat})) << "no layer for " << cat;
    EXPECT_GE(svg_colours(svg, "fill").size(), 5u);
    const std::string texts = svg_texts(svg);
    EXPECT_NE(texts.find("MiB"), std::string::npos) << texts;
    // Two bars (measured, estimated) per stage: eight tick labels naming a stage.
    int stage_ticks = 0;
    for (int s = 0; s <= 3; s++) {
        const std::string z = "z" + std::to_string(s);
        for (size_t at = texts.find(z); at != std::string::npos; at = texts.find(z, at + 1))
            stage_ticks++;
    }
    EXPECT_EQ(stage_ticks, 8) << texts;
}

TEST(Plot, TornLastLineIsSkippedWithAWarning) {
    SKIP_WITHOUT_GNUPLOT();
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    std::ofstream(dir / "sweep/results.jsonl", std::ios::app) << R"({"case": "tiny-z2-w6-bw)";
    const CommandResult r = zerotrain("plot --run-dir " + (dir / "sweep") +
                                      " --kind throughput --out " + (dir / "t.png"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("warning"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("results.jsonl"), std::string::npos) << r.output;
    EXPECT_TRUE(png_header(read_file(dir / "t.png")).signature);
}

// ---- refusals ---------------------------------------------------------------------------

TEST(Plot, RefusesBadInput) {
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    write_metrics(dir / "run", "tiny", 6, 2, 8, 5.0);
    fs::create_directories(dir / "empty");
    const std::string out = " --out " + (dir / "f.png");
    expect_refused(zerotrain("plot --run-dir " + (dir / "nowhere") + " --kind throughput" + out),
                   {"--run-dir", dir / "nowhere"});
    expect_refused(zerotrain("plot --run-dir " + (dir / "sweep") + " --kind throughput --out " +
                             (dir / "f.jpg")),
                   {"--out", dir / "f.jpg", ".png", ".svg"});
    expect_refused(zerotrain("plot --run-dir " + (dir / "run") + " --kind throughput" + out),
                   {dir / "run", "results.jsonl"});
    expect_refused(zerotrain("plot --run-dir " + (dir / "run") + " --kind memory" + out),
                   {dir / "run", "results.jsonl"});
    expect_refused(zerotrain("plot --run-dir " + (dir / "empty") + " --kind loss" + out),
                   {dir / "empty", "metrics.jsonl", "results.jsonl"});
    expect_refused(zerotrain("plot --run-dir " + (dir / "sweep") + " --kind speed" + out),
                   {"--kind", "speed", "throughput", "memory"});
    EXPECT_FALSE(fs::exists(dir / "f.png")) << "a refused plot writes nothing";
    EXPECT_FALSE(fs::exists(dir / "f.jpg"));
}

TEST(Plot, RefusesASweepWithoutOkCases) {
    TempDir dir;
    fs::create_directories(dir / "sweep");
    std::ofstream(dir / "sweep/results.jsonl")
        << R"({"case": "tiny-z0-w2-bw1g-lat0us-fp32", "status": "failed", "error": "boom",)"
        << R"( "model": "tiny", "zero_stage": 0, "world_size": 2, "bandwidth_gbps": 1})"
        << "\n";
    for (const char* kind : {"throughput", "comm", "memory", "loss"}) {
        SCOPED_TRACE(kind);
        expect_refused(zerotrain("plot --run-dir " + (dir / "sweep") + " --kind " + kind +
                                 " --out " + (dir / "f.svg")),
                       {dir / "sweep"});
    }
    EXPECT_FALSE(fs::exists(dir / "f.svg"));
}

TEST(Plot, RefusesAnUnparsableMiddleLineByFileAndLine) {
    TempDir dir;
    fs::create_directories(dir / "sweep");
    {
        std::ofstream f(dir / "sweep/results.jsonl");
        f << ok_result("tiny", 0, 2, 1).dump() << "\n{not json\n"
          << ok_result("tiny", 1, 2, 1).dump() << "\n";
    }
    expect_refused(zerotrain("plot --run-dir " + (dir / "sweep") + " --kind throughput --out " +
                             (dir / "f.png")),
                   {dir / "sweep/results.jsonl", ":2"});
}

TEST(Plot, RefusesWithoutGnuplot) {
    TempDir dir;
    write_sweep(dir / "sweep", SweepSpec());
    fs::create_directories(dir / "bin");  // a PATH with no gnuplot on it
    const CommandResult r = zt_test::run_command(
        "PATH=" + (dir / "bin") + " " + zt_test::zerotrain_binary() + " plot --run-dir " +
        (dir / "sweep") + " --kind throughput --out " + (dir / "f.png"));
    expect_refused(r, {"gnuplot is not installed", "apt-get install gnuplot-nox"});
    EXPECT_FALSE(fs::exists(dir / "f.png"));
}

}  // namespace
