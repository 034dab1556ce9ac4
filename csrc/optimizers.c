/* optimizers.c - the optimizer table (one update kernel per kind, Keras 3's rules) and
 * what all kinds share: learning-rate schedules, gradient clipping, weight decay.
 *
 * Speed: a kind's kernel is one fused pass over the flat parameter buffer (each
 * parameter, gradient and slot value read and written once), so that a 10M-parameter
 * update runs at memory bandwidth. Options choose a loop once per call, never per value:
 * an option left unset costs nothing, and the ones in use (clipping, weight decay) add a
 * pass of their own only when set. Hyper-parameters are read from the struct at every
 * call, so a change made between two steps takes effect at the next one.
 * Measured (2-core AMD EPYC, AVX-512): a 10M-parameter RMSprop update took 4.3-4.8 ms
 * (~45 GB/s counted) before and after the table; global_clipnorm, clipnorm, clipvalue or
 * weight decay each added ~1.1 ms; the article model's 100-epoch fit stayed at ~1.2 ms. */
#include <math.h>

#include "dispatch.h"
#include "fastnn.h"
#include "fpu.h"

/* ---- learning-rate schedules ------------------------------------------------------ */

static const double PI = 3.14159265358979323846;

double fnn_schedule_value(const fnn_schedule *s, double t)
{
    switch (s->kind) {
    case FNN_SCHEDULE_EXPONENTIAL: {
        double p = t / s->decay_steps;
        if (s->staircase) p = floor(p);
        return s->initial * pow(s->decay_rate, p);
    }
    case FNN_SCHEDULE_PIECEWISE: {
        /* Keras sums one indicator per interval: values[0] for t <= b[0], values[i] for
         * b[i-1] < t <= b[i], values[n] for t > b[n-1]. Summed the same way here, so that
         * unsorted boundaries give what Keras gives. */
        const int64_t nb = s->n_boundaries;
        const double *b = s->boundaries, *v = s->values;
        if (nb == 0) return v[0];
        double lr = 0.0;
        if (t <= b[0]) lr += v[0];
        if (t > b[nb - 1]) lr += v[nb];
        for (int64_t i = 1; i < nb; i++)
            if (t > b[i - 1] && t <= b[i]) lr += v[i];
        return lr;
    }
    case FNN_SCHEDULE_POLYNOMIAL: {
        /* cycle: decay over the first multiple of decay_steps at or above t (1 at t = 0);
         * otherwise hold end_learning_rate from t = decay_steps on. */
        double steps = s->decay_steps;
        if (s->cycle)
            steps *= t == 0.0 ? 1.0 : ceil(t / steps);
        else
            t = fmin(t, steps);
        return (s->initial - s->end) * pow(1.0 - t / steps, s->power) + s->end;
    }
    case FNN_SCHEDULE_INVERSE_TIME: {
        double p = t / s->decay_steps;
        if (s->staircase) p = floor(p);
        return s->initial / (1.0 + s->decay_rate * p);
    }
    case FNN_SCHEDULE_COSINE: {
        /* warmup: linear from initial to warmup_target over warmup_steps, then the cosine
         * decay from warmup_target; t held at the end of the decay. */
        double from = s->initial;
        if (s->warmup) {
            t = fmin(t, s->decay_steps + s->warmup_steps);
            if (t < s->warmup_steps)
                return (s->warmup_target - s->initial) * (t / s->warmup_steps) + s->initial;
            t -= s->warmup_steps;
            from = s->warmup_target;
        } else {
            t = fmin(t, s->decay_steps);
        }
        const double cosine = 0.5 * (1.0 + cos(PI * t / s->decay_steps));
        return from * ((1.0 - s->alpha) * cosine + s->alpha);
    }
    default:
        return s->initial;
    }
}

/* ---- clipping and weight decay (passes of their own, run only when set) ------------ */

/* sum of g^2 in double over eight lanes: independent lanes let the loop vectorise
 * without -ffast-math's reassociation, and double keeps 1e7 squares accurate. */
FNN_CLONES
static double sum_squares(const float *restrict g, size_t n)
{
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += (double)g[i + j] * (double)g[i + j];
    double s = 0.0;
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    for (int j = 0; j < 8; j++) s += lane[j];
    return s;
}

FNN_CLONES
static void scale(float *restrict g, size_t n, float k)
{
    for (size_t i = 0; i < n; i++) g[i] *= k;
}

FNN_CLONES
static void clamp(float *restrict g, size_t n, float c)
{
    for (size_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = x < -c ? -c : (x > c ? c : x); /* NaN stays NaN */
    }
}

/* Keras' decoupled weight decay: w -= w * (weight_decay * lr), before the update. */
FNN_CLONES
static void decay(float *restrict w, size_t n, float k)
{
    for (size_t i = 0; i < n; i++) w[i] -= w[i] * k;
}

/* Scales g to L2 norm c when its norm exceeds c (Keras: g * c / max(norm, c)). A NaN
 * norm gives NaN gradients, an infinite one zeros (and NaN where g is infinite). */
static void clip_norm(float *g, size_t n, double c)
{
    const double norm = sqrt(sum_squares(g, n));
    if (!(norm <= c)) scale(g, n, (float)(c / norm));
}

static void clip_gradients(const fnn_optimizer *opt, float *g, size_t n)
{
    const double c = opt->clip_threshold;
    switch (opt->clip) {
    case FNN_CLIP_VALUE:
        clamp(g, n, opt->clip_threshold);
        break;
    case FNN_CLIP_GLOBAL_NORM: {
        /* Keras: g *= c * min(1/norm, 1/c), NaN for a non-finite norm */
        const double norm = sqrt(sum_squares(g, n));
        if (!isfinite(norm))
            scale(g, n, NAN);
        else if (norm > c)
            scale(g, n, (float)(c / norm));
        break;
    }
    case FNN_CLIP_NORM:
        for (int64_t v = 0; v < opt->n_vars; v++) {
            const size_t lo = (size_t)opt->var_bounds[v], hi = (size_t)opt->var_bounds[v + 1];
            if (lo >= n) break;
            clip_norm(g + lo, (hi < n ? hi : n) - lo, c);
        }
        break;
    default:
        break;
    }
}

static void decay_weights(const fnn_optimizer *opt, float *w, size_t n, double lr)
{
    const float k = (float)(opt->weight_decay * lr);
    if (!opt->decay_mask) {
        decay(w, n, k);
        return;
    }
    for (int64_t v = 0; v < opt->n_vars; v++) {
        const size_t lo = (size_t)opt->var_bounds[v], hi = (size_t)opt->var_bounds[v + 1];
        if (lo >= n) break;
        if (opt->decay_mask[v]) decay(w + lo, (hi < n ? hi : n) - lo, k);
    }
}

/* ---- SGD: slot 0 = velocity ---------------------------------------------------------- */

FNN_CLONES
static void sgd_plain(float *restrict w, const float *restrict g, size_t n, float lr)
{
    for (size_t i = 0; i < n; i++) w[i] -= lr * g[i];
}

FNN_CLONES
static void sgd_momentum(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                         float lr, float momentum)
{
    /* v = momentum * v - lr * g; w += v */
    for (size_t i = 0; i < n; i++) {
        v[i] = momentum * v[i] - lr * g[i];
        w[i] += v[i];
    }
}

FNN_CLONES
static void sgd_nesterov(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                         float lr, float momentum)
{
    /* v = momentum * v - lr * g; w += momentum * v - lr * g */
    for (size_t i = 0; i < n; i++) {
        const float step = lr * g[i];
        v[i] = momentum * v[i] - step;
        w[i] += momentum * v[i] - step;
    }
}

static void sgd_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    if (opt->momentum == 0.0f)
        sgd_plain(w, g, n, (float)lr);
    else if (opt->nesterov)
        sgd_nesterov(w, g, opt->slots[0], n, (float)lr, opt->momentum);
    else
        sgd_momentum(w, g, opt->slots[0], n, (float)lr, opt->momentum);
}

/* ---- the kinds with a root or a quotient: their kernels, one per rule and level ------- */

/* The scalars a kernel takes, float32 as Keras holds them. */
typedef struct {
    float lr;   /* the step size: the learning rate, with Adam's or Adamax's bias corrections */
    float rho, momentum, eps, b1, b2;
    float c_m, c_g, c_v; /* Nadam's factors (see nadam_update) */
} step_args;

/* A kernel updates n parameters w from their gradient g and its kind's slots (opt->slots:
 * each as long as w, NULL beyond the kind's), touching nothing else. Each names the slots
 * its rule uses and ignores the others. */
typedef void (*kernel_fn)(float *w, const float *g, float *s0, float *s1, float *s2, size_t n,
                          const step_args *h);

/* The rules, as indices into a level's table. RMSprop's four are in the order
 * K_RMSPROP + momentum + 2 * centered. */
enum {
    K_RMSPROP, K_RMSPROP_MOMENTUM, K_RMSPROP_CENTERED, K_RMSPROP_CENTERED_MOMENTUM,
    K_ADAM, K_ADAM_AMSGRAD, K_NADAM, K_ADAMAX, K_ADAGRAD, N_KERNELS
};

/* Level 0: plain loops, vectorised by the compiler; sqrtf and the division are exact. */

/* RMSprop, slots v, m, a: v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + eps): epsilon
 * inside the root, as Keras (PyTorch adds it outside). */
FNN_CLONES
static void rmsprop(float *restrict w, const float *restrict g, float *restrict v,
                    float *restrict m, float *restrict a, size_t n, const step_args *h)
{
    const float one_minus_rho = 1.0f - h->rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        const float vi = h->rho * v[i] + one_minus_rho * gi * gi;
        v[i] = vi;
        w[i] -= h->lr * gi / sqrtf(vi + h->eps);
    }
}

/* With momentum: step = lr*g/sqrt(v + eps); m = momentum*m + step; w -= m. */
FNN_CLONES
static void rmsprop_momentum(float *restrict w, const float *restrict g, float *restrict v,
                             float *restrict m, float *restrict a, size_t n, const step_args *h)
{
    const float one_minus_rho = 1.0f - h->rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = h->rho * v[i] + one_minus_rho * gi * gi;
        m[i] = h->momentum * m[i] + h->lr * gi / sqrtf(v[i] + h->eps);
        w[i] -= m[i];
    }
}

/* Centered: a = rho*a + (1-rho)*g estimates the mean gradient, and the root is taken of
 * the variance estimate: w -= lr*g/sqrt(v - a^2 + eps). */
FNN_CLONES
static void rmsprop_centered(float *restrict w, const float *restrict g, float *restrict v,
                             float *restrict m, float *restrict a, size_t n, const step_args *h)
{
    const float one_minus_rho = 1.0f - h->rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = h->rho * v[i] + one_minus_rho * gi * gi;
        a[i] = h->rho * a[i] + one_minus_rho * gi;
        w[i] -= h->lr * gi / sqrtf(v[i] - a[i] * a[i] + h->eps);
    }
}

FNN_CLONES
static void rmsprop_centered_momentum(float *restrict w, const float *restrict g,
                                      float *restrict v, float *restrict m, float *restrict a,
                                      size_t n, const step_args *h)
{
    const float one_minus_rho = 1.0f - h->rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = h->rho * v[i] + one_minus_rho * gi * gi;
        a[i] = h->rho * a[i] + one_minus_rho * gi;
        m[i] = h->momentum * m[i] + h->lr * gi / sqrtf(v[i] - a[i] * a[i] + h->eps);
        w[i] -= m[i];
    }
}

/* Adam, slots m, v, v_hat: m += (1-b1)(g - m); v += (1-b2)(g^2 - v);
 * w -= alpha*m/(sqrt(v) + eps), with alpha = lr*sqrt(1 - b2^t)/(1 - b1^t) (h->lr) folding
 * in both bias corrections. */
FNN_CLONES
static void adam(float *restrict w, const float *restrict g, float *restrict m,
                 float *restrict v, float *restrict vhat, size_t n, const step_args *h)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - h->b1) * (gi - m[i]);
        v[i] += (1.0f - h->b2) * (gi * gi - v[i]);
        w[i] -= h->lr * m[i] / (sqrtf(v[i]) + h->eps);
    }
}

/* AMSGrad: the root is taken of v_hat = max(v_hat, v), the largest v so far. */
FNN_CLONES
static void adam_amsgrad(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, float *restrict vhat, size_t n, const step_args *h)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - h->b1) * (gi - m[i]);
        v[i] += (1.0f - h->b2) * (gi * gi - v[i]);
        vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
        w[i] -= h->lr * m[i] / (sqrtf(vhat[i]) + h->eps);
    }
}

/* Nadam, slots m, v: as Adam, then w -= lr (c_m m + c_g g)/(sqrt(c_v v) + eps). */
FNN_CLONES
static void nadam(float *restrict w, const float *restrict g, float *restrict m,
                  float *restrict v, float *restrict unused, size_t n, const step_args *h)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - h->b1) * (gi - m[i]);
        v[i] += (1.0f - h->b2) * (gi * gi - v[i]);
        w[i] -= h->lr * (h->c_m * m[i] + h->c_g * gi) / (sqrtf(v[i] * h->c_v) + h->eps);
    }
}

/* Adamax, slots m, u (the decayed infinity norm): m += (1-b1)(g - m);
 * u = max(b2*u, |g|); w -= lr/(1 - b1^t) (h->lr) * m/(u + eps) */
FNN_CLONES
static void adamax(float *restrict w, const float *restrict g, float *restrict m,
                   float *restrict u, float *restrict unused, size_t n, const step_args *h)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i], ag = fabsf(gi), bu = h->b2 * u[i];
        m[i] += (1.0f - h->b1) * (gi - m[i]);
        u[i] = bu > ag ? bu : ag;
        w[i] -= h->lr * m[i] / (u[i] + h->eps);
    }
}

/* Adagrad, slot acc: acc += g^2; w -= lr*g/sqrt(acc + eps) */
FNN_CLONES
static void adagrad(float *restrict w, const float *restrict g, float *restrict acc,
                    float *restrict unused1, float *restrict unused2, size_t n, const step_args *h)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        acc[i] += gi * gi;
        w[i] -= h->lr * gi / sqrtf(acc[i] + h->eps);
    }
}

static const kernel_fn scalar_kernels[N_KERNELS] = {
    rmsprop, rmsprop_momentum, rmsprop_centered, rmsprop_centered_momentum,
    adam, adam_amsgrad, nadam, adamax, adagrad
};

#if FNN_HAVE_X86_DISPATCH
/* Levels 1 (AVX2+FMA) and 2 (AVX-512F): the same rules with the quotients and roots taken
 * from the hardware's estimates refined by a Newton step (within an ulp or two of the
 * exact ones). sqrt and divide share one slow unit: with both, the exact loops run at
 * ~9 cycles per 8 values, and a small model's step spent ~10% of its time there. Large
 * updates are memory-bound either way. Measured (AMD EPYC Zen 4, per value, in cache):
 * RMSprop 0.18 ns by a refined 1/sqrt, 0.22 ns by an exact root and a refined
 * reciprocal, 0.28 ns exact; Adam, whose epsilon lies outside the root, 0.20-0.24 ns by
 * an exact root and a refined reciprocal, 0.27 ns refining both, 0.28 ns exact. A tail
 * runs the full vectors' code on masked lanes: nothing beyond n is read or written, and
 * a value's update does not depend on where the range it lies in starts.
 *
 * Each kernel is written once, in FNN_OPT_SIMD_KERNELS(L), over what a level L gives:
 * L_v, a vector of L_W floats (arithmetic by operators); L_lanes, the lanes a step
 * covers, L_all() or the first `left` < L_W of L_tail(left); L_load, L_store, L_set
 * (a broadcast), L_max, L_sqrt (exact); the estimates L_rsqrt_estimate and
 * L_rcp_estimate. A step loads all it needs before it stores: buffers of the same
 * alignment put a slot's value and the next load's address on the same low 12 bits,
 * and a load behind such a store waits for it (AMSGrad over 4096 values took 3.4 us
 * with the loads interleaved, 1.2 us loaded first). */
#define FNN_INLINE static inline __attribute__((always_inline))

/* AVX2: 12-bit estimates. A tail's loads are masked (vmaskmov); its stores are a 4-, a 2-
 * and a 1-value store as `left` needs them, since vmaskmov as a store is microcoded on
 * AMD (~4 ns a store measured on Zen 4, where a small model's whole update takes ~50 ns). */
typedef __m256 avx2_v;
typedef struct { __m256i mask; int left; } avx2_lanes; /* left = 8: all */
enum { avx2_W = 8 };
#define avx2_ATTR AVX2
AVX2 FNN_INLINE avx2_lanes avx2_all(void)
{
    const avx2_lanes k = {_mm256_set1_epi32(-1), 8};
    return k;
}
AVX2 FNN_INLINE avx2_lanes avx2_tail(size_t left)
{
    const avx2_lanes k = {_mm256_cmpgt_epi32(_mm256_set1_epi32((int)left),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                          (int)left};
    return k;
}
AVX2 FNN_INLINE __m256 avx2_load(avx2_lanes k, const float *p)
{
    return k.left == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k.mask);
}
AVX2 FNN_INLINE void avx2_store(avx2_lanes k, float *p, __m256 x)
{
    if (k.left == 8) {
        _mm256_storeu_ps(p, x);
        return;
    }
    __m128 part = _mm256_castps256_ps128(x);
    if (k.left & 4) {
        _mm_storeu_ps(p, part);
        part = _mm256_extractf128_ps(x, 1);
        p += 4;
    }
    if (k.left & 2) {
        _mm_storel_epi64((__m128i *)p, _mm_castps_si128(part));
        part = _mm_movehl_ps(part, part);
        p += 2;
    }
    if (k.left & 1) _mm_store_ss(p, part);
}
AVX2 FNN_INLINE __m256 avx2_set(float x) { return _mm256_set1_ps(x); }
AVX2 FNN_INLINE __m256 avx2_max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
AVX2 FNN_INLINE __m256 avx2_sqrt(__m256 x) { return _mm256_sqrt_ps(x); }
AVX2 FNN_INLINE __m256 avx2_rsqrt_estimate(__m256 x) { return _mm256_rsqrt_ps(x); }
AVX2 FNN_INLINE __m256 avx2_rcp_estimate(__m256 x) { return _mm256_rcp_ps(x); }

/* AVX-512F: a mask register makes every load and store masked at no cost. 14-bit
 * estimates (one Newton step gives ~2^-27). */
typedef __m512 avx512_v;
typedef __mmask16 avx512_lanes;
enum { avx512_W = 16 };
#define avx512_ATTR AVX512
AVX512 FNN_INLINE avx512_lanes avx512_all(void) { return (__mmask16)0xFFFF; }
AVX512 FNN_INLINE avx512_lanes avx512_tail(size_t left) { return (__mmask16)((1u << left) - 1u); }
AVX512 FNN_INLINE __m512 avx512_load(avx512_lanes k, const float *p)
{
    return _mm512_maskz_loadu_ps(k, p);
}
AVX512 FNN_INLINE void avx512_store(avx512_lanes k, float *p, __m512 x)
{
    _mm512_mask_storeu_ps(p, k, x);
}
AVX512 FNN_INLINE __m512 avx512_set(float x) { return _mm512_set1_ps(x); }
AVX512 FNN_INLINE __m512 avx512_max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
AVX512 FNN_INLINE __m512 avx512_sqrt(__m512 x) { return _mm512_sqrt_ps(x); }
AVX512 FNN_INLINE __m512 avx512_rsqrt_estimate(__m512 x) { return _mm512_rsqrt14_ps(x); }
AVX512 FNN_INLINE __m512 avx512_rcp_estimate(__m512 x) { return _mm512_rcp14_ps(x); }

/* A level's kernels: one step function per family of rules (RMSprop's four, Adam's three,
 * Adamax, Adagrad) does one vector at index i from the slots s0, s1, s2; L_run(rule, ...)
 * runs a rule's step over the full vectors, then the tail. Every L_<rule> is L_run with
 * the rule fixed, so that inlining specialises the step and its flags away; broadcasts
 * of h's fields are then loop-invariant (h is a copy). */
#define FNN_OPT_SIMD_RULE(L, NAME, RULE)                                                     \
L##_ATTR static void L##_##NAME(float *w, const float *g, float *s0, float *s1, float *s2,  \
                                size_t n, const step_args *h)                                \
{                                                                                            \
    L##_run(RULE, w, g, s0, s1, s2, n, *h);                                                  \
}

#define FNN_OPT_SIMD_KERNELS(L)                                                              \
/* 1/sqrt(x): r (1.5 - 0.5 x r^2), r the estimate */                                         \
L##_ATTR FNN_INLINE L##_v L##_rsqrt(L##_v x)                                                 \
{                                                                                            \
    const L##_v r = L##_rsqrt_estimate(x);                                                   \
    return r * (L##_set(1.5f) - L##_set(0.5f) * x * (r * r));                                \
}                                                                                            \
/* 1/x: r + r (1 - x r), r the estimate */                                                   \
L##_ATTR FNN_INLINE L##_v L##_rcp(L##_v x)                                                   \
{                                                                                            \
    const L##_v r = L##_rcp_estimate(x);                                                     \
    return r + r * (L##_set(1.0f) - x * r);                                                  \
}                                                                                            \
                                                                                             \
/* RMSprop, slots v, m, a */                                                                 \
L##_ATTR FNN_INLINE void L##_rmsprop_step(L##_lanes k, size_t i, float *w, const float *g,   \
                                         float *v, float *m, float *a, step_args h,          \
                                         int momentum, int centered)                         \
{                                                                                            \
    const L##_v gi = L##_load(k, g + i), vo = L##_load(k, v + i), wo = L##_load(k, w + i);   \
    const L##_v ao = centered ? L##_load(k, a + i) : gi;                                     \
    const L##_v mo = momentum ? L##_load(k, m + i) : gi;                                     \
    const L##_v rho = L##_set(h.rho), c = L##_set(1.0f - h.rho), eps = L##_set(h.eps);       \
    const L##_v vi = rho * vo + c * (gi * gi), ai = rho * ao + c * gi;                       \
    const L##_v x = centered ? vi - ai * ai + eps : vi + eps;                                \
    const L##_v step = L##_set(h.lr) * gi * L##_rsqrt(x);                                    \
    const L##_v mi = L##_set(h.momentum) * mo + step;                                        \
    L##_store(k, v + i, vi);                                                                 \
    if (centered) L##_store(k, a + i, ai);                                                   \
    if (momentum) L##_store(k, m + i, mi);                                                   \
    L##_store(k, w + i, wo - (momentum ? mi : step));                                        \
}                                                                                            \
                                                                                             \
/* Adam (AMSGrad: the root of v_hat = max(v_hat, v)) and Nadam (numerator c_m m + c_g g,     \
 * root of c_v v), slots m, v, v_hat; 1/(sqrt(x) + eps) by the exact root and a refined      \
 * reciprocal */                                                                             \
L##_ATTR FNN_INLINE void L##_adam_step(L##_lanes k, size_t i, float *w, const float *g,      \
                                      float *m, float *v, float *vhat, step_args h,          \
                                      int amsgrad, int nesterov)                             \
{                                                                                            \
    const L##_v gi = L##_load(k, g + i), mo = L##_load(k, m + i), vo = L##_load(k, v + i);   \
    const L##_v wo = L##_load(k, w + i), vho = amsgrad ? L##_load(k, vhat + i) : vo;         \
    const L##_v mi = mo + L##_set(1.0f - h.b1) * (gi - mo);                                  \
    const L##_v vi = vo + L##_set(1.0f - h.b2) * (gi * gi - vo);                             \
    const L##_v vhi = L##_max(vho, vi);                                                      \
    L##_v x = amsgrad ? vhi : vi, num = mi;                                                  \
    if (nesterov) {                                                                          \
        x = x * L##_set(h.c_v);                                                              \
        num = L##_set(h.c_m) * mi + L##_set(h.c_g) * gi;                                     \
    }                                                                                        \
    const L##_v step = L##_set(h.lr) * num * L##_rcp(L##_sqrt(x) + L##_set(h.eps));          \
    L##_store(k, m + i, mi);                                                                 \
    L##_store(k, v + i, vi);                                                                 \
    if (amsgrad) L##_store(k, vhat + i, vhi);                                                \
    L##_store(k, w + i, wo - step);                                                          \
}                                                                                            \
                                                                                             \
/* Adamax, slots m, u */                                                                     \
L##_ATTR FNN_INLINE void L##_adamax_step(L##_lanes k, size_t i, float *w, const float *g,    \
                                        float *m, float *u, step_args h)                     \
{                                                                                            \
    const L##_v gi = L##_load(k, g + i), mo = L##_load(k, m + i), uo = L##_load(k, u + i);   \
    const L##_v wo = L##_load(k, w + i);                                                     \
    const L##_v mi = mo + L##_set(1.0f - h.b1) * (gi - mo);                                  \
    const L##_v ui = L##_max(L##_set(h.b2) * uo, L##_max(gi, -gi));                          \
    const L##_v step = L##_set(h.lr) * mi * L##_rcp(ui + L##_set(h.eps));                    \
    L##_store(k, m + i, mi);                                                                 \
    L##_store(k, u + i, ui);                                                                 \
    L##_store(k, w + i, wo - step);                                                          \
}                                                                                            \
                                                                                             \
/* Adagrad, slot acc */                                                                      \
L##_ATTR FNN_INLINE void L##_adagrad_step(L##_lanes k, size_t i, float *w, const float *g,   \
                                         float *acc, step_args h)                            \
{                                                                                            \
    const L##_v gi = L##_load(k, g + i), wo = L##_load(k, w + i);                            \
    const L##_v ai = L##_load(k, acc + i) + gi * gi;                                         \
    const L##_v step = L##_set(h.lr) * gi * L##_rsqrt(ai + L##_set(h.eps));                  \
    L##_store(k, acc + i, ai);                                                               \
    L##_store(k, w + i, wo - step);                                                          \
}                                                                                            \
                                                                                             \
L##_ATTR FNN_INLINE void L##_step(int rule, L##_lanes k, size_t i, float *w, const float *g, \
                                  float *s0, float *s1, float *s2, step_args h)              \
{                                                                                            \
    switch (rule) {                                                                          \
    case K_RMSPROP: case K_RMSPROP_MOMENTUM: case K_RMSPROP_CENTERED:                        \
    case K_RMSPROP_CENTERED_MOMENTUM:                                                        \
        L##_rmsprop_step(k, i, w, g, s0, s1, s2, h, (rule - K_RMSPROP) & 1,                  \
                         (rule - K_RMSPROP) >> 1);                                           \
        break;                                                                               \
    case K_ADAM: case K_ADAM_AMSGRAD: case K_NADAM:                                          \
        L##_adam_step(k, i, w, g, s0, s1, s2, h, rule == K_ADAM_AMSGRAD, rule == K_NADAM);   \
        break;                                                                               \
    case K_ADAMAX:                                                                           \
        L##_adamax_step(k, i, w, g, s0, s1, h);                                              \
        break;                                                                               \
    default:                                                                                 \
        L##_adagrad_step(k, i, w, g, s0, h);                                                 \
    }                                                                                        \
}                                                                                            \
L##_ATTR FNN_INLINE void L##_run(int rule, float *w, const float *g, float *s0, float *s1,   \
                                 float *s2, size_t n, step_args h)                           \
{                                                                                            \
    size_t i = 0;                                                                            \
    for (; i + L##_W <= n; i += L##_W) L##_step(rule, L##_all(), i, w, g, s0, s1, s2, h);    \
    if (i < n) L##_step(rule, L##_tail(n - i), i, w, g, s0, s1, s2, h);                      \
}                                                                                            \
                                                                                             \
FNN_OPT_SIMD_RULE(L, rmsprop, K_RMSPROP)                                                     \
FNN_OPT_SIMD_RULE(L, rmsprop_momentum, K_RMSPROP_MOMENTUM)                                   \
FNN_OPT_SIMD_RULE(L, rmsprop_centered, K_RMSPROP_CENTERED)                                   \
FNN_OPT_SIMD_RULE(L, rmsprop_centered_momentum, K_RMSPROP_CENTERED_MOMENTUM)                 \
FNN_OPT_SIMD_RULE(L, adam, K_ADAM)                                                           \
FNN_OPT_SIMD_RULE(L, adam_amsgrad, K_ADAM_AMSGRAD)                                           \
FNN_OPT_SIMD_RULE(L, nadam, K_NADAM)                                                         \
FNN_OPT_SIMD_RULE(L, adamax, K_ADAMAX)                                                       \
FNN_OPT_SIMD_RULE(L, adagrad, K_ADAGRAD)                                                     \
                                                                                             \
static const kernel_fn L##_kernels[N_KERNELS] = {                                            \
    L##_rmsprop, L##_rmsprop_momentum, L##_rmsprop_centered, L##_rmsprop_centered_momentum,  \
    L##_adam, L##_adam_amsgrad, L##_nadam, L##_adamax, L##_adagrad                           \
};

FNN_OPT_SIMD_KERNELS(avx2)
FNN_OPT_SIMD_KERNELS(avx512)
#endif

/* the level's table, picked by fnn_optimizer_select */
static const kernel_fn *kernels = scalar_kernels;

void fnn_optimizer_select(int level)
{
    kernels = scalar_kernels;
#if FNN_HAVE_X86_DISPATCH
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level >= FNN_LEVEL_AVX512 && avx2 && __builtin_cpu_supports("avx512f"))
        kernels = avx512_kernels;
    else if (level >= FNN_LEVEL_AVX2 && avx2)
        kernels = avx2_kernels;
#else
    (void)level;
#endif
}

/* ---- the kinds' updates: this step's scalars, then the level's kernel ------------------ */

static void run_kernel(int rule, fnn_optimizer *opt, float *w, const float *g, size_t n,
                       const step_args *h)
{
    kernels[rule](w, g, opt->slots[0], opt->slots[1], opt->slots[2], n, h);
}

static void rmsprop_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const step_args h = {.lr = (float)lr, .rho = opt->rho, .momentum = opt->momentum,
                         .eps = opt->epsilon};
    /* Keras takes momentum only when > 0 */
    run_kernel(K_RMSPROP + (opt->momentum > 0.0f) + 2 * (opt->centered != 0), opt, w, g, n, &h);
}

static void adam_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1);
    const step_args h = {
        .lr = (float)(lr * sqrt(1.0 - pow(opt->beta2, t)) / (1.0 - pow(opt->beta1, t))),
        .eps = opt->epsilon, .b1 = opt->beta1, .b2 = opt->beta2};
    run_kernel(opt->amsgrad ? K_ADAM_AMSGRAD : K_ADAM, opt, w, g, n, &h);
}

static void adagrad_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const step_args h = {.lr = (float)lr, .eps = opt->epsilon};
    run_kernel(K_ADAGRAD, opt, w, g, n, &h);
}

static void adagrad_init(fnn_optimizer *opt, size_t n)
{
    for (size_t i = 0; i < n; i++) opt->slots[0][i] = opt->initial_accumulator;
}

static void adamax_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1);
    const step_args h = {.lr = (float)(lr / (1.0 - pow(opt->beta1, t))), .eps = opt->epsilon,
                         .b1 = opt->beta1, .b2 = opt->beta2};
    run_kernel(K_ADAMAX, opt, w, g, n, &h);
}

/* Nadam: Adam with Nesterov momentum (Dozat), as Keras writes it: with the momentum
 * schedule u_t = b1 (1 - 0.5 * 0.96^t) and P_t = u_1 ... u_t (u_product),
 *   m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t)
 *   v_hat = v / (1 - b2^t);  w -= lr m_hat / (sqrt(v_hat) + eps)
 * c_m, c_g and c_v are those three factors, computed once per step. */
static void nadam_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1), b1 = opt->beta1;
    const double u_t = b1 * (1.0 - 0.5 * pow(0.96, t));
    const double u_next = b1 * (1.0 - 0.5 * pow(0.96, t + 1.0));
    const double p = opt->u_product * u_t; /* nadam_advance keeps it once the step is done */
    const step_args h = {.lr = (float)lr, .eps = opt->epsilon, .b1 = opt->beta1,
                         .b2 = opt->beta2, .c_m = (float)(u_next / (1.0 - p * u_next)),
                         .c_g = (float)((1.0 - u_t) / (1.0 - p)),
                         .c_v = (float)(1.0 / (1.0 - pow(opt->beta2, t)))};
    run_kernel(K_NADAM, opt, w, g, n, &h);
}

static void nadam_advance(fnn_optimizer *opt)
{
    const double t = (double)(opt->iterations + 1);
    opt->u_product *= opt->beta1 * (1.0 - 0.5 * pow(0.96, t));
}

static void nadam_init(fnn_optimizer *opt, size_t n)
{
    (void)n;
    opt->u_product = 1.0;
}

/* ---- the table, and the update every kind shares ------------------------------------- */

const fnn_optimizer_kind fnn_optimizer_kinds[FNN_OPT_KINDS] = {
    [FNN_OPT_SGD] = {"sgd", 1, sgd_update, NULL},
    [FNN_OPT_RMSPROP] = {"rmsprop", 3, rmsprop_update, NULL},
    [FNN_OPT_ADAM] = {"adam", 3, adam_update, NULL},
    [FNN_OPT_ADAGRAD] = {"adagrad", 1, adagrad_update, adagrad_init},
    [FNN_OPT_ADAMAX] = {"adamax", 2, adamax_update, NULL},
    [FNN_OPT_NADAM] = {"nadam", 2, nadam_update, nadam_init, nadam_advance},
};

void fnn_optimizer_init(fnn_optimizer *opt, size_t n)
{
    opt->iterations = 0;
    if (fnn_optimizer_kinds[opt->kind].init) fnn_optimizer_kinds[opt->kind].init(opt, n);
}

void fnn_optimizer_update(fnn_optimizer *opt, float *w, float *g, size_t n)
{
    /* Keras evaluates the schedule at iterations before counting this step, clips the
     * gradients, decays the weights with that same rate, then runs the update. */
    const double lr = fnn_optimizer_lr(opt);
    if (opt->clip != FNN_CLIP_NONE) clip_gradients(opt, g, n);
    if (opt->weight_decay != 0.0f) decay_weights(opt, w, n, lr);
    fnn_optimizer_kinds[opt->kind].update(opt, w, g, n, lr);
    fnn_optimizer_finish(opt);
}

int fnn_optimizer_elementwise(const fnn_optimizer *opt)
{
    return opt->clip == FNN_CLIP_NONE || opt->clip == FNN_CLIP_VALUE;
}

double fnn_optimizer_lr(const fnn_optimizer *opt)
{
    return opt->schedule.kind == FNN_SCHEDULE_NONE
               ? (double)opt->lr
               : fnn_schedule_value(&opt->schedule, (double)opt->iterations);
}

void fnn_optimizer_update_range(const fnn_optimizer *opt, float *w, float *g, size_t begin,
                                size_t end, double lr)
{
    if (end <= begin) return;
    fnn_optimizer o = *opt; /* the kernels see the range as whole buffers */
    for (int i = 0; i < FNN_OPT_MAX_SLOTS; i++)
        if (o.slots[i]) o.slots[i] += begin;
    if (opt->clip == FNN_CLIP_VALUE) clamp(g + begin, end - begin, opt->clip_threshold);
    if (opt->weight_decay != 0.0f) {
        const float k = (float)(opt->weight_decay * lr);
        if (!opt->decay_mask) decay(w + begin, end - begin, k);
        else
            for (int64_t v = 0; v < opt->n_vars; v++) { /* each variable's part in range */
                const size_t lo = (size_t)opt->var_bounds[v], hi = (size_t)opt->var_bounds[v + 1];
                const size_t a = lo > begin ? lo : begin, b = hi < end ? hi : end;
                if (a < b && opt->decay_mask[v]) decay(w + a, b - a, k);
            }
    }
    fnn_optimizer_kinds[opt->kind].update(&o, w + begin, g + begin, end - begin, lr);
}

void fnn_optimizer_finish(fnn_optimizer *opt)
{
    if (fnn_optimizer_kinds[opt->kind].advance) fnn_optimizer_kinds[opt->kind].advance(opt);
    opt->iterations++;
}

void fnn_optimizer_step(fnn_optimizer *opt, float *w, float *g, size_t n)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    fnn_optimizer_update(opt, w, g, n);
    fnn_fpu_restore(fpu);
}
