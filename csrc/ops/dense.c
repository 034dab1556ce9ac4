/* ops/dense.c - the dense op: out = act(in . W + b), over the kernels of csrc/dense.c.
 * W (n_in x n_out) and b sit in the trainable parameters, or in the state when the layer
 * is frozen (then backward computes only dL/d(in)). */
#include "ops.h"

static float *weights(const fnn_plan *p, const fnn_op *op)
{
    return op->trainable ? p->params : p->state;
}

/* The path, spelled as dense.c's arguments: a GEMM, and scratch for the panel kernels. */
static fnn_sgemm_fn gemm_of(const fnn_op *op)
{
    return op->path == FNN_PATH_BLAS ? fnn_sgemm_cblas : NULL;
}

static float *scratch_of(const fnn_plan *p, const fnn_op *op)
{
    return op->path == FNN_PATH_PANELS ? p->scratch : NULL;
}

static int check(const fnn_plan *p, const fnn_op *op)
{
    const int64_t n_in = fnn_in(p, op, 0)->width, n_out = fnn_out(p, op)->width;
    const int64_t size = op->trainable ? p->n_params : p->n_state;
    if (op->n_in != 1) return FNN_EPLAN_SHAPE;
    if (op->path < FNN_PATH_PANELS || op->path > FNN_PATH_BLAS) return FNN_EPLAN_KIND;
    if (op->path == FNN_PATH_BLAS && !fnn_have_cblas()) return FNN_EPLAN_KIND;
    /* a fused activation is applied from y alone: dense keeps no pre-activation */
    if (op->act < FNN_ACT_LINEAR || op->act >= FNN_ACT_COUNT || fnn_act_needs_input(op->act))
        return FNN_EPLAN_KIND;
    /* written so that no sum can overflow: widths are below 2^31 */
    if (op->w_off < 0 || op->w_off > size || n_in * n_out > size - op->w_off)
        return FNN_EPLAN_PARAMS;
    if (op->b_off >= 0 && (op->b_off > size || n_out > size - op->b_off)) return FNN_EPLAN_PARAMS;
    return 0;
}

static size_t scratch(const fnn_plan *p, const fnn_op *op)
{
    return fnn_dense_scratch(fnn_in(p, op, 0)->width, fnn_out(p, op)->width);
}

/* floats of W and b (the gradients a second call writes aside before adding them) */
static size_t weight_grads(const fnn_plan *p, const fnn_op *op)
{
    const int64_t n_in = fnn_in(p, op, 0)->width, n_out = fnn_out(p, op)->width;
    return (size_t)(n_in * n_out + (op->b_off >= 0 ? n_out : 0));
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const float *w = weights(p, op);
    fnn_dense_forward_packed(x->value, x->ld, w + op->w_off,
                             op->b_off >= 0 ? w + op->b_off : NULL, op->packed, y->value, y->ld,
                             rows, x->width, y->width, op->act, gemm_of(op), scratch_of(p, op));
}

static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t n_in = x->width, n_out = y->width;
    /* a second consumer of x (or a second call of these weights) writes aside, then adds */
    float *gx = x->grad ? (fnn_acc(op, 0) ? p->tmp : x->grad) : NULL;
    float *gw = NULL, *gb = NULL;
    if (op->trainable) {
        gw = op->wacc ? p->wtmp : p->grads + op->w_off;
        if (op->b_off >= 0) gb = op->wacc ? p->wtmp + n_in * n_out : p->grads + op->b_off;
    }
    fnn_dense_backward_packed(x->value, x->ld, weights(p, op) + op->w_off, op->packed, y->value,
                              y->grad, y->ld, gx, x->ld, gw, gb, rows, n_in, n_out, op->act,
                              gemm_of(op), scratch_of(p, op));
    if (gx && gx == p->tmp) fnn_put_rows(x->grad, x->ld, p->tmp, x->ld, rows, n_in, 1);
    if (op->trainable && op->wacc) {
        fnn_put_rows(p->grads + op->w_off, 0, p->wtmp, 0, 1, n_in * n_out, 1);
        if (gb) fnn_put_rows(p->grads + op->b_off, 0, gb, 0, 1, n_out, 1);
    }
}

const fnn_op_kind fnn_op_dense = {"dense", 1, check, scratch, weight_grads, forward, backward};
