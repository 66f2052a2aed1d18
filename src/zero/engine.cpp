#include "zero/engine.h"

#include <cmath>
#include <cstring>

#include "core/check.h"

namespace zt {

Engine::Engine(const ModelConfig& cfg, const EngineOptions& opt, MemoryLedger* ledger)
    : cfg_(cfg), layout_(model_layout(cfg)), opt_(opt) {
    ZT_CHECK(opt.grad_clip >= 0, "grad-clip must be >= 0 (0 disables clipping), got %g",
             double(opt.grad_clip));
    int64_t off = 0;
    for (const auto& u : layout_.units) {
        unit_offset_.push_back(off);
        off += u.numel;
    }
    params_ = LedgerBuffer<float>(ledger, MemCategory::params, off);
    grads_ = LedgerBuffer<float>(ledger, MemCategory::grads, off);
    adam_m_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, off);
    adam_v_ = LedgerBuffer<float>(ledger, MemCategory::optimizer, off);
}

void Engine::check_unit(int unit) const {
    ZT_CHECK(unit >= 0 && unit < layout_.n_units(), "unit %d out of range [0, %d)", unit,
             layout_.n_units());
}

void Engine::init_params(uint64_t seed) {
    for (int u = 0; u < layout_.n_units(); u++)
        init_unit_params(cfg_, layout_.units[size_t(u)], u, seed, unit_params(u));
}

float* Engine::unit_params(int unit) {
    check_unit(unit);
    return params_.data() + unit_offset_[size_t(unit)];
}

const float* Engine::acquire(int unit) { return unit_params(unit); }

void Engine::release(int unit) { check_unit(unit); }

float* Engine::unit_grads(int unit) {
    check_unit(unit);
    return grads_.data() + unit_offset_[size_t(unit)];
}

void Engine::grads_ready(int unit) { check_unit(unit); }

void Engine::zero_grads() {
    std::memset(grads_.data(), 0, size_t(grads_.size()) * sizeof(float));
}

StepResult Engine::step(float lr, int64_t step) {
    StepResult r;
    r.grad_norm = std::sqrt(cpu::sum_squares(grads_.data(), grads_.size()));
    ZT_CHECK(std::isfinite(r.grad_norm),
             "gradient norm is %g at step %lld: training diverged (try a lower --lr or "
             "--grad-clip)",
             r.grad_norm, (long long)step);
    // torch.nn.utils.clip_grad_norm_'s rule: scale by max_norm / (norm + 1e-6) when below 1.
    double coef = opt_.grad_clip / (r.grad_norm + 1e-6);
    if (opt_.grad_clip > 0 && coef < 1.0) {
        cpu::scale_inplace(grads_.data(), grads_.size(), float(coef));
        r.clipped = true;
    }
    cpu::AdamWHyper h;
    h.lr = lr;
    h.beta1 = opt_.beta1;
    h.beta2 = opt_.beta2;
    h.eps = opt_.adam_eps;
    h.weight_decay = opt_.weight_decay;
    h.step = step;
    for (int u = 0; u < layout_.n_units(); u++) {
        int64_t base = unit_offset_[size_t(u)];
        for (const auto& t : layout_.units[size_t(u)].tensors) {
            int64_t o = base + t.offset;
            cpu::adamw_update(params_.data() + o, grads_.data() + o, adam_m_.data() + o,
                              adam_v_.data() + o, t.numel, h,
                              t.decay || opt_.decay_all);
        }
    }
    return r;
}

}  // namespace zt
