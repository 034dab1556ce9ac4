/* losses.c - Keras 3's losses: per-sample values and their gradients w.r.t. the
 * predictions, weighted by sample weights (fnn_loss_sum in fastnn.h). */
#include <math.h>

#include "fastnn.h"

#define EPS 1e-7 /* Keras' backend.epsilon() */

/* elementwise_sum is inlined once per loss with the kind a constant, so that each loss
 * gets its own loop, without the switch (metrics run it on every batch: a MAE metric cost
 * the article model's fit 0.3 us a step more with the switch and a division per row) */
#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* ---- MSE: the common case, kept fast ------------------------------------------------ */

/* sum_j (p_j - t_j)^2 of one row; g_j = gs (p_j - t_j). Rows go four at a time into
 * four float partial sums (Keras sums in float32 too), so no add waits on the previous
 * one; each block of rows is folded into a double. */
static inline float mse_row(const float *p, const float *t, float *g, int64_t m, float gs)
{
    float r = 0.0f;
    for (int64_t j = 0; j < m; j++) {
        const float d = p[j] - t[j];
        r += d * d;
        if (g) g[j] = gs * d;
    }
    return r;
}

/* Unweighted: sum_i mean_j (p - t)^2, and g = scale 2 (p - t) / m. */
static double mse(const float *p, int64_t ldp, const float *t, float *g, double scale, int64_t n,
                  int64_t m)
{
    const float gs = (float)(2.0 * scale / (double)m);
    double sum = 0.0;
    int64_t i = 0;
    if (m == 1 && g) { /* one output (regression): the common case, kept branch-free */
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        for (; i + 4 <= n; i += 4) {
            const float d0 = p[i * ldp] - t[i], d1 = p[(i + 1) * ldp] - t[i + 1];
            const float d2 = p[(i + 2) * ldp] - t[i + 2], d3 = p[(i + 3) * ldp] - t[i + 3];
            g[i * ldp] = gs * d0;
            g[(i + 1) * ldp] = gs * d1;
            g[(i + 2) * ldp] = gs * d2;
            g[(i + 3) * ldp] = gs * d3;
            a0 += d0 * d0;
            a1 += d1 * d1;
            a2 += d2 * d2;
            a3 += d3 * d3;
            if ((i & 1023) == 1020) { /* fold into double now and then: long sums stay exact */
                sum += (double)((a0 + a1) + (a2 + a3));
                a0 = a1 = a2 = a3 = 0.0f;
            }
        }
        sum += (double)((a0 + a1) + (a2 + a3));
    }
    for (; i + 4 <= n; i += 4) {
        const float r0 = mse_row(p + i * ldp, t + i * m, g ? g + i * ldp : NULL, m, gs);
        const float r1 = mse_row(p + (i + 1) * ldp, t + (i + 1) * m, g ? g + (i + 1) * ldp : NULL, m, gs);
        const float r2 = mse_row(p + (i + 2) * ldp, t + (i + 2) * m, g ? g + (i + 2) * ldp : NULL, m, gs);
        const float r3 = mse_row(p + (i + 3) * ldp, t + (i + 3) * m, g ? g + (i + 3) * ldp : NULL, m, gs);
        sum += (double)((r0 + r1) + (r2 + r3));
    }
    for (; i < n; i++) sum += (double)mse_row(p + i * ldp, t + i * m, g ? g + i * ldp : NULL, m, gs);
    return sum / (double)m;
}

/* ---- the elementwise losses: L_i = mean_j f(p_ij, t_ij) ------------------------------ */

static inline double sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

/* log(1 + e^x) without overflow */
static inline double softplus(double x) { return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x))); }

static inline double sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

/* f(p, t) and *d = df/dp for the elementwise kinds (t already mapped: smoothed or -1/1) */
static inline double elementwise(int loss, double c, double p, double t, double *d)
{
    const double e = p - t;
    switch (loss) {
    case FNN_LOSS_MAE:
        *d = sign(e);
        return fabs(e);
    case FNN_LOSS_MAPE: { /* 100 |t - p| / max(|t|, eps) */
        const double den = fabs(t) > EPS ? fabs(t) : EPS;
        *d = 100.0 * sign(e) / den;
        return 100.0 * fabs(e) / den;
    }
    case FNN_LOSS_MSLE: { /* only the prediction above eps moves the loss */
        const double lp = log((p > EPS ? p : EPS) + 1.0), lt = log((t > EPS ? t : EPS) + 1.0);
        *d = p > EPS ? 2.0 * (lp - lt) / (p + 1.0) : 0.0;
        return (lp - lt) * (lp - lt);
    }
    case FNN_LOSS_HUBER: /* c = delta */
        if (fabs(e) <= c) {
            *d = e;
            return 0.5 * e * e;
        }
        *d = c * sign(e);
        return c * fabs(e) - 0.5 * c * c;
    case FNN_LOSS_LOG_COSH: /* log cosh e = e + log(1 + e^-2e) - log 2, finite for any e */
        *d = tanh(e);
        return e + softplus(-2.0 * e) - 0.69314718055994530942;
    case FNN_LOSS_POISSON:
        *d = 1.0 - t / (p + EPS);
        return p - t * log(p + EPS);
    case FNN_LOSS_HINGE: {
        const double h = 1.0 - t * p;
        *d = h > 0 ? -t : 0.0;
        return h > 0 ? h : 0.0;
    }
    case FNN_LOSS_SQUARED_HINGE: {
        const double h = 1.0 - t * p > 0 ? 1.0 - t * p : 0.0;
        *d = -2.0 * t * h;
        return h * h;
    }
    case FNN_LOSS_BCE_LOGITS: /* -(t log s(z) + (1 - t) log(1 - s(z))) = max(z, 0) - z t +
                                 log(1 + e^-|z|); d/dz = s(z) - t */
        *d = sigmoid(p) - t;
        return (p > 0 ? p : 0.0) - p * t + log1p(exp(-fabs(p)));
    default: /* FNN_LOSS_MSE */
        *d = 2.0 * e;
        return e * e;
    }
}

/* 1 if every one of the k values is 0 or 1 */
static int all_binary(const float *t, int64_t k)
{
    int ok = 1;
    for (int64_t i = 0; i < k; i++) ok &= t[i] == 0.0f || t[i] == 1.0f;
    return ok;
}

static ALWAYS_INLINE double elementwise_sum(int loss, float param, const float *p, int64_t ldp,
                                            const float *t, const float *w, float *g,
                                            double scale, int64_t n, int64_t m, double *values)
{
    double a = 1.0, b = 0.0; /* targets enter as a t + b */
    if (loss == FNN_LOSS_HINGE || loss == FNN_LOSS_SQUARED_HINGE) {
        if (all_binary(t, n * m)) a = 2.0, b = -1.0; /* Keras: 0/1 labels mean -1/1 */
    } else if (loss == FNN_LOSS_BCE_LOGITS) {
        a = 1.0 - (double)param, b = 0.5 * (double)param; /* label smoothing */
    }
    const double c = param, inv_m = 1.0 / (double)m;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double wi = w ? (double)w[i] : 1.0, gs = scale * wi * inv_m;
        const float *pi = p + i * ldp, *ti = t + i * m;
        float *gi = g ? g + i * ldp : NULL;
        double row = 0.0, d;
        for (int64_t j = 0; j < m; j++) {
            row += elementwise(loss, c, pi[j], a * ti[j] + b, &d);
            if (gi) gi[j] = (float)(gs * d);
        }
        if (values) values[i] = row * inv_m;
        sum += wi * row * inv_m;
    }
    return sum;
}

/* ---- the row losses ------------------------------------------------------------------- */

/* Softmax cross-entropy from logits z against distributions t (row i: t_i, or for the
 * sparse form a one-hot of class index label[i]), labels smoothed to t (1 - s) + s / m:
 * L_i = sum_j t_ij (lse(z_i) - z_ij) = lse_i sum_j t_ij - sum_j t_ij z_ij;
 * dL_i/dz_ij = softmax_ij sum_k t_ik - t_ij. */
static double softmax_ce(const float *z, int64_t ldp, const float *t, int sparse, float smooth,
                         const float *w, float *g, double scale, int64_t n, int64_t m,
                         double *values)
{
    const double a = 1.0 - (double)smooth, b = (double)smooth / (double)m;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * ldp;
        const double wi = w ? (double)w[i] : 1.0;
        float zmax = zi[0];
        for (int64_t j = 1; j < m; j++) zmax = zi[j] > zmax ? zi[j] : zmax;
        double s = 0.0;
        for (int64_t j = 0; j < m; j++) s += exp((double)(zi[j] - zmax));
        const double lse = log(s) + (double)zmax;
        double tsum = 1.0, tz; /* sum_j t_ij, sum_j t_ij z_ij */
        const int64_t label = sparse ? (int64_t)t[i] : -1;
        if (sparse) {
            tz = (double)zi[label];
        } else {
            const float *ti = t + i * m;
            tsum = 0.0, tz = 0.0;
            for (int64_t j = 0; j < m; j++) {
                const double tij = a * ti[j] + b;
                tsum += tij;
                tz += tij * zi[j];
            }
        }
        if (values) values[i] = lse * tsum - tz;
        sum += wi * (lse * tsum - tz);
        if (g) {
            float *gi = g + i * ldp;
            const double gs = scale * wi;
            for (int64_t j = 0; j < m; j++) {
                const double tij = sparse ? (j == label) : a * t[i * m + j] + b;
                gi[j] = (float)(gs * (exp((double)zi[j] - lse) * tsum - tij));
            }
        }
    }
    return sum;
}

/* sum_j tc log(tc / pc), tc and pc clipped to [eps, 1]; the clip passes the gradient only
 * inside: dL/dp_j = -tc / p_j there, else 0 */
static double kld(const float *p, int64_t ldp, const float *t, const float *w, float *g,
                  double scale, int64_t n, int64_t m, double *values)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double wi = w ? (double)w[i] : 1.0;
        double row = 0.0;
        for (int64_t j = 0; j < m; j++) {
            const double pj = p[i * ldp + j], tj = t[i * m + j];
            const double tc = tj < EPS ? EPS : (tj > 1.0 ? 1.0 : tj);
            const double pc = pj < EPS ? EPS : (pj > 1.0 ? 1.0 : pj);
            row += tc * log(tc / pc);
            if (g) g[i * ldp + j] = (float)(pj >= EPS && pj <= 1.0 ? -scale * wi * tc / pc : 0.0);
        }
        if (values) values[i] = row;
        sum += wi * row;
    }
    return sum;
}

/* max(neg - pos + 1, 0), pos = sum_j t_j p_j, neg = max_j (1 - t_j) p_j (first maximum);
 * where positive, dL/dp_j = -t_j, plus 1 - t_k at the maximum k */
static double categorical_hinge(const float *p, int64_t ldp, const float *t, const float *w,
                                float *g, double scale, int64_t n, int64_t m, double *values)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp, *ti = t + i * m;
        const double wi = w ? (double)w[i] : 1.0;
        double pos = 0.0, neg = -INFINITY;
        int64_t k = 0;
        for (int64_t j = 0; j < m; j++) {
            pos += (double)ti[j] * pi[j];
            const double v = (1.0 - (double)ti[j]) * pi[j];
            if (v > neg) neg = v, k = j;
        }
        const double h = neg - pos + 1.0;
        if (values) values[i] = h > 0 ? h : 0.0;
        sum += h > 0 ? wi * h : 0.0;
        if (g) {
            float *gi = g + i * ldp;
            for (int64_t j = 0; j < m; j++)
                gi[j] = (float)(h > 0 ? scale * wi * (-(double)ti[j] + (j == k ? 1.0 - ti[j] : 0.0))
                                      : 0.0);
        }
    }
    return sum;
}

/* -sum_j u_j v_j with u = t / max(|t|, eps), v = p / max(|p|, eps) (Keras' l2 normalize);
 * dL/dp = -(u - (u.v) v) / |p| when |p| > eps, else -u / eps */
static double cosine(const float *p, int64_t ldp, const float *t, const float *w, float *g,
                     double scale, int64_t n, int64_t m, double *values)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp, *ti = t + i * m;
        const double wi = w ? (double)w[i] : 1.0;
        double pp = 0.0, tt = 0.0, tp = 0.0;
        for (int64_t j = 0; j < m; j++) {
            pp += (double)pi[j] * pi[j];
            tt += (double)ti[j] * ti[j];
            tp += (double)ti[j] * pi[j];
        }
        const double np = sqrt(pp) > EPS ? sqrt(pp) : EPS, nt = sqrt(tt) > EPS ? sqrt(tt) : EPS;
        const double uv = tp / (np * nt);
        if (values) values[i] = -uv;
        sum -= wi * uv;
        if (g) {
            float *gi = g + i * ldp;
            const int inside = sqrt(pp) > EPS;
            for (int64_t j = 0; j < m; j++) {
                const double u = ti[j] / nt, v = pi[j] / np;
                gi[j] = (float)(-scale * wi * (inside ? (u - uv * v) : u) / np);
            }
        }
    }
    return sum;
}

double fnn_loss_sum(int loss, float param, const float *pred, int64_t ldp, const float *target,
                    const float *weight, float *grad, double scale, int64_t n, int64_t m,
                    double *values)
{
    switch (loss) {
    case FNN_LOSS_MSE:
        if (!weight && !values) return mse(pred, ldp, target, grad, scale, n, m);
        return elementwise_sum(FNN_LOSS_MSE, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_SPARSE_CCE_LOGITS:
        return softmax_ce(pred, ldp, target, 1, 0.0f, weight, grad, scale, n, m, values);
    case FNN_LOSS_CCE_LOGITS:
        return softmax_ce(pred, ldp, target, 0, param, weight, grad, scale, n, m, values);
    case FNN_LOSS_KLD: return kld(pred, ldp, target, weight, grad, scale, n, m, values);
    case FNN_LOSS_CATEGORICAL_HINGE:
        return categorical_hinge(pred, ldp, target, weight, grad, scale, n, m, values);
    case FNN_LOSS_COSINE: return cosine(pred, ldp, target, weight, grad, scale, n, m, values);
    case FNN_LOSS_MAE:
        return elementwise_sum(FNN_LOSS_MAE, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_MAPE:
        return elementwise_sum(FNN_LOSS_MAPE, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_MSLE:
        return elementwise_sum(FNN_LOSS_MSLE, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_HUBER:
        return elementwise_sum(FNN_LOSS_HUBER, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_LOG_COSH:
        return elementwise_sum(FNN_LOSS_LOG_COSH, param, pred, ldp, target, weight, grad, scale,
                               n, m, values);
    case FNN_LOSS_POISSON:
        return elementwise_sum(FNN_LOSS_POISSON, param, pred, ldp, target, weight, grad, scale,
                               n, m, values);
    case FNN_LOSS_HINGE:
        return elementwise_sum(FNN_LOSS_HINGE, param, pred, ldp, target, weight, grad, scale, n,
                               m, values);
    case FNN_LOSS_SQUARED_HINGE:
        return elementwise_sum(FNN_LOSS_SQUARED_HINGE, param, pred, ldp, target, weight, grad,
                               scale, n, m, values);
    case FNN_LOSS_BCE_LOGITS:
        return elementwise_sum(FNN_LOSS_BCE_LOGITS, param, pred, ldp, target, weight, grad,
                               scale, n, m, values);
    default: return 0.0; /* not a loss (fnn_plan_layout rejects it) */
    }
}

double fnn_loss(int loss, const float *pred, int64_t ldp, const float *target, float *grad,
                int64_t n, int64_t m)
{
    return fnn_loss_sum(loss, 0.0f, pred, ldp, target, NULL, grad, 1.0 / (double)n, n, m,
                        NULL) / (double)n;
}
