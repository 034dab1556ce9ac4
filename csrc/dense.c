/* dense.c - the dense layer: Y = act(X.W + b), forward and backward side by side.
 *
 * Without a BLAS, every layer runs the register-blocked kernels of narrow.c one
 * panel of 16 output columns at a time: W's panel is packed zero-padded (n_in x 16),
 * the bias rides in the accumulators' initial values and relu in their stores;
 * backward sums dz's columns into the bias gradient and applies relu' inside the
 * weight-gradient pass, and dX = dz.W^T is the forward kernel through panels of W^T.
 * A layer of at most 16 units is one panel (a BLAS call would cost more than this
 * arithmetic); one unit over padded rows takes the dot kernels.
 *
 * With a BLAS (gemm != NULL, chosen per layer by the caller), the GEMM does the
 * products and the rest is fused around it: the bias is written before the GEMM
 * accumulates (beta = 1), the activation runs in one pass over its output.
 *
 * Row strides: ldx, ldy, ldgx are the row strides of X, Y (and dL/dY) and dL/dX.
 * The panel path needs scratch and ldy (and ldgx) of at least the width rounded up
 * to 16: it reads and writes whole panels, whose padding columns nobody reads. */
#include <string.h>

#include "narrow.h"

enum { P = FNN_NARROW }; /* panel width */

static int64_t pad(int64_t width) { return (width + P - 1) / P * P; }

static int panels(int64_t n_out, int64_t ldy, fnn_sgemm_fn gemm, const float *scratch)
{
    return !gemm && scratch && ldy >= pad(n_out);
}

/* one unit over rows of at most 16 inputs stored >= 16 apart: the dot kernels */
static int single(int64_t n_in, int64_t n_out, int64_t ldx, int64_t ldy, const float *scratch)
{
    return fnn_narrow.single_forward && scratch && n_out == 1 && ldy >= P && n_in <= P &&
           ldx >= P;
}

size_t fnn_dense_scratch(int64_t n_in, int64_t n_out)
{
    /* a packed panel of W (n_in x 16) and its bias, or of W^T (n_out x 16) */
    return (size_t)((n_in > n_out ? n_in : n_out) * P + P);
}

/* ---- packed panels ------------------------------------------------------------------ */
/* W's panels (n_in x 16 each, then its 16 bias values) one after the other, then, with_t,
 * W^T's (n_out x 16 each): what the panel path packs on every call, packed once for
 * several calls (each thread of a parallel step packs once a step, csrc/parallel.c). */
static int64_t w_panels(int64_t n_out) { return pad(n_out) / P; }

int64_t fnn_dense_packed_panels(int64_t n_in, int64_t n_out, int with_t)
{
    return w_panels(n_out) + (with_t ? pad(n_in) / P : 0);
}

size_t fnn_dense_packed_size(int64_t n_in, int64_t n_out, int with_t)
{
    return (size_t)(w_panels(n_out) * (n_in * P + P) + (with_t ? pad(n_in) / P * n_out * P : 0));
}

/* W^T's panel of columns c .. c + 16 of dL/dX: rows c .. c + 16 of W, transposed */
static void pack_t(const float *w, int64_t n_in, int64_t n_out, int64_t c, float *wt)
{
    fnn_narrow.pack_t(w + c * n_out, n_out, wt, n_in - c < P ? n_in - c : P, n_out);
}

void fnn_dense_pack_panel(const float *w, const float *b, int64_t n_in, int64_t n_out,
                          float *packed, int64_t i)
{
    const int64_t nw = w_panels(n_out);
    if (i < nw) {
        const int64_t j = i * P, width = n_out - j < P ? n_out - j : P;
        float *wp = packed + i * (n_in * P + P);
        fnn_narrow.pack(w + j, n_out, b ? b + j : NULL, wp, wp + n_in * P, n_in, width);
    } else {
        pack_t(w, n_in, n_out, (i - nw) * P, packed + nw * (n_in * P + P) + (i - nw) * n_out * P);
    }
}

void fnn_dense_forward(const float *x, int64_t ldx, const float *w, const float *b, float *y,
                       int64_t ldy, int64_t n, int64_t n_in, int64_t n_out, int act,
                       fnn_sgemm_fn gemm, float *scratch)
{
    fnn_dense_forward_packed(x, ldx, w, b, NULL, y, ldy, n, n_in, n_out, act, gemm, scratch);
}

void fnn_dense_forward_packed(const float *x, int64_t ldx, const float *w, const float *b,
                              const float *packed, float *y, int64_t ldy, int64_t n,
                              int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm,
                              float *scratch)
{
    if (single(n_in, n_out, ldx, ldy, scratch)) {
        fnn_narrow.single_forward(x, ldx, w, b, y, ldy, n, n_in);
    } else if (panels(n_out, ldy, gemm, scratch)) {
        for (int64_t j = 0; j < n_out; j += P) {
            const int64_t width = n_out - j < P ? n_out - j : P;
            const float *wp = scratch;
            if (packed)
                wp = packed + j / P * (n_in * P + P);
            else
                fnn_narrow.pack(w + j, n_out, b ? b + j : NULL, scratch, scratch + n_in * P,
                                n_in, width);
            const float *bp = wp + n_in * P;
            fnn_narrow.forward(x, ldx, wp, bp, y + j, ldy, n, n_in, act == FNN_ACT_RELU);
        }
        if (act == FNN_ACT_RELU) return; /* applied on the way out of the kernel */
    } else {
        if (b)
            for (int64_t i = 0; i < n; i++) memcpy(y + i * ldy, b, (size_t)n_out * sizeof(float));
        /* Y = X.W (+ Y, holding the bias) */
        (gemm ? gemm : fnn_sgemm_portable)(0, 0, n, n_out, n_in, 1.0f, x, ldx, w, n_out,
                                           b ? 1.0f : 0.0f, y, ldy);
    }
    fnn_act_forward(act, y, ldy, n, n_out);
}

FNN_CLONES
static void add_row(float *restrict sum, const float *restrict row, int64_t m)
{
    for (int64_t j = 0; j < m; j++) sum[j] += row[j];
}

/* gy := dL/dz = gy * act'(y) and, if gb, gb = column sums of dz: one pass over the rows,
 * each summed while it is still in L1 */
static void act_backward_and_bias_grad(int act, const float *y, float *gy, int64_t ldy,
                                       float *gb, int64_t n, int64_t n_out)
{
    if (!gb) {
        fnn_act_backward(act, y, gy, ldy, n, n_out);
        return;
    }
    memset(gb, 0, (size_t)n_out * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        fnn_act_backward(act, y + i * ldy, gy + i * ldy, ldy, 1, n_out);
        add_row(gb, gy + i * ldy, n_out);
    }
}

/* gx = dz . W^T, panel by panel of gx's columns: each panel of W^T (n_out x 16,
 * zero-padded) is packed and run through the forward kernel with no bias. */
static void input_grad_panels(const float *dz, int64_t ldz, const float *w, float *gx,
                              int64_t ldgx, int64_t n, int64_t n_in, int64_t n_out,
                              float *scratch, const float *packed_t)
{
    static const float no_bias[P] = {0};
    for (int64_t c = 0; c < n_in; c += P) {
        const float *wt = packed_t ? packed_t + c / P * n_out * P : scratch;
        if (!packed_t) pack_t(w, n_in, n_out, c, scratch);
        fnn_narrow.forward(dz, ldz, wt, no_bias, gx + c, ldgx, n, n_out, 0);
    }
}

void fnn_dense_backward(const float *x, int64_t ldx, const float *w, const float *y, float *gy,
                        int64_t ldy, float *gx, int64_t ldgx, float *gw, float *gb, int64_t n,
                        int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm, float *scratch)
{
    fnn_dense_backward_packed(x, ldx, w, NULL, y, gy, ldy, gx, ldgx, gw, gb, n, n_in, n_out, act,
                              gemm, scratch);
}

void fnn_dense_backward_packed(const float *x, int64_t ldx, const float *w, const float *packed,
                               const float *y, float *gy, int64_t ldy, float *gx, int64_t ldgx,
                               float *gw, float *gb, int64_t n, int64_t n_in, int64_t n_out,
                               int act, fnn_sgemm_fn gemm, float *scratch)
{
    /* W^T's panels follow W's in a packing made with_t */
    const float *packed_t = packed ? packed + w_panels(n_out) * (n_in * P + P) : NULL;
    if (!gw) { /* frozen weights: dL/dz, then only dL/dX */
        fnn_act_backward(act, y, gy, ldy, n, n_out);
        if (!gx) return;
        if (panels(n_out, ldy, gemm, scratch) && ldgx >= pad(n_in))
            input_grad_panels(gy, ldy, w, gx, ldgx, n, n_in, n_out, scratch, packed_t);
        else
            (gemm ? gemm : fnn_sgemm_portable)(0, 1, n, n_in, n_out, 1.0f, gy, ldy, w, n_out,
                                               0.0f, gx, ldgx);
        return;
    }
    if (single(n_in, n_out, ldx, ldy, scratch) && (!gx || ldgx >= P)) {
        fnn_act_backward(act, y, gy, ldy, n, n_out);
        fnn_narrow.single_backward(x, ldx, w, gy, ldy, gx, ldgx, gw, gb, n, n_in);
        return;
    }
    if (!panels(n_out, ldy, gemm, scratch) || (gx && ldgx < pad(n_in))) { /* the GEMM */
        act_backward_and_bias_grad(act, y, gy, ldy, gb, n, n_out);
        fnn_sgemm_fn mm = gemm ? gemm : fnn_sgemm_portable;
        mm(1, 0, n_in, n_out, n, 1.0f, x, ldx, gy, ldy, 0.0f, gw, n_out); /* dW = X^T . dz */
        if (gx) mm(0, 1, n, n_in, n_out, 1.0f, gy, ldy, w, n_out, 0.0f, gx, ldgx); /* dz . W^T */
        return;
    }
    /* the panel kernels apply relu' inside the weight-gradient pass; other activations'
     * derivatives take a pass over the rows and the padding between them */
    const int fused_relu = act == FNN_ACT_RELU;
    if (!fused_relu) fnn_act_backward(act, y, gy, ldy, n, n_out);
    for (int64_t j = 0; j < n_out; j += P) { /* dW and db (and relu'), a panel at a time */
        const int64_t width = n_out - j < P ? n_out - j : P;
        fnn_narrow.weight_grad(x, ldx, gy + j, ldy, gw + j, n_out, gb ? gb + j : NULL, n, n_in,
                               width, fused_relu ? y + j : NULL);
    }
    if (gx) input_grad_panels(gy, ldy, w, gx, ldgx, n, n_in, n_out, scratch, packed_t);
}
