/* optimizers.c - one fused pass over the flat parameter buffer per update:
 * each parameter, gradient and slot value is read and written once. */
#include <math.h>

#include "dispatch.h"
#include "fastnn.h"
#include "fpu.h"

FNN_CLONES
static void sgd(float *restrict w, const float *restrict g, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
}

FNN_CLONES
static void sgd_momentum(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                         float lr, float momentum)
{
    /* Keras: v = momentum * v - lr * g; w += v */
    for (size_t i = 0; i < n; i++) {
        v[i] = momentum * v[i] - lr * g[i];
        w[i] += v[i];
    }
}

typedef void (*rmsprop_fn)(float *w, const float *g, float *v, size_t n, float lr, float rho,
                           float eps);

FNN_CLONES
static void rmsprop(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                    float lr, float rho, float eps)
{
    /* Keras: epsilon inside the root (PyTorch adds it outside). */
    const float one_minus_rho = 1.0f - rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        const float vi = rho * v[i] + one_minus_rho * gi * gi;
        v[i] = vi;
        w[i] -= lr * gi / sqrtf(vi + eps);
    }
}

#if FNN_HAVE_X86_DISPATCH
/* The same update with 1/sqrt from the hardware estimate (12 bits) and one Newton
 * step (to ~2^-23, within an ulp of sqrt-then-divide): sqrt and divide share one
 * slow unit and bound the exact loop at ~11 cycles per 8 values; a small model's
 * step spent ~10% of its time there. Large updates are memory-bound either way. */
AVX2 static void rmsprop_avx2(float *w, const float *g, float *v, size_t n, float lr, float rho,
                              float eps)
{
    const __m256 vrho = _mm256_set1_ps(rho), v1mr = _mm256_set1_ps(1.0f - rho);
    const __m256 veps = _mm256_set1_ps(eps), vlr = _mm256_set1_ps(lr);
    const __m256 half = _mm256_set1_ps(0.5f), three_halves = _mm256_set1_ps(1.5f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i);
        const __m256 vi = _mm256_fmadd_ps(vrho, _mm256_loadu_ps(v + i),
                                          _mm256_mul_ps(v1mr, _mm256_mul_ps(gi, gi)));
        _mm256_storeu_ps(v + i, vi);
        const __m256 x = _mm256_add_ps(vi, veps);
        __m256 r = _mm256_rsqrt_ps(x);
        /* r = r (1.5 - 0.5 x r^2) */
        r = _mm256_mul_ps(r, _mm256_fnmadd_ps(_mm256_mul_ps(half, x), _mm256_mul_ps(r, r),
                                              three_halves));
        _mm256_storeu_ps(w + i, _mm256_fnmadd_ps(_mm256_mul_ps(vlr, gi), r,
                                                 _mm256_loadu_ps(w + i)));
    }
    if (i < n) rmsprop(w + i, g + i, v + i, n - i, lr, rho, eps);
}

/* AVX-512: a 14-bit estimate (so one Newton step gives ~2^-27) and masked tails. */
AVX512 static void rmsprop_avx512(float *w, const float *g, float *v, size_t n, float lr,
                                  float rho, float eps)
{
    const __m512 vrho = _mm512_set1_ps(rho), v1mr = _mm512_set1_ps(1.0f - rho);
    const __m512 veps = _mm512_set1_ps(eps), vlr = _mm512_set1_ps(lr);
    const __m512 half = _mm512_set1_ps(0.5f), three_halves = _mm512_set1_ps(1.5f);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 gi = _mm512_maskz_loadu_ps(m, g + i);
        const __m512 vi = _mm512_fmadd_ps(vrho, _mm512_maskz_loadu_ps(m, v + i),
                                          _mm512_mul_ps(v1mr, _mm512_mul_ps(gi, gi)));
        _mm512_mask_storeu_ps(v + i, m, vi);
        const __m512 x = _mm512_add_ps(vi, veps);
        __m512 r = _mm512_rsqrt14_ps(x);
        r = _mm512_mul_ps(r, _mm512_fnmadd_ps(_mm512_mul_ps(half, x), _mm512_mul_ps(r, r),
                                              three_halves));
        _mm512_mask_storeu_ps(w + i, m, _mm512_fnmadd_ps(_mm512_mul_ps(vlr, gi), r,
                                                         _mm512_maskz_loadu_ps(m, w + i)));
    }
}
#endif

static rmsprop_fn rmsprop_kernel = rmsprop;

void fnn_optimizer_select(int level)
{
    rmsprop_kernel = rmsprop;
#if FNN_HAVE_X86_DISPATCH
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level >= FNN_LEVEL_AVX512 && avx2 && __builtin_cpu_supports("avx512f"))
        rmsprop_kernel = rmsprop_avx512;
    else if (level >= FNN_LEVEL_AVX2 && avx2)
        rmsprop_kernel = rmsprop_avx2;
#else
    (void)level;
#endif
}

FNN_CLONES
static void adam(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                 size_t n, float lr_t, float b1, float b2, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - b1) * (gi - m[i]);
        v[i] += (1.0f - b2) * (gi * gi - v[i]);
        w[i] -= lr_t * m[i] / (sqrtf(v[i]) + eps);
    }
}

void fnn_optimizer_step(fnn_optimizer *opt, float *w, const float *g, size_t n)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    fnn_optimizer_update(opt, w, g, n);
    fnn_fpu_restore(fpu);
}

void fnn_optimizer_update(fnn_optimizer *opt, float *w, const float *g, size_t n)
{
    opt->iterations++;
    switch (opt->kind) {
    case FNN_OPT_RMSPROP:
        rmsprop_kernel(w, g, opt->slot1, n, opt->lr, opt->rho, opt->epsilon);
        break;
    case FNN_OPT_ADAM: {
        const double t = (double)opt->iterations;
        const float lr_t = (float)(opt->lr * sqrt(1.0 - pow(opt->beta2, t)) /
                                   (1.0 - pow(opt->beta1, t)));
        adam(w, g, opt->slot1, opt->slot2, n, lr_t, opt->beta1, opt->beta2, opt->epsilon);
        break;
    }
    default:
        if (opt->momentum != 0.0f)
            sgd_momentum(w, g, opt->slot1, n, opt->lr, opt->momentum);
        else
            sgd(w, g, n, opt->lr);
        break;
    }
}
