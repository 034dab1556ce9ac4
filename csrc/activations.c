/* activations.c - activations, forward and backward side by side.
 * Backward is written in terms of the forward output y, so layers keep only y.
 * All but softmax are elementwise and run as one flat pass over the rows and the
 * padding between them (padding is the caller's own, never read); softmax is per row. */
#include <math.h>

#include "fastnn.h"

FNN_CLONES
static void elementwise_forward(int act, float *y, size_t n)
{
    size_t i;
    switch (act) {
    case FNN_ACT_RELU: /* y = max(y, 0), written so that NaN stays NaN */
        for (i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : y[i];
        break;
    case FNN_ACT_SIGMOID: /* y = 1 / (1 + e^-y) */
        for (i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    case FNN_ACT_TANH:
        for (i = 0; i < n; i++) y[i] = tanhf(y[i]);
        break;
    default: /* linear */
        break;
    }
}

FNN_CLONES
static void elementwise_backward(int act, const float *y, float *g, size_t n)
{
    size_t i;
    switch (act) {
    case FNN_ACT_RELU: /* relu'(z) = [z > 0] = [y > 0] */
        for (i = 0; i < n; i++) g[i] = y[i] > 0.0f ? g[i] : 0.0f;
        break;
    case FNN_ACT_SIGMOID: /* s' = s (1 - s) */
        for (i = 0; i < n; i++) g[i] *= y[i] * (1.0f - y[i]);
        break;
    case FNN_ACT_TANH: /* tanh' = 1 - tanh^2 */
        for (i = 0; i < n; i++) g[i] *= 1.0f - y[i] * y[i];
        break;
    default:
        break;
    }
}

/* y_j = e^(z_j - max z) / sum_k e^(z_k - max z), per row */
static void softmax_forward(float *y, int64_t ldy, int64_t n, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = y + i * ldy, top = r[0], sum = 0.0f;
        for (int64_t j = 1; j < m; j++) top = r[j] > top ? r[j] : top;
        for (int64_t j = 0; j < m; j++) sum += (r[j] = expf(r[j] - top));
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < m; j++) r[j] *= inv;
    }
}

/* dz_j = y_j (g_j - sum_k g_k y_k), per row (the softmax Jacobian times g) */
static void softmax_backward(const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        const float *yr = y + i * ldy;
        float *gr = g + i * ldy, dot = 0.0f;
        for (int64_t j = 0; j < m; j++) dot += gr[j] * yr[j];
        for (int64_t j = 0; j < m; j++) gr[j] = yr[j] * (gr[j] - dot);
    }
}

void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m)
{
    if (n <= 0) return;
    if (act == FNN_ACT_SOFTMAX)
        softmax_forward(y, ldy, n, m);
    else
        elementwise_forward(act, y, (size_t)((n - 1) * ldy + m));
}

void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
{
    if (n <= 0) return;
    if (act == FNN_ACT_SOFTMAX)
        softmax_backward(y, g, ldy, n, m);
    else
        elementwise_backward(act, y, g, (size_t)((n - 1) * ldy + m));
}
