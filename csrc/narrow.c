/* narrow.c - register-blocked kernels for a panel of at most 16 output columns: a
 * whole layer of <= 16 units, or one panel of a wider layer (dense.c loops over them).
 *
 * W arrives packed as a zero-padded (n_in x 16) panel (or W^T as (n_out x 16)), rows
 * of Y and dL/dZ hold whole panels, so a panel row is one 16-float vector (two 8-float
 * ones). Each kernel exists three times: AVX-512F (eight rows or eight inputs per pass,
 * one zmm each), AVX2+FMA (four rows in eight ymm accumulators), and a portable
 * baseline for any x86-64 or other CPU (128-bit GCC vectors: SSE2 on x86-64, NEON on
 * ARM; plain loops elsewhere). fnn_narrow_select() picks one set at start-up. */
#include <string.h>

#include "narrow.h"

enum { P = FNN_NARROW };

/* ---- baseline: plain loops over 16-float rows --------------------------------- */

static void pack_base(const float *restrict w, int64_t ldw, const float *restrict b,
                      float *restrict wp, float *restrict bp, int64_t n_in, int64_t n_out)
{
    for (int64_t k = 0; k < n_in; k++)
        for (int64_t j = 0; j < P; j++) wp[k * P + j] = j < n_out ? w[k * ldw + j] : 0.0f;
    for (int64_t j = 0; j < P; j++) bp[j] = (b && j < n_out) ? b[j] : 0.0f;
}

static void pack_t_base(const float *restrict w, int64_t ldw, float *restrict wt, int64_t rows,
                        int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        for (int64_t q = 0; q < rows; q++) wt[j * P + q] = w[q * ldw + j];
        for (int64_t q = rows; q < P; q++) wt[j * P + q] = 0.0f;
    }
}

/* Both products have one shape: for each output row r,
 *   out[r, 0:16] = init + sum_t s[r*s_row + t*s_t] * B[t, 0:16]
 * (forward: s = X, B = packed W; weight grad: s = X read down a column, B = dz;
 * the input gradient is a forward through packed W^T with no bias). Two rows at a time, each as four
 * 4-float vectors, so the eight accumulators stay in registers on SSE2 or NEON. */
#if defined(__GNUC__)
typedef float v4 __attribute__((vector_size(16)));

static inline v4 load4(const float *p)
{
    v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4 v) { memcpy(p, &v, sizeof v); }

typedef int v4i __attribute__((vector_size(16)));

/* max(v, 0) with NaN kept: lanes where v < 0 are cleared */
static inline v4 relu4(v4 v)
{
    const v4 zero = {0, 0, 0, 0};
    return (v4)((v4i)v & ~(v < zero));
}

static void rows16(const float *s, int64_t s_row, int64_t s_t, const float *b, int64_t ldb,
                   int64_t T, const float *init, float *out, int64_t ldo, int64_t R, int relu)
{
    const v4 zero = {0, 0, 0, 0};
    const v4 i0 = init ? load4(init) : zero, i1 = init ? load4(init + 4) : zero,
             i2 = init ? load4(init + 8) : zero, i3 = init ? load4(init + 12) : zero;
    int64_t r = 0;
    for (; r + 2 <= R; r += 2) {
        v4 a0 = i0, a1 = i1, a2 = i2, a3 = i3, c0 = i0, c1 = i1, c2 = i2, c3 = i3;
        const float *sa = s + r * s_row, *sc = sa + s_row;
        for (int64_t t = 0; t < T; t++) {
            const float *bt = b + t * ldb;
            const v4 b0 = load4(bt), b1 = load4(bt + 4), b2 = load4(bt + 8), b3 = load4(bt + 12);
            const float u = sa[t * s_t], w = sc[t * s_t];
            a0 += u * b0; a1 += u * b1; a2 += u * b2; a3 += u * b3;
            c0 += w * b0; c1 += w * b1; c2 += w * b2; c3 += w * b3;
        }
        if (relu) {
            a0 = relu4(a0); a1 = relu4(a1); a2 = relu4(a2); a3 = relu4(a3);
            c0 = relu4(c0); c1 = relu4(c1); c2 = relu4(c2); c3 = relu4(c3);
        }
        float *o = out + r * ldo;
        store4(o, a0); store4(o + 4, a1); store4(o + 8, a2); store4(o + 12, a3);
        store4(o + ldo, c0); store4(o + ldo + 4, c1); store4(o + ldo + 8, c2); store4(o + ldo + 12, c3);
    }
    for (; r < R; r++) {
        v4 a0 = i0, a1 = i1, a2 = i2, a3 = i3;
        for (int64_t t = 0; t < T; t++) {
            const float *bt = b + t * ldb;
            const float u = s[r * s_row + t * s_t];
            a0 += u * load4(bt); a1 += u * load4(bt + 4); a2 += u * load4(bt + 8); a3 += u * load4(bt + 12);
        }
        if (relu) {
            a0 = relu4(a0); a1 = relu4(a1); a2 = relu4(a2); a3 = relu4(a3);
        }
        float *o = out + r * ldo;
        store4(o, a0); store4(o + 4, a1); store4(o + 8, a2); store4(o + 12, a3);
    }
}
#else
static void rows16(const float *s, int64_t s_row, int64_t s_t, const float *b, int64_t ldb,
                   int64_t T, const float *init, float *out, int64_t ldo, int64_t R, int relu)
{
    for (int64_t r = 0; r < R; r++) {
        float a[P];
        for (int j = 0; j < P; j++) a[j] = init ? init[j] : 0.0f;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < P; j++) a[j] += s[r * s_row + t * s_t] * b[t * ldb + j];
        for (int j = 0; j < P; j++) out[r * ldo + j] = (relu && a[j] < 0.0f) ? 0.0f : a[j];
    }
}
#endif

static void forward_base(const float *x, int64_t ldx, const float *wp, const float *bp, float *y,
                         int64_t ldy, int64_t n, int64_t n_in, int relu)
{
    rows16(x, ldx, 1, wp, P, n_in, bp, y, ldy, n, relu);
}

static void weight_grad_base(const float *x, int64_t ldx, float *dz, int64_t ldz, float *gw,
                             int64_t ldgw, float *gb, int64_t n, int64_t n_in, int64_t n_out,
                             const float *relu_y)
{
    if (relu_y) /* dz *= relu'(y) = [y > 0], in place, 16 lanes a row */
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < P; j++)
                if (!(relu_y[i * ldz + j] > 0.0f)) dz[i * ldz + j] = 0.0f;
    float tmp[2 * P];
    if (gb) {
        const float one = 1.0f; /* db = 1^T . dz: a column of ones, read with stride 0 */
        rows16(&one, 0, 0, dz, ldz, n, NULL, tmp, P, 1, 0);
        memcpy(gb, tmp, (size_t)n_out * sizeof(float));
    }
    for (int64_t k = 0; k < n_in; k += 2) {
        const int64_t rows = n_in - k < 2 ? n_in - k : 2;
        rows16(x + k, 1, ldx, dz, ldz, n, NULL, tmp, P, rows, 0);
        for (int64_t r = 0; r < rows; r++)
            memcpy(gw + (k + r) * ldgw, tmp + r * P, (size_t)n_out * sizeof(float));
    }
}

/* ---- AVX2 + FMA ------------------------------------------------------------------- */
#if FNN_HAVE_X86_DISPATCH

/* relu on the way out: max(0, a) returns a when a is NaN (MAXPS returns its second
 * operand), so NaN stays NaN as in the separate pass */
#define RELU8(a) ((a) = relu ? _mm256_max_ps(_mm256_setzero_ps(), (a)) : (a))
#define RELU16(a) ((a) = relu ? _mm512_max_ps(_mm512_setzero_ps(), (a)) : (a))

AVX2 static void forward_avx2(const float *x, int64_t ldx, const float *wp, const float *bp,
                              float *y, int64_t ldy, int64_t n, int64_t n_in, int relu)
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
        RELU8(a00); RELU8(a01); RELU8(a10); RELU8(a11);
        RELU8(a20); RELU8(a21); RELU8(a30); RELU8(a31);
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
        RELU8(a0); RELU8(a1);
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

/* W^T's panel by 8 x 8 tiles, each eight loads, 24 shuffles and eight stores instead of
 * 64 scalar moves (the panel path packs W^T for every backward: ~5% of a W8 step). */
AVX2 static void pack_t_avx2(const float *w, int64_t ldw, float *wt, int64_t rows, int64_t n)
{
    if (rows < P) { /* the last, partial panel: plain loops */
        pack_t_base(w, ldw, wt, rows, n);
        return;
    }
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q0 = 0; q0 < P; q0 += 8) {
            const float *s = w + q0 * ldw + j;
            const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldw),
                         r2 = _mm256_loadu_ps(s + 2 * ldw), r3 = _mm256_loadu_ps(s + 3 * ldw),
                         r4 = _mm256_loadu_ps(s + 4 * ldw), r5 = _mm256_loadu_ps(s + 5 * ldw),
                         r6 = _mm256_loadu_ps(s + 6 * ldw), r7 = _mm256_loadu_ps(s + 7 * ldw);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1),
                         t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3),
                         t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                         u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                         u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                         u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = wt + j * P + q0;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + P, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * P, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * P, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * P, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * P, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * P, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * P, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    if (j < n) pack_t_base(w + j, ldw, wt + j * P, rows, n - j);
}

AVX2 static void pack_avx2(const float *w, int64_t ldw, const float *b, float *wp, float *bp,
                           int64_t n_in, int64_t n_out)
{
    const __m256i m0 = lane_mask(n_out), m1 = lane_mask(n_out - 8);
    for (int64_t k = 0; k < n_in; k++) { /* masked lanes read nothing and load zero */
        _mm256_storeu_ps(wp + k * P, _mm256_maskload_ps(w + k * ldw, m0));
        _mm256_storeu_ps(wp + k * P + 8, _mm256_maskload_ps(w + k * ldw + 8, m1));
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
AVX2 static void weight_grad_avx2(const float *x, int64_t ldx, float *dz, int64_t ldz,
                                  float *gw, int64_t ldgw, float *gb, int64_t n, int64_t n_in,
                                  int64_t n_out, const float *relu_y)
{
    if (relu_y) { /* dz *= relu'(y) = [y > 0], in place */
        const __m256 zero = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i++) {
            float *d = dz + i * ldz;
            const float *y = relu_y + i * ldz;
            _mm256_storeu_ps(d, _mm256_and_ps(_mm256_loadu_ps(d),
                                              _mm256_cmp_ps(_mm256_loadu_ps(y), zero, _CMP_GT_OQ)));
            _mm256_storeu_ps(d + 8, _mm256_and_ps(_mm256_loadu_ps(d + 8),
                                                  _mm256_cmp_ps(_mm256_loadu_ps(y + 8), zero,
                                                                _CMP_GT_OQ)));
        }
    }
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
        store_row(gw + k * ldgw, a00, a01, n_out, m0, m1);
        store_row(gw + (k + 1) * ldgw, a10, a11, n_out, m0, m1);
        store_row(gw + (k + 2) * ldgw, a20, a21, n_out, m0, m1);
        store_row(gw + (k + 3) * ldgw, a30, a31, n_out, m0, m1);
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
        store_row(gw + k * ldgw, _mm256_add_ps(a0, b0), _mm256_add_ps(a1, b1), n_out, m0, m1);
    }
}

/* A single unit over at most 16 inputs whose rows are >= 16 floats apart: the
 * inputs sit in the lanes (W masked to its n_in weights, since padding columns
 * of X need not be zero), one horizontal sum per row forward, and backward a
 * scaled copy of W per row for dX and a sum of scaled rows for dW. */
AVX2 static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static void single_forward_avx2(const float *x, int64_t ldx, const float *w, const float *b,
                                     float *y, int64_t ldy, int64_t n, int64_t n_in)
{
    const __m256 w0 = _mm256_maskload_ps(w, lane_mask(n_in));
    const __m256 w1 = _mm256_maskload_ps(w + 8, lane_mask(n_in - 8));
    const float bias = b ? b[0] : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        const __m256 p = _mm256_fmadd_ps(_mm256_loadu_ps(xi), w0,
                                         _mm256_mul_ps(_mm256_loadu_ps(xi + 8), w1));
        y[i * ldy] = bias + hsum(p);
    }
}

AVX2 static void single_backward_avx2(const float *x, int64_t ldx, const float *w,
                                      const float *dz, int64_t ldz, float *gx, int64_t ldgx,
                                      float *gw, float *gb, int64_t n, int64_t n_in)
{
    const __m256i m0 = lane_mask(n_in), m1 = lane_mask(n_in - 8);
    const __m256 w0 = _mm256_maskload_ps(w, m0), w1 = _mm256_maskload_ps(w + 8, m1);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, c0 = a0, c1 = a0;
    float bias = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        const float d = dz[i * ldz], e = dz[(i + 1) * ldz];
        const __m256 vd = _mm256_set1_ps(d), ve = _mm256_set1_ps(e);
        const float *xi = x + i * ldx;
        a0 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xi), a0);
        a1 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(xi + 8), a1);
        c0 = _mm256_fmadd_ps(ve, _mm256_loadu_ps(xi + ldx), c0);
        c1 = _mm256_fmadd_ps(ve, _mm256_loadu_ps(xi + ldx + 8), c1);
        bias += d + e;
        if (gx) {
            float *g = gx + i * ldgx;
            _mm256_storeu_ps(g, _mm256_mul_ps(vd, w0));
            _mm256_storeu_ps(g + 8, _mm256_mul_ps(vd, w1));
            _mm256_storeu_ps(g + ldgx, _mm256_mul_ps(ve, w0));
            _mm256_storeu_ps(g + ldgx + 8, _mm256_mul_ps(ve, w1));
        }
    }
    for (; i < n; i++) {
        const float d = dz[i * ldz];
        const __m256 vd = _mm256_set1_ps(d);
        a0 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(x + i * ldx), a0);
        a1 = _mm256_fmadd_ps(vd, _mm256_loadu_ps(x + i * ldx + 8), a1);
        bias += d;
        if (gx) {
            _mm256_storeu_ps(gx + i * ldgx, _mm256_mul_ps(vd, w0));
            _mm256_storeu_ps(gx + i * ldgx + 8, _mm256_mul_ps(vd, w1));
        }
    }
    _mm256_maskstore_ps(gw, m0, _mm256_add_ps(a0, c0)); /* gw is (n_in x 1): packed */
    _mm256_maskstore_ps(gw + 8, m1, _mm256_add_ps(a1, c1));
    if (gb) gb[0] = bias;
}
/* ---- AVX-512F ------------------------------------------------------------------------
 * A 16-float row is one zmm register: eight rows (forward) or eight input features
 * (weight gradient) per pass keep eight independent FMA chains with half the
 * instructions of the AVX2 kernels. The single-unit kernels stay AVX2. */

AVX512 static void forward_avx512(const float *x, int64_t ldx, const float *wp, const float *bp,
                                  float *y, int64_t ldy, int64_t n, int64_t n_in, int relu)
{
    const __m512 b = _mm512_loadu_ps(bp);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512 a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b;
        const float *x0 = x + i * ldx;
        for (int64_t k = 0; k < n_in; k++) {
            const __m512 w = _mm512_loadu_ps(wp + k * P);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k]), w, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x0[ldx + k]), w, a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(x0[2 * ldx + k]), w, a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(x0[3 * ldx + k]), w, a3);
            a4 = _mm512_fmadd_ps(_mm512_set1_ps(x0[4 * ldx + k]), w, a4);
            a5 = _mm512_fmadd_ps(_mm512_set1_ps(x0[5 * ldx + k]), w, a5);
            a6 = _mm512_fmadd_ps(_mm512_set1_ps(x0[6 * ldx + k]), w, a6);
            a7 = _mm512_fmadd_ps(_mm512_set1_ps(x0[7 * ldx + k]), w, a7);
        }
        RELU16(a0); RELU16(a1); RELU16(a2); RELU16(a3);
        RELU16(a4); RELU16(a5); RELU16(a6); RELU16(a7);
        float *y0 = y + i * ldy;
        _mm512_storeu_ps(y0, a0);
        _mm512_storeu_ps(y0 + ldy, a1);
        _mm512_storeu_ps(y0 + 2 * ldy, a2);
        _mm512_storeu_ps(y0 + 3 * ldy, a3);
        _mm512_storeu_ps(y0 + 4 * ldy, a4);
        _mm512_storeu_ps(y0 + 5 * ldy, a5);
        _mm512_storeu_ps(y0 + 6 * ldy, a6);
        _mm512_storeu_ps(y0 + 7 * ldy, a7);
    }
    for (; i + 2 <= n; i += 2) {
        __m512 a0 = b, a1 = b;
        const float *x0 = x + i * ldx;
        for (int64_t k = 0; k < n_in; k++) {
            const __m512 w = _mm512_loadu_ps(wp + k * P);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x0[k]), w, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(x0[ldx + k]), w, a1);
        }
        RELU16(a0); RELU16(a1);
        _mm512_storeu_ps(y + i * ldy, a0);
        _mm512_storeu_ps(y + (i + 1) * ldy, a1);
    }
    for (; i < n; i++) {
        __m512 a0 = b;
        for (int64_t k = 0; k < n_in; k++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + k]), _mm512_loadu_ps(wp + k * P), a0);
        RELU16(a0);
        _mm512_storeu_ps(y + i * ldy, a0);
    }
}

/* gw rows k..k+C-1 (C <= 16, a constant after inlining) = sum_i x[i, k + r] * dz[i, :]
 * and, if gb, the column sums of dz: one pass over dz's rows with C independent FMA
 * chains (AVX-512 has 32 registers), stores of n_out lanes. */
AVX512 static inline __attribute__((always_inline)) void
weight_grad_block_avx512(const float *x, int64_t ldx, float *dz, int64_t ldz, float *gw,
                         int64_t ldgw, float *gb, int64_t n, int64_t k, const int C,
                         int64_t n_out, const float *relu_y)
{
    __m512 a[16], s = _mm512_setzero_ps();
    for (int r = 0; r < C; r++) a[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i++) {
        __m512 d = _mm512_loadu_ps(dz + i * ldz);
        if (relu_y) { /* dz *= [y > 0] on the fly, written back for the dX pass */
            const __mmask16 live = _mm512_cmp_ps_mask(_mm512_loadu_ps(relu_y + i * ldz),
                                                      _mm512_setzero_ps(), _CMP_GT_OQ);
            d = _mm512_maskz_mov_ps(live, d);
            _mm512_storeu_ps(dz + i * ldz, d);
        }
        const float *xi = x + i * ldx + k;
        if (gb) s = _mm512_add_ps(s, d);
        for (int r = 0; r < C; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(xi[r]), d, a[r]);
    }
    const __mmask16 m = (__mmask16)((1u << n_out) - 1u);
    for (int r = 0; r < C; r++) _mm512_mask_storeu_ps(gw + (k + r) * ldgw, m, a[r]);
    if (gb) _mm512_mask_storeu_ps(gb, m, s);
}

#define WG_CASE(c) \
    case c:                                                                            \
        weight_grad_block_avx512(x, ldx, dz, ldz, gw, ldgw, k == 0 ? gb : NULL, n, k, c,   \
                                 n_out,                                                    \
                                 k == 0 ? relu_y : NULL);                                  \
        break;

AVX512 static void weight_grad_avx512(const float *x, int64_t ldx, float *dz, int64_t ldz,
                                      float *gw, int64_t ldgw, float *gb, int64_t n,
                                      int64_t n_in, int64_t n_out, const float *relu_y)
{
    for (int64_t k = 0; k < n_in; k += 16) {
        switch (n_in - k < 16 ? (int)(n_in - k) : 16) { /* one specialised pass per width */
            WG_CASE(1) WG_CASE(2) WG_CASE(3) WG_CASE(4) WG_CASE(5) WG_CASE(6) WG_CASE(7)
            WG_CASE(8) WG_CASE(9) WG_CASE(10) WG_CASE(11) WG_CASE(12) WG_CASE(13) WG_CASE(14)
            WG_CASE(15) WG_CASE(16)
        }
    }
}
#undef WG_CASE
#endif

/* ---- dispatch ---------------------------------------------------------------------- */
fnn_narrow_kernels fnn_narrow = {pack_base, forward_base, weight_grad_base, NULL, NULL,
                                 pack_t_base, "baseline"};

const char *fnn_narrow_select(int level)
{
    static const fnn_narrow_kernels base = {pack_base, forward_base, weight_grad_base, NULL,
                                            NULL, pack_t_base, "baseline"};
    fnn_narrow = base;
#if FNN_HAVE_X86_DISPATCH
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level >= FNN_LEVEL_AVX512 && avx2 && __builtin_cpu_supports("avx512f")) {
        static const fnn_narrow_kernels avx512 = {pack_avx2, forward_avx512, weight_grad_avx512,
                                                  single_forward_avx2, single_backward_avx2,
                                                  pack_t_avx2, "avx512"};
        fnn_narrow = avx512;
    } else if (level >= FNN_LEVEL_AVX2 && avx2) {
        static const fnn_narrow_kernels avx2_set = {pack_avx2, forward_avx2, weight_grad_avx2,
                                                    single_forward_avx2, single_backward_avx2,
                                                    pack_t_avx2, "avx2"};
        fnn_narrow = avx2_set;
    }
#else
    (void)level;
#endif
    return fnn_narrow.name;
}
