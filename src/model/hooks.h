// UnitHooks: how the model borrows a unit's parameters and hands back its
// gradients, one unit at a time. Implemented by the ZeRO engine.
//
// This is the whole contract between the model and whoever owns the weights,
// so it sits apart from the forward/backward (model.h): zero implements it
// without seeing how the model computes. Invariant: the model only reads a
// unit between acquire(u) and release(u), and only accumulates (+=) into
// unit_grads(u); grads_ready(u) says that micro-batch's gradient of u is final.
#pragma once

#include "core/tensor.h"

namespace zt {

class UnitHooks {
public:
    virtual ~UnitHooks() = default;
    // The unit's full compute copy, (n_u,) of the model's dtype, valid until release(unit).
    virtual Tensor acquire(int unit) = 0;
    virtual void release(int unit) = 0;
    // The unit's full gradient view, (n_u,), to accumulate into during
    // backward (needs no acquire: the embedding's backward reads no parameters).
    virtual Tensor unit_grads(int unit) = 0;
    // The unit's gradient for this micro-batch is complete.
    virtual void grads_ready(int unit) = 0;
};

}  // namespace zt
