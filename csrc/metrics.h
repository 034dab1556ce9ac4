/* metrics.h - metric values for the engine (metrics.c). */
#ifndef FASTNN_METRICS_H
#define FASTNN_METRICS_H

#include "fastnn.h"

/* Metric `kind` (FNN_METRIC_*) of n rows of predictions p (m wide, rows ldp apart) against
 * targets t (tw wide, packed). loss: the head's loss (accuracy thresholds logits at 0 under
 * a sigmoid cross-entropy); folded_act: the activation the loss took over, applied (into
 * tmp, n rows ldp apart) before MSE/MAE so that they compare what predict returns. */
double fnn_metric_value(int kind, const float *p, int64_t ldp, const float *t, int64_t tw, int64_t n,
                  int64_t m, int loss, int folded_act, float *tmp);

#endif
