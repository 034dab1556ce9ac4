/* fastnn.h - the one header of fastnn's C core.
 *
 * C99, no Python headers: the kernels can be tested and embedded alone.
 * Conventions: float32 buffers, row-major, sizes passed explicitly; the caller
 * owns every buffer and kernels never allocate. A dense layer maps X (n x in)
 * to Y (n x out) by Y = act(X . W + b) with W stored (in x out), as Keras does.
 */
#ifndef FASTNN_H
#define FASTNN_H

#include <stddef.h>
#include <stdint.h>

/* MSVC spells C99's restrict __restrict unless compiling as C11. */
#if defined(_MSC_VER) && !defined(__cplusplus) && !defined(restrict)
#define restrict __restrict
#endif

/* Runtime dispatch: an AVX2+FMA clone and a baseline x86-64 clone of the hot
 * loops, picked by the loader. Other compilers and targets get the plain path. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FNN_NO_CLONES)
#define FNN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FNN_CLONES
#endif

/* ---- activations -------------------------------------------------------- */
enum {
    FNN_ACT_LINEAR = 0, FNN_ACT_RELU = 1, FNN_ACT_SIGMOID = 2, FNN_ACT_TANH = 3,
    FNN_ACT_SOFTMAX = 4 /* over each row's m values */
};

/* y = act(y) in place, over n rows of m values, rows ldy apart. */
void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m);
/* g := dL/dz from g = dL/dy in place, where y holds act's output (every derivative
 * here can be written in terms of the output, so the pre-activation is never kept). */
void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m);

/* ---- GEMM ---------------------------------------------------------------- */
/* Row-major C (m x n) = alpha * op(A) . op(B) + beta * C, op = transpose if tX.
 * A pluggable pointer so that a tuned BLAS can be handed in at run time while
 * the core stays free of any BLAS at build time. */
typedef void (*fnn_sgemm_fn)(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);

/* The portable kernel, always present (cache-blocked, dispatched clones). */
void fnn_sgemm_portable(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);

/* A CBLAS sgemm found at run time (e.g. the OpenBLAS that NumPy ships), in its
 * ILP64 (int64 sizes) or LP64 (int sizes) form. Returns 0, or -1 if fn is NULL. */
int fnn_set_cblas_sgemm(void *fn, int ilp64);
/* The adapter that calls the registered CBLAS (valid only after a successful set). */
void fnn_sgemm_cblas(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc);
int fnn_have_cblas(void);

/* ---- dense layer ---------------------------------------------------------- */
/* Without a GEMM, layers run register-blocked kernels one panel of FNN_NARROW
 * output columns at a time, when the caller gives scratch and row strides of Y (and
 * dX) of at least the width rounded up to FNN_NARROW. */
enum { FNN_NARROW = 16 };

/* Picks the narrow kernels, the best the CPU has up to `level`: 2 = AVX-512F,
 * 1 = AVX2+FMA, 0 = the baseline. Call before any kernel runs; returns the name
 * picked ("avx512", "avx2" or "baseline"). */
const char *fnn_narrow_select(int level);

/* Floats of scratch the panel path needs for a layer of this shape. */
size_t fnn_dense_scratch(int64_t n_in, int64_t n_out);

/* Y = act(X . W + b); b may be NULL (no bias). ldx/ldy are row strides.
 * gemm: a GEMM (a BLAS) for the products, or NULL for fastnn's own kernels;
 * scratch: fnn_dense_scratch() floats for the panel kernels, or NULL for the
 * portable GEMM. */
void fnn_dense_forward(const float *x, int64_t ldx, const float *w, const float *b, float *y,
                       int64_t ldy, int64_t n, int64_t n_in, int64_t n_out, int act,
                       fnn_sgemm_fn gemm, float *scratch);
/* Given y = forward output and gy = dL/dy (both stride ldy; gy is overwritten with
 * dL/dz), writes gw = X^T . dz (n_in x n_out, packed), gb = column sums of dz (if
 * gb), gx = dz . W^T (if gx, stride ldgx). gw NULL: frozen weights, gx only. */
void fnn_dense_backward(const float *x, int64_t ldx, const float *w, const float *y, float *gy,
                        int64_t ldy, float *gx, int64_t ldgx, float *gw, float *gb, int64_t n,
                        int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm, float *scratch);

/* ---- losses -------------------------------------------------------------- */
enum {
    FNN_LOSS_MSE = 0, FNN_LOSS_MAE = 1,
    FNN_LOSS_SPARSE_CCE_LOGITS = 2, /* softmax cross-entropy, integer labels (n x 1)   */
    FNN_LOSS_CCE_LOGITS = 3,        /* softmax cross-entropy, target distributions (n x m) */
    FNN_LOSS_BCE_LOGITS = 4         /* sigmoid cross-entropy, targets in [0, 1] (n x m)  */
};

/* Mean loss over the batch; writes dL/dpred into grad when grad != NULL.
 * MSE/MAE/BCE: mean over all n*m elements (Keras: mean over the last axis, then
 * over the batch). CCE: -sum_j t_j log softmax(z)_j, mean over the n rows; the sparse
 * form's target holds class indices as floats. The cross-entropies take logits: a
 * model ending in softmax/sigmoid hands its pre-activation here (stable, and the
 * gradient is just p - t). pred and grad have row stride ldp; target is packed. */
double fnn_loss(int loss, const float *pred, int64_t ldp, const float *target, float *grad,
                int64_t n, int64_t m);

/* ---- optimizers: csrc/optimizers.h ------------------------------------------ */
#include "optimizers.h"

/* ---- the engine: a plan of ops over tensors (engine.c, ops/) -------------- */
/* A plan is plain data: tensors (rows of `width` floats) and ops in topological order,
 * each naming its kind, input and output tensor ids and parameter offsets. The caller
 * fills the fields marked (in); fnn_plan_layout() checks them and derives the rest:
 * row strides, which tensors carry gradients, the accumulate flags of backward, and the
 * arena size; fnn_plan_bind() places every buffer in one arena. Nothing is allocated
 * after that: training, evaluation and prediction run over the bound buffers. */

/* Dense kernels, chosen per op by the caller (an explicit path, never a side channel). */
enum { FNN_PATH_PANELS = 0, FNN_PATH_PORTABLE = 1, FNN_PATH_BLAS = 2 };

enum {
    FNN_OP_DENSE = 0,      /* out = act(in . W + b); W (in x out) at w_off, b at b_off or none */
    FNN_OP_ACTIVATION = 1, /* out = act(in) */
    FNN_OP_DROPOUT = 2,    /* training: out = in * mask / (1 - rate); inference: out = in */
    FNN_OP_ADD = 3,        /* out = sum of the inputs */
    FNN_OP_SUBTRACT = 4,   /* out = in0 - in1 */
    FNN_OP_MULTIPLY = 5,   /* out = product of the inputs */
    FNN_OP_AVERAGE = 6,    /* out = mean of the inputs */
    FNN_OP_MAXIMUM = 7,    /* out = elementwise max (gradient to the first maximal input) */
    FNN_OP_MINIMUM = 8,    /* out = elementwise min (likewise) */
    FNN_OP_CONCAT = 9,     /* out = the inputs side by side along the features */
    FNN_OP_COUNT = 10
};

enum { FNN_MAX_OP_INPUTS = 64, FNN_OP_AUX = 4 };

typedef struct {
    int64_t width;    /* (in) values per row */
    int is_input;     /* (in) 1: a model input, filled from the caller's rows */
    int64_t ld;       /* row stride: width for inputs, rounded up to 16 otherwise */
    int needs_grad;   /* depends on a trainable parameter: backward computes dL/d(this) */
    float *value;     /* max_batch rows, ld apart (bound) */
    float *grad;      /* likewise, or NULL when no gradient flows here */
} fnn_tensor;

typedef struct {
    int kind;            /* (in) FNN_OP_* */
    int n_in;            /* (in) number of inputs, 1..FNN_MAX_OP_INPUTS */
    const int *in;       /* (in) input tensor ids */
    int out;             /* (in) output tensor id (each tensor has one producer) */
    int act;             /* (in) FNN_ACT_*: dense's fused activation, or the activation op's */
    int path;            /* (in) FNN_PATH_*: dense's kernels */
    int trainable;       /* (in) weights in params (and gradients in grads), else in state */
    int64_t w_off, b_off; /* (in) dense: offsets of W and b (b_off < 0: no bias) */
    float rate;          /* (in) dropout: the fraction of units zeroed while training */
    /* (in) what other kinds need, each kind documenting its use in its file: more weight
     * offsets (state_off: into the state buffer, e.g. moving statistics, which an op may
     * update while training), real parameters (epsilon, momentum, ...) and integers */
    int64_t state_off[FNN_OP_AUX];
    float fparam[FNN_OP_AUX];
    int64_t iparam[FNN_OP_AUX];
    uint64_t acc;        /* bit i: backward adds to input i's gradient instead of writing it */
    int wacc;            /* backward adds to the weight gradients (a layer called twice) */
    int backward;        /* 1: backward runs (its output receives a gradient that matters) */
    uint64_t seed;       /* dropout: this step's mask seed (backward redraws the mask) */
} fnn_op;

/* One loss term: the loss of output tensor `tensor` against its targets. */
typedef struct {
    int tensor;          /* (in) for a cross-entropy, the logits */
    int loss;            /* (in) FNN_LOSS_* */
    int folded_act;      /* (in) the activation the loss took over from the model
                            (FNN_ACT_SOFTMAX/SIGMOID; metrics apply it), or FNN_ACT_LINEAR */
    int64_t target_width; /* (in) values per target row (1 for integer labels) */
    float weight;        /* (in) factor of this loss in the total (Keras' loss_weights) */
    float *target;       /* gathered targets, max_batch rows (bound) */
} fnn_head;

enum { FNN_METRIC_MSE = 0, FNN_METRIC_MAE = 1, FNN_METRIC_ACCURACY = 2 };

typedef struct {
    int head;            /* (in) the head whose output and targets it compares */
    int kind;            /* (in) FNN_METRIC_* */
} fnn_metric;

typedef struct {
    int n_tensors;
    fnn_tensor *tensors;
    int n_ops;
    fnn_op *ops;             /* topological order */
    int n_inputs;
    const int *inputs;       /* tensor ids of the model's inputs, in the caller's order */
    int n_outputs;
    const int *outputs;      /* tensor ids that predict returns */
    int n_heads;
    fnn_head *heads;
    int n_metrics;
    const fnn_metric *metrics;
    float *params, *grads;   /* trainable parameters and their gradients (same layout) */
    int64_t n_params;
    float *state;            /* non-trainable weights (frozen layers) */
    int64_t n_state;
    int max_batch;
    uint64_t dropout_state;  /* advanced once per dropout op and training step */
    float *scratch;          /* (bound) the largest op's scratch */
    float *tmp;              /* (bound) max_batch rows of the widest tensor */
    float *wtmp;             /* (bound) weight gradients of a shared layer's second call */
    int clear_grads;         /* some trainable values get no gradient here: zero grads first */
} fnn_plan;

/* Errors of fnn_plan_layout, with the offending op or tensor in *where. */
enum {
    FNN_EPLAN_TENSOR = -1,   /* a tensor id out of range, or a width < 1 */
    FNN_EPLAN_PRODUCER = -2, /* an op reads a tensor not yet produced, or two ops write one */
    FNN_EPLAN_SHAPE = -3,    /* an op's widths do not agree (dense, merges, concat) */
    FNN_EPLAN_PARAMS = -4,   /* weights outside the params/state buffers */
    FNN_EPLAN_KIND = -5,     /* an unknown op kind, path, activation, loss or metric */
    FNN_EPLAN_BATCH = -6     /* max_batch < 1 */
};

/* Checks the plan, derives strides, gradient flow and accumulate flags, and returns the
 * floats of arena it needs (>= 0), or an FNN_EPLAN_* code with *where set. Checked: ids in
 * range; every input tensor fed once and every other tensor read (by an op, an output or
 * a head) produced earlier, by one op; widths below 2^31; each kind's widths, paths and
 * weight ranges; a weight shared by two ops only whole (same kernel, bias and buffer);
 * heads' target widths (1 for integer labels, else the output's). */
int64_t fnn_plan_layout(fnn_plan *p, int *where);
/* Places tensors, gradients, targets, scratch in `arena` (fnn_plan_layout()'s floats). */
void fnn_plan_bind(fnn_plan *p, float *arena);

/* Totals: doubles laid out as [rows, loss sum, loss sum of each head, sum of each metric],
 * sums weighted by batch rows (the loss is the weighted total of the heads). */
int64_t fnn_totals_size(const fnn_plan *p);

/* Forward of rows [start, n) of the inputs x[i] (n rows of input i's width, packed) in
 * chunks of max_batch; out[j] receives output j's rows (packed). Stops after the chunk
 * that passes max_seconds (<= 0: no limit) and returns the next row to do (n: all). */
int64_t fnn_plan_predict(fnn_plan *p, const float *const *x, int64_t start, int64_t n,
                         float *const *out, double max_seconds);

/* Loss and metrics over rows [start, n) of x and y[h] (head h's targets, packed), added to
 * totals; stops and returns the next row as fnn_plan_predict does. */
int64_t fnn_plan_evaluate(fnn_plan *p, const float *const *x, const float *const *y,
                          int64_t start, int64_t n, int batch, double *totals,
                          double max_seconds);

/* A training run, resumable: fnn_plan_train() continues it where it stopped. */
typedef struct {
    const float *const *x; /* per model input: n rows, packed */
    const float *const *y; /* per head: n rows of its targets, packed */
    int64_t n;
    int batch;
    int64_t *perm;         /* n row indices, the order of the batches */
    int shuffle;           /* shuffle perm (with shuffle_state) before each epoch */
    uint64_t shuffle_state;
    int epochs;            /* epochs to run in all */
    int epoch;             /* epochs completed */
    int64_t step;          /* steps done in the current epoch */
    double *totals;        /* totals_cap x fnn_totals_size(): epoch e's totals at row
                              e - epoch_base; a call stops at an epoch's end when the
                              next epoch would not fit (the caller reads them and moves on) */
    int epoch_base;
    int totals_cap;
} fnn_run;

enum { FNN_RUN_PAUSED = 0, FNN_RUN_EPOCH_END = 1, FNN_RUN_DONE = 2, FNN_RUN_DIVERGED = 3 };

/* Runs training steps (gather, forward, losses, backward, optimizer update) until
 * max_steps are done or max_seconds (<= 0: no limit) have passed (FNN_RUN_PAUSED), an
 * epoch ends and stop_at_epoch_end (FNN_RUN_EPOCH_END), the last epoch ends
 * (FNN_RUN_DONE), or a loss is NaN or Inf (FNN_RUN_DIVERGED: that step is counted in the
 * totals and not applied). Metrics use each batch's pre-update outputs, as Keras does. */
int fnn_plan_train(fnn_plan *p, fnn_optimizer *opt, fnn_run *run, int64_t max_steps,
                   double max_seconds, int stop_at_epoch_end);

/* 1 if none of the n values is NaN or Inf. */
int fnn_all_finite(const float *x, size_t n);

/* Fisher-Yates shuffle of perm[0..n) driven by a 64-bit seed (splitmix64). */
void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state);

#endif
