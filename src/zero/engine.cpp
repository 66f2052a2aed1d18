#include "zero/engine.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "ops/adamw.h"
#include "prof/trace.h"

namespace zt {

namespace {

// The file of one kind of offloaded state of this process in `dir` (created
// if missing): one per process, so runs sharing the directory never collide.
std::string offload_path(const std::string& dir, const char* kind, int rank) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    ZT_CHECK(!ec && std::filesystem::is_directory(dir),
             "--offload-dir %s: cannot create the directory: %s", dir.c_str(),
             ec.message().c_str());
    return strprintf("%s/zerotrain-%s-%d-rank%d.bin", dir.c_str(), kind, int(::getpid()), rank);
}

}  // namespace

Engine::Engine(const ModelConfig& cfg, const EngineOptions& opt, Communicator* comm,
               MemoryLedger* ledger)
    : cfg_(cfg),
      layout_(model_layout(cfg)),
      opt_(opt),
      policy_(stage_policy(opt.stage)),
      comm_(comm) {
    ZT_CHECK(opt.grad_clip >= 0, "--grad-clip %g: must be >= 0 (0 disables clipping)",
             double(opt.grad_clip));
    ZT_CHECK(opt.compute_dtype == DType::f32 || opt.compute_dtype == DType::bf16,
             "--precision: the compute copy is f32 or bf16, not %s", dtype_name(opt.compute_dtype));
    ZT_CHECK(opt.grad_dtype == DType::f32 ||
                 (opt.grad_dtype == DType::bf16 && opt.compute_dtype == DType::bf16),
             "gradients in %s need a bf16 compute copy (--precision bf16); fp32 training "
             "reduces in f32",
             dtype_name(opt.grad_dtype));
    if (comm_) {
        rank_ = comm_->rank();
        world_ = comm_->world_size();
    }
    zl_ = make_zero_layout(layout_, world_);
    ParamStoreOptions po;
    po.dtype = opt.compute_dtype;
    po.overlap_comm = opt.overlap_comm;
    po.prefetch_elements = opt.prefetch_elements;
    po.persistence_threshold = opt.persistence_threshold;
    po.gather_bucket_elements = opt.gather_bucket_elements;
    if (!opt.offload_params_dir.empty())
        po.offload_file = offload_path(opt.offload_params_dir, "params", rank_);
    params_ = std::make_unique<ParamStore>(zl_, policy_, po, comm_, rank_, ledger);
    GradReducerOptions go;
    go.dtype = opt.grad_dtype;
    go.overlap_comm = opt.overlap_comm;
    go.bucket_elements = opt.reduce_bucket_elements;
    grads_ = std::make_unique<GradReducer>(zl_, policy_, go, comm_, rank_, ledger);
    ShardOptimizerOptions so;
    so.beta1 = opt.beta1;
    so.beta2 = opt.beta2;
    so.eps = opt.adam_eps;
    so.weight_decay = opt.weight_decay;
    so.decay_all = opt.decay_all;
    if (!opt.offload_dir.empty()) {
        so.offload_file = offload_path(opt.offload_dir, "optimizer", rank_);
        so.offload_tile_elements = opt.offload_tile_elements;
        so.offload_window = opt.offload_window;
    }
    optimizer_ = std::make_unique<ShardOptimizer>(layout_, zl_, policy_, so, opt.compute_dtype,
                                                  rank_, ledger);
}

Engine::~Engine() = default;

void Engine::check_unit(int unit) const {
    ZT_CHECK(unit >= 0 && unit < layout_.n_units(), "unit %d out of range [0, %d)", unit,
             layout_.n_units());
}

void Engine::init_params(uint64_t seed) {
    std::vector<float> tmp;
    for (int u = 0; u < layout_.n_units(); u++) {
        tmp.assign(size_t(zl_.units[size_t(u)].padded), 0.0f);
        init_unit_params(cfg_, layout_.units[size_t(u)], u, seed, tmp.data());
        params_->load_unit(u, tmp.data());
        optimizer_->load_unit(u, tmp.data(), nullptr, nullptr);
    }
}

std::array<int64_t, size_t(CommOp::count)> Engine::planned_calls(int grad_accum) const {
    std::array<int64_t, size_t(CommOp::count)> calls{};
    if (world_ == 1) return calls;
    calls[size_t(policy_.optimizer_sharded ? CommOp::reduce_scatter : CommOp::all_reduce)] +=
        grads_->collectives_per_step(grad_accum);
    calls[size_t(CommOp::all_gather)] += params_->publish_collectives();
    calls[size_t(CommOp::all_reduce)] += 1;  // the gradient norm
    return calls;
}

void Engine::begin_micro(int micro, int grad_accum) {
    if (Tracer* t = trace_active()) t->begin_micro();
    grads_->begin_micro(micro, grad_accum);
}

Tensor Engine::acquire(int unit) {
    check_unit(unit);
    if (Tracer* t = trace_active()) t->unit_acquire(unit);
    return params_->acquire(unit);
}

void Engine::release(int unit) {
    check_unit(unit);
    params_->release(unit);
    if (Tracer* t = trace_active()) t->unit_release(unit, layout_.units[size_t(unit)].name);
}

Tensor Engine::unit_grads(int unit) {
    check_unit(unit);
    if (Tracer* t = trace_active()) t->unit_grads(unit);
    return grads_->unit_grads(unit);
}

void Engine::grads_ready(int unit) {
    check_unit(unit);
    grads_->grads_ready(unit);
    if (Tracer* t = trace_active()) t->unit_grads_ready(unit, layout_.units[size_t(unit)].name);
}

void Engine::zero_grads() {
    grads_->zero();
}

StepResult Engine::step(float lr, int64_t step) {
    if (Tracer* t = trace_active()) t->begin_micro();  // what follows (eval) is forward
    grads_->finish();
    params_->end_step();

    // The norm sums each rank's block of every unit (padding is zero), so
    // after the reduction the blocks tile the gradient exactly once.
    const bool bf16_grads = opt_.grad_dtype == DType::bf16;
    double sumsq = 0;
    for (int u = 0; u < layout_.n_units(); u++) {
        const int64_t n = zl_.units[size_t(u)].shard;
        void* g = grads_->block(u);
        sumsq += bf16_grads ? cpu::sum_squares(static_cast<const bf16*>(g), n)
                            : cpu::sum_squares(static_cast<const float*>(g), n);
    }
    if (world_ > 1) comm_->all_reduce(&sumsq, 1, DType::f64, ReduceOp::sum);
    StepResult r;
    r.grad_norm = std::sqrt(sumsq);
    if (!std::isfinite(r.grad_norm)) {
        // Only now is each gradient scanned: the finite path is unchanged.
        const std::string weight = first_nonfinite_weight();
        const std::string grad = first_nonfinite_gradient();
        r.nonfinite = !weight.empty() ? "weights of " + weight : "gradient of " + grad;
        // The run's data and settings diverged, not the engine: no source location.
        ZT_USER_CHECK(
            opt_.skip_nonfinite,
            "gradient norm is %g at step %lld: training diverged; %s (try a lower --lr or "
            "--grad-clip, or --on-nonfinite skip)",
            std::fabs(r.grad_norm),  // "nan", not "-nan": a NaN's sign depends on the build
            (long long)step,
            (!weight.empty() ? "the weights of " + weight + " hold a non-finite value"
                             : "every weight is finite; the first non-finite gradient in "
                               "backward order is " +
                                   grad)
                .c_str());
        r.skipped = true;
        return r;
    }
    // torch.nn.utils.clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when below 1.
    const double coef = opt_.grad_clip / (r.grad_norm + 1e-6);
    float grad_scale = 1.0f;
    if (opt_.grad_clip > 0 && coef < 1.0) {
        r.clipped = true;
        if (bf16_grads) {
            grad_scale = float(coef);  // applied as AdamW reads each gradient
        } else if (!policy_.optimizer_sharded) {
            cpu::scale_inplace(static_cast<float*>(grads_->all()), grads_->size(), float(coef));
        } else {
            for (int u = 0; u < layout_.n_units(); u++)
                cpu::scale_inplace(static_cast<float*>(grads_->block(u)),
                                   zl_.units[size_t(u)].shard, float(coef));
        }
    }
    optimizer_->step(lr, step, *grads_, grad_scale, *params_);
    return r;
}

// Collective: the first tensor, in the order of `units`, holding a non-finite
// value among the elements [begin_u, begin_u + n_u) of each unit that this
// rank's `data(u)` (dtype) starts at; "" when none. Ranks agree on the
// earliest through a max of its negated position in that order.
std::string Engine::first_nonfinite(const std::vector<int>& units, DType dtype,
                                    const std::function<const void*(int)>& data,
                                    const std::function<OwnedRange(int)>& range) {
    const int64_t per_unit = 1 << 20;  // tensors a unit may hold, for the order's key
    const int64_t none = int64_t(units.size()) * per_unit;
    double best = -double(none);
    for (size_t k = 0; k < units.size() && best == -double(none); k++) {
        const int u = units[k];
        const OwnedRange r = range(u);
        if (r.size() <= 0) continue;
        const void* p = data(u);
        const auto& tensors = layout_.units[size_t(u)].tensors;
        for (size_t t = 0; t < tensors.size(); t++) {
            const int64_t a = std::max(r.begin, tensors[t].offset),
                          b = std::min(r.end, tensors[t].offset + tensors[t].numel);
            bool bad = false;
            for (int64_t e = a; e < b && !bad; e++) {
                const float v = dtype == DType::bf16
                                    ? bf16_to_f32(static_cast<const bf16*>(p)[e - r.begin])
                                    : static_cast<const float*>(p)[e - r.begin];
                bad = !std::isfinite(v);
            }
            if (bad) {
                best = -double(int64_t(k) * per_unit + int64_t(t));
                break;
            }
        }
    }
    if (world_ > 1) comm_->all_reduce(&best, 1, DType::f64, ReduceOp::max);
    const int64_t key = int64_t(-best);
    if (key >= none) return "";
    const auto& unit = layout_.units[size_t(units[size_t(key / per_unit)])];
    return strprintf("unit %s, tensor %s", unit.name.c_str(),
                     unit.tensors[size_t(key % per_unit)].name.c_str());
}

std::string Engine::first_nonfinite_gradient() {
    // This rank's block of each unit (the norm's elements), from the head down.
    std::vector<int> order;
    for (int u = layout_.n_units() - 1; u >= 0; u--) order.push_back(u);
    return first_nonfinite(
        order, opt_.grad_dtype, [&](int u) { return grads_->block(u); },
        [&](int u) {
            const UnitShard& us = zl_.units[size_t(u)];
            const int64_t first = int64_t(rank_) * us.shard;
            return OwnedRange{first, std::min(first + us.shard, us.numel)};
        });
}

std::string Engine::first_nonfinite_weight() {
    // The compute copy of the range this rank updates, in forward order.
    std::vector<int> order;
    for (int u = 0; u < layout_.n_units(); u++) order.push_back(u);
    return first_nonfinite(
        order, opt_.compute_dtype,
        [&](int u) { return params_->element(u, optimizer_->range(u).begin); },
        [&](int u) { return optimizer_->range(u); });
}

// ---- whole-model access -----------------------------------------------------------

std::vector<float> Engine::full_params() {
    std::vector<float> out(size_t(layout_.total_numel));
    std::vector<float> tmp;
    int64_t o = 0;
    for (int u = 0; u < layout_.n_units(); u++) {
        const UnitShard& us = zl_.units[size_t(u)];
        const OwnedRange r = optimizer_->range(u);
        if (!policy_.optimizer_sharded || world_ == 1) {
            // The master holds the whole unit (stage 0) or, in one process,
            // the whole unit as the rank's only block.
            optimizer_->read_state(u, 0, us.numel, out.data() + o, nullptr, nullptr, *params_);
        } else {
            // Each rank's block of the master, padding included (zero past n_u).
            tmp.assign(size_t(us.padded), 0.0f);
            std::vector<float> block(size_t(us.shard), 0.0f);
            optimizer_->read_state(u, 0, r.size(), block.data(), nullptr, nullptr, *params_);
            comm_->all_gather(block.data(), tmp.data(), us.shard, DType::f32);
            std::memcpy(out.data() + o, tmp.data(), size_t(us.numel) * sizeof(float));
        }
        o += us.numel;
    }
    return out;
}

const float* Engine::resident_params() {
    if (world_ != 1 || opt_.compute_dtype != DType::f32 || policy_.params_sharded) return nullptr;
    return static_cast<const float*>(params_->element(0, 0));
}

void Engine::load_full_params(const float* params) {
    int64_t o = 0;
    for (int u = 0; u < layout_.n_units(); u++) {
        params_->load_unit(u, params + o);
        // Moments are left as they are: load_full_params replaces weights only.
        optimizer_->load_master(u, params + o, *params_);
        o += zl_.units[size_t(u)].numel;
    }
}

// ---- checkpoint state -------------------------------------------------------------

OwnedRange Engine::owned_range(int unit) const {
    check_unit(unit);
    return zt::owned_range(zl_.units[size_t(unit)], rank_);
}

void Engine::save_owned_state(int unit, float* params, float* exp_avg, float* exp_avg_sq) {
    const OwnedRange own = owned_range(unit);
    if (own.size() == 0) return;
    // The owned range lies inside the optimizer's range at every stage.
    const int64_t skip = own.begin - optimizer_->range(unit).begin;
    optimizer_->read_state(unit, skip, own.size(), params, exp_avg, exp_avg_sq, *params_);
}

void Engine::load_unit_state(int unit, const float* params, const float* exp_avg,
                             const float* exp_avg_sq) {
    check_unit(unit);
    params_->load_unit(unit, params);
    optimizer_->load_unit(unit, params, exp_avg, exp_avg_sq);
}

void Engine::check_direct_access(const char* what) const {
    ZT_CHECK(opt_.stage == 0 && world_ == 1 && opt_.compute_dtype == DType::f32,
             "direct %s access needs a single-process stage-0 fp32 engine", what);
}

float* Engine::unit_params(int unit) {
    check_direct_access("parameter");
    check_unit(unit);
    return static_cast<float*>(params_->element(unit, 0));
}

float* Engine::all_params() {
    check_direct_access("parameter");
    return static_cast<float*>(params_->element(0, 0));
}

float* Engine::all_grads() {
    check_direct_access("gradient");
    return static_cast<float*>(grads_->all());
}

}  // namespace zt
