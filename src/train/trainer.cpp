#include "train/trainer.h"

#include <omp.h>

#include <csignal>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "ckpt/checkpoint.h"
#include "ckpt/hf.h"
#include "comm/communicator.h"
#include "comm/launch.h"
#include "core/check.h"
#include "data/default_corpus.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/synthetic.h"
#include "model/config.h"
#include "model/model.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/matmul.h"
#include "prof/memory.h"
#include "prof/timer.h"
#include "train/evaluate.h"
#include "train/generate.h"
#include "train/metrics.h"
#include "zero/engine.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// A window of another source's sequences: held-out synthetic validation data
// comes from the same chain as training, from walks training never reads.
class SequenceWindow : public TokenSource {
public:
    SequenceWindow(std::unique_ptr<TokenSource> src, int64_t first, int64_t count)
        : src_(std::move(src)), first_(first), count_(count) {}
    int64_t n_sequences(int) const override { return count_; }
    void read_sequence(int64_t k, int T, int32_t* out) const override {
        ZT_CHECK(k >= 0 && k < count_, "sequence %lld outside the window of %lld", (long long)k,
                 (long long)count_);
        src_->read_sequence(first_ + k, T, out);
    }
    uint32_t max_token() const override { return src_->max_token(); }
    std::string describe() const override {
        return strprintf("%s, sequences %lld..%lld", src_->describe().c_str(), (long long)first_,
                         (long long)(first_ + count_ - 1));
    }

private:
    std::unique_ptr<TokenSource> src_;
    int64_t first_, count_;
};

constexpr int64_t kSyntheticTrainSequences = int64_t(1) << 16;
constexpr int64_t kSyntheticValSequences = 4096;

struct DataSources {
    std::unique_ptr<TokenSource> train;
    std::unique_ptr<TokenSource> val;  // may be null: no validation split
    double loss_floor = -1;            // known entropy of synthetic data
};

DataSources open_data(const TrainConfig& cfg, const ModelConfig& model) {
    DataSources d;
    if (cfg.data == "synthetic") {
        auto train = std::make_unique<SyntheticSource>(model.vocab_size, cfg.seed,
                                                       kSyntheticTrainSequences);
        d.loss_floor = train->entropy_per_token();
        d.train = std::move(train);
        d.val = std::make_unique<SequenceWindow>(
            std::make_unique<SyntheticSource>(model.vocab_size, cfg.seed,
                                              kSyntheticTrainSequences + kSyntheticValSequences),
            kSyntheticTrainSequences, kSyntheticValSequences);
        return d;
    }
    ZT_CHECK(fs::exists(cfg.data),
             "--data '%s': no such file or directory (expected synthetic, a directory of "
             ".bin token shards, or one .bin shard)",
             cfg.data.c_str());
    d.train = ShardSet::open(cfg.data, "train");
    if (fs::is_directory(cfg.data)) {
        bool has_val = false;
        for (const auto& e : fs::directory_iterator(cfg.data)) {
            std::string name = e.path().filename().string();
            if (name.find("val") != std::string::npos && e.path().extension() == ".bin")
                has_val = true;
        }
        if (has_val) d.val = ShardSet::open(cfg.data, "val");
    }
    return d;
}

ModelConfig resolve_train_model(const TrainConfig& cfg) {
    ModelConfig m = resolve_model(cfg.model);
    if (cfg.data != "synthetic" && fs::is_directory(cfg.data) && is_model_preset(cfg.model)) {
        if (auto v = read_meta_vocab_size(cfg.data)) {
            // Presets take the data's vocabulary, padded to a multiple of 64 for speed.
            m.vocab_size = (*v + 63) / 64 * 64;
        }
    }
    validate_model_config(m);
    return m;
}

void check_seq_len_fits(const TrainConfig& cfg, const ModelConfig& m) {
    ZT_CHECK(cfg.seq_len <= m.max_seq, "--seq-len %d exceeds the maximum of %d of model %s",
             cfg.seq_len, m.max_seq, m.name.c_str());
}

std::string default_run_dir() {
    std::time_t t = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "runs/run-%Y%m%d-%H%M%S", std::localtime(&t));
    return buf;
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

// Every rank's ledger, gathered to all as i64 byte counts.
std::vector<std::array<int64_t, 6>> gather_mem_bytes(Communicator& comm,
                                                     const MemoryLedger& ledger) {
    std::array<int64_t, 6> mine{};
    for (int c = 0; c < int(MemCategory::count); c++) mine[size_t(c)] = ledger.current(MemCategory(c));
    mine[5] = ledger.peak();
    std::vector<std::array<int64_t, 6>> all(size_t(comm.world_size()));
    comm.all_gather(mine.data(), all.data(), int64_t(mine.size()), DType::i64);
    return all;
}

nlohmann::ordered_json mem_json(const std::array<int64_t, 6>& m) {
    nlohmann::ordered_json j;
    for (int c = 0; c < int(MemCategory::count); c++) j[mem_category_name(MemCategory(c))] = m[size_t(c)];
    j["peak"] = m[5];
    return j;
}

// Communication of one step, as the difference of two snapshots.
struct CommDelta {
    CommStats before;
    nlohmann::ordered_json bytes_json(const CommStats& after) const {
        auto d = [&](CommOp op) { return after[op].wire_bytes - before[op].wire_bytes; };
        return {{"all_reduce", d(CommOp::all_reduce)},
                {"reduce_scatter", d(CommOp::reduce_scatter)},
                {"all_gather", d(CommOp::all_gather)}};
    }
};


// SIGINT/SIGTERM ask for a clean stop: the step in progress finishes, every
// rank agrees on it, a checkpoint is saved, and the run ends. A second
// signal kills as usual (SA_RESETHAND).
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int sig) { g_stop_signal = sig; }

class StopSignals {
public:
    StopSignals() {
        g_stop_signal = 0;
        struct sigaction sa {};
        sa.sa_handler = record_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGINT, &sa, &old_int_);
        sigaction(SIGTERM, &sa, &old_term_);
    }
    ~StopSignals() {
        sigaction(SIGINT, &old_int_, nullptr);
        sigaction(SIGTERM, &old_term_, nullptr);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// The configuration of a resumed run: the checkpoint's, with what the command
// line gave explicitly on top. Launch-specific keys come from this launch.
TrainConfig resumed_config(const Checkpoint& ckpt, const TrainConfig& cli) {
    nlohmann::json saved = ckpt.manifest().at("train_config");
    // Threads stay: the split of a reduction over threads decides its rounding.
    for (const char* k : {"nproc", "out", "resume", "init_from", "comm"}) saved.erase(k);
    TrainConfig c;
    apply_train_config_json(c, saved, ckpt.dir() + "/manifest.json");
    nlohmann::ordered_json given_values = train_config_to_json(cli);
    nlohmann::json over = nlohmann::json::object();
    for (const auto& k : cli.given)
        if (given_values.contains(k)) over[k] = given_values[k];
    apply_train_config_json(c, over, "the command line");
    c.given = cli.given;
    c.out = cli.out;
    c.resume = cli.resume;
    c.nproc = cli.nproc;
    c.comm = cli.comm;
    return c;
}

// What must not change across a resume for the data order to continue
// exactly: the sampler is a function of (seed, seq-len, global batch).
void check_resume_compatible(const Checkpoint& ckpt, const TrainConfig& cfg, int world) {
    const auto& saved = ckpt.manifest().at("train_config");
    const std::string src = ckpt.dir() + "/manifest.json";
    ZT_CHECK(saved.at("seq_len").get<int>() == cfg.seq_len,
             "--seq-len %d, but the checkpoint (%s) was trained at %d: the data position would "
             "not continue; resume with --seq-len %d",
             cfg.seq_len, src.c_str(), saved.at("seq_len").get<int>(), saved.at("seq_len").get<int>());
    ZT_CHECK(saved.at("seed").get<uint64_t>() == cfg.seed,
             "--seed %llu, but the checkpoint (%s) used %llu: the data order would change",
             (unsigned long long)cfg.seed, src.c_str(),
             (unsigned long long)saved.at("seed").get<uint64_t>());
    int64_t g_saved = ckpt.manifest().at("data").at("global_batch_sequences").get<int64_t>();
    int64_t g = int64_t(world) * cfg.micro_batch * cfg.grad_accum;
    ZT_CHECK(g == g_saved,
             "the global batch is %d ranks x micro-batch %d x grad-accum %d = %lld sequences, but "
             "the checkpoint (%s) was trained with %lld; the data order continues only at the "
             "same global batch: %s",
             world, cfg.micro_batch, cfg.grad_accum, (long long)g, src.c_str(), (long long)g_saved,
             g_saved % world == 0
                 ? strprintf("e.g. --micro-batch %lld --grad-accum 1", (long long)(g_saved / world)).c_str()
                 : strprintf("%d ranks cannot split %lld sequences evenly", world,
                             (long long)g_saved).c_str());
    ZT_CHECK(ckpt.step() < cfg.steps,
             "the checkpoint (%s) is at step %lld and --steps is %d: nothing left to train; raise "
             "--steps",
             src.c_str(), (long long)ckpt.step(), cfg.steps);
}

// meta.json's "tokenizer" object, or null (synthetic data, bare shards).
nlohmann::ordered_json data_tokenizer(const TrainConfig& cfg) {
    if (cfg.data == "synthetic") return nullptr;
    std::optional<nlohmann::json> meta = read_data_meta(cfg.data);
    if (!meta || !meta->contains("tokenizer")) return nullptr;
    return (*meta)["tokenizer"];
}

// A short sample from the trained weights, the start of a new document.
// full_params() is a collective in stage 3, so every rank takes part.
void print_sample(Engine& engine, const ModelConfig& mcfg, const std::string& data_dir,
                  const TrainConfig& cfg, bool root) {
    std::vector<float> params = engine.full_params();
    if (!root) return;
    std::unique_ptr<Tokenizer> tok = load_data_tokenizer(data_dir);
    std::vector<uint32_t> start = tok->document_start();
    if (start.empty()) return;  // nothing to start from without BOS
    std::vector<int32_t> prompt(start.begin(), start.end());
    int n = std::min(cfg.sample_tokens, mcfg.max_seq - int(prompt.size()) + 1);
    Generator gen(mcfg, params.data(), int(prompt.size()) + n);
    SamplingOptions opts;
    opts.temperature = 0.8f;
    opts.top_k = 40;
    opts.seed = cfg.seed;
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

TrainSummary run_training(const TrainConfig& cfg_in) {
    validate_train_config(cfg_in);
    TrainConfig cfg = cfg_in;
    std::unique_ptr<Checkpoint> resume_from;
    if (!cfg.resume.empty()) {
        bool found = cfg.resume != "auto" || fs::exists(fs::path(cfg.out) / "ckpt" / "latest");
        if (found) {
            resume_from = std::make_unique<Checkpoint>(
                Checkpoint::open(cfg.resume == "auto" ? cfg.out : cfg.resume));
            cfg = resumed_config(*resume_from, cfg_in);
            validate_train_config(cfg);
        } else if (discover_ranks().rank == 0) {
            std::printf("zerotrain: --resume auto: no checkpoint in %s yet; starting at step 0\n",
                        cfg.out.c_str());
        }
    }
    if (cfg.threads > 0) omp_set_num_threads(cfg.threads);

    RankInfo ranks = discover_ranks();
    CommOptions copt;
    copt.backend = cfg.comm == "auto" ? (ranks.world > 1 ? "mpi" : "local") : cfg.comm;
    copt.sim_bandwidth_gbps = cfg.sim_bandwidth_gbps;
    copt.sim_latency_us = cfg.sim_latency_us;
    copt.timeout_s = cfg.comm_timeout_s;
    std::unique_ptr<Communicator> comm = make_communicator(copt);
    const int rank = comm->rank(), world = comm->world_size();
    const bool root = rank == 0;
    if (cfg.threads == 0 && world > 1 && !std::getenv("OMP_NUM_THREADS")) {
        // Ranks on one machine share its cores: without this, N ranks of
        // all-core OpenMP pools spin against each other.
        const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        int on_node = local ? std::max(1, std::atoi(local)) : world;
        omp_set_num_threads(std::max(1, omp_get_num_procs() / on_node));
    }
    cfg.comm = copt.backend;
    ZT_CHECK(cfg.nproc <= 0 || cfg.nproc == world,
             "--nproc %d, but the launcher started %d ranks (%s)", cfg.nproc, world,
             ranks.source.c_str());
    cfg.nproc = world;
    int B = cfg.micro_batch, T = cfg.seq_len, K = cfg.grad_accum;
    ZT_CHECK(cfg.train_batch_size <= 0 || cfg.train_batch_size == int64_t(world) * B * K,
             "train_batch_size %lld must equal world size %d x micro-batch %d x gradient "
             "accumulation %d = %lld",
             (long long)cfg.train_batch_size, world, B, K, (long long)(int64_t(world) * B * K));
    if (cfg.out.empty()) {
        // Every rank must agree on the name: rank 0's clock decides.
        std::string name = default_run_dir();
        std::vector<char> buf(64, 0);
        std::memcpy(buf.data(), name.data(), std::min(name.size(), buf.size() - 1));
        comm->broadcast(buf.data(), int64_t(buf.size()), DType::u8, 0);
        cfg.out = buf.data();
    }

    if (resume_from) check_resume_compatible(*resume_from, cfg, world);
    if (cfg.data == "fortunes") {
        // A bad --model or --seq-len is refused before minutes of preparation.
        if (!resume_from && cfg.init_from.empty()) check_seq_len_fits(cfg, resolve_model(cfg.model));
        // Prepared once under a file lock, so ranks started together share one copy.
        cfg.data = ensure_default_corpus(root);
    }
    ModelConfig mcfg;
    if (resume_from) {
        mcfg = resume_from->model_config();
        if (cfg.given.count("model")) {
            std::string diff = model_config_difference(resolve_train_model(cfg), mcfg);
            ZT_CHECK(diff.empty(), "--model %s differs from the checkpoint's model in %s",
                     cfg.model.c_str(), diff.c_str());
        }
    } else if (!cfg.init_from.empty()) {
        mcfg = hf_model_config(cfg.init_from);
        if (cfg.given.count("model")) {
            std::string diff = model_config_difference(resolve_train_model(cfg), mcfg);
            ZT_CHECK(diff.empty(), "--model %s differs from --init-from %s's config.json in %s",
                     cfg.model.c_str(), cfg.init_from.c_str(), diff.c_str());
        }
        // Recorded so that a resume of this run rebuilds the same model.
        cfg.model = (fs::path(cfg.init_from) / "config.json").string();
    } else {
        mcfg = resolve_train_model(cfg);
    }
    check_seq_len_fits(cfg, mcfg);
    DataSources data = open_data(cfg, mcfg);
    check_vocab(*data.train, mcfg.vocab_size);
    if (data.val) check_vocab(*data.val, mcfg.vocab_size);
    DataLoader loader(*data.train, T, B, K, rank, world, cfg.seed);
    // Local, so every rank computes the same value: the data directory, if any.
    const std::string data_dir =
        cfg.data == "synthetic" ? ""
        : fs::is_directory(cfg.data) ? cfg.data
                                     : fs::path(cfg.data).parent_path().string();

    MemoryLedger ledger;
    EngineOptions eopt;
    eopt.stage = cfg.zero_stage;
    eopt.overlap_comm = cfg.overlap_comm;
    eopt.prefetch_elements = cfg.prefetch_bucket_size;
    eopt.persistence_threshold = cfg.param_persistence_threshold;
    eopt.beta1 = float(cfg.beta1);
    eopt.beta2 = float(cfg.beta2);
    eopt.weight_decay = float(cfg.weight_decay);
    eopt.grad_clip = float(cfg.grad_clip);
    eopt.decay_all = cfg.weight_decay_all;
    const DType compute_dtype = cfg.precision == "bf16" ? DType::bf16 : DType::f32;
    eopt.compute_dtype = compute_dtype;
    eopt.grad_dtype = cfg.resolved_grad_dtype() == "bf16" ? DType::bf16 : DType::f32;
    Engine engine(mcfg, eopt, comm.get(), &ledger);
    int64_t start_step = 0;
    if (resume_from) {
        int64_t saved_n = resume_from->manifest().at("data").at("sequences_per_epoch").get<int64_t>();
        ZT_CHECK(saved_n == loader.sequences_per_epoch(),
                 "--data %s holds %lld sequences of %d tokens, but the checkpoint (%s) was trained "
                 "on data holding %lld: resume on the same data",
                 cfg.data.c_str(), (long long)loader.sequences_per_epoch(), T,
                 resume_from->dir().c_str(), (long long)saved_n);
        load_engine_state(*resume_from, engine);
        start_step = resume_from->step();
    } else if (!cfg.init_from.empty()) {
        std::vector<float> weights = read_hf_params(cfg.init_from, mcfg);
        engine.load_full_params(weights.data());
    } else {
        engine.init_params(cfg.seed);
    }
    Model model(mcfg, B, T, &ledger, compute_dtype);

    // A run resumed from its own checkpoint continues its own directory.
    const bool in_place =
        resume_from && fs::exists(cfg.out) &&
        fs::equivalent(fs::path(resume_from->dir()).parent_path().parent_path(), cfg.out);
    if (!in_place) check_run_dir_free(cfg.out);
    comm->barrier();  // every rank checked before rank 0 creates anything
    if (root && !in_place) create_run_dir(cfg.out);
    nlohmann::ordered_json resolved = train_config_to_json(cfg);
    resolved["model_config"] = model_config_to_json(mcfg);
    std::unique_ptr<MetricsWriter> metrics;
    if (root) {
        if (!in_place) {
            std::ofstream f(fs::path(cfg.out) / "config.json");
            f << resolved.dump(2) << "\n";
            ZT_CHECK(f.good(), "cannot write %s/config.json", cfg.out.c_str());
        }
        metrics = std::make_unique<MetricsWriter>((fs::path(cfg.out) / "metrics.jsonl").string(),
                                                  in_place);
    }

    const double peak_flops = measure_cpu_peak_flops(compute_dtype);
    const double flops_per_token = train_flops_per_token(mcfg, T);
    const int64_t n_params = count_params(mcfg);
    if (root) {
        metrics->write({{"kind", "run"},
                        {"config", resolved},
                        {"world_size", world},
                        {"zero_stage", cfg.zero_stage},
                        {"n_params", n_params},
                        {"comm", comm->backend_name()},
                        {"peak_flops", peak_flops},
                        {"peak_flops_source",
                         compute_dtype == DType::bf16
                             ? "measured bf16 GEMM 512^3 on this machine, per rank"
                             : "measured sgemm 512^3 on this machine, per rank"},
                        {"start_step", start_step},
                        {"resumed_from", resume_from ? nlohmann::ordered_json(resume_from->dir())
                                                     : nlohmann::ordered_json(nullptr)},
                        {"init_from", cfg.init_from.empty() ? nlohmann::ordered_json(nullptr)
                                                            : nlohmann::ordered_json(cfg.init_from)}});
        if (resume_from)
            std::printf("zerotrain: resumed from %s (step %lld, saved by %d ranks at ZeRO stage %d)\n",
                        resume_from->dir().c_str(), (long long)start_step,
                        resume_from->world_size(), resume_from->zero_stage());
        std::printf("zerotrain: model %s\n", describe_model(mcfg).c_str());
        if (compute_dtype == DType::bf16)
            std::printf("zerotrain: precision bf16 (fp32 master weights and moments, gradients "
                        "in %s; matrix products: %s)\n",
                        cfg.resolved_grad_dtype().c_str(), cpu::gemm_bf16_path());
        else
            std::printf("zerotrain: precision fp32\n");
        std::printf("zerotrain: data %s (%lld sequences of %d tokens an epoch)%s\n",
                    data.train->describe().c_str(), (long long)loader.sequences_per_epoch(), T,
                    data.loss_floor > 0 ? strprintf(", loss floor %.3f", data.loss_floor).c_str()
                                        : "");
        std::printf("zerotrain: %d ranks (%s), ZeRO stage %d, %d steps of %d x %d x %d x %d "
                    "tokens, lr %.2e, %d threads a rank, run dir %s\n",
                    world, comm->backend_name(), cfg.zero_stage, cfg.steps, world, B, K, T, cfg.lr,
                    omp_get_max_threads(), cfg.out.c_str());
        std::fflush(stdout);
    }

    std::vector<int32_t> inputs(size_t(B) * T), targets(size_t(B) * T);
    const float loss_scale = 1.0f / float(int64_t(B) * T * K);
    const int64_t tokens_per_step = int64_t(world) * B * T * K;
    TrainSummary summary;
    summary.run_dir = cfg.out;
    double train_time = 0, ema_loss = 0;
    int64_t tokens_total = 0;
    resume_from.reset();  // its files stay mapped no longer than needed

    const nlohmann::ordered_json tokenizer = data_tokenizer(cfg);
    auto data_position = [&](int64_t steps_done) {
        const int64_t next = steps_done * loader.global_batch();
        nlohmann::ordered_json ranks_json = nlohmann::ordered_json::array();
        for (int r = 0; r < world; r++)
            ranks_json.push_back({{"rank", r}, {"next_position", next + int64_t(r) * K * B}});
        return nlohmann::ordered_json{{"path", cfg.data},
                                      {"source", data.train->describe()},
                                      {"seq_len", T},
                                      {"seed", cfg.seed},
                                      {"global_batch_sequences", loader.global_batch()},
                                      {"sequences_per_epoch", loader.sequences_per_epoch()},
                                      {"next_position", next},
                                      {"epoch", next / loader.sequences_per_epoch()},
                                      {"ranks", ranks_json}};
    };
    auto run_eval = [&](int64_t step_done) {
        EvalResult ev = evaluate_loss(model, engine, comm.get(), *data.val, cfg.eval_tokens);
        summary.final_eval_loss = ev.loss;
        if (root) {
            metrics->write(
                {{"kind", "eval"}, {"step", step_done}, {"loss", ev.loss}, {"tokens", ev.tokens}});
            std::printf("step %5lld/%d | eval loss %.4f over %lld tokens\n", (long long)step_done,
                        cfg.steps, ev.loss, (long long)ev.tokens);
        }
    };
    // Fine-tuning starts with the imported model's own validation loss.
    if (!cfg.init_from.empty() && data.val) run_eval(0);
    StopSignals stop_signals;
    PrefetchLoader prefetch(loader, start_step);

    for (int64_t s = start_step; s < cfg.steps; s++) {
        double t_step = now_seconds();
        double t_data = 0, t_opt = 0;
        PassTimes pass;
        CommDelta comm_delta{comm->stats()};
        double lr = lr_at_step(cfg, s);
        double local_loss = 0;
        engine.zero_grads();
        for (int m = 0; m < K; m++) {
            {
                ScopedTimer timer(&t_data);
                prefetch.next(s, m, inputs.data(), targets.data());
            }
            engine.begin_micro(m, K);
            local_loss += model.forward_backward(engine, inputs.data(), targets.data(),
                                                 loss_scale, &pass) / K;
        }
        StepResult r;
        {
            ScopedTimer timer(&t_opt);
            r = engine.step(float(lr), s + 1);
        }
        double step_s = now_seconds() - t_step;
        CommStats after = comm->stats();
        // The loss for the metrics line and whether any rank was asked to
        // stop: not part of training's traffic (taken after the snapshot).
        const int my_signal = g_stop_signal;
        float mean_loss = float(local_loss);
        int32_t any_stop = my_signal ? 1 : 0;
        if (world > 1) {
            comm->all_reduce(&mean_loss, 1, DType::f32, ReduceOp::avg);
            comm->all_reduce(&any_stop, 1, DType::i32, ReduceOp::max);
        }
        double loss = world > 1 ? double(mean_loss) : local_loss;
        const bool stop = any_stop != 0;
        train_time += step_s;
        tokens_total += tokens_per_step;
        double tps = double(tokens_per_step) / step_s;
        if (s == start_step) summary.first_loss = loss;
        summary.final_loss = loss;
        summary.last_step = s + 1;
        ema_loss = s == start_step ? loss : 0.9 * ema_loss + 0.1 * loss;

        nlohmann::ordered_json line;
        line["kind"] = "step";
        line["step"] = s + 1;
        line["loss"] = loss;
        line["lr"] = lr;
        line["grad_norm"] = r.grad_norm;
        line["tokens"] = tokens_per_step;
        line["step_s"] = step_s;
        line["tokens_per_s"] = tps;
        line["time_s"] = {{"data", t_data},
                          {"forward", pass.forward},
                          {"backward", pass.backward},
                          {"comm", after.busy_s() - comm_delta.before.busy_s()},
                          {"comm_exposed", after.exposed_s() - comm_delta.before.exposed_s()},
                          {"optimizer", t_opt}};
        line["comm_bytes"] = comm_delta.bytes_json(after);
        line["mem_bytes"] = mem_bytes_json(ledger);
        // Model FLOPs of the whole step over the peak of all ranks together.
        line["mfu"] = peak_flops > 0 ? flops_per_token * tps / (peak_flops * world) : 0.0;
        if (root) metrics->write(line);

        bool do_eval = data.val && ((cfg.eval_every > 0 && (s + 1) % cfg.eval_every == 0) ||
                                    s + 1 == cfg.steps);
        if (do_eval) run_eval(s + 1);
        int every = std::max(1, cfg.steps / 20);
        if (root && (s == start_step || (s + 1) % every == 0 || s + 1 == cfg.steps || stop)) {
            std::printf("step %5lld/%d | loss %.4f (avg %.4f) | lr %.2e | norm %.3f | %.0f tok/s | "
                        "%.3f s | mfu %.1f%%\n",
                        (long long)(s + 1), cfg.steps, loss, ema_loss, lr, r.grad_norm, tps,
                        step_s, 100.0 * line["mfu"].get<double>());
            std::fflush(stdout);
        }

        bool periodic = cfg.save_every > 0 && ((s + 1) % cfg.save_every == 0 || s + 1 == cfg.steps);
        if (stop || periodic) {
            double t0 = now_seconds();
            CheckpointInfo info;
            info.step = s + 1;
            info.tokens_seen = (s + 1) * tokens_per_step;
            info.train_config = train_config_to_json(cfg);
            info.data = data_position(s + 1);
            info.tokenizer = tokenizer;
            summary.last_checkpoint =
                save_checkpoint(cfg.out, engine, comm.get(), mcfg, info, cfg.keep_last);
            if (root) {
                std::printf("step %5lld/%d | checkpoint %s (%.2f s)\n", (long long)(s + 1),
                            cfg.steps, summary.last_checkpoint.c_str(), now_seconds() - t0);
                std::fflush(stdout);
            }
        }
        if (stop) {
            summary.stop_signal = my_signal ? my_signal : SIGTERM;
            if (root)
                std::printf("zerotrain: stopped by %s after step %lld; continue with --resume auto "
                            "--out %s\n",
                            my_signal ? signal_name(my_signal) : "a signal on another rank",
                            (long long)(s + 1), cfg.out.c_str());
            break;
        }
    }
    summary.tokens_per_s = train_time > 0 ? double(tokens_total) / train_time : 0;
    if (cfg.sample_tokens > 0 && !summary.stop_signal && tokenizer.is_object())
        print_sample(engine, mcfg, data_dir, cfg, root);
    auto all_mem = gather_mem_bytes(*comm, ledger);
    if (root) {
        nlohmann::ordered_json last;
        last["kind"] = "summary";
        last["steps"] = summary.last_step;
        last["start_step"] = start_step;
        if (summary.stop_signal) last["stopped_by"] = signal_name(summary.stop_signal);
        if (!summary.last_checkpoint.empty()) last["last_checkpoint"] = summary.last_checkpoint;
        last["first_loss"] = summary.first_loss;
        last["final_loss"] = summary.final_loss;
        if (summary.final_eval_loss >= 0) last["final_eval_loss"] = summary.final_eval_loss;
        last["tokens"] = tokens_total;
        last["train_s"] = train_time;
        last["tokens_per_s"] = summary.tokens_per_s;
        last["mem_bytes"] = mem_bytes_json(ledger);
        nlohmann::ordered_json ranks_json = nlohmann::ordered_json::array();
        for (int r = 0; r < world; r++)
            ranks_json.push_back({{"rank", r}, {"mem_bytes", mem_json(all_mem[size_t(r)])}});
        last["ranks"] = ranks_json;
        metrics->write(last);
        std::printf(
            "zerotrain: done: loss %.4f -> %.4f%s, %.0f tokens/s, metrics in %s/metrics.jsonl\n",
            summary.first_loss, summary.final_loss,
            summary.final_eval_loss >= 0
                ? strprintf(", eval loss %.4f", summary.final_eval_loss).c_str()
                : "",
            summary.tokens_per_s, cfg.out.c_str());
    }
    return summary;
}

}  // namespace zt
