// Resolving a training run (see resolve.h): every setting decided once, in the
// order the checks are met, before anything is built.
#include "train/resolve.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <vector>

#include "ckpt/hf.h"
#include "core/check.h"
#include "data/default_corpus.h"
#include "data/loader.h"
#include "data/synthetic.h"

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
    copt.backend = cfg.comm == "auto" ? (ranks.world > 1 ? "mpi" : "local") : cfg.comm;
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

// The model --model names; a preset takes the data directory's vocabulary.
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

}  // namespace

RunRequest read_run_request(const TrainConfig& flags) {
    validate_train_config(flags);
    RunRequest request{flags, nullptr};
    if (flags.resume.empty()) return request;
    bool found = flags.resume != "auto" || has_checkpoint(flags.out);
    if (found) {
        request.resume_from = std::make_unique<Checkpoint>(
            Checkpoint::open(flags.resume == "auto" ? flags.out : flags.resume));
        request.cfg = resumed_config(*request.resume_from, flags);
        validate_train_config(request.cfg);
    } else if (discover_ranks().rank == 0) {
        std::printf("zerotrain: --resume auto: no checkpoint in %s yet; starting at step 0\n",
                    flags.out.c_str());
    }
    return request;
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

ResolvedRun resolve_run(const RunRequest& request, Launch& launch) {
    ResolvedRun run;
    TrainConfig& cfg = run.cfg;
    cfg = request.cfg;
    const Checkpoint* resume_from = request.resume_from.get();
    run.rank = launch.comm->rank();
    run.world = launch.comm->world_size();
    const int world = run.world;

    // The world.
    cfg.comm = launch.options.backend;
    ZT_CHECK(cfg.nproc <= 0 || cfg.nproc == world,
             "--nproc %d, but the launcher started %d ranks (%s)", cfg.nproc, world,
             launch.ranks.source.c_str());
    cfg.nproc = world;
    const std::string inferred = resolve_train_batch_size(cfg, world);
    if (run.root() && !inferred.empty()) std::printf("zerotrain: %s\n", inferred.c_str());
    if (cfg.out.empty()) cfg.out = agree_on_default_run_dir(*launch.comm);
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
    if (run.root()) {
        for (const std::string& line : describe_auto_values(cfg, world))
            std::printf("zerotrain: %s\n", line.c_str());
        if (cfg.lr_schedule != "cosine")
            std::printf("zerotrain: lr schedule %s\n", describe_lr_schedule(cfg).c_str());
    }
    run.compute_dtype = cfg.precision == "bf16" ? DType::bf16 : DType::f32;
    run.grad_dtype = cfg.resolved_grad_dtype() == "bf16" ? DType::bf16 : DType::f32;

    // The data.
    run.data = resolve_data(cfg, run.model, run.rank, world);

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
    run.data.tokenizer = data_tokenizer(cfg);
    return run;
}

}  // namespace zt
