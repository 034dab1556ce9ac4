# Declarations of csrc/fastnn.h for Cython.
from libc.stdint cimport int64_t, uint64_t

from fastnn._coptimizers cimport *

cdef extern from "fastnn.h" nogil:
    ctypedef void (*fnn_sgemm_fn)(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                                  const float *a, int64_t lda, const float *b, int64_t ldb,
                                  float beta, float *c, int64_t ldc)
    void fnn_act_forward(int act, float *y, int64_t ldy, int64_t n, int64_t m)
    void fnn_act_backward(int act, const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
    int fnn_act_needs_input(int act)
    void fnn_act_forward_p(int act, const float *param, float *y, int64_t ldy, int64_t n,
                           int64_t m)
    void fnn_act_backward_p(int act, const float *param, const float *x, int64_t ldx,
                            const float *y, float *g, int64_t ldy, int64_t n, int64_t m)
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
    double fnn_loss_sum(int loss, float param, const float *pred, int64_t ldp,
                        const float *target, const float *weight, float *grad, double scale,
                        int64_t n, int64_t m, double *values)

    enum: FNN_ACT_LINEAR, FNN_ACT_RELU, FNN_ACT_SIGMOID, FNN_ACT_TANH, FNN_ACT_SOFTMAX, \
        FNN_ACT_RELU6, FNN_ACT_LEAKY_RELU, FNN_ACT_ELU, FNN_ACT_SELU, FNN_ACT_GELU, \
        FNN_ACT_GELU_TANH, FNN_ACT_SILU, FNN_ACT_SOFTPLUS, FNN_ACT_SOFTSIGN, \
        FNN_ACT_HARD_SIGMOID, FNN_ACT_EXPONENTIAL, FNN_ACT_MISH, FNN_ACT_LOG_SOFTMAX, \
        FNN_ACT_RELU_GENERAL, FNN_ACT_COUNT
    enum: FNN_LOSS_MSE, FNN_LOSS_MAE, FNN_LOSS_SPARSE_CCE_LOGITS, FNN_LOSS_CCE_LOGITS, \
        FNN_LOSS_BCE_LOGITS, FNN_LOSS_MAPE, FNN_LOSS_MSLE, FNN_LOSS_HUBER, FNN_LOSS_LOG_COSH, \
        FNN_LOSS_KLD, FNN_LOSS_POISSON, FNN_LOSS_HINGE, FNN_LOSS_SQUARED_HINGE, \
        FNN_LOSS_CATEGORICAL_HINGE, FNN_LOSS_COSINE, FNN_LOSS_COUNT
    enum: FNN_REDUCE_MEAN, FNN_REDUCE_SUM, FNN_REDUCE_WEIGHTED_MEAN
    enum: FNN_PATH_PANELS, FNN_PATH_PORTABLE, FNN_PATH_BLAS
    enum: FNN_OP_DENSE, FNN_OP_ACTIVATION, FNN_OP_DROPOUT, FNN_OP_ADD, FNN_OP_SUBTRACT, \
        FNN_OP_MULTIPLY, FNN_OP_AVERAGE, FNN_OP_MAXIMUM, FNN_OP_MINIMUM, FNN_OP_CONCAT
    enum: FNN_OP_GAUSSIAN_NOISE, FNN_OP_GAUSSIAN_DROPOUT, FNN_OP_PRELU
    enum: FNN_OP_NORMALIZATION, FNN_OP_BATCH_NORM, FNN_OP_LAYER_NORM, FNN_OP_EMBEDDING, \
        FNN_OP_ACTIVITY_REG
    enum: FNN_CONSTRAINT_MAX_NORM, FNN_CONSTRAINT_NON_NEG, FNN_CONSTRAINT_UNIT_NORM, \
        FNN_CONSTRAINT_MIN_MAX_NORM
    enum: FNN_CONSTRAIN_COLUMNS, FNN_CONSTRAIN_ROWS, FNN_CONSTRAIN_ALL
    enum: FNN_MAX_OP_INPUTS, FNN_OP_AUX
    enum: FNN_METRIC_MSE, FNN_METRIC_MAE, FNN_METRIC_ACCURACY, FNN_METRIC_BINARY_ACCURACY, \
        FNN_METRIC_CATEGORICAL_ACCURACY, FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY, \
        FNN_METRIC_TOP_K, FNN_METRIC_SPARSE_TOP_K, FNN_METRIC_LOSS, FNN_METRIC_R2, \
        FNN_METRIC_CONFUSION, FNN_METRIC_FSCORE, FNN_METRIC_EQUALITY, FNN_METRIC_COUNT
    enum: FNN_EPLAN_TENSOR, FNN_EPLAN_PRODUCER, FNN_EPLAN_SHAPE, FNN_EPLAN_PARAMS, \
        FNN_EPLAN_KIND, FNN_EPLAN_BATCH
    enum: FNN_RUN_PAUSED, FNN_RUN_EPOCH_END, FNN_RUN_DONE, FNN_RUN_DIVERGED

    ctypedef struct fnn_tensor:
        int64_t width
        int is_input
        int64_t ld
        int needs_grad
        float *value
        float *rows
        float *grad

    ctypedef struct fnn_op:
        int kind
        int n_in
        const int *in_ "in"
        int out
        int act
        int path
        int trainable
        int64_t w_off, b_off
        float rate
        int64_t state_off[4]
        float fparam[4]
        int64_t iparam[4]
        uint64_t acc
        int wacc
        int backward
        uint64_t seed

    ctypedef struct fnn_head:
        int tensor
        int loss
        int folded_act
        int64_t target_width
        float weight
        float *target
        float param
        int reduction
        float *weights

    ctypedef struct fnn_metric:
        int head
        int kind
        int weighted
        float param
        int64_t iparam[2]
        int n_thresholds
        const float *thresholds
        int64_t slot, n_slots

    ctypedef struct fnn_penalty:
        int64_t offset, size
        float l1, l2

    ctypedef struct fnn_constraint:
        int kind
        int axis
        int64_t offset, rows, cols
        float min_value, max_value, rate

    ctypedef struct fnn_plan:
        int n_tensors
        fnn_tensor *tensors
        int n_ops
        fnn_op *ops
        int n_inputs
        const int *inputs
        int n_outputs
        const int *outputs
        int n_heads
        fnn_head *heads
        int n_metrics
        fnn_metric *metrics
        float *params
        float *grads
        int64_t n_params
        float *state
        int64_t n_state
        int max_batch
        uint64_t dropout_state
        float *scratch
        float *tmp
        float *wtmp
        int clear_grads
        int n_penalties
        const fnn_penalty *penalties
        int n_constraints
        const fnn_constraint *constraints
        int regularized

    int64_t fnn_plan_layout(fnn_plan *p, int *where)
    void fnn_plan_bind(fnn_plan *p, float *arena)
    int64_t fnn_totals_size(const fnn_plan *p)
    int64_t fnn_plan_predict(fnn_plan *p, const float *const *x, int64_t start, int64_t n,
                             float *const *out, double max_seconds)
    int64_t fnn_plan_evaluate(fnn_plan *p, const float *const *x, const float *const *y,
                              const float *const *sw, int64_t start, int64_t n, int batch,
                              double *totals, double max_seconds)

    ctypedef struct fnn_run:
        const float *const *x
        const float *const *y
        int64_t n
        int batch
        int64_t *perm
        int shuffle
        uint64_t shuffle_state
        int epochs
        int epoch
        int64_t step
        double *totals
        int epoch_base
        int totals_cap
        const float *const *sw

    int fnn_plan_train(fnn_plan *p, fnn_optimizer *opt, fnn_run *run, int64_t max_steps,
                       double max_seconds, int stop_at_epoch_end)
    int fnn_all_finite(const float *x, size_t n)
    int FNN_MAX_THREADS
    ctypedef int (*fnn_task_fn)(void *ctx, int task) noexcept nogil
    int fnn_pool_run(fnn_task_fn fn, void *ctx, int n_tasks)
    int fnn_pool_set_threads(int n)
    int fnn_pool_threads()
    int fnn_pool_cpu_count()
    int fnn_plan_set_threads(fnn_plan *p, int n_threads)
    void fnn_plan_free_threads(fnn_plan *p)
    int fnn_plan_splits(const fnn_plan *p, int64_t rows, int training)
    double fnn_plan_flop_per_row(const fnn_plan *p)
    double fnn_parallel_min_flop(double flop)
    void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state)


cdef extern from "metrics.h" nogil:
    int64_t fnn_metric_slots(const fnn_metric *m, int64_t width)
    int fnn_metric_check(const fnn_metric *m, int64_t width, int64_t tw)
    void fnn_metric_update(const fnn_metric *m, const float *p, int64_t ldp, const float *t,
                           int64_t tw, const float *w, int64_t n, int64_t width, int logits,
                           double *slots)
