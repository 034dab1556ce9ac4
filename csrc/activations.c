/* activations.c - activations, forward and backward side by side (Keras 3's definitions).
 * Most derivatives are written in terms of the forward output y, so that a dense layer
 * keeps only y; those that cannot be (gelu, silu, mish, and the kinds with parameters,
 * whose branches y alone does not tell apart) read the input x: fnn_act_needs_input().
 * Elementwise kinds run as one flat pass over the rows and the padding between them
 * (padding is the caller's own, never read); the softmaxes run per row. Every formula is
 * written to stay finite wherever the function is (|x| up to 1e4 and beyond). */
#include <math.h>

#include "fastnn.h"

/* SELU's constants (Klambauer et al., 2017), as Keras */
#define SELU_ALPHA 1.6732632423543772f
#define SELU_SCALE 1.0507009873554805f
#define SQRT_HALF 0.70710678118654752f     /* 1 / sqrt(2) */
#define INV_SQRT_2PI 0.39894228040143268f  /* 1 / sqrt(2 pi) */
#define GELU_C 0.79788456080286536f        /* sqrt(2 / pi) */
#define GELU_K 0.044715f

int fnn_act_needs_input(int act)
{
    switch (act) {
    case FNN_ACT_LEAKY_RELU: case FNN_ACT_ELU: case FNN_ACT_GELU: case FNN_ACT_GELU_TANH:
    case FNN_ACT_SILU: case FNN_ACT_MISH: case FNN_ACT_RELU_GENERAL:
        return 1;
    default:
        return 0;
    }
}

/* Keras' defaults of the parametrised kinds, for param == NULL */
static const float leaky_default[1] = {0.2f}, elu_default[1] = {1.0f},
                   relu_default[3] = {0.0f, INFINITY, 0.0f};

static const float *params_of(int act, const float *param)
{
    if (param) return param;
    return act == FNN_ACT_LEAKY_RELU ? leaky_default
           : act == FNN_ACT_ELU      ? elu_default
                                     : relu_default;
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow, no loss for x << 0 */
static inline float softplusf(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

/* gelu's tanh form, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3), written
 * as x sigmoid(2u): 1 + tanh(u) cancels for u << 0, the sigmoid does not */
static inline float gelu_tanh_u(float x) { return GELU_C * (x + GELU_K * x * x * x); }

/* Keras' relu(x, negative_slope=s, max_value=mx, threshold=t): x if t < x < mx (x > 0
 * when t == 0), mx from mx on, s (x - t) up to t; mx = +inf means no max_value. */
static inline float relu_general(float x, float s, float mx, float t)
{
    float a = t != 0.0f ? (x > t ? x : 0.0f) : (x > 0.0f ? x : 0.0f);
    if (mx < INFINITY) a = fminf(fmaxf(a, 0.0f), mx);
    return s != 0.0f ? a - s * fmaxf(t - x, 0.0f) : a;
}

static inline float relu_general_grad(float x, float s, float mx, float t)
{
    const int pass = t != 0.0f ? x > t : x > 0.0f;
    float d = pass ? 1.0f : 0.0f;
    if (pass && mx < INFINITY && !(x >= 0.0f && x < mx)) d = 0.0f; /* clipped */
    return s != 0.0f && t - x > 0.0f ? d + s : d;
}

FNN_CLONES
static void elementwise_forward(int act, const float *param, float *y, size_t n)
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
    case FNN_ACT_RELU6: /* min(max(y, 0), 6) */
        for (i = 0; i < n; i++) y[i] = y[i] < 0.0f ? 0.0f : (y[i] > 6.0f ? 6.0f : y[i]);
        break;
    case FNN_ACT_LEAKY_RELU: { /* y if y > 0, else s y */
        const float s = params_of(act, param)[0];
        for (i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : s * y[i];
        break;
    }
    case FNN_ACT_ELU: { /* y if y > 0, else alpha (e^y - 1) */
        const float alpha = params_of(act, param)[0];
        for (i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : alpha * expm1f(y[i]);
        break;
    }
    case FNN_ACT_SELU: /* scale * elu(y, alpha) */
        for (i = 0; i < n; i++)
            y[i] = SELU_SCALE * (y[i] > 0.0f ? y[i] : SELU_ALPHA * expm1f(y[i]));
        break;
    case FNN_ACT_GELU: /* x Phi(x) = 0.5 x erfc(-x / sqrt 2): 1 + erf cancels for x << 0 */
        for (i = 0; i < n; i++) y[i] = 0.5f * y[i] * erfcf(-SQRT_HALF * y[i]);
        break;
    case FNN_ACT_GELU_TANH: /* x sigmoid(2u) */
        for (i = 0; i < n; i++) y[i] = y[i] * sigmoidf(2.0f * gelu_tanh_u(y[i]));
        break;
    case FNN_ACT_SILU: /* x sigmoid(x) */
        for (i = 0; i < n; i++) y[i] = y[i] * sigmoidf(y[i]);
        break;
    case FNN_ACT_SOFTPLUS:
        for (i = 0; i < n; i++) y[i] = softplusf(y[i]);
        break;
    case FNN_ACT_SOFTSIGN: /* x / (1 + |x|) */
        for (i = 0; i < n; i++) y[i] = y[i] / (1.0f + fabsf(y[i]));
        break;
    case FNN_ACT_HARD_SIGMOID: /* relu6(x + 3) / 6 */
        for (i = 0; i < n; i++) {
            const float a = y[i] + 3.0f;
            y[i] = (a < 0.0f ? 0.0f : (a > 6.0f ? 6.0f : a)) * (1.0f / 6.0f);
        }
        break;
    case FNN_ACT_EXPONENTIAL:
        for (i = 0; i < n; i++) y[i] = expf(y[i]);
        break;
    case FNN_ACT_MISH: /* x tanh(softplus(x)) */
        for (i = 0; i < n; i++) y[i] = y[i] * tanhf(softplusf(y[i]));
        break;
    case FNN_ACT_RELU_GENERAL: {
        const float *q = params_of(act, param);
        for (i = 0; i < n; i++) y[i] = relu_general(y[i], q[0], q[1], q[2]);
        break;
    }
    default: /* linear */
        break;
    }
}

/* g *= act'(z), from y = act(z) alone */
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
    case FNN_ACT_RELU6: /* [0 < y < 6] */
        for (i = 0; i < n; i++) g[i] = y[i] > 0.0f && y[i] < 6.0f ? g[i] : 0.0f;
        break;
    case FNN_ACT_SELU: /* scale for z > 0, scale alpha e^z = y + scale alpha below */
        for (i = 0; i < n; i++) g[i] *= y[i] > 0.0f ? SELU_SCALE : y[i] + SELU_SCALE * SELU_ALPHA;
        break;
    case FNN_ACT_SOFTPLUS: /* sigmoid(z) = 1 - e^-y */
        for (i = 0; i < n; i++) g[i] *= -expm1f(-y[i]);
        break;
    case FNN_ACT_SOFTSIGN: /* 1 / (1 + |z|)^2 = (1 - |y|)^2 */
        for (i = 0; i < n; i++) {
            const float d = 1.0f - fabsf(y[i]);
            g[i] *= d * d;
        }
        break;
    case FNN_ACT_HARD_SIGMOID: /* 1/6 on the slope, 0 where clipped */
        for (i = 0; i < n; i++) g[i] = y[i] > 0.0f && y[i] < 1.0f ? g[i] * (1.0f / 6.0f) : 0.0f;
        break;
    case FNN_ACT_EXPONENTIAL: /* (e^z)' = y */
        for (i = 0; i < n; i++) g[i] *= y[i];
        break;
    default: /* linear */
        break;
    }
}

/* g *= act'(x) for the kinds that need their input x, one row of m values */
static void elementwise_backward_x(int act, const float *param, const float *x, float *g,
                                   int64_t m)
{
    int64_t j;
    switch (act) {
    case FNN_ACT_LEAKY_RELU: {
        const float s = params_of(act, param)[0];
        for (j = 0; j < m; j++) g[j] *= x[j] > 0.0f ? 1.0f : s;
        break;
    }
    case FNN_ACT_ELU: { /* alpha e^x below 0 */
        const float alpha = params_of(act, param)[0];
        for (j = 0; j < m; j++) g[j] *= x[j] > 0.0f ? 1.0f : alpha * expf(x[j]);
        break;
    }
    case FNN_ACT_GELU: /* Phi(x) + x phi(x) */
        for (j = 0; j < m; j++)
            g[j] *= 0.5f * erfcf(-SQRT_HALF * x[j]) +
                    x[j] * INV_SQRT_2PI * expf(-0.5f * x[j] * x[j]);
        break;
    case FNN_ACT_GELU_TANH: /* s + x s (1 - s) 2 u', s = sigmoid(2u) */
        for (j = 0; j < m; j++) {
            const float s = sigmoidf(2.0f * gelu_tanh_u(x[j]));
            const float du = GELU_C * (1.0f + 3.0f * GELU_K * x[j] * x[j]);
            g[j] *= s + (x[j] * s * (1.0f - s)) * 2.0f * du;
        }
        break;
    case FNN_ACT_SILU: /* s (1 + x (1 - s)), s = sigmoid(x) */
        for (j = 0; j < m; j++) {
            const float s = sigmoidf(x[j]);
            g[j] *= s * (1.0f + x[j] * (1.0f - s));
        }
        break;
    case FNN_ACT_MISH: /* t + x (1 - t^2) sigmoid(x), t = tanh(softplus(x)) */
        for (j = 0; j < m; j++) {
            const float t = tanhf(softplusf(x[j]));
            g[j] *= t + x[j] * (1.0f - t * t) * sigmoidf(x[j]);
        }
        break;
    case FNN_ACT_RELU_GENERAL: {
        const float *q = params_of(act, param);
        for (j = 0; j < m; j++) g[j] *= relu_general_grad(x[j], q[0], q[1], q[2]);
        break;
    }
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

/* y_j = z_j - max z - log sum_k e^(z_k - max z), per row */
static void log_softmax_forward(float *y, int64_t ldy, int64_t n, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = y + i * ldy, top = r[0], sum = 0.0f;
        for (int64_t j = 1; j < m; j++) top = r[j] > top ? r[j] : top;
        for (int64_t j = 0; j < m; j++) sum += expf(r[j] - top);
        const float shift = top + logf(sum);
        for (int64_t j = 0; j < m; j++) r[j] -= shift;
    }
}

/* dz_j = g_j - e^(y_j) sum_k g_k, per row (e^y is the softmax) */
static void log_softmax_backward(const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        const float *yr = y + i * ldy;
        float *gr = g + i * ldy, sum = 0.0f;
        for (int64_t j = 0; j < m; j++) sum += gr[j];
        for (int64_t j = 0; j < m; j++) gr[j] -= expf(yr[j]) * sum;
    }
}

void fnn_act_forward_p(int act, const float *param, float *y, int64_t ldy, int64_t n, int64_t m)
{
    if (n <= 0) return;
    if (act == FNN_ACT_SOFTMAX)
        softmax_forward(y, ldy, n, m);
    else if (act == FNN_ACT_LOG_SOFTMAX)
        log_softmax_forward(y, ldy, n, m);
    else
        elementwise_forward(act, param, y, (size_t)((n - 1) * ldy + m));
}

void fnn_act_backward_p(int act, const float *param, const float *x, int64_t ldx, const float *y,
                        float *g, int64_t ldy, int64_t n, int64_t m)
{
    if (n <= 0) return;
    if (act == FNN_ACT_SOFTMAX)
        softmax_backward(y, g, ldy, n, m);
    else if (act == FNN_ACT_LOG_SOFTMAX)
        log_softmax_backward(y, g, ldy, n, m);
    else if (fnn_act_needs_input(act)) {
        if (!x) return; /* never: the ops that fuse activations refuse these kinds */
        for (int64_t i = 0; i < n; i++)
            elementwise_backward_x(act, param, x + i * ldx, g + i * ldy, m);
    } else
        elementwise_backward(act, y, g, (size_t)((n - 1) * ldy + m));
}

void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m)
{
    fnn_act_forward_p(act, NULL, y, ldy, n, m);
}

void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
{
    fnn_act_backward_p(act, NULL, NULL, 0, y, g, ldy, n, m);
}
