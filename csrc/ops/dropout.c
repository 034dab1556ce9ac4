/* ops/dropout.c - inverted dropout. While training, each element is kept with probability
 * 1 - rate and scaled by 1 / (1 - rate); at inference the op is the identity.
 * The mask is a hash of (the step's seed, element index): backward redraws exactly the
 * mask forward used instead of storing it. */
#include "../random.h"
#include "ops.h"

static int check(const fnn_plan *p, const fnn_op *op)
{
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != fnn_out(p, op)->width) return FNN_EPLAN_SHAPE;
    if (!(op->rate >= 0.0f && op->rate < 1.0f)) return FNN_EPLAN_KIND;
    return 0;
}

/* out = in * mask * scale (acc: out += ...); element e is kept when its 32 random bits
 * fall below keep * 2^32, two elements per 64-bit hash; rows are numbered from `base`, the
 * first batch row this plan runs (a thread's share of the batch draws the masks the whole
 * batch would) */
static void apply_mask(const float *in, int64_t ldin, float *out, int64_t ldout, int64_t rows,
                       int64_t m, float rate, uint64_t seed, int64_t base, int acc)
{
    const float scale = 1.0f / (1.0f - rate);
    const uint64_t keep_below = (uint64_t)((1.0 - (double)rate) * 4294967296.0);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in + r * ldin;
        float *y = out + r * ldout;
        for (int64_t j = 0; j < m; j += 2) {
            uint64_t h = seed + (uint64_t)((base + r) * m + j) * 0x9E3779B97F4A7C15ull;
            const uint64_t bits = fnn_splitmix64(&h);
            const float v0 = (bits & 0xFFFFFFFFu) < keep_below ? x[j] * scale : 0.0f;
            y[j] = acc ? y[j] + v0 : v0;
            if (j + 1 < m) {
                const float v1 = (bits >> 32) < keep_below ? x[j + 1] * scale : 0.0f;
                y[j + 1] = acc ? y[j + 1] + v1 : v1;
            }
        }
    }
}

static void forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (training && op->rate > 0.0f) {
        op->seed = fnn_splitmix64(&p->dropout_state);
        apply_mask(x->value, x->ld, y->value, y->ld, rows, x->width, op->rate, op->seed,
                   p->row_base, 0);
    } else {
        fnn_put_rows(y->value, y->ld, x->value, x->ld, rows, x->width, 0);
    }
}

/* dL/dx = dL/dy * mask * scale: the same mask */
static void backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (!x->grad) return;
    if (op->rate > 0.0f)
        apply_mask(y->grad, y->ld, x->grad, x->ld, rows, x->width, op->rate, op->seed,
                   p->row_base,
                   fnn_acc(op, 0));
    else
        fnn_put_rows(x->grad, x->ld, y->grad, y->ld, rows, x->width, fnn_acc(op, 0));
}

const fnn_op_kind fnn_op_dropout = {"dropout", 0, check, fnn_no_floats, fnn_no_floats, forward,
                                    backward};
