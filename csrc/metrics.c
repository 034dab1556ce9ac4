/* metrics.c - the metrics the engine computes beside the loss, on each batch's outputs. */
#include <math.h>
#include <string.h>

#include "metrics.h"

/* Accuracy follows Keras' choice by target shape: integer labels (tw == 1, m > 1):
 * argmax == label; distributions (tw == m > 1): argmax == argmax; one output: binary at
 * 0.5 (at 0 on logits, when the sigmoid sits in the loss). */
static double accuracy(const float *p, int64_t ldp, const float *t, int64_t tw, int64_t n,
                       int64_t m, int loss)
{
    int64_t hits = 0;
    const float threshold = loss == FNN_LOSS_BCE_LOGITS ? 0.0f : 0.5f;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp, *ti = t + i * tw;
        if (m == 1) {
            hits += (pi[0] > threshold) == (ti[0] > 0.5f);
            continue;
        }
        int64_t best = 0;
        for (int64_t j = 1; j < m; j++) best = pi[j] > pi[best] ? j : best;
        if (tw == 1) {
            hits += best == (int64_t)ti[0];
        } else {
            int64_t want = 0;
            for (int64_t j = 1; j < m; j++) want = ti[j] > ti[want] ? j : want;
            hits += best == want;
        }
    }
    return (double)hits / (double)n;
}

double fnn_metric_value(int kind, const float *p, int64_t ldp, const float *t, int64_t tw, int64_t n,
                  int64_t m, int loss, int folded_act, float *tmp)
{
    if (kind == FNN_METRIC_ACCURACY) return accuracy(p, ldp, t, tw, n, m, loss);
    if (tw != m) return NAN; /* never read past the targets (Python rejects this pairing) */
    if (folded_act != FNN_ACT_LINEAR) { /* the outputs the user sees: the activation's */
        for (int64_t i = 0; i < n; i++) memcpy(tmp + i * ldp, p + i * ldp, (size_t)m * sizeof(float));
        fnn_act_forward(folded_act, tmp, ldp, n, m);
        p = tmp;
    }
    return fnn_loss(kind == FNN_METRIC_MAE ? FNN_LOSS_MAE : FNN_LOSS_MSE, p, ldp, t, NULL, n, m);
}
