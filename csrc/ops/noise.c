/* ops/noise.c - Gaussian noise while training, the identity at inference (Keras'
 * GaussianNoise and GaussianDropout):
 *   gaussian_noise:   out = in + s n,       s = fparam[0] (stddev), dL/din = dL/dout;
 *   gaussian_dropout: out = in (1 + s n),   s = sqrt(r / (1 - r)), r = fparam[0] (rate),
 *                     dL/din = dL/dout (1 + s n), the same n;
 * with n ~ N(0, 1) per element. As dropout's masks, the noise is a hash of (the step's
 * seed, element index), drawn from the plan's seeded stream: backward redraws it. */
#include <math.h>

#include "../random.h"
#include "ops.h"

static int check_noise(const fnn_plan *p, const fnn_op *op)
{
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != fnn_out(p, op)->width) return FNN_EPLAN_SHAPE;
    if (!(op->fparam[0] >= 0.0f && op->fparam[0] < INFINITY)) return FNN_EPLAN_KIND;
    return 0;
}

static int check_dropout(const fnn_plan *p, const fnn_op *op)
{
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != fnn_out(p, op)->width) return FNN_EPLAN_SHAPE;
    if (!(op->fparam[0] >= 0.0f && op->fparam[0] < 1.0f)) return FNN_EPLAN_KIND;
    return 0;
}

/* Two standard normals from 64 random bits (Box-Muller on two 24-bit uniforms, u1 in
 * (0, 1]: |n| stays below sqrt(2 ln 2^24) ~ 5.8, a tail of 1e-8 cut off). */
static inline void normal_pair(uint64_t bits, float *n0, float *n1)
{
    const float u1 = ((float)(bits >> 40) + 1.0f) * (1.0f / 16777216.0f);
    const float u2 = (float)((bits >> 16) & 0xFFFFFFu) * (1.0f / 16777216.0f);
    const float r = sqrtf(-2.0f * logf(u1)), a = 6.28318530717958648f * u2;
    *n0 = r * cosf(a);
    *n1 = r * sinf(a);
}

/* out = in * (mul ? 1 + s n : 1) + (mul ? 0 : s n), or out += that when acc; element
 * (r, j) of rows of m values takes the normal numbered (base + r) m + j of the step's seed */
static void apply_noise(const float *in, int64_t ldin, float *out, int64_t ldout, int64_t rows,
                        int64_t m, float s, int mul, uint64_t seed, int64_t base, int acc)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in + r * ldin;
        float *y = out + r * ldout;
        for (int64_t j = 0; j < m; j += 2) {
            uint64_t h = seed + (uint64_t)((base + r) * m + j) * 0x9E3779B97F4A7C15ull;
            float n[2];
            normal_pair(fnn_splitmix64(&h), &n[0], &n[1]);
            for (int64_t k = 0; k < 2 && j + k < m; k++) {
                const float v = mul ? x[j + k] * (1.0f + s * n[k]) : x[j + k] + s * n[k];
                y[j + k] = acc ? y[j + k] + v : v;
            }
        }
    }
}

static float dropout_stddev(const fnn_op *op)
{
    return sqrtf(op->fparam[0] / (1.0f - op->fparam[0]));
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training, float s, int mul)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (training && s > 0.0f) {
        op->seed = fnn_splitmix64(&p->dropout_state);
        apply_noise(x->value, x->ld, y->value, y->ld, rows, x->width, s, mul, op->seed,
                    p->row_base, 0);
    } else {
        fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, x->width, 0);
    }
}

static void noise_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    forward(p, op, rows, training, op->fparam[0], 0);
}

static void dropout_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    forward(p, op, rows, training, dropout_stddev(op), 1);
}

/* additive noise: dL/din = dL/dout */
static void noise_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (x->grad) fnn_put_rows(x->grad, x->ld, y->grad, y->ld, rows, x->width, fnn_acc(op, 0));
}

/* dL/din = dL/dout (1 + s n): forward's noise, redrawn */
static void dropout_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const float s = dropout_stddev(op);
    if (!x->grad) return;
    if (s > 0.0f)
        apply_noise(y->grad, y->ld, x->grad, x->ld, rows, x->width, s, 1, op->seed,
                    p->row_base,
                    fnn_acc(op, 0));
    else
        fnn_put_rows(x->grad, x->ld, y->grad, y->ld, rows, x->width, fnn_acc(op, 0));
}

const fnn_op_kind fnn_op_gaussian_noise = {"gaussian_noise", 0, check_noise, fnn_no_floats,
                                           fnn_no_floats, noise_forward, noise_backward};
const fnn_op_kind fnn_op_gaussian_dropout = {"gaussian_dropout", 0, check_dropout,
                                             fnn_no_floats, fnn_no_floats, dropout_forward,
                                             dropout_backward};
