// Resolving a training run (see resolve.h): every setting decided once, in the
// order the checks are met, before anything is built.
#include "train/resolve.h"

#include <omp.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "ckpt/hf.h"
#include "core/check.h"
#include "core/units.h"
#include "data/default_corpus.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "model/activations.h"
#include "model/layout.h"
#include "train/run_dir.h"

namespace zt {

namespace fs = std::filesystem;

namespace {

// ---- the checkpoint being resumed ------------------------------------------

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
    // DeepSpeed's batch rule and "auto" values are settled again for this world and model.
    c.auto_keys = cli.auto_keys;
    c.train_batch_size = cli.train_batch_size;
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
             cfg.seq_len, src.c_str(), saved.at("seq_len").get<int>(),
             saved.at("seq_len").get<int>());
    ZT_CHECK(saved.at("seed").get<uint64_t>() == cfg.seed,
             "--seed %llu, but the checkpoint (%s) used %llu: the data order would change",
             (unsigned long long)cfg.seed, src.c_str(),
             (unsigned long long)saved.at("seed").get<uint64_t>());
    int64_t g_saved = ckpt.manifest().at("data").at("global_batch_sequences").get<int64_t>();
    int64_t g = int64_t(world) * cfg.micro_batch * cfg.grad_accum;
    ZT_CHECK(
        g == g_saved,
        "the global batch is %d ranks x micro-batch %d x grad-accum %d = %lld sequences, but "
        "the checkpoint (%s) was trained with %lld; the data order continues only at the "
        "same global batch: %s",
        world, cfg.micro_batch, cfg.grad_accum, (long long)g, src.c_str(), (long long)g_saved,
        g_saved % world == 0
            ? strprintf("e.g. --micro-batch %lld --grad-accum 1", (long long)(g_saved / world))
                  .c_str()
            : strprintf("%d ranks cannot split %lld sequences evenly", world, (long long)g_saved)
                  .c_str());
    ZT_CHECK(ckpt.step() < cfg.steps,
             "the checkpoint (%s) is at step %lld and --steps is %d: nothing left to train; raise "
             "--steps",
             src.c_str(), (long long)ckpt.step(), cfg.steps);
}

// The data the checkpoint was trained on must hold as many sequences as this
// data: the epoch permutation is a function of that number.
void check_resume_data(const Checkpoint& ckpt, const TrainConfig& cfg,
                       int64_t sequences_per_epoch) {
    int64_t saved_n = ckpt.manifest().at("data").at("sequences_per_epoch").get<int64_t>();
    ZT_CHECK(saved_n == sequences_per_epoch,
             "--data %s holds %lld sequences of %d tokens, but the checkpoint (%s) was trained "
             "on data holding %lld: resume on the same data",
             cfg.data.c_str(), (long long)sequences_per_epoch, cfg.seq_len, ckpt.dir().c_str(),
             (long long)saved_n);
}

// ---- the world ---------------------------------------------------------------

CommOptions comm_options(const TrainConfig& cfg, const RankInfo& ranks) {
    CommOptions copt;
    copt.backend = cfg.comm == "auto" ? default_comm_backend(ranks) : cfg.comm;
    copt.sim_bandwidth_gbps = cfg.sim_bandwidth_gbps;
    copt.sim_latency_us = cfg.sim_latency_us;
    copt.timeout_s = cfg.comm_timeout_s;
    return copt;
}

std::string default_run_dir() {
    std::time_t t = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "runs/run-%Y%m%d-%H%M%S", std::localtime(&t));
    return buf;
}

// Every rank must agree on the name: rank 0's clock decides.
std::string agree_on_default_run_dir(Communicator& comm) {
    std::string name = default_run_dir();
    std::vector<char> buf(64, 0);
    std::memcpy(buf.data(), name.data(), std::min(name.size(), buf.size() - 1));
    comm.broadcast(buf.data(), int64_t(buf.size()), DType::u8, 0);
    return buf.data();
}

// ---- the model ---------------------------------------------------------------

void check_seq_len_fits(const TrainConfig& cfg, const ModelConfig& m) {
    ZT_CHECK(cfg.seq_len <= m.max_seq, "--seq-len %d exceeds the maximum of %d of model %s",
             cfg.seq_len, m.max_seq, m.name.c_str());
}

// The shape of the model: the checkpoint's, --init-from's config.json, or
// --model's. A --model given beside a checkpoint or --init-from must agree.
ModelConfig resolve_model_shape(const TrainConfig& cfg, const Checkpoint* resume_from) {
    if (resume_from) {
        ModelConfig m = resume_from->model_config();
        if (cfg.given.count("model")) {
            std::string diff = model_config_difference(model_from_flags(cfg), m);
            ZT_CHECK(diff.empty(), "--model %s differs from the checkpoint's model in %s",
                     cfg.model.c_str(), diff.c_str());
        }
        return m;
    }
    if (!cfg.init_from.empty()) {
        ModelConfig m = hf_model_config(cfg.init_from);
        if (cfg.given.count("model")) {
            std::string diff = model_config_difference(model_from_flags(cfg), m);
            ZT_CHECK(diff.empty(), "--model %s differs from --init-from %s's config.json in %s",
                     cfg.model.c_str(), cfg.init_from.c_str(), diff.c_str());
        }
        return m;
    }
    return model_from_flags(cfg);
}

// ---- the data ------------------------------------------------------------------

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

// The train and (where there is one) validation split of --data.
RunData open_data(const TrainConfig& cfg, const ModelConfig& model) {
    RunData d;
    if (cfg.data == "synthetic") {
        auto train =
            std::make_shared<SyntheticSource>(model.vocab_size, cfg.seed, kSyntheticTrainSequences);
        d.loss_floor = train->entropy_per_token();
        d.train = std::move(train);
        d.val = std::make_shared<SequenceWindow>(
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

// meta.json's "tokenizer" object, or null (synthetic data, bare shards).
nlohmann::ordered_json data_tokenizer(const TrainConfig& cfg) {
    if (cfg.data == "synthetic") return nullptr;
    std::optional<nlohmann::json> meta = read_data_meta(cfg.data);
    if (!meta || !meta->contains("tokenizer")) return nullptr;
    return (*meta)["tokenizer"];
}

// Opens the data, checks its token ids against the model's vocabulary and
// that the sampler can draw from it.
RunData resolve_data(const TrainConfig& cfg, const ModelConfig& model, int rank, int world) {
    RunData d = open_data(cfg, model);
    check_vocab(*d.train, model.vocab_size);
    if (d.val) check_vocab(*d.val, model.vocab_size);
    // The sampler refuses data without one sequence of --seq-len; the loop
    // builds its own from the same arguments.
    d.sequences_per_epoch =
        DataLoader(*d.train, cfg.seq_len, cfg.micro_batch, cfg.grad_accum, rank, world, cfg.seed)
            .sequences_per_epoch();
    // Local, so every rank computes the same value: the data directory, if any.
    d.dir = cfg.data == "synthetic"      ? ""
            : fs::is_directory(cfg.data) ? cfg.data
                                         : fs::path(cfg.data).parent_path().string();
    return d;
}

// Every run with a validation split evaluates at its last step at the
// latest, each rank on its own batches of micro-batch x seq-len tokens: one
// batch per rank at least, within --eval-tokens (train/evaluate.cpp).
void check_validation_fits(const TrainConfig& cfg, const TokenSource& val, int world) {
    const int B = cfg.micro_batch, T = cfg.seq_len;
    const int64_t held = eval_batches(val, T, B, 0);
    ZT_CHECK(held >= world,
             "the validation data (%s) holds %lld batch(es) of --micro-batch %d x --seq-len %d "
             "tokens, fewer than the %d ranks need (one each) to evaluate; lower --micro-batch "
             "or --seq-len, use fewer ranks, or add validation data",
             val.describe().c_str(), (long long)held, B, T, world);
    const int64_t covered = eval_batches(val, T, B, cfg.eval_tokens);
    ZT_CHECK(covered >= world,
             "--eval-tokens %lld covers fewer than %d batches of %d x %d tokens (one per rank); "
             "use --eval-tokens %lld or more",
             (long long)cfg.eval_tokens, world, B, T, (long long)(int64_t(world) * B * T));
}

// The checkpoints the run will write must fit in the free space of the
// file system --out is on (its nearest existing ancestor before it exists).
void check_checkpoint_disk(const TrainConfig& cfg, const ModelConfig& model, int64_t start_step) {
    const int64_t need = checkpoint_disk_bytes(cfg, model, start_step);
    if (need == 0) return;
    fs::path at = fs::absolute(cfg.out.empty() ? fs::path(".") : fs::path(cfg.out));
    while (!fs::exists(at) && at.has_parent_path() && at != at.parent_path()) at = at.parent_path();
    struct statvfs st {};
    ZT_CHECK(::statvfs(at.c_str(), &st) == 0, "--out %s: cannot read the free space of %s: %s",
             cfg.out.c_str(), at.c_str(), std::strerror(errno));
    const int64_t free_bytes = int64_t(st.f_bavail) * int64_t(st.f_frsize);
    // The whole run's checkpoints may outgrow the disk long after step 1 (a
    // run meant to be stopped, --keep-last 0): said, not refused; the first
    // checkpoint (and a best one beside it) must fit.
    const int64_t first = checkpoint_bytes(model) * (cfg.keep_best ? 2 : 1);
    if (need > free_bytes && first <= free_bytes) {
        std::fprintf(stderr,
                     "zerotrain: warning: --out %s: the checkpoints of this run would need %s in "
                     "all, but %s has %s free; it will run out of space unless --keep-last K "
                     "bounds them or the run stops earlier\n",
                     cfg.out.c_str(), human_bytes(need).c_str(), at.c_str(),
                     human_bytes(free_bytes).c_str());
        return;
    }
    ZT_CHECK(need <= free_bytes,
             "--out %s: the checkpoints of this run need %s (%s each: fp32 weights and two "
             "AdamW moments of %lld parameters; %s), but %s has %s free; free space, choose "
             "another --out, keep fewer with --keep-last K, save less often with --save-every, "
             "or give --no-save",
             cfg.out.c_str(), human_bytes(need).c_str(),
             human_bytes(checkpoint_bytes(model)).c_str(), (long long)count_params(model),
             cfg.keep_last > 0 ? strprintf("--keep-last %d", cfg.keep_last).c_str()
                               : "every one kept (--keep-last 0)",
             at.c_str(), human_bytes(free_bytes).c_str());
}

}  // namespace

namespace {

// read_run_request's work; report: say when --resume auto finds nothing.
RunRequest read_request(const TrainConfig& flags, bool report) {
    validate_train_config(flags);
    RunRequest request{flags, nullptr};
    if (flags.resume.empty()) return request;
    bool found = flags.resume != "auto" || has_checkpoint(flags.out);
    if (found) {
        request.resume_from = std::make_unique<Checkpoint>(
            Checkpoint::open(flags.resume == "auto" ? flags.out : flags.resume));
        request.cfg = resumed_config(*request.resume_from, flags);
        validate_train_config(request.cfg);
    } else if (report && discover_ranks().rank == 0) {
        std::printf("zerotrain: --resume auto: no checkpoint in %s yet; starting at step 0\n",
                    flags.out.c_str());
    }
    return request;
}

}  // namespace

RunRequest read_run_request(const TrainConfig& flags) {
    return read_request(flags, true);
}

Launch join_ranks(const TrainConfig& cfg) {
    if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
    Launch launch;
    launch.ranks = discover_ranks();
    launch.options = comm_options(cfg, launch.ranks);
    launch.comm = make_communicator(launch.options);
    const int world = launch.comm->world_size();
    if (cfg.threads == 0 && world > 1 && !std::getenv("OMP_NUM_THREADS")) {
        // Ranks on one machine share its cores: without this, N ranks of
        // all-core OpenMP pools spin against each other.
        const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        int on_node = local ? std::max(1, std::atoi(local)) : world;
        omp_set_num_threads(std::max(1, omp_get_num_procs() / on_node));
    }
    return launch;
}

namespace {

// resolve_run's work for rank `rank` of `world`; comm null: one process
// before the launch (nothing printed, the default run directory named by
// this process's clock).
ResolvedRun resolve_for(const RunRequest& request, int rank, int world, const std::string& backend,
                        Communicator* comm) {
    ResolvedRun run;
    TrainConfig& cfg = run.cfg;
    cfg = request.cfg;
    const Checkpoint* resume_from = request.resume_from.get();
    run.rank = rank;
    run.world = world;
    const bool report = comm && run.root();

    // The world.
    cfg.comm = backend;
    cfg.nproc = world;
    const std::string inferred = resolve_train_batch_size(cfg, world);
    if (report && !inferred.empty()) std::printf("zerotrain: %s\n", inferred.c_str());
    if (cfg.out.empty()) cfg.out = comm ? agree_on_default_run_dir(*comm) : default_run_dir();
    if (resume_from) check_resume_compatible(*resume_from, cfg, world);

    // The default corpus.
    if (cfg.data == "fortunes") {
        // A bad --model or --seq-len is refused before minutes of preparation.
        if (!resume_from && cfg.init_from.empty())
            check_seq_len_fits(cfg, resolve_model(cfg.model));
        // Prepared once under a file lock, so ranks started together share one copy.
        cfg.data = ensure_default_corpus(run.root());
    }

    // The model.
    run.model = resolve_model_shape(cfg, resume_from);
    if (!resume_from && !cfg.init_from.empty()) {
        // Recorded so that a resume of this run rebuilds the same model.
        cfg.model = (fs::path(cfg.init_from) / "config.json").string();
    }
    check_seq_len_fits(cfg, run.model);
    resolve_auto_bucket_sizes(cfg, run.model.d_model);
    if (report) {
        for (const std::string& line : describe_auto_values(cfg, world))
            std::printf("zerotrain: %s\n", line.c_str());
        if (cfg.lr_schedule != "cosine")
            std::printf("zerotrain: lr schedule %s\n", describe_lr_schedule(cfg).c_str());
    }
    run.compute_dtype = cfg.precision == "bf16" ? DType::bf16 : DType::f32;
    run.grad_dtype = cfg.resolved_grad_dtype() == "bf16" ? DType::bf16 : DType::f32;

    // The data.
    run.data = resolve_data(cfg, run.model, run.rank, world);
    if (run.data.val) check_validation_fits(cfg, *run.data.val, world);
    ZT_CHECK(!cfg.keep_best || run.data.val,
             "--keep-best keeps the checkpoint of the lowest validation loss, but --data %s has no "
             "validation split (no shard named 'val'); prepare one (zerotrain prepare "
             "--val-fraction) or drop --keep-best",
             cfg.data.c_str());

    // Where the run starts and where it writes.
    if (resume_from) {
        check_resume_data(*resume_from, cfg, run.data.sequences_per_epoch);
        run.resumed = ResumePoint{resume_from->dir(), resume_from->step(),
                                  resume_from->world_size(), resume_from->zero_stage()};
        run.start_step = resume_from->step();
        // A run resumed from its own checkpoint continues its own directory.
        if (fs::exists(cfg.out) &&
            fs::equivalent(fs::path(resume_from->dir()).parent_path().parent_path(), cfg.out))
            run.run_dir = RunDirMode::in_place;
    }
    // Every rank sees the same file system: rank 0 alone asks it.
    if (run.root()) check_checkpoint_disk(cfg, run.model, run.start_step);
    run.data.tokenizer = data_tokenizer(cfg);
    return run;
}

}  // namespace

ResolvedRun resolve_run(const RunRequest& request, Launch& launch) {
    const int world = launch.comm->world_size();
    ZT_CHECK(request.cfg.nproc <= 0 || request.cfg.nproc == world,
             "--nproc %d, but the launcher started %d ranks (%s)", request.cfg.nproc, world,
             launch.ranks.source.c_str());
    return resolve_for(request, launch.comm->rank(), world, launch.options.backend,
                       launch.comm.get());
}

void check_run_before_launch(const TrainConfig& flags, const ResumeActions& actions) {
    const RunRequest request = read_request(apply_fork(flags, actions), false);
    const TrainConfig& cfg = request.cfg;
    const int world = std::max(1, cfg.nproc);
    ZT_CHECK(cfg.comm != "local" || world == 1,
             "--comm local runs one process, but --nproc is %d; use --comm mpi or --comm ring",
             world);
    RankInfo ranks;
    ranks.world = world;
    const std::string backend = comm_options(cfg, ranks).backend;
    const ResolvedRun run = resolve_for(request, 0, world, backend, nullptr);
    check_run_dir_not_locked(run.cfg.out);
    const bool in_place = run.run_dir == RunDirMode::in_place;
    ZT_CHECK(in_place || !fs::exists(fs::path(run.cfg.out) / "metrics.jsonl"),
             "--out '%s' already holds a run (metrics.jsonl); choose another --out or remove it",
             run.cfg.out.c_str());
    check_resume_point(run, actions);
}

ModelConfig model_from_flags(const TrainConfig& cfg) {
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

EstimateInput estimate_input_for(const TrainConfig& cfg, const ModelConfig& model, int world) {
    EstimateInput in;
    in.model = model;
    in.world = world;
    in.stage = cfg.zero_stage;
    in.precision = cfg.precision;
    in.grad_dtype = cfg.resolved_grad_dtype();
    in.micro_batch = cfg.micro_batch;
    in.seq_len = cfg.seq_len;
    in.recompute = parse_recompute(cfg.recompute);
    in.offload_optimizer = cfg.offload_optimizer;
    in.offload_params = cfg.offload_params;
    in.prefetch_elements = cfg.prefetch_bucket_size;
    in.reduce_bucket_elements = cfg.reduce_bucket_size;
    in.gather_bucket_elements = cfg.allgather_bucket_size;
    return in;
}

int64_t checkpoint_bytes(const ModelConfig& model) {
    return 12 * count_params(model);
}

int64_t checkpoint_disk_bytes(const TrainConfig& cfg, const ModelConfig& model,
                              int64_t start_step) {
    if (cfg.no_save) return 0;
    // Steps (start_step, steps] that save: every --save-every-th and the last.
    int64_t saves = 0;
    if (cfg.steps > start_step) {
        saves = 1;
        if (cfg.save_every > 0)
            saves = cfg.steps / cfg.save_every - start_step / cfg.save_every +
                    (cfg.steps % cfg.save_every != 0 ? 1 : 0);
    }
    // A new step checkpoint is complete before the oldest beyond --keep-last goes.
    const int64_t steps_held =
        cfg.keep_last > 0 ? std::min<int64_t>(saves, cfg.keep_last + 1) : saves;
    const int64_t steps_kept = cfg.keep_last > 0 ? std::min<int64_t>(saves, cfg.keep_last) : saves;
    // The best one is replaced by writing the new one beside it first.
    const int64_t held = cfg.keep_best ? std::max(steps_held + 1, steps_kept + 2) : steps_held;
    return held * checkpoint_bytes(model);
}

}  // namespace zt
