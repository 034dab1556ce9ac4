/* test_plan.c - builds and runs a plan with no Python: a two-input graph (dense layers, a
 * layer called twice, add, concatenate, relu) trained with SGD on the portable and panel
 * paths; checks forward against plain loops, the gradients against central differences
 * in double, and that training lowers the loss; then the same split between two threads
 * (csrc/parallel.c): the same checks, and two runs bit-identical. Compiled and run by
 * tests/test_c_core.py.
 * Prints "ok" and exits 0, or prints what failed and exits 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastnn.h"
#include "fpu.h"

enum { N = 6, A = 5, B = 3, H = 4 };

static int failures = 0;

static void expect(int ok, const char *what, double got, double want)
{
    if (!ok) {
        printf("FAIL %s: got %.9g, want %.9g\n", what, got, want);
        failures++;
    }
}

/* the graph, in double: h = relu(a.W1 + b1); s = h + relu(h.W2 + b2) (W2 applied... once);
 * u = relu(s.W2 + b2) (the same weights again); c = [u, bin]; y = c.W3 + b3 */
static double loss_ref(const double *w, const double *a, const double *bin, const double *t)
{
    const double *W1 = w, *b1 = W1 + A * H, *W2 = b1 + H, *b2 = W2 + H * H, *W3 = b2 + H,
                 *b3 = W3 + (H + B);
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        double h[H], g[H], s[H], u[H], y = b3[0];
        for (int j = 0; j < H; j++) {
            h[j] = b1[j];
            for (int k = 0; k < A; k++) h[j] += a[i * A + k] * W1[k * H + j];
            h[j] = h[j] > 0 ? h[j] : 0;
        }
        for (int j = 0; j < H; j++) {
            g[j] = b2[j];
            for (int k = 0; k < H; k++) g[j] += h[k] * W2[k * H + j];
            g[j] = g[j] > 0 ? g[j] : 0;
            s[j] = h[j] + g[j];
        }
        for (int j = 0; j < H; j++) {
            u[j] = b2[j];
            for (int k = 0; k < H; k++) u[j] += s[k] * W2[k * H + j];
            u[j] = u[j] > 0 ? u[j] : 0;
        }
        for (int k = 0; k < H; k++) y += u[k] * W3[k];
        for (int k = 0; k < B; k++) y += bin[i * B + k] * W3[H + k];
        total += (y - t[i]) * (y - t[i]);
    }
    return total / N;
}

/* One training step on all N rows, in order; its totals added to tot. */
static int one_step(fnn_plan *p, fnn_optimizer *opt, const float *const *xs,
                    const float *const *ys, double *tot)
{
    int64_t perm[N];
    fnn_run r;
    memset(&r, 0, sizeof r);
    r.x = xs;
    r.y = ys;
    r.n = N;
    r.batch = N;
    r.perm = perm;
    r.epochs = 1;
    r.totals = tot;
    r.totals_cap = 1;
    return fnn_plan_train(p, opt, &r, 1, 0.0, 0);
}

/* path: the dense ops' kernels; threads: the plan's copies (1: none); final: the
 * parameters after training (NP floats) */
static int run(int path, int threads, float *final)
{
    enum { NP = A * H + H + H * H + H + (H + B) + 1 };
    float params[NP], grads[NP], state[1];
    double w64[NP];
    float a[N * A], bin[N * B], t[N];
    uint64_t seed = 12345;
    for (int i = 0; i < NP; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        params[i] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
    for (int i = 0; i < N * A; i++) a[i] = (float)sin(i * 0.7);
    for (int i = 0; i < N * B; i++) bin[i] = (float)cos(i * 1.3);
    for (int i = 0; i < N; i++) t[i] = (float)(0.3 * i - 0.5);

    /* tensors: 0 a, 1 bin, 2 h, 3 g, 4 s, 5 u, 6 c, 7 y */
    fnn_tensor tensors[8];
    memset(tensors, 0, sizeof tensors);
    const int64_t widths[8] = {A, B, H, H, H, H, H + B, 1};
    for (int i = 0; i < 8; i++) {
        tensors[i].width = widths[i];
        tensors[i].is_input = i < 2;
    }
    static const int in_h[] = {0}, in_g[] = {2}, in_s[] = {2, 3}, in_u[] = {4}, in_c[] = {5, 1},
                     in_y[] = {6};
    const int64_t oW1 = 0, ob1 = A * H, oW2 = ob1 + H, ob2 = oW2 + H * H, oW3 = ob2 + H,
                  ob3 = oW3 + H + B;
    fnn_op ops[6];
    memset(ops, 0, sizeof ops);
    const struct { int kind, n_in; const int *in; int out, act; int64_t w, b; } spec[6] = {
        {FNN_OP_DENSE, 1, in_h, 2, FNN_ACT_RELU, oW1, ob1},
        {FNN_OP_DENSE, 1, in_g, 3, FNN_ACT_RELU, oW2, ob2},
        {FNN_OP_ADD, 2, in_s, 4, 0, 0, -1},
        {FNN_OP_DENSE, 1, in_u, 5, FNN_ACT_RELU, oW2, ob2}, /* the same layer again */
        {FNN_OP_CONCAT, 2, in_c, 6, 0, 0, -1},
        {FNN_OP_DENSE, 1, in_y, 7, FNN_ACT_LINEAR, oW3, ob3},
    };
    for (int k = 0; k < 6; k++) {
        ops[k].kind = spec[k].kind;
        ops[k].n_in = spec[k].n_in;
        ops[k].in = spec[k].in;
        ops[k].out = spec[k].out;
        ops[k].act = spec[k].act;
        ops[k].path = path;
        ops[k].trainable = 1;
        ops[k].w_off = spec[k].w;
        ops[k].b_off = spec[k].b;
    }
    static const int inputs[] = {0, 1}, outputs[] = {7};
    fnn_head head = {7, FNN_LOSS_MSE, FNN_ACT_LINEAR, 1, 1.0f, NULL};
    fnn_plan p;
    memset(&p, 0, sizeof p);
    p.n_tensors = 8;
    p.tensors = tensors;
    p.n_ops = 6;
    p.ops = ops;
    p.n_inputs = 2;
    p.inputs = inputs;
    p.n_outputs = 1;
    p.outputs = outputs;
    p.n_heads = 1;
    p.heads = &head;
    p.params = params;
    p.grads = grads;
    p.n_params = NP;
    p.state = state;
    p.max_batch = N;
    int where = -1;
    const int64_t floats = fnn_plan_layout(&p, &where);
    if (floats < 0) {
        printf("FAIL layout: code %lld at %d\n", (long long)floats, where);
        return 1;
    }
    /* backward runs in reverse: the second call of W2 writes its gradient, the first adds;
     * h is read by dense g and by add: add (later) writes dL/dh, dense g adds */
    expect(ops[1].wacc == 1 && ops[3].wacc == 0, "the first call of W2 adds (wacc)",
           ops[1].wacc, 1);
    expect(ops[1].acc == 1 && ops[2].acc == 0, "dense g adds to dL/dh", (double)ops[1].acc, 1);
    float *arena = (float *)calloc((size_t)floats, sizeof(float));

    fnn_plan_bind(&p, arena);
    if (threads > 1) {
        fnn_parallel_min_flop(0.0); /* this little plan split all the same */
        fnn_pool_set_threads(threads);
        expect(fnn_plan_set_threads(&p, threads) == threads, "copies made", 0, threads);
    }
    for (int i = 0; i < NP; i++) w64[i] = params[i];
    double a64[N * A], b64[N * B], t64[N];
    for (int i = 0; i < N * A; i++) a64[i] = a[i];
    for (int i = 0; i < N * B; i++) b64[i] = bin[i];
    for (int i = 0; i < N; i++) t64[i] = t[i];

    /* forward: predict against the reference's loss */
    float out[N];
    const float *xs[2] = {a, bin};
    float *outs[1] = {out};
    fnn_plan_predict(&p, xs, 0, N, outs, 0.0);
    double mse = 0.0;
    for (int i = 0; i < N; i++) mse += ((double)out[i] - t[i]) * ((double)out[i] - t[i]);
    mse /= N;
    const double want = loss_ref(w64, a64, b64, t64);
    expect(fabs(mse - want) < 1e-5 * (1 + want), "forward loss", mse, want);

    /* one step at learning rate 0: the gradients, against central differences */
    fnn_optimizer opt;
    memset(&opt, 0, sizeof opt);
    opt.kind = FNN_OPT_SGD;
    opt.lr = 0.0f;
    fnn_optimizer_init(&opt, NP);
    double totals[3] = {0, 0, 0};
    const float *ys[1] = {t};
    const int status = one_step(&p, &opt, xs, ys, totals);
    expect(status == FNN_RUN_DONE, "status", status, FNN_RUN_DONE);
    for (int i = 0; i < NP; i++) {
        const double h = 1e-6, keep = w64[i];
        w64[i] = keep + h;
        const double up = loss_ref(w64, a64, b64, t64);
        w64[i] = keep - h;
        const double down = loss_ref(w64, a64, b64, t64);
        w64[i] = keep;
        const double fd = (up - down) / (2 * h);
        char what[64];
        snprintf(what, sizeof what, "gradient of parameter %d", i);
        expect(fabs(grads[i] - fd) < 1e-3 * (1 + fabs(fd)), what, grads[i], fd);
    }

    /* training lowers the loss */
    opt.lr = 0.05f;
    double first = -1, last = 0;
    for (int e = 0; e < 50; e++) {
        double tot[3] = {0, 0, 0};
        one_step(&p, &opt, xs, ys, tot);
        last = tot[1] / tot[0];
        if (first < 0) first = last;
    }
    expect(last < 0.5 * first, "loss after 50 steps below half the first", last, 0.5 * first);
    memcpy(final, params, sizeof params);
    fnn_plan_free_threads(&p);
    free(arena);
    return failures;
}

/* Native calls flush subnormals to zero (x86 MXCSR, AArch64 FPCR) and restore the mode. */
static int flush_to_zero(void)
{
    volatile float a = 1e-30f, b = 1e-10f;
    const fnn_fpu_state old = fnn_fpu_flush_denormals();
    const float flushed = a * b; /* 1e-40: a subnormal, flushed to 0 */
    fnn_fpu_restore(old);
    const float kept = a * b;
#if defined(__SSE2__) || defined(_M_X64) || defined(__aarch64__)
    expect(flushed == 0.0f, "subnormal flushed inside a native call", flushed, 0.0);
#endif
    expect(kept != 0.0f, "the caller's mode restored", kept, 1e-40);
    return failures;
}

int main(void)
{
    int bad = flush_to_zero();
    enum { NPMAX = 256 };
    float serial[NPMAX] = {0}, split[NPMAX] = {0}, again[NPMAX] = {0};
    bad += run(FNN_PATH_PORTABLE, 1, serial);
    bad += run(FNN_PATH_PANELS, 1, serial);
    bad += run(FNN_PATH_PANELS, 2, split);
    bad += run(FNN_PATH_PANELS, 2, again);
    expect(memcmp(split, again, sizeof split) == 0, "two threads: two runs bit-identical", 0, 0);
    bad += failures;
    if (bad) return 1;
    printf("ok\n");
    return 0;
}
