#include "zero/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"

namespace zt {

struct Engine::Gathered {
    LedgerBuffer<float> buf;  // (P_u) the unit's full parameters
    Work work;                // the all-gather filling buf
    int refs = 0;             // acquires not yet released
};

struct Engine::PendingReduce {
    int unit = 0;
    Work work;
    std::unique_ptr<LedgerBuffer<float>> full;  // (P_u) the unit's gradient, being reduced
    LedgerBuffer<float> staging;                // (s_u) this rank's reduced block
};

namespace {

void add_into(float* y, const float* x, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

}  // namespace

Engine::Engine(const ModelConfig& cfg, const EngineOptions& opt, Communicator* comm,
               MemoryLedger* ledger)
    : cfg_(cfg), layout_(model_layout(cfg)), opt_(opt), comm_(comm), ledger_(ledger) {
    ZT_CHECK(opt.stage >= 0 && opt.stage <= 3, "--zero-stage %d: expected a stage from 0 to 3",
             opt.stage);
    ZT_CHECK(opt.grad_clip >= 0, "--grad-clip %g: must be >= 0 (0 disables clipping)",
             double(opt.grad_clip));
    ZT_CHECK(opt.prefetch_elements >= 0, "stage3_prefetch_bucket_size %lld must be >= 0",
             (long long)opt.prefetch_elements);
    if (comm_) {
        rank_ = comm_->rank();
        world_ = comm_->world_size();
    }
    zl_ = make_zero_layout(layout_, world_);
    const int s = opt.stage;
    if (s <= 2) params_full_ = LedgerBuffer<float>(ledger, MemCategory::params, zl_.full_padded);
    if (s == 3) params_shard_ = LedgerBuffer<float>(ledger, MemCategory::params, zl_.shard_total);
    if (s <= 1) grads_full_ = LedgerBuffer<float>(ledger, MemCategory::grads, zl_.full_padded);
    if (s >= 2) grads_shard_ = LedgerBuffer<float>(ledger, MemCategory::grads, zl_.shard_total);
    int64_t opt_n = s == 0 ? zl_.full_padded : zl_.shard_total;
    adam_m_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, opt_n);
    adam_v_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, opt_n);
    unit_grad_bufs_.resize(size_t(layout_.n_units()));
    pending_param_gather_.resize(size_t(layout_.n_units()));
    gathered_.resize(size_t(layout_.n_units()));
}

Engine::~Engine() {
    // Outstanding operations write into buffers we are about to free.
    for (auto& w : pending_param_gather_) {
        try {
            w.wait();
        } catch (...) {
        }
    }
    for (auto& w : pending_grad_reduce_) {
        try {
            w.wait();
        } catch (...) {
        }
    }
    if (in_flight_) {
        try {
            in_flight_->work.wait();
        } catch (...) {
        }
    }
    for (auto& g : gathered_) {
        if (!g) continue;
        try {
            g->work.wait();
        } catch (...) {
        }
    }
}

void Engine::check_unit(int unit) const {
    ZT_CHECK(unit >= 0 && unit < layout_.n_units(), "unit %d out of range [0, %d)", unit,
             layout_.n_units());
}

float* Engine::full_unit(int unit) {
    return params_full_.data() + zl_.units[size_t(unit)].full_offset;
}

void Engine::init_params(uint64_t seed) {
    std::vector<float> tmp;
    for (int u = 0; u < layout_.n_units(); u++) {
        const UnitShard& us = zl_.units[size_t(u)];
        if (opt_.stage <= 2) {
            init_unit_params(cfg_, layout_.units[size_t(u)], u, seed, full_unit(u));
            continue;
        }
        tmp.assign(size_t(us.padded), 0.0f);
        init_unit_params(cfg_, layout_.units[size_t(u)], u, seed, tmp.data());
        std::memcpy(params_shard_.data() + us.shard_offset, tmp.data() + rank_ * us.shard,
                    size_t(us.shard) * sizeof(float));
    }
}

void Engine::begin_micro(int micro, int grad_accum) {
    ZT_CHECK(grad_accum >= 1 && micro >= 0 && micro < grad_accum,
             "micro-batch %d of %d is out of range", micro, grad_accum);
    micro_ = micro;
    grad_accum_ = grad_accum;
}

// ---- parameters: acquire / release ------------------------------------------

Engine::Gathered& Engine::gather_unit(int unit) {
    auto& slot = gathered_[size_t(unit)];
    if (slot) return *slot;
    const UnitShard& us = zl_.units[size_t(unit)];
    slot = std::make_unique<Gathered>();
    slot->buf = LedgerBuffer<float>(ledger_, MemCategory::buffers, us.padded);
    const float* shard = params_shard_.data() + us.shard_offset;
    if (world_ == 1) {
        std::memcpy(slot->buf.data(), shard, size_t(us.shard) * sizeof(float));
    } else {
        slot->work = comm_->all_gather_async(shard, slot->buf.data(), us.shard, DType::f32);
    }
    return *slot;
}

void Engine::free_gathered(int unit) {
    auto& slot = gathered_[size_t(unit)];
    if (!slot) return;
    slot->work.wait();
    slot.reset();
}

// Gathers the units that follow `unit` in the recorded order, up to the window.
void Engine::prefetch_after(int unit) {
    if (!trace_recorded_ || trace_.empty()) return;
    size_t n = trace_.size(), pos = n;
    for (size_t k = 0; k < n; k++) {
        size_t i = (trace_cursor_ + k) % n;
        if (trace_[i] == unit) {
            pos = i;
            break;
        }
    }
    if (pos == n) return;
    trace_cursor_ = pos + 1;
    int64_t budget = opt_.prefetch_elements;
    for (size_t j = pos + 1; j < n; j++) {
        int v = trace_[j];
        if (v == unit) continue;
        budget -= zl_.units[size_t(v)].padded;
        if (budget < 0) break;
        gather_unit(v);
    }
}

const float* Engine::acquire(int unit) {
    check_unit(unit);
    if (opt_.stage <= 2) {
        // Stages 1/2: the all-gather of this unit's updated parameters, issued
        // after the last step, overlapped the units before it.
        pending_param_gather_[size_t(unit)].wait();
        pending_param_gather_[size_t(unit)] = Work();
        return full_unit(unit);
    }
    if (!trace_recorded_) trace_.push_back(unit);
    Gathered& g = gather_unit(unit);
    prefetch_after(unit);
    g.work.wait();
    g.refs++;
    return g.buf.data();
}

void Engine::release(int unit) {
    check_unit(unit);
    if (opt_.stage <= 2) return;
    auto& slot = gathered_[size_t(unit)];
    ZT_CHECK(slot && slot->refs > 0, "release(%d) without a matching acquire", unit);
    if (--slot->refs == 0 && zl_.units[size_t(unit)].numel > opt_.persistence_threshold)
        free_gathered(unit);
}

// ---- gradients ---------------------------------------------------------------

float* Engine::unit_grads(int unit) {
    check_unit(unit);
    const UnitShard& us = zl_.units[size_t(unit)];
    if (opt_.stage <= 1) return grads_full_.data() + us.full_offset;
    auto& buf = unit_grad_bufs_[size_t(unit)];
    if (!buf) buf = std::make_unique<LedgerBuffer<float>>(ledger_, MemCategory::buffers, us.padded);
    return buf->data();
}

void Engine::finish_in_flight() {
    if (!in_flight_) return;
    in_flight_->work.wait();
    const UnitShard& us = zl_.units[size_t(in_flight_->unit)];
    add_into(grads_shard_.data() + us.shard_offset, in_flight_->staging.data(), us.shard);
    in_flight_.reset();
}

void Engine::grads_ready(int unit) {
    check_unit(unit);
    const UnitShard& us = zl_.units[size_t(unit)];
    if (opt_.stage <= 1) {
        if (world_ > 1 && micro_ == grad_accum_ - 1) {
            float* g = grads_full_.data() + us.full_offset;
            // Stage 1 needs only its own block reduced: a reduce-scatter in
            // place moves half the bytes of an all-reduce.
            pending_grad_reduce_.push_back(
                opt_.stage == 0
                    ? comm_->all_reduce_async(g, us.padded, DType::f32, ReduceOp::avg)
                    : comm_->reduce_scatter_async(g, g + rank_ * us.shard, us.shard, DType::f32,
                                                  ReduceOp::avg));
            if (!opt_.overlap_comm) pending_grad_reduce_.back().wait();
        }
        return;
    }
    auto& buf = unit_grad_bufs_[size_t(unit)];
    ZT_CHECK(buf != nullptr, "grads_ready(%d) without unit_grads(%d)", unit, unit);
    if (world_ == 1) {
        add_into(grads_shard_.data() + us.shard_offset, buf->data(), us.shard);
        buf.reset();
        return;
    }
    // One reduction in flight: the previous unit's finishes before this one is
    // issued, so it overlapped this unit's backward and the transient memory
    // stays two units' gradients (see estimate.cpp), whatever the network speed.
    finish_in_flight();
    auto p = std::make_unique<PendingReduce>();
    p->unit = unit;
    p->full = std::move(buf);
    p->staging = LedgerBuffer<float>(ledger_, MemCategory::buffers, us.shard);
    p->work = comm_->reduce_scatter_async(p->full->data(), p->staging.data(), us.shard, DType::f32,
                                          ReduceOp::avg);
    in_flight_ = std::move(p);
    if (!opt_.overlap_comm) finish_in_flight();
}

void Engine::zero_grads() {
    if (opt_.stage <= 1)
        std::memset(grads_full_.data(), 0, size_t(grads_full_.size()) * sizeof(float));
    else
        std::memset(grads_shard_.data(), 0, size_t(grads_shard_.size()) * sizeof(float));
}

// ---- optimizer step -------------------------------------------------------------

// AdamW over unit elements [begin, end); each pointer addresses element `begin`.
void Engine::adamw_unit_range(int unit, float* p, const float* g, float* m, float* v,
                              int64_t begin, int64_t end, const cpu::AdamWHyper& h) {
    for (const auto& t : layout_.units[size_t(unit)].tensors) {
        int64_t a = std::max(begin, t.offset), b = std::min(end, t.offset + t.numel);
        if (a >= b) continue;
        int64_t o = a - begin;
        cpu::adamw_update(p + o, g + o, m + o, v + o, b - a, h, t.decay || opt_.decay_all);
    }
}

StepResult Engine::step(float lr, int64_t step) {
    const int s = opt_.stage;
    for (auto& w : pending_grad_reduce_) w.wait();
    pending_grad_reduce_.clear();
    finish_in_flight();
    if (s == 3) {
        for (int u = 0; u < layout_.n_units(); u++) free_gathered(u);
        if (!trace_.empty()) trace_recorded_ = true;
        trace_cursor_ = 0;
    }

    // This rank's gradient block of unit u: full-buffer slice (0/1) or shard (2/3).
    auto owned_grads = [&](int u) -> float* {
        const UnitShard& us = zl_.units[size_t(u)];
        return s <= 1 ? grads_full_.data() + us.full_offset + rank_ * us.shard
                      : grads_shard_.data() + us.shard_offset;
    };
    double sumsq = 0;
    for (int u = 0; u < layout_.n_units(); u++)
        sumsq += cpu::sum_squares(owned_grads(u), zl_.units[size_t(u)].shard);
    if (world_ > 1) {
        float local = float(sumsq);
        comm_->all_reduce(&local, 1, DType::f32, ReduceOp::sum);
        sumsq = double(local);
    }
    StepResult r;
    r.grad_norm = std::sqrt(sumsq);
    ZT_CHECK(std::isfinite(r.grad_norm),
             "gradient norm is %g at step %lld: training diverged (try a lower --lr or "
             "--grad-clip)",
             r.grad_norm, (long long)step);
    // torch.nn.utils.clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when below 1.
    double coef = opt_.grad_clip / (r.grad_norm + 1e-6);
    if (opt_.grad_clip > 0 && coef < 1.0) {
        r.clipped = true;
        if (s == 0)
            cpu::scale_inplace(grads_full_.data(), grads_full_.size(), float(coef));
        else
            for (int u = 0; u < layout_.n_units(); u++)
                cpu::scale_inplace(owned_grads(u), zl_.units[size_t(u)].shard, float(coef));
    }

    cpu::AdamWHyper h;
    h.lr = lr;
    h.beta1 = opt_.beta1;
    h.beta2 = opt_.beta2;
    h.eps = opt_.adam_eps;
    h.weight_decay = opt_.weight_decay;
    h.step = step;
    for (int u = 0; u < layout_.n_units(); u++) {
        const UnitShard& us = zl_.units[size_t(u)];
        if (s == 0) {
            int64_t o = us.full_offset;
            adamw_unit_range(u, params_full_.data() + o, grads_full_.data() + o,
                             adam_m_.data() + o, adam_v_.data() + o, 0, us.numel, h);
            continue;
        }
        const auto [begin, end] = owned_range(u);
        if (begin >= end) continue;
        float* p = s <= 2 ? full_unit(u) + begin : params_shard_.data() + us.shard_offset;
        adamw_unit_range(u, p, owned_grads(u), adam_m_.data() + us.shard_offset,
                         adam_v_.data() + us.shard_offset, begin, end, h);
    }

    if ((s == 1 || s == 2) && world_ > 1) {
        // Issued in the order the next forward acquires the units; each is
        // waited for only when its unit is acquired.
        for (int u = 0; u < layout_.n_units(); u++) {
            const UnitShard& us = zl_.units[size_t(u)];
            float* full = full_unit(u);
            pending_param_gather_[size_t(u)] =
                comm_->all_gather_async(full + rank_ * us.shard, full, us.shard, DType::f32);
            if (!opt_.overlap_comm) pending_param_gather_[size_t(u)].wait();
        }
    }
    return r;
}

// ---- whole-model access -----------------------------------------------------------

std::vector<float> Engine::full_params() {
    std::vector<float> out(size_t(layout_.total_numel));
    int64_t o = 0;
    std::vector<float> tmp;
    for (int u = 0; u < layout_.n_units(); u++) {
        const UnitShard& us = zl_.units[size_t(u)];
        const float* src;
        if (opt_.stage <= 2) {
            src = acquire(u);
        } else {
            tmp.assign(size_t(us.padded), 0.0f);
            const float* shard = params_shard_.data() + us.shard_offset;
            if (world_ == 1)
                std::memcpy(tmp.data(), shard, size_t(us.shard) * sizeof(float));
            else
                comm_->all_gather(shard, tmp.data(), us.shard, DType::f32);
            src = tmp.data();
        }
        std::memcpy(out.data() + o, src, size_t(us.numel) * sizeof(float));
        o += us.numel;
    }
    return out;
}

void Engine::load_full_params(const float* params) {
    int64_t o = 0;
    for (int u = 0; u < layout_.n_units(); u++) {
        const UnitShard& us = zl_.units[size_t(u)];
        if (opt_.stage <= 2) {
            acquire(u);  // no gather may still be writing the unit
            std::memcpy(full_unit(u), params + o, size_t(us.numel) * sizeof(float));
        } else {
            const auto [begin, end] = owned_range(u);
            float* dst = params_shard_.data() + us.shard_offset;
            std::memset(dst, 0, size_t(us.shard) * sizeof(float));
            if (begin < end) std::memcpy(dst, params + o + begin, size_t(end - begin) * sizeof(float));
        }
        o += us.numel;
    }
    for (int u = 0; u < layout_.n_units(); u++) free_gathered(u);
}

// ---- checkpoint state -------------------------------------------------------------

OwnedRange Engine::owned_range(int unit) const {
    check_unit(unit);
    return zt::owned_range(zl_.units[size_t(unit)], rank_);
}

void Engine::save_owned_state(int unit, float* params, float* exp_avg, float* exp_avg_sq) {
    OwnedRange r = owned_range(unit);
    const UnitShard& us = zl_.units[size_t(unit)];
    const size_t bytes = size_t(r.size()) * sizeof(float);
    if (bytes == 0) return;
    // Stages 1/2: the gather after a step writes the other ranks' blocks of
    // this unit; ours is final, but wait so no copy races a transfer.
    if (opt_.stage == 1 || opt_.stage == 2) pending_param_gather_[size_t(unit)].wait();
    const float* p = opt_.stage <= 2 ? full_unit(unit) + r.begin
                                     : params_shard_.data() + us.shard_offset;
    int64_t moment = opt_.stage == 0 ? us.full_offset + r.begin : us.shard_offset;
    std::memcpy(params, p, bytes);
    std::memcpy(exp_avg, adam_m_.data() + moment, bytes);
    std::memcpy(exp_avg_sq, adam_v_.data() + moment, bytes);
}

void Engine::load_unit_state(int unit, const float* params, const float* exp_avg,
                             const float* exp_avg_sq) {
    check_unit(unit);
    const UnitShard& us = zl_.units[size_t(unit)];
    OwnedRange r = owned_range(unit);
    auto put = [](float* dst, int64_t dst_size, const float* src, int64_t count) {
        std::memset(dst, 0, size_t(dst_size) * sizeof(float));  // padding stays zero
        if (count > 0) std::memcpy(dst, src, size_t(count) * sizeof(float));
    };
    if (opt_.stage <= 2) {
        if (opt_.stage >= 1) pending_param_gather_[size_t(unit)].wait();
        put(full_unit(unit), us.padded, params, us.numel);
    } else {
        free_gathered(unit);  // a gathered copy would be stale
        put(params_shard_.data() + us.shard_offset, us.shard, params + r.begin, r.size());
    }
    if (opt_.stage == 0) {
        put(adam_m_.data() + us.full_offset, us.padded, exp_avg, us.numel);
        put(adam_v_.data() + us.full_offset, us.padded, exp_avg_sq, us.numel);
    } else {
        put(adam_m_.data() + us.shard_offset, us.shard, exp_avg + r.begin, r.size());
        put(adam_v_.data() + us.shard_offset, us.shard, exp_avg_sq + r.begin, r.size());
    }
}

float* Engine::unit_params(int unit) {
    ZT_CHECK(opt_.stage == 0 && world_ == 1,
             "direct parameter access needs a single-process stage-0 engine");
    check_unit(unit);
    return full_unit(unit);
}

float* Engine::all_params() {
    ZT_CHECK(opt_.stage == 0 && world_ == 1,
             "direct parameter access needs a single-process stage-0 engine");
    return params_full_.data();
}

float* Engine::all_grads() {
    ZT_CHECK(opt_.stage == 0 && world_ == 1,
             "direct gradient access needs a single-process stage-0 engine");
    return grads_full_.data();
}

}  // namespace zt
