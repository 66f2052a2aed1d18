// Causal GQA attention in double precision, one row at a time, for checking
// the GPU paths at sequence lengths where a full reference (or the scalar
// GPU oracle) would be too slow: a query row costs O(t HD), and the dK/dV row
// of key j costs O((T - j) T HD), cheap for the last keys.
//
// Same layout and math as ops/attention.h: qkv (B, T, (NH + 2 NKV) HD) with
// the query heads, then the key heads, then the value heads per row; query
// head h uses kv head h / (NH / NKV); scores scaled by 1 / sqrt(HD).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace zt_gpu_test {

class AttentionReference {
  public:
    // qkv (B, T, (NH + 2 NKV) HD), dout (B, T, NH HD); both must outlive this.
    AttentionReference(const std::vector<float>& qkv, const std::vector<float>& dout, int B, int T,
                       int NH, int NKV, int HD)
        : qkv_(qkv),
          dout_(dout),
          B_(B),
          T_(T),
          NH_(NH),
          NKV_(NKV),
          HD_(HD),
          R_(int64_t(NH + 2 * NKV) * HD),
          scale_(1.0 / std::sqrt(double(HD))) {}

    // P[b, h, t, 0..t], the softmax probabilities of one query row.
    std::vector<double> probs(int b, int h, int t) const {
        const float* q = row(b, t) + int64_t(h) * HD_;
        const int g = kv_head(h);
        std::vector<double> p(size_t(t) + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
            const float* k = row(b, j) + int64_t(NH_ + g) * HD_;
            double s = 0;
            for (int d = 0; d < HD_; d++) s += double(q[d]) * k[d];
            p[j] = s * scale_;
            mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (double& x : p) x /= sum;
        return p;
    }

    // out[b, t, h*HD .. (h+1)*HD).
    std::vector<double> out_row(int b, int h, int t) const {
        const auto p = probs(b, h, t);
        const int g = kv_head(h);
        std::vector<double> o(size_t(HD_), 0.0);
        for (int j = 0; j <= t; j++) {
            const float* v = row(b, j) + int64_t(NH_ + NKV_ + g) * HD_;
            for (int d = 0; d < HD_; d++) o[d] += p[j] * v[d];
        }
        return o;
    }

    // The gradient w.r.t. the query row (b, t, head h).
    std::vector<double> dq_row(int b, int h, int t) const {
        std::vector<double> p, ds;
        dscores(b, h, t, p, ds);
        const int g = kv_head(h);
        std::vector<double> dq(size_t(HD_), 0.0);
        for (int j = 0; j <= t; j++) {
            const float* k = row(b, j) + int64_t(NH_ + g) * HD_;
            for (int d = 0; d < HD_; d++) dq[d] += scale_ * ds[j] * k[d];
        }
        return dq;
    }

    // The gradients w.r.t. key row j and value row j of kv head g, summed over
    // the query heads of the group and every query t >= j.
    void dkv_row(int b, int g, int j, std::vector<double>& dk, std::vector<double>& dv) const {
        dk.assign(size_t(HD_), 0.0);
        dv.assign(size_t(HD_), 0.0);
        const int group = NH_ / NKV_;
        std::vector<double> p, ds;
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int t = j; t < T_; t++) {
                dscores(b, h, t, p, ds);
                const float* q = row(b, t) + int64_t(h) * HD_;
                const float* dO = dout_row(b, t) + int64_t(h) * HD_;
                for (int d = 0; d < HD_; d++) {
                    dk[d] += scale_ * ds[j] * q[d];
                    dv[d] += p[j] * dO[d];
                }
            }
        }
    }

  private:
    const float* row(int b, int t) const { return qkv_.data() + (int64_t(b) * T_ + t) * R_; }
    const float* dout_row(int b, int t) const {
        return dout_.data() + (int64_t(b) * T_ + t) * NH_ * HD_;
    }
    int kv_head(int h) const { return h / (NH_ / NKV_); }

    // p and dS = p * (dP - sum p dP) of query row (b, h, t), dP_j = dO_t . v_j.
    void dscores(int b, int h, int t, std::vector<double>& p, std::vector<double>& ds) const {
        p = probs(b, h, t);
        const int g = kv_head(h);
        const float* dO = dout_row(b, t) + int64_t(h) * HD_;
        ds.assign(size_t(t) + 1, 0.0);
        double dot = 0;
        for (int j = 0; j <= t; j++) {
            const float* v = row(b, j) + int64_t(NH_ + NKV_ + g) * HD_;
            double dp = 0;
            for (int d = 0; d < HD_; d++) dp += double(dO[d]) * v[d];
            ds[j] = dp;
            dot += p[j] * dp;
        }
        for (int j = 0; j <= t; j++) ds[j] = p[j] * (ds[j] - dot);
    }

    const std::vector<float>& qkv_;
    const std::vector<float>& dout_;
    int B_, T_, NH_, NKV_, HD_;
    int64_t R_;
    double scale_;
};

}  // namespace zt_gpu_test
