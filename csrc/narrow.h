/* narrow.h - the narrow-layer kernels (narrow.c), shared by dense.c only. */
#ifndef FASTNN_NARROW_H
#define FASTNN_NARROW_H

#include "dispatch.h"
#include "fastnn.h"

typedef struct {
    /* wp (n_in x 16) = W (n_in x n_out, rows ldw apart) zero-padded; bp (16) = b
     * zero-padded (zeros if b is NULL) */
    void (*pack)(const float *w, int64_t ldw, const float *b, float *wp, float *bp,
                 int64_t n_in, int64_t n_out);
    /* Y[i, 0:16] = bp + X[i, :] . wp, then max(., 0) if relu (NaN kept); wp (n_in x
     * 16), rows of Y ldy >= 16 apart. Also the input gradient: dX[i, 0:16] =
     * 0 + dz[i, 0:n_out] . (W^T padded). */
    void (*forward)(const float *x, int64_t ldx, const float *wp, const float *bp, float *y,
                    int64_t ldy, int64_t n, int64_t n_in, int relu);
    /* gw (n_in x n_out, rows ldgw apart) = X^T . dz and, if gb, gb = column sums of
     * dz; dz rows ldz >= 16 apart. If relu_y (the layer's relu output, same strides),
     * dz is first multiplied by relu'(y) = [y > 0] in place. */
    void (*weight_grad)(const float *x, int64_t ldx, float *dz, int64_t ldz, float *gw,
                        int64_t ldgw, float *gb, int64_t n, int64_t n_in, int64_t n_out,
                        const float *relu_y);
    /* One unit (n_out == 1) over n_in <= 16 inputs whose rows are >= 16 apart (NULL
     * when the set has none): y[i] = b + X[i, :] . w, and its backward (gx rows
     * >= 16 apart, if gx; gb if gb). */
    void (*single_forward)(const float *x, int64_t ldx, const float *w, const float *b,
                           float *y, int64_t ldy, int64_t n, int64_t n_in);
    void (*single_backward)(const float *x, int64_t ldx, const float *w, const float *dz,
                            int64_t ldz, float *gx, int64_t ldgx, float *gw, float *gb,
                            int64_t n, int64_t n_in);
    /* wt (n x 16) = the first `rows` (<= 16) rows of W (rows ldw apart, n columns)
     * transposed, zero-padded to 16: wt[j * 16 + q] = W[q, j] (a panel of W^T) */
    void (*pack_t)(const float *w, int64_t ldw, float *wt, int64_t rows, int64_t n);
    const char *name;
} fnn_narrow_kernels;

extern fnn_narrow_kernels fnn_narrow;

#endif
