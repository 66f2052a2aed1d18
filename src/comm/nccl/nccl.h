// The nccl backend: NCCL collectives on a dedicated CUDA stream, for ranks
// that each drive one GPU. Built only with CUDA (ZT_HAVE_CUDA=1).
//
// Buffers are device pointers (of this rank's GPU, or managed memory); a host
// pointer is refused at issue. Each operation is enqueued on the
// communicator's own stream behind an event recorded on the compute stream
// (the legacy default stream unless set with nccl_set_compute_stream), so it
// starts after the kernels that produced its input; a completion thread waits
// for a per-operation event and completes the Work, in issue order.
//
// Bootstrap: rank and world come from discover_ranks(); rank 0 creates the
// NCCL unique id and it reaches the other ranks through MPI_Bcast when the
// ranks were started by an MPI launcher and this build has MPI, otherwise
// over TCP from rank 0 at MASTER_ADDR:MASTER_PORT (torchrun's and Slurm
// scripts' variables). Each rank uses GPU LOCAL_RANK (cudaSetDevice).
//
// Note: include NCCL's own header as <nccl.h>; "nccl.h" from this folder is
// this file.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>

#include "comm/communicator.h"
#include "comm/launch.h"

namespace zt {

std::unique_ptr<Communicator> make_nccl_communicator(const CommOptions& opt);

// Later operations of `comm` (an nccl communicator) wait for the work queued
// on `stream` at the time they are issued. Refuses any other backend.
void nccl_set_compute_stream(Communicator& comm, cudaStream_t stream);

// Bootstrap (nccl_bootstrap.cpp): rank 0's `bytes` (n of them, the NCCL
// unique id) reach every rank, through MPI or TCP as described above, within
// timeout_s, or an error says which rank waited for what.
void nccl_bootstrap_broadcast(void* bytes, size_t n, const RankInfo& ranks, double timeout_s);

}  // namespace zt
