// A non-owning tensor view: pointer, shape, dtype, device.
//
// Views never own memory: the ZeRO engine owns parameters and gradients, an
// Arena owns activations. A view is contiguous, row-major, up to 4 dims.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

#include "core/check.h"
#include "core/dtype.h"

namespace zt {

enum class Device : uint8_t { cpu, cuda };

struct Tensor {
    void* data = nullptr;
    std::array<int64_t, 4> shape{0, 0, 0, 0};
    int ndim = 0;
    DType dtype = DType::f32;
    Device device = Device::cpu;

    Tensor() = default;
    Tensor(void* d, std::initializer_list<int64_t> dims, DType t = DType::f32,
           Device dev = Device::cpu)
        : data(d), dtype(t), device(dev) {
        ZT_CHECK(dims.size() <= 4, "tensor rank %zu exceeds 4", dims.size());
        for (int64_t s : dims) {
            ZT_CHECK(s >= 0, "negative tensor dimension %lld", (long long)s);
            shape[size_t(ndim++)] = s;
        }
    }

    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < ndim; i++) n *= shape[size_t(i)];
        return n;
    }
    int64_t bytes() const { return numel() * int64_t(dtype_size(dtype)); }
    float* f32() const {
        ZT_CHECK(dtype == DType::f32, "expected an f32 tensor, found %s", dtype_name(dtype));
        return static_cast<float*>(data);
    }
};

}  // namespace zt
