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

/* ---- RMSprop: slots velocity v, momentum m, average gradient a ------------------------ */

typedef void (*rmsprop_fn)(float *w, const float *g, float *v, size_t n, float lr, float rho,
                           float eps);

FNN_CLONES
static void rmsprop(float *restrict w, const float *restrict g, float *restrict v, size_t n,
                    float lr, float rho, float eps)
{
    /* v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + eps): epsilon inside the root, as Keras
     * (PyTorch adds it outside). */
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

/* With momentum: step = lr*g/sqrt(v + eps); m = momentum*m + step; w -= m. */
FNN_CLONES
static void rmsprop_momentum(float *restrict w, const float *restrict g, float *restrict v,
                             float *restrict m, size_t n, float lr, float rho, float momentum,
                             float eps)
{
    const float one_minus_rho = 1.0f - rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = rho * v[i] + one_minus_rho * gi * gi;
        m[i] = momentum * m[i] + lr * gi / sqrtf(v[i] + eps);
        w[i] -= m[i];
    }
}

/* Centered: a = rho*a + (1-rho)*g estimates the mean gradient, and the root is taken of
 * the variance estimate: w -= lr*g/sqrt(v - a^2 + eps). */
FNN_CLONES
static void rmsprop_centered(float *restrict w, const float *restrict g, float *restrict v,
                             float *restrict a, size_t n, float lr, float rho, float eps)
{
    const float one_minus_rho = 1.0f - rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = rho * v[i] + one_minus_rho * gi * gi;
        a[i] = rho * a[i] + one_minus_rho * gi;
        w[i] -= lr * gi / sqrtf(v[i] - a[i] * a[i] + eps);
    }
}

FNN_CLONES
static void rmsprop_centered_momentum(float *restrict w, const float *restrict g,
                                      float *restrict v, float *restrict m, float *restrict a,
                                      size_t n, float lr, float rho, float momentum, float eps)
{
    const float one_minus_rho = 1.0f - rho;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        v[i] = rho * v[i] + one_minus_rho * gi * gi;
        a[i] = rho * a[i] + one_minus_rho * gi;
        m[i] = momentum * m[i] + lr * gi / sqrtf(v[i] - a[i] * a[i] + eps);
        w[i] -= m[i];
    }
}

static void rmsprop_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    float *const *s = opt->slots;
    const float l = (float)lr;
    /* Keras takes momentum only when > 0 */
    const int momentum = opt->momentum > 0.0f;
    if (!momentum && !opt->centered)
        rmsprop_kernel(w, g, s[0], n, l, opt->rho, opt->epsilon);
    else if (!opt->centered)
        rmsprop_momentum(w, g, s[0], s[1], n, l, opt->rho, opt->momentum, opt->epsilon);
    else if (!momentum)
        rmsprop_centered(w, g, s[0], s[2], n, l, opt->rho, opt->epsilon);
    else
        rmsprop_centered_momentum(w, g, s[0], s[1], s[2], n, l, opt->rho, opt->momentum,
                                  opt->epsilon);
}

/* ---- Adam (and AdamW): slots m, v, v_hat (amsgrad) ------------------------------------- */

/* m += (1-b1)(g - m); v += (1-b2)(g^2 - v); w -= alpha*m/(sqrt(v) + eps), with
 * alpha = lr*sqrt(1 - b2^t)/(1 - b1^t) folding in both bias corrections. */
FNN_CLONES
static void adam(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                 size_t n, float alpha, float b1, float b2, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - b1) * (gi - m[i]);
        v[i] += (1.0f - b2) * (gi * gi - v[i]);
        w[i] -= alpha * m[i] / (sqrtf(v[i]) + eps);
    }
}

/* AMSGrad: the root is taken of v_hat = max(v_hat, v), the largest v so far. */
FNN_CLONES
static void adam_amsgrad(float *restrict w, const float *restrict g, float *restrict m,
                         float *restrict v, float *restrict vhat, size_t n, float alpha, float b1,
                         float b2, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - b1) * (gi - m[i]);
        v[i] += (1.0f - b2) * (gi * gi - v[i]);
        vhat[i] = vhat[i] > v[i] ? vhat[i] : v[i];
        w[i] -= alpha * m[i] / (sqrtf(vhat[i]) + eps);
    }
}

static void adam_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1);
    const float alpha = (float)(lr * sqrt(1.0 - pow(opt->beta2, t)) / (1.0 - pow(opt->beta1, t)));
    float *const *s = opt->slots;
    if (opt->amsgrad)
        adam_amsgrad(w, g, s[0], s[1], s[2], n, alpha, opt->beta1, opt->beta2, opt->epsilon);
    else
        adam(w, g, s[0], s[1], n, alpha, opt->beta1, opt->beta2, opt->epsilon);
}

/* ---- Adagrad: slot accumulator, starting at initial_accumulator_value ---------------- */

/* acc += g^2; w -= lr*g/sqrt(acc + eps) */
FNN_CLONES
static void adagrad(float *restrict w, const float *restrict g, float *restrict acc, size_t n,
                    float lr, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        acc[i] += gi * gi;
        w[i] -= lr * gi / sqrtf(acc[i] + eps);
    }
}

static void adagrad_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    adagrad(w, g, opt->slots[0], n, (float)lr, opt->epsilon);
}

static void adagrad_init(fnn_optimizer *opt, size_t n)
{
    for (size_t i = 0; i < n; i++) opt->slots[0][i] = opt->initial_accumulator;
}

/* ---- Adamax: slots m, u (the decayed infinity norm) ------------------------------------ */

/* m += (1-b1)(g - m); u = max(b2*u, |g|); w -= lr/(1 - b1^t) * m/(u + eps) */
FNN_CLONES
static void adamax(float *restrict w, const float *restrict g, float *restrict m,
                   float *restrict u, size_t n, float lr_t, float b1, float b2, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i], ag = fabsf(gi), bu = b2 * u[i];
        m[i] += (1.0f - b1) * (gi - m[i]);
        u[i] = bu > ag ? bu : ag;
        w[i] -= lr_t * m[i] / (u[i] + eps);
    }
}

static void adamax_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1);
    const float lr_t = (float)(lr / (1.0 - pow(opt->beta1, t)));
    adamax(w, g, opt->slots[0], opt->slots[1], n, lr_t, opt->beta1, opt->beta2, opt->epsilon);
}

/* ---- Nadam: slots m, v; u_product in the struct ------------------------------------------ */

/* Adam with Nesterov momentum (Dozat), as Keras writes it: with the momentum schedule
 * u_t = b1 (1 - 0.5 * 0.96^t) and P_t = u_1 ... u_t,
 *   m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t)
 *   v_hat = v / (1 - b2^t);  w -= lr m_hat / (sqrt(v_hat) + eps)
 * c_m, c_g and c_v are those three factors, computed once per step. */
FNN_CLONES
static void nadam(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                  size_t n, float lr, float c_m, float c_g, float c_v, float b1, float b2,
                  float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        m[i] += (1.0f - b1) * (gi - m[i]);
        v[i] += (1.0f - b2) * (gi * gi - v[i]);
        w[i] -= lr * (c_m * m[i] + c_g * gi) / (sqrtf(v[i] * c_v) + eps);
    }
}

static void nadam_update(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr)
{
    const double t = (double)(opt->iterations + 1), b1 = opt->beta1;
    const double u_t = b1 * (1.0 - 0.5 * pow(0.96, t));
    const double u_next = b1 * (1.0 - 0.5 * pow(0.96, t + 1.0));
    const double p = opt->u_product * u_t; /* nadam_advance keeps it once the step is done */
    nadam(w, g, opt->slots[0], opt->slots[1], n, (float)lr, (float)(u_next / (1.0 - p * u_next)),
          (float)((1.0 - u_t) / (1.0 - p)), (float)(1.0 / (1.0 - pow(opt->beta2, t))),
          opt->beta1, opt->beta2, opt->epsilon);
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
