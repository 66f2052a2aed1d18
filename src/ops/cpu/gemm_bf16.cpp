// bf16 GEMM with fp32 accumulation: oneDNN matmul primitives when oneDNN is
// built in (ZT_HAVE_DNNL) and has a bf16 matmul for this CPU (AVX-512 or
// AMX), else the operands widened to fp32 and sgemm. Both paths compute the
// same products of bf16 values (exact in fp32) and differ only in the order
// of the fp32 sums; gemm_bf16_path says which one runs.
//
// Invariant: a product is always accumulated in fp32 and a bf16 C is rounded
// once, at the end. oneDNN: alpha is the primitive's output scale, beta its sum
// post-op (left out when beta == 0, so C is never read then), the bias is the
// primitive's bias; memory descriptors carry the strides, so sub-blocks of
// wider rows are used in place.
//
// Threads: a oneDNN primitive is planned for the thread count it was created
// under, so that count is part of the cache key. gemm_bf16_serial pins this
// thread's OpenMP count to 1 around both creation and execution: oneDNN then
// plans for one thread and runs the kernel on the caller without opening a
// parallel region, inside an enclosing region or not. Each call brings its
// own scratchpad (scratchpad_mode::user, one buffer per thread), because the
// library-managed one is shared by primitives created on the same thread and
// the serial GEMMs run concurrently.
#include "ops/cpu/gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "ops/cpu/blas.h"
#include "ops/matmul.h"  // gemm_bf16_path

#if ZT_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace zt::cpu {

namespace {

void check_gemm_args(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb,
                     int64_t ldc) {
    ZT_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm_bf16: negative size M=%lld N=%lld K=%lld",
             (long long)M, (long long)N, (long long)K);
    const int64_t a_cols = ta ? M : K, b_cols = tb ? K : N;
    ZT_CHECK(lda >= std::max<int64_t>(1, a_cols),
             "gemm_bf16: lda=%lld is less than the %lld columns of A as stored %s", (long long)lda,
             (long long)a_cols, ta ? "(K, M) with trans_a" : "(M, K)");
    ZT_CHECK(ldb >= std::max<int64_t>(1, b_cols),
             "gemm_bf16: ldb=%lld is less than the %lld columns of B as stored %s", (long long)ldb,
             (long long)b_cols, tb ? "(N, K) with trans_b" : "(K, N)");
    ZT_CHECK(ldc >= std::max<int64_t>(1, N), "gemm_bf16: ldc=%lld is less than N=%lld",
             (long long)ldc, (long long)N);
}

template <class Out>
float load(const Out& x) {
    if constexpr (std::is_same_v<Out, bf16>)
        return bf16_to_f32(x);
    else
        return x;
}
template <class Out>
Out store(float x) {
    if constexpr (std::is_same_v<Out, bf16>)
        return f32_to_bf16(x);
    else
        return x;
}

// K == 0: the product is empty, so C = beta C (+ bias). Handled here because
// neither oneDNN nor every BLAS accepts an empty reduction.
template <class Out>
void gemm_empty_k(int64_t M, int64_t N, const bf16* bias, float beta, Out* C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float c = beta == 0.0f ? 0.0f : beta * load(C[i * ldc + j]);
            if (bias) c += bf16_to_f32(bias[j]);
            C[i * ldc + j] = store<Out>(c);
        }
}

// The reference path: widen to fp32, sgemm, round once.
template <class Out>
void gemm_widened(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
                  int64_t lda, const bf16* B, int64_t ldb, const bf16* bias, float beta, Out* C,
                  int64_t ldc, bool serial) {
    for (int64_t d : {M, N, K, lda, ldb}) blas_dim(d);
    const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
    const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
    std::vector<float> a(size_t(a_rows * lda)), b(size_t(b_rows * ldb)), c(size_t(M * N));
    for (int64_t i = 0; i < a_rows; i++)
        for (int64_t j = 0; j < a_cols; j++) a[size_t(i * lda + j)] = bf16_to_f32(A[i * lda + j]);
    for (int64_t i = 0; i < b_rows; i++)
        for (int64_t j = 0; j < b_cols; j++) b[size_t(i * ldb + j)] = bf16_to_f32(B[i * ldb + j]);
    // A bias joins as the initial C of an sgemm with beta = 1; beta = 0 never reads C.
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float c0 = 0.0f;
            if (bias)
                c0 = bf16_to_f32(bias[j]);
            else if (beta != 0.0f)
                c0 = load(C[i * ldc + j]);
            c[size_t(i * N + j)] = c0;
        }
    const float c_beta = bias ? 1.0f : beta;
    auto t = [](bool x) { return x ? kTrans : kNoTrans; };
    if (serial)
        gemm(t(ta), t(tb), M, N, K, alpha, a.data(), lda, b.data(), ldb, c_beta, c.data(), N);
    else
        gemm_parallel(t(ta), t(tb), M, N, K, alpha, a.data(), lda, b.data(), ldb, c_beta, c.data(),
                      N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = store<Out>(c[size_t(i * N + j)]);
}

#if ZT_HAVE_DNNL

using dnnl_dt = dnnl::memory::data_type;
using dnnl_dims = dnnl::memory::dims;

// Everything a matmul primitive is specialised for.
struct PlanKey {
    int64_t M, N, K, lda, ldb, ldc;
    uint32_t alpha_bits, beta_bits;
    int threads;
    bool ta, tb, c_bf16, bias;
    bool operator==(const PlanKey&) const = default;
};

struct PlanKeyHash {
    size_t operator()(const PlanKey& k) const {
        uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
        auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
        for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc}) mix(uint64_t(v));
        mix(k.alpha_bits);
        mix(k.beta_bits);
        mix(uint64_t(k.threads));
        mix(uint64_t(k.ta) | uint64_t(k.tb) << 1 | uint64_t(k.c_bf16) << 2 | uint64_t(k.bias) << 3);
        return size_t(h);
    }
};

struct Plan {
    dnnl::memory::desc a, b, c, bias, scratch;  // a (M, K), b (K, N), c (M, N), bias (1, N)
    dnnl::matmul prim;
    std::string impl;  // oneDNN's name for the kernel it chose, e.g. brg:avx512_core_amx_bf16
};

// One CPU engine per process, never destroyed: streams that belong to OpenMP
// worker threads may outlive static destruction.
const dnnl::engine& cpu_engine() {
    static const dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
    return *engine;
}

// A stream per thread, so concurrent serial GEMMs never share one.
dnnl::stream& thread_stream() {
    thread_local dnnl::stream stream(cpu_engine());
    return stream;
}

// This thread's scratchpad, grown to the largest primitive it has run.
void* thread_scratch(size_t bytes) {
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    thread_local std::unique_ptr<void, Free> buf;
    thread_local size_t capacity = 0;
    if (bytes > capacity) {
        const size_t rounded = (bytes + 4095) / 4096 * 4096;
        buf.reset(std::aligned_alloc(4096, rounded));
        ZT_CHECK(buf, "gemm_bf16: cannot allocate a %zu-byte oneDNN scratchpad", rounded);
        capacity = rounded;
    }
    return buf.get();
}

Plan make_plan(const PlanKey& k) {
    Plan p;
    p.a = dnnl::memory::desc({k.M, k.K}, dnnl_dt::bf16,
                             k.ta ? dnnl_dims{1, k.lda} : dnnl_dims{k.lda, 1});
    p.b = dnnl::memory::desc({k.K, k.N}, dnnl_dt::bf16,
                             k.tb ? dnnl_dims{1, k.ldb} : dnnl_dims{k.ldb, 1});
    p.c = dnnl::memory::desc({k.M, k.N}, k.c_bf16 ? dnnl_dt::bf16 : dnnl_dt::f32,
                             dnnl_dims{k.ldc, 1});
    if (k.bias) p.bias = dnnl::memory::desc({1, k.N}, dnnl_dt::bf16, dnnl_dims{k.N, 1});

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const float alpha = std::bit_cast<float>(k.alpha_bits),
                beta = std::bit_cast<float>(k.beta_bits);
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(beta);
        attr.set_post_ops(ops);
    }
    const dnnl::matmul::desc desc =
        k.bias ? dnnl::matmul::desc(p.a, p.b, p.bias, p.c) : dnnl::matmul::desc(p.a, p.b, p.c);
    const dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
    p.scratch = pd.scratchpad_desc();
    p.impl = pd.impl_info_str();
    p.prim = dnnl::matmul(pd);
    return p;
}

// Plans by key, shared by all threads. A plan is built outside the lock (two
// threads building the same one is harmless; serialising every first use is
// not), and handed out as a shared_ptr so a cache reset never frees a plan in
// use. The cap bounds the cache when shapes never repeat (decoding with a
// growing context); training reuses a few dozen.
class PlanCache {
  public:
    std::shared_ptr<const Plan> get(const PlanKey& key) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            auto it = plans_.find(key);
            if (it != plans_.end()) return it->second;
        }
        auto plan = std::make_shared<const Plan>(make_plan(key));
        std::lock_guard<std::mutex> lock(mu_);
        if (plans_.size() >= kMaxPlans) plans_.clear();
        return plans_.try_emplace(key, std::move(plan)).first->second;
    }

  private:
    static constexpr size_t kMaxPlans = 1024;
    std::mutex mu_;
    std::unordered_map<PlanKey, std::shared_ptr<const Plan>, PlanKeyHash> plans_;
};

PlanCache& plan_cache() {
    static PlanCache* cache = new PlanCache;  // never destroyed, like the engine it uses
    return *cache;
}

// While alive, OpenMP regions opened by this thread (oneDNN's) get one thread.
class OmpSingleThread {
  public:
    OmpSingleThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
    ~OmpSingleThread() { omp_set_num_threads(saved_); }
    OmpSingleThread(const OmpSingleThread&) = delete;
    OmpSingleThread& operator=(const OmpSingleThread&) = delete;

  private:
    int saved_;
};

std::string describe(const PlanKey& k) {
    return strprintf("ta=%d tb=%d M=%lld N=%lld K=%lld lda=%lld ldb=%lld ldc=%lld C=%s%s", k.ta,
                     k.tb, (long long)k.M, (long long)k.N, (long long)k.K, (long long)k.lda,
                     (long long)k.ldb, (long long)k.ldc, k.c_bf16 ? "bf16" : "f32",
                     k.bias ? " with bias" : "");
}

template <class Out>
void gemm_dnnl(const PlanKey& key, const bf16* A, const bf16* B, const bf16* bias, Out* C) {
    try {
        const std::shared_ptr<const Plan> plan = plan_cache().get(key);
        const dnnl::engine& engine = cpu_engine();
        std::unordered_map<int, dnnl::memory> args{
            {DNNL_ARG_SRC, dnnl::memory(plan->a, engine, const_cast<bf16*>(A))},
            {DNNL_ARG_WEIGHTS, dnnl::memory(plan->b, engine, const_cast<bf16*>(B))},
            {DNNL_ARG_DST, dnnl::memory(plan->c, engine, C)}};
        if (bias)
            args.emplace(DNNL_ARG_BIAS, dnnl::memory(plan->bias, engine, const_cast<bf16*>(bias)));
        if (const size_t bytes = plan->scratch.get_size())
            args.emplace(DNNL_ARG_SCRATCHPAD,
                         dnnl::memory(plan->scratch, engine, thread_scratch(bytes)));
        dnnl::stream& stream = thread_stream();
        plan->prim.execute(stream, args);
        stream.wait();
    } catch (const dnnl::error& e) {
        ZT_FAIL("gemm_bf16: oneDNN refused the matmul %s: %s (status %d)", describe(key).c_str(),
                e.what(), int(e.status));
    }
}

// Whether this CPU has a oneDNN bf16 matmul, and the path's description:
// oneDNN's kernel for a linear layer's product (B transposed) at this
// process's thread count, or why there is none (CPUs without AVX-512, e.g.
// AVX2-only ones, have no bf16 matmul in oneDNN). Probed once.
struct DnnlSupport {
    bool ok;
    std::string path;
};

const DnnlSupport& dnnl_support() {
    static const DnnlSupport support = [] {
        const int threads = omp_get_max_threads();
        const PlanKey probe{256, 256,     256,   256,  256,   256,  std::bit_cast<uint32_t>(1.0f),
                            0u,  threads, false, true, false, false};
        const dnnl_version_t* v = dnnl_version();
        try {
            return DnnlSupport{true, strprintf("onednn %d.%d.%d (%s)", v->major, v->minor, v->patch,
                                               plan_cache().get(probe)->impl.c_str())};
        } catch (const dnnl::error& e) {
            return DnnlSupport{
                false, strprintf("fallback: fp32 sgemm on widened operands (oneDNN %d.%d.%d has "
                                 "no bf16 matmul for this CPU: %s)",
                                 v->major, v->minor, v->patch, e.what())};
        }
    }();
    return support;
}

template <class Out>
void gemm_any(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
              int64_t lda, const bf16* B, int64_t ldb, const bf16* bias, float beta, Out* C,
              int64_t ldc, bool serial) {
    check_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    if (K == 0) return gemm_empty_k(M, N, bias, beta, C, ldc);
    if (!dnnl_support().ok)
        return gemm_widened(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc, serial);
    serial = serial || omp_in_parallel() || omp_get_max_threads() == 1;
    const PlanKey key{.M = M,
                      .N = N,
                      .K = K,
                      .lda = lda,
                      .ldb = ldb,
                      .ldc = ldc,
                      .alpha_bits = std::bit_cast<uint32_t>(alpha),
                      .beta_bits = std::bit_cast<uint32_t>(beta),
                      .threads = serial ? 1 : omp_get_max_threads(),
                      .ta = ta,
                      .tb = tb,
                      .c_bf16 = std::is_same_v<Out, bf16>,
                      .bias = bias != nullptr};
    if (serial) {
        OmpSingleThread one;
        gemm_dnnl(key, A, B, bias, C);
    } else {
        gemm_dnnl(key, A, B, bias, C);
    }
}

#else  // !ZT_HAVE_DNNL

template <class Out>
void gemm_any(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
              int64_t lda, const bf16* B, int64_t ldb, const bf16* bias, float beta, Out* C,
              int64_t ldc, bool serial) {
    check_gemm_args(ta, tb, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    if (K == 0) return gemm_empty_k(M, N, bias, beta, C, ldc);
    gemm_widened(ta, tb, M, N, K, alpha, A, lda, B, ldb, bias, beta, C, ldc, serial);
}

#endif  // ZT_HAVE_DNNL

}  // namespace

void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    gemm_any(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc, false);
}
void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc) {
    gemm_any(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc, false);
}
void gemm_bf16_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
                      int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    gemm_any(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc, true);
}
void gemm_bf16_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
                      int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc) {
    gemm_any(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc, true);
}
void gemm_bf16_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                    const bf16* B, int64_t ldb, const bf16* bias, float* C, int64_t ldc) {
    ZT_CHECK(bias, "gemm_bf16_bias: bias is null; call gemm_bf16 for a product without one");
    gemm_any(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, bias, 0.0f, C, ldc, false);
}
void gemm_bf16_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                    const bf16* B, int64_t ldb, const bf16* bias, bf16* C, int64_t ldc) {
    ZT_CHECK(bias, "gemm_bf16_bias: bias is null; call gemm_bf16 for a product without one");
    gemm_any(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, bias, 0.0f, C, ldc, false);
}

const char* gemm_bf16_path() {
#if ZT_HAVE_DNNL
    return dnnl_support().path.c_str();
#else
    return "fallback: fp32 sgemm on widened operands (oneDNN not built in)";
#endif
}

}  // namespace zt::cpu
