/* dense.c - the dense layer: Y = act(X.W + b), forward and backward side by side.
 *
 * Two paths. Narrow layers (units <= 16, the article model's) run the register-
 * blocked kernels of narrow.c: W is packed into a zero-padded (n_in x 16) panel,
 * the bias rides in the accumulators' initial values (a BLAS call would cost more
 * than this arithmetic). Wider layers call the
 * GEMM (a BLAS or the portable kernel) and fuse the rest into one pass over its
 * output: the bias is written before the GEMM accumulates (beta = 1), the
 * activation runs over the rows just produced; backward turns dL/dy into dL/dz in
 * place and sums its columns into the bias gradient.
 *
 * Row strides: ldx, ldy, ldgx are the row strides of X, Y (and dL/dY) and dL/dX.
 * The narrow path needs ldy >= 16 (it reads and writes 16 columns per row; the
 * padding columns carry values nobody reads). */
#include <string.h>

#include "narrow.h"

enum { P = FNN_NARROW }; /* panel width of the narrow path */

static fnn_sgemm_fn pick(fnn_sgemm_fn gemm) { return gemm ? gemm : fnn_sgemm_portable; }

static int narrow(int64_t n_out, int64_t ldy, const float *scratch)
{
    return scratch && n_out <= P && ldy >= P;
}

/* one unit over rows of at most 16 inputs stored >= 16 apart: the dot kernels */
static int single(int64_t n_in, int64_t n_out, int64_t ldx, int64_t ldy, const float *scratch)
{
    return fnn_narrow.single_forward && narrow(n_out, ldy, scratch) && n_out == 1 && n_in <= P &&
           ldx >= P;
}

size_t fnn_dense_scratch(int64_t n_in, int64_t n_out)
{
    const int64_t in_pad = (n_in + P - 1) / P * P;
    const int64_t a = n_in * P, b = n_out * in_pad;
    return (size_t)(a > b ? a : b) + P;
}

void fnn_dense_forward(const float *x, int64_t ldx, const float *w, const float *b, float *y,
                       int64_t ldy, int64_t n, int64_t n_in, int64_t n_out, int act,
                       fnn_sgemm_fn gemm, float *scratch)
{
    if (single(n_in, n_out, ldx, ldy, scratch)) {
        fnn_narrow.single_forward(x, ldx, w, b, y, ldy, n, n_in);
    } else if (narrow(n_out, ldy, scratch)) {
        float *wp = scratch, *bp = scratch + n_in * P;
        fnn_narrow.pack(w, b, wp, bp, n_in, n_out);
        fnn_narrow.forward(x, ldx, wp, bp, y, ldy, n, n_in, act == FNN_ACT_RELU);
        if (act == FNN_ACT_RELU) return; /* applied on the way out of the kernel */
    } else {
        if (b)
            for (int64_t i = 0; i < n; i++) memcpy(y + i * ldy, b, (size_t)n_out * sizeof(float));
        /* Y = X.W (+ Y, holding the bias) */
        pick(gemm)(0, 0, n, n_out, n_in, 1.0f, x, ldx, w, n_out, b ? 1.0f : 0.0f, y, ldy);
    }
    /* one pass over the rows and the padding between them (ours, never read) */
    if (n > 0) fnn_act_forward(act, y, (size_t)((n - 1) * ldy + n_out));
}

FNN_CLONES
static void column_sums(const float *restrict g, int64_t ldg, float *restrict out, int64_t n,
                        int64_t m)
{
    memset(out, 0, (size_t)m * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) out[j] += g[i * ldg + j];
}

void fnn_dense_backward(const float *x, int64_t ldx, const float *w, const float *y, float *gy,
                        int64_t ldy, float *gx, int64_t ldgx, float *gw, float *gb, int64_t n,
                        int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm, float *scratch)
{
    const int single_path = single(n_in, n_out, ldx, ldy, scratch) && (!gx || ldgx >= P);
    const int narrow_path = !single_path && narrow(n_out, ldy, scratch);
    /* gy := dL/dz, over the rows and the padding between them; the narrow weight-gradient
     * kernels apply relu' on the fly instead of in a pass of its own */
    const int fused_relu = narrow_path && act == FNN_ACT_RELU;
    if (n > 0 && !fused_relu) fnn_act_backward(act, y, gy, (size_t)((n - 1) * ldy + n_out));
    if (single_path) {
        fnn_narrow.single_backward(x, ldx, w, gy, ldy, gx, ldgx, gw, gb, n, n_in);
        return;
    }
    if (narrow_path) {
        fnn_narrow.weight_grad(x, ldx, gy, ldy, gw, gb, n, n_in, n_out,
                               fused_relu ? y : NULL); /* and db (and relu') */
        if (!gx) return;
        if (n_in <= P && ldgx >= P) {
            float *wt = scratch; /* W^T, zero-padded to (n_out x P) */
            for (int64_t j = 0; j < n_out; j++)
                for (int64_t c = 0; c < P; c++) wt[j * P + c] = c < n_in ? w[c * n_out + j] : 0.0f;
            static const float no_bias[P] = {0};
            fnn_narrow.forward(gy, ldy, wt, no_bias, gx, ldgx, n, n_out, 0); /* dX = dz.W^T */
        } else {
            /* dX = dz . W^T as rows of W^T (n_out x n_in) scaled and added: the long axis inside */
            float *wt = scratch;
            for (int64_t j = 0; j < n_out; j++)
                for (int64_t c = 0; c < n_in; c++) wt[j * n_in + c] = w[c * n_out + j];
            fnn_sgemm_portable(0, 0, n, n_in, n_out, 1.0f, gy, ldy, wt, n_in, 0.0f, gx, ldgx);
        }
        return;
    }
    if (gb) column_sums(gy, ldy, gb, n, n_out); /* db = sum_rows dz */
    fnn_sgemm_fn mm = pick(gemm);
    mm(1, 0, n_in, n_out, n, 1.0f, x, ldx, gy, ldy, 0.0f, gw, n_out); /* dW = X^T . dz */
    if (gx) mm(0, 1, n, n_in, n_out, 1.0f, gy, ldy, w, n_out, 0.0f, gx, ldgx); /* dX = dz . W^T */
}
