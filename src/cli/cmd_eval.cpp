// zerotrain eval: validation loss of a checkpoint or a Hugging Face folder on
// a prepared data directory's validation shards, in one process. A checkpoint
// records its training configuration, so --data, --seq-len and --micro-batch
// default to the run's own; a flag given always wins.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/check.h"
#include "data/loader.h"
#include "data/shard.h"
#include "model/layout.h"
#include "model/model.h"
#include "prof/memory.h"
#include "prof/timer.h"
#include "train/evaluate.h"
#include "train/weights.h"
#include "zero/engine.h"

namespace zt::cli {

namespace {

struct EvalArgs {
    std::string checkpoint, hf, data;
    std::string split = "val";
    int seq_len = 0;      // 0: the checkpoint's, or 256 capped by the model
    int micro_batch = 0;  // 0: the checkpoint's, or 8
    int64_t eval_tokens = 0;
    bool json = false;
};

// The tokenizer hash a data directory was prepared with, or "" if unknown.
std::string data_tokenizer_sha(const std::string& data) {
    std::optional<nlohmann::json> meta = read_data_meta(data);
    if (!meta || !meta->contains("tokenizer") || !(*meta)["tokenizer"].is_object()) return "";
    const auto& sha = (*meta)["tokenizer"].value("sha256", nlohmann::json());
    return sha.is_string() ? sha.get<std::string>() : "";
}

// The data directory to evaluate on: --data, or the one the checkpoint was
// trained on. Refuses, naming what to pass, when there is none to take.
std::string resolve_eval_data(const EvalArgs& a, const LoadedWeights& w) {
    if (!a.data.empty()) return a.data;
    ZT_CHECK(w.train_config.is_object(),
             "--hf %s: a Hugging Face folder records no training data; give --data DIR (a "
             "directory from zerotrain prepare)",
             w.source.c_str());
    const nlohmann::json& d = w.train_config.value("data", nlohmann::json());
    ZT_CHECK(d.is_string() && !d.get<std::string>().empty(),
             "%s/manifest.json records no training data; give --data DIR (a directory from "
             "zerotrain prepare)",
             w.source.c_str());
    const std::string data = d.get<std::string>();
    ZT_CHECK(data != "synthetic",
             "%s was trained on synthetic data, which has no validation split; give --data DIR "
             "(a directory from zerotrain prepare)",
             w.source.c_str());
    ZT_CHECK(std::filesystem::exists(data),
             "%s was trained on data %s, which no longer exists (moved, or a path relative to "
             "another directory?); give --data DIR",
             w.source.c_str(), data.c_str());
    return data;
}

// The engine's hooks, counting finished forward passes (each releases the
// head unit once, at its end) to show progress on stderr at most once a
// second, so a short evaluation prints nothing extra.
class EvalProgress : public UnitHooks {
  public:
    EvalProgress(UnitHooks& inner, int head_unit, int64_t total)
        : inner_(inner),
          head_unit_(head_unit),
          total_(total),
          start_(now_seconds()),
          last_(start_) {}
    Tensor acquire(int unit) override { return inner_.acquire(unit); }
    void release(int unit) override {
        inner_.release(unit);
        if (unit == head_unit_) batch_done();
    }
    Tensor unit_grads(int unit) override { return inner_.unit_grads(unit); }
    void grads_ready(int unit) override { inner_.grads_ready(unit); }

  private:
    void batch_done() {
        done_++;
        const double now = now_seconds();
        if (now - last_ < 1.0 || done_ >= total_) return;
        last_ = now;
        std::fprintf(stderr, "eval: %lld/%lld batches (%.0f%%), %.1f s\n", (long long)done_,
                     (long long)total_, 100.0 * double(done_) / double(total_), now - start_);
    }

    UnitHooks& inner_;
    const int head_unit_;
    const int64_t total_;
    const double start_;
    double last_;
    int64_t done_ = 0;
};

void run_eval(const EvalArgs& a) {
    double t0 = now_seconds();
    LoadedWeights w = load_weights(a.checkpoint, a.hf);
    // What the checkpoint's training configuration supplied, to say so.
    std::vector<std::string> recorded;
    auto from_train = [&](const char* key, int fallback) {
        return w.train_config.is_object() && w.train_config.contains(key)
                   ? w.train_config[key].get<int>()
                   : fallback;
    };
    const std::string data = resolve_eval_data(a, w);
    if (a.data.empty()) recorded.push_back("--data " + data);
    int T = a.seq_len > 0 ? a.seq_len : std::min(from_train("seq_len", 256), w.config.max_seq);
    if (a.seq_len <= 0 && w.train_config.contains("seq_len"))
        recorded.push_back("--seq-len " + std::to_string(T));
    int B = a.micro_batch > 0 ? a.micro_batch : from_train("micro_batch", 8);
    if (a.micro_batch <= 0 && w.train_config.contains("micro_batch"))
        recorded.push_back("--micro-batch " + std::to_string(B));
    if (!recorded.empty()) {
        std::string given;
        for (const std::string& r : recorded) given += " " + r;
        std::fprintf(stderr, "eval: from the checkpoint's training config:%s\n", given.c_str());
    }
    ZT_CHECK(T <= w.config.max_seq, "--seq-len %d exceeds the model's maximum of %d", T,
             w.config.max_seq);
    std::string data_sha = data_tokenizer_sha(data);
    ZT_CHECK(data_sha.empty() || w.tokenizer_sha256.empty() || data_sha == w.tokenizer_sha256,
             "--data %s was tokenized with a tokenizer of SHA-256 %s, but %s was trained with "
             "%s: the token ids mean different things",
             data.c_str(), data_sha.c_str(), w.source.c_str(), w.tokenizer_sha256.c_str());
    auto val = ShardSet::open(data, a.split);
    check_vocab(*val, w.config.vocab_size);

    MemoryLedger ledger;
    EngineOptions eopt;
    Engine engine(w.config, eopt, nullptr, &ledger);
    engine.load_full_params(w.params.data());
    w.params.clear();
    w.params.shrink_to_fit();
    Model model(w.config, B, T, &ledger);
    double t1 = now_seconds();
    EvalProgress progress(engine, model_layout(w.config).head_unit(),
                          eval_batches(*val, T, B, a.eval_tokens));
    EvalResult r = evaluate_loss(model, progress, nullptr, *val, a.eval_tokens);
    double secs = now_seconds() - t1;
    if (a.json) {
        nlohmann::ordered_json j = {{"source", w.source},
                                    {"data", data},
                                    {"split", a.split},
                                    {"seq_len", T},
                                    {"micro_batch", B},
                                    {"loss", r.loss},
                                    {"perplexity", std::exp(r.loss)},
                                    {"tokens", r.tokens},
                                    {"batches", r.batches},
                                    {"seconds", secs}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf(
        "eval: %s on %s (%s split): loss %.6f, perplexity %.3f over %lld tokens "
        "(%lld batches of %d x %d), %.1f s (%.1f s loading)\n",
        w.source.c_str(), val->describe().c_str(), a.split.c_str(), r.loss, std::exp(r.loss),
        (long long)r.tokens, (long long)r.batches, B, T, secs, t1 - t0);
}

}  // namespace

void add_eval_command(CLI::App& app) {
    auto args = std::make_shared<EvalArgs>();
    CLI::App* c = app.add_subcommand(
        "eval", "validation loss of a checkpoint or a Hugging Face folder on prepared data");
    add_weights_options(c, &args->checkpoint, &args->hf);
    c->add_option("--data", args->data,
                  "data directory from zerotrain prepare, or one .bin shard (default: the "
                  "checkpoint's training data; required with --hf)");
    c->add_option("--split", args->split, "val or train")->capture_default_str();
    c->add_option("--seq-len", args->seq_len,
                  "tokens per sequence (default: the checkpoint's, or 256)");
    c->add_option("--micro-batch", args->micro_batch,
                  "sequences per forward pass (default: the checkpoint's, or 8)");
    c->add_option("--eval-tokens", args->eval_tokens,
                  "at most this many tokens (0: the whole split)")
        ->capture_default_str();
    c->add_flag("--json", args->json, "one JSON line instead of text");
    c->callback([args] { run_eval(*args); });
}

}  // namespace zt::cli
