/* ops/regularization.c - the activity penalty (Keras' ActivityRegularization layer and a
 * layer's activity_regularizer): out = in, and the loss gains
 *   (l1 * sum|y| + l2 * sum y^2) / rows       (Keras divides by the batch size)
 * whose gradient (l1 * sign(y) + 2 * l2 * y) / rows backward adds to dL/dy on its way to
 * dL/dx. fparam[0] = l1, fparam[1] = l2. */
#include <math.h>

#include "ops.h"

static int check(const fnn_plan *p, const fnn_op *op)
{
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != fnn_out(p, op)->width) return FNN_EPLAN_SHAPE;
    const float l1 = op->fparam[0], l2 = op->fparam[1];
    if (!(l1 >= 0.0f && l2 >= 0.0f && isfinite(l1) && isfinite(l2))) return FNN_EPLAN_KIND;
    return 0;
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, x->width, 0);
}

FNN_CLONES
static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (!x->grad) return;
    const float l1 = op->fparam[0] / (float)rows, l2x2 = 2.0f * op->fparam[1] / (float)rows;
    const int acc = fnn_acc(op, 0);
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict v = y->value + r * y->ld, *restrict gy = y->grad + r * y->ld;
        float *restrict gx = x->grad + r * x->ld;
        for (int64_t j = 0; j < x->width; j++) {
            const float sign = (float)(v[j] > 0.0f) - (float)(v[j] < 0.0f);
            const float g = gy[j] + l1 * sign + l2x2 * v[j];
            gx[j] = acc ? gx[j] + g : g;
        }
    }
}

static double loss(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *y = fnn_out(p, op);
    double a = 0.0, s = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *v = y->value + r * y->ld;
        for (int64_t j = 0; j < y->width; j++) {
            a += fabs((double)v[j]);
            s += (double)v[j] * (double)v[j];
        }
    }
    return ((double)op->fparam[0] * a + (double)op->fparam[1] * s) / (double)rows;
}

const fnn_op_kind fnn_op_activity_regularization = {
    "activity_regularization", 0, check, fnn_no_floats, fnn_no_floats, forward, backward, loss};
