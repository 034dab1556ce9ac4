/* engine.c - trains a chain of dense layers an epoch per call: shuffle, gather
 * each batch from the caller's arrays, forward, loss, backward, optimizer step.
 * No allocation: every buffer comes from the plan the caller compiled. */
#include <math.h>
#include <string.h>

#include "fastnn.h"
#include "fpu.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

FNN_CLONES
int fnn_all_finite(const float *x, size_t n)
{
    /* x - x is 0 for finite x and NaN for NaN or Inf; OR-ing the comparisons is an
     * integer reduction, so it vectorises without reassociating float sums */
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !(x[i] - x[i] == 0.0f);
    return !bad;
}

/* Fisher-Yates. A draw in [0, i] is the high half of a product (Lemire) instead of
 * a division, which alone cost ~5% of the article model's training step; below 2^32
 * rows each 64-bit draw serves two swaps. The bias, (i + 1) / 2^32 at most, is below
 * 2^-22 for a million rows. */
void fnn_shuffle(int64_t *perm, int64_t n, uint64_t *state)
{
    int64_t i = n - 1;
    for (; i > 1 && i < 0xFFFFFFFFLL; i -= 2) {
        const uint64_t r = splitmix64(state);
        const int64_t j = (int64_t)(((r & 0xFFFFFFFFu) * (uint64_t)(i + 1)) >> 32);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        const int64_t k = (int64_t)(((r >> 32) * (uint64_t)i) >> 32); /* in [0, i - 1] */
        t = perm[i - 1];
        perm[i - 1] = perm[k];
        perm[k] = t;
    }
    for (; i > 0; i--) { /* the last swap, or any beyond 2^32 rows */
        const uint64_t r = splitmix64(state);
#if defined(__SIZEOF_INT128__)
        const int64_t j = (int64_t)(((unsigned __int128)r * (uint64_t)(i + 1)) >> 64);
#else
        const int64_t j = (int64_t)(r % (uint64_t)(i + 1));
#endif
        const int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static const float *last_output(const fnn_net *net) { return net->acts[net->n_layers]; }
static int64_t out_width(const fnn_net *net) { return net->layers[net->n_layers - 1].n_out; }
static int64_t out_ld(const fnn_net *net) { return net->ld[net->n_layers]; }

/* dst rows (stride ldd) = src rows (stride lds), w floats each */
static void copy_rows(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                      int64_t w)
{
    for (int64_t r = 0; r < rows; r++) memcpy(dst + r * ldd, src + r * lds, (size_t)w * sizeof(float));
}

/* Dropout's mask is a hash of (the step's seed, element index), so backward redraws
 * exactly the mask forward used without storing it: element e is kept when its 32
 * random bits fall below keep * 2^32. */
static void dropout(const float *in, int64_t ldin, float *out, int64_t ldout, int64_t rows,
                    int64_t m, float rate, uint64_t seed)
{
    const float scale = 1.0f / (1.0f - rate);
    const uint64_t keep_below = (uint64_t)((1.0 - (double)rate) * 4294967296.0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < m; j += 2) {
            uint64_t h = seed + (uint64_t)(r * m + j) * 0x9E3779B97F4A7C15ull;
            const uint64_t bits = splitmix64(&h);
            out[r * ldout + j] = (bits & 0xFFFFFFFFu) < keep_below ? in[r * ldin + j] * scale : 0.0f;
            if (j + 1 < m)
                out[r * ldout + j + 1] = (bits >> 32) < keep_below ? in[r * ldin + j + 1] * scale
                                                                  : 0.0f;
        }
}

/* Forward of `rows` rows starting at x0 (row stride ldx0); training draws dropout masks. */
static void forward(const fnn_net *net, const float *x0, int64_t ldx0, int64_t rows,
                    int training)
{
    const float *in = x0;
    int64_t ldin = ldx0;
    for (int l = 0; l < net->n_layers; l++) {
        const fnn_layer *L = &net->layers[l];
        float *out = net->acts[l + 1];
        const int64_t ldout = net->ld[l + 1];
        if (L->kind == FNN_LAYER_ACTIVATION) {
            copy_rows(out, ldout, in, ldin, rows, L->n_out);
            fnn_act_forward(L->act, out, ldout, rows, L->n_out);
        } else if (L->kind == FNN_LAYER_DROPOUT) {
            if (training && L->rate > 0.0f) {
                net->mask_seeds[l] = splitmix64(net->dropout_state);
                dropout(in, ldin, out, ldout, rows, L->n_out, L->rate, net->mask_seeds[l]);
            } else {
                copy_rows(out, ldout, in, ldin, rows, L->n_out); /* inference: identity */
            }
        } else {
            fnn_dense_forward(in, ldin, net->params + L->w_off,
                              L->use_bias ? net->params + L->b_off : NULL, out, ldout, rows,
                              L->n_in, L->n_out, L->act, L->gemm, net->scratch);
        }
        in = out;
        ldin = ldout;
    }
}

static void backward(const fnn_net *net, int64_t rows)
{
    for (int l = net->n_layers - 1; l >= 0; l--) {
        const fnn_layer *L = &net->layers[l];
        float *gy = net->deltas[l + 1];
        const int64_t ldy = net->ld[l + 1];
        if (L->kind == FNN_LAYER_ACTIVATION) {
            fnn_act_backward(L->act, net->acts[l + 1], gy, ldy, rows, L->n_out);
            if (l > 0) copy_rows(net->deltas[l], net->ld[l], gy, ldy, rows, L->n_out);
            continue;
        }
        if (L->kind == FNN_LAYER_DROPOUT) { /* d_in = d_out * mask * scale: the same mask */
            if (l == 0) continue;
            if (L->rate > 0.0f)
                dropout(gy, ldy, net->deltas[l], net->ld[l], rows, L->n_out, L->rate,
                        net->mask_seeds[l]);
            else
                copy_rows(net->deltas[l], net->ld[l], gy, ldy, rows, L->n_out);
            continue;
        }
        fnn_dense_backward(net->acts[l], net->ld[l], net->params + L->w_off, net->acts[l + 1], gy,
                           ldy, l == 0 ? NULL : net->deltas[l], net->ld[l],
                           net->grads + L->w_off, L->use_bias ? net->grads + L->b_off : NULL,
                           rows, L->n_in, L->n_out, L->act, L->gemm, net->scratch);
    }
}

/* Accuracy follows Keras' choice by target shape: integer labels (tw == 1, m > 1):
 * argmax == label; distributions (tw == m > 1): argmax == argmax; one output: binary at
 * 0.5 (at 0 on logits, when the sigmoid sits in the loss). MSE/MAE need tw == m. */
static double metric(int kind, const float *p, int64_t ldp, const float *t, int64_t tw,
                     int64_t n, int64_t m, int loss)
{
    if (kind == FNN_METRIC_ACCURACY) {
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
    if (tw != m) return NAN; /* never read past the targets (Python rejects this pairing) */
    return fnn_loss(kind == FNN_METRIC_MAE ? FNN_LOSS_MAE : FNN_LOSS_MSE, p, ldp, t, NULL, n, m);
}

static void add_metrics(const fnn_net *net, const float *t, int64_t rows, const int *metrics,
                        int n_metrics, fnn_totals *tot)
{
    for (int k = 0; k < n_metrics && k < FNN_MAX_METRICS; k++)
        tot->metric_sum[k] += metric(metrics[k], last_output(net), out_ld(net), t,
                                     net->target_width, rows, out_width(net), net->loss) *
                              (double)rows;
}

/* Copies rows perm[start..start+rows) of src (width w) into dst. */
static void gather(float *dst, const float *src, const int64_t *perm, int64_t start, int64_t rows,
                   int64_t w)
{
    if (!perm) {
        memcpy(dst, src + start * w, (size_t)(rows * w) * sizeof(float));
        return;
    }
    /* short rows (the article's 13 features, 1 target): memcpy of a constant size is
     * inlined as a few vector moves, a call per row costs more than the copy */
    switch (w) {
#define GATHER_CASE(W)                                                               \
    case W:                                                                          \
        for (int64_t r = 0; r < rows; r++)                                           \
            memcpy(dst + r * W, src + perm[start + r] * W, W * sizeof(float));       \
        break;
        GATHER_CASE(1) GATHER_CASE(2) GATHER_CASE(3) GATHER_CASE(4) GATHER_CASE(5)
        GATHER_CASE(6) GATHER_CASE(7) GATHER_CASE(8) GATHER_CASE(9) GATHER_CASE(10)
        GATHER_CASE(11) GATHER_CASE(12) GATHER_CASE(13) GATHER_CASE(14) GATHER_CASE(15)
        GATHER_CASE(16)
#undef GATHER_CASE
    default:
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + r * w, src + perm[start + r] * w, (size_t)w * sizeof(float));
    }
}

void fnn_net_predict(const fnn_net *net, const float *x, int64_t n, float *out)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    const int64_t n_in = net->layers[0].n_in, m = out_width(net);
    for (int64_t s = 0; s < n; s += net->max_batch) {
        const int64_t rows = n - s < net->max_batch ? n - s : net->max_batch;
        forward(net, x + s * n_in, n_in, rows, 0);
        copy_rows(out + s * m, m, last_output(net), out_ld(net), rows, m);
    }
    fnn_fpu_restore(fpu);
}

static int train_epoch(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                       const int64_t *perm, int64_t n, int batch, const int *metrics,
                       int n_metrics, fnn_totals *tot)
{
    const int64_t n_in = net->layers[0].n_in, m = out_width(net), tw = net->target_width;
    for (int64_t s = 0; s < n; s += batch) {
        const int64_t rows = n - s < batch ? n - s : batch;
        gather(net->acts[0], x, perm, s, rows, n_in);
        gather(net->target, y, perm, s, rows, tw);
        forward(net, net->acts[0], n_in, rows, 1);
        const double loss = fnn_loss(net->loss, last_output(net), out_ld(net), net->target,
                                     net->deltas[net->n_layers], rows, m);
        add_metrics(net, net->target, rows, metrics, n_metrics, tot);
        tot->loss_sum += loss * (double)rows;
        tot->rows += rows;
        if (!isfinite(loss)) return 1;
        backward(net, rows);
        fnn_optimizer_update(opt, net->params, net->grads, (size_t)net->n_params);
    }
    return 0;
}

int fnn_net_train_epoch(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                        const int64_t *perm, int64_t n, int batch, const int *metrics,
                        int n_metrics, fnn_totals *tot)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    const int status = train_epoch(net, opt, x, y, perm, n, batch, metrics, n_metrics, tot);
    fnn_fpu_restore(fpu);
    return status;
}

int fnn_net_train(const fnn_net *net, fnn_optimizer *opt, const float *x, const float *y,
                  int64_t *perm, uint64_t *shuffle_state, int64_t n, int batch, int epochs,
                  const int *metrics, int n_metrics, fnn_totals *per_epoch)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    int e = 0;
    while (e < epochs) {
        if (perm && shuffle_state) fnn_shuffle(perm, n, shuffle_state);
        if (train_epoch(net, opt, x, y, perm, n, batch, metrics, n_metrics, &per_epoch[e++]))
            break;
    }
    fnn_fpu_restore(fpu);
    return e;
}

void fnn_net_evaluate(const fnn_net *net, const float *x, const float *y, int64_t n, int batch,
                      const int *metrics, int n_metrics, fnn_totals *tot)
{
    const fnn_fpu_state fpu = fnn_fpu_flush_denormals();
    const int64_t n_in = net->layers[0].n_in, m = out_width(net), tw = net->target_width;
    if (batch > net->max_batch) batch = net->max_batch;
    for (int64_t s = 0; s < n; s += batch) {
        const int64_t rows = n - s < batch ? n - s : batch;
        forward(net, x + s * n_in, n_in, rows, 0);
        tot->loss_sum += fnn_loss(net->loss, last_output(net), out_ld(net), y + s * tw, NULL, rows,
                                  m) * (double)rows;
        add_metrics(net, y + s * tw, rows, metrics, n_metrics, tot);
        tot->rows += rows;
    }
    fnn_fpu_restore(fpu);
}
