/* losses.c - loss values and their gradients w.r.t. the predictions. */
#include <math.h>

#include "fastnn.h"

/* MSE = sum (p - t)^2 / (n m);  dL/dp = 2 (p - t) / (n m) */
static double mse(const float *p, int64_t ldp, const float *t, float *g, int64_t n, int64_t m)
{
    const float scale = 2.0f / (float)(n * m);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float row = 0.0f;
        for (int64_t j = 0; j < m; j++) {
            const float d = p[i * ldp + j] - t[i * m + j];
            row += d * d;
            if (g) g[i * ldp + j] = scale * d;
        }
        sum += (double)row;
    }
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

double fnn_loss(int loss, const float *pred, int64_t ldp, const float *target, float *grad,
                int64_t n, int64_t m)
{
    switch (loss) {
    case FNN_LOSS_MAE: return mae(pred, ldp, target, grad, n, m);
    case FNN_LOSS_SPARSE_CCE_LOGITS: return sparse_cce_logits(pred, ldp, target, grad, n, m);
    default: return mse(pred, ldp, target, grad, n, m);
    }
}
