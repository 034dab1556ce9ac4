/* regularizers.c - Keras' weight regularizers and constraints, over the trainable buffer.
 *
 * A penalty l1 * sum|w| + l2 * sum w^2 on a weight joins the step's loss, and its gradient
 * l1 * sign(w) + 2 * l2 * w the weight's gradient (Keras adds a layer's penalties to the
 * loss it differentiates). Ops may add loss terms of their own (the activity penalty of
 * ops/regularization.c), read here after forward through the op table's `loss`.
 * A constraint projects a weight after each optimizer update (Keras' optimizer.apply):
 *   max_norm      w *= clip(n, 0, max) / (eps + n)
 *   non_neg       w = max(w, 0)
 *   unit_norm     w /= eps + n
 *   min_max_norm  w *= (rate * clip(n, min, max) + (1 - rate) * n) / (eps + n)
 * with n the L2 norm of each column (Keras' axis=0 on a kernel), row, or of the whole
 * weight, and eps = 1e-7 (Keras' backend epsilon). */
#include <math.h>

#include "ops/ops.h"
#include "regularizers.h"

static const double EPSILON = 1e-7;

int fnn_regularization_layout(fnn_plan *p, int *where)
{
    for (int i = 0; i < p->n_penalties; i++) {
        const fnn_penalty *r = &p->penalties[i];
        if (r->offset < 0 || r->size < 0 || r->offset > p->n_params ||
            r->size > p->n_params - r->offset) {
            if (where) *where = i;
            return FNN_EPLAN_PARAMS;
        }
        if (!(r->l1 >= 0.0f && r->l2 >= 0.0f && isfinite(r->l1) && isfinite(r->l2))) {
            if (where) *where = i;
            return FNN_EPLAN_KIND;
        }
    }
    for (int i = 0; i < p->n_constraints; i++) {
        const fnn_constraint *c = &p->constraints[i];
        const int bad_kind = c->kind < FNN_CONSTRAINT_MAX_NORM ||
                             c->kind > FNN_CONSTRAINT_MIN_MAX_NORM ||
                             c->axis < FNN_CONSTRAIN_COLUMNS || c->axis > FNN_CONSTRAIN_ALL ||
                             !isfinite(c->min_value) || !isfinite(c->max_value) ||
                             !isfinite(c->rate);
        /* rows, cols below 2^31 each: their product fits int64 */
        const int bad_place = c->offset < 0 || c->rows < 1 || c->cols < 1 ||
                              c->rows > INT32_MAX || c->cols > INT32_MAX ||
                              c->offset > p->n_params ||
                              c->rows * c->cols > p->n_params - c->offset;
        if (bad_kind || bad_place) {
            if (where) *where = p->n_penalties + i;
            return bad_kind ? FNN_EPLAN_KIND : FNN_EPLAN_PARAMS;
        }
    }
    int op_terms = 0;
    for (int k = 0; k < p->n_ops; k++) op_terms |= fnn_op_table[p->ops[k].kind]->loss != NULL;
    p->regularized = p->n_penalties > 0 || p->n_constraints > 0 || op_terms;
    return 0;
}

double fnn_penalty_loss(const fnn_plan *p, int64_t rows)
{
    double total = 0.0;
    for (int i = 0; i < p->n_penalties; i++) {
        const fnn_penalty *r = &p->penalties[i];
        const float *w = p->params + r->offset;
        double a = 0.0, s = 0.0;
        for (int64_t j = 0; j < r->size; j++) {
            a += fabs((double)w[j]);
            s += (double)w[j] * (double)w[j];
        }
        total += (double)r->l1 * a + (double)r->l2 * s;
    }
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op_kind *kind = fnn_op_table[p->ops[k].kind];
        if (kind->loss) total += kind->loss(p, &p->ops[k], rows);
    }
    return total;
}

FNN_CLONES
void fnn_penalty_grads(const fnn_plan *p)
{
    for (int i = 0; i < p->n_penalties; i++) {
        const fnn_penalty *r = &p->penalties[i];
        const float *restrict w = p->params + r->offset;
        float *restrict g = p->grads + r->offset;
        const float l1 = r->l1, l2x2 = 2.0f * r->l2;
        for (int64_t j = 0; j < r->size; j++) {
            /* d|w|/dw: sign(w), 0 at 0 (as TensorFlow's and JAX's abs) */
            const float sign = (float)(w[j] > 0.0f) - (float)(w[j] < 0.0f);
            g[j] += l1 * sign + l2x2 * w[j];
        }
    }
}

/* The factor a norm n is scaled by (non_neg is not a norm constraint). */
static double norm_factor(const fnn_constraint *c, double n)
{
    double want;
    switch (c->kind) {
    case FNN_CONSTRAINT_MAX_NORM:
        want = n < (double)c->max_value ? n : (double)c->max_value;
        want = want > 0.0 ? want : 0.0;
        break;
    case FNN_CONSTRAINT_UNIT_NORM:
        want = 1.0;
        break;
    default: { /* min_max_norm */
        double clipped = n < (double)c->min_value ? (double)c->min_value : n;
        clipped = clipped > (double)c->max_value ? (double)c->max_value : clipped;
        want = (double)c->rate * clipped + (1.0 - (double)c->rate) * n;
    }
    }
    return want / (EPSILON + n);
}

static void scale_run(float *w, int64_t n, double f)
{
    for (int64_t i = 0; i < n; i++) w[i] = (float)((double)w[i] * f);
}

enum { BLOCK = 64 }; /* columns whose norms are summed in one pass over the rows */

static void apply_one(float *w, const fnn_constraint *c)
{
    const int64_t rows = c->rows, cols = c->cols;
    if (c->kind == FNN_CONSTRAINT_NON_NEG) {
        for (int64_t i = 0; i < rows * cols; i++) w[i] = w[i] > 0.0f ? w[i] : 0.0f;
        return;
    }
    if (c->axis == FNN_CONSTRAIN_ALL || c->axis == FNN_CONSTRAIN_ROWS) {
        const int64_t runs = c->axis == FNN_CONSTRAIN_ALL ? 1 : rows;
        const int64_t len = c->axis == FNN_CONSTRAIN_ALL ? rows * cols : cols;
        for (int64_t r = 0; r < runs; r++) {
            float *v = w + r * len;
            double s = 0.0;
            for (int64_t j = 0; j < len; j++) s += (double)v[j] * (double)v[j];
            scale_run(v, len, norm_factor(c, sqrt(s)));
        }
        return;
    }
    /* columns: sums for a block of columns, one pass over the rows each (row-major reads) */
    double acc[BLOCK];
    for (int64_t j0 = 0; j0 < cols; j0 += BLOCK) {
        const int64_t nb = cols - j0 < BLOCK ? cols - j0 : BLOCK;
        for (int64_t j = 0; j < nb; j++) acc[j] = 0.0;
        for (int64_t i = 0; i < rows; i++) {
            const float *v = w + i * cols + j0;
            for (int64_t j = 0; j < nb; j++) acc[j] += (double)v[j] * (double)v[j];
        }
        for (int64_t j = 0; j < nb; j++) acc[j] = norm_factor(c, sqrt(acc[j]));
        for (int64_t i = 0; i < rows; i++) {
            float *v = w + i * cols + j0;
            for (int64_t j = 0; j < nb; j++) v[j] = (float)((double)v[j] * acc[j]);
        }
    }
}

void fnn_apply_constraints(const fnn_plan *p)
{
    for (int i = 0; i < p->n_constraints; i++)
        apply_one(p->params + p->constraints[i].offset, &p->constraints[i]);
}
