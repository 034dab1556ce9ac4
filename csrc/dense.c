/* dense.c - the dense layer: Y = act(X.W + b), forward and backward side by side.
 * Everything around the GEMM is fused into one pass over its output: the bias
 * is written before the GEMM accumulates (beta = 1), the activation runs over
 * the rows just produced; backward turns dL/dy into dL/dz in place and sums
 * its columns into the bias gradient. */
#include <string.h>

#include "fastnn.h"

static fnn_sgemm_fn pick(fnn_sgemm_fn gemm) { return gemm ? gemm : fnn_sgemm_portable; }

void fnn_dense_forward(const float *x, const float *w, const float *b, float *y, int64_t n,
                       int64_t n_in, int64_t n_out, int act, fnn_sgemm_fn gemm)
{
    if (b)
        for (int64_t i = 0; i < n; i++) memcpy(y + i * n_out, b, (size_t)n_out * sizeof(float));
    /* Y = X.W (+ Y, holding the bias) */
    pick(gemm)(0, 0, n, n_out, n_in, 1.0f, x, n_in, w, n_out, b ? 1.0f : 0.0f, y, n_out);
    fnn_act_forward(act, y, (size_t)(n * n_out));
}

FNN_CLONES
static void column_sums(const float *restrict g, float *restrict out, int64_t n, int64_t m)
{
    memset(out, 0, (size_t)m * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++) out[j] += g[i * m + j];
}

void fnn_dense_backward(const float *x, const float *w, const float *y, float *gy, float *gx,
                        float *gw, float *gb, int64_t n, int64_t n_in, int64_t n_out, int act,
                        fnn_sgemm_fn gemm)
{
    fnn_sgemm_fn mm = pick(gemm);
    fnn_act_backward(act, y, gy, (size_t)(n * n_out)); /* gy := dL/dz */
    if (gb) column_sums(gy, gb, n, n_out);             /* db = sum_rows dz */
    mm(1, 0, n_in, n_out, n, 1.0f, x, n_in, gy, n_out, 0.0f, gw, n_out); /* dW = X^T . dz */
    if (gx) mm(0, 1, n, n_in, n_out, 1.0f, gy, n_out, w, n_out, 0.0f, gx, n_in); /* dX = dz . W^T */
}
