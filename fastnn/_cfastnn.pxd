# Declarations of csrc/fastnn.h for Cython.
from libc.stdint cimport int64_t, uint64_t

from fastnn._coptimizers cimport *

cdef extern from "fastnn.h" nogil:
    ctypedef void (*fnn_sgemm_fn)(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                  const float *a, int64_t lda, const float *b, int64_t ldb,
                                  float beta, float *c, int64_t ldc)
    void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m)
    void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
    void fnn_sgemm_portable(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb,
                            float beta, float *c, int64_t ldc)
    void fnn_sgemm_cblas(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                         const float *a, int64_t lda, const float *b, int64_t ldb,
                         float beta, float *c, int64_t ldc)
    int fnn_set_cblas_sgemm(void *fn, int ilp64)
    int fnn_have_cblas()
    enum: FNN_NARROW
    const char *fnn_narrow_select(int level)
    size_t fnn_dense_scratch(int64_t n_in, int64_t n_out)
    void fnn_dense_forward(const float *x, int64_t ldx, const float *w, const float *b, float *y,
                           int64_t ldy, int64_t n, int64_t n_in, int64_t n_out, int act,
                           fnn_sgemm_fn gemm, float *scratch)
    void fnn_dense_backward(const float *x, int64_t ldx, const float *w, const float *y,
                            float *gy, int64_t ldy, float *gx, int64_t ldgx, float *gw,
                            float *gb, int64_t n, int64_t n_in, int64_t n_out, int act,
                            fnn_sgemm_fn gemm, float *scratch)
    double fnn_loss(int loss, const float *pred, int64_t ldp, const float *target, float *grad,
                    int64_t n, int64_t m)

    enum: FNN_LAYER_DENSE, FNN_LAYER_ACTIVATION, FNN_LAYER_DROPOUT

    ctypedef struct fnn_layer:
        int kind
        int64_t n_in, n_out
        int act
        int use_bias
        int64_t w_off, b_off
        fnn_sgemm_fn gemm
        float rate

    ctypedef struct fnn_net:
        int n_layers
        const fnn_layer *layers
        float *params
        float *grads
        int64_t n_params
        int loss
        int max_batch
        float **acts
        float **deltas
        const int64_t *ld
        float *target
        int64_t target_width
        float *scratch
        uint64_t *dropout_state
        uint64_t *mask_seeds

    enum: FNN_MAX_METRICS

    ctypedef struct fnn_totals:
        double loss_sum
        double metric_sum[4]
        int64_t rows

    void fnn_net_predict(const fnn_net *net, const float *x, int64_t n, float *out)
    int fnn_net_train_epoch(const fnn_net *net, fnn_optimizer *opt, const float *x,
                            const float *y, const int64_t *perm, int64_t n, int batch,
                            const int *metrics, int n_metrics, fnn_totals *tot)
    int fnn_net_train(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                      int64_t *perm, uint64_t *shuffle_state, int64_t n, int batch, int epochs,
                      const int *metrics, int n_metrics, fnn_totals *per_epoch)
    void fnn_net_evaluate(const fnn_net *net, const float *x, const float *y, int64_t n,
                          int batch, const int *metrics, int n_metrics, fnn_totals *tot)
    int fnn_all_finite(const float *x, size_t n)
    void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state)
