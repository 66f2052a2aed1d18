// DeviceHooks: the engine's units brought to a model on another device.
//
// With --device cuda the ZeRO engine keeps its state where it keeps it on
// the CPU: the compute copy, the gradients, the fp32 master and the AdamW
// moments in host memory, sharded and communicated as at every stage. The
// model runs on the GPU: acquire(u) uploads the unit's compute copy once per
// step (the copy changes only at a step: params_changed() marks every unit
// stale), the model accumulates each unit's gradient into a device buffer,
// and grads_ready(u) adds that buffer into the engine's gradient view, zeroes
// it, and hands the unit to the engine. The engine's calls (acquire, release,
// unit_grads, grads_ready) happen in the model's order, so its gathers,
// prefetches and reductions run as they do on the CPU.
// Invariant: the model sees exactly the engine's values, and the engine's
// gradient of a micro-batch is the sum the model computed (bit for bit at one
// micro-batch a step: 0 + g = g).
#pragma once

#include <cstdint>
#include <vector>

#include "model/hooks.h"
#include "ops/backend.h"
#include "zero/engine.h"

namespace zt {

class DeviceHooks : public UnitHooks {
  public:
    DeviceHooks(Engine& engine, DeviceCopier& copier);
    ~DeviceHooks() override;
    DeviceHooks(const DeviceHooks&) = delete;
    DeviceHooks& operator=(const DeviceHooks&) = delete;

    Tensor acquire(int unit) override;
    void release(int unit) override;
    Tensor unit_grads(int unit) override;
    void grads_ready(int unit) override;

    // The engine's compute copy changed (a step, a load): upload again on use.
    void params_changed();
    // Device bytes held: every unit's compute copy and gradient.
    int64_t device_bytes() const { return device_bytes_; }

  private:
    size_t param_bytes(int unit) const;
    size_t grad_bytes(int unit) const;

    Engine& engine_;
    DeviceCopier& copier_;
    std::vector<void*> params_;           // by unit: (n_u) compute dtype on the device
    std::vector<void*> grads_;            // by unit: (n_u) grad dtype on the device
    std::vector<bool> fresh_;             // params_[u] holds the engine's current copy
    std::vector<unsigned char> staging_;  // one unit's gradient on the host
    int64_t device_bytes_ = 0;
};

}  // namespace zt
