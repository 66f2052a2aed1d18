#include "train/trainer.h"

#include <omp.h>

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

#include "comm/communicator.h"
#include "comm/launch.h"
#include "core/check.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/synthetic.h"
#include "model/config.h"
#include "model/model.h"
#include "ops/matmul.h"
#include "prof/memory.h"
#include "prof/timer.h"
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
    ZT_CHECK(cfg.seq_len <= m.max_seq, "--seq-len %d exceeds the maximum of %d of model %s",
             cfg.seq_len, m.max_seq, m.name.c_str());
    return m;
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

// Every rank's ledger, gathered to all: int64 byte counts travel as raw bit
// patterns through an f32 all-gather (a copy, no arithmetic touches them).
std::vector<std::array<int64_t, 6>> gather_mem_bytes(Communicator& comm,
                                                     const MemoryLedger& ledger) {
    std::array<int64_t, 6> mine{};
    for (int c = 0; c < int(MemCategory::count); c++) mine[size_t(c)] = ledger.current(MemCategory(c));
    mine[5] = ledger.peak();
    std::vector<std::array<int64_t, 6>> all(size_t(comm.world_size()));
    comm.all_gather(mine.data(), all.data(), int64_t(sizeof(mine) / sizeof(float)), DType::f32);
    return all;
}

nlohmann::ordered_json mem_json(const std::array<int64_t, 6>& m) {
    nlohmann::ordered_json j;
    for (int c = 0; c < int(MemCategory::count); c++) j[mem_category_name(MemCategory(c))] = m[size_t(c)];
    j["peak"] = m[5];
    return j;
}

// Validation loss: rank r evaluates batches r, r + N, ...; every rank runs
// the same number of forward passes (stage 3's gathers are collectives).
double evaluate(Model& model, Engine& engine, Communicator& comm, const TokenSource& val,
                const TrainConfig& cfg, int64_t* tokens_out) {
    int B = cfg.micro_batch, T = cfg.seq_len, world = comm.world_size();
    int64_t per_rank = eval_batches(val, T, B, cfg.eval_tokens) / world;
    ZT_CHECK(per_rank > 0,
             "the validation data (%s) holds fewer than %d batches of %d x %d tokens (one per "
             "rank); lower --micro-batch or --seq-len, or add validation data",
             val.describe().c_str(), world, B, T);
    std::vector<int32_t> in(size_t(B) * T), tgt(size_t(B) * T);
    double sum = 0;
    for (int64_t i = 0; i < per_rank; i++) {
        load_eval(val, T, i * world + comm.rank(), B, in.data(), tgt.data());
        sum += model.forward_loss(engine, in.data(), tgt.data());
    }
    float mean = float(sum / double(per_rank));
    if (world > 1) comm.all_reduce(&mean, 1, DType::f32, ReduceOp::avg);
    *tokens_out = per_rank * world * B * T;
    return mean;
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

}  // namespace

double measure_cpu_peak_flops() {
    const int n = 512;
    std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_seconds();
        cpu::matmul_forward(c.data(), a.data(), b.data(), nullptr, n, n, n);
        double dt = now_seconds() - t0;
        if (dt > 0) best = std::max(best, 2.0 * n * n * n / dt);
    }
    return best;
}

TrainSummary run_training(const TrainConfig& cfg_in) {
    TrainConfig cfg = cfg_in;
    validate_train_config(cfg);
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
        comm->broadcast(buf.data(), int64_t(buf.size() / sizeof(float)), DType::f32, 0);
        cfg.out = buf.data();
    }

    ModelConfig mcfg = resolve_train_model(cfg);
    DataSources data = open_data(cfg, mcfg);
    check_vocab(*data.train, mcfg.vocab_size);
    if (data.val) check_vocab(*data.val, mcfg.vocab_size);
    DataLoader loader(*data.train, T, B, K, rank, world, cfg.seed);

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
    Engine engine(mcfg, eopt, comm.get(), &ledger);
    engine.init_params(cfg.seed);
    Model model(mcfg, B, T, &ledger);

    check_run_dir_free(cfg.out);
    comm->barrier();  // every rank checked before rank 0 creates anything
    if (root) create_run_dir(cfg.out);
    nlohmann::ordered_json resolved = train_config_to_json(cfg);
    resolved["model_config"] = {{"arch", arch_name(mcfg.arch)},
                                {"vocab_size", mcfg.vocab_size},
                                {"hidden_size", mcfg.d_model},
                                {"num_hidden_layers", mcfg.n_layer},
                                {"num_attention_heads", mcfg.n_head},
                                {"num_key_value_heads", mcfg.n_kv_head},
                                {"intermediate_size", mcfg.d_ff},
                                {"max_position_embeddings", mcfg.max_seq},
                                {"norm_eps", mcfg.norm_eps},
                                {"rope_theta", mcfg.rope_theta},
                                {"tie_word_embeddings", mcfg.tie_embeddings}};
    std::unique_ptr<MetricsWriter> metrics;
    if (root) {
        std::ofstream f(fs::path(cfg.out) / "config.json");
        f << resolved.dump(2) << "\n";
        ZT_CHECK(f.good(), "cannot write %s/config.json", cfg.out.c_str());
        metrics = std::make_unique<MetricsWriter>((fs::path(cfg.out) / "metrics.jsonl").string());
    }

    const double peak_flops = measure_cpu_peak_flops();
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
                        {"peak_flops_source", "measured sgemm 512^3 on this machine, per rank"}});
        std::printf("zerotrain: model %s\n", describe_model(mcfg).c_str());
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

    for (int64_t s = 0; s < cfg.steps; s++) {
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
                loader.load(s, m, inputs.data(), targets.data());
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
        // The loss for the metrics line: not part of training's traffic (taken after the snapshot).
        float loss_f = float(local_loss);
        if (world > 1) comm->all_reduce(&loss_f, 1, DType::f32, ReduceOp::avg);
        double loss = world > 1 ? double(loss_f) : local_loss;
        train_time += step_s;
        tokens_total += tokens_per_step;
        double tps = double(tokens_per_step) / step_s;
        if (s == 0) summary.first_loss = loss;
        summary.final_loss = loss;
        ema_loss = s == 0 ? loss : 0.9 * ema_loss + 0.1 * loss;

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
        if (do_eval) {
            int64_t eval_tokens = 0;
            double vl = evaluate(model, engine, *comm, *data.val, cfg, &eval_tokens);
            summary.final_eval_loss = vl;
            if (root) {
                metrics->write(
                    {{"kind", "eval"}, {"step", s + 1}, {"loss", vl}, {"tokens", eval_tokens}});
                std::printf("step %5lld/%d | eval loss %.4f over %lld tokens\n",
                            (long long)(s + 1), cfg.steps, vl, (long long)eval_tokens);
            }
        }
        int every = std::max(1, cfg.steps / 20);
        if (root && (s == 0 || (s + 1) % every == 0 || s + 1 == cfg.steps)) {
            std::printf("step %5lld/%d | loss %.4f (avg %.4f) | lr %.2e | norm %.3f | %.0f tok/s | "
                        "%.3f s | mfu %.1f%%\n",
                        (long long)(s + 1), cfg.steps, loss, ema_loss, lr, r.grad_norm, tps,
                        step_s, 100.0 * line["mfu"].get<double>());
            std::fflush(stdout);
        }
    }
    summary.tokens_per_s = train_time > 0 ? double(tokens_total) / train_time : 0;
    auto all_mem = gather_mem_bytes(*comm, ledger);
    if (root) {
        nlohmann::ordered_json last;
        last["kind"] = "summary";
        last["steps"] = cfg.steps;
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
