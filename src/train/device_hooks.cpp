#include "train/device_hooks.h"

#include "core/check.h"
#include "ops/mlp.h"

namespace zt {

DeviceHooks::DeviceHooks(Engine& engine, DeviceCopier& copier) : engine_(engine), copier_(copier) {
    const int n = engine_.layout().n_units();
    params_.assign(size_t(n), nullptr);
    grads_.assign(size_t(n), nullptr);
    fresh_.assign(size_t(n), false);
    size_t largest = 0;
    for (int u = 0; u < n; u++) {
        params_[size_t(u)] = copier_.alloc(param_bytes(u));
        grads_[size_t(u)] = copier_.alloc(grad_bytes(u));
        device_bytes_ += int64_t(param_bytes(u) + grad_bytes(u));
        largest = std::max(largest, grad_bytes(u));
    }
    staging_.resize(largest);
}

DeviceHooks::~DeviceHooks() {
    for (void* p : params_) copier_.release(p);
    for (void* g : grads_) copier_.release(g);
}

size_t DeviceHooks::param_bytes(int unit) const {
    return size_t(engine_.layout().units[size_t(unit)].numel) * dtype_size(engine_.compute_dtype());
}

size_t DeviceHooks::grad_bytes(int unit) const {
    return size_t(engine_.layout().units[size_t(unit)].numel) * dtype_size(engine_.grad_dtype());
}

Tensor DeviceHooks::acquire(int unit) {
    Tensor host = engine_.acquire(unit);
    ZT_CHECK(host.device == Device::cpu, "internal: the engine's unit %d is not in host memory",
             unit);
    if (!fresh_[size_t(unit)]) {
        copier_.upload(params_[size_t(unit)], host.data, param_bytes(unit));
        fresh_[size_t(unit)] = true;
    }
    Tensor t = host;
    t.data = params_[size_t(unit)];
    t.device = copier_.device();
    return t;
}

void DeviceHooks::release(int unit) {
    engine_.release(unit);
}

Tensor DeviceHooks::unit_grads(int unit) {
    const int64_t n = engine_.layout().units[size_t(unit)].numel;
    return Tensor(grads_[size_t(unit)], {n}, engine_.grad_dtype(), copier_.device());
}

void DeviceHooks::grads_ready(int unit) {
    const int64_t n = engine_.layout().units[size_t(unit)].numel;
    copier_.download(staging_.data(), grads_[size_t(unit)], grad_bytes(unit));
    copier_.zero(grads_[size_t(unit)], grad_bytes(unit));
    Tensor host = engine_.unit_grads(unit);
    if (engine_.grad_dtype() == DType::bf16)
        cpu::add_inplace(static_cast<bf16*>(host.data),
                         reinterpret_cast<const bf16*>(staging_.data()), n);
    else
        cpu::add_inplace(static_cast<float*>(host.data),
                         reinterpret_cast<const float*>(staging_.data()), n);
    engine_.grads_ready(unit);
}

void DeviceHooks::params_changed() {
    fresh_.assign(fresh_.size(), false);
}

}  // namespace zt
