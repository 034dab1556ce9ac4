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
/* Keras 3's definitions. The softmaxes run over each row's m values, the rest elementwise.
 * Parameters (param[], Keras' defaults when param is NULL) are listed beside each kind. */
enum {
    FNN_ACT_LINEAR = 0, FNN_ACT_RELU = 1, FNN_ACT_SIGMOID = 2, FNN_ACT_TANH = 3,
    FNN_ACT_SOFTMAX = 4,
    FNN_ACT_RELU6 = 5,
    FNN_ACT_LEAKY_RELU = 6,   /* param[0]: negative_slope (0.2) */
    FNN_ACT_ELU = 7,          /* param[0]: alpha (1.0) */
    FNN_ACT_SELU = 8,
    FNN_ACT_GELU = 9,         /* exact: x Phi(x), by erf */
    FNN_ACT_GELU_TANH = 10,   /* gelu(approximate=True): the tanh form */
    FNN_ACT_SILU = 11,        /* swish */
    FNN_ACT_SOFTPLUS = 12, FNN_ACT_SOFTSIGN = 13,
    FNN_ACT_HARD_SIGMOID = 14, /* relu6(x + 3) / 6 */
    FNN_ACT_EXPONENTIAL = 15, FNN_ACT_MISH = 16,
    FNN_ACT_LOG_SOFTMAX = 17,
    FNN_ACT_RELU_GENERAL = 18, /* Keras' relu(x, negative_slope, max_value, threshold):
                                  param[0..2] (0, +inf, 0) */
    FNN_ACT_COUNT = 19
};

/* y = act(y) in place, over n rows of m values, rows ldy apart (Keras' default parameters). */
void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m);
/* g := dL/dz from g = dL/dy in place, where y holds act's output: for the kinds that
 * fnn_act_needs_input() rejects, the derivative is written in terms of the output. */
void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m);
/* 1 if act's derivative needs its input x (gelu, silu, mish and the parametrised kinds):
 * a dense op cannot fuse it (it keeps only y); the activation op reads x in backward. */
int fnn_act_needs_input(int act);
/* The same with parameters (param: FNN_OP_AUX floats, or NULL for the defaults); backward
 * also reads the input x (rows ldx apart; NULL only when !fnn_act_needs_input(act)). */
void fnn_act_forward_p(int act, const float *param, float *y, int64_t ldy, int64_t n, int64_t m);
void fnn_act_backward_p(int act, const float *param, const float *x, int64_t ldx, const float *y,
                        float *g, int64_t ldy, int64_t n, int64_t m);

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

/* The panel path with W's panels packed once for several calls (a parallel step's
 * forward and backward): fnn_dense_packed_size() floats, filled panel by panel (any order, any
 * thread) by fnn_dense_pack_panel(i) for i < fnn_dense_packed_panels(); with_t adds
 * W^T's panels, which backward's dL/dX reads. The _packed calls take it (NULL: pack
 * into scratch on every call, as the plain ones do). */
int64_t fnn_dense_packed_panels(int64_t n_in, int64_t n_out, int with_t);
size_t fnn_dense_packed_size(int64_t n_in, int64_t n_out, int with_t);
void fnn_dense_pack_panel(const float *w, const float *b, int64_t n_in, int64_t n_out,
                          float *packed, int64_t i);
void fnn_dense_forward_packed(const float *x, int64_t ldx, const float *w, const float *b,
                              const float *packed, float *y, int64_t ldy, int64_t n,
                              int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm,
                              float *scratch);
void fnn_dense_backward_packed(const float *x, int64_t ldx, const float *w, const float *packed,
                               const float *y, float *gy, int64_t ldy, float *gx, int64_t ldgx,
                               float *gw, float *gb, int64_t n, int64_t n_in, int64_t n_out,
                               int act, fnn_sgemm_fn gemm, float *scratch);

/* ---- losses -------------------------------------------------------------- */
/* Keras 3's losses. Each has a per-sample value L_i over a row of m predictions p against
 * its targets t: the elementwise ones are the mean over the row of f(p_j, t_j), the others
 * (marked "row") a function of the whole row. */
enum {
    FNN_LOSS_MSE = 0, FNN_LOSS_MAE = 1,
    FNN_LOSS_SPARSE_CCE_LOGITS = 2, /* row: softmax cross-entropy, integer labels (n x 1) */
    FNN_LOSS_CCE_LOGITS = 3,        /* row: softmax cross-entropy, target distributions;
                                       param: label_smoothing, t -> t (1 - s) + s / m */
    FNN_LOSS_BCE_LOGITS = 4,        /* sigmoid cross-entropy, targets in [0, 1];
                                       param: label_smoothing, t -> t (1 - s) + s / 2 */
    FNN_LOSS_MAPE = 5,              /* 100 |p - t| / max(|t|, 1e-7) */
    FNN_LOSS_MSLE = 6,              /* (log(max(p, 1e-7) + 1) - log(max(t, 1e-7) + 1))^2 */
    FNN_LOSS_HUBER = 7,             /* param: delta; e^2 / 2 or delta (|e| - delta / 2) */
    FNN_LOSS_LOG_COSH = 8,          /* log cosh(p - t), as x + softplus(-2x) - log 2 */
    FNN_LOSS_KLD = 9,               /* row: sum t log(t / p), both clipped to [1e-7, 1] */
    FNN_LOSS_POISSON = 10,          /* p - t log(p + 1e-7) */
    FNN_LOSS_HINGE = 11,            /* max(1 - t p, 0); 0/1 labels count as -1/1 (below) */
    FNN_LOSS_SQUARED_HINGE = 12,    /* max(1 - t p, 0)^2, labels likewise */
    FNN_LOSS_CATEGORICAL_HINGE = 13, /* row: max(max_j (1 - t_j) p_j - sum_j t_j p_j + 1, 0) */
    FNN_LOSS_COSINE = 14,           /* row: -sum t p / (max(|t|, 1e-7) max(|p|, 1e-7)) */
    FNN_LOSS_COUNT = 15
};

/* How a head turns the sum of its weighted per-sample losses into the batch loss (Keras'
 * reduction): divided by the batch's rows ("sum_over_batch_size", "mean": the default),
 * by nothing ("sum"), or by the sum of the sample weights ("mean_with_sample_weight"). */
enum { FNN_REDUCE_MEAN = 0, FNN_REDUCE_SUM = 1, FNN_REDUCE_WEIGHTED_MEAN = 2 };

/* sum_i w_i L_i over n rows (w NULL: every w_i = 1); when grad != NULL it also writes
 * grad = scale * w_i * dL_i/dpred, and when values != NULL each L_i into values[i].
 * param: the loss's parameter (above, else unused). The
 * hinge losses, as Keras, map 0/1 labels to -1/1 when every target of the call is 0 or 1.
 * The cross-entropies take logits: a model ending in softmax/sigmoid hands its
 * pre-activation here (stable for any logits, and the gradient is p - t); the sparse
 * form's targets are class indices stored as floats, which the caller checked. pred and
 * grad have row stride ldp; target is packed (m wide, 1 for class indices). */
double fnn_loss_sum(int loss, float param, const float *pred, int64_t ldp, const float *target,
                    const float *weight, float *grad, double scale, int64_t n, int64_t m,
                    double *values);

/* The unweighted mean loss over the n rows, and its gradient when grad != NULL (the loss
 * parameter 0: Huber needs fnn_loss_sum and its delta). */
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
    FNN_OP_GAUSSIAN_NOISE = 10,   /* training: out = in + N(0, fparam[0]^2); inference: in */
    FNN_OP_GAUSSIAN_DROPOUT = 11, /* training: out = in * N(1, r / (1 - r)), r = fparam[0] */
    FNN_OP_PRELU = 12,     /* out = in > 0 ? in : alpha * in; alpha at w_off (iparam: sharing) */
    FNN_OP_NORMALIZATION = 13, /* out = (in - mean) / max(sqrt(var), 1e-7) (ops/normalization.c) */
    FNN_OP_BATCH_NORM = 14,    /* batch statistics while training, moving ones at inference */
    FNN_OP_LAYER_NORM = 15,    /* statistics of each row (or group of a row) */
    FNN_OP_EMBEDDING = 16,     /* out = rows iparam-indexed by in of E at w_off (ops/embedding.c) */
    FNN_OP_ACTIVITY_REG = 17,  /* out = in; adds an activity penalty to the loss */
    FNN_OP_COUNT = 18
};

enum { FNN_MAX_OP_INPUTS = 64, FNN_OP_AUX = 4 };

typedef struct {
    int64_t width;    /* (in) values per row */
    int is_input;     /* (in) 1: a model input, filled from the caller's rows */
    int64_t ld;       /* row stride: width for inputs, rounded up to 16 otherwise */
    int needs_grad;   /* depends on a trainable parameter: backward computes dL/d(this) */
    float *value;     /* max_batch rows, ld apart (bound); an input's may point at the
                         caller's rows (predict, evaluate read them in place) */
    float *rows;      /* (bound) the tensor's own rows in the arena */
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
    const float *packed; /* dense: NULL, or its weights' panels packed for this step
                            (fnn_dense_pack_panel, by csrc/parallel.c) */
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
    float param;         /* (in) the loss's parameter (fnn_loss_sum) */
    int reduction;       /* (in) FNN_REDUCE_* */
    float *weights;      /* sample weights of the batch being trained, max_batch (bound) */
} fnn_head;

/* Metrics on a head's outputs (what predict returns: the folded activation applied) and
 * targets, accumulated over batches as sums in `n_slots` doubles of the totals (their
 * sufficient statistics); the caller computes each result from the summed slots. The
 * mean-type ones sum a per-sample value v_i: slots [sum w_i v_i] (w_i = 1), or when
 * weighted [sum w_i v_i, sum w_i]. Their targets are the output's width except where
 * class indices are said. */
enum {
    FNN_METRIC_MSE = 0, FNN_METRIC_MAE = 1, /* mean-type: the loss's per-sample value */
    FNN_METRIC_ACCURACY = 2,        /* mean-type, Keras' "accuracy" by shape: one output:
                                       binary at 0.5; class indices: sparse; else categorical */
    FNN_METRIC_BINARY_ACCURACY = 3, /* mean-type: mean_j [(p_j > param) == t_j] */
    FNN_METRIC_CATEGORICAL_ACCURACY = 4,        /* mean-type: argmax p == argmax t */
    FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY = 5, /* mean-type: argmax p == t (class index) */
    FNN_METRIC_TOP_K = 6,           /* mean-type: argmax t among the iparam[0] largest p */
    FNN_METRIC_SPARSE_TOP_K = 7,    /* mean-type: the class index t among them */
    FNN_METRIC_LOSS = 8,            /* mean-type: loss iparam[0] with parameter `param`; a
                                       cross-entropy takes logits, or when iparam[1] != 0
                                       probabilities (Keras' from_logits=False, clipped) */
    FNN_METRIC_R2 = 9,              /* per column j: sum w t_j, sum w t_j^2, sum w (t_j -
                                       p_j)^2, sum w (4 m slots), then rows with w != 0 */
    FNN_METRIC_CONFUSION = 10,      /* every element (or column iparam[0] >= 0; or, when
                                       iparam[1] > 0, only a row's iparam[1] largest p, the
                                       rest counting as below every threshold): at its bucket
                                       b = #{thresholds < p}, adds w to pos[b] if t != 0, else
                                       to neg[b]; slots pos[0..T], neg[0..T] */
    FNN_METRIC_FSCORE = 11,         /* per column j, with q_j = p_j > param (param NaN: p_j is
                                       its row's maximum and |p_j| > 1e-9): sum w q t, sum w q
                                       (1 - t), sum w (1 - q) t, sum w t (4 m slots) */
    FNN_METRIC_EQUALITY = 12,       /* mean-type: mean_j [p_j == t_j] (Keras' Accuracy class) */
    FNN_METRIC_COUNT = 13
};

typedef struct {
    int head;            /* (in) the head whose output and targets it compares */
    int kind;            /* (in) FNN_METRIC_* */
    int weighted;        /* (in) rows count by the head's sample weights (Keras'
                            weighted_metrics); else each row counts 1 */
    float param;         /* (in) threshold, or the loss parameter (above) */
    int64_t iparam[2];   /* (in) k, a loss, a class, top k (above) */
    int n_thresholds;    /* (in) confusion: T >= 1 thresholds, ascending */
    const float *thresholds;
    int64_t slot, n_slots; /* its doubles in the totals (fnn_plan_layout) */
} fnn_metric;

/* Regularization as Keras applies it: a penalty l1 * sum|w| + l2 * sum w^2 on a trainable
 * weight joins the loss (and its gradient the weight's); a constraint projects a trainable
 * weight after each optimizer update, by the L2 norms n of its columns (Keras' axis=0 on a
 * kernel), rows or whole: max_norm w *= clip(n, 0, max) / (eps + n); non_neg w = max(w, 0);
 * unit_norm w /= eps + n; min_max_norm w *= (rate clip(n, min, max) + (1 - rate) n) /
 * (eps + n), eps = 1e-7. */
typedef struct {
    int64_t offset, size;    /* (in) the weight: params[offset .. offset + size) */
    float l1, l2;            /* (in) >= 0 */
} fnn_penalty;

enum { FNN_CONSTRAINT_MAX_NORM = 0, FNN_CONSTRAINT_NON_NEG = 1, FNN_CONSTRAINT_UNIT_NORM = 2,
       FNN_CONSTRAINT_MIN_MAX_NORM = 3 };
enum { FNN_CONSTRAIN_COLUMNS = 0, FNN_CONSTRAIN_ROWS = 1, FNN_CONSTRAIN_ALL = 2 };

typedef struct {
    int kind;                /* (in) FNN_CONSTRAINT_* */
    int axis;                /* (in) FNN_CONSTRAIN_*: the norms taken */
    int64_t offset, rows, cols; /* (in) the weight: params[offset ..], rows x cols row-major */
    float min_value, max_value, rate; /* (in) min_max_norm's; max_norm reads max_value */
} fnn_constraint;

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
    fnn_metric *metrics;
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
    int n_penalties;         /* (in) weight penalties (csrc/regularizers.c) */
    const fnn_penalty *penalties;
    int n_constraints;       /* (in) weight constraints, applied after each update */
    const fnn_constraint *constraints;
    int regularized;         /* penalties, constraints or ops adding loss terms: the step
                                takes the regularized path (plans without: no cost) */
    int64_t row_base;        /* the first row of the batch this plan runs (a shard's offset:
                                random masks are drawn by batch row); 0 otherwise */
    struct fnn_shards *shards; /* NULL, or the per-thread copies (fnn_plan_set_threads) */
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
 * heads' losses, reductions and target widths (1 for integer labels, else the output's);
 * metrics' kinds, parameters and targets (fnn_metric_check). It also places each metric's
 * slots in the totals (fnn_metric.slot). */
int64_t fnn_plan_layout(fnn_plan *p, int *where);
/* Places tensors, gradients, targets, scratch in `arena` (fnn_plan_layout()'s floats). */
void fnn_plan_bind(fnn_plan *p, float *arena);

/* Totals: doubles laid out as [rows, loss sum, loss sum of each head, each metric's
 * slots (fnn_metric.slot)]: the losses are summed over batches as rows x batch loss, so
 * that loss sum / rows is the mean Keras reports (the loss is the weighted total of the
 * heads); metrics add their statistics. */
int64_t fnn_totals_size(const fnn_plan *p);

/* Forward of rows [start, n) of the inputs x[i] (n rows of input i's width, packed) in
 * chunks of max_batch; out[j] receives output j's rows (packed). Stops after the chunk
 * that passes max_seconds (<= 0: no limit) and returns the next row to do (n: all). */
int64_t fnn_plan_predict(fnn_plan *p, const float *const *x, int64_t start, int64_t n,
                         float *const *out, double max_seconds);

/* Loss and metrics over rows [start, n) of x and y[h] (head h's targets, packed), added to
 * totals; sw: NULL, or per head NULL or its n sample weights. Stops and returns the next
 * row as fnn_plan_predict does. */
int64_t fnn_plan_evaluate(fnn_plan *p, const float *const *x, const float *const *y,
                          const float *const *sw, int64_t start, int64_t n, int batch,
                          double *totals, double max_seconds);

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
    const float *const *sw; /* NULL, or per head NULL or n sample weights (gathered as y) */
} fnn_run;

enum { FNN_RUN_PAUSED = 0, FNN_RUN_EPOCH_END = 1, FNN_RUN_DONE = 2, FNN_RUN_DIVERGED = 3 };

/* Runs training steps (gather, forward, losses, backward, optimizer update) until
 * max_steps are done or max_seconds (<= 0: no limit) have passed (FNN_RUN_PAUSED), an
 * epoch ends and stop_at_epoch_end (FNN_RUN_EPOCH_END), the last epoch ends
 * (FNN_RUN_DONE), or a loss is NaN or Inf (FNN_RUN_DIVERGED: that step is counted in the
 * totals and not applied) or, at the end of the call, a parameter is (FNN_RUN_DIVERGED). Metrics use each batch's pre-update outputs, as Keras does. */
int fnn_plan_train(fnn_plan *p, fnn_optimizer *opt, fnn_run *run, int64_t max_steps,
                   double max_seconds, int stop_at_epoch_end);

/* ---- threads -------------------------------------------------------------------------- */
/* fastnn's pool (csrc/pool.c): fnn_pool_run(fn, ctx, n) runs fn(ctx, 0) .. fn(ctx, n - 1)
 * on the pool's threads and the caller, and returns when all have; its result is the
 * first nonzero return of the lowest-numbered failing task, or 0. A task's work must be
 * fixed by its index (never by the thread that runs it): results then never depend on
 * timing. At most 64 tasks are spread over the threads (more run on the caller). One
 * region runs at a time; a caller that finds the pool busy runs its tasks itself, in
 * order. */
enum { FNN_MAX_THREADS = 64 };
typedef int (*fnn_task_fn)(void *ctx, int task);
int fnn_pool_run(fnn_task_fn fn, void *ctx, int n_tasks);
/* Threads a region uses, the caller included (1..FNN_MAX_THREADS; default: the CPUs this
 * process may run on). Returns 0, or -1 for n out of range. */
int fnn_pool_set_threads(int n);
int fnn_pool_threads(void);
int fnn_pool_cpu_count(void);

/* Data parallelism (csrc/parallel.c): prepares n_threads copies of a laid-out, bound
 * plan, each over its own buffers for max_batch / n_threads rows, which training steps
 * and predict split their rows between when the work is large enough: each copy runs
 * forward and backward on its rows with fastnn's own kernels, the weight gradients are
 * summed in a fixed order and the optimizer update is split by parameter ranges, so that
 * a given thread count gives the same results on every run. Plans too small to gain get
 * none. Returns the copies made (0 or n_threads), or -1 when memory ran out. */
int fnn_plan_set_threads(fnn_plan *p, int n_threads);
/* 1 if a training step (training) or a predict of `rows` rows is split between the plan's
 * copies now (the rule in csrc/parallel.c), else 0. */
int fnn_plan_splits(const fnn_plan *p, int64_t rows, int training);
/* Frees a plan's copies (p->shards = NULL). */
void fnn_plan_free_threads(fnn_plan *p);
/* The work (floating-point operations) from which a call is split between threads; a
 * negative flop only reads it. Returns the previous value. Plans read it when their
 * copies are made (fnn_plan_set_threads) and on every call. */
double fnn_parallel_min_flop(double flop);
/* Floating-point operations of one row's forward (an estimate: dense layers' products). */
double fnn_plan_flop_per_row(const fnn_plan *p);

/* 1 if none of the n values is NaN or Inf. */
int fnn_all_finite(const float *x, size_t n);

/* Fisher-Yates shuffle of perm[0..n) driven by a 64-bit seed (splitmix64). */
void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state);

#endif
