# Declarations of csrc/optimizers.h for Cython.
from libc.stdint cimport int64_t, uint8_t

cdef extern from "optimizers.h" nogil:
    enum:
        FNN_OPT_SGD
        FNN_OPT_RMSPROP
        FNN_OPT_ADAM
        FNN_OPT_ADAGRAD
        FNN_OPT_ADAMAX
        FNN_OPT_NADAM
        FNN_OPT_KINDS
        FNN_OPT_MAX_SLOTS

    enum:
        FNN_SCHEDULE_NONE
        FNN_SCHEDULE_EXPONENTIAL
        FNN_SCHEDULE_PIECEWISE
        FNN_SCHEDULE_POLYNOMIAL
        FNN_SCHEDULE_INVERSE_TIME
        FNN_SCHEDULE_COSINE

    enum:
        FNN_CLIP_NONE
        FNN_CLIP_NORM
        FNN_CLIP_VALUE
        FNN_CLIP_GLOBAL_NORM

    ctypedef struct fnn_schedule:
        int kind
        double initial, decay_steps, decay_rate, end, power, alpha, warmup_target, warmup_steps
        int staircase, cycle, warmup
        int64_t n_boundaries
        const double *boundaries
        const double *values

    ctypedef struct fnn_optimizer:
        int kind
        float lr, rho, momentum, epsilon, beta1, beta2, initial_accumulator
        int nesterov, centered, amsgrad
        float weight_decay
        int clip
        float clip_threshold
        int64_t iterations
        double u_product
        fnn_schedule schedule
        int64_t n_vars
        const int64_t *var_bounds
        const uint8_t *decay_mask
        float *slots[3]  # FNN_OPT_MAX_SLOTS (Cython wants a literal; C has the layout)

    ctypedef struct fnn_optimizer_kind:
        const char *name
        int n_slots

    # an array in C; read here through the pointer it decays to
    const fnn_optimizer_kind *fnn_optimizer_kinds

    void fnn_optimizer_init(fnn_optimizer *opt, size_t n)
    void fnn_optimizer_update(fnn_optimizer *opt, float *w, float *g, size_t n)
    void fnn_optimizer_step(fnn_optimizer *opt, float *w, float *g, size_t n)
    double fnn_schedule_value(const fnn_schedule *s, double t)
    void fnn_optimizer_select(int level)
