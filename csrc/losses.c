/* losses.c - loss values and their gradients w.r.t. the predictions. */
#include <math.h>

#include "fastnn.h"

/* MSE = sum (p - t)^2 / (n m);  dL/dp = 2 (p - t) / (n m).
 * Rows go four at a time into four float partial sums (Keras sums in float32 too),
 * so no add waits on the previous one; each block of rows is folded into a double. */
static inline float mse_row(const float *p, const float *t, float *g, int64_t m, float scale)
{
    float r = 0.0f;
    for (int64_t j = 0; j < m; j++) {
        const float d = p[j] - t[j];
        r += d * d;
        if (g) g[j] = scale * d;
    }
    return r;
}

static double mse(const float *p, int64_t ldp, const float *t, float *g, int64_t n, int64_t m)
{
    const float scale = 2.0f / (float)(n * m);
    double sum = 0.0;
    int64_t i = 0;
    if (m == 1 && g) { /* one output (regression): the common case, kept branch-free */
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (; i + 4 <= n; i += 4) {
            const float d0 = p[i * ldp] - t[i], d1 = p[(i + 1) * ldp] - t[i + 1];
            const float d2 = p[(i + 2) * ldp] - t[i + 2], d3 = p[(i + 3) * ldp] - t[i + 3];
            g[i * ldp] = scale * d0;
            g[(i + 1) * ldp] = scale * d1;
            g[(i + 2) * ldp] = scale * d2;
            g[(i + 3) * ldp] = scale * d3;
            a0 += d0 * d0;
            a1 += d1 * d1;
            a2 += d2 * d2;
            a3 += d3 * d3;
            if ((i & 1023) == 1020) { /* fold into double now and then: long sums stay exact */
                sum += (double)((a0 + a1) + (a2 + a3));
                a0 = a1 = a2 = a3 = 0.0f;
            }
        }
        sum += (double)((a0 + a1) + (a2 + a3));
    }
    for (; i + 4 <= n; i += 4) {
        const float r0 = mse_row(p + i * ldp, t + i * m, g ? g + i * ldp : NULL, m, scale);
        const float r1 = mse_row(p + (i + 1) * ldp, t + (i + 1) * m, g ? g + (i + 1) * ldp : NULL, m, scale);
        const float r2 = mse_row(p + (i + 2) * ldp, t + (i + 2) * m, g ? g + (i + 2) * ldp : NULL, m, scale);
        const float r3 = mse_row(p + (i + 3) * ldp, t + (i + 3) * m, g ? g + (i + 3) * ldp : NULL, m, scale);
        sum += (double)((r0 + r1) + (r2 + r3));
    }
    for (; i < n; i++) sum += (double)mse_row(p + i * ldp, t + i * m, g ? g + i * ldp : NULL, m, scale);
    return sum / (double)(n * m);
}

/* MAE = sum |p - t| / (n m);  dL/dp = sign(p - t) / (n m) */
static double mae(const float *p, int64_t ldp, const float *t, float *g, int64_t n, int64_t m)
{
    const float scale = 1.0f / (float)(n * m);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            const float d = p[i * ldp + j] - t[i * m + j];
            sum += fabs((double)d);
            if (g) g[i * ldp + j] = d > 0.0f ? scale : (d < 0.0f ? -scale : 0.0f);
        }
    return sum / (double)(n * m);
}

/* Softmax cross-entropy from logits with integer labels, mean over rows:
 * L_i = logsumexp(z_i) - z_i[label];  dL/dz_i = (softmax(z_i) - onehot) / n */
static double sparse_cce_logits(const float *z, int64_t ldp, const float *t, float *g, int64_t n,
                                int64_t m)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * ldp;
        const int64_t label = (int64_t)t[i];
        float zmax = zi[0];
        for (int64_t j = 1; j < m; j++) zmax = zi[j] > zmax ? zi[j] : zmax;
        double s = 0.0;
        for (int64_t j = 0; j < m; j++) s += exp((double)(zi[j] - zmax));
        const double lse = log(s) + (double)zmax;
        sum += lse - (double)zi[label];
        if (g) {
            float *gi = g + i * ldp;
            const float inv_n = 1.0f / (float)n;
            for (int64_t j = 0; j < m; j++)
                gi[j] = (float)exp((double)zi[j] - lse) * inv_n;
            gi[label] -= inv_n;
        }
    }
    return sum / (double)n;
}

/* -sum_j t_ij log softmax(z_i)_j = lse_i sum_j t_ij - sum_j t_ij z_ij; dL/dz_ij =
 * (softmax_ij sum_k t_ik - t_ij) / n */
static double cce_logits(const float *z, int64_t ldp, const float *t, float *g, int64_t n,
                         int64_t m)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * ldp, *ti = t + i * m;
        float zmax = zi[0];
        for (int64_t j = 1; j < m; j++) zmax = zi[j] > zmax ? zi[j] : zmax;
        double s = 0.0, tsum = 0.0, tz = 0.0;
        for (int64_t j = 0; j < m; j++) {
            s += exp((double)(zi[j] - zmax));
            tsum += ti[j];
            tz += (double)ti[j] * zi[j];
        }
        const double lse = log(s) + (double)zmax;
        sum += lse * tsum - tz;
        if (g) {
            float *gi = g + i * ldp;
            for (int64_t j = 0; j < m; j++)
                gi[j] = (float)((exp((double)zi[j] - lse) * tsum - ti[j]) / (double)n);
        }
    }
    return sum / (double)n;
}

/* max(z, 0) - z t + log(1 + e^-|z|), mean over all elements; dL/dz = (sigmoid(z) - t) / nm */
static double bce_logits(const float *z, int64_t ldp, const float *t, float *g, int64_t n,
                         int64_t m)
{
    const double scale = 1.0 / (double)(n * m);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) {
            const double zz = z[i * ldp + j], tt = t[i * m + j];
            sum += (zz > 0 ? zz : 0) - zz * tt + log1p(exp(-fabs(zz)));
            if (g) g[i * ldp + j] = (float)((1.0 / (1.0 + exp(-zz)) - tt) * scale);
        }
    return sum * scale;
}

double fnn_loss(int loss, const float *pred, int64_t ldp, const float *target, float *grad,
                int64_t n, int64_t m)
{
    switch (loss) {
    case FNN_LOSS_MAE: return mae(pred, ldp, target, grad, n, m);
    case FNN_LOSS_SPARSE_CCE_LOGITS: return sparse_cce_logits(pred, ldp, target, grad, n, m);
    case FNN_LOSS_CCE_LOGITS: return cce_logits(pred, ldp, target, grad, n, m);
    case FNN_LOSS_BCE_LOGITS: return bce_logits(pred, ldp, target, grad, n, m);
    default: return mse(pred, ldp, target, grad, n, m);
    }
}
