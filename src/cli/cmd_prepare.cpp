// zerotrain prepare: text/JSONL files to token shards and meta.json (src/data/prepare.h).
#include <cstdio>

#include "cli/commands.h"
#include "core/check.h"
#include "data/prepare.h"

namespace zt::cli {

namespace {

struct PrepareArgs {
    PrepareOptions opts;
    std::string separator;
    std::string tokenizer;
    double val_fraction = 0;
};

void run_prepare(PrepareArgs& a, const CLI::App& cmd) {
    PrepareOptions& o = a.opts;
    if (cmd.count("--doc-separator")) o.doc_separator = a.separator;
    if (cmd.count("--tokenizer")) o.tokenizer = a.tokenizer;
    if (cmd.count("--val-fraction")) o.val_fraction = a.val_fraction;
    ZT_CHECK(!cmd.count("--tokenizer-type") || o.train_vocab > 0,
             "--tokenizer-type %s applies only with --train-tokenizer VOCAB",
             o.tokenizer_type.c_str());
    const PrepareStats st = prepare_data(o);
    std::printf("prepare: %lld documents (%lld train, %lld val) from %lld file(s), %.1f MB\n",
                (long long)(st.documents_train + st.documents_val), (long long)st.documents_train,
                (long long)st.documents_val, (long long)st.source_files,
                double(st.input_bytes) / 1e6);
    std::printf(
        "prepare: %lld train tokens in %zu shard(s), %lld val tokens in %zu shard(s), "
        "vocab %d (%s)\n",
        (long long)st.tokens_train, st.train_shards.size(), (long long)st.tokens_val,
        st.val_shards.size(), st.vocab_size, st.tokenizer_path.c_str());
    const int64_t skipped_docs = st.binary + st.malformed_json + st.empty;
    if (skipped_docs > 0 || st.skipped_files > 0) {
        std::printf(
            "prepare: skipped %lld file(s) with other extensions, %lld binary, "
            "%lld malformed JSON, %lld empty document(s)\n",
            (long long)st.skipped_files, (long long)st.binary, (long long)st.malformed_json,
            (long long)st.empty);
        for (const std::string* first : {&st.first_binary, &st.first_malformed_json})
            if (!first->empty()) std::printf("prepare:   first: %s\n", first->c_str());
    }
    if (st.invalid_utf8_bytes > 0)
        std::printf(
            "prepare: %lld invalid UTF-8 byte(s) replaced by U+FFFD in %lld document(s); "
            "first: %s\n",
            (long long)st.invalid_utf8_bytes, (long long)st.invalid_utf8_documents,
            st.first_invalid_utf8.c_str());
    if (st.val_split == "documents")
        std::printf(
            "prepare: validation split by documents (%g of them): %lld train, %lld val "
            "tokens\n",
            st.val_fraction, (long long)st.tokens_train, (long long)st.tokens_val);
    else if (st.val_split == "tokens" && st.tokens_val > 0)
        std::printf(
            "prepare: validation split by tokens (too few documents for %g of them): the "
            "last %g of the stream, %lld train, %lld val tokens\n",
            o.val_fraction.value_or(0.005), st.val_fraction, (long long)st.tokens_train,
            (long long)st.tokens_val);
    else
        std::printf("prepare: no validation split (%s)\n",
                    st.val_split == "none" ? "--val-fraction 0" : "a single token");
    const double s = st.seconds;
    std::printf("prepare: %.2f s (tokenizer training %.2f s), %.0f tokens/s -> %s/meta.json\n", s,
                st.tokenizer_seconds, s > 0 ? double(st.tokens_train + st.tokens_val) / s : 0.0,
                o.out_dir.c_str());
}

}  // namespace

void add_prepare_command(CLI::App& app) {
    auto args = std::make_shared<PrepareArgs>();
    PrepareOptions& o = args->opts;
    CLI::App* cmd = app.add_subcommand(
        "prepare", "tokenize .txt / .jsonl files into llm.c token shards and meta.json");
    cmd->add_option("--input", o.inputs,
                    "a .txt or .jsonl file, or a directory of them (walked recursively, sorted)")
        ->required();
    cmd->add_option("--out", o.out_dir, "output directory (must not hold shards or a meta.json)")
        ->required();
    auto* tok = cmd->add_option("--tokenizer", args->tokenizer,
                                "'byte' (the default: 256 bytes + BOS/EOS) or a SentencePiece "
                                ".model, recorded by absolute path and SHA-256");
    auto* train = cmd->add_option("--train-tokenizer", o.train_vocab,
                                  "train a SentencePiece model of this vocab on the input into "
                                  "OUT/tokenizer.model");
    tok->excludes(train);
    cmd->add_option("--tokenizer-type", o.tokenizer_type, "bpe or unigram (--train-tokenizer)")
        ->check(CLI::IsMember({"bpe", "unigram"}))
        ->capture_default_str();
    cmd->add_option("--text-field", o.text_field, "JSONL key holding the text")
        ->capture_default_str();
    cmd->add_option("--shard-tokens", o.shard_tokens, "tokens per shard")->capture_default_str();
    cmd->add_option("--val-fraction", args->val_fraction,
                    "validation share: of documents (default 0.005, >= 1 document each side) "
                    "when documents x fraction >= 1, else of tokens, cut from the end of the "
                    "stream (default 0.1); 0: no validation split");
    cmd->add_option("--doc-separator", args->separator,
                    "how a .txt file splits into documents: by default (or '') at blank lines; "
                    "'none' keeps each file one document; else a line equal to this ends one "
                    "(fortune files: %), and files without extension are read too");
    cmd->add_option("--threads", o.threads, "threads (0: every core)")->capture_default_str();
    cmd->add_option("--seed", o.seed, "seed of the validation split and tokenizer sampling")
        ->capture_default_str();
    cmd->callback([args, cmd] { run_prepare(*args, *cmd); });
}

}  // namespace zt::cli
