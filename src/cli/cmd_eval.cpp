// zerotrain eval: validation loss of a checkpoint or a Hugging Face folder on
// a prepared data directory's validation shards, in one process.
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/check.h"
#include "data/shard.h"
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

void run_eval(const EvalArgs& a) {
    double t0 = now_seconds();
    LoadedWeights w = load_weights(a.checkpoint, a.hf);
    auto from_train = [&](const char* key, int fallback) {
        return w.train_config.is_object() && w.train_config.contains(key)
                   ? w.train_config[key].get<int>()
                   : fallback;
    };
    int T = a.seq_len > 0 ? a.seq_len : std::min(from_train("seq_len", 256), w.config.max_seq);
    int B = a.micro_batch > 0 ? a.micro_batch : from_train("micro_batch", 8);
    ZT_CHECK(T <= w.config.max_seq, "--seq-len %d exceeds the model's maximum of %d", T,
             w.config.max_seq);
    std::string data_sha = data_tokenizer_sha(a.data);
    ZT_CHECK(data_sha.empty() || w.tokenizer_sha256.empty() || data_sha == w.tokenizer_sha256,
             "--data %s was tokenized with a tokenizer of SHA-256 %s, but %s was trained with "
             "%s: the token ids mean different things",
             a.data.c_str(), data_sha.c_str(), w.source.c_str(), w.tokenizer_sha256.c_str());
    auto val = ShardSet::open(a.data, a.split);
    check_vocab(*val, w.config.vocab_size);

    MemoryLedger ledger;
    EngineOptions eopt;
    Engine engine(w.config, eopt, nullptr, &ledger);
    engine.load_full_params(w.params.data());
    w.params.clear();
    w.params.shrink_to_fit();
    Model model(w.config, B, T, &ledger);
    double t1 = now_seconds();
    EvalResult r = evaluate_loss(model, engine, nullptr, *val, a.eval_tokens);
    double secs = now_seconds() - t1;
    if (a.json) {
        nlohmann::ordered_json j = {{"source", w.source},       {"data", a.data},
                                    {"split", a.split},         {"seq_len", T},
                                    {"micro_batch", B},         {"loss", r.loss},
                                    {"perplexity", std::exp(r.loss)}, {"tokens", r.tokens},
                                    {"batches", r.batches},     {"seconds", secs}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("eval: %s on %s (%s split): loss %.6f, perplexity %.3f over %lld tokens "
                "(%lld batches of %d x %d), %.1f s (%.1f s loading)\n",
                w.source.c_str(), val->describe().c_str(), a.split.c_str(), r.loss,
                std::exp(r.loss), (long long)r.tokens, (long long)r.batches, B, T, secs,
                t1 - t0);
}

}  // namespace

void add_eval_command(CLI::App& app) {
    auto args = std::make_shared<EvalArgs>();
    CLI::App* c = app.add_subcommand(
        "eval", "validation loss of a checkpoint or a Hugging Face folder on prepared data");
    add_weights_options(c, &args->checkpoint, &args->hf);
    c->add_option("--data", args->data, "data directory from zerotrain prepare (or one .bin shard)")
        ->required();
    c->add_option("--split", args->split, "val or train")->capture_default_str();
    c->add_option("--seq-len", args->seq_len, "tokens per sequence (default: the checkpoint's, or 256)");
    c->add_option("--micro-batch", args->micro_batch,
                  "sequences per forward pass (default: the checkpoint's, or 8)");
    c->add_option("--eval-tokens", args->eval_tokens, "at most this many tokens (0: the whole split)")
        ->capture_default_str();
    c->add_flag("--json", args->json, "one JSON line instead of text");
    c->callback([args] { run_eval(*args); });
}

}  // namespace zt::cli
