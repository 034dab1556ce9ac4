/* ops/activation.c - a standalone activation: out = act(in), with act's parameters in
 * fparam[] (csrc/fastnn.h lists them per kind). iparam[0]: the softmaxes' group, the
 * number of consecutive values each softmax runs over (a last axis of a row of several
 * of them), or 0 for the whole row. (An activation right after a dense op with a single
 * consumer is fused into it by the planner instead, when the dense op can apply it:
 * !fnn_act_needs_input.) Backward reads the output y, or the input x for the kinds that
 * need it: ops never overwrite their inputs, so x is still there. */
#include "ops.h"

static int check(const fnn_plan *p, const fnn_op *op)
{
    const int64_t width = fnn_out(p, op)->width, group = op->iparam[0];
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != width) return FNN_EPLAN_SHAPE;
    if (op->act < FNN_ACT_LINEAR || op->act >= FNN_ACT_COUNT) return FNN_EPLAN_KIND;
    if (group < 0 || (group > 0 && width % group != 0)) return FNN_EPLAN_SHAPE;
    return 0;
}

/* rows of `width` as rows of `group` values: the softmaxes' unit */
static int64_t group_of(const fnn_op *op, int64_t width)
{
    return op->iparam[0] > 0 ? op->iparam[0] : width;
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t m = group_of(op, y->width);
    fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, x->width, 0);
    if (m == y->width)
        fnn_act_forward_p(op->act, op->fparam, y->value, y->ld, rows, m);
    else
        for (int64_t r = 0; r < rows; r++)
            fnn_act_forward_p(op->act, op->fparam, y->value + r * y->ld, m, y->width / m, m);
}

/* dL/dx = act'(z) * dL/dy (csrc/activations.c) */
static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t m = group_of(op, y->width);
    if (m == y->width)
        fnn_act_backward_p(op->act, op->fparam, x->value, x->ld, y->value, y->grad, y->ld, rows,
                           m);
    else
        for (int64_t r = 0; r < rows; r++)
            fnn_act_backward_p(op->act, op->fparam, x->value + r * x->ld, m,
                               y->value + r * y->ld, y->grad + r * y->ld, m, y->width / m, m);
    if (x->grad) fnn_put_rows(x->grad, x->ld, y->grad, y->ld, rows, x->width, fnn_acc(op, 0));
}

const fnn_op_kind fnn_op_activation = {"activation", 0, check, fnn_no_floats, fnn_no_floats,
                                       forward, backward};
