# Declarations of csrc/optimizers.h for Cython.
from libc.stdint cimport int64_t

cdef extern from "optimizers.h" nogil:
    ctypedef struct fnn_optimizer:
        int kind
        float lr, rho, momentum, epsilon, beta1, beta2
        int64_t iterations
        float *slot1
        float *slot2
    void fnn_optimizer_step(fnn_optimizer *opt, float *w, const float *g, size_t n)
    void fnn_optimizer_select(int level)

