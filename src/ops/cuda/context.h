// Per-device CUDA context of the op backend: the cuBLASLt handle and one
// scratch workspace per (device, stream).
//
// Invariant: a workspace belongs to one stream, and everything that uses it
// (cuBLASLt's GEMM workspace, an op's partial sums) is enqueued on that
// stream, so stream order alone keeps its users from overlapping. A pointer
// from stream_workspace() is valid until the next stream_workspace() call for
// the same stream: growing the workspace synchronises the stream, then frees
// the old block. Ops therefore take their workspace once, at the start.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace zt::cuda {

// cuBLASLt's recommended workspace on Hopper; every workspace starts this large.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

// The cuBLASLt handle of the current device, created on first use.
cublasLtHandle_t cublaslt_handle();

// At least `bytes` bytes of scratch private to (current device, stream),
// 256-byte aligned; contents unspecified.
void* stream_workspace(cudaStream_t stream, size_t bytes);

// Device bytes held by all workspaces of this process (for the ledger's
// `buffers`; the engine adds them, the ops do not know the ledger).
int64_t workspace_bytes();

// The calling thread's current device.
int current_device();

// Frees every workspace and handle (tests, clean shutdown); syncs the device.
void release_context();

}  // namespace zt::cuda
