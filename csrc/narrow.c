/* narrow.c - register-blocked kernels for layers of at most 16 units.
 *
 * W arrives packed as a zero-padded (n_in x 16) panel (or W^T as (n_out x 16)),
 * rows of Y and dL/dZ are 16 floats apart, so every row is exactly two 8-float
 * vectors. Each kernel exists twice: AVX2+FMA intrinsics (four rows in eight ymm
 * accumulators that stay in registers) and a plain-C baseline for any x86-64 or
 * other CPU. fnn_narrow_select() picks one set at start-up. */
#include <string.h>

#include "narrow.h"

enum { P = FNN_NARROW };

/* ---- baseline: plain loops over 16-float rows --------------------------------- */

static void pack_base(const float *restrict w, const float *restrict b, float *restrict wp,
                      float *restrict bp, int64_t n_in, int64_t n_out)
{
    for (int64_t k = 0; k < n_in; k++)
        for (int64_t j = 0; j < P; j++) wp[k * P + j] = j < n_out ? w[k * n_out + j] : 0.0f;
    for (int64_t j = 0; j < P; j++) bp[j] = (b && j < n_out) ? b[j] : 0.0f;
}

static void forward_base(const float *restrict x, int64_t ldx, const float *restrict wp,
                         const float *restrict bp, float *restrict y, int64_t ldy, int64_t n,
                         int64_t n_in)
{
    for (int64_t i = 0; i < n; i++) {
        float a[P];
        for (int j = 0; j < P; j++) a[j] = bp[j];
        for (int64_t k = 0; k < n_in; k++) {
            const float v = x[i * ldx + k];
            for (int j = 0; j < P; j++) a[j] += v * wp[k * P + j];
        }
        for (int j = 0; j < P; j++) y[i * ldy + j] = a[j];
    }
}

static void weight_grad_base(const float *restrict x, int64_t ldx, const float *restrict dz,
                             int64_t ldz, float *restrict gw, float *restrict gb, int64_t n,
                             int64_t n_in, int64_t n_out)
{
    if (gb) {
        float a[P] = {0};
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < P; j++) a[j] += dz[i * ldz + j];
        for (int64_t j = 0; j < n_out; j++) gb[j] = a[j];
    }
    for (int64_t k = 0; k < n_in; k++) {
        float a[P] = {0};
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i * ldx + k];
            for (int j = 0; j < P; j++) a[j] += v * dz[i * ldz + j];
        }
        for (int64_t j = 0; j < n_out; j++) gw[k * n_out + j] = a[j];
    }
}

static void input_grad_base(const float *restrict dz, int64_t ldz, const float *restrict wt,
                            float *restrict gx, int64_t ldgx, int64_t n, int64_t n_out)
{
    for (int64_t i = 0; i < n; i++) {
        float a[P] = {0};
        for (int64_t j = 0; j < n_out; j++) {
            const float v = dz[i * ldz + j];
            for (int c = 0; c < P; c++) a[c] += v * wt[j * P + c];
        }
        for (int c = 0; c < P; c++) gx[i * ldgx + c] = a[c];
    }
}

/* ---- AVX2 + FMA ------------------------------------------------------------------- */
#if FNN_HAVE_X86_DISPATCH
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void forward_avx2(const float *x, int64_t ldx, const float *wp, const float *bp,
                              float *y, int64_t ldy, int64_t n, int64_t n_in)
{
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256 a00 = b0, a01 = b1, a10 = b0, a11 = b1, a20 = b0, a21 = b1, a30 = b0, a31 = b1;
        const float *x0 = x + i * ldx;
        for (int64_t k = 0; k < n_in; k++) {
            const __m256 w0 = _mm256_loadu_ps(wp + k * P), w1 = _mm256_loadu_ps(wp + k * P + 8);
            __m256 v = _mm256_broadcast_ss(x0 + k);
            a00 = _mm256_fmadd_ps(v, w0, a00);
            a01 = _mm256_fmadd_ps(v, w1, a01);
            v = _mm256_broadcast_ss(x0 + ldx + k);
            a10 = _mm256_fmadd_ps(v, w0, a10);
            a11 = _mm256_fmadd_ps(v, w1, a11);
            v = _mm256_broadcast_ss(x0 + 2 * ldx + k);
            a20 = _mm256_fmadd_ps(v, w0, a20);
            a21 = _mm256_fmadd_ps(v, w1, a21);
            v = _mm256_broadcast_ss(x0 + 3 * ldx + k);
            a30 = _mm256_fmadd_ps(v, w0, a30);
            a31 = _mm256_fmadd_ps(v, w1, a31);
        }
        float *y0 = y + i * ldy;
        _mm256_storeu_ps(y0, a00);
        _mm256_storeu_ps(y0 + 8, a01);
        _mm256_storeu_ps(y0 + ldy, a10);
        _mm256_storeu_ps(y0 + ldy + 8, a11);
        _mm256_storeu_ps(y0 + 2 * ldy, a20);
        _mm256_storeu_ps(y0 + 2 * ldy + 8, a21);
        _mm256_storeu_ps(y0 + 3 * ldy, a30);
        _mm256_storeu_ps(y0 + 3 * ldy + 8, a31);
    }
    for (; i < n; i++) {
        __m256 a0 = b0, a1 = b1;
        for (int64_t k = 0; k < n_in; k++) {
            const __m256 v = _mm256_broadcast_ss(x + i * ldx + k);
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(wp + k * P), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(wp + k * P + 8), a1);
        }
        _mm256_storeu_ps(y + i * ldy, a0);
        _mm256_storeu_ps(y + i * ldy + 8, a1);
    }
}

/* lanes j < count are written */
AVX2 static __m256i lane_mask(int64_t count)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), idx);
}

AVX2 static void pack_avx2(const float *w, const float *b, float *wp, float *bp, int64_t n_in,
                           int64_t n_out)
{
    const __m256i m0 = lane_mask(n_out), m1 = lane_mask(n_out - 8);
    for (int64_t k = 0; k < n_in; k++) { /* masked lanes read nothing and load zero */
        _mm256_storeu_ps(wp + k * P, _mm256_maskload_ps(w + k * n_out, m0));
        _mm256_storeu_ps(wp + k * P + 8, _mm256_maskload_ps(w + k * n_out + 8, m1));
    }
    if (b) {
        _mm256_storeu_ps(bp, _mm256_maskload_ps(b, m0));
        _mm256_storeu_ps(bp + 8, _mm256_maskload_ps(b + 8, m1));
    } else {
        _mm256_storeu_ps(bp, _mm256_setzero_ps());
        _mm256_storeu_ps(bp + 8, _mm256_setzero_ps());
    }
}

AVX2 static void store_row(float *dst, __m256 a0, __m256 a1, int64_t n_out, __m256i m0,
                           __m256i m1)
{
    if (n_out == P) {
        _mm256_storeu_ps(dst, a0);
        _mm256_storeu_ps(dst + 8, a1);
    } else {
        _mm256_maskstore_ps(dst, m0, a0);
        if (n_out > 8) _mm256_maskstore_ps(dst + 8, m1, a1);
    }
}

/* Four input features per pass over dz's rows (eight independent FMA chains); the
 * bias gradient (column sums of dz) rides along in the first pass; a leftover
 * feature splits the rows in two to keep four chains. */
AVX2 static void weight_grad_avx2(const float *x, int64_t ldx, const float *dz, int64_t ldz,
                                  float *gw, float *gb, int64_t n, int64_t n_in, int64_t n_out)
{
    const __m256i m0 = lane_mask(n_out), m1 = lane_mask(n_out - 8);
    int64_t k = 0;
    for (; k + 4 <= n_in; k += 4) {
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
               a30 = a00, a31 = a00, s0 = a00, s1 = a00;
        const int bias = gb && k == 0;
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * ldx + k;
            const __m256 d0 = _mm256_loadu_ps(dz + i * ldz), d1 = _mm256_loadu_ps(dz + i * ldz + 8);
            if (bias) {
                s0 = _mm256_add_ps(s0, d0);
                s1 = _mm256_add_ps(s1, d1);
            }
            __m256 v = _mm256_broadcast_ss(xi);
            a00 = _mm256_fmadd_ps(v, d0, a00);
            a01 = _mm256_fmadd_ps(v, d1, a01);
            v = _mm256_broadcast_ss(xi + 1);
            a10 = _mm256_fmadd_ps(v, d0, a10);
            a11 = _mm256_fmadd_ps(v, d1, a11);
            v = _mm256_broadcast_ss(xi + 2);
            a20 = _mm256_fmadd_ps(v, d0, a20);
            a21 = _mm256_fmadd_ps(v, d1, a21);
            v = _mm256_broadcast_ss(xi + 3);
            a30 = _mm256_fmadd_ps(v, d0, a30);
            a31 = _mm256_fmadd_ps(v, d1, a31);
        }
        if (bias) store_row(gb, s0, s1, n_out, m0, m1);
        store_row(gw + k * n_out, a00, a01, n_out, m0, m1);
        store_row(gw + (k + 1) * n_out, a10, a11, n_out, m0, m1);
        store_row(gw + (k + 2) * n_out, a20, a21, n_out, m0, m1);
        store_row(gw + (k + 3) * n_out, a30, a31, n_out, m0, m1);
    }
    for (; k < n_in; k++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, s0 = a0, s1 = a0, t0 = a0,
               t1 = a0;
        const int bias = gb && k == 0;
        int64_t i = 0;
        for (; i + 2 <= n; i += 2) {
            const float *d = dz + i * ldz;
            const __m256 d0 = _mm256_loadu_ps(d), d1 = _mm256_loadu_ps(d + 8);
            const __m256 e0 = _mm256_loadu_ps(d + ldz), e1 = _mm256_loadu_ps(d + ldz + 8);
            if (bias) {
                s0 = _mm256_add_ps(s0, d0);
                s1 = _mm256_add_ps(s1, d1);
                t0 = _mm256_add_ps(t0, e0);
                t1 = _mm256_add_ps(t1, e1);
            }
            const __m256 v = _mm256_broadcast_ss(x + i * ldx + k);
            const __m256 u = _mm256_broadcast_ss(x + (i + 1) * ldx + k);
            a0 = _mm256_fmadd_ps(v, d0, a0);
            a1 = _mm256_fmadd_ps(v, d1, a1);
            b0 = _mm256_fmadd_ps(u, e0, b0);
            b1 = _mm256_fmadd_ps(u, e1, b1);
        }
        for (; i < n; i++) {
            const __m256 d0 = _mm256_loadu_ps(dz + i * ldz), d1 = _mm256_loadu_ps(dz + i * ldz + 8);
            if (bias) {
                s0 = _mm256_add_ps(s0, d0);
                s1 = _mm256_add_ps(s1, d1);
            }
            const __m256 v = _mm256_broadcast_ss(x + i * ldx + k);
            a0 = _mm256_fmadd_ps(v, d0, a0);
            a1 = _mm256_fmadd_ps(v, d1, a1);
        }
        if (bias) store_row(gb, _mm256_add_ps(s0, t0), _mm256_add_ps(s1, t1), n_out, m0, m1);
        store_row(gw + k * n_out, _mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1), n_out, m0, m1);
    }
}

AVX2 static void input_grad_avx2(const float *dz, int64_t ldz, const float *wt, float *gx,
                                 int64_t ldgx, int64_t n, int64_t n_out)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
               a30 = a00, a31 = a00;
        const float *d0 = dz + i * ldz;
        for (int64_t j = 0; j < n_out; j++) {
            const __m256 w0 = _mm256_loadu_ps(wt + j * P), w1 = _mm256_loadu_ps(wt + j * P + 8);
            __m256 v = _mm256_broadcast_ss(d0 + j);
            a00 = _mm256_fmadd_ps(v, w0, a00);
            a01 = _mm256_fmadd_ps(v, w1, a01);
            v = _mm256_broadcast_ss(d0 + ldz + j);
            a10 = _mm256_fmadd_ps(v, w0, a10);
            a11 = _mm256_fmadd_ps(v, w1, a11);
            v = _mm256_broadcast_ss(d0 + 2 * ldz + j);
            a20 = _mm256_fmadd_ps(v, w0, a20);
            a21 = _mm256_fmadd_ps(v, w1, a21);
            v = _mm256_broadcast_ss(d0 + 3 * ldz + j);
            a30 = _mm256_fmadd_ps(v, w0, a30);
            a31 = _mm256_fmadd_ps(v, w1, a31);
        }
        float *g0 = gx + i * ldgx;
        _mm256_storeu_ps(g0, a00);
        _mm256_storeu_ps(g0 + 8, a01);
        _mm256_storeu_ps(g0 + ldgx, a10);
        _mm256_storeu_ps(g0 + ldgx + 8, a11);
        _mm256_storeu_ps(g0 + 2 * ldgx, a20);
        _mm256_storeu_ps(g0 + 2 * ldgx + 8, a21);
        _mm256_storeu_ps(g0 + 3 * ldgx, a30);
        _mm256_storeu_ps(g0 + 3 * ldgx + 8, a31);
    }
    for (; i < n; i++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int64_t j = 0; j < n_out; j++) {
            const __m256 v = _mm256_broadcast_ss(dz + i * ldz + j);
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(wt + j * P), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(wt + j * P + 8), a1);
        }
        _mm256_storeu_ps(gx + i * ldgx, a0);
        _mm256_storeu_ps(gx + i * ldgx + 8, a1);
    }
}
#endif

/* ---- dispatch ---------------------------------------------------------------------- */
fnn_narrow_kernels fnn_narrow = {pack_base, forward_base, weight_grad_base, input_grad_base,
                                 "baseline"};

const char *fnn_narrow_select(int allow_simd)
{
    static const fnn_narrow_kernels base = {pack_base, forward_base, weight_grad_base,
                                            input_grad_base, "baseline"};
    fnn_narrow = base;
#if FNN_HAVE_X86_DISPATCH
    __builtin_cpu_init();
    if (allow_simd && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        static const fnn_narrow_kernels avx2 = {pack_avx2, forward_avx2, weight_grad_avx2,
                                                input_grad_avx2, "avx2"};
        fnn_narrow = avx2;
    }
#else
    (void)allow_simd;
#endif
    return fnn_narrow.name;
}
