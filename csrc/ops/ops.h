/* ops.h - the op table: each op kind is one file in csrc/ops/ with its forward and
 * backward side by side, and one entry in ops.c's table. The engine loops know no kind.
 *
 * forward: out = f(inputs) over `rows` rows (training: draw dropout masks and the like).
 * backward: given out's gradient (tensors[op->out].grad, which the op may overwrite: only
 * its producer reads it), writes each input's gradient where that input has one (grad !=
 * NULL), adding to it when bit i of op->acc is set; weight gradients go to p->grads,
 * added when op->wacc. */
#ifndef FASTNN_OPS_H
#define FASTNN_OPS_H

#include <string.h>

#include "../fastnn.h"

typedef struct {
    const char *name;
    int has_weights;       /* trainable weights: gradients flow from here */
    /* 0, or FNN_EPLAN_SHAPE / FNN_EPLAN_PARAMS / FNN_EPLAN_KIND */
    int (*check)(const fnn_plan *p, const fnn_op *op);
    size_t (*scratch)(const fnn_plan *p, const fnn_op *op); /* floats in p->scratch */
    size_t (*weight_grads)(const fnn_plan *p, const fnn_op *op); /* floats in p->wtmp */
    void (*forward)(fnn_plan *p, fnn_op *op, int64_t rows, int training);
    void (*backward)(const fnn_plan *p, const fnn_op *op, int64_t rows);
    /* NULL, or a term the op adds to the loss after a forward of `rows` rows (an activity
     * penalty; its gradient is the op's backward's business): see regularizers.c */
    double (*loss)(const fnn_plan *p, const fnn_op *op, int64_t rows);
    /* 1: training mixes the batch's rows (batch statistics) or writes the state, so a
     * training step cannot be split by rows between threads (csrc/parallel.c) */
    int couples_rows;
} fnn_op_kind;

extern const fnn_op_kind *const fnn_op_table[FNN_OP_COUNT];

extern const fnn_op_kind fnn_op_dense, fnn_op_activation, fnn_op_dropout, fnn_op_add,
    fnn_op_subtract, fnn_op_multiply, fnn_op_average, fnn_op_maximum, fnn_op_minimum,
    fnn_op_concat;
extern const fnn_op_kind fnn_op_gaussian_noise, fnn_op_gaussian_dropout, fnn_op_prelu;
extern const fnn_op_kind fnn_op_normalization, fnn_op_batch_norm, fnn_op_layer_norm,
    fnn_op_embedding, fnn_op_activity_regularization;

static inline const fnn_tensor *fnn_in(const fnn_plan *p, const fnn_op *op, int i)
{
    return &p->tensors[op->in[i]];
}

static inline const fnn_tensor *fnn_out(const fnn_plan *p, const fnn_op *op)
{
    return &p->tensors[op->out];
}

static inline int fnn_acc(const fnn_op *op, int i) { return (int)((op->acc >> i) & 1u); }

/* dst rows = src rows (w floats each), or dst += src when acc */
void fnn_put_rows(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                  int64_t w, int acc);
/* dst rows = scale * src rows, or dst += scale * src when acc */
void fnn_put_rows_scaled(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                         int64_t w, float scale, int acc);

/* no scratch, no shared weights: the table's default */
size_t fnn_no_floats(const fnn_plan *p, const fnn_op *op);

#endif
