/* dense.c - the dense layer: Y = act(X.W + b), forward and backward side by side.
 *
 * Two paths. Narrow layers (units <= 16, the article model's) run register-blocked
 * kernels: W is packed into a zero-padded (n_in x 16) panel, four rows of Y are
 * accumulated in registers, and the bias and the stores are fused into the same
 * pass (a BLAS call would cost more than this arithmetic). Wider layers call the
 * GEMM (a BLAS or the portable kernel) and fuse the rest into one pass over its
 * output: the bias is written before the GEMM accumulates (beta = 1), the
 * activation runs over the rows just produced; backward turns dL/dy into dL/dz in
 * place and sums its columns into the bias gradient.
 *
 * Row strides: ldx, ldy, ldgx are the row strides of X, Y (and dL/dY) and dL/dX.
 * The narrow path needs ldy >= 16 (it reads and writes 16 columns per row; the
 * padding columns carry values nobody reads). */
#include <string.h>

#include "fastnn.h"

enum { P = FNN_NARROW }; /* panel width of the narrow path */

static fnn_sgemm_fn pick(fnn_sgemm_fn gemm) { return gemm ? gemm : fnn_sgemm_portable; }

static int narrow(int64_t n_out, int64_t ldy, const float *scratch)
{
    return scratch && n_out <= P && ldy >= P;
}

size_t fnn_dense_scratch(int64_t n_in, int64_t n_out)
{
    const int64_t in_pad = (n_in + P - 1) / P * P;
    const int64_t a = n_in * P, b = n_out * in_pad;
    return (size_t)(a > b ? a : b) + P;
}

/* wp (n_in x P) = W (n_in x n_out) zero-padded; bp (P) = b zero-padded */
static void pack_w(const float *w, const float *b, float *wp, float *bp, int64_t n_in, int64_t n_out)
{
    for (int64_t k = 0; k < n_in; k++)
        for (int64_t j = 0; j < P; j++) wp[k * P + j] = j < n_out ? w[k * n_out + j] : 0.0f;
    for (int64_t j = 0; j < P; j++) bp[j] = (b && j < n_out) ? b[j] : 0.0f;
}

/* Y[i, 0:P] = bp + X[i, :] . wp for all n rows, four rows at a time in registers. */
FNN_CLONES
static void forward_narrow(const float *restrict x, int64_t ldx, const float *restrict wp,
                           const float *restrict bp, float *restrict y, int64_t ldy, int64_t n,
                           int64_t n_in)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float a0[P], a1[P], a2[P], a3[P];
        for (int j = 0; j < P; j++) a0[j] = a1[j] = a2[j] = a3[j] = bp[j];
        const float *x0 = x + i * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        for (int64_t k = 0; k < n_in; k++) {
            const float *wk = wp + k * P;
            const float v0 = x0[k], v1 = x1[k], v2 = x2[k], v3 = x3[k];
            for (int j = 0; j < P; j++) {
                a0[j] += v0 * wk[j];
                a1[j] += v1 * wk[j];
                a2[j] += v2 * wk[j];
                a3[j] += v3 * wk[j];
            }
        }
        float *y0 = y + i * ldy;
        for (int j = 0; j < P; j++) {
            y0[j] = a0[j];
            y0[ldy + j] = a1[j];
            y0[2 * ldy + j] = a2[j];
            y0[3 * ldy + j] = a3[j];
        }
    }
    for (; i < n; i++) {
        float a[P];
        for (int j = 0; j < P; j++) a[j] = bp[j];
        const float *xi = x + i * ldx;
        for (int64_t k = 0; k < n_in; k++)
            for (int j = 0; j < P; j++) a[j] += xi[k] * wp[k * P + j];
        for (int j = 0; j < P; j++) y[i * ldy + j] = a[j];
    }
}

void fnn_dense_forward(const float *x, int64_t ldx, const float *w, const float *b, float *y,
                       int64_t ldy, int64_t n, int64_t n_in, int64_t n_out, int act,
                       fnn_sgemm_fn gemm, float *scratch)
{
    if (narrow(n_out, ldy, scratch)) {
        float *wp = scratch, *bp = scratch + n_in * P;
        pack_w(w, b, wp, bp, n_in, n_out);
        forward_narrow(x, ldx, wp, bp, y, ldy, n, n_in);
    } else {
        if (b)
            for (int64_t i = 0; i < n; i++) memcpy(y + i * ldy, b, (size_t)n_out * sizeof(float));
        /* Y = X.W (+ Y, holding the bias) */
        pick(gemm)(0, 0, n, n_out, n_in, 1.0f, x, ldx, w, n_out, b ? 1.0f : 0.0f, y, ldy);
    }
    /* one pass over the rows and the padding between them (ours, never read) */
    if (n > 0) fnn_act_forward(act, y, (size_t)((n - 1) * ldy + n_out));
}

/* gw (n_in x n_out) = X^T . dz, four input features at a time: each pass reads
 * dz's rows (P wide) once and keeps four rows of gw in registers. */
FNN_CLONES
static void weight_grad_narrow(const float *restrict x, int64_t ldx, const float *restrict dz,
                               int64_t ldz, float *restrict gw, int64_t n, int64_t n_in,
                               int64_t n_out)
{
    int64_t k = 0;
    for (; k + 4 <= n_in; k += 4) {
        float a0[P] = {0}, a1[P] = {0}, a2[P] = {0}, a3[P] = {0};
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ldx + k, *di = dz + i * ldz;
            const float v0 = xi[0], v1 = xi[1], v2 = xi[2], v3 = xi[3];
            for (int j = 0; j < P; j++) {
                a0[j] += v0 * di[j];
                a1[j] += v1 * di[j];
                a2[j] += v2 * di[j];
                a3[j] += v3 * di[j];
            }
        }
        for (int64_t j = 0; j < n_out; j++) {
            gw[k * n_out + j] = a0[j];
            gw[(k + 1) * n_out + j] = a1[j];
            gw[(k + 2) * n_out + j] = a2[j];
            gw[(k + 3) * n_out + j] = a3[j];
        }
    }
    for (; k < n_in; k++) {
        float a[P] = {0};
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < P; j++) a[j] += x[i * ldx + k] * dz[i * ldz + j];
        for (int64_t j = 0; j < n_out; j++) gw[k * n_out + j] = a[j];
    }
}

/* gx[i, 0:P] = dz[i, 0:n_out] . wt, wt = W^T zero-padded to (n_out x P); n_in <= P */
FNN_CLONES
static void input_grad_narrow(const float *restrict dz, int64_t ldz, const float *restrict wt,
                              float *restrict gx, int64_t ldgx, int64_t n, int64_t n_out)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float a0[P] = {0}, a1[P] = {0}, a2[P] = {0}, a3[P] = {0};
        const float *d0 = dz + i * ldz, *d1 = d0 + ldz, *d2 = d1 + ldz, *d3 = d2 + ldz;
        for (int64_t j = 0; j < n_out; j++) {
            const float *wj = wt + j * P;
            const float v0 = d0[j], v1 = d1[j], v2 = d2[j], v3 = d3[j];
            for (int c = 0; c < P; c++) {
                a0[c] += v0 * wj[c];
                a1[c] += v1 * wj[c];
                a2[c] += v2 * wj[c];
                a3[c] += v3 * wj[c];
            }
        }
        float *g0 = gx + i * ldgx;
        for (int c = 0; c < P; c++) {
            g0[c] = a0[c];
            g0[ldgx + c] = a1[c];
            g0[2 * ldgx + c] = a2[c];
            g0[3 * ldgx + c] = a3[c];
        }
    }
    for (; i < n; i++) {
        float a[P] = {0};
        for (int64_t j = 0; j < n_out; j++)
            for (int c = 0; c < P; c++) a[c] += dz[i * ldz + j] * wt[j * P + c];
        for (int c = 0; c < P; c++) gx[i * ldgx + c] = a[c];
    }
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
    if (n > 0) /* gy := dL/dz, over the rows and the padding between them */
        fnn_act_backward(act, y, gy, (size_t)((n - 1) * ldy + n_out));
    if (gb) column_sums(gy, ldy, gb, n, n_out); /* db = sum_rows dz */
    if (narrow(n_out, ldy, scratch)) {
        weight_grad_narrow(x, ldx, gy, ldy, gw, n, n_in, n_out);
        if (!gx) return;
        if (n_in <= P && ldgx >= P) {
            float *wt = scratch; /* W^T, zero-padded to (n_out x P) */
            for (int64_t j = 0; j < n_out; j++)
                for (int64_t c = 0; c < P; c++) wt[j * P + c] = c < n_in ? w[c * n_out + j] : 0.0f;
            input_grad_narrow(gy, ldy, wt, gx, ldgx, n, n_out);
        } else {
            /* dX = dz . W^T as rows of W^T (n_out x n_in) scaled and added: the long axis inside */
            float *wt = scratch;
            for (int64_t j = 0; j < n_out; j++)
                for (int64_t c = 0; c < n_in; c++) wt[j * n_in + c] = w[c * n_out + j];
            fnn_sgemm_portable(0, 0, n, n_in, n_out, 1.0f, gy, ldy, wt, n_in, 0.0f, gx, ldgx);
        }
        return;
    }
    fnn_sgemm_fn mm = pick(gemm);
    mm(1, 0, n_in, n_out, n, 1.0f, x, ldx, gy, ldy, 0.0f, gw, n_out); /* dW = X^T . dz */
    if (gx) mm(0, 1, n, n_in, n_out, 1.0f, gy, ldy, w, n_out, 0.0f, gx, ldgx); /* dX = dz . W^T */
}
