// cuBLASLt GEMM with descriptors built per call and algorithms cached per key.
//
// Invariant: every cuBLASLt object is owned by an RAII holder, so a failed
// check frees what was created; every status goes through ZT_CUBLAS_CHECK.
// The heuristic assumes 256-byte aligned matrices unless told otherwise, so
// each operand's real alignment is passed in (and is part of the cache key):
// ops hand in row offsets of larger buffers, which are often only 4-aligned.
#include <cstdio>
#include <map>
#include <mutex>
#include <string>

#include "ops/cuda/context.h"
#include "ops/cuda/cuda_check.h"
#include "ops/cuda/gemm.h"

namespace zt::cuda {

namespace {

template <class H, cublasStatus_t (*Destroy)(H)>
class LtObject {
  public:
    LtObject() = default;
    ~LtObject() {
        if (h_) Destroy(h_);
    }
    LtObject(const LtObject&) = delete;
    LtObject& operator=(const LtObject&) = delete;
    H* out() { return &h_; }
    H get() const { return h_; }

  private:
    H h_ = nullptr;
};

using MatmulDesc = LtObject<cublasLtMatmulDesc_t, cublasLtMatmulDescDestroy>;
using MatrixLayout = LtObject<cublasLtMatrixLayout_t, cublasLtMatrixLayoutDestroy>;
using MatmulPref = LtObject<cublasLtMatmulPreference_t, cublasLtMatmulPreferenceDestroy>;

// Largest power of two <= 256 that divides the address (256 for null).
uint32_t alignment_of(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uint32_t al = 256;
    while (al > 1 && (a % al) != 0) al /= 2;
    return al;
}

size_t type_size(cudaDataType_t t) {
    return t == CUDA_R_16BF ? 2 : 4;
}

// Alignment every product of the batch can promise: the base pointer's and
// the batch stride's, whichever is smaller.
uint32_t batch_alignment(const void* p, int64_t stride, cudaDataType_t t, int batch) {
    uint32_t al = alignment_of(p);
    if (batch > 1) {
        const uint32_t al_s =
            alignment_of(reinterpret_cast<const void*>(uintptr_t(stride) * type_size(t)));
        al = al < al_s ? al : al_s;
    }
    return al;
}

const char* type_name(cudaDataType_t t) {
    switch (t) {
        case CUDA_R_32F:
            return "f32";
        case CUDA_R_16BF:
            return "bf16";
        default:
            return "?";
    }
}

const char* epilogue_name(GemmEpilogue e) {
    switch (e) {
        case GemmEpilogue::none:
            return "none";
        case GemmEpilogue::bias:
            return "bias";
        case GemmEpilogue::gelu_aux_bias:
            return "gelu_aux_bias";
    }
    return "?";
}

// Shape, types, transposes, leading dimensions, batch and alignments, for
// every error this file raises.
std::string describe(const GemmDesc& g, uint32_t al_a, uint32_t al_b, uint32_t al_d) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "M=%lld N=%lld K=%lld, A/B %s -> D %s (fp32 compute), transa=%c transb=%c, "
                  "lda=%lld ldb=%lld ldd=%lld, batch=%d (strides A=%lld B=%lld D=%lld), "
                  "epilogue=%s, pointer alignment A=%u B=%u D=%u bytes",
                  (long long)g.m, (long long)g.n, (long long)g.k, type_name(g.ab_type),
                  type_name(g.d_type), g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N',
                  (long long)g.lda, (long long)g.ldb, (long long)g.ldd, g.batch,
                  (long long)g.stride_a, (long long)g.stride_b, (long long)g.stride_d,
                  epilogue_name(g.epilogue), al_a, al_b, al_d);
    return buf;
}

// Makes each layout of a batched GEMM a strided batch.
void set_batch(cublasLtMatrixLayout_t layout, int batch, int64_t stride) {
    ZT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                     &batch, sizeof(batch)));
    ZT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

cublasLtEpilogue_t lt_epilogue(const GemmDesc& g) {
    switch (g.epilogue) {
        case GemmEpilogue::none:
            return CUBLASLT_EPILOGUE_DEFAULT;
        case GemmEpilogue::bias:
            return CUBLASLT_EPILOGUE_BIAS;
        case GemmEpilogue::gelu_aux_bias:
            return g.bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    }
    return CUBLASLT_EPILOGUE_DEFAULT;
}

std::mutex g_algo_mutex;
std::map<std::string, cublasLtMatmulAlgo_t>& algo_cache() {
    static std::map<std::string, cublasLtMatmulAlgo_t> cache;
    return cache;
}

}  // namespace

void gemm(const GemmDesc& g, cudaStream_t stream) {
    ZT_CHECK(g.m > 0 && g.n > 0 && g.k > 0, "gemm: empty shape m=%lld n=%lld k=%lld",
             (long long)g.m, (long long)g.n, (long long)g.k);
    ZT_CHECK(g.A && g.B && g.D, "gemm: null operand");
    ZT_CHECK(g.epilogue != GemmEpilogue::bias || g.bias, "gemm: bias epilogue without a bias");
    ZT_CHECK(g.epilogue != GemmEpilogue::gelu_aux_bias ||
                 (g.aux && g.ld_aux % 8 == 0 && g.ld_aux >= g.m),
             "gemm: GELU epilogue needs an aux buffer with a leading dimension that is a "
             "multiple of 8 and >= m=%lld (got %lld)",
             (long long)g.m, (long long)g.ld_aux);
    ZT_CHECK(g.batch >= 1 && (g.batch == 1 || g.epilogue == GemmEpilogue::none),
             "gemm: batch=%d must be >= 1, and a batched GEMM takes no epilogue (got %s)", g.batch,
             epilogue_name(g.epilogue));

    const cublasLtHandle_t handle = cublaslt_handle();
    const cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
    const cudaDataType_t scale_type = CUDA_R_32F;

    MatmulDesc desc;
    ZT_CUBLAS_CHECK(cublasLtMatmulDescCreate(desc.out(), compute, scale_type));
    const cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    ZT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    ZT_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    const cublasLtEpilogue_t epi = lt_epilogue(g);
    ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                   sizeof(epi)));
    // Bias and aux take D's element type by default, which is what the ops pass.
    if (g.bias) {
        ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)));
    }
    if (g.epilogue == GemmEpilogue::gelu_aux_bias) {
        const int64_t ld_aux = g.ld_aux;
        ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &g.aux, sizeof(g.aux)));
        ZT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof(ld_aux)));
    }

    // Stored shapes: op(A) is (m, k), so A is stored (k, m) when transposed.
    MatrixLayout la, lb, ld;
    ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(la.out(), g.ab_type, g.trans_a ? g.k : g.m,
                                               g.trans_a ? g.m : g.k, g.lda));
    ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lb.out(), g.ab_type, g.trans_b ? g.n : g.k,
                                               g.trans_b ? g.k : g.n, g.ldb));
    ZT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(ld.out(), g.d_type, g.m, g.n, g.ldd));
    if (g.batch > 1) {
        set_batch(la.get(), g.batch, g.stride_a);
        set_batch(lb.get(), g.batch, g.stride_b);
        set_batch(ld.get(), g.batch, g.stride_d);
    }

    const uint32_t al_a = batch_alignment(g.A, g.stride_a, g.ab_type, g.batch);
    const uint32_t al_b = batch_alignment(g.B, g.stride_b, g.ab_type, g.batch);
    const uint32_t al_d = batch_alignment(g.D, g.stride_d, g.d_type, g.batch);
    char key_buf[400];
    std::snprintf(
        key_buf, sizeof key_buf,
        "%d|%d%d|%lld,%lld,%lld|%lld,%lld,%lld|%s,%s|%d,%d|%u,%u,%u,%u,%u|%d|%d,%lld,%lld,"
        "%lld",
        current_device(), int(g.trans_a), int(g.trans_b), (long long)g.m, (long long)g.n,
        (long long)g.k, (long long)g.lda, (long long)g.ldb, (long long)g.ldd, type_name(g.ab_type),
        type_name(g.d_type), int(epi), int(g.beta != 0.0f), al_a, al_b, al_d, alignment_of(g.bias),
        alignment_of(g.aux), int(g.ld_aux), g.batch, (long long)g.stride_a, (long long)g.stride_b,
        (long long)g.stride_d);
    const std::string key(key_buf);

    const size_t ws_bytes = kCublasWorkspaceBytes;
    void* workspace = stream_workspace(stream, ws_bytes);

    cublasLtMatmulAlgo_t algo;
    bool cached = false;
    {
        std::lock_guard<std::mutex> lock(g_algo_mutex);
        auto it = algo_cache().find(key);
        if (it != algo_cache().end()) {
            algo = it->second;
            cached = true;
        }
    }
    if (!cached) {
        MatmulPref pref;
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(pref.out()));
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof(ws_bytes)));
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof(al_d)));
        ZT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof(al_d)));
        cublasLtMatmulHeuristicResult_t result;
        int found = 0;
        const cublasStatus_t st =
            cublasLtMatmulAlgoGetHeuristic(handle, desc.get(), la.get(), lb.get(), ld.get(),
                                           ld.get(), pref.get(), 1, &result, &found);
        // No algorithm fits: cuBLASLt says so either way, by status or by count.
        if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0)) {
            ZT_FAIL("gemm: cuBLASLt has no algorithm for %s (heuristic: %s)",
                    describe(g, al_a, al_b, al_d).c_str(),
                    st == CUBLAS_STATUS_SUCCESS ? "0 results" : cublasLtGetStatusString(st));
        }
        if (st != CUBLAS_STATUS_SUCCESS || result.state != CUBLAS_STATUS_SUCCESS) {
            const cublasStatus_t bad = st != CUBLAS_STATUS_SUCCESS ? st : result.state;
            ZT_FAIL("gemm: cublasLtMatmulAlgoGetHeuristic failed: %s (status %d) for %s",
                    cublasLtGetStatusString(bad), int(bad), describe(g, al_a, al_b, al_d).c_str());
        }
        algo = result.algo;
        std::lock_guard<std::mutex> lock(g_algo_mutex);
        algo_cache().emplace(key, algo);
    }

    const cublasStatus_t st =
        cublasLtMatmul(handle, desc.get(), &g.alpha, g.A, la.get(), g.B, lb.get(), &g.beta, g.D,
                       ld.get(), g.D, ld.get(), &algo, workspace, ws_bytes, stream);
    if (st != CUBLAS_STATUS_SUCCESS) {
        ZT_FAIL("gemm: cublasLtMatmul failed: %s (status %d) for %s", cublasLtGetStatusString(st),
                int(st), describe(g, al_a, al_b, al_d).c_str());
    }
}

}  // namespace zt::cuda
