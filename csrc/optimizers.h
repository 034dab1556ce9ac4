/* optimizers.h - the optimizer table: a kind is a number of slots (state buffers laid out
 * as the parameters) and one update kernel; around it, what every kind shares: the
 * learning-rate schedule, gradient clipping and decoupled weight decay (csrc/optimizers.c).
 * Included by fastnn.h. The maths follows Keras 3 (keras/src/optimizers). */
#ifndef FASTNN_OPTIMIZERS_H
#define FASTNN_OPTIMIZERS_H

#include <stddef.h>
#include <stdint.h>

/* Kinds: indices into fnn_optimizer_kinds[]. AdamW is Adam with weight_decay set. */
enum {
    FNN_OPT_SGD = 0, FNN_OPT_RMSPROP = 1, FNN_OPT_ADAM = 2, FNN_OPT_ADAGRAD = 3,
    FNN_OPT_ADAMAX = 4, FNN_OPT_NADAM = 5, FNN_OPT_KINDS = 6
};
enum { FNN_OPT_MAX_SLOTS = 3 };

/* Learning-rate schedules, evaluated at each update from the step count t (iterations
 * before the update, so the first step uses lr(0), as Keras does). */
enum {
    FNN_SCHEDULE_NONE = 0,         /* the constant opt->lr */
    FNN_SCHEDULE_EXPONENTIAL = 1,  /* initial * rate^(t/steps); t/steps floored if staircase */
    FNN_SCHEDULE_PIECEWISE = 2,    /* values[i] on (boundaries[i-1], boundaries[i]] */
    FNN_SCHEDULE_POLYNOMIAL = 3,   /* (initial - end) * (1 - t/steps)^power + end */
    FNN_SCHEDULE_INVERSE_TIME = 4, /* initial / (1 + rate * t/steps) */
    FNN_SCHEDULE_COSINE = 5        /* linear warmup, then from * ((1-alpha) cos' + alpha) */
};

typedef struct {
    int kind;              /* FNN_SCHEDULE_* */
    double initial;        /* initial_learning_rate */
    double decay_steps;
    double decay_rate;     /* exponential, inverse time */
    double end;            /* polynomial: end_learning_rate */
    double power;          /* polynomial */
    double alpha;          /* cosine: the final fraction of the starting rate */
    double warmup_target;  /* cosine, when warmup: the rate reached after warmup_steps */
    double warmup_steps;
    int staircase;         /* exponential, inverse time */
    int cycle;             /* polynomial */
    int warmup;            /* cosine: warmup_target given */
    int64_t n_boundaries;  /* piecewise: boundaries (n) and values (n + 1) */
    const double *boundaries;
    const double *values;
} fnn_schedule;

/* Gradient clipping before the update (at most one, as Keras allows). */
enum {
    FNN_CLIP_NONE = 0,
    FNN_CLIP_NORM = 1,        /* each variable's gradient scaled to L2 norm <= clip */
    FNN_CLIP_VALUE = 2,       /* each value clamped to [-clip, clip] */
    FNN_CLIP_GLOBAL_NORM = 3  /* all gradients scaled together to L2 norm <= clip */
};

typedef struct fnn_optimizer {
    int kind;                 /* FNN_OPT_* */
    float lr;                 /* the learning rate when schedule.kind is FNN_SCHEDULE_NONE */
    float rho, momentum, epsilon, beta1, beta2;
    float initial_accumulator;  /* Adagrad: the accumulator's start value */
    int nesterov, centered, amsgrad;
    float weight_decay;       /* 0: none; else w -= w * weight_decay * lr before the update */
    int clip;                 /* FNN_CLIP_* */
    float clip_threshold;
    int64_t iterations;       /* updates done so far */
    double u_product;         /* Nadam: the product of its momentum schedule so far */
    fnn_schedule schedule;
    /* The variables (weight arrays) in the parameter buffer: variable v holds values
     * [var_bounds[v], var_bounds[v + 1]); bounds[0] = 0. Clipnorm works per variable;
     * decay_mask[v] = 0 excludes v from weight decay (decay_mask NULL: none excluded). */
    int64_t n_vars;
    const int64_t *var_bounds;
    const uint8_t *decay_mask;
    float *slots[FNN_OPT_MAX_SLOTS]; /* the kind's slots, each as long as the parameters */
} fnn_optimizer;

/* One entry of the table: `update` applies the kind's rule to n parameters at learning
 * rate lr, for step t = opt->iterations + 1 (bias corrections); `init` sets the slots'
 * start values and any scalar state, slots being zeroed already (NULL: zeros will do). */
typedef struct {
    const char *name;
    int n_slots;
    void (*update)(fnn_optimizer *opt, float *w, const float *g, size_t n, double lr);
    void (*init)(fnn_optimizer *opt, size_t n);
    /* NULL, or what the kind's scalar state does once per step, after the updates (a
     * split update runs `update` once per range of the parameters) */
    void (*advance)(fnn_optimizer *opt);
} fnn_optimizer_kind;

extern const fnn_optimizer_kind fnn_optimizer_kinds[FNN_OPT_KINDS];

/* Puts freshly zeroed slots of n values in their start state; iterations = 0. */
void fnn_optimizer_init(fnn_optimizer *opt, size_t n);

/* One update of n parameters w from their gradient g: evaluates the schedule at
 * opt->iterations, clips g in place, applies weight decay to w, runs the kind's kernel
 * and increments opt->iterations. For callers already running with denormals flushed
 * (the engine): setting and restoring the FPU mode costs more than a small model's
 * update. Options left unset cost a branch per call, none per value. */
void fnn_optimizer_update(fnn_optimizer *opt, float *w, float *g, size_t n);
/* The same, flushing denormals for its duration (for callers outside the engine). */
void fnn_optimizer_step(fnn_optimizer *opt, float *w, float *g, size_t n);

/* A step split by parameter ranges (csrc/parallel.c), for an elementwise optimizer (no
 * clipping by norms, which needs every gradient first): lr = fnn_optimizer_lr() once,
 * fnn_optimizer_update_range() over ranges covering the parameters once (any order, any
 * thread: each touches only its values), then fnn_optimizer_finish() once. The result is
 * the same as one fnn_optimizer_update(). */
int fnn_optimizer_elementwise(const fnn_optimizer *opt);
double fnn_optimizer_lr(const fnn_optimizer *opt);
void fnn_optimizer_update_range(const fnn_optimizer *opt, float *w, float *g, size_t begin,
                                size_t end, double lr);
void fnn_optimizer_finish(fnn_optimizer *opt);

/* The learning rate a schedule gives at step t (double, Keras 3's formulas). */
double fnn_schedule_value(const fnn_schedule *s, double t);

/* Picks the optimizer kernels up to `level` as fnn_narrow_select does: at level >= 1
 * on an AVX2+FMA CPU (2: AVX-512F), every kind but SGD takes its 1/sqrt or 1/x from the
 * hardware estimate refined by a Newton step (within an ulp or two of the exact
 * quotient), with masked tails; level 0 divides exactly. */
void fnn_optimizer_select(int level);

#endif
