// The mpi backend: library collectives on a duplicated MPI_Comm, run on the
// communication thread (see mpi_backend.h for the bf16 and count choices).
#include "comm/mpi/mpi_backend.h"

#include <climits>
#include <cstring>

#include "comm/launch.h"
#include "comm/mpi/ring.h"
#include "comm/reduce.h"
#include "core/check.h"

namespace zt {

namespace {

constexpr int kP2pTag = 17;
constexpr int64_t kMaxChunk = int64_t(1) << 30;  // elements per MPI call, < INT_MAX

void bf16_sum_fn(void* in, void* inout, int* len, MPI_Datatype*) {
    comm_add_bf16(static_cast<uint16_t*>(inout), static_cast<const uint16_t*>(in),
                  static_cast<const uint16_t*>(inout), *len);
}

void bf16_max_fn(void* in, void* inout, int* len, MPI_Datatype*) {
    comm_max_bf16(static_cast<uint16_t*>(inout), static_cast<const uint16_t*>(in),
                  static_cast<const uint16_t*>(inout), *len);
}

void u8_sum_fn(void* in, void* inout, int* len, MPI_Datatype*) {
    comm_combine(DType::u8, ReduceOp::sum, inout, in, inout, *len);
}

}  // namespace

MpiBackend::MpiBackend(const char* name) : name_(name) {
    MpiRuntime& rt = MpiRuntime::instance();
    rt.acquire(name);
    rank_ = rt.rank();
    world_ = rt.world_size();
}

MpiBackend::~MpiBackend() {
    MpiRuntime::instance().release();
}

void MpiBackend::start() {
    ZT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    ZT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    ZT_MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &bf16_type_));
    ZT_MPI_CHECK(MPI_Type_commit(&bf16_type_));
    ZT_MPI_CHECK(MPI_Op_create(&bf16_sum_fn, /*commute=*/1, &bf16_sum_));
    ZT_MPI_CHECK(MPI_Op_create(&bf16_max_fn, /*commute=*/1, &bf16_max_));
    ZT_MPI_CHECK(MPI_Op_create(&u8_sum_fn, /*commute=*/1, &u8_sum_));
}

void MpiBackend::stop() {
    if (u8_sum_ != MPI_OP_NULL) ZT_MPI_CHECK(MPI_Op_free(&u8_sum_));
    if (bf16_max_ != MPI_OP_NULL) ZT_MPI_CHECK(MPI_Op_free(&bf16_max_));
    if (bf16_sum_ != MPI_OP_NULL) ZT_MPI_CHECK(MPI_Op_free(&bf16_sum_));
    if (bf16_type_ != MPI_DATATYPE_NULL) ZT_MPI_CHECK(MPI_Type_free(&bf16_type_));
    if (comm_ != MPI_COMM_NULL) ZT_MPI_CHECK(MPI_Comm_free(&comm_));
}

MPI_Datatype MpiBackend::mpi_type(DType dtype) const {
    switch (dtype) {
        case DType::f32: return MPI_FLOAT;
        case DType::bf16: return bf16_type_;
        case DType::f64: return MPI_DOUBLE;
        case DType::i32: return MPI_INT32_T;
        case DType::i64: return MPI_INT64_T;
        case DType::u8: return MPI_UINT8_T;
        case DType::f16: break;
    }
    ZT_FAIL("%s: dtype %s has no MPI datatype here", name_, dtype_name(dtype));
}

MPI_Op MpiBackend::mpi_op(DType dtype, ReduceOp op) const {
    if (dtype == DType::bf16) return op == ReduceOp::max ? bf16_max_ : bf16_sum_;
    if (dtype == DType::u8 && op != ReduceOp::max) return u8_sum_;
    return op == ReduceOp::max ? MPI_MAX : MPI_SUM;
}

void MpiBackend::all_reduce(void* buf, int64_t count, DType dtype, ReduceOp op) {
    char* p = static_cast<char*>(buf);
    size_t esize = dtype_size(dtype);
    for (int64_t off = 0; off < count; off += kMaxChunk) {
        int n = int(std::min(kMaxChunk, count - off));
        ZT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * esize, n, mpi_type(dtype),
                                   mpi_op(dtype, op), comm_));
    }
    if (op == ReduceOp::avg) comm_divide(dtype, buf, count, world_);
}

void MpiBackend::reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                                ReduceOp op) {
    ZT_CHECK(recv_count <= INT_MAX,
             "reduce_scatter: per-rank count %lld exceeds MPI's int limit %d; split the call",
             (long long)recv_count, INT_MAX);
    size_t bytes = size_t(recv_count) * dtype_size(dtype);
    // MPI forbids recv inside send; the in-place form (recv = block rank of
    // send) reduces into scratch first.
    bool in_place = recv_count > 0 && recv == static_cast<const char*>(send) + rank_ * bytes;
    void* out = recv;
    if (in_place) {
        if (scratch_.size() < bytes) scratch_.resize(bytes);
        out = scratch_.data();
    }
    ZT_MPI_CHECK(MPI_Reduce_scatter_block(send, out, int(recv_count), mpi_type(dtype),
                                          mpi_op(dtype, op), comm_));
    if (in_place) std::memcpy(recv, out, bytes);
    if (op == ReduceOp::avg) comm_divide(dtype, recv, recv_count, world_);
}

void MpiBackend::all_gather(const void* send, void* recv, int64_t send_count, DType dtype) {
    ZT_CHECK(send_count <= INT_MAX,
             "all_gather: per-rank count %lld exceeds MPI's int limit %d; split the call",
             (long long)send_count, INT_MAX);
    size_t bytes = size_t(send_count) * dtype_size(dtype);
    bool in_place = send == static_cast<const char*>(recv) + rank_ * bytes;
    ZT_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send, int(send_count), mpi_type(dtype),
                               recv, int(send_count), mpi_type(dtype), comm_));
}

void MpiBackend::broadcast(void* buf, int64_t count, DType dtype, int root) {
    char* p = static_cast<char*>(buf);
    size_t esize = dtype_size(dtype);
    for (int64_t off = 0; off < count; off += kMaxChunk) {
        int n = int(std::min(kMaxChunk, count - off));
        ZT_MPI_CHECK(MPI_Bcast(p + off * esize, n, mpi_type(dtype), root, comm_));
    }
}

void MpiBackend::send(const void* buf, int64_t count, DType dtype, int peer) {
    const char* p = static_cast<const char*>(buf);
    size_t esize = dtype_size(dtype);
    int64_t off = 0;
    do {  // a zero-count send is still one message, so the recv matches it
        int n = int(std::min(kMaxChunk, count - off));
        ZT_MPI_CHECK(MPI_Send(p + off * esize, n, mpi_type(dtype), peer, kP2pTag, comm_));
        off += n;
    } while (off < count);
}

void MpiBackend::recv(void* buf, int64_t count, DType dtype, int peer) {
    char* p = static_cast<char*>(buf);
    size_t esize = dtype_size(dtype);
    int64_t off = 0;
    do {
        int n = int(std::min(kMaxChunk, count - off));
        MPI_Status status;
        int rc = MPI_Recv(p + off * esize, n, mpi_type(dtype), peer, kP2pTag, comm_, &status);
        int err_class = rc;
        if (rc != MPI_SUCCESS) MPI_Error_class(rc, &err_class);
        ZT_CHECK(err_class != MPI_ERR_TRUNCATE,
                 "recv of %lld x %s from rank %d: the peer sent more than that (send and recv "
                 "counts or dtypes differ)",
                 (long long)count, dtype_name(dtype), peer);
        if (rc != MPI_SUCCESS) mpi_fail("MPI_Recv", rc, __FILE__, __LINE__);
        int got = 0;
        ZT_MPI_CHECK(MPI_Get_count(&status, mpi_type(dtype), &got));
        ZT_CHECK(got == n,
                 "recv of %lld x %s from rank %d: the peer sent %lld elements, expected %d "
                 "(send and recv counts or dtypes differ)",
                 (long long)count, dtype_name(dtype), peer, (long long)got, n);
        off += n;
    } while (off < count);
}

void MpiBackend::barrier() {
    ZT_MPI_CHECK(MPI_Barrier(comm_));
}

bool MpiBackend::exchange_signatures(const CommSignature& mine, std::vector<CommSignature>& all) {
    all.resize(size_t(world_));
    ZT_MPI_CHECK(MPI_Allgather(&mine, int(sizeof mine), MPI_BYTE, all.data(), int(sizeof mine),
                               MPI_BYTE, comm_));
    return true;
}

void MpiBackend::abort_job(int exit_code) {
    mpi_abort_job(exit_code);
}

// ---- construction ------------------------------------------------------------

namespace {

std::unique_ptr<Communicator> make_queued_mpi(std::unique_ptr<MpiBackend> backend,
                                              const CommOptions& opt) {
    RankInfo launcher = discover_ranks();
    ZT_CHECK(launcher.source == "none" ||
                 (launcher.rank == backend->rank() && launcher.world == backend->world_size()),
             "--comm %s: the launcher's variables (%s) say rank %d of %d, but MPI says rank %d "
             "of %d; start the ranks with mpirun/srun or zerotrain's --nproc N (torchrun does "
             "not start MPI ranks)",
             backend->name(), launcher.source.c_str(), launcher.rank, launcher.world,
             backend->rank(), backend->world_size());
    QueuedOptions q;
    q.timeout_s = opt.timeout_s;
    q.check_signatures = comm_check_from_env();
    return std::make_unique<QueuedCommunicator>(std::move(backend), q);
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const CommOptions& opt) {
    return make_queued_mpi(std::make_unique<MpiBackend>("mpi"), opt);
}

std::unique_ptr<Communicator> make_ring_communicator(const CommOptions& opt) {
    return make_queued_mpi(std::make_unique<RingBackend>(), opt);
}

}  // namespace zt
