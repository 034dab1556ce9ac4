/* metrics.c - the metrics the engine computes beside the loss, on each batch's outputs:
 * each adds its sufficient statistics (sums, counts, confusion histograms) to its slots of
 * the totals; results are functions of the summed slots (fastnn/metrics.py). */
#include <math.h>
#include <string.h>

#include "metrics.h"

static int mean_type(int kind)
{
    return (kind >= FNN_METRIC_MSE && kind <= FNN_METRIC_LOSS) || kind == FNN_METRIC_EQUALITY;
}

/* Accuracies that threshold each output (and so compare a sigmoid's logits with
 * logit(threshold)), and accuracies that take a row's argmax (the same on logits as on
 * the probabilities of a softmax or sigmoid): neither needs the folded activation. */
static int thresholds_outputs(int kind, int64_t width)
{
    return kind == FNN_METRIC_BINARY_ACCURACY || (kind == FNN_METRIC_ACCURACY && width == 1);
}

static int takes_argmax(int kind, int64_t width)
{
    return kind == FNN_METRIC_CATEGORICAL_ACCURACY ||
           kind == FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY ||
           (kind == FNN_METRIC_ACCURACY && width > 1);
}

int64_t fnn_metric_slots(const fnn_metric *m, int64_t width)
{
    if (mean_type(m->kind)) return m->weighted ? 2 : 1;
    if (m->kind == FNN_METRIC_R2) return 4 * width + 1;
    if (m->kind == FNN_METRIC_CONFUSION) return 2 * ((int64_t)m->n_thresholds + 1);
    return 4 * width; /* FNN_METRIC_FSCORE */
}

int fnn_metric_check(const fnn_metric *m, int64_t width, int64_t tw)
{
    const int sparse = m->kind == FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY ||
                       m->kind == FNN_METRIC_SPARSE_TOP_K ||
                       (m->kind == FNN_METRIC_LOSS && m->iparam[0] == FNN_LOSS_SPARSE_CCE_LOGITS);
    if (m->kind < 0 || m->kind >= FNN_METRIC_COUNT) return FNN_EPLAN_KIND;
    if (m->kind == FNN_METRIC_ACCURACY ? tw != 1 && tw != width : tw != (sparse ? 1 : width))
        return FNN_EPLAN_SHAPE;
    if ((m->kind == FNN_METRIC_TOP_K || m->kind == FNN_METRIC_SPARSE_TOP_K) && m->iparam[0] < 1)
        return FNN_EPLAN_KIND;
    if (m->kind == FNN_METRIC_LOSS && (m->iparam[0] < 0 || m->iparam[0] >= FNN_LOSS_COUNT))
        return FNN_EPLAN_KIND;
    if (m->kind == FNN_METRIC_CONFUSION) {
        if (m->n_thresholds < 1 || !m->thresholds || m->iparam[0] < -1 ||
            m->iparam[0] >= width || m->iparam[1] < 0)
            return FNN_EPLAN_KIND;
        for (int i = 1; i < m->n_thresholds; i++)
            if (!(m->thresholds[i - 1] <= m->thresholds[i])) return FNN_EPLAN_KIND;
    }
    return 0;
}

/* ---- per-row values of the mean-type metrics ----------------------------------------- */

static int64_t argmax(const float *x, int64_t m) /* the first maximum, as Keras' argmax */
{
    int64_t best = 0;
    for (int64_t j = 1; j < m; j++) best = x[j] > x[best] ? j : best;
    return best;
}

/* 1 if class `label` is among the k largest of p (Keras' in_top_k: rank 1 + #{p_j > p_label}
 * at most k, ties counting in) */
static int in_top_k(const float *p, int64_t m, int64_t label, int64_t k)
{
    if (label < 0 || label >= m) return 0;
    int64_t above = 0;
    for (int64_t j = 0; j < m; j++) above += p[j] > p[label];
    return above < k;
}

static int64_t label_of(float t) { return t >= 0.0f ? (int64_t)t : -1; }

/* Keras' binary_accuracy: mean_j [(p_j > threshold) == t_j], on sigmoid logits against
 * logit(threshold) */
static double binary_hits(const float *p, const float *t, int64_t m, float threshold, int logits)
{
    double thr = threshold;
    if (logits)
        thr = threshold <= 0.0f ? -INFINITY
            : threshold >= 1.0f ? INFINITY : log((double)threshold / (1.0 - (double)threshold));
    int64_t hits = 0;
    for (int64_t j = 0; j < m; j++) hits += (float)((double)p[j] > thr) == t[j];
    return (double)hits / (double)m;
}

static double row_value(const fnn_metric *mt, const float *p, const float *t, int64_t tw,
                        int64_t m, int logits)
{
    switch (mt->kind) {
    case FNN_METRIC_ACCURACY: /* Keras picks by shape */
        if (m == 1) return binary_hits(p, t, 1, 0.5f, logits);
        if (tw == 1) return argmax(p, m) == label_of(t[0]);
        return argmax(p, m) == argmax(t, m);
    case FNN_METRIC_BINARY_ACCURACY: return binary_hits(p, t, m, mt->param, logits);
    case FNN_METRIC_CATEGORICAL_ACCURACY: return argmax(p, m) == argmax(t, m);
    case FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY: return argmax(p, m) == label_of(t[0]);
    case FNN_METRIC_TOP_K: return in_top_k(p, m, argmax(t, m), mt->iparam[0]);
    case FNN_METRIC_EQUALITY: {
        int64_t hits = 0;
        for (int64_t j = 0; j < m; j++) hits += p[j] == t[j];
        return (double)hits / (double)m;
    }
    default: /* FNN_METRIC_SPARSE_TOP_K */
        return in_top_k(p, m, label_of(t[0]), mt->iparam[0]);
    }
}

static int cross_entropy(int loss)
{
    return loss == FNN_LOSS_SPARSE_CCE_LOGITS || loss == FNN_LOSS_CCE_LOGITS ||
           loss == FNN_LOSS_BCE_LOGITS;
}

/* Keras' cross-entropies of probabilities p, as its metrics take them: the categorical
 * forms normalise each row, then p is clipped to [1e-7, 1 - 1e-7]; labels smoothed as in
 * the losses; a class index out of range counts as probability 1e-7. Returns sum_i w_i L_i. */
static double ce_of_probabilities(int loss, float smooth, const float *p, int64_t ldp,
                                  const float *t, const float *w, int64_t n, int64_t m)
{
    const double eps = 1e-7, s = smooth;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp;
        double v = 0.0, total = 0.0;
        if (loss == FNN_LOSS_BCE_LOGITS) {
            for (int64_t j = 0; j < m; j++) {
                const double q = pi[j] < eps ? eps : (pi[j] > 1.0 - eps ? 1.0 - eps : pi[j]);
                const double tj = t[i * m + j] * (1.0 - s) + 0.5 * s;
                v -= tj * log(q) + (1.0 - tj) * log(1.0 - q);
            }
            v /= (double)m;
        } else {
            for (int64_t j = 0; j < m; j++) total += pi[j];
            const int64_t label = loss == FNN_LOSS_SPARSE_CCE_LOGITS ? label_of(t[i]) : -1;
            for (int64_t j = 0; j < m; j++) {
                const double tj = loss == FNN_LOSS_SPARSE_CCE_LOGITS ? (j == label)
                                : t[i * m + j] * (1.0 - s) + s / (double)m;
                const double r = pi[j] / total, q = r < eps ? eps : (r > 1.0 - eps ? 1.0 - eps : r);
                if (tj != 0.0) v -= tj * log(q);
            }
            if (loss == FNN_LOSS_SPARSE_CCE_LOGITS && (label < 0 || label >= m)) v = -log(eps);
        }
        sum += (w ? (double)w[i] : 1.0) * v;
    }
    return sum;
}

static void mean_update(const fnn_metric *mt, const float *p, int64_t ldp, const float *t,
                        int64_t tw, const float *w, int64_t n, int64_t m, int logits, double *s)
{
    if (mt->kind == FNN_METRIC_LOSS && cross_entropy((int)mt->iparam[0]) && mt->iparam[1]) {
        s[0] += ce_of_probabilities((int)mt->iparam[0], mt->param, p, ldp, t, w, n, m);
    } else if (mt->kind == FNN_METRIC_MSE || mt->kind == FNN_METRIC_MAE ||
               mt->kind == FNN_METRIC_LOSS) {
        const int loss = mt->kind == FNN_METRIC_MSE ? FNN_LOSS_MSE
                       : mt->kind == FNN_METRIC_MAE ? FNN_LOSS_MAE : (int)mt->iparam[0];
        s[0] += fnn_loss_sum(loss, mt->param, p, ldp, t, w, NULL, 0.0, n, m, NULL);
    } else {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += (w ? (double)w[i] : 1.0) * row_value(mt, p + i * ldp, t + i * tw, tw, m, logits);
        s[0] += sum;
    }
    if (mt->weighted) {
        double ws = (double)n;
        if (w) {
            ws = 0.0;
            for (int64_t i = 0; i < n; i++) ws += w[i];
        }
        s[1] += ws;
    }
}

/* ---- the metrics of summed statistics ------------------------------------------------ */

/* slots: sum w t, sum w t^2, sum w (t - p)^2, sum w per column, then rows with w != 0 */
static void r2_update(const float *p, int64_t ldp, const float *t, const float *w, int64_t n,
                      int64_t m, double *s)
{
    for (int64_t i = 0; i < n; i++) {
        const double wi = w ? (double)w[i] : 1.0;
        for (int64_t j = 0; j < m; j++) {
            const double tj = t[i * m + j], e = tj - (double)p[i * ldp + j];
            s[j] += wi * tj;
            s[m + j] += wi * tj * tj;
            s[2 * m + j] += wi * e * e;
            s[3 * m + j] += wi;
        }
        s[4 * m] += wi != 0.0;
    }
}

/* #{thresholds < x} for ascending thresholds (0 for NaN) */
static int bucket(const float *thr, int k, float x)
{
    int lo = 0, hi = k;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (thr[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* 1 if p[j] is among the row's k largest, ties going to the lower index (Keras' top_k) */
static int kept_by_top_k(const float *p, int64_t m, int64_t j, int64_t k)
{
    int64_t before = 0;
    for (int64_t l = 0; l < m; l++) before += p[l] > p[j] || (p[l] == p[j] && l < j);
    return before < k;
}

static void confusion_update(const fnn_metric *mt, const float *p, int64_t ldp, const float *t,
                             const float *w, int64_t n, int64_t m, double *s)
{
    const int k = mt->n_thresholds;
    const int64_t first = mt->iparam[0] >= 0 ? mt->iparam[0] : 0;
    const int64_t last = mt->iparam[0] >= 0 ? mt->iparam[0] + 1 : m;
    const int64_t top = mt->iparam[1];
    double *pos = s, *neg = s + k + 1;
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp, *ti = t + i * m;
        const double wi = w ? (double)w[i] : 1.0;
        for (int64_t j = first; j < last; j++) {
            const int b = top > 0 && !kept_by_top_k(pi, m, j, top) ? 0
                        : bucket(mt->thresholds, k, pi[j]);
            if (ti[j] != 0.0f) pos[b] += wi;
            else neg[b] += wi;
        }
    }
}

/* slots per column: sum w q t, sum w q (1 - t), sum w (1 - q) t, sum w t */
static void fscore_update(float threshold, const float *p, int64_t ldp, const float *t,
                          const float *w, int64_t n, int64_t m, double *s)
{
    for (int64_t i = 0; i < n; i++) {
        const float *pi = p + i * ldp, *ti = t + i * m;
        const double wi = w ? (double)w[i] : 1.0;
        const float top = pi[argmax(pi, m)];
        for (int64_t j = 0; j < m; j++) {
            const double q = isnan(threshold) ? (pi[j] >= top && fabsf(pi[j]) > 1e-9f)
                                              : pi[j] > threshold;
            const double tj = ti[j];
            s[j] += wi * q * tj;
            s[m + j] += wi * q * (1.0 - tj);
            s[2 * m + j] += wi * (1.0 - q) * tj;
            s[3 * m + j] += wi * tj;
        }
    }
}

void fnn_metric_update(const fnn_metric *m, const float *p, int64_t ldp, const float *t,
                       int64_t tw, const float *w, int64_t n, int64_t width, int logits,
                       double *slots)
{
    if (mean_type(m->kind)) mean_update(m, p, ldp, t, tw, w, n, width, logits, slots);
    else if (m->kind == FNN_METRIC_R2) r2_update(p, ldp, t, w, n, width, slots);
    else if (m->kind == FNN_METRIC_CONFUSION) confusion_update(m, p, ldp, t, w, n, width, slots);
    else fscore_update(m->param, p, ldp, t, w, n, width, slots);
}

void fnn_metrics_update(const fnn_plan *p, const float *const *targets,
                        const float *const *weights, int64_t rows, double *totals)
{
    int activated = -1; /* the head whose activated outputs p->tmp holds */
    for (int k = 0; k < p->n_metrics; k++) {
        const fnn_metric *m = &p->metrics[k];
        const fnn_head *hd = &p->heads[m->head];
        const fnn_tensor *T = &p->tensors[hd->tensor];
        const float *pred = T->value;
        const int logits = hd->loss == FNN_LOSS_BCE_LOGITS && thresholds_outputs(m->kind, T->width);
        if (hd->folded_act != FNN_ACT_LINEAR && !logits && !takes_argmax(m->kind, T->width)) {
            /* what predict returns: the activation the loss took over, applied */
            if (activated != m->head) {
                const size_t bytes = (size_t)T->width * sizeof(float);
                for (int64_t i = 0; i < rows; i++)
                    memcpy(p->tmp + i * T->ld, T->value + i * T->ld, bytes);
                fnn_act_forward(hd->folded_act, p->tmp, T->ld, rows, T->width);
                activated = m->head;
            }
            pred = p->tmp;
        }
        const float *w = m->weighted && weights ? weights[m->head] : NULL;
        fnn_metric_update(m, pred, T->ld, targets[m->head], hd->target_width, w, rows, T->width,
                          logits, totals + m->slot);
    }
}
