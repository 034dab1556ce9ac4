/* losses.c - loss values and their gradients w.r.t. the predictions. */
#include <math.h>

#include "fastnn.h"

/* MSE = sum (p - t)^2 / (n m);  dL/dp = 2 (p - t) / (n m) */
static double mse(const float *p, const float *t, float *g, int64_t n, int64_t m)
{
    const int64_t count = n * m;
    const float scale = 2.0f / (float)count;
    double sum = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const float d = p[i] - t[i];
        sum += (double)(d * d);
        if (g) g[i] = scale * d;
    }
    return sum / (double)count;
}

/* MAE = sum |p - t| / (n m);  dL/dp = sign(p - t) / (n m) */
static double mae(const float *p, const float *t, float *g, int64_t n, int64_t m)
{
    const int64_t count = n * m;
    const float scale = 1.0f / (float)count;
    double sum = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const float d = p[i] - t[i];
        sum += fabs((double)d);
        if (g) g[i] = d > 0.0f ? scale : (d < 0.0f ? -scale : 0.0f);
    }
    return sum / (double)count;
}

/* Softmax cross-entropy from logits with integer labels, mean over rows:
 * L_i = logsumexp(z_i) - z_i[label];  dL/dz_i = (softmax(z_i) - onehot) / n */
static double sparse_cce_logits(const float *z, const float *t, float *g, int64_t n, int64_t m)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * m;
        const int64_t label = (int64_t)t[i];
        float zmax = zi[0];
        for (int64_t j = 1; j < m; j++) zmax = zi[j] > zmax ? zi[j] : zmax;
        double s = 0.0;
        for (int64_t j = 0; j < m; j++) s += exp((double)(zi[j] - zmax));
        const double lse = log(s) + (double)zmax;
        sum += lse - (double)zi[label];
        if (g) {
            float *gi = g + i * m;
            const float inv_n = 1.0f / (float)n;
            for (int64_t j = 0; j < m; j++)
                gi[j] = (float)exp((double)zi[j] - lse) * inv_n;
            gi[label] -= inv_n;
        }
    }
    return sum / (double)n;
}

double fnn_loss(int loss, const float *pred, const float *target, float *grad, int64_t n,
                int64_t m)
{
    switch (loss) {
    case FNN_LOSS_MAE: return mae(pred, target, grad, n, m);
    case FNN_LOSS_SPARSE_CCE_LOGITS: return sparse_cce_logits(pred, target, grad, n, m);
    default: return mse(pred, target, grad, n, m);
    }
}
