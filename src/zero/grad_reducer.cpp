#include "zero/grad_reducer.h"

#include <cstring>

#include "core/check.h"
#include "ops/mlp.h"

namespace zt {

struct GradReducer::PendingReduce {
    int unit = 0;
    Work work;
    std::unique_ptr<TypedLedgerBuffer> full;  // (P_u) the unit's gradient, being reduced
    TypedLedgerBuffer staging;                // (s_u) this rank's reduced block
};

namespace {

// y (n) += x (n) in dtype.
void accumulate(DType dtype, void* y, void* x, int64_t n) {
    if (dtype == DType::f32)
        cpu::add_inplace(static_cast<float*>(y), static_cast<const float*>(x), n);
    else
        cpu::add_inplace(static_cast<bf16*>(y), static_cast<const bf16*>(x), n);
}

}  // namespace

GradReducer::GradReducer(const ZeroLayout& zl, const StagePolicy& policy, DType dtype,
                         bool overlap_comm, Communicator* comm, int rank, MemoryLedger* ledger)
    : zl_(zl), policy_(policy), dtype_(dtype), overlap_comm_(overlap_comm), comm_(comm),
      ledger_(ledger), rank_(rank), world_(zl.world) {
    ZT_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "gradient dtype %s: expected f32 or bf16", dtype_name(dtype));
    grads_ = TypedLedgerBuffer(ledger, MemCategory::grads, dtype,
                               policy.grads_sharded ? zl.shard_total : zl.full_padded);
    unit_bufs_.resize(zl.units.size());
}

GradReducer::~GradReducer() {
    // Outstanding reductions write into buffers about to be freed.
    try {
        for (auto& w : pending_) w.wait();
        if (in_flight_) in_flight_->work.wait();
    } catch (...) {
    }
}

void GradReducer::begin_micro(int micro, int grad_accum) {
    ZT_CHECK(grad_accum >= 1 && micro >= 0 && micro < grad_accum,
             "micro-batch %d of %d is out of range", micro, grad_accum);
    micro_ = micro;
    grad_accum_ = grad_accum;
}

void* GradReducer::full(int unit) {
    ZT_CHECK(!policy_.grads_sharded, "internal: stage %d keeps no full gradient", policy_.stage);
    return grads_.at(zl_.units[size_t(unit)].full_offset);
}

void* GradReducer::block(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    return policy_.grads_sharded ? grads_.at(us.shard_offset)
                                 : grads_.at(us.full_offset + rank_ * us.shard);
}

Tensor GradReducer::unit_grads(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.grads_sharded) return Tensor(full(unit), {us.numel}, dtype_);
    auto& buf = unit_bufs_[size_t(unit)];
    if (!buf) buf = std::make_unique<TypedLedgerBuffer>(ledger_, MemCategory::buffers, dtype_, us.padded);
    return Tensor(buf->data(), {us.numel}, dtype_);
}

void GradReducer::finish_in_flight() {
    if (!in_flight_) return;
    in_flight_->work.wait();
    const UnitShard& us = zl_.units[size_t(in_flight_->unit)];
    accumulate(dtype_, grads_.at(us.shard_offset), in_flight_->staging.data(), us.shard);
    in_flight_.reset();
}

void GradReducer::grads_ready(int unit) {
    const UnitShard& us = zl_.units[size_t(unit)];
    if (!policy_.reduce_every_micro) {
        if (world_ > 1 && micro_ == grad_accum_ - 1) {
            void* g = full(unit);
            pending_.push_back(
                policy_.optimizer_sharded
                    ? comm_->reduce_scatter_async(g, block(unit), us.shard, dtype_, ReduceOp::avg)
                    : comm_->all_reduce_async(g, us.padded, dtype_, ReduceOp::avg));
            if (!overlap_comm_) pending_.back().wait();
        }
        return;
    }
    auto& buf = unit_bufs_[size_t(unit)];
    ZT_CHECK(buf != nullptr, "grads_ready(%d) without unit_grads(%d)", unit, unit);
    if (world_ == 1) {
        accumulate(dtype_, grads_.at(us.shard_offset), buf->data(), us.shard);
        buf.reset();
        return;
    }
    // The previous unit's reduction finishes before this one is issued: it
    // overlapped this unit's backward (see estimate.cpp for the memory).
    finish_in_flight();
    auto p = std::make_unique<PendingReduce>();
    p->unit = unit;
    p->full = std::move(buf);
    p->staging = TypedLedgerBuffer(ledger_, MemCategory::buffers, dtype_, us.shard);
    p->work = comm_->reduce_scatter_async(p->full->data(), p->staging.data(), us.shard, dtype_,
                                          ReduceOp::avg);
    in_flight_ = std::move(p);
    if (!overlap_comm_) finish_in_flight();
}

void GradReducer::finish() {
    for (auto& w : pending_) w.wait();
    pending_.clear();
    finish_in_flight();
}

void GradReducer::zero() {
    std::memset(grads_.data(), 0, size_t(grads_.size()) * dtype_size(dtype_));
}

}  // namespace zt
