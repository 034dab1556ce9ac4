/* activations.c - elementwise activations, forward and backward side by side.
 * Backward is written in terms of the forward output y, so layers keep only y. */
#include <math.h>

#include "fastnn.h"

FNN_CLONES
void fnn_act_forward(int act, float *y, size_t n)
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
void fnn_act_backward(int act, const float *y, float *g, size_t n)
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
