/* ops/activation.c - a standalone activation: out = act(in). (An activation right after
 * a dense op with a single consumer is fused into it by the planner instead.) */
#include "ops.h"

static int check(const fnn_plan *p, const fnn_op *op)
{
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != fnn_out(p, op)->width) return FNN_EPLAN_SHAPE;
    if (op->act < FNN_ACT_LINEAR || op->act > FNN_ACT_SOFTMAX) return FNN_EPLAN_KIND;
    return 0;
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, x->width, 0);
    fnn_act_forward(op->act, y->value, y->ld, rows, y->width);
}

/* dL/dx = act'(y) * dL/dy, from the output y (csrc/activations.c) */
static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    fnn_act_backward(op->act, y->value, y->grad, y->ld, rows, y->width);
    if (x->grad) fnn_put_rows(x->grad, x->ld, y->grad, y->ld, rows, x->width, fnn_acc(op, 0));
}

const fnn_op_kind fnn_op_activation = {"activation", 0, check, fnn_no_floats, fnn_no_floats,
                                       forward, backward};
