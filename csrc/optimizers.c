/* optimizers.c - one fused pass over the flat parameter buffer per update:
 * each parameter, gradient and slot value is read and written once. */
#include <math.h>

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
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals(); /* cheap: ~20 cycles */
    opt->iterations++;
    switch (opt->kind) {
    case FNN_OPT_RMSPROP:
        rmsprop(w, g, opt->slot1, n, opt->lr, opt->rho, opt->epsilon);
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
    fnn_fpu_restore(fpu);
}
