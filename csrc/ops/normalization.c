/* ops/normalization.c - Keras' Normalization, BatchNormalization and LayerNormalization.
 *
 * A row of `width` values is `width / C` groups of C channels (C = iparam[0]): a 2-D
 * layer's features are one group; a (k, d) input normalized over its last axis is k
 * groups of d. Statistics are taken in double.
 *
 * BatchNormalization and LayerNormalization end in y = gamma * xhat + beta: gamma (iparam[1]
 * = 1, "scale") and beta (iparam[2] = 1, "center") are optional, so w_off holds the first
 * of them (gamma, or beta alone) and b_off beta when both are there (-1 otherwise); they
 * sit in the trainable parameters, or in the state when the layer is frozen. */
#include <math.h>

#include "ops.h"

static int64_t channels(const fnn_op *op) { return op->iparam[0]; }

static int has_gamma(const fnn_op *op) { return op->iparam[1] != 0; }

static int has_beta(const fnn_op *op) { return op->iparam[2] != 0; }

static int64_t beta_off(const fnn_op *op) { return has_gamma(op) ? op->b_off : op->w_off; }

static int in_range(int64_t off, int64_t n, int64_t size)
{
    return off >= 0 && off <= size && n <= size - off;
}

/* one input of the output's width, a whole number of groups of C channels */
static int check_groups(const fnn_plan *p, const fnn_op *op)
{
    const int64_t w = fnn_out(p, op)->width, c = channels(op);
    if (op->n_in != 1 || fnn_in(p, op, 0)->width != w) return FNN_EPLAN_SHAPE;
    if (c < 1 || c > w || w % c != 0) return FNN_EPLAN_SHAPE;
    return 0;
}

/* gamma and beta (where the flags say) inside their buffer */
static int check_affine(const fnn_plan *p, const fnn_op *op)
{
    const int64_t c = channels(op), size = op->trainable ? p->n_params : p->n_state;
    if (op->iparam[1] < 0 || op->iparam[1] > 1 || op->iparam[2] < 0 || op->iparam[2] > 1)
        return FNN_EPLAN_KIND;
    if (has_gamma(op) && !in_range(op->w_off, c, size)) return FNN_EPLAN_PARAMS;
    if (has_beta(op) && !in_range(beta_off(op), c, size)) return FNN_EPLAN_PARAMS;
    return 0;
}

static void affine(const fnn_plan *p, const fnn_op *op, const float **gamma, const float **beta)
{
    const float *w = op->trainable ? p->params : p->state;
    *gamma = has_gamma(op) ? w + op->w_off : NULL;
    *beta = has_beta(op) ? w + beta_off(op) : NULL;
}

/* the floats of gradient gamma and beta take (all of them written by backward) */
static size_t affine_grads(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)(channels(op) * (has_gamma(op) + has_beta(op)));
}

/* dgamma = sum dy * xhat and dbeta = sum dy (C each, summed in double) written to the
 * gradients, or added to them when the layer is called twice */
static void put_affine_grads(const fnn_plan *p, const fnn_op *op, const double *dgamma,
                             const double *dbeta)
{
    if (!op->trainable) return;
    const int64_t c = channels(op);
    if (has_gamma(op)) {
        float *g = p->grads + op->w_off;
        for (int64_t j = 0; j < c; j++) g[j] = (float)(op->wacc ? g[j] + dgamma[j] : dgamma[j]);
    }
    if (has_beta(op)) {
        float *g = p->grads + beta_off(op);
        for (int64_t j = 0; j < c; j++) g[j] = (float)(op->wacc ? g[j] + dbeta[j] : dbeta[j]);
    }
}

/* y = xhat * gamma + beta over one group of c values, xhat = (x - mean) * inv */
static void normalize_group(const float *x, float *y, int64_t c, const double *mean,
                            const double *inv, const float *gamma, const float *beta)
{
    for (int64_t j = 0; j < c; j++) {
        double v = ((double)x[j] - mean[j]) * inv[j];
        if (gamma) v *= (double)gamma[j];
        if (beta) v += (double)beta[j];
        y[j] = (float)v;
    }
}

/* ---- normalization: y = (x - mean) / s, or x * s + mean (invert), s = max(sqrt(var), 1e-7)
 * mean and variance (C each, from adapt) at state_off[0], state_off[1]; iparam[1] = invert.
 * dL/dx = dL/dy / s (invert: * s). No trainable weights. */
static const float NORMALIZATION_EPSILON = 1e-7f; /* Keras' backend epsilon */

static int normalization_check(const fnn_plan *p, const fnn_op *op)
{
    const int code = check_groups(p, op);
    if (code) return code;
    if (op->iparam[1] < 0 || op->iparam[1] > 1) return FNN_EPLAN_KIND;
    for (int i = 0; i < 2; i++)
        if (!in_range(op->state_off[i], channels(op), p->n_state)) return FNN_EPLAN_PARAMS;
    return 0;
}

static size_t normalization_scratch(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)channels(op);
}

/* scratch[c] = s of channel c */
static const float *normalization_scales(const fnn_plan *p, const fnn_op *op)
{
    const float *var = p->state + op->state_off[1];
    for (int64_t j = 0; j < channels(op); j++) {
        const float s = sqrtf(var[j] > 0.0f ? var[j] : 0.0f);
        p->scratch[j] = s > NORMALIZATION_EPSILON ? s : NORMALIZATION_EPSILON;
    }
    return p->scratch;
}

static void normalization_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t c = channels(op), groups = x->width / c;
    const float *mean = p->state + op->state_off[0], *s = normalization_scales(p, op);
    const int invert = op->iparam[1] != 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xv = x->value + r * x->ld + g * c;
            float *yv = y->value + r * y->ld + g * c;
            for (int64_t j = 0; j < c; j++)
                yv[j] = invert ? xv[j] * s[j] + mean[j] : (xv[j] - mean[j]) / s[j];
        }
}

static void normalization_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    if (!x->grad) return;
    const int64_t c = channels(op), groups = x->width / c;
    const float *s = normalization_scales(p, op);
    const int invert = op->iparam[1] != 0, acc = fnn_acc(op, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *gy = y->grad + r * y->ld + g * c;
            float *gx = x->grad + r * x->ld + g * c;
            for (int64_t j = 0; j < c; j++) {
                const float d = invert ? gy[j] * s[j] : gy[j] / s[j];
                gx[j] = acc ? gx[j] + d : d;
            }
        }
}

const fnn_op_kind fnn_op_normalization = {"normalization", 0, normalization_check,
                                          normalization_scratch, fnn_no_floats,
                                          normalization_forward, normalization_backward, NULL};

/* ---- batch_norm: y = gamma * (x - m) / sqrt(v + eps) + beta per channel.
 * Training: m, v are the batch's mean and (biased) variance over rows and groups, and the
 * moving statistics (state_off[0], state_off[1]) move towards them:
 *   moving = moving * momentum + batch * (1 - momentum);
 * backward runs through the batch statistics (N = rows * groups values per channel):
 *   dx = gamma * inv / N * (N dy - sum dy - xhat sum dy xhat).
 * Inference, and always when the layer is frozen (iparam[3] = 1, as Keras 3 runs a
 * BatchNormalization with trainable=False): m, v are the moving statistics.
 * fparam[0] = epsilon, fparam[1] = momentum. */
static int batch_norm_check(const fnn_plan *p, const fnn_op *op)
{
    int code = check_groups(p, op);
    if (!code) code = check_affine(p, op);
    if (code) return code;
    if (op->iparam[3] < 0 || op->iparam[3] > 1) return FNN_EPLAN_KIND;
    if (!(op->fparam[0] > 0.0f && isfinite(op->fparam[0]) && isfinite(op->fparam[1])))
        return FNN_EPLAN_KIND;
    for (int i = 0; i < 2; i++)
        if (!in_range(op->state_off[i], channels(op), p->n_state)) return FNN_EPLAN_PARAMS;
    return 0;
}

/* doubles: mean, inv, and backward's two sums, C each */
static size_t batch_norm_scratch(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)(8 * channels(op));
}

static int batch_mode(const fnn_op *op, int training) { return training && !op->iparam[3]; }

/* mean[c] and inv[c] = 1 / sqrt(var[c] + eps): of the batch (var[c] left in `var`), or
 * of the moving statistics */
static void batch_norm_stats(const fnn_plan *p, const fnn_op *op, int64_t rows, int batch,
                             double *mean, double *inv, double *var)
{
    const fnn_tensor *x = fnn_in(p, op, 0);
    const int64_t c = channels(op), groups = x->width / c;
    const double eps = (double)op->fparam[0];
    if (!batch) {
        const float *mm = p->state + op->state_off[0], *mv = p->state + op->state_off[1];
        for (int64_t j = 0; j < c; j++) {
            mean[j] = (double)mm[j];
            inv[j] = 1.0 / sqrt((double)mv[j] + eps);
        }
        return;
    }
    const double n = (double)(rows * groups);
    for (int64_t j = 0; j < c; j++) mean[j] = var[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *v = x->value + r * x->ld + g * c;
            for (int64_t j = 0; j < c; j++) mean[j] += (double)v[j];
        }
    for (int64_t j = 0; j < c; j++) mean[j] /= n;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *v = x->value + r * x->ld + g * c;
            for (int64_t j = 0; j < c; j++) {
                const double d = (double)v[j] - mean[j];
                var[j] += d * d;
            }
        }
    for (int64_t j = 0; j < c; j++) {
        var[j] /= n;
        inv[j] = 1.0 / sqrt(var[j] + eps);
    }
}

static void batch_norm_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t c = channels(op), groups = x->width / c;
    double *mean = (double *)p->scratch, *inv = mean + c, *var = inv + c;
    const int batch = batch_mode(op, training);
    batch_norm_stats(p, op, rows, batch, mean, inv, var);
    const float *gamma, *beta;
    affine(p, op, &gamma, &beta);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++)
            normalize_group(x->value + r * x->ld + g * c, y->value + r * y->ld + g * c, c, mean,
                            inv, gamma, beta);
    if (batch) {
        const float momentum = op->fparam[1];
        float *mm = p->state + op->state_off[0], *mv = p->state + op->state_off[1];
        for (int64_t j = 0; j < c; j++) {
            mm[j] = mm[j] * momentum + (float)mean[j] * (1.0f - momentum);
            mv[j] = mv[j] * momentum + (float)var[j] * (1.0f - momentum);
        }
    }
}

/* Backward runs only while training: through the batch statistics, or through the fixed
 * moving ones when the layer is frozen (then dx = gamma * inv * dy). */
static void batch_norm_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t c = channels(op), groups = x->width / c;
    double *mean = (double *)p->scratch, *inv = mean + c, *sum_dy = inv + c,
           *sum_dyx = sum_dy + c;
    const int batch = batch_mode(op, 1);
    batch_norm_stats(p, op, rows, batch, mean, inv, sum_dy); /* var is not needed after */
    for (int64_t j = 0; j < c; j++) sum_dy[j] = sum_dyx[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xv = x->value + r * x->ld + g * c, *gy = y->grad + r * y->ld + g * c;
            for (int64_t j = 0; j < c; j++) {
                sum_dy[j] += (double)gy[j];
                sum_dyx[j] += (double)gy[j] * ((double)xv[j] - mean[j]) * inv[j];
            }
        }
    if (x->grad) {
        const float *gamma, *beta;
        affine(p, op, &gamma, &beta);
        const double n = (double)(rows * groups);
        const int acc = fnn_acc(op, 0);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < groups; g++) {
                const float *xv = x->value + r * x->ld + g * c,
                            *gy = y->grad + r * y->ld + g * c;
                float *gx = x->grad + r * x->ld + g * c;
                for (int64_t j = 0; j < c; j++) {
                    double d = (double)gy[j];
                    if (batch)
                        d -= (sum_dy[j] + ((double)xv[j] - mean[j]) * inv[j] * sum_dyx[j]) / n;
                    d *= inv[j] * (gamma ? (double)gamma[j] : 1.0);
                    gx[j] = acc ? gx[j] + (float)d : (float)d;
                }
            }
    }
    put_affine_grads(p, op, sum_dyx, sum_dy);
}

const fnn_op_kind fnn_op_batch_norm = {"batch_norm", 1, batch_norm_check, batch_norm_scratch,
                                       affine_grads, batch_norm_forward, batch_norm_backward,
                                       NULL, 1};

/* ---- layer_norm: per group of C values of each row, y = gamma * (x - m) / sqrt(v + eps)
 * + beta with m, v that group's mean and (biased) variance, the same in training and
 * inference; backward through them: dx = inv * (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
 * with dxhat = dy * gamma. fparam[0] = epsilon. */
static int layer_norm_check(const fnn_plan *p, const fnn_op *op)
{
    int code = check_groups(p, op);
    if (!code) code = check_affine(p, op);
    if (code) return code;
    return op->fparam[0] > 0.0f && isfinite(op->fparam[0]) ? 0 : FNN_EPLAN_KIND;
}

/* doubles: per channel dgamma and dbeta sums, and one group's xhat */
static size_t layer_norm_scratch(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    return (size_t)(6 * channels(op));
}

/* mean and 1 / sqrt(var + eps) of c values */
static void group_stats(const float *v, int64_t c, double eps, double *mean, double *inv)
{
    double m = 0.0, s = 0.0;
    for (int64_t j = 0; j < c; j++) m += (double)v[j];
    m /= (double)c;
    for (int64_t j = 0; j < c; j++) s += ((double)v[j] - m) * ((double)v[j] - m);
    *mean = m;
    *inv = 1.0 / sqrt(s / (double)c + eps);
}

static void layer_norm_forward(fnn_plan *p, fnn_op *op, int64_t rows, int training)
{
    (void)training;
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t c = channels(op), groups = x->width / c;
    const float *gamma, *beta;
    affine(p, op, &gamma, &beta);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xv = x->value + r * x->ld + g * c;
            float *yv = y->value + r * y->ld + g * c;
            double m, inv;
            group_stats(xv, c, (double)op->fparam[0], &m, &inv);
            for (int64_t j = 0; j < c; j++) {
                double v = ((double)xv[j] - m) * inv;
                if (gamma) v *= (double)gamma[j];
                if (beta) v += (double)beta[j];
                yv[j] = (float)v;
            }
        }
}

static void layer_norm_backward(const fnn_plan *p, const fnn_op *op, int64_t rows)
{
    const fnn_tensor *x = fnn_in(p, op, 0), *y = fnn_out(p, op);
    const int64_t c = channels(op), groups = x->width / c;
    double *dgamma = (double *)p->scratch, *dbeta = dgamma + c, *xhat = dbeta + c;
    const float *gamma, *beta;
    affine(p, op, &gamma, &beta);
    const int acc = fnn_acc(op, 0);
    for (int64_t j = 0; j < c; j++) dgamma[j] = dbeta[j] = 0.0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            const float *xv = x->value + r * x->ld + g * c, *gy = y->grad + r * y->ld + g * c;
            double m, inv, mean_d = 0.0, mean_dx = 0.0;
            group_stats(xv, c, (double)op->fparam[0], &m, &inv);
            for (int64_t j = 0; j < c; j++) {
                xhat[j] = ((double)xv[j] - m) * inv;
                const double d = (double)gy[j] * (gamma ? (double)gamma[j] : 1.0);
                dgamma[j] += (double)gy[j] * xhat[j];
                dbeta[j] += (double)gy[j];
                mean_d += d;
                mean_dx += d * xhat[j];
            }
            if (!x->grad) continue;
            mean_d /= (double)c;
            mean_dx /= (double)c;
            float *gx = x->grad + r * x->ld + g * c;
            for (int64_t j = 0; j < c; j++) {
                const double d = (double)gy[j] * (gamma ? (double)gamma[j] : 1.0);
                const float v = (float)(inv * (d - mean_d - xhat[j] * mean_dx));
                gx[j] = acc ? gx[j] + v : v;
            }
        }
    put_affine_grads(p, op, dgamma, dbeta);
}

const fnn_op_kind fnn_op_layer_norm = {"layer_norm", 1, layer_norm_check, layer_norm_scratch,
                                       affine_grads, layer_norm_forward, layer_norm_backward,
                                       NULL};
