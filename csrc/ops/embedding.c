/* ops/embedding.c - Keras' Embedding: each of the input's k values is an index into the
 * rows of E (input_dim x output_dim, at w_off), and the output row is the k looked-up rows
 * side by side (k * output_dim wide). iparam[0] = input_dim, iparam[1] = output_dim.
 * Indices arrive as floats (truncated, as Keras casts to int); the Python boundary rejects
 * out-of-range ones in the model's inputs, and forward clamps to [0, input_dim) so that no
 * value can read outside E. Backward scatter-adds dL/dy into the rows of dL/dE (repeated
 * indices sum); the indices get no gradient (zeros, if something upstream asks for one). */
#include "ops.h"

static int check(const fnn_plan *p, const fnn_op *op)
{
    const int64_t k = fnn_in(p, op, 0)->width, dim = op->iparam[1], rows = op->iparam[0];
    const int64_t size = op->trainable ? p->n_params : p->n_state;
    if (op->n_in != 1 || dim < 1 || rows < 1 || rows > INT32_MAX || dim > INT32_MAX)
        return FNN_EPLAN_SHAPE;
    if (fnn_out(p, op)->width != k * dim) return FNN_EPLAN_SHAPE;
    if (op->w_off < 0 || op->w_off > size || rows * dim > size - op->w_off)
        return FNN_EPLAN_PARAMS;
    return 0;
}

static size_t weight_grads(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)(op->iparam[0] * op->iparam[1]);
}

static int64_t row_of(float v, int64_t rows)
{
    /* NaN compares false: row 0 */
    return v >= 1.0f ? (v < (float)rows ? (int64_t)v : rows - 1) : 0;
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const float *e = (op->trainable ? p->params : p->state) + op->w_off;
    const int64_t k = x->width, dim = op->iparam[1], n = op->iparam[0];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k; i++)
            memcpy(y->value + r * y->ld + i * dim, e + row_of(x->value[r * x->ld + i], n) * dim,
                   (size_t)dim * sizeof(float));
}

static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t k = x->width, dim = op->iparam[1], n = op->iparam[0];
    if (x->grad && !fnn_acc(op, 0))
        for (int64_t r = 0; r < rows; r++) memset(x->grad + r * x->ld, 0, (size_t)k * sizeof(float));
    if (!op->trainable) return;
    float *ge = p->grads + op->w_off;
    if (!op->wacc) memset(ge, 0, (size_t)(n * dim) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < k; i++)
            fnn_put_rows(ge + row_of(x->value[r * x->ld + i], n) * dim, dim,
                         y->grad + r * y->ld + i * dim, dim, 1, dim, 1);
}

const fnn_op_kind fnn_op_embedding = {"embedding", 1, check, fnn_no_floats, weight_grads, forward,
                                      backward, NULL};
