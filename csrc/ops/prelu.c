/* ops/prelu.c - the parametric relu: out = in if in > 0, else alpha * in, with a learned
 * alpha (Keras' PReLU). alpha sits at w_off in the parameters (the state when frozen);
 * element j of a row takes alpha[(j / iparam[0]) % iparam[1]]: iparam[0] consecutive
 * values share one alpha and iparam[1] alphas repeat along the row, which spells the
 * sharing of Keras' shared_axes when the axes it keeps are adjacent (all of them: inner 1,
 * count = width; none: inner = width, count 1). */
#include "ops.h"

static const float *alphas(const fnn_plan *p, const fnn_op *op)
{
    return (op->trainable ? p->params : p->state) + op->w_off;
}

static int check(const fnn_plan *p, const fnn_op *op)
{
    const int64_t width = fnn_out(p, op)->width, inner = op->iparam[0], count = op->iparam[1];
    const int64_t size = op->trainable ? p->n_params : p->n_state;
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != width) return FNN_EPLAN_SHAPE;
    if (inner < 1 || count < 1 || inner > width || count > width / inner ||
        width % (inner * count) != 0)
        return FNN_EPLAN_SHAPE;
    if (op->w_off < 0 || op->w_off > size || count > size - op->w_off) return FNN_EPLAN_PARAMS;
    return 0;
}

static size_t weight_grads(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)op->iparam[1];
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const float *alpha = alphas(p, op);
    const int64_t inner = op->iparam[0], count = op->iparam[1];
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->value + r * x->ld;
        float *yr = y->value + r * y->ld;
        for (int64_t j = 0; j < x->width; j++)
            yr[j] = xr[j] > 0.0f ? xr[j] : alpha[(j / inner) % count] * xr[j];
    }
}

/* dL/din = dL/dout * (in > 0 ? 1 : alpha); dL/dalpha_k = sum of dL/dout * in over the
 * elements of alpha_k with in <= 0 */
static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const float *alpha = alphas(p, op);
    const int64_t inner = op->iparam[0], count = op->iparam[1];
    const int acc = fnn_acc(op, 0);
    /* a second call of these weights writes aside, then adds */
    float *ga = op->trainable ? (op->wacc ? p->wtmp : p->grads + op->w_off) : NULL;
    if (ga) memset(ga, 0, (size_t)count * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->value + r * x->ld, *gy = y->grad + r * y->ld;
        float *gx = x->grad ? x->grad + r * x->ld : NULL;
        for (int64_t j = 0; j < x->width; j++) {
            const int64_t k = (j / inner) % count;
            const float d = xr[j] > 0.0f ? gy[j] : alpha[k] * gy[j];
            if (ga && !(xr[j] > 0.0f)) ga[k] += gy[j] * xr[j];
            if (gx) gx[j] = acc ? gx[j] + d : d;
        }
    }
    if (ga && op->wacc) fnn_put_rows(p->grads + op->w_off, 0, ga, 0, 1, count, 1);
}

const fnn_op_kind fnn_op_prelu = {"prelu", 1, check, fnn_no_floats, weight_grads, forward,
                                  backward};
