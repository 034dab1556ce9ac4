/* engine.h - what engine.c shares with parallel.c (not part of the public header). */
#ifndef FASTNN_ENGINE_H
#define FASTNN_ENGINE_H

#include "fastnn.h"

/* The two loops over a plan's ops: forward over `rows` rows, backward in reverse. */
void fnn_forward(fnn_plan *p, int64_t rows, int training);
void fnn_backward(const fnn_plan *p, int64_t rows);

/* Copies rows perm[start..start+rows) (perm NULL: start..start+rows) of src, w floats
 * each, into dst (packed). */
void fnn_gather(float *dst, const float *src, const int64_t *perm, int64_t start, int64_t rows,
                int64_t w);

/* What head hd divides its weighted loss sum by over a batch (Keras' reduction): the
 * rows, 1, or the sum of the sample weights w[perm[start + r]] (perm NULL: w[start + r]). */
double fnn_loss_divisor(const fnn_head *hd, const float *w, const int64_t *perm, int64_t start,
                        int64_t rows);

/* parallel.c: whether a training step of `rows` rows (a predict of `rows` remaining rows,
 * an evaluate batch) is split between the plan's copies, and the split calls themselves
 * (pack: the call's first split region, which packs the weights for the rest of the call). */
int fnn_parallel_train(const struct fnn_shards *sh, int64_t rows);
int fnn_parallel_predict(const struct fnn_shards *sh, int64_t rows);
int fnn_train_parallel(fnn_plan *p, fnn_optimizer *opt, const fnn_run *run, double *tot);
int64_t fnn_predict_parallel(fnn_plan *p, const float *const *x, int64_t s, int64_t n,
                             float *const *out, int pack);
int fnn_parallel_evaluate(const struct fnn_shards *sh, int64_t rows);
void fnn_evaluate_parallel(fnn_plan *p, const float *const *x, const float *const *y,
                           const float *const *sw, int64_t s, int64_t rows, double *totals,
                           int pack);

#endif
