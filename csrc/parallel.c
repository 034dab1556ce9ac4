/* parallel.c - data parallelism over fastnn's pool: a training step's batch (a predict's
 * rows) split between copies of the plan, one per thread.
 *
 * Each copy ("shard") has its own tensors, scratch and, past the first, its own weight
 * gradients; all read the same parameters. A step: every shard gathers its rows of the
 * batch, runs forward, its heads' loss sums (scaled by the whole batch's divisor, so the
 * gradients are those of the batch) and backward (region 1); then the gradients are
 * summed shard 0 + 1 + ... into the plan's and the optimizer updated, both split by
 * parameter ranges (region 2). The split of rows and ranges depends only on the batch and
 * the thread count, and the sums run in a fixed order: a thread count gives the same
 * weights on every run, whichever thread ran which task.
 *
 * The shards run fastnn's own kernels, never the BLAS: one thread of them is as fast as
 * one thread of OpenBLAS on these shapes (W2: 114 vs 104 GFLOP/s; W7: 104 vs 95), and a
 * BLAS called from two threads at once either oversubscribes the cores or serialises.
 * Steps too small to pay for the regions (~1-2 us each) stay on the calling thread, as
 * do plans whose training mixes rows (batch statistics) or adds loss terms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fastnn.h"
#include "metrics.h"
#include "ops/ops.h"

/* A step or predict call is split when it has at least min_flop floating-point
 * operations (forward; a training step counts 3x) and every shard gets MIN_ROWS rows:
 * below that, waking a thread and joining it costs more than it saves (bench/: the
 * thread-scaling table). Tests lower it to run small plans in parallel. */
static double min_flop = 4.0e5;
#define MIN_ROWS 2

double fnn_parallel_min_flop(double flop)
{
    const double old = min_flop;
    if (flop >= 0.0) min_flop = flop;
    return old;
}

struct fnn_shards {
    int n;
    fnn_plan *plans;        /* n copies of the plan */
    fnn_tensor *tensors;    /* n x n_tensors */
    fnn_op *ops;            /* n x n_ops */
    fnn_head *heads;        /* n x n_heads */
    float **grads;          /* each shard's weight gradients (shard 0: the plan's) */
    double *totals;         /* n x totals size: a shard's metric statistics of one step */
    double *sums;           /* n x n_heads: a shard's loss sums of one step */
    void *memory;           /* the one allocation behind the float buffers */
    int n_dense;            /* dense ops: each shard packs their weights once a step */
    int *dense;             /* their indices */
    double flop_per_row;    /* forward */
    int trains;             /* 0: training steps stay whole (rows coupled, loss terms) */
    int evaluates;          /* 0: evaluate's batches stay whole (loss terms) */
};

static int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

/* Rows [lo, hi) of `rows` that shard k of n runs. */
static void share(int64_t rows, int n, int k, int64_t *lo, int64_t *hi)
{
    *lo = rows * k / n;
    *hi = rows * (k + 1) / n;
}

double fnn_plan_flop_per_row(const fnn_plan *p)
{
    double f = 0.0;
    for (int k = 0; k < p->n_ops; k++) {
        const fnn_op *op = &p->ops[k];
        const double out = (double)p->tensors[op->out].width;
        f += op->kind == FNN_OP_DENSE ? 2.0 * (double)p->tensors[op->in[0]].width * out
                                      : 4.0 * out;
    }
    return f;
}

/* A split training step also exchanges every weight and gradient between the cores
 * (each thread reads the other's half of the summed gradient and of the updated weights:
 * 2-10 ns a cache line here), a cost that grows with the parameters, not the rows. With
 * few rows per thread it eats the gain: bench/'s crossover sweep found 16 rows a thread
 * slower split up to ~4 MFLOP a step, 64 rows faster from 0.6 MFLOP. So below SHARD_ROWS
 * rows a thread a step splits only when it is FEW_ROWS_FACTOR times the threshold. */
#define SHARD_ROWS 32
#define FEW_ROWS_FACTOR 20.0

int fnn_parallel_train(const struct fnn_shards *sh, int64_t rows)
{
    const double flop = 3.0 * (double)rows * sh->flop_per_row;
    if (!sh->trains || rows < (int64_t)sh->n * MIN_ROWS || flop < min_flop) return 0;
    return rows >= (int64_t)sh->n * SHARD_ROWS || flop >= FEW_ROWS_FACTOR * min_flop;
}

int fnn_plan_splits(const fnn_plan *p, int64_t rows, int training)
{
    if (!p->shards) return 0;
    return training ? fnn_parallel_train(p->shards, rows) : fnn_parallel_predict(p->shards, rows);
}

int fnn_parallel_predict(const struct fnn_shards *sh, int64_t rows)
{
    return rows >= (int64_t)sh->n * MIN_ROWS && (double)rows * sh->flop_per_row >= min_flop;
}

void fnn_plan_free_threads(fnn_plan *p)
{
    struct fnn_shards *sh = p->shards;
    p->shards = NULL;
    if (!sh) return;
    free(sh->memory);
    free(sh->plans);
    free(sh->tensors);
    free(sh->ops);
    free(sh->heads);
    free(sh->grads);
    free(sh->totals);
    free(sh->sums);
    free(sh->dense);
    free(sh);
}

static int64_t in_width(const fnn_plan *p, int j) { return p->tensors[p->ops[j].in[0]].width; }
static int64_t out_width(const fnn_plan *p, int j) { return p->tensors[p->ops[j].out].width; }

int fnn_plan_set_threads(fnn_plan *p, int n)
{
    fnn_plan_free_threads(p);
    if (n > FNN_MAX_THREADS) n = FNN_MAX_THREADS;
    const double f = fnn_plan_flop_per_row(p);
    /* a plan whose largest batch cannot be worth splitting gets no copies */
    if (n < 2 || p->max_batch < n * MIN_ROWS || (double)p->max_batch * f * 3.0 < min_flop)
        return 0;
    struct fnn_shards *sh = (struct fnn_shards *)calloc(1, sizeof *sh);
    if (!sh) return -1;
    p->shards = sh;
    sh->n = n;
    sh->flop_per_row = f;
    sh->trains = sh->evaluates = !p->regularized;
    for (int k = 0; k < p->n_ops; k++)
        sh->trains &= !fnn_op_table[p->ops[k].kind]->couples_rows;
    const int nt = p->n_tensors, no = p->n_ops, nh = p->n_heads > 0 ? p->n_heads : 1;
    sh->plans = (fnn_plan *)calloc((size_t)n, sizeof(fnn_plan));
    sh->tensors = (fnn_tensor *)calloc((size_t)n * (size_t)(nt > 0 ? nt : 1),
                                       sizeof(fnn_tensor));
    sh->ops = (fnn_op *)calloc((size_t)n * (size_t)(no > 0 ? no : 1), sizeof(fnn_op));
    sh->heads = (fnn_head *)calloc((size_t)n * (size_t)nh, sizeof(fnn_head));
    sh->grads = (float **)calloc((size_t)n, sizeof(float *));
    sh->totals = (double *)calloc((size_t)n * (size_t)fnn_totals_size(p), sizeof(double));
    sh->sums = (double *)calloc((size_t)n * (size_t)nh, sizeof(double));
    if (!sh->plans || !sh->tensors || !sh->ops || !sh->heads || !sh->grads || !sh->totals ||
        !sh->sums)
        goto fail;
    sh->dense = (int *)calloc((size_t)(no > 0 ? no : 1), sizeof(int));
    if (!sh->dense) goto fail;
    int64_t floats = 0;
    for (int j = 0; j < no; j++)
        if (p->ops[j].kind == FNN_OP_DENSE) {
            sh->dense[sh->n_dense++] = j;
            floats += n * pad16((int64_t)fnn_dense_packed_size(in_width(p, j), out_width(p, j),
                                                                1));
        }
    for (int k = 0; k < n; k++) {
        fnn_plan *q = &sh->plans[k];
        *q = *p;
        q->shards = NULL;
        q->row_base = 0;
        q->max_batch = (p->max_batch + n - 1) / n;
        q->tensors = sh->tensors + (size_t)k * (size_t)nt;
        q->ops = sh->ops + (size_t)k * (size_t)no;
        q->heads = sh->heads + (size_t)k * (size_t)nh;
        memcpy(q->tensors, p->tensors, (size_t)nt * sizeof(fnn_tensor));
        memcpy(q->ops, p->ops, (size_t)no * sizeof(fnn_op));
        if (p->n_heads) memcpy(q->heads, p->heads, (size_t)p->n_heads * sizeof(fnn_head));
        for (int j = 0; j < no; j++)
            if (q->ops[j].kind == FNN_OP_DENSE) q->ops[j].path = FNN_PATH_PANELS;
        int where = 0;
        const int64_t need = fnn_plan_layout(q, &where); /* checked already: cannot fail */
        if (need < 0) goto fail;
        floats += pad16(need) + (k > 0 ? pad16(p->n_params) : 0);
    }
    sh->memory = malloc((size_t)floats * sizeof(float) + 64);
    if (!sh->memory) goto fail;
    float *at = (float *)(((uintptr_t)sh->memory + 63) & ~(uintptr_t)63);
    memset(at, 0, (size_t)floats * sizeof(float));
    for (int d = 0; d < sh->n_dense; d++) {
        const int j = sh->dense[d];
        for (int k = 0; k < n; k++) {
            sh->ops[(size_t)k * (size_t)no + (size_t)j].packed = at;
            at += pad16((int64_t)fnn_dense_packed_size(in_width(p, j), out_width(p, j), 1));
        }
    }
    for (int k = 0; k < n; k++) {
        fnn_plan *q = &sh->plans[k];
        int where = 0;
        const int64_t need = fnn_plan_layout(q, &where);
        fnn_plan_bind(q, at);
        at += pad16(need);
        if (k > 0) {
            q->grads = at; /* zeroed: values no backward writes stay 0 */
            at += pad16(p->n_params);
        }
        sh->grads[k] = q->grads;
    }
    return n;
fail:
    fnn_plan_free_threads(p);
    return -1;
}

/* ---- packing the weights ------------------------------------------------------------- */

/* Shard k packs its own copy of every dense op's panels, once a step instead of once a
 * call. Its own: a packing shared by the threads was slower (W8: 42 against 36 us a step),
 * every packed line being written on one core and read on the other (~18 ns a line
 * between these cores). */
static void pack_shard(const fnn_plan *p, int k, int with_t)
{
    const struct fnn_shards *sh = p->shards;
    const fnn_plan *q = &sh->plans[k];
    for (int d = 0; d < sh->n_dense; d++) {
        const fnn_op *op = &q->ops[sh->dense[d]];
        const int64_t n_in = in_width(p, sh->dense[d]), n_out = out_width(p, sh->dense[d]);
        const int t = with_t && q->tensors[op->in[0]].grad != NULL;
        const int64_t count = fnn_dense_packed_panels(n_in, n_out, t);
        const float *w = (op->trainable ? p->params : p->state) + op->w_off;
        const float *b = op->b_off >= 0 ? (op->trainable ? p->params : p->state) + op->b_off
                                        : NULL;
        float *packed = (float *)op->packed;
        for (int64_t i = 0; i < count; i++) fnn_dense_pack_panel(w, b, n_in, n_out, packed, i);
    }
}

/* ---- a batch's loss and metrics ---------------------------------------------------------- */

/* Adds a split batch of `rows` rows to the totals as engine.c's losses_and_metrics does
 * for a whole one: each head's loss sum over the shards (in shard order) over the batch's
 * divisor, the shards' metric statistics. Returns the batch's weighted loss. */
static double account(const fnn_plan *p, const double *divisor, int64_t rows, double *tot)
{
    const struct fnn_shards *sh = p->shards;
    double total = 0.0;
    for (int h = 0; h < p->n_heads; h++) {
        double sum = 0.0;
        for (int k = 0; k < sh->n; k++) sum += sh->sums[(size_t)k * (size_t)p->n_heads + h];
        const double loss = divisor[h] != 0.0 ? sum / divisor[h] : 0.0;
        total += (double)p->heads[h].weight * loss;
        tot[2 + h] += loss * (double)rows;
    }
    const int64_t tsize = fnn_totals_size(p);
    for (int k = 0; k < sh->n; k++) {
        const double *t = sh->totals + (size_t)k * (size_t)tsize;
        for (int64_t i = 2 + p->n_heads; i < tsize; i++) tot[i] += t[i];
    }
    tot[0] += (double)rows;
    tot[1] += total * (double)rows;
    return total;
}

/* Shard k's heads over its `rows` rows: loss sums (and, when scale, gradients scaled by
 * scale[h]) into its sums, metric statistics into its totals (cleared first). */
static void shard_heads(struct fnn_shards *sh, int k, const float *const *targets,
                        const float *const *weights, int64_t rows, const double *scale)
{
    fnn_plan *q = &sh->plans[k];
    double *sums = sh->sums + (size_t)k * (size_t)(q->n_heads > 0 ? q->n_heads : 1);
    for (int h = 0; h < q->n_heads; h++) {
        const fnn_head *hd = &q->heads[h];
        const fnn_tensor *T = &q->tensors[hd->tensor];
        sums[h] = fnn_loss_sum(hd->loss, hd->param, T->value, T->ld, targets[h], weights[h],
                               scale ? T->grad : NULL, scale ? scale[h] : 0.0, rows, T->width,
                               NULL);
    }
    const int64_t tsize = fnn_totals_size(q);
    double *tot = sh->totals + (size_t)k * (size_t)tsize;
    memset(tot, 0, (size_t)tsize * sizeof(double));
    if (q->n_metrics) fnn_metrics_update(q, targets, weights, rows, tot);
}

/* ---- a training step ------------------------------------------------------------------ */

typedef struct {
    fnn_plan *p;
    const fnn_run *run;
    fnn_optimizer *opt;
    int64_t start, rows;        /* the batch: perm[start .. start + rows) */
    double scale[FNN_MAX_OP_INPUTS]; /* each head's loss weight / divisor */
    double lr;
    int update;                 /* region 2 also updates (an elementwise optimizer) */
    int ranges;                 /* region 2's tasks */
} step_ctx;

/* Region 1, task k: shard k's rows through gather, forward, losses, metrics, backward. */
static int step_task(void *arg, int k)
{
    step_ctx *c = (step_ctx *)arg;
    struct fnn_shards *sh = c->p->shards;
    fnn_plan *q = &sh->plans[k];
    const fnn_run *run = c->run;
    int64_t lo, hi;
    share(c->rows, sh->n, k, &lo, &hi);
    const int64_t rows = hi - lo, s = c->start + lo;
    const int64_t *perm = run->shuffle ? run->perm : NULL;
    const float *targets[FNN_MAX_OP_INPUTS], *weights[FNN_MAX_OP_INPUTS];
    pack_shard(c->p, k, 1);
    q->row_base = lo;
    q->dropout_state = c->p->dropout_state; /* every shard draws the step's seeds */
    for (int i = 0; i < q->n_inputs; i++) {
        fnn_tensor *T = &q->tensors[q->inputs[i]];
        T->value = T->rows;
        fnn_gather(T->rows, run->x[i], perm, s, rows, T->width);
    }
    for (int h = 0; h < q->n_heads; h++) {
        fnn_head *hd = &q->heads[h];
        fnn_gather(hd->target, run->y[h], perm, s, rows, hd->target_width);
        targets[h] = hd->target;
        weights[h] = NULL;
        if (run->sw && run->sw[h]) {
            fnn_gather(hd->weights, run->sw[h], perm, s, rows, 1);
            weights[h] = hd->weights;
        }
    }
    fnn_forward(q, rows, 1);
    shard_heads(sh, k, targets, weights, rows, c->scale);
    fnn_backward(q, rows);
    return 0;
}

/* Region 2, task k: parameters [lo, hi): the shards' gradients summed into the plan's in
 * shard order, then (elementwise optimizers) the update of that range. */
static int update_task(void *arg, int k)
{
    step_ctx *c = (step_ctx *)arg;
    const fnn_plan *p = c->p;
    const struct fnn_shards *sh = p->shards;
    const int64_t n = p->n_params;
    const int64_t lo = n * k / c->ranges / 16 * 16;
    const int64_t hi = k + 1 == c->ranges ? n : n * (k + 1) / c->ranges / 16 * 16;
    float *g = p->grads;
    for (int j = 1; j < sh->n; j++) {
        const float *gj = sh->grads[j];
        for (int64_t i = lo; i < hi; i++) g[i] += gj[i];
    }
    if (c->update)
        fnn_optimizer_update_range(c->opt, p->params, g, (size_t)lo, (size_t)hi, c->lr);
    return 0;
}

int fnn_train_parallel(fnn_plan *p, fnn_optimizer *opt, const fnn_run *run, double *tot)
{
    struct fnn_shards *sh = p->shards;
    step_ctx c;
    c.p = p;
    c.run = run;
    c.opt = opt;
    c.start = run->step * run->batch;
    c.rows = run->n - c.start < run->batch ? run->n - c.start : run->batch;
    const int64_t *perm = run->shuffle ? run->perm : NULL;
    double divisor[FNN_MAX_OP_INPUTS];
    for (int h = 0; h < p->n_heads; h++) {
        const fnn_head *hd = &p->heads[h];
        divisor[h] = fnn_loss_divisor(hd, run->sw ? run->sw[h] : NULL, perm, c.start, c.rows);
        c.scale[h] = divisor[h] != 0.0 ? (double)hd->weight / divisor[h] : 0.0;
    }
    fnn_pool_run(step_task, &c, sh->n);
    p->dropout_state = sh->plans[0].dropout_state;
    if (!isfinite(account(p, divisor, c.rows, tot))) return 1;
    c.update = fnn_optimizer_elementwise(opt);
    c.lr = c.update ? fnn_optimizer_lr(opt) : 0.0;
    /* ranges of at least 4096 parameters: below that a range is not worth a thread */
    c.ranges = (int)(p->n_params / 4096 < sh->n ? p->n_params / 4096 : sh->n);
    if (c.ranges < 1) c.ranges = 1;
    fnn_pool_run(update_task, &c, c.ranges);
    if (c.update)
        fnn_optimizer_finish(opt);
    else
        fnn_optimizer_update(opt, p->params, p->grads, (size_t)p->n_params);
    return 0;
}

/* ---- evaluate ---------------------------------------------------------------------- */

typedef struct {
    fnn_plan *p;
    const float *const *x, *const *y, *const *sw;
    int64_t start, rows;
    int pack;                   /* the call's first region: pack the weights */
} eval_ctx;

static int eval_task(void *arg, int k)
{
    eval_ctx *c = (eval_ctx *)arg;
    struct fnn_shards *sh = c->p->shards;
    fnn_plan *q = &sh->plans[k];
    int64_t lo, hi;
    share(c->rows, sh->n, k, &lo, &hi);
    const int64_t s = c->start + lo, rows = hi - lo;
    const float *targets[FNN_MAX_OP_INPUTS], *weights[FNN_MAX_OP_INPUTS];
    if (c->pack) pack_shard(c->p, k, 0);
    for (int i = 0; i < q->n_inputs; i++) {
        fnn_tensor *T = &q->tensors[q->inputs[i]];
        T->value = (float *)(c->x[i] + s * T->width);
    }
    for (int h = 0; h < q->n_heads; h++) {
        targets[h] = c->y[h] + s * q->heads[h].target_width;
        weights[h] = c->sw && c->sw[h] ? c->sw[h] + s : NULL;
    }
    fnn_forward(q, rows, 0);
    shard_heads(sh, k, targets, weights, rows, NULL);
    return 0;
}

int fnn_parallel_evaluate(const struct fnn_shards *sh, int64_t rows)
{
    return sh->evaluates && fnn_parallel_predict(sh, rows);
}

void fnn_evaluate_parallel(fnn_plan *p, const float *const *x, const float *const *y,
                           const float *const *sw, int64_t s, int64_t rows, double *totals,
                           int pack)
{
    double divisor[FNN_MAX_OP_INPUTS];
    for (int h = 0; h < p->n_heads; h++)
        divisor[h] = fnn_loss_divisor(&p->heads[h], sw ? sw[h] : NULL, NULL, s, rows);
    eval_ctx c = {p, x, y, sw, s, rows, pack};
    fnn_pool_run(eval_task, &c, p->shards->n);
    account(p, divisor, rows, totals);
}

/* ---- predict ----------------------------------------------------------------------- */

typedef struct {
    fnn_plan *p;
    const float *const *x;
    float *const *out;
    int64_t start, rows;
    int pack;                   /* the call's first region: pack the weights */
} predict_ctx;

static int predict_task(void *arg, int k)
{
    predict_ctx *c = (predict_ctx *)arg;
    fnn_plan *q = &c->p->shards->plans[k];
    int64_t lo, hi;
    share(c->rows, c->p->shards->n, k, &lo, &hi);
    const int64_t s = c->start + lo, rows = hi - lo;
    if (c->pack) pack_shard(c->p, k, 0);
    for (int i = 0; i < q->n_inputs; i++) {
        fnn_tensor *T = &q->tensors[q->inputs[i]];
        T->value = (float *)(c->x[i] + s * T->width);
    }
    fnn_forward(q, rows, 0);
    for (int j = 0; j < q->n_outputs; j++) {
        const fnn_tensor *T = &q->tensors[q->outputs[j]];
        float *dst = c->out[j] + s * T->width;
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + r * T->width, T->value + r * T->ld, (size_t)T->width * sizeof(float));
    }
    return 0;
}

int64_t fnn_predict_parallel(fnn_plan *p, const float *const *x, int64_t s, int64_t n,
                             float *const *out, int pack)
{
    const struct fnn_shards *sh = p->shards;
    const int64_t most = (int64_t)sh->plans[0].max_batch * sh->n;
    predict_ctx c = {p, x, out, s, n - s < most ? n - s : most, pack};
    fnn_pool_run(predict_task, &c, sh->n);
    return s + c.rows;
}
