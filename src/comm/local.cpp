// local: world size 1, copies only (see local.h).
#include "comm/local.h"

#include <cstring>

#include "comm/queued.h"
#include "core/check.h"

namespace zt {

namespace {

class LocalBackend final : public QueuedBackend {
  public:
    int rank() const override { return 0; }
    int world_size() const override { return 1; }
    const char* name() const override { return "local"; }

    // A reduction over one rank is the identity (avg divides by 1).
    void all_reduce(void*, int64_t, DType, ReduceOp) override {}
    void reduce_scatter(const void* send, void* recv, int64_t recv_count, DType dtype,
                        ReduceOp) override {
        copy(recv, send, recv_count, dtype);
    }
    void all_gather(const void* send, void* recv, int64_t send_count, DType dtype) override {
        copy(recv, send, send_count, dtype);
    }
    void broadcast(void*, int64_t, DType, int) override {}
    // The queued layer refuses send/recv at world size 1 before they get here.
    void send(const void*, int64_t, DType, int) override {
        ZT_FAIL("send: the local backend has no peer rank");
    }
    void recv(void*, int64_t, DType, int) override {
        ZT_FAIL("recv: the local backend has no peer rank");
    }
    void barrier() override {}

  private:
    static void copy(void* dst, const void* src, int64_t count, DType dtype) {
        if (dst != src && count > 0) std::memcpy(dst, src, size_t(count) * dtype_size(dtype));
    }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(const CommOptions& opt) {
    QueuedOptions q;
    q.timeout_s = opt.timeout_s;
    q.check_signatures = false;  // one rank: nothing to compare
    return std::make_unique<QueuedCommunicator>(std::make_unique<LocalBackend>(), q);
}

}  // namespace zt
