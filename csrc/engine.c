/* engine.c - runs a plan: two generic loops over its ops (forward, then backward in
 * reverse), the losses of its heads, and the training run around them (shuffle, gather
 * each batch from the caller's arrays, forward, loss, backward, optimizer step), in
 * chunks the caller can resume. No allocation once bound: every buffer is in the arena. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "fastnn.h"
#include "fpu.h"
#include "metrics.h"
#include "ops/ops.h"
#include "random.h"
#include "regularizers.h"

FNN_CLONES
int fnn_all_finite(const float *x, size_t n)
{
    /* x - x is 0 for finite x and NaN for NaN or Inf; OR-ing the comparisons is an
     * integer reduction, so it vectorises without reassociating float sums */
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !(x[i] - x[i] == 0.0f);
    return !bad;
}

/* Fisher-Yates. A draw in [0, i] is the high half of a product (Lemire) instead of
 * a division, which alone cost ~5% of the article model's training step; below 2^32
 * rows each 64-bit draw serves two swaps. The bias, (i + 1) / 2^32 at most, is below
 * 2^-22 for a million rows. */
void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state)
{
    int64_t i = n - 1;
    for (; i > 1 && i < 0xFFFFFFFFLL; i -= 2) {
        const uint64_t r = fnn_splitmix64(state);
        const int64_t j = (int64_t)(((r & 0xFFFFFFFFu) * (uint64_t)(i + 1)) >> 32);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        const int64_t k = (int64_t)(((r >> 32) * (uint64_t)i) >> 32); /* in [0, i - 1] */
        t = perm[i - 1];
        perm[i - 1] = perm[k];
        perm[k] = t;
    }
    for (; i > 0; i--) { /* the last swap, or any beyond 2^32 rows */
        const uint64_t r = fnn_splitmix64(state);
#if defined(__SIZEOF_INT128__)
        const int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
#else
        const int64_t j = (int64_t)(r % (uint64_t)(i + 1));
#endif
        const int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static double now_seconds(void)
{
#if defined(CLOCK_MONOTONIC)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
#endif
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- layout ------------------------------------------------------------------------- */

static int64_t pad16(int64_t w) { return (w + FNN_NARROW - 1) / FNN_NARROW * FNN_NARROW; }

static int produced_before(const fnn_plan *p, int t, int k)
{
    for (int j = 0; j < k; j++)
        if (p->ops[j].out == t) return 1;
    return 0;
}

static int64_t fail(int code, int index, int *where)
{
    if (where) *where = index;
    return code;
}

/* Every tensor id and width valid; ops read only inputs or earlier outputs and write a
 * fresh tensor; each kind's own check. */
static int64_t check_plan(const fnn_plan *p, int *where)
{
    if (p->max_batch < 1) return fail(FNN_EPLAN_BATCH, 0, where);
    if (p->n_inputs > FNN_MAX_OP_INPUTS || p->n_heads > FNN_MAX_OP_INPUTS)
        return fail(FNN_EPLAN_SHAPE, -1, where);
    /* widths below 2^31 keep every size product (rows x width, in x out) in int64 */
    for (int t = 0; t < p->n_tensors; t++)
        if (p->tensors[t].width < 1 || p->tensors[t].width > INT32_MAX)
            return fail(FNN_EPLAN_TENSOR, t, where);
    for (int i = 0; i < p->n_inputs; i++) {
        if (p->inputs[i] < 0 || p->inputs[i] >= p->n_tensors || !p->tensors[p->inputs[i]].is_input)
            return fail(FNN_EPLAN_TENSOR, p->inputs[i], where);
        for (int j = 0; j < i; j++)
            if (p->inputs[j] == p->inputs[i]) return fail(FNN_EPLAN_PRODUCER, p->inputs[i], where);
    }
    for (int t = 0; t < p->n_tensors; t++) { /* every input tensor is fed */
        int fed = !p->tensors[t].is_input;
        for (int i = 0; i < p->n_inputs; i++) fed |= p->inputs[i] == t;
        if (!fed) return fail(FNN_EPLAN_PRODUCER, t, where);
    }
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op *op = &p->ops[k];
        if (op->kind < 0 || op->kind >= FNN_OP_COUNT) return fail(FNN_EPLAN_KIND, k, where);
        if (op->n_in < 1 || op->n_in > FNN_MAX_OP_INPUTS) return fail(FNN_EPLAN_SHAPE, k, where);
        if (op->out < 0 || op->out >= p->n_tensors) return fail(FNN_EPLAN_TENSOR, k, where);
        if (p->tensors[op->out].is_input || produced_before(p, op->out, k))
            return fail(FNN_EPLAN_PRODUCER, k, where);
        for (int i = 0; i < op->n_in; i++) {
            const int t = op->in[i];
            if (t < 0 || t >= p->n_tensors) return fail(FNN_EPLAN_TENSOR, k, where);
            if (!p->tensors[t].is_input && !produced_before(p, t, k))
                return fail(FNN_EPLAN_PRODUCER, k, where);
        }
        const int code = fnn_op_table[op->kind]->check(p, op);
        if (code) return fail(code, k, where);
        /* a weight in one buffer is shared whole (a layer called twice) or not at all */
        if (fnn_op_table[op->kind]->has_weights)
            for (int j = 0; j < k; j++)
                if (p->ops[j].kind == op->kind && p->ops[j].trainable == op->trainable &&
                    p->ops[j].w_off == op->w_off && p->ops[j].b_off != op->b_off)
                    return fail(FNN_EPLAN_PARAMS, k, where);
    }
    for (int j = 0; j < p->n_outputs; j++) {
        const int t = p->outputs[j];
        if (t < 0 || t >= p->n_tensors) return fail(FNN_EPLAN_TENSOR, t, where);
        if (!p->tensors[t].is_input && !produced_before(p, t, p->n_ops))
            return fail(FNN_EPLAN_PRODUCER, t, where);
    }
    for (int h = 0; h < p->n_heads; h++) {
        const fnn_head *hd = &p->heads[h];
        if (hd->tensor < 0 || hd->tensor >= p->n_tensors)
            return fail(FNN_EPLAN_TENSOR, h, where);
        if (!p->tensors[hd->tensor].is_input && !produced_before(p, hd->tensor, p->n_ops))
            return fail(FNN_EPLAN_PRODUCER, h, where);
        if (hd->loss < 0 || hd->loss >= FNN_LOSS_COUNT || hd->reduction < FNN_REDUCE_MEAN ||
            hd->reduction > FNN_REDUCE_WEIGHTED_MEAN)
            return fail(FNN_EPLAN_KIND, h, where);
        /* the losses read target rows of this width: labels (1), or the output's width */
        if (hd->target_width != (hd->loss == FNN_LOSS_SPARSE_CCE_LOGITS
                                     ? 1 : p->tensors[hd->tensor].width))
            return fail(FNN_EPLAN_SHAPE, h, where);
        for (int g = 0; g < h; g++)
            if (p->heads[g].tensor == hd->tensor) return fail(FNN_EPLAN_PRODUCER, h, where);
    }
    for (int m = 0; m < p->n_metrics; m++) {
        const fnn_metric *mt = &p->metrics[m];
        if (mt->head < 0 || mt->head >= p->n_heads) return fail(FNN_EPLAN_KIND, m, where);
        const int code = fnn_metric_check(mt, p->tensors[p->heads[mt->head].tensor].width,
                                          p->heads[mt->head].target_width);
        if (code) return fail(code, m, where);
    }
    return 0;
}

/* Gradient flow. Forward: a tensor depends on a trainable weight if its producer has one
 * or reads such a tensor. Backward, from the losses: an op's backward runs when its
 * output receives a gradient and it has trainable weights or an input that depends on
 * one; the first writer of a gradient (in backward order) writes it, later ones add
 * (acc), so chains keep the cost of plain writes. A weight read by two ops (a layer
 * called twice) likewise: the second adds its gradient (wacc). */
static void gradient_flow(fnn_plan *p, int *writers)
{
    for (int t = 0; t < p->n_tensors; t++) {
        p->tensors[t].needs_grad = 0;
        writers[t] = 0;
    }
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op *op = &p->ops[k];
        int depends = fnn_op_table[op->kind]->has_weights && op->trainable;
        for (int i = 0; i < op->n_in; i++) depends |= p->tensors[op->in[i]].needs_grad;
        p->tensors[op->out].needs_grad = depends;
    }
    for (int h = 0; h < p->n_heads; h++) writers[p->heads[h].tensor] = 1;
    for (int k = p->n_ops - 1; k >= 0; k--) {
        fnn_op *op = &p->ops[k];
        op->acc = 0;
        op->wacc = 0;
        op->backward = writers[op->out] > 0 && p->tensors[op->out].needs_grad;
        if (!op->backward) continue;
        for (int i = 0; i < op->n_in; i++) {
            const int t = op->in[i];
            if (!p->tensors[t].needs_grad) continue;
            if (writers[t]++) op->acc |= (uint64_t)1 << i;
        }
        if (fnn_op_table[op->kind]->has_weights && op->trainable)
            for (int j = k + 1; j < p->n_ops; j++)
                if (p->ops[j].backward && p->ops[j].kind == op->kind && p->ops[j].trainable &&
                    p->ops[j].w_off == op->w_off)
                    op->wacc = 1;
    }
    /* The gradient buffer is shared by a model's plans: if this one leaves some trainable
     * values unwritten (weights of ops that do not run backward, or of layers pruned from
     * it), train calls clear it first, or the optimizer would apply another plan's stale
     * gradients. */
    int64_t written = 0;
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op *op = &p->ops[k];
        if (!op->backward || !op->trainable || !fnn_op_table[op->kind]->has_weights) continue;
        int first = 1;
        for (int j = 0; j < k; j++)
            first &= !(p->ops[j].backward && p->ops[j].trainable &&
                       p->ops[j].kind == op->kind && p->ops[j].w_off == op->w_off);
        if (first) written += (int64_t)fnn_op_table[op->kind]->weight_grads(p, op);
    }
    p->clear_grads = written != p->n_params;
    /* a tensor carries a gradient only if somebody writes it */
    for (int t = 0; t < p->n_tensors; t++)
        p->tensors[t].needs_grad = p->tensors[t].needs_grad && writers[t] > 0;
}

static int64_t widest(const fnn_plan *p)
{
    int64_t w = 1;
    for (int t = 0; t < p->n_tensors; t++)
        w = p->tensors[t].ld > w ? p->tensors[t].ld : w;
    return w;
}

/* Floats of each region, rounded up to 16 (64 bytes) so every buffer starts aligned. */
int64_t fnn_plan_layout(fnn_plan *p, int *where)
{
    const int64_t code = check_plan(p, where);
    if (code) return code;
    const int reg = fnn_regularization_layout(p, where);
    if (reg) return reg;
    int *writers = (int *)malloc((size_t)(p->n_tensors > 0 ? p->n_tensors : 1) * sizeof(int));
    if (!writers) return fail(FNN_EPLAN_BATCH, -1, where);
    gradient_flow(p, writers);
    free(writers);
    const int64_t b = p->max_batch;
    int64_t total = 0, scratch = 0, wtmp = 0;
    for (int t = 0; t < p->n_tensors; t++) {
        fnn_tensor *T = &p->tensors[t];
        /* inputs stay packed (predict reads the caller's rows in place); the rest are
         * padded to whole 16-float panels, which the narrow kernels read and write */
        T->ld = T->is_input ? T->width : pad16(T->width);
        total += pad16(b * T->ld) * (T->needs_grad ? 2 : 1);
    }
    for (int h = 0; h < p->n_heads; h++) total += pad16(b * p->heads[h].target_width) + pad16(b);
    int64_t slot = 2 + p->n_heads; /* the totals: rows, loss, head losses, then metrics */
    for (int m = 0; m < p->n_metrics; m++) {
        fnn_metric *mt = &p->metrics[m];
        mt->slot = slot;
        mt->n_slots = fnn_metric_slots(mt, p->tensors[p->heads[mt->head].tensor].width);
        slot += mt->n_slots;
    }
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op_kind *kind = fnn_op_table[p->ops[k].kind];
        const int64_t s = (int64_t)kind->scratch(p, &p->ops[k]);
        scratch = s > scratch ? s : scratch;
        if (p->ops[k].wacc) {
            const int64_t w = (int64_t)kind->weight_grads(p, &p->ops[k]);
            wtmp = w > wtmp ? w : wtmp;
        }
    }
    return total + pad16(scratch) + pad16(b * widest(p)) + pad16(wtmp);
}

void fnn_plan_bind(fnn_plan *p, float *arena)
{
    const int64_t b = p->max_batch;
    float *at = arena;
    for (int t = 0; t < p->n_tensors; t++) {
        fnn_tensor *T = &p->tensors[t];
        T->value = T->rows = at;
        at += pad16(b * T->ld);
        T->grad = NULL;
        if (T->needs_grad) {
            T->grad = at;
            at += pad16(b * T->ld);
        }
    }
    for (int h = 0; h < p->n_heads; h++) {
        p->heads[h].target = at;
        at += pad16(b * p->heads[h].target_width);
        p->heads[h].weights = at;
        at += pad16(b);
    }
    int64_t scratch = 0;
    for (int k = 0; k < p->n_ops; k++) {
        const int64_t s = (int64_t)fnn_op_table[p->ops[k].kind]->scratch(p, &p->ops[k]);
        scratch = s > scratch ? s : scratch;
    }
    p->scratch = at;
    at += pad16(scratch);
    p->tmp = at;
    at += pad16(b * widest(p));
    p->wtmp = at;
}

int64_t fnn_totals_size(const fnn_plan *p)
{
    return p->n_metrics ? p->metrics[p->n_metrics - 1].slot + p->metrics[p->n_metrics - 1].n_slots
                        : 2 + p->n_heads;
}

/* ---- the two loops ------------------------------------------------------------------ */

/* (ops and their count read once: the indirect calls would make the compiler reload them) */
static void forward(fnn_plan *p, int64_t rows, int training)
{
    fnn_op *const ops = p->ops;
    const int n = p->n_ops;
    for (int k = 0; k < n; k++) fnn_op_table[ops[k].kind]->forward(p, &ops[k], rows, training);
}

static void backward(const fnn_plan *p, int64_t rows)
{
    const fnn_op *const ops = p->ops;
    for (int k = p->n_ops - 1; k >= 0; k--)
        if (ops[k].backward) fnn_op_table[ops[k].kind]->backward(p, &ops[k], rows);
}

void fnn_forward(fnn_plan *p, int64_t rows, int training) { forward(p, rows, training); }
void fnn_backward(const fnn_plan *p, int64_t rows) { backward(p, rows); }

double fnn_loss_divisor(const fnn_head *hd, const float *w, const int64_t *perm, int64_t start,
                        int64_t rows)
{
    /* Keras' reduction of sum_i w_i L_i: over the batch's rows by default */
    if (hd->reduction == FNN_REDUCE_SUM) return 1.0;
    if (hd->reduction != FNN_REDUCE_WEIGHTED_MEAN || !w) return (double)rows;
    double divisor = 0.0;
    if (perm)
        for (int64_t r = 0; r < rows; r++) divisor += w[perm[start + r]];
    else
        for (int64_t r = 0; r < rows; r++) divisor += w[start + r];
    return divisor;
}

/* The heads' losses on `rows` rows against targets[h] (packed), rows weighted by
 * weights[h] (NULL: all 1), their gradients when with_grad, and the metrics, added to
 * tot. Returns the weighted total loss. */
static double losses_and_metrics(const fnn_plan *p, const float *const *targets,
                                 const float *const *weights, int64_t rows, int with_grad,
                                 double *tot)
{
    double total = 0.0;
    for (int h = 0; h < p->n_heads; h++) {
        const fnn_head *hd = &p->heads[h];
        const fnn_tensor *T = &p->tensors[hd->tensor];
        const float *w = weights[h];
        const double divisor = fnn_loss_divisor(hd, w, NULL, 0, rows);
        const double scale = divisor != 0.0 ? (double)hd->weight / divisor : 0.0;
        const double sum = fnn_loss_sum(hd->loss, hd->param, T->value, T->ld, targets[h], w,
                                        with_grad ? T->grad : NULL, scale, rows, T->width, NULL);
        const double loss = divisor != 0.0 ? sum / divisor : 0.0;
        total += (double)hd->weight * loss;
        tot[2 + h] += loss * (double)rows;
    }
    if (p->n_metrics) fnn_metrics_update(p, targets, weights, rows, tot);
    if (p->regularized) total += fnn_penalty_loss(p, rows); /* weight, activity penalties */
    tot[0] += (double)rows;
    tot[1] += total * (double)rows;
    return total;
}

/* ---- predict and evaluate ------------------------------------------------------------- */

/* Points the input tensors at rows [s, ...) of the caller's arrays (read in place). */
/* (Training gathers rows into each input's own buffer, `rows`, and points `value` there.) */
static void feed_inputs(fnn_plan *p, const float *const *x, int64_t s)
{
    for (int i = 0; i < p->n_inputs; i++) {
        fnn_tensor *T = &p->tensors[p->inputs[i]];
        T->value = (float *)(x[i] + s * T->width);
    }
}

int64_t fnn_plan_predict(fnn_plan *p, const float *const *x, int64_t start, int64_t n,
                         float *const *out, double max_seconds)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    double deadline = 0.0; /* read once a first chunk leaves rows to do (a latency path) */
    int64_t s = start;
    int packed = 0;        /* split chunks: the weights packed by this call's first */
    while (s < n) {
        if (p->shards && fnn_parallel_predict(p->shards, n - s)) {
            s = fnn_predict_parallel(p, x, s, n, out, !packed);
            packed = 1;
            goto next;
        }
        const int64_t rows = n - s < p->max_batch ? n - s : p->max_batch;
        feed_inputs(p, x, s);
        forward(p, rows, 0);
        for (int j = 0; j < p->n_outputs; j++) {
            const fnn_tensor *T = &p->tensors[p->outputs[j]];
            float *dst = out[j] + s * T->width;
            for (int64_t r = 0; r < rows; r++)
                memcpy(dst + r * T->width, T->value + r * T->ld, (size_t)T->width * sizeof(float));
        }
        s += rows;
    next:
        if (max_seconds > 0 && s < n) {
            if (deadline == 0.0)
                deadline = now_seconds() + max_seconds;
            else if (now_seconds() >= deadline)
                break;
        }
    }
    fnn_fpu_restore(fpu);
    return s;
}

int64_t fnn_plan_evaluate(fnn_plan *p, const float *const *x, const float *const *y,
                          const float *const *sw, int64_t start, int64_t n, int batch,
                          double *totals, double max_seconds)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    const double deadline = max_seconds > 0 ? now_seconds() + max_seconds : 0.0;
    const float *targets[FNN_MAX_OP_INPUTS], *weights[FNN_MAX_OP_INPUTS];
    if (batch > p->max_batch || batch < 1) batch = p->max_batch;
    int64_t s = start;
    int packed = 0;        /* split batches: the weights packed by this call's first */
    while (s < n) {
        const int64_t rows = n - s < batch ? n - s : batch;
        if (p->shards && fnn_parallel_evaluate(p->shards, rows)) {
            fnn_evaluate_parallel(p, x, y, sw, s, rows, totals, !packed);
            packed = 1;
            s += rows;
            if (deadline > 0 && s < n && now_seconds() >= deadline) break;
            continue;
        }
        feed_inputs(p, x, s);
        for (int h = 0; h < p->n_heads && h < FNN_MAX_OP_INPUTS; h++) {
            targets[h] = y[h] + s * p->heads[h].target_width;
            weights[h] = sw && sw[h] ? sw[h] + s : NULL;
        }
        forward(p, rows, 0);
        losses_and_metrics(p, targets, weights, rows, 0, totals);
        s += rows;
        if (deadline > 0 && s < n && now_seconds() >= deadline) break;
    }
    fnn_fpu_restore(fpu);
    return s;
}

/* ---- training ------------------------------------------------------------------------ */

void fnn_gather(float *dst, const float *src, const int64_t *perm, int64_t start, int64_t rows,
                   int64_t w)
{
    if (!perm) {
        memcpy(dst, src + start * w, (size_t)(rows * w) * sizeof(float));
        return;
    }
    /* short rows (the article's 13 features, 1 target): memcpy of a constant size is
     * inlined as a few vector moves, a call per row costs more than the copy */
    switch (w) {
#define GATHER_CASE(W)                                                               \
    case W:                                                                          \
        for (int64_t r = 0; r < rows; r++)                                           \
            memcpy(dst + r * W, src + perm[start + r] * W, W * sizeof(float));       \
        break;
        GATHER_CASE(1) GATHER_CASE(2) GATHER_CASE(3) GATHER_CASE(4) GATHER_CASE(5)
        GATHER_CASE(6) GATHER_CASE(7) GATHER_CASE(8) GATHER_CASE(9) GATHER_CASE(10)
        GATHER_CASE(11) GATHER_CASE(12) GATHER_CASE(13) GATHER_CASE(14) GATHER_CASE(15)
        GATHER_CASE(16)
#undef GATHER_CASE
    default:
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + r * w, src + perm[start + r] * w, (size_t)w * sizeof(float));
    }
}

/* Backward and update with weight penalties and constraints (regularizers.c): the
 * penalties' gradients join the weights', the constraints project the updated weights.
 * Weights no backward writes get their penalty's gradient alone (cleared every step). */
static void regularized_update(fnn_plan *p, fnn_optimizer *opt, int64_t rows)
{
    if (p->clear_grads && p->n_params > 0)
        memset(p->grads, 0, (size_t)p->n_params * sizeof(float));
    backward(p, rows);
    fnn_penalty_grads(p);
    fnn_optimizer_update(opt, p->params, p->grads, (size_t)p->n_params);
    fnn_apply_constraints(p);
}

/* One step on the batch at run->step: returns 1 if the loss is NaN or Inf (not applied). */
static int train_step(fnn_plan *p, fnn_optimizer *opt, const fnn_run *run, double *tot)
{
    const int64_t s = run->step * run->batch;
    const int64_t rows = run->n - s < run->batch ? run->n - s : run->batch;
    const int64_t *perm = run->shuffle ? run->perm : NULL;
    if (p->shards && fnn_parallel_train(p->shards, rows))
        return fnn_train_parallel(p, opt, run, tot);
    const float *targets[FNN_MAX_OP_INPUTS], *weights[FNN_MAX_OP_INPUTS];
    for (int i = 0; i < p->n_inputs; i++) {
        fnn_tensor *T = &p->tensors[p->inputs[i]];
        T->value = T->rows; /* predict may have pointed it at the caller's rows */
        fnn_gather(T->rows, run->x[i], perm, s, rows, T->width);
    }
    for (int h = 0; h < p->n_heads && h < FNN_MAX_OP_INPUTS; h++) {
        fnn_gather(p->heads[h].target, run->y[h], perm, s, rows, p->heads[h].target_width);
        targets[h] = p->heads[h].target;
        weights[h] = NULL; /* sample weights are gathered like the targets */
        if (run->sw && run->sw[h]) {
            fnn_gather(p->heads[h].weights, run->sw[h], perm, s, rows, 1);
            weights[h] = p->heads[h].weights;
        }
    }
    forward(p, rows, 1);
    const double loss = losses_and_metrics(p, targets, weights, rows, 1, tot);
    if (!isfinite(loss)) return 1;
    if (p->regularized) {
        regularized_update(p, opt, rows);
        return 0;
    }
    backward(p, rows);
    fnn_optimizer_update(opt, p->params, p->grads, (size_t)p->n_params);
    return 0;
}

int fnn_plan_train(fnn_plan *p, fnn_optimizer *opt, fnn_run *run, int64_t max_steps,
                   double max_seconds, int stop_at_epoch_end)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    const int64_t steps_per_epoch = (run->n + run->batch - 1) / run->batch;
    const int64_t tsize = fnn_totals_size(p);
    /* The clock is read every `every` steps, doubling while steps are short (< 1 ms
     * between reads): a small model's step is ~1 us, and a read ~20 ns. */
    const double start = max_seconds > 0 ? now_seconds() : 0.0;
    double last = start;
    int64_t done = 0, every = 1, since = 0;
    int status = FNN_RUN_PAUSED;
    if (p->clear_grads && p->n_params > 0)
        memset(p->grads, 0, (size_t)p->n_params * sizeof(float));
    while (run->epoch < run->epochs && done < max_steps) {
        if (run->step == 0 && run->epoch - run->epoch_base >= run->totals_cap) {
            status = FNN_RUN_EPOCH_END; /* the caller collects the totals first */
            break;
        }
        if (run->step == 0 && run->shuffle) fnn_shuffle(run->perm, run->n, &run->shuffle_state);
        double *tot = run->totals + (int64_t)(run->epoch - run->epoch_base) * tsize;
        if (train_step(p, opt, run, tot)) {
            status = FNN_RUN_DIVERGED;
            break;
        }
        done++;
        if (++run->step == steps_per_epoch) {
            run->step = 0;
            run->epoch++;
            if (stop_at_epoch_end && run->epoch < run->epochs) {
                status = FNN_RUN_EPOCH_END;
                break;
            }
        }
        if (max_seconds > 0 && ++since >= every) {
            const double t = now_seconds();
            if (t - start >= max_seconds) break;
            if (t - last < 1e-3) every *= 2;
            last = t;
            since = 0;
        }
    }
    if (status == FNN_RUN_PAUSED && run->epoch >= run->epochs) status = FNN_RUN_DONE;
    /* a finite loss can still be followed by an update to Inf (a huge step): the last
     * update of each call is checked, once per call, so no run ends silently non-finite */
    if (status != FNN_RUN_DIVERGED && done > 0 && !fnn_all_finite(p->params, (size_t)p->n_params))
        status = FNN_RUN_DIVERGED;
    fnn_fpu_restore(fpu);
    return status;
}
