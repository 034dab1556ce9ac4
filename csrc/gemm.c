/* gemm.c - the portable SGEMM, and the adapter to a CBLAS found at run time.
 *
 * The portable kernel serves the small matrices of small models (where a BLAS
 * call costs more than the arithmetic) and is the fallback when no BLAS is
 * found. Each transpose case is arranged so that the innermost loop runs over
 * contiguous memory and vectorises: rows of B are scaled and added into rows
 * of C (NN, TN), or rows of A and B are dotted with 8 partial sums (NT). */
#include <string.h>

#include "fastnn.h"

enum { KC = 256, NC = 512 }; /* block of B kept hot in cache: KC x NC floats */

static void scale_c(float *c, int64_t m, int64_t n, int64_t ldc, float beta)
{
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            memset(ci, 0, (size_t)n * sizeof(float)); /* never read C: it may hold NaN */
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* c[0..n) += a * b[0..n) */
static inline void axpy(float *restrict c, const float *restrict b, float a, int64_t n)
{
    for (int64_t j = 0; j < n; j++) c[j] += a * b[j];
}

/* C += alpha A.B ; A (m x k), B (k x n) */
FNN_CLONES
static void gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *c, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        const int64_t nb = n - j0 < NC ? n - j0 : NC;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            const int64_t kb = k - p0 < KC ? k - p0 : KC;
            for (int64_t i = 0; i < m; i++) {
                float *ci = c + i * ldc + j0;
                const float *ai = a + i * lda + p0;
                for (int64_t p = 0; p < kb; p++)
                    axpy(ci, b + (p0 + p) * ldb + j0, alpha * ai[p], nb);
            }
        }
    }
}

/* C += alpha A^T.B ; A (k x m), B (k x n) */
FNN_CLONES
static void gemm_tn(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *c, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        const int64_t nb = n - j0 < NC ? n - j0 : NC;
        for (int64_t p = 0; p < k; p++) {
            const float *ap = a + p * lda;
            const float *bp = b + p * ldb + j0;
            for (int64_t i = 0; i < m; i++) axpy(c + i * ldc + j0, bp, alpha * ap[i], nb);
        }
    }
}

/* C += alpha A.B^T ; A (m x k), B (n x k): dot products of rows */
FNN_CLONES
static void gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        const float *ai = a + i * lda;
        for (int64_t j = 0; j < n; j++) {
            const float *bj = b + j * ldb;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t p = 0;
            for (; p + 8 <= k; p += 8)
                for (int l = 0; l < 8; l++) acc[l] += ai[p + l] * bj[p + l];
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (; p < k; p++) s += ai[p] * bj[p];
            c[i * ldc + j] += alpha * s;
        }
    }
}

/* C += alpha A^T.B^T ; rare: done as dot products over a strided column of A. */
static void gemm_tt(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) s += a[p * lda + i] * b[j * ldb + p];
            c[i * ldc + j] += alpha * s;
        }
}

void fnn_sgemm_portable(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc)
{
    scale_c(c, m, n, ldc, beta);
    if (k == 0 || alpha == 0.0f) return;
    if (!ta && !tb) gemm_nn(m, n, k, alpha, a, lda, b, ldb, c, ldc);
    else if (ta && !tb) gemm_tn(m, n, k, alpha, a, lda, b, ldb, c, ldc);
    else if (!ta && tb) gemm_nt(m, n, k, alpha, a, lda, b, ldb, c, ldc);
    else gemm_tt(m, n, k, alpha, a, lda, b, ldb, c, ldc);
}

/* ---- CBLAS adapter --------------------------------------------------------- */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*cblas_sgemm64_fn)(int, int, int, int64_t, int64_t, int64_t, float, const float *,
                                 int64_t, const float *, int64_t, float, float *, int64_t);
typedef void (*cblas_sgemm32_fn)(int, int, int, int, int, int, float, const float *, int,
                                 const float *, int, float, float *, int);

static void *cblas_fn = NULL;
static int cblas_ilp64 = 1;

int fnn_set_cblas_sgemm(void *fn, int ilp64)
{
    if (!fn) return -1;
    cblas_fn = fn;
    cblas_ilp64 = ilp64;
    return 0;
}

int fnn_have_cblas(void) { return cblas_fn != NULL; }

void fnn_sgemm_cblas(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc)
{
    const int cta = ta ? CBLAS_TRANS : CBLAS_NO_TRANS, ctb = tb ? CBLAS_TRANS : CBLAS_NO_TRANS;
    if (!cblas_fn || m == 0 || n == 0) {
        fnn_sgemm_portable(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    } else if (cblas_ilp64) {
        ((cblas_sgemm64_fn)cblas_fn)(CBLAS_ROW_MAJOR, cta, ctb, m, n, k, alpha, a, lda, b, ldb,
                                     beta, c, ldc);
    } else {
        ((cblas_sgemm32_fn)cblas_fn)(CBLAS_ROW_MAJOR, cta, ctb, (int)m, (int)n, (int)k, alpha, a,
                                     (int)lda, b, (int)ldb, beta, c, (int)ldc);
    }
}
