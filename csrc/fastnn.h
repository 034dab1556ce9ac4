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
 * gb), gx = dz . W^T (if gx, stride ldgx). */
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

/* ---- the engine: a chain of dense layers, trained an epoch per call -------- */
enum { FNN_LAYER_DENSE = 0, FNN_LAYER_ACTIVATION = 1, FNN_LAYER_DROPOUT = 2 };

typedef struct {
    int kind;             /* FNN_LAYER_*: activation and dropout layers have n_in == n_out
                             and no weights */
    int64_t n_in, n_out;
    int act;
    int use_bias;
    int64_t w_off, b_off; /* offsets into the flat parameter (and gradient) buffer */
    fnn_sgemm_fn gemm;    /* NULL = own loops; chosen per layer at compile time   */
    float rate;           /* dropout: the fraction of units zeroed while training  */
} fnn_layer;

typedef struct {
    int n_layers;
    const fnn_layer *layers;
    float *params, *grads;
    int64_t n_params;
    int loss;
    int max_batch;
    float *const *acts;   /* acts[0]: gathered input rows, acts[l+1]: layer l's output */
    float *const *deltas; /* deltas[l+1]: dL/d(output of layer l) */
    const int64_t *ld;    /* ld[l]: row stride of acts[l] and deltas[l]; ld[0] = n_in */
    float *target;        /* gathered targets, max_batch x target_width */
    int64_t target_width;
    float *scratch;       /* max over layers of fnn_dense_scratch() floats */
    uint64_t *dropout_state; /* advanced once a training step; seeds each dropout mask */
    uint64_t *mask_seeds;    /* per layer: the seed of this step's mask (backward redraws it) */
} fnn_net;

enum { FNN_MAX_METRICS = 4 };
enum { FNN_METRIC_MSE = 0, FNN_METRIC_MAE = 1, FNN_METRIC_ACCURACY = 2 };

typedef struct {
    double loss_sum; /* sum of batch loss * batch rows */
    double metric_sum[FNN_MAX_METRICS];
    int64_t rows;
} fnn_totals;

/* Forward of rows [x, x + n*n_in) through the net, in chunks of max_batch; out (n x n_out_last). */
void fnn_net_predict(const fnn_net *net, const float *x, int64_t n, float *out);

/* One epoch: batches in the order of perm (n indices into x and y rows; NULL =
 * 0..n-1), each gathered, forward, loss, backward, optimizer step. Adds to *tot
 * the loss (and metrics on the pre-update predictions, as Keras does).
 * Returns 0, or 1 if a loss became non-finite (stops early). */
int fnn_net_train_epoch(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                        const int64_t *perm, int64_t n, int batch, const int *metrics,
                        int n_metrics, fnn_totals *tot);

/* `epochs` epochs in one call, each preceded by a shuffle of perm when
 * shuffle_state is given (the same sequence as fnn_shuffle calls between
 * fnn_net_train_epoch calls). per_epoch[e] receives epoch e's totals (zeroed by
 * the caller). Returns the epochs run: fewer than asked if a loss became non-finite. */
int fnn_net_train(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                  int64_t *perm, uint64_t *shuffle_state, int64_t n, int batch, int epochs,
                  const int *metrics, int n_metrics, fnn_totals *per_epoch);

/* Loss and metrics over (x, y) without updating; adds to *tot. */
void fnn_net_evaluate(const fnn_net *net, const float *x, const float *y, int64_t n, int batch,
                      const int *metrics, int n_metrics, fnn_totals *tot);

/* 1 if none of the n values is NaN or Inf. */
int fnn_all_finite(const float *x, size_t n);

/* Fisher-Yates shuffle of perm[0..n) driven by a 64-bit seed (splitmix64). */
void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state);

#endif
