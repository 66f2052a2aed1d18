// `zerotrain prepare`: text and JSONL files to llm.c token shards and meta.json.
//
// Inputs: a .txt file is split into documents at blank lines by default
// (nanoGPT's habit: one or more empty or whitespace-only lines end a
// document); with a document separator, a line equal to it ends a document
// (fortune files: "%"); with the separator "none" the whole file is one
// document. A .jsonl file holds one JSON object a line, its text in
// text_field. A directory is walked recursively in sorted path order: .txt
// and .jsonl files are read; files with no extension are read as .txt only
// when a separator is given (the fortune-file layout); everything else is
// skipped and counted. A file named directly is read whatever its extension
// (.jsonl as JSONL, anything else as text).
//
// Output (out_dir): train_000000.bin, ... and val_000000.bin, ... of
// shard_tokens tokens each (the last one shorter): uint16 shards (version 1)
// when the vocabulary fits, else uint32 (version 7); tokenizer.model and
// tokenizer.vocab when the tokenizer was trained here; meta.json.
//
// Invariants:
//  - The token stream is each kept document as [BOS] tokens [EOS] (see
//    tokenizer.h), in input order; documents cross shard boundaries.
//  - The output is a pure function of the inputs and options other than
//    threads: any thread count gives byte-identical shards.
//  - The validation split is by documents when the input holds enough of
//    them (documents x val_fraction >= 1, val_fraction 0.005 unless given):
//    document i (counting kept documents) is validation data when a draw
//    seeded by (seed, i) falls below val_fraction, and each split gets at
//    least one document (the last document of the other split moves over).
//    With fewer documents it is by tokens, as nanoGPT's shakespeare: the
//    last val_fraction (0.1 unless given) of the token stream. meta.json's
//    "val_split" records which.
//  - Everything is written into a temporary sibling directory OUT.tmp-PID
//    and renamed to out_dir at the end (moved file by file, meta.json last,
//    when out_dir already holds other files): a failed or interrupted run
//    leaves nothing in out_dir and never a meta.json beside incomplete
//    shards. SIGINT and SIGTERM while prepare_data runs remove the
//    temporary directory and exit the process with 128 + the signal.
//  - Invalid UTF-8 is replaced by U+FFFD, one per maximal invalid
//    subsequence (Python's errors="replace"), and counted. Documents that
//    hold NUL bytes (binary data), that hold only whitespace, and JSONL
//    lines that are not an object with a string text_field, are skipped,
//    counted, and the first of each kind reported as file:line. No document
//    at all is an error.
//  - An input that is not a regular file (a pipe) is read once, so it is
//    refused when it would be read twice: with train_vocab, or when the kind
//    of validation split depends on the number of documents.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace zt {

struct PrepareOptions {
    std::vector<std::string> inputs;  // files or directories
    std::string out_dir;
    std::string tokenizer =
        "byte";           // "byte" or a SentencePiece .model (used when train_vocab == 0)
    int train_vocab = 0;  // > 0: train a SentencePiece model of this vocab on the input
    std::string tokenizer_type = "bpe";  // "bpe" or "unigram", with train_vocab
    std::string text_field = "text";     // JSONL key of the text
    int64_t shard_tokens = 100000000;    // tokens per shard (llm.c's 1e8)
    // In [0, 1); unset: 0.005 of documents, or 0.1 of tokens (see above).
    std::optional<double> val_fraction;
    // How a .txt file splits into documents: unset or "", at blank lines;
    // "none", not at all; else at each line equal to it.
    std::optional<std::string> doc_separator;
    int threads = 0;  // 0: every core
    uint64_t seed = 1337;
    bool progress = true;  // progress lines on stderr, at most one a second
};

struct PrepareStats {
    int64_t source_files = 0;   // files read
    int64_t skipped_files = 0;  // files in input directories with other extensions
    int64_t input_bytes = 0;
    int64_t documents_train = 0, documents_val = 0;
    int64_t tokens_train = 0, tokens_val = 0;
    int64_t binary = 0, malformed_json = 0, empty = 0;           // skipped documents
    std::string first_binary, first_malformed_json;              // "file:line: reason"
    int64_t invalid_utf8_bytes = 0, invalid_utf8_documents = 0;  // replaced by U+FFFD
    std::string first_invalid_utf8;                              // "file:line: reason"
    std::string val_split;                                       // "documents", "tokens" or "none"
    double val_fraction = 0;                                     // the fraction used
    std::vector<std::string> train_shards, val_shards;           // file names in out_dir
    std::string tokenizer_path;  // "byte" or the absolute .model path recorded in meta.json
    int vocab_size = 0;
    double tokenizer_seconds = 0;  // training the tokenizer, when asked
    double seconds = 0;            // the whole run
};

// Runs the whole preparation; refuses, before writing anything, a missing
// input, an out_dir that is not a writable directory or already holds shards
// or a meta.json, and out-of-range options. Not for two threads at once: the
// signal handling is per process.
PrepareStats prepare_data(const PrepareOptions& opts);

// The tokenizer a data directory's meta.json names, checked against its
// recorded SHA-256. When the recorded path no longer exists, the file of the
// same name inside the directory is tried (a moved data directory keeps its
// trained tokenizer.model). Refuses a directory without meta.json or a
// tokenizer whose hash differs, naming both hashes.
std::unique_ptr<Tokenizer> load_data_tokenizer(const std::string& data_dir);

}  // namespace zt
