/* ops/merge.c - the merge ops (Keras' Add, Subtract, Multiply, Average, Maximum, Minimum,
 * Concatenate): several inputs of one width (concat: any widths), one output. Each kind
 * is a section here, forward and backward side by side. */
#include "ops.h"

static int same_widths(const fnn_plan *p, const fnn_op *op)
{
    const int64_t w = fnn_out(p, op)->width;
    if (op->n_in < 1) return FNN_EPLAN_SHAPE;
    for (int i = 0; i < op->n_in; i++)
        if (fnn_in(p, op, i)->width != w) return FNN_EPLAN_SHAPE;
    return 0;
}

static int two_inputs(const fnn_plan *p, const fnn_op *op)
{
    return op->n_in == 2 ? same_widths(p, op) : FNN_EPLAN_SHAPE;
}

/* ---- add: y = sum_i x_i;  dL/dx_i = dL/dy ---------------------------------------- */
static void add_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *y = fnn_out(p, op);
    for (int i = 0; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, y->width, i > 0);
    }
}

/* dL/dx_i = scale * dL/dy for every input (add: 1, average: 1/n) */
static void spread_gradient(const fnn_plan *p, const fnn_op *op, int64_t rows, float scale)
{
    const fnn_tensor *y = fnn_out(p, op);
    for (int i = 0; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        if (x->grad)
            fnn_put_rows_scaled(x->grad, x->ld, y->grad, y->ld, rows, y->width, scale,
                                fnn_acc(op, i));
    }
}

static void add_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    spread_gradient(p, op, rows, 1.0f);
}

/* ---- average: y = sum_i x_i / n;  dL/dx_i = dL/dy / n ----------------------------- */
static void average_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    add_forward(p, op, rows, training);
    const fnn_tensor *y = fnn_out(p, op);
    const float inv = 1.0f / (float)op->n_in;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < y->width; j++) y->value[r * y->ld + j] *= inv;
}

static void average_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    spread_gradient(p, op, rows, 1.0f / (float)op->n_in);
}

/* ---- subtract: y = x0 - x1;  dL/dx0 = dL/dy, dL/dx1 = -dL/dy ---------------------- */
static void subtract_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *a = fnn_in(p, op, 0), *b = fnn_in(p, op, 1), *y = fnn_out(p, op);
    fnn_put_rows(y->value, y->ld, a->value, a->ld, rows, y->width, 0);
    fnn_put_rows_scaled(y->value, y->ld, b->value, b->ld, rows, y->width, -1.0f, 1);
}

static void subtract_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *a = fnn_in(p, op, 0), *b = fnn_in(p, op, 1), *y = fnn_out(p, op);
    if (a->grad) fnn_put_rows(a->grad, a->ld, y->grad, y->ld, rows, y->width, fnn_acc(op, 0));
    if (b->grad)
        fnn_put_rows_scaled(b->grad, b->ld, y->grad, y->ld, rows, y->width, -1.0f,
                            fnn_acc(op, 1));
}

/* ---- multiply: y = prod_i x_i;  dL/dx_i = dL/dy * prod_{k != i} x_k --------------- */
static void multiply_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *y = fnn_out(p, op);
    const fnn_tensor *x0 = fnn_in(p, op, 0);
    fnn_put_rows(y->value, y->ld, x0->value, x0->ld, rows, y->width, 0);
    for (int i = 1; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < y->width; j++) y->value[r * y->ld + j] *= x->value[r * x->ld + j];
    }
}

static void multiply_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    /* the product of the others, recomputed (dividing y by x_i fails where x_i = 0) */
    const fnn_tensor *y = fnn_out(p, op);
    for (int i = 0; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        if (!x->grad) continue;
        const int acc = fnn_acc(op, i);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < y->width; j++) {
                float g = y->grad[r * y->ld + j];
                for (int k = 0; k < op->n_in; k++)
                    if (k != i) g *= fnn_in(p, op, k)->value[r * fnn_in(p, op, k)->ld + j];
                float *d = &x->grad[r * x->ld + j];
                *d = acc ? *d + g : g;
            }
    }
}

/* ---- maximum / minimum: y = max_i x_i (min); the gradient goes to the first input
 * holding the extreme value, as a left fold of pairwise maximum (TensorFlow's) does ---- */
static int64_t pick(const fnn_plan *p, const fnn_op *op, int64_t r, int64_t j, int want_max)
{
    int best = 0;
    float v = fnn_in(p, op, 0)->value[r * fnn_in(p, op, 0)->ld + j];
    for (int i = 1; i < op->n_in; i++) {
        const float u = fnn_in(p, op, i)->value[r * fnn_in(p, op, i)->ld + j];
        if (want_max ? u > v : u < v) {
            v = u;
            best = i;
        }
    }
    return best;
}

static void extreme_forward(fnn_plan *p, const fnn_op *op, int64_t rows, int want_max)
{
    const fnn_tensor *y = fnn_out(p, op);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < y->width; j++) {
            const fnn_tensor *x = fnn_in(p, op, (int)pick(p, op, r, j, want_max));
            y->value[r * y->ld + j] = x->value[r * x->ld + j];
        }
}

static void extreme_backward(const fnn_plan *p, const fnn_op *op, int64_t rows, int want_max)
{
    const fnn_tensor *y = fnn_out(p, op);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < y->width; j++) {
            const int best = (int)pick(p, op, r, j, want_max);
            for (int i = 0; i < op->n_in; i++) {
                const fnn_tensor *x = fnn_in(p, op, i);
                if (!x->grad) continue;
                const float g = i == best ? y->grad[r * y->ld + j] : 0.0f;
                float *d = &x->grad[r * x->ld + j];
                *d = fnn_acc(op, i) ? *d + g : g;
            }
        }
}

static void maximum_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    extreme_forward(p, op, rows, 1);
}

static void maximum_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    extreme_backward(p, op, rows, 1);
}

static void minimum_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    extreme_forward(p, op, rows, 0);
}

static void minimum_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    extreme_backward(p, op, rows, 0);
}

/* ---- concatenate (features): y = [x_0 x_1 ...];  dL/dx_i = dL/dy's columns of x_i --- */
static int concat_check(const fnn_plan *p, const fnn_op *op)
{
    int64_t sum = 0;
    if (op->n_in < 1) return FNN_EPLAN_SHAPE;
    for (int i = 0; i < op->n_in; i++) sum += fnn_in(p, op, i)->width;
    return sum == fnn_out(p, op)->width ? 0 : FNN_EPLAN_SHAPE;
}

static void concat_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *y = fnn_out(p, op);
    int64_t at = 0;
    for (int i = 0; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        fnn_put_rows(y->value + at, y->ld, x->value, x->ld, rows, x->width, 0);
        at += x->width;
    }
}

static void concat_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *y = fnn_out(p, op);
    int64_t at = 0;
    for (int i = 0; i < op->n_in; i++) {
        const fnn_tensor *x = fnn_in(p, op, i);
        if (x->grad)
            fnn_put_rows(x->grad, x->ld, y->grad + at, y->ld, rows, x->width, fnn_acc(op, i));
        at += x->width;
    }
}

#define MERGE(NAME, CHECK, FWD, BWD) \
    const fnn_op_kind fnn_op_##NAME = {#NAME, 0, CHECK, fnn_no_floats, fnn_no_floats, FWD, BWD};
MERGE(add, same_widths, add_forward, add_backward)
MERGE(subtract, two_inputs, subtract_forward, subtract_backward)
MERGE(multiply, same_widths, multiply_forward, multiply_backward)
MERGE(average, same_widths, average_forward, average_backward)
MERGE(maximum, same_widths, maximum_forward, maximum_backward)
MERGE(minimum, same_widths, minimum_forward, minimum_backward)
MERGE(concat, concat_check, concat_forward, concat_backward)
#undef MERGE
