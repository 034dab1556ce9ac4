/* ops.c - the table of op kinds (indexed by FNN_OP_*) and the row helpers they share. */
#include "ops.h"

const fnn_op_kind *const fnn_op_table[FNN_OP_COUNT] = {
    [FNN_OP_DENSE] = &fnn_op_dense,       [FNN_OP_ACTIVATION] = &fnn_op_activation,
    [FNN_OP_DROPOUT] = &fnn_op_dropout,   [FNN_OP_ADD] = &fnn_op_add,
    [FNN_OP_SUBTRACT] = &fnn_op_subtract, [FNN_OP_MULTIPLY] = &fnn_op_multiply,
    [FNN_OP_AVERAGE] = &fnn_op_average,   [FNN_OP_MAXIMUM] = &fnn_op_maximum,
    [FNN_OP_MINIMUM] = &fnn_op_minimum,   [FNN_OP_CONCAT] = &fnn_op_concat,
    [FNN_OP_GAUSSIAN_NOISE] = &fnn_op_gaussian_noise,
    [FNN_OP_GAUSSIAN_DROPOUT] = &fnn_op_gaussian_dropout,
    [FNN_OP_PRELU] = &fnn_op_prelu,
    [FNN_OP_NORMALIZATION] = &fnn_op_normalization,
    [FNN_OP_BATCH_NORM] = &fnn_op_batch_norm,
    [FNN_OP_LAYER_NORM] = &fnn_op_layer_norm,
    [FNN_OP_EMBEDDING] = &fnn_op_embedding,
    [FNN_OP_ACTIVITY_REG] = &fnn_op_activity_regularization,
};

size_t fnn_no_floats(const fnn_plan *p, const fnn_op *op)
{
    (void)p;
    (void)op;
    return 0;
}

FNN_CLONES
static void add_row(float *restrict dst, const float *restrict src, int64_t w)
{
    for (int64_t j = 0; j < w; j++) dst[j] += src[j];
}

void fnn_put_rows(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                  int64_t w, int acc)
{
    for (int64_t r = 0; r < rows; r++) {
        if (acc)
            add_row(dst + r * ldd, src + r * lds, w);
        else
            memcpy(dst + r * ldd, src + r * lds, (size_t)w * sizeof(float));
    }
}

FNN_CLONES
void fnn_put_rows_scaled(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                         int64_t w, float scale, int acc)
{
    for (int64_t r = 0; r < rows; r++) {
        float *restrict d = dst + r * ldd;
        const float *restrict s = src + r * lds;
        if (acc)
            for (int64_t j = 0; j < w; j++) d[j] += scale * s[j];
        else
            for (int64_t j = 0; j < w; j++) d[j] = scale * s[j];
    }
}
