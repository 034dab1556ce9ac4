/* metrics.h - the statistics of the metrics (metrics.c), for the engine and for metric
 * objects used alone. Kinds, slots and parameters: fnn_metric in fastnn.h. */
#ifndef FASTNN_METRICS_H
#define FASTNN_METRICS_H

#include "fastnn.h"

/* The doubles metric `m` sums its statistics into, on outputs `width` wide. */
int64_t fnn_metric_slots(const fnn_metric *m, int64_t width);

/* 0 if metric m can read an output `width` wide against targets tw wide (and its
 * parameters are valid), else FNN_EPLAN_SHAPE or FNN_EPLAN_KIND. */
int fnn_metric_check(const fnn_metric *m, int64_t width, int64_t tw);

/* Adds to slots the statistics of n rows of predictions p (width wide, rows ldp apart)
 * against targets t (tw wide, packed), row i weighted by w[i] (w NULL: 1). logits: p holds
 * the logits of a sigmoid (a binary cross-entropy's head), which the accuracies threshold
 * at logit(threshold); everything else compares p as given. */
void fnn_metric_update(const fnn_metric *m, const float *p, int64_t ldp, const float *t,
                       int64_t tw, const float *w, int64_t n, int64_t width, int logits,
                       double *slots);

/* Every metric of plan p on the batch of `rows` rows held in its head tensors, against
 * targets[h] and weights[h] (NULL: unweighted); added to totals at each metric's slot. */
void fnn_metrics_update(const fnn_plan *p, const float *const *targets,
                        const float *const *weights, int64_t rows, double *totals);

#endif
