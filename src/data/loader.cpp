// The distributed sampler, its read-ahead thread, and the in-order evaluation
// reader (see loader.h).
#include "data/loader.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "core/check.h"
#include "core/rng.h"

namespace zt {

namespace {

constexpr uint64_t kOrderTag = 0x646174616f726465ull;  // "dataorde": keeps the order's draws
                                                       // apart from other users of the seed

// Splits one sequence of T+1 tokens into a row of inputs and of targets.
void split_sequence(const int32_t* seq, int T, int32_t* inputs, int32_t* targets) {
    for (int t = 0; t < T; t++) {
        inputs[t] = seq[t];
        targets[t] = seq[t + 1];
    }
}

}  // namespace

std::vector<uint32_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
    ZT_CHECK(n > 0 && n <= int64_t(std::numeric_limits<uint32_t>::max()),
             "epoch permutation of %lld sequences: expected 1 .. %u", (long long)n,
             std::numeric_limits<uint32_t>::max());
    std::vector<uint32_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0u);
    Rng rng(rng_mix64(seed ^ kOrderTag), uint64_t(epoch));
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = int64_t(rng.below(uint64_t(i) + 1));
        std::swap(perm[size_t(i)], perm[size_t(j)]);
    }
    return perm;
}

DataLoader::DataLoader(const TokenSource& src, int T, int micro_batch, int grad_accum, int rank,
                       int world, uint64_t seed)
    : src_(src), T_(T), B_(micro_batch), K_(grad_accum), rank_(rank), world_(world), seed_(seed) {
    ZT_CHECK(T > 0, "seq-len %d must be positive", T);
    ZT_CHECK(micro_batch > 0, "micro-batch %d must be positive", micro_batch);
    ZT_CHECK(grad_accum > 0, "grad-accum %d must be positive", grad_accum);
    ZT_CHECK(world > 0, "world size %d must be positive", world);
    ZT_CHECK(rank >= 0 && rank < world, "rank %d out of range [0, %d) for world size %d", rank,
             world, world);
    n_ = src.n_sequences(T);
    ZT_CHECK(n_ > 0, "data source %s has no sequences at seq-len %d", src.describe().c_str(), T);
    ZT_CHECK(n_ <= int64_t(std::numeric_limits<uint32_t>::max()),
             "data source %s has %lld sequences at seq-len %d; the sampler supports at most %u "
             "per epoch: raise --seq-len",
             src.describe().c_str(), (long long)n_, T, std::numeric_limits<uint32_t>::max());
    g_ = int64_t(world) * micro_batch * grad_accum;
}

int64_t DataLoader::global_position(int64_t step, int micro, int b) const {
    ZT_CHECK(step >= 0 && step <= std::numeric_limits<int64_t>::max() / g_ - 1,
             "step %lld out of range (0 .. %lld)", (long long)step,
             (long long)(std::numeric_limits<int64_t>::max() / g_ - 1));
    ZT_CHECK(micro >= 0 && micro < K_, "micro-batch index %d out of range [0, %d) (grad-accum %d)",
             micro, K_, K_);
    ZT_CHECK(b >= 0 && b < B_, "row %d out of range [0, %d) (micro-batch)", b, B_);
    return step * g_ + (int64_t(rank_) * K_ + micro) * B_ + b;
}

const std::vector<uint32_t>& DataLoader::permutation(int64_t epoch) const {
    if (epoch != cached_epoch_) {
        perm_ = epoch_permutation(n_, seed_, epoch);
        cached_epoch_ = epoch;
    }
    return perm_;
}

int64_t DataLoader::sequence_at(int64_t position) const {
    ZT_CHECK(position >= 0, "global position %lld is negative", (long long)position);
    std::lock_guard<std::mutex> lock(mu_);
    return permutation(position / n_)[size_t(position % n_)];
}

void DataLoader::load(int64_t step, int micro, int32_t* inputs, int32_t* targets) const {
    std::vector<int64_t> seqs(static_cast<size_t>(B_));
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (int b = 0; b < B_; b++) {
            const int64_t p = global_position(step, micro, b);
            seqs[size_t(b)] = permutation(p / n_)[size_t(p % n_)];
        }
    }
    std::vector<int32_t> seq(size_t(T_) + 1);
    for (int b = 0; b < B_; b++) {
        src_.read_sequence(seqs[size_t(b)], T_, seq.data());
        split_sequence(seq.data(), T_, inputs + size_t(b) * T_, targets + size_t(b) * T_);
    }
}

PrefetchLoader::PrefetchLoader(const DataLoader& loader, int64_t start_step, int depth)
    : loader_(loader), depth_(depth) {
    ZT_CHECK(depth >= 1 && depth <= 64, "prefetch depth %d: expected 1 .. 64 micro-batches", depth);
    ZT_CHECK(start_step >= 0 &&
                 start_step <= std::numeric_limits<int64_t>::max() / loader.global_batch() - 1,
             "prefetch start step %lld out of range", (long long)start_step);
    const size_t n = size_t(loader.micro_batch()) * size_t(loader.seq_len());
    ring_.resize(size_t(depth));
    for (Slot& s : ring_) {
        s.inputs.resize(n);
        s.targets.resize(n);
    }
    take_ = ready_end_ = start_step * loader.grad_accum();
    worker_ = std::thread([this] { produce(); });
}

PrefetchLoader::~PrefetchLoader() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
}

// The worker: loads position ready_end_ into its slot while the ring has
// room. The slot is filled outside the lock; it is never the one next() is
// copying from, because next() holds position take_ and the worker only
// writes positions take_ + 1 .. take_ + depth - 1 until take_ moves on.
void PrefetchLoader::produce() {
    const int K = loader_.grad_accum();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stop_ || (!failed_ && ready_end_ < take_ + depth_); });
        if (stop_) return;
        const int64_t p = ready_end_;
        const uint64_t generation = generation_;
        Slot& slot = ring_[size_t(p % depth_)];
        lock.unlock();
        std::exception_ptr error;
        try {
            loader_.load(p / K, int(p % K), slot.inputs.data(), slot.targets.data());
        } catch (...) {
            error = std::current_exception();
        }
        lock.lock();
        if (generation != generation_) continue;  // next() restarted elsewhere meanwhile
        slot.error = error;
        failed_ = bool(error);
        ready_end_ = p + 1;
        cv_.notify_all();
    }
}

void PrefetchLoader::next(int64_t step, int micro, int32_t* inputs, int32_t* targets) {
    const int K = loader_.grad_accum();
    ZT_CHECK(step >= 0 && step <= std::numeric_limits<int64_t>::max() / loader_.global_batch() - 1,
             "step %lld out of range (0 .. %lld)", (long long)step,
             (long long)(std::numeric_limits<int64_t>::max() / loader_.global_batch() - 1));
    ZT_CHECK(micro >= 0 && micro < K, "micro-batch index %d out of range [0, %d) (grad-accum %d)",
             micro, K, K);
    const int64_t p = step * K + micro;
    std::unique_lock<std::mutex> lock(mu_);
    if (p != take_) {  // out of order: empty the ring and read ahead from p
        generation_++;
        take_ = ready_end_ = p;
        failed_ = false;
        cv_.notify_all();
    }
    cv_.wait(lock, [&] { return ready_end_ > take_; });
    const Slot& slot = ring_[size_t(p % depth_)];
    if (slot.error) std::rethrow_exception(slot.error);  // take_ stays: a retry throws again
    lock.unlock();
    std::copy(slot.inputs.begin(), slot.inputs.end(), inputs);
    std::copy(slot.targets.begin(), slot.targets.end(), targets);
    lock.lock();
    take_ = p + 1;
    cv_.notify_all();
}

void load_eval(const TokenSource& src, int T, int64_t index, int B, int32_t* inputs,
               int32_t* targets) {
    ZT_CHECK(T > 0, "seq-len %d must be positive", T);
    ZT_CHECK(B > 0, "eval batch size %d must be positive", B);
    const int64_t n = src.n_sequences(T);
    ZT_CHECK(index >= 0 && index < n / B,
             "eval batch %lld out of range: %s holds %lld sequences at seq-len %d, so %lld full "
             "batches of %d (evaluation does not wrap)",
             (long long)index, src.describe().c_str(), (long long)n, T, (long long)(n / B), B);
    std::vector<int32_t> seq(size_t(T) + 1);
    for (int b = 0; b < B; b++) {
        src.read_sequence(index * B + b, T, seq.data());
        split_sequence(seq.data(), T, inputs + size_t(b) * T, targets + size_t(b) * T);
    }
}

int64_t eval_batches(const TokenSource& src, int T, int B, int64_t max_tokens) {
    ZT_CHECK(T > 0, "seq-len %d must be positive", T);
    ZT_CHECK(B > 0, "eval batch size %d must be positive", B);
    int64_t batches = src.n_sequences(T) / B;
    if (max_tokens > 0) batches = std::min(batches, max_tokens / (int64_t(B) * T));
    return batches;
}

}  // namespace zt
