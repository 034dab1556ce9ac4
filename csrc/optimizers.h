/* optimizers.h - the optimizer table: hyper-parameters, slots and one fused update
 * pass over the flat parameter buffer (csrc/optimizers.c). Included by fastnn.h. */
#ifndef FASTNN_OPTIMIZERS_H
#define FASTNN_OPTIMIZERS_H

#include <stddef.h>
#include <stdint.h>

enum { FNN_OPT_SGD = 0, FNN_OPT_RMSPROP = 1, FNN_OPT_ADAM = 2 };

typedef struct {
    int kind;
    float lr, rho, momentum, epsilon, beta1, beta2;
    int64_t iterations; /* updates done so far (Adam's bias correction) */
    float *slot1;       /* RMSprop: mean square; SGD: velocity; Adam: m   */
    float *slot2;       /* Adam: v                                        */
} fnn_optimizer;

/* One update of n parameters. SGD: w -= lr*g (momentum: v = mom*v - lr*g; w += v).
 * RMSprop (Keras): v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + eps).
 * Adam (Keras): m,v moments, lr_t = lr*sqrt(1-b2^t)/(1-b1^t); w -= lr_t*m/(sqrt(v)+eps). */
void fnn_optimizer_step(fnn_optimizer *opt, float *w, const float *g, size_t n);
/* The same, for callers already running with denormals flushed (the engine): setting
 * and restoring the FPU mode costs more than a small model's update. */
void fnn_optimizer_update(fnn_optimizer *opt, float *w, const float *g, size_t n);

/* Picks the optimizer kernels up to `level` as fnn_narrow_select does: at level >= 1
 * on an AVX2+FMA CPU, RMSprop takes 1/sqrt from the hardware estimate refined by a
 * Newton step (within an ulp of sqrt-then-divide); level 0 divides exactly. */
void fnn_optimizer_select(int level);

#endif
