// The training loop. A run is resolved once (train/resolve.h), built into an
// engine, a model and a sampler, then stepped:
//
//   run_training   resolve -> build -> run line -> train_steps
//   train_steps    each step: train_step (K micro-batches of forward and
//                  backward, the engine's AdamW step, then agree_on_step: mean
//                  loss, stop signal), record_step (metrics line); then, when
//                  due, run_eval (and with --keep-best save_best_if_lower),
//                  print_progress, save_step_checkpoint (every --save-every
//                  steps, at the last step and on a stop, unless --no-save)
//                  and report_stop; at the end finish_run (sample, summary line)
//
// Rank 0 holds the run directory's lock (train/run_dir.h) from just after
// the run is resolved until it returns.
//
// Invariant: what a step computes depends only on the resolved run (seed,
// data order, world, threads). What is measured around it (timers, comm
// snapshots, the loss and stop agreement at the end of the step's window)
// never changes the losses, so a resumed run continues bit for bit.
#include "train/trainer.h"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "ckpt/checkpoint.h"
#include "ckpt/hf.h"
#include "comm/communicator.h"
#include "core/check.h"
#include "core/units.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "model/config.h"
#include "model/model.h"
#include "ops/matmul.h"
#include "prof/memory.h"
#include "prof/timer.h"
#include "prof/trace.h"
#include "train/device_hooks.h"
#include "train/evaluate.h"
#include "train/generate.h"
#include "train/metrics.h"
#include "train/resolve.h"
#include "train/run_dir.h"
#include "train/stop_signal.h"
#include "zero/engine.h"
#include "zero/estimate.h"
#include "zero/policy.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// ---- building the run ----------------------------------------------------------

EngineOptions engine_options(const ResolvedRun& run) {
    const TrainConfig& cfg = run.cfg;
    EngineOptions eopt;
    eopt.stage = cfg.zero_stage;
    eopt.overlap_comm = cfg.overlap_comm;
    eopt.prefetch_elements = cfg.prefetch_bucket_size;
    eopt.persistence_threshold = cfg.param_persistence_threshold;
    eopt.reduce_bucket_elements = cfg.reduce_bucket_size;
    eopt.gather_bucket_elements = cfg.allgather_bucket_size;
    eopt.beta1 = float(cfg.beta1);
    eopt.beta2 = float(cfg.beta2);
    eopt.adam_eps = float(cfg.adam_eps);
    eopt.weight_decay = float(cfg.weight_decay);
    eopt.grad_clip = float(cfg.grad_clip);
    eopt.decay_all = cfg.weight_decay_all;
    eopt.compute_dtype = run.compute_dtype;
    eopt.grad_dtype = run.grad_dtype;
    if (cfg.offload_optimizer == "nvme") eopt.offload_dir = cfg.offload_dir;
    if (cfg.offload_params == "nvme") eopt.offload_params_dir = cfg.offload_dir;
    eopt.skip_nonfinite = cfg.on_nonfinite == "skip";
    return eopt;
}

// The ledger's estimate of this rank's bytes, for the check before building.
MemoryEstimate run_memory_estimate(const ResolvedRun& run) {
    return estimate_memory(estimate_input_for(run.cfg, run.model, run.world));
}

// Bytes this machine can still give (MemAvailable), or -1 when unknown.
int64_t available_memory_bytes() {
    std::ifstream f("/proc/meminfo");
    std::string key;
    int64_t kib = 0;
    std::string unit;
    while (f >> key >> kib >> unit)
        if (key == "MemAvailable:") return kib * 1024;
    return -1;
}

// Refuses, before anything is allocated, a run whose ranks on this machine
// need more memory than it has available (the estimate counts what the
// ledger will; the process's own code and libraries come on top).
void check_memory_fits(const ResolvedRun& run) {
    const int64_t avail = available_memory_bytes();
    if (avail < 0) return;
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int local_ranks = local ? std::max(1, std::atoi(local)) : 1;
    const MemoryEstimate e = run_memory_estimate(run);
    const double gib = double(int64_t(1) << 30);
    // The sample at the end gathers the fp32 weights unless the engine holds
    // them in model order already (Engine::resident_params).
    const TrainConfig& cfg = run.cfg;
    const bool gathers_sample =
        cfg.sample_tokens > 0 && (run.world > 1 || run.compute_dtype != DType::f32 ||
                                  stage_policy(cfg.zero_stage).params_sharded);
    const int64_t sample = gathers_sample ? 4 * count_params(run.model) : 0;
    const int64_t need = (e.peak() + e.host_optimizer + sample) * local_ranks;
    ZT_CHECK(need <= avail,
             "this run needs about %.2f GiB of memory (%d rank(s) on this machine x %.2f GiB: "
             "params %.2f, grads %.2f, optimizer %.2f, activations %.2f, buffers %.2f, the "
             "end-of-run sample's copy of the weights %.2f), but only %.2f GiB is available; try "
             "--offload-optimizer nvme --offload-dir DIR, "
             "--recompute full, a higher --zero-stage with more ranks, or a smaller "
             "--micro-batch (zerotrain estimate shows each)",
             double(need) / gib, local_ranks, double(need / local_ranks) / gib,
             double(e.params) / gib, double(e.grads) / gib,
             double(e.optimizer + e.host_optimizer) / gib, double(e.activations) / gib,
             double(e.buffers) / gib, double(sample) / gib, double(avail) / gib);
}

// The weights the run starts from: the resumed checkpoint's (with the AdamW
// moments), --init-from's, or new ones from the seed.
void load_start_weights(Engine& engine, const ResolvedRun& run, const Checkpoint* resume_from) {
    if (resume_from) {
        load_engine_state(*resume_from, engine);
    } else if (!run.cfg.init_from.empty()) {
        std::vector<float> weights = read_hf_params(run.cfg.init_from, run.model);
        engine.load_full_params(weights.data());
    } else {
        engine.init_params(run.cfg.seed);
    }
}

void check_run_dir_free(const std::string& dir) {
    ZT_CHECK(!fs::exists(fs::path(dir) / "metrics.jsonl"),
             "--out '%s' already holds a run (metrics.jsonl); choose another --out or remove it",
             dir.c_str());
}

void create_run_dir(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    ZT_CHECK(!ec, "--out '%s': cannot create the run directory: %s", dir.c_str(),
             ec.message().c_str());
}

// The resolved configuration, as RUN_DIR/config.json and the run line hold it.
nlohmann::ordered_json resolved_config_json(const ResolvedRun& run) {
    nlohmann::ordered_json j = train_config_to_json(run.cfg);
    j["model_config"] = model_config_to_json(run.model);
    return j;
}

// Collective. Every rank checks the run directory before rank 0 creates it
// and writes config.json (a fresh run) or, with --truncate, removes what
// followed the resumed step, and opens metrics.jsonl (appending in place).
// Returns rank 0's metrics file; null on the other ranks.
std::unique_ptr<MetricsWriter> open_run_dir(const ResolvedRun& run, Communicator& comm,
                                            const nlohmann::ordered_json& resolved,
                                            RunDirLock* lock, const ResumeActions& actions) {
    const std::string& out = run.cfg.out;
    const bool in_place = run.run_dir == RunDirMode::in_place;
    if (!in_place) check_run_dir_free(out);
    comm.barrier();  // every rank checked before rank 0 creates anything
    if (!run.root()) return nullptr;
    lock->keep();
    if (in_place && actions.truncate) truncate_run_history(out, run.start_step);
    if (!in_place) {
        create_run_dir(out);
        std::ofstream f(fs::path(out) / "config.json");
        f << resolved.dump(2) << "\n";
        ZT_CHECK(f.good(), "cannot write %s/config.json", out.c_str());
    }
    return std::make_unique<MetricsWriter>((fs::path(out) / "metrics.jsonl").string(), in_place);
}

// What a run is built into, for its steps to use.
struct Training {
    const ResolvedRun& run;
    const TrainConfig& cfg;  // run.cfg
    Communicator& comm;
    MemoryLedger& ledger;
    Engine& engine;
    Model& model;
    // What the model borrows units through: the engine, or DeviceHooks in
    // front of it when the model runs on the GPU (device_hooks, else null).
    UnitHooks& hooks;
    DeviceHooks* device_hooks;
    const DataLoader& loader;
    MetricsWriter* metrics;   // rank 0's; null on the other ranks
    double peak_flops;        // one rank's measured GEMM peak in the compute dtype
    double flops_per_token;   // model FLOPs of training, per token
    int64_t tokens_per_step;  // all ranks: world x B x T x K
    float loss_scale;         // 1 / (B T K): a rank's gradients average its tokens
};

// What the steps so far add up to.
// One step's timings and collective counts, after warm-up.
struct StepSample {
    double step_s = 0, comm_s = 0, comm_exposed_s = 0;
    std::array<int64_t, 3> calls{};  // all_reduce, reduce_scatter, all_gather
};

struct Progress {
    TrainSummary summary;
    double train_time = 0;  // seconds inside steps
    double ema_loss = 0;
    int64_t tokens_total = 0;
    // --keep-best: the checkpoint in RUN_DIR/ckpt/best (rank 0's knowledge decides).
    double best_eval_loss = INFINITY;
    int64_t best_step = -1;
    // --on-nonfinite skip: steps skipped, and skipped since the last update.
    int64_t updated_steps = 0, skipped_steps = 0;
    int skipped_in_a_row = 0;
    // For the progress line's elapsed time and ETA: when the step loop began,
    // and the steps after this process's first (which pays for first-touch
    // allocation and warm caches) with their time.
    double loop_start = 0;
    double timed_s = 0;
    int64_t timed_steps = 0;
    // The same steps' figures, for the summary's medians (rank 0).
    std::vector<StepSample> timed;
};

// ---- the run line ----------------------------------------------------------------

// Where the run's checkpoints go, for the start of its log.
std::string describe_saving(const TrainConfig& cfg) {
    if (cfg.no_save) return "none (--no-save)";
    std::string s = cfg.out + "/ckpt/step-N at the last step";
    if (cfg.save_every == 1) s += " and every step";
    if (cfg.save_every > 1) s += strprintf(" and every %d steps", cfg.save_every);
    if (cfg.keep_last > 0) s += strprintf(", keeping the newest %d", cfg.keep_last);
    if (cfg.keep_best) s += ", and the lowest validation loss's in " + cfg.out + "/ckpt/best";
    return s;
}

// Rank 0: the first metrics line, and what the run is, on stdout.
void report_run_start(const Training& t, const nlohmann::ordered_json& resolved) {
    const ResolvedRun& run = t.run;
    const TrainConfig& cfg = t.cfg;
    t.metrics->write(
        {{"kind", "run"},
         {"config", resolved},
         {"world_size", run.world},
         {"zero_stage", cfg.zero_stage},
         {"n_params", count_params(run.model)},
         {"comm", t.comm.backend_name()},
         {"peak_flops", t.peak_flops},
         {"peak_flops_source", cfg.device == "cuda" ? "not measured on the GPU (mfu is 0)"
                               : run.compute_dtype == DType::bf16
                                   ? "measured bf16 GEMM 512^3 on this machine, per rank"
                                   : "measured sgemm 512^3 on this machine, per rank"},
         {"start_step", run.start_step},
         {"resumed_from",
          run.resumed ? nlohmann::ordered_json(run.resumed->dir) : nlohmann::ordered_json(nullptr)},
         {"init_from", cfg.init_from.empty() ? nlohmann::ordered_json(nullptr)
                                             : nlohmann::ordered_json(cfg.init_from)}});
    if (run.resumed)
        std::printf("zerotrain: resumed from %s (step %lld, saved by %d ranks at ZeRO stage %d)\n",
                    run.resumed->dir.c_str(), (long long)run.resumed->step, run.resumed->world_size,
                    run.resumed->zero_stage);
    std::printf("zerotrain: model %s\n", describe_model(run.model).c_str());
    if (run.compute_dtype == DType::bf16)
        std::printf(
            "zerotrain: precision bf16 (fp32 master weights and moments, gradients "
            "in %s; matrix products: %s)\n",
            cfg.resolved_grad_dtype().c_str(), cpu::gemm_bf16_path());
    else
        std::printf("zerotrain: precision fp32\n");
    std::printf(
        "zerotrain: data %s (%lld sequences of %d tokens an epoch)%s\n",
        run.data.train->describe().c_str(), (long long)t.loader.sequences_per_epoch(), cfg.seq_len,
        run.data.loss_floor > 0 ? strprintf(", loss floor %.3f", run.data.loss_floor).c_str() : "");
    std::printf(
        "zerotrain: %d ranks (%s), ZeRO stage %d, %d steps of %d x %d x %d x %d "
        "tokens, lr %.2e, %d threads a rank, run dir %s\n",
        run.world, t.comm.backend_name(), cfg.zero_stage, cfg.steps, run.world, cfg.micro_batch,
        cfg.grad_accum, cfg.seq_len, cfg.lr, omp_get_max_threads(), cfg.out.c_str());
    std::printf("zerotrain: checkpoints: %s\n", describe_saving(cfg).c_str());
    std::fflush(stdout);
}

// ---- one step ----------------------------------------------------------------------

// One rank's micro-batch: inputs (B, T), targets (B, T).
struct MicroBatch {
    std::vector<int32_t> inputs, targets;
};

// What every rank agrees on after a step.
struct StepAgreement {
    double loss = 0;    // the mean over ranks of their losses
    int my_signal = 0;  // the stop signal this rank received, if any
    int signal = 0;     // the largest signal number any rank received (0: none)
    bool stop = false;  // some rank received one
};

// The loss for the metrics line and whether any rank was asked to stop, and
// by which signal: every rank records the same one, also a rank the signal
// had not reached yet. Its two all-reduces are part of the step's window:
// they queue behind the parameters' all-gather that stages 1 and 2 issue
// after the update, so the step's time and communication include that
// gather.
StepAgreement agree_on_step(Training& t, double local_loss) {
    StepAgreement a;
    a.my_signal = StopSignals::received();
    float mean_loss = float(local_loss);
    int32_t signal = a.my_signal;
    if (t.run.world > 1) {
        t.comm.all_reduce(&mean_loss, 1, DType::f32, ReduceOp::avg);
        t.comm.all_reduce(&signal, 1, DType::i32, ReduceOp::max);
    }
    a.loss = t.run.world > 1 ? double(mean_loss) : local_loss;
    a.signal = signal;
    a.stop = signal != 0;
    return a;
}

struct StepWork {
    double lr = 0;
    double local_loss = 0;  // this rank's mean over its K micro-batches
    StepResult result;
    double step_s = 0;
    double data_s = 0;
    double optimizer_s = 0;
    PassTimes pass;
    CommStats comm_before, comm_after;  // training's own traffic lies between
    StepAgreement agreement;
};

// One optimizer step on this rank, and how its time was spent.
StepWork train_step(Training& t, PrefetchLoader& prefetch, int64_t s, MicroBatch& batch) {
    StepWork w;
    const int K = t.cfg.grad_accum;
    const double t_step = now_seconds();
    TraceScope step_span("step");
    w.comm_before = t.comm.stats();
    w.lr = lr_at_step(t.cfg, s);
    t.engine.zero_grads();
    for (int m = 0; m < K; m++) {
        {
            ScopedTimer timer(&w.data_s);
            TraceScope span("data");
            prefetch.next(s, m, batch.inputs.data(), batch.targets.data());
        }
        t.engine.begin_micro(m, K);
        w.local_loss += t.model.forward_backward(t.hooks, batch.inputs.data(), batch.targets.data(),
                                                 t.loss_scale, &w.pass) /
                        K;
    }
    {
        ScopedTimer timer(&w.optimizer_s);
        TraceScope span("optimizer step");
        w.result = t.engine.step(float(w.lr), s + 1);
        if (t.device_hooks) t.device_hooks->params_changed();
    }
    w.agreement = agree_on_step(t, w.local_loss);
    w.step_s = now_seconds() - t_step;
    w.comm_after = t.comm.stats();
    return w;
}

// Throughput of a step: tokens/s of all ranks, and model FLOPs of the whole
// step over the peak of all ranks together.
struct StepRate {
    double tokens_per_s = 0;
    double mfu = 0;
};

StepRate step_rate(const Training& t, double step_s) {
    StepRate r;
    r.tokens_per_s = double(t.tokens_per_step) / step_s;
    r.mfu =
        t.peak_flops > 0 ? t.flops_per_token * r.tokens_per_s / (t.peak_flops * t.run.world) : 0.0;
    return r;
}

nlohmann::ordered_json comm_bytes_json(const CommStats& before, const CommStats& after) {
    auto d = [&](CommOp op) { return after[op].wire_bytes - before[op].wire_bytes; };
    return {{"all_reduce", d(CommOp::all_reduce)},
            {"reduce_scatter", d(CommOp::reduce_scatter)},
            {"all_gather", d(CommOp::all_gather)}};
}

// Collectives the step issued, by op.
nlohmann::ordered_json comm_calls_json(const CommStats& before, const CommStats& after) {
    auto d = [&](CommOp op) { return after[op].calls - before[op].calls; };
    return {{"all_reduce", d(CommOp::all_reduce)},
            {"reduce_scatter", d(CommOp::reduce_scatter)},
            {"all_gather", d(CommOp::all_gather)}};
}

// The share of communication time hidden behind compute: 1 - exposed / busy.
double overlap_of(double comm_s, double comm_exposed_s) {
    return 1.0 - comm_exposed_s / comm_s;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The summary's medians over the steps after this process's first (the one
// that pays for first-touch allocation): step time, communication busy and
// exposed, overlap (each step's, then the median) and collectives per op.
nlohmann::ordered_json step_medians(const std::vector<StepSample>& timed) {
    if (timed.empty()) return nullptr;
    auto of = [&](auto field) {
        std::vector<double> v;
        for (const StepSample& x : timed) v.push_back(field(x));
        return median(v);
    };
    nlohmann::ordered_json m;
    m["steps"] = timed.size();
    m["step_s"] = of([](const StepSample& x) { return x.step_s; });
    m["comm_s"] = of([](const StepSample& x) { return x.comm_s; });
    m["comm_exposed_s"] = of([](const StepSample& x) { return x.comm_exposed_s; });
    std::vector<double> overlaps;
    for (const StepSample& x : timed)
        if (x.comm_s > 0) overlaps.push_back(overlap_of(x.comm_s, x.comm_exposed_s));
    if (!overlaps.empty()) m["overlap"] = median(overlaps);
    const char* names[3] = {"all_reduce", "reduce_scatter", "all_gather"};
    for (size_t k = 0; k < 3; k++)
        m["comm_calls"][names[k]] = of([k](const StepSample& x) { return double(x.calls[k]); });
    return m;
}

// Adds step s to the progress and writes its metrics line (rank 0).
void record_step(Training& t, Progress& p, int64_t s, const StepWork& w, double loss,
                 const StepRate& rate) {
    const int64_t start_step = t.run.start_step;
    p.train_time += w.step_s;
    p.tokens_total += t.tokens_per_step;
    const double comm_s = w.comm_after.busy_s() - w.comm_before.busy_s(),
                 comm_exposed_s = w.comm_after.exposed_s() - w.comm_before.exposed_s();
    if (s > start_step) {
        p.timed_s += w.step_s;
        p.timed_steps++;
        StepSample sample{w.step_s, comm_s, comm_exposed_s, {}};
        const CommOp ops[3] = {CommOp::all_reduce, CommOp::reduce_scatter, CommOp::all_gather};
        for (size_t k = 0; k < 3; k++)
            sample.calls[k] = w.comm_after[ops[k]].calls - w.comm_before[ops[k]].calls;
        p.timed.push_back(sample);
    }
    if (s == start_step) p.summary.first_loss = loss;
    p.summary.last_step = s + 1;
    if (w.result.skipped) {
        p.skipped_steps++;
    } else {
        p.summary.final_loss = loss;
        p.ema_loss = p.updated_steps == 0 ? loss : 0.9 * p.ema_loss + 0.1 * loss;
        p.updated_steps++;
    }

    nlohmann::ordered_json line;
    line["kind"] = "step";
    line["step"] = s + 1;
    line["loss"] = loss;
    line["lr"] = w.lr;
    line["grad_norm"] = w.result.grad_norm;
    if (w.result.skipped) {
        line["skipped"] = true;
        line["nonfinite"] = w.result.nonfinite;
    }
    line["tokens"] = t.tokens_per_step;
    line["step_s"] = w.step_s;
    line["tokens_per_s"] = rate.tokens_per_s;
    line["time_s"] = {
        {"data", w.data_s}, {"forward", w.pass.forward},      {"backward", w.pass.backward},
        {"comm", comm_s},   {"comm_exposed", comm_exposed_s}, {"optimizer", w.optimizer_s}};
    if (comm_s > 0) line["overlap"] = overlap_of(comm_s, comm_exposed_s);
    line["comm_bytes"] = comm_bytes_json(w.comm_before, w.comm_after);
    line["comm_calls"] = comm_calls_json(w.comm_before, w.comm_after);
    line["mem_bytes"] = mem_bytes_json(t.ledger);
    line["mfu"] = rate.mfu;
    if (t.metrics) t.metrics->write(line);
}

// ---- evaluation, progress, checkpoints -------------------------------------------

bool eval_due(const Training& t, int64_t s) {
    return t.run.data.val &&
           ((t.cfg.eval_every > 0 && (s + 1) % t.cfg.eval_every == 0) || s + 1 == t.cfg.steps);
}

void save_best_if_lower(Training& t, Progress& p, int64_t steps_done, double loss);

// Collective: the validation loss after `steps_done` steps.
void run_eval(Training& t, Progress& p, int64_t steps_done) {
    TraceScope span("eval");
    EvalResult ev = evaluate_loss(t.model, t.hooks, &t.comm, *t.run.data.val, t.cfg.eval_tokens);
    p.summary.final_eval_loss = ev.loss;
    if (t.run.root()) {
        t.metrics->write(
            {{"kind", "eval"}, {"step", steps_done}, {"loss", ev.loss}, {"tokens", ev.tokens}});
        std::printf("step %5lld/%d | eval loss %.4f over %lld tokens\n", (long long)steps_done,
                    t.cfg.steps, ev.loss, (long long)ev.tokens);
    }
    // Step 0's weights (--init-from's) are another model's, not this run's.
    if (t.cfg.keep_best && steps_done > 0) save_best_if_lower(t, p, steps_done, ev.loss);
}

// Every --log-every steps (by default about twenty lines a run), and always
// the first, the last and a stopped one.
bool progress_due(const Training& t, int64_t s, bool stop) {
    const int every = t.cfg.log_every > 0 ? t.cfg.log_every : std::max(1, t.cfg.steps / 20);
    return t.run.root() &&
           (s == t.run.start_step || (s + 1) % every == 0 || s + 1 == t.cfg.steps || stop);
}

// A duration for people: 4.2s, 37s, 12m05s, 3h07m.
std::string format_duration(double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    if (seconds < 10) return strprintf("%.1fs", seconds);
    if (seconds < 60) return strprintf("%.0fs", seconds);
    const long long whole = (long long)std::llround(seconds);
    if (whole < 3600) return strprintf("%lldm%02llds", whole / 60, whole % 60);
    return strprintf("%lldh%02lldm", whole / 3600, (whole % 3600) / 60);
}

void print_progress(const Training& t, const Progress& p, int64_t s, const StepWork& w, double loss,
                    const StepRate& rate) {
    // The first step is the only one timed until a second arrives.
    const double mean_step_s = p.timed_steps > 0 ? p.timed_s / double(p.timed_steps) : w.step_s;
    const int64_t steps_left = t.cfg.steps - (s + 1);
    std::printf(
        "step %5lld/%d | loss %.4f (avg %.4f) | lr %.2e | norm %.3f | %.0f tok/s | "
        "%.3f s | mfu %.1f%% | elapsed %s | eta %s\n",
        (long long)(s + 1), t.cfg.steps, loss, p.ema_loss, w.lr, w.result.grad_norm,
        rate.tokens_per_s, w.step_s, 100.0 * rate.mfu,
        format_duration(now_seconds() - p.loop_start).c_str(),
        format_duration(mean_step_s * double(steps_left)).c_str());
    std::fflush(stdout);
}

// Every --save-every steps and always at the last one, unless --no-save.
bool checkpoint_due(const Training& t, int64_t s) {
    if (t.cfg.no_save) return false;
    return s + 1 == t.cfg.steps || (t.cfg.save_every > 0 && (s + 1) % t.cfg.save_every == 0);
}

// Where the data order stands after `steps_done` steps, for a resume to continue it.
nlohmann::ordered_json data_position(const Training& t, int64_t steps_done) {
    const DataLoader& loader = t.loader;
    const int64_t next = steps_done * loader.global_batch();
    nlohmann::ordered_json ranks_json = nlohmann::ordered_json::array();
    for (int r = 0; r < t.run.world; r++)
        ranks_json.push_back(
            {{"rank", r},
             {"next_position", next + int64_t(r) * t.cfg.grad_accum * t.cfg.micro_batch}});
    return nlohmann::ordered_json{{"path", t.cfg.data},
                                  {"source", t.run.data.train->describe()},
                                  {"seq_len", t.cfg.seq_len},
                                  {"seed", t.cfg.seed},
                                  {"global_batch_sequences", loader.global_batch()},
                                  {"sequences_per_epoch", loader.sequences_per_epoch()},
                                  {"next_position", next},
                                  {"epoch", next / loader.sequences_per_epoch()},
                                  {"ranks", ranks_json}};
}

CheckpointInfo checkpoint_info(const Training& t, int64_t steps_done) {
    CheckpointInfo info;
    info.step = steps_done;
    info.tokens_seen = steps_done * t.tokens_per_step;
    info.train_config = train_config_to_json(t.cfg);
    info.data = data_position(t, steps_done);
    info.tokenizer = t.run.data.tokenizer;
    return info;
}

// Collective: RUN_DIR/ckpt/step-N after `steps_done` steps.
void save_step_checkpoint(Training& t, Progress& p, int64_t steps_done) {
    TraceScope span("checkpoint");
    double t0 = now_seconds();
    p.summary.last_checkpoint = save_checkpoint(t.cfg.out, t.engine, &t.comm, t.run.model,
                                                checkpoint_info(t, steps_done), t.cfg.keep_last);
    if (t.run.root()) {
        std::printf("step %5lld/%d | checkpoint %s (%.2f s)\n", (long long)steps_done, t.cfg.steps,
                    p.summary.last_checkpoint.c_str(), now_seconds() - t0);
        std::fflush(stdout);
    }
}

// Collective: RUN_DIR/ckpt/best, when `loss` is below every validation loss
// the best checkpoint held so far. Rank 0 decides, so every rank takes the
// same branch.
void save_best_if_lower(Training& t, Progress& p, int64_t steps_done, double loss) {
    int32_t lower = t.run.root() && std::isfinite(loss) && loss < p.best_eval_loss ? 1 : 0;
    if (t.run.world > 1) t.comm.broadcast(&lower, 1, DType::i32, 0);
    if (!lower) return;
    const double t0 = now_seconds();
    CheckpointInfo info = checkpoint_info(t, steps_done);
    info.eval_loss = loss;
    p.summary.best_checkpoint =
        save_best_checkpoint(t.cfg.out, t.engine, &t.comm, t.run.model, info);
    p.best_eval_loss = loss;
    p.best_step = steps_done;
    if (t.run.root()) {
        std::printf("step %5lld/%d | best checkpoint %s (eval loss %.4f, %.2f s)\n",
                    (long long)steps_done, t.cfg.steps, p.summary.best_checkpoint.c_str(), loss,
                    now_seconds() - t0);
        std::fflush(stdout);
    }
}

// Rank 0, resuming in place: the best checkpoint the run kept before.
void recall_best(const Training& t, Progress& p) {
    if (!t.cfg.keep_best || !t.run.root() || t.run.run_dir != RunDirMode::in_place) return;
    if (std::optional<SavedCheckpoint> best = read_best_checkpoint(t.cfg.out)) {
        p.best_eval_loss = best->eval_loss;
        p.best_step = best->step;
        p.summary.best_checkpoint = best->dir;
    }
}

void report_stop(const Training& t, Progress& p, const StepAgreement& a, int64_t steps_done) {
    p.summary.stop_signal = a.signal;
    if (!t.run.root()) return;
    const char* by = signal_name(a.signal);
    const char* where = a.my_signal ? "" : " (it reached another rank first)";
    if (t.cfg.no_save)
        std::printf("zerotrain: stopped by %s after step %lld%s; no checkpoint saved (--no-save)\n",
                    by, (long long)steps_done, where);
    else
        std::printf(
            "zerotrain: stopped by %s after step %lld%s; continue with --resume auto "
            "--out %s\n",
            by, (long long)steps_done, where, t.cfg.out.c_str());
}

// ---- the end of the run ------------------------------------------------------------

// A short sample from the trained weights, the start of a new document.
// full_params() is a collective in stage 3, so every rank takes part.
void print_sample(Training& t) {
    const ModelConfig& mcfg = t.run.model;
    // The engine's own copy where it is the full model; otherwise a gathered one.
    std::vector<float> gathered;
    const float* params = t.engine.resident_params();
    if (!params) {
        gathered = t.engine.full_params();
        params = gathered.data();
    }
    if (!t.run.root()) return;
    std::unique_ptr<Tokenizer> tok = load_data_tokenizer(t.run.data.dir);
    std::vector<uint32_t> start = tok->document_start();
    if (start.empty()) return;  // nothing to start from without BOS
    std::vector<int32_t> prompt(start.begin(), start.end());
    int n = std::min(t.cfg.sample_tokens, mcfg.max_seq - int(prompt.size()) + 1);
    Generator gen(mcfg, params, int(prompt.size()) + n);
    SamplingOptions opts;
    opts.temperature = 0.8f;
    opts.top_k = 40;
    opts.seed = t.cfg.seed;
    opts.vocab_limit = tok->vocab_size();
    std::printf("zerotrain: sample (%d tokens, temperature 0.8, top-k 40):\n", n);
    int eos = tok->eos_id();
    GenerationResult r = generate(
        gen, prompt, n, opts,
        [&](int32_t id) {
            std::string piece = tok->decode_piece(uint32_t(id));
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            return true;
        },
        eos >= 0 ? std::optional<int32_t>(eos) : std::nullopt);
    std::printf("\n");
    std::fflush(stdout);
    (void)r;
}

// Every rank's ledger at its peak, gathered to all as i64 byte counts: each
// category as it stood when the total was highest, so the categories add up
// to the peak (transient buffers freed since included).
// Entry 6 is the process's peak resident set (getrusage), which counts what
// the ledger does not: code, libraries, the communicator's buffers.
std::vector<std::array<int64_t, 7>> gather_mem_bytes(Communicator& comm,
                                                     const MemoryLedger& ledger) {
    std::array<int64_t, 7> mine{};
    for (int c = 0; c < int(MemCategory::count); c++)
        mine[size_t(c)] = ledger.at_peak(MemCategory(c));
    mine[5] = ledger.peak();
    struct rusage ru {};
    if (getrusage(RUSAGE_SELF, &ru) == 0) mine[6] = int64_t(ru.ru_maxrss) * 1024;
    std::vector<std::array<int64_t, 7>> all(size_t(comm.world_size()));
    comm.all_gather(mine.data(), all.data(), int64_t(mine.size()), DType::i64);
    return all;
}

nlohmann::ordered_json mem_json(const std::array<int64_t, 7>& m) {
    nlohmann::ordered_json j;
    for (int c = 0; c < int(MemCategory::count); c++)
        j[mem_category_name(MemCategory(c))] = m[size_t(c)];
    j["peak"] = m[5];
    return j;
}

// Collective: the sample, then rank 0's summary line and closing report.
void finish_run(Training& t, Progress& p) {
    TrainSummary& summary = p.summary;
    summary.tokens_per_s = p.train_time > 0 ? double(p.tokens_total) / p.train_time : 0;
    if (t.cfg.sample_tokens > 0 && !summary.stop_signal && t.run.data.tokenizer.is_object())
        print_sample(t);
    auto all_mem = gather_mem_bytes(t.comm, t.ledger);
    if (!t.run.root()) return;
    nlohmann::ordered_json last;
    last["kind"] = "summary";
    last["steps"] = summary.last_step;
    last["start_step"] = t.run.start_step;
    if (summary.stop_signal) last["stopped_by"] = signal_name(summary.stop_signal);
    if (!summary.last_checkpoint.empty()) last["last_checkpoint"] = summary.last_checkpoint;
    if (p.best_step >= 0)
        last["best_checkpoint"] = {{"dir", summary.best_checkpoint},
                                   {"step", p.best_step},
                                   {"eval_loss", p.best_eval_loss}};
    last["first_loss"] = summary.first_loss;
    last["final_loss"] = summary.final_loss;
    if (summary.final_eval_loss >= 0) last["final_eval_loss"] = summary.final_eval_loss;
    if (p.skipped_steps > 0) last["skipped_steps"] = p.skipped_steps;
    last["tokens"] = p.tokens_total;
    last["train_s"] = p.train_time;
    last["tokens_per_s"] = summary.tokens_per_s;
    if (!p.timed.empty()) last["medians"] = step_medians(p.timed);
    last["mem_bytes"] = mem_json(all_mem[0]);  // rank 0's, at its peak
    nlohmann::ordered_json ranks_json = nlohmann::ordered_json::array();
    for (int r = 0; r < t.run.world; r++)
        ranks_json.push_back({{"rank", r},
                              {"mem_bytes", mem_json(all_mem[size_t(r)])},
                              {"peak_rss_bytes", all_mem[size_t(r)][6]}});
    if (const OffloadFile* f = t.engine.optimizer_offload()) {
        const OffloadStats& st = f->stats();
        last["offload"] = {
            {"file_bytes", f->file_bytes()},
            {"window_bytes", f->window_bytes()},
            {"direct_io", f->direct_io()},
            {"bytes_read", st.bytes_read},
            {"bytes_written", st.bytes_written},
            {"read_gb_per_s", st.read_s > 0 ? double(st.bytes_read) / st.read_s / 1e9 : 0.0},
            {"write_gb_per_s", st.write_s > 0 ? double(st.bytes_written) / st.write_s / 1e9 : 0.0}};
    }
    last["ranks"] = ranks_json;
    t.metrics->write(last);
    std::printf(
        "zerotrain: done: loss %.4f -> %.4f%s, %.0f tokens/s, metrics in %s/metrics.jsonl%s\n",
        summary.first_loss, summary.final_loss,
        summary.final_eval_loss >= 0
            ? strprintf(", eval loss %.4f", summary.final_eval_loss).c_str()
            : "",
        summary.tokens_per_s, t.cfg.out.c_str(),
        summary.last_checkpoint.empty()
            ? (t.cfg.no_save ? ", no checkpoint (--no-save)" : "")
            : strprintf(", model in %s", summary.last_checkpoint.c_str()).c_str());
}

// From the run's start step to --steps, or to a stop signal.
TrainSummary train_steps(Training& t) {
    Progress p;
    p.summary.run_dir = t.cfg.out;
    p.loop_start = now_seconds();
    recall_best(t, p);
    // Fine-tuning starts with the imported model's own validation loss.
    if (!t.cfg.init_from.empty() && t.run.data.val) run_eval(t, p, 0);
    StopSignals stop_signals;
    PrefetchLoader prefetch(t.loader, t.run.start_step);
    const size_t batch_tokens = size_t(t.cfg.micro_batch) * t.cfg.seq_len;
    MicroBatch batch{std::vector<int32_t>(batch_tokens), std::vector<int32_t>(batch_tokens)};

    for (int64_t s = t.run.start_step; s < t.cfg.steps; s++) {
        t.comm.set_step(s + 1);  // the flight recorder's step of the collectives that follow
        if (Tracer* tr = trace_active()) tr->set_step(s + 1);
        const StepWork w = train_step(t, prefetch, s, batch);
        const StepAgreement& a = w.agreement;
        const StepRate rate = step_rate(t, w.step_s);
        record_step(t, p, s, w, a.loss, rate);
        if (w.result.skipped) {
            p.skipped_in_a_row++;
            if (t.run.root())
                std::fprintf(stderr,
                             "zerotrain: warning: step %lld skipped: gradient norm %g (first "
                             "non-finite: %s); %d in a row\n",
                             (long long)(s + 1), w.result.grad_norm, w.result.nonfinite.c_str(),
                             p.skipped_in_a_row);
            ZT_CHECK(p.skipped_in_a_row < t.cfg.max_nonfinite_skips,
                     "%d steps in a row (to step %lld) had a non-finite gradient norm (first "
                     "non-finite: %s): training diverged; resume from an earlier checkpoint "
                     "with a lower --lr",
                     p.skipped_in_a_row, (long long)(s + 1), w.result.nonfinite.c_str());
        } else {
            p.skipped_in_a_row = 0;
        }
        if (eval_due(t, s)) run_eval(t, p, s + 1);
        if (progress_due(t, s, a.stop)) print_progress(t, p, s, w, a.loss, rate);
        if ((a.stop && !t.cfg.no_save) || checkpoint_due(t, s)) save_step_checkpoint(t, p, s + 1);
        if (a.stop) {
            report_stop(t, p, a, s + 1);
            break;
        }
    }
    finish_run(t, p);
    return p.summary;
}

}  // namespace

// The best of a few 512^3 matrix products in the run's compute dtype (sgemm
// for fp32, the bf16 GEMM for bf16): the peak MFU is measured against.
double measure_cpu_peak_flops(DType dtype) {
    const int n = 512;
    double best = 0;
    auto time_best = [&](auto&& product) {
        for (int rep = 0; rep < 5; rep++) {
            double t0 = now_seconds();
            product();
            double dt = now_seconds() - t0;
            if (dt > 0) best = std::max(best, 2.0 * n * n * n / dt);
        }
    };
    if (dtype == DType::bf16) {
        std::vector<bf16> a(size_t(n) * n, f32_to_bf16(0.5f)), b(size_t(n) * n, f32_to_bf16(0.25f)),
            c(size_t(n) * n);
        time_best([&] { cpu::matmul_forward(c.data(), a.data(), b.data(), nullptr, n, n, n); });
    } else {
        std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
        time_best([&] { cpu::matmul_forward(c.data(), a.data(), b.data(), nullptr, n, n, n); });
    }
    return best;
}

TrainSummary run_training(const TrainConfig& flags, const ResumeActions& actions) {
    // Resolve: every setting decided and checked; nothing is built yet.
    RunRequest request = read_run_request(apply_fork(flags, actions));
    Launch launch = join_ranks(request.cfg);
    const ResolvedRun run = resolve_run(request, launch);
    const TrainConfig& cfg = run.cfg;
    Communicator& comm = *launch.comm;
    ZT_CHECK(!cfg.keep_best || run.data.val,
             "--keep-best keeps the checkpoint of the lowest validation loss, but --data %s has no "
             "validation split (no shard named 'val'); prepare one (zerotrain prepare "
             "--val-fraction) or drop --keep-best",
             cfg.data.c_str());

    // One run at a time in a run directory, from before anything is built
    // until the end; the resume point is checked under the lock.
    std::unique_ptr<RunDirLock> lock;
    if (run.root()) {
        lock = std::make_unique<RunDirLock>(cfg.out);
        check_resume_point(run, actions);
    }
    // Where a collective timeout leaves each rank's record (RUN_DIR/hang).
    comm.set_run_dir(cfg.out);

    // Build: the engine owns the weights, the model borrows them, the loader
    // draws each rank's sequences.
    check_memory_fits(run);
    if (run.root() && cfg.offload_optimizer == "cpu")
        std::fprintf(stderr,
                     "zerotrain: note: --offload-optimizer cpu: with --device cpu the optimizer "
                     "state already lives in host memory; nothing moves\n");
    if (run.root() && cfg.offload_params == "cpu")
        std::fprintf(stderr,
                     "zerotrain: note: --offload-params cpu: with --device cpu the parameter "
                     "shards already live in host memory; nothing moves\n");
    MemoryLedger ledger;
    Engine engine(run.model, engine_options(run), &comm, &ledger);
    load_start_weights(engine, run, request.resume_from.get());
    request.resume_from.reset();  // its files stay mapped no longer than needed
    const Device device = cfg.device == "cuda" ? Device::cuda : Device::cpu;
    Model model(run.model, cfg.micro_batch, cfg.seq_len, &ledger, run.compute_dtype,
                parse_recompute(cfg.recompute), device);
    std::unique_ptr<DeviceHooks> device_hooks;
    if (device == Device::cuda) {
        device_hooks = std::make_unique<DeviceHooks>(engine, *model.copier());
        if (run.root())
            std::fprintf(stderr,
                         "zerotrain: note: --device cuda: the model runs on the GPU; the ZeRO "
                         "engine's state (compute copy, gradients, master, moments) stays in host "
                         "memory, each unit uploaded once a step and its gradient brought back "
                         "(%s of GPU memory for the units' copies)\n",
                         human_bytes(device_hooks->device_bytes()).c_str());
    }
    UnitHooks& hooks = device_hooks ? static_cast<UnitHooks&>(*device_hooks) : engine;
    DataLoader loader(*run.data.train, cfg.seq_len, cfg.micro_batch, cfg.grad_accum, run.rank,
                      run.world, cfg.seed);
    const nlohmann::ordered_json resolved = resolved_config_json(run);
    std::unique_ptr<MetricsWriter> metrics = open_run_dir(run, comm, resolved, lock.get(), actions);
    // On the GPU no peak is measured yet: MFU is reported as 0 there.
    const double peak_flops = device == Device::cpu ? measure_cpu_peak_flops(run.compute_dtype) : 0;
    const int B = cfg.micro_batch, T = cfg.seq_len, K = cfg.grad_accum;
    Training t{run,
               cfg,
               comm,
               ledger,
               engine,
               model,
               hooks,
               device_hooks.get(),
               loader,
               metrics.get(),
               peak_flops,
               train_flops_per_token(run.model, T),
               int64_t(run.world) * B * T * K,
               1.0f / float(int64_t(B) * T * K)};
    if (run.root()) report_run_start(t, resolved);

    // --trace: origins taken after a barrier line the ranks up.
    std::unique_ptr<Tracer> tracer;
    struct Unset {
        ~Unset() { set_trace_active(nullptr); }  // before the tracer goes, error or not
    } unset_trace;
    if (trace_request().on) {
        comm.barrier();
        tracer = std::make_unique<Tracer>(run.rank, trace_request().steps, now_seconds());
        set_trace_active(tracer.get());
    }
    TrainSummary summary = train_steps(t);
    if (tracer) {
        comm.barrier();  // completes every collective issued before it: all spans are in
        set_trace_active(nullptr);
        write_rank_trace(*tracer, cfg.out, run.rank);
        comm.barrier();  // every rank's file is written
        if (run.root()) merge_rank_traces(cfg.out, run.world);
    }
    return summary;
}

}  // namespace zt
