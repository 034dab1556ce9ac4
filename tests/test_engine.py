"""The engine at the Plan level: plans of ops over tensors, built by hand over our own
float32 buffers (no layers, no planner), run by csrc/engine.c and compared with a float64
NumPy interpreter of the same plan written here from the maths, and with central finite
differences of that interpreter's loss.

The interpreter reads `plan.spec` (the plan as given) and the plan's buffers: a dense op
is act(x . W + b) with W (in x out) row-major at w_off; merges are the elementwise
definitions (maximum/minimum send the gradient to the first extreme input, as a left fold
of pairwise max does); a head is weight * loss(tensor, targets) with the conftest losses.
"""
import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest

from fastnn import _engine

F64 = np.float64
WIDTHS = (1, 3, 16, 17, 33)
ACTS = ("linear", "relu", "sigmoid", "tanh", "softmax")
MERGES = ("add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate")
# (n_in, n_out) of the dense ops under test: narrow, exactly one panel, one panel and a
# column, two panels and a column, in both directions
DENSE_SHAPES = ((1, 1), (3, 16), (16, 3), (17, 33), (33, 17), (16, 16), (1, 33), (33, 1))
ROWS = (1, 5, 19)     # with MAX_BATCH 8: one row, a partial chunk, three chunks
MAX_BATCH = 8


# ---- building plans by hand --------------------------------------------------------------


class Graph:
    """Tensors, ops and the weights they read, appended as the plan is written; plan()
    makes the _engine.Plan over fresh float32 params/grads/state buffers."""

    def __init__(self, rng):
        self.rng = rng
        self.tensors, self.ops, self.inputs = [], [], []
        self.params, self.state = [], []

    def tensor(self, width, is_input=False):
        self.tensors.append((int(width), bool(is_input)))
        return len(self.tensors) - 1

    def input(self, width):
        t = self.tensor(width, True)
        self.inputs.append(t)
        return t

    def width(self, t):
        return self.tensors[t][0]

    @staticmethod
    def _put(buf, values, align):
        at = sum(a.size for a in buf)
        if align and at % 16:
            buf.append(np.zeros(16 - at % 16))
            at += 16 - at % 16
        buf.append(np.asarray(values, F64).ravel())
        return at

    def weights(self, n_in, n_out, bias=True, trainable=True, w=None, b=None, align=False):
        """Places W (n_in x n_out) and b (random unless given); returns (w_off, b_off)."""
        if w is None:
            w = self.rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
        if b is None:
            b = 0.5 * self.rng.standard_normal(n_out)
        buf = self.params if trainable else self.state
        w_off = self._put(buf, w, align)
        b_off = self._put(buf, b, False) if bias else -1
        return w_off, b_off

    def dense(self, x, units, act="linear", bias=True, path="panels", trainable=True,
              at=None):
        """A dense op reading x; `at` = (w_off, b_off) of existing weights (a shared layer)."""
        w_off, b_off = at if at is not None else self.weights(self.width(x), units, bias,
                                                               trainable)
        return self.op("dense", [x], units, act=act, path=path, trainable=trainable,
                       w_off=w_off, b_off=b_off)

    def op(self, kind, inputs, width=None, **fields):
        if width is None:
            width = (sum(self.width(t) for t in inputs) if kind == "concatenate"
                     else self.width(inputs[0]))
        out = self.tensor(width)
        self.ops.append({"kind": kind, "inputs": list(inputs), "out": out, **fields})
        return out

    def buffers(self):
        params = (np.concatenate(self.params) if self.params else np.zeros(0)).astype(np.float32)
        state = (np.concatenate(self.state) if self.state else np.zeros(1)).astype(np.float32)
        return params, np.zeros_like(params), state

    def plan(self, outputs=(), heads=(), metrics=(), max_batch=MAX_BATCH, buffers=None):
        params, grads, state = buffers if buffers is not None else self.buffers()
        return _engine.Plan(list(self.tensors), [dict(op) for op in self.ops],
                            list(self.inputs), list(outputs), [tuple(h) for h in heads],
                            [tuple(m) for m in metrics], params, grads, state, max_batch)


def f32(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def labels(rng, n, classes):
    return rng.integers(0, classes, size=(n, 1)).astype(np.float32)


# ---- the float64 reference interpreter ---------------------------------------------------


def act_forward(ref, act, z):
    return ref.ACT_FORWARD[act](z)


def act_backward(ref, act, z, y, g):
    """dL/dz from dL/dy = g (softmax: its Jacobian, the others elementwise from z)."""
    if act == "softmax":
        return y * (g - (g * y).sum(axis=1, keepdims=True))
    return g * ref.ACT_DERIVATIVE[act](z)


def _weights(spec_op, params, state, n_in, n_out):
    src = params if spec_op.get("trainable", True) else state
    w_off, b_off = spec_op.get("w_off", 0), spec_op.get("b_off", -1)
    w = src[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
    b = src[b_off:b_off + n_out] if b_off >= 0 else None
    return w, b


def ref_forward(ref, spec, params, state, xs, masks=None):
    """Tensor values (float64) and each dense/activation op's pre-activation z.
    masks: {op index: 0/1 keep mask} for dropout ops in training (else identity)."""
    params, state = np.asarray(params, F64), np.asarray(state, F64)
    widths = [w for w, _ in spec["tensors"]]
    v = {t: np.asarray(x, F64) for t, x in zip(spec["inputs"], xs)}
    zs = {}
    for k, op in enumerate(spec["ops"]):
        ins = [v[t] for t in op["inputs"]]
        kind, act = op["kind"], op.get("act", "linear")
        if kind == "dense":
            w, b = _weights(op, params, state, ins[0].shape[1], widths[op["out"]])
            zs[k] = ins[0] @ w + (b if b is not None else 0.0)
            out = act_forward(ref, act, zs[k])
        elif kind == "activation":
            zs[k] = ins[0]
            out = act_forward(ref, act, ins[0])
        elif kind == "dropout":
            mask = (masks or {}).get(k)
            out = ins[0] if mask is None else ins[0] * mask / (1.0 - op["rate"])
        elif kind == "add":
            out = np.sum(ins, axis=0)
        elif kind == "subtract":
            out = ins[0] - ins[1]
        elif kind == "multiply":
            out = np.prod(ins, axis=0)
        elif kind == "average":
            out = np.mean(ins, axis=0)
        elif kind == "maximum":
            out = np.max(ins, axis=0)
        elif kind == "minimum":
            out = np.min(ins, axis=0)
        elif kind == "concatenate":
            out = np.concatenate(ins, axis=1)
        else:
            raise AssertionError(kind)
        v[op["out"]] = out
    return v, zs


def ref_losses(ref, spec, values, ys):
    """Per head: (mean loss, dL/d(head tensor))."""
    return [ref.LOSSES[loss](values[t], np.asarray(y, F64))
            for (t, loss, _folded, _tw, _w), y in zip(spec["heads"], ys)]


def ref_total(ref, spec, params, state, xs, ys, masks=None):
    v, _ = ref_forward(ref, spec, params, state, xs, masks)
    return sum(h[4] * val for h, (val, _) in zip(spec["heads"], ref_losses(ref, spec, v, ys)))


def ref_grads(ref, spec, params, state, xs, ys, masks=None):
    """(weighted total loss, dL/dparams) by reverse-mode differentiation in float64."""
    params64, state64 = np.asarray(params, F64), np.asarray(state, F64)
    v, zs = ref_forward(ref, spec, params64, state64, xs, masks)
    g, gp = {}, np.zeros_like(params64)

    def add(t, d):
        g[t] = g[t] + d if t in g else d

    total = 0.0
    for h, (val, d) in zip(spec["heads"], ref_losses(ref, spec, v, ys)):
        total += h[4] * val
        add(h[0], h[4] * d)
    widths = [w for w, _ in spec["tensors"]]
    for k in reversed(range(len(spec["ops"]))):
        op = spec["ops"][k]
        if op["out"] not in g:
            continue
        gy, ins, kind = g[op["out"]], op["inputs"], op["kind"]
        act = op.get("act", "linear")
        if kind == "dense":
            x = v[ins[0]]
            n_in, n_out = x.shape[1], widths[op["out"]]
            w, _ = _weights(op, params64, state64, n_in, n_out)
            dz = act_backward(ref, act, zs[k], v[op["out"]], gy)
            if op.get("trainable", True):
                w_off, b_off = op.get("w_off", 0), op.get("b_off", -1)
                gp[w_off:w_off + n_in * n_out] += (x.T @ dz).ravel()
                if b_off >= 0:
                    gp[b_off:b_off + n_out] += dz.sum(axis=0)
            add(ins[0], dz @ w.T)
        elif kind == "activation":
            add(ins[0], act_backward(ref, act, zs[k], v[op["out"]], gy))
        elif kind == "dropout":
            mask = (masks or {}).get(k)
            add(ins[0], gy if mask is None else gy * mask / (1.0 - op["rate"]))
        elif kind == "add":
            for t in ins:
                add(t, gy)
        elif kind == "subtract":
            add(ins[0], gy)
            add(ins[1], -gy)
        elif kind == "multiply":
            for i, t in enumerate(ins):
                add(t, gy * np.prod([v[u] for j, u in enumerate(ins) if j != i], axis=0))
        elif kind == "average":
            for t in ins:
                add(t, gy / len(ins))
        elif kind in ("maximum", "minimum"):
            stack = np.stack([v[t] for t in ins])
            best = stack.argmax(axis=0) if kind == "maximum" else stack.argmin(axis=0)
            for i, t in enumerate(ins):
                add(t, gy * (best == i))  # argmax/argmin: the first extreme one
        elif kind == "concatenate":
            at = 0
            for t in ins:
                add(t, gy[:, at:at + widths[t]])
                at += widths[t]
    return total, gp


def finite_differences(ref, spec, params, state, xs, ys, idx, masks=None, eps=1e-5):
    p = np.asarray(params, F64).copy()
    out = np.empty(len(idx))
    for n, i in enumerate(idx):
        old = p[i]
        p[i] = old + eps
        up = ref_total(ref, spec, p, state, xs, ys, masks)
        p[i] = old - eps
        down = ref_total(ref, spec, p, state, xs, ys, masks)
        p[i] = old
        out[n] = (up - down) / (2 * eps)
    return out


def assert_close(got, want, tol=1e-4, what=""):
    """float32 engine vs float64 reference: relative to the largest value compared."""
    want = np.asarray(want, F64)
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1e-6)
    np.testing.assert_allclose(np.asarray(got, F64), want, rtol=10 * tol, atol=tol * scale,
                               err_msg=what)


# ---- running the engine ------------------------------------------------------------------


def sgd(plan, lr=0.0, **hyper):
    return _engine.OptimizerState("sgd", plan.params.shape[0], learning_rate=lr, **hyper)


def train_step_grads(plan, xs, ys):
    """One SGD step at learning rate 0 over all rows: (dL/dparams, that epoch's totals)."""
    before = plan.params.copy()
    run = _engine.Run(plan, xs, ys, xs[0].shape[0], 1, False, 0, 1)
    assert plan.train(run, sgd(plan), 1, 0.0, False) == "done"
    np.testing.assert_array_equal(plan.params, before)
    return plan.grads.copy(), run.take_totals()[0]


def check_gradients(ref, rng, plan, xs, ys, masks=None, n_fd=40, tol=1e-4, only=None):
    """plan.grads after one step == float64 backprop == central differences (on up to
    n_fd random entries); the step's loss == the reference loss. only: the slice of the
    parameters compared (default all)."""
    spec = plan.spec
    got, totals = train_step_grads(plan, xs, ys)
    loss, want = ref_grads(ref, spec, plan.params, plan.state, xs, ys, masks)
    idx_all = np.arange(got.size)[only if only is not None else slice(None)]
    assert_close(got[idx_all], want[idx_all], tol, "engine vs float64 backprop")
    assert totals[0] == xs[0].shape[0]
    np.testing.assert_allclose(totals[1] / totals[0], loss, rtol=1e-4, atol=1e-6)
    if idx_all.size and n_fd:
        idx = rng.choice(idx_all, size=min(n_fd, idx_all.size), replace=False)
        fd = finite_differences(ref, spec, plan.params, plan.state, xs, ys, idx, masks)
        assert_close(got[idx], fd, max(tol, 1e-4), "engine vs finite differences")
    return got


def path_param(request, path):
    if path == "blas":
        request.getfixturevalue("blas")


# ==== 1. forward of every op kind =========================================================


@pytest.mark.parametrize("path", ["panels", "portable", "blas"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("act", ACTS)
def test_dense_forward(kernels, request, ref, rng, act, bias, path):
    """act(x . W + b) on every path, from a packed input and from a padded tensor
    (through a linear activation op), over partial and several max_batch chunks."""
    path_param(request, path)
    for n_in, n_out in DENSE_SHAPES:
        for via in (False, True):
            g = Graph(rng)
            x = g.input(n_in)
            src = g.op("activation", [x], act="linear") if via else x
            y = g.dense(src, n_out, act, bias, path)
            plan = g.plan([y])
            for rows in ROWS:
                xv = f32(rng, rows, n_in)
                (got,) = plan.predict_many([xv])
                v, _ = ref_forward(ref, plan.spec, plan.params, plan.state, [xv])
                assert got.shape == (rows, n_out) and got.dtype == np.float32
                assert_close(got, v[y], 1e-5, f"{n_in}->{n_out} rows={rows} via={via}")


@pytest.mark.parametrize("act", ACTS)
def test_activation_forward(kernels, ref, rng, act):
    for width in WIDTHS:
        g = Graph(rng)
        x = g.input(width)
        y = g.op("activation", [x], act=act)
        z = g.op("activation", [y], act=act)  # a padded tensor in, too
        plan = g.plan([y, z])
        for rows in ROWS:
            xv = f32(rng, rows, width, scale=2.0)
            got_y, got_z = plan.predict_many([xv])
            want_y = act_forward(ref, act, xv.astype(F64))
            assert_close(got_y, want_y, 1e-5)
            assert_close(got_z, act_forward(ref, act, want_y), 1e-5)


def test_dropout_is_identity_at_inference(kernels, rng):
    for width in WIDTHS:
        g = Graph(rng)
        x = g.input(width)
        y = g.op("dropout", [x], rate=0.5)
        z = g.op("dropout", [g.op("activation", [x], act="linear")], rate=0.9)
        plan = g.plan([y, z])
        plan.set_dropout_seed(3)
        for rows in ROWS:
            xv = f32(rng, rows, width)
            got_y, got_z = plan.predict_many([xv])
            np.testing.assert_array_equal(got_y, xv)
            np.testing.assert_array_equal(got_z, xv)


def merge_inputs(kind):
    return (2,) if kind == "subtract" else (1, 2, 3, 4)


@pytest.mark.parametrize("kind", MERGES)
def test_merge_forward(kernels, ref, rng, kind):
    """Each merge over 1-4 packed inputs (concatenate: of different widths), and over
    padded tensors produced by other ops, at every width and chunking."""
    for n in merge_inputs(kind):
        for width in WIDTHS:
            widths = ([WIDTHS[(WIDTHS.index(width) + i) % len(WIDTHS)] for i in range(n)]
                      if kind == "concatenate" else [width] * n)
            g = Graph(rng)
            xs = [g.input(w) for w in widths]
            y = g.op(kind, xs)
            z = g.op(kind, [g.op("activation", [x], act="linear") for x in xs])
            plan = g.plan([y, z])
            for rows in ROWS:
                xv = [f32(rng, rows, w) for w in widths]
                if kind == "multiply":  # zeros are kept, not divided by
                    xv[0][:, ::2] = 0.0
                got_y, got_z = plan.predict_many(xv)
                v, _ = ref_forward(ref, plan.spec, plan.params, plan.state, xv)
                assert got_y.shape == (rows, sum(widths) if kind == "concatenate" else width)
                assert_close(got_y, v[y], 1e-6, f"{kind} n={n} width={width} rows={rows}")
                assert_close(got_z, v[z], 1e-6, f"{kind} n={n} width={width} rows={rows}")


def test_max_min_forward_with_ties(rng):
    g = Graph(rng)
    a, b = g.input(5), g.input(5)
    plan = g.plan([g.op("maximum", [a, b]), g.op("minimum", [a, b]), g.op("maximum", [a, a])])
    av = f32(rng, 7, 5)
    bv = av.copy()
    bv[::2] += 1.0
    mx, mn, same = plan.predict_many([av, bv])
    np.testing.assert_array_equal(mx, np.maximum(av, bv))
    np.testing.assert_array_equal(mn, np.minimum(av, bv))
    np.testing.assert_array_equal(same, av)


def test_predict_latency_path_and_tiny_time_budget(ref, rng):
    """predict() (one input, one output) equals predict_many(); a tiny max_seconds still
    finishes (the binding resumes chunk after chunk)."""
    g = Graph(rng)
    x = g.input(3)
    y = g.dense(g.dense(x, 17, "tanh"), 2)
    plan = g.plan([y], max_batch=4)
    xv = f32(rng, 103, 3)
    want = ref_forward(ref, plan.spec, plan.params, plan.state, [xv])[0][y]
    np.testing.assert_array_equal(plan.predict(xv), plan.predict_many([xv])[0])
    plan.chunk_seconds = 1e-9  # a tiny time budget per native call still makes progress
    np.testing.assert_array_equal(plan.predict(xv), plan.predict_many([xv], 1e-9)[0])
    assert_close(plan.predict(xv), want, 1e-5)
    assert plan.predict_many([xv[:0]])[0].shape == (0, 2)


# ==== 2. gradients of every op kind =======================================================


@pytest.mark.parametrize("path", ["panels", "portable", "blas"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("act", ACTS)
def test_dense_gradients(kernels, request, ref, rng, act, bias, path):
    """x -> dense(tanh) -> dense under test -> mse: the op's weight gradients and the
    gradient it passes back (into the first layer's weights)."""
    path_param(request, path)
    for n_in, n_out in DENSE_SHAPES:
        for rows in (1, 5):
            g = Graph(rng)
            h = g.dense(g.input(4), n_in, "tanh")
            y = g.dense(h, n_out, act, bias, path)
            plan = g.plan(heads=[(y, "mse", "linear", n_out, 1.0)])
            xs, ys = [f32(rng, rows, 4)], [f32(rng, rows, n_out)]
            check_gradients(ref, rng, plan, xs, ys)


@pytest.mark.parametrize("act", ACTS)
def test_activation_gradients(kernels, ref, rng, act):
    for width in WIDTHS:
        g = Graph(rng)
        h = g.op("activation", [g.dense(g.input(3), width)], act=act)
        y = g.dense(h, 2)
        plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
        check_gradients(ref, rng, plan, [f32(rng, 5, 3)], [f32(rng, 5, 2)])


def test_dropout_rate_zero_gradients(kernels, ref, rng):
    """Training with rate 0 is the identity forward and backward."""
    for width in WIDTHS:
        g = Graph(rng)
        h = g.op("dropout", [g.dense(g.input(3), width, "tanh")], rate=0.0)
        y = g.dense(h, 2)
        plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
        check_gradients(ref, rng, plan, [f32(rng, 5, 3)], [f32(rng, 5, 2)])


@pytest.mark.parametrize("kind", MERGES)
def test_merge_gradients(kernels, ref, rng, kind):
    """x -> n dense branches -> merge -> dense -> mse (and the merge as the head itself):
    every branch's weights get the merge's gradient."""
    for n in merge_inputs(kind):
        for width in WIDTHS:
            widths = ([WIDTHS[(WIDTHS.index(width) + i) % len(WIDTHS)] for i in range(n)]
                      if kind == "concatenate" else [width] * n)
            for on_head in (False, True):
                g = Graph(rng)
                x = g.input(3)
                branches = [g.dense(x, w, "tanh") for w in widths]
                m = g.op(kind, branches)
                y = m if on_head else g.dense(m, 2)
                w_out = g.width(y)
                plan = g.plan(heads=[(y, "mse", "linear", w_out, 1.0)])
                check_gradients(ref, rng, plan, [f32(rng, 5, 3)], [f32(rng, 5, w_out)],
                                n_fd=25)


def test_multiply_gradients_with_zeros(kernels, ref, rng):
    """relu branches hold exact zeros: the product's gradient to the other inputs is 0
    there, and to the zero input the product of the others (never y / x_i)."""
    for n in (2, 3):
        g = Graph(rng)
        x = g.input(3)
        branches = [g.dense(x, 17, "relu") for _ in range(n)]
        y = g.op("multiply", branches)
        plan = g.plan(heads=[(y, "mse", "linear", 17, 1.0)])
        xs, ys = [f32(rng, 5, 3)], [f32(rng, 5, 17)]
        v, _ = ref_forward(ref, plan.spec, plan.params, plan.state, xs)
        assert (v[branches[0]] == 0).any() and (v[branches[0]] > 0).any()
        check_gradients(ref, rng, plan, xs, ys)


@pytest.mark.parametrize("kind", ["maximum", "minimum"])
def test_max_min_gradient_goes_to_first_extreme_input(kernels, ref, rng, kind):
    """Branches a and b compute exactly the same values (equal weights at different
    offsets); c differs. The gradient of max(c, a, b) where a == b wins goes to a alone,
    so b's weights get none; max(a, a) sends it once."""
    g = Graph(rng)
    x = g.input(3)
    w = rng.standard_normal((3, 17))
    bias = rng.standard_normal(17)
    a = g.dense(x, 17, at=g.weights(3, 17, w=w, b=bias, align=True))
    at_b = g.weights(3, 17, w=w, b=bias, align=True)
    b = g.dense(x, 17, at=at_b)
    c = g.dense(x, 17)
    m = g.op(kind, [c, a, b])
    same = g.op(kind, [a, a])
    y = g.op("add", [m, same])
    plan = g.plan(outputs=[a, b], heads=[(y, "mse", "linear", 17, 1.0)])
    xs, ys = [f32(rng, 5, 3)], [f32(rng, 5, 17)]
    va, vb = plan.predict_many(xs)
    np.testing.assert_array_equal(va, vb)  # exact ties
    # no finite differences: at a tie max() has no derivative, only the convention
    got = check_gradients(ref, rng, plan, xs, ys, n_fd=0)
    np.testing.assert_array_equal(got[at_b[0]:at_b[0] + 3 * 17 + 17], 0.0)


# ==== 3. tensors read by several ops: gradients add =======================================


def test_accumulate_flags_and_values(kernels, ref, rng):
    """x -> A; A read by dense B, dense C, Add(B, C) and Add(A, A); B is also a head.
    Backward order is the ops reversed: the first op there to reach a tensor writes its
    gradient, later ones add (acc bit i for input i)."""
    g = Graph(rng)
    x = g.input(3)                                  # t0
    a = g.dense(x, 17, "tanh")                      # op0: t1
    b = g.dense(a, 17, "sigmoid")                   # op1: t2 (a head too)
    c = g.dense(a, 17)                              # op2: t3
    s = g.op("add", [b, c])                         # op3: t4
    aa = g.op("add", [a, a])                        # op4: t5
    y = g.op("concatenate", [s, aa])                # op5: t6
    plan = g.plan(heads=[(y, "mse", "linear", 34, 1.0), (b, "mae", "linear", 17, 0.5)])
    tensors, ops = plan.gradient_flow()
    assert tensors == [False, True, True, True, True, True, True]
    assert ops == [
        (True, 0b0, False),   # op0 reads the input: no gradient there
        (True, 0b1, False),   # op1: A already has C's and the Adds' gradients
        (True, 0b1, False),   # op2: A already has op4's
        (True, 0b01, False),  # op3: B already has its head's gradient, C is new
        (True, 0b10, False),  # op4: the first A writes, the second adds
        (True, 0b00, False),  # op5: the first to reach S and AA
    ]
    check_gradients(ref, rng, plan, [f32(rng, 5, 3)], [f32(rng, 5, 34), f32(rng, 5, 17)])


def test_output_read_by_another_op_and_unused_branches(kernels, ref, rng):
    """A head's tensor read by a later op (its gradient = the head's + the reader's), and
    ops whose output reaches no head do not run backward and write no gradient."""
    g = Graph(rng)
    x = g.input(4)
    a = g.dense(x, 16, "relu")                      # op0
    out1 = g.dense(a, 3)                            # op1: head 0, read by op2
    out2 = g.dense(out1, 2, "tanh")                 # op2: head 1
    side = g.dense(a, 5)                            # op3: an output without a head
    side_off = len(np.concatenate(g.params)) - 5 - 16 * 5
    plan = g.plan(outputs=[side], heads=[(out1, "mse", "linear", 3, 1.0),
                                          (out2, "mse", "linear", 2, 1.0)])
    tensors, ops = plan.gradient_flow()
    assert [o[0] for o in ops] == [True, True, True, False]
    assert ops[1][1] == 0b0 and ops[2][1] == 0b1 and ops[0][1] == 0
    assert tensors[side] is False
    plan.grads[side_off:] = 7.0  # stale: another plan's gradients in the shared buffer
    check_gradients(ref, rng, plan, [f32(rng, 5, 4)], [f32(rng, 5, 3), f32(rng, 5, 2)],
                    only=slice(0, side_off))
    # weights this plan gives no gradient get zero, never another plan's stale values
    np.testing.assert_array_equal(plan.grads[side_off:], 0.0)


def test_tensor_read_twice_by_one_op(kernels, ref, rng):
    """The same tensor twice in add, multiply (x*x: 2x), concatenate and subtract (x-x:
    no gradient at all)."""
    for kind in ("add", "multiply", "concatenate", "average", "subtract"):
        g = Graph(rng)
        a = g.dense(g.input(3), 17, "tanh")
        y = g.dense(g.op(kind, [a, a]), 2)
        plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
        assert plan.gradient_flow()[1][1] == (True, 0b10, False)
        check_gradients(ref, rng, plan, [f32(rng, 5, 3)], [f32(rng, 5, 2)])


# ==== 4. shared weights: a layer called twice =============================================


@pytest.mark.parametrize("path", ["panels", "portable", "blas"])
def test_shared_weights_gradients_sum(kernels, request, ref, rng, path):
    """One layer called in series (S(S(x))) and in parallel (S(x) + S(h)): its weight
    gradient is the sum over calls; the earlier call in forward order adds (wacc)."""
    path_param(request, path)
    for width in (3, 17):
        g = Graph(rng)
        x = g.input(width)
        at = g.weights(width, width)
        s1 = g.dense(x, width, "tanh", path=path, at=at)       # op0
        s2 = g.dense(s1, width, "sigmoid", path=path, at=at)   # op1
        h = g.dense(x, width, "tanh")                          # op2
        s3 = g.dense(h, width, "linear", path=path, at=at)     # op3
        y = g.op("add", [s2, s3])                              # op4
        plan = g.plan(heads=[(y, "mse", "linear", width, 1.0)])
        wacc = [o[2] for o in plan.gradient_flow()[1]]
        assert wacc == [True, True, False, False, False]
        xs, ys = [f32(rng, 5, width)], [f32(rng, 5, width)]
        got = check_gradients(ref, rng, plan, xs, ys)
        # really a sum: the shared slice is not any one call's gradient
        n_shared = width * width + width
        for k in (0, 1, 3):
            spec = {**plan.spec, "ops": [dict(op) for op in plan.spec["ops"]]}
            for j in (0, 1, 3):  # the other calls read a copy placed after the params
                if j != k:
                    spec["ops"][j].update(w_off=plan.params.size,
                                          b_off=plan.params.size + width * width)
            params = np.concatenate([plan.params, plan.params[:n_shared]])
            alone = ref_grads(ref, spec, params, plan.state, xs, ys)[1][:n_shared]
            assert np.abs(got[:n_shared] - alone).max() > 1e-3 * np.abs(alone).max()


def test_shared_weights_gradient_is_rewritten_each_step(kernels, ref, rng):
    """Over several steps at lr 0 the gradient stays the same (no sums carried from one
    step into the next)."""
    g = Graph(rng)
    x = g.input(5)
    at = g.weights(5, 5)
    y = g.dense(g.dense(x, 5, "tanh", at=at), 5, at=at)
    plan = g.plan(heads=[(y, "mse", "linear", 5, 1.0)])
    xs, ys = [f32(rng, 4, 5)], [f32(rng, 4, 5)]
    run = _engine.Run(plan, xs, ys, 4, 3, False, 0, 3)
    grads = []
    opt = sgd(plan)
    for _ in range(3):
        plan.train(run, opt, 1, 0.0, False)
        grads.append(plan.grads.copy())
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], grads[2])
    assert_close(grads[0], ref_grads(ref, plan.spec, plan.params, plan.state, xs, ys)[1])


# ==== 5. frozen weights ===================================================================


def test_frozen_layer_in_the_middle(kernels, ref, rng):
    """x -> T1 (params) -> F (state, frozen) -> T2 (params): F's weights never change,
    T1 still gets the gradient through F; SGD moves only params, by lr * grads."""
    for path in ("panels", "portable"):
        g = Graph(rng)
        x = g.input(4)
        h = g.dense(x, 17, "tanh")
        f = g.dense(h, 16, "relu", path=path, trainable=False)
        y = g.dense(f, 3)
        plan = g.plan(heads=[(y, "mse", "linear", 3, 1.0)])
        assert plan.gradient_flow()[1] == [(True, 0, False)] * 3
        # params hold only T1 and T2: every gradient entry is theirs
        assert plan.params.size == 4 * 17 + 17 + 16 * 3 + 3
        assert plan.state.size == 17 * 16 + 16
        xs, ys = [f32(rng, 6, 4)], [f32(rng, 6, 3)]
        check_gradients(ref, rng, plan, xs, ys)
        state0 = plan.state.copy()
        run = _engine.Run(plan, xs, ys, 3, 4, False, 0, 4)
        opt = sgd(plan, 0.1)
        for _ in range(8):
            before = plan.params.astype(F64)
            _, want = ref_grads(ref, plan.spec, plan.params, plan.state,
                                [xs[0][run.step * 3:run.step * 3 + 3]],
                                [ys[0][run.step * 3:run.step * 3 + 3]])
            plan.train(run, opt, 1, 0.0, False)
            assert_close(plan.params, before - 0.1 * want, 1e-5)
            np.testing.assert_array_equal(plan.state, state0)
        assert run.epoch == 4


def test_frozen_first_layer_gets_no_input_gradient(kernels, ref, rng):
    """A frozen layer reading the input: nothing upstream needs a gradient, so its
    backward does not run; the trainable layer after it trains."""
    g = Graph(rng)
    f = g.dense(g.input(4), 17, "tanh", trainable=False)
    y = g.dense(f, 2)
    plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
    assert plan.gradient_flow() == ([False, False, True], [(False, 0, False), (True, 0, False)])
    check_gradients(ref, rng, plan, [f32(rng, 5, 4)], [f32(rng, 5, 2)])


def test_only_frozen_weights_trains_nothing(ref, rng):
    g = Graph(rng)
    y = g.dense(g.dense(g.input(4), 17, "tanh", trainable=False), 2, trainable=False)
    plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)], metrics=[(0, "mae")])
    assert plan.params.size == 0
    assert plan.gradient_flow() == ([False] * 3, [(False, 0, False)] * 2)
    xs, ys = [f32(rng, 10, 4)], [f32(rng, 10, 2)]
    state0 = plan.state.copy()
    run = _engine.Run(plan, xs, ys, 4, 3, True, 5, 3)
    assert plan.train(run, sgd(plan, 0.5), 1000, 0.0, False) == "done"
    np.testing.assert_array_equal(plan.state, state0)
    totals = run.take_totals()
    v, _ = ref_forward(ref, plan.spec, plan.params, plan.state, xs)
    want = ref.LOSSES["mse"](v[y], ys[0])[0]
    mae = ref.LOSSES["mae"](v[y], ys[0])[0]
    assert totals.shape == (3, 4)
    np.testing.assert_allclose(totals[:, 1] / totals[:, 0], want, rtol=1e-5)
    np.testing.assert_allclose(totals[:, 3] / totals[:, 0], mae, rtol=1e-5)


# ==== 6. dropout while training ===========================================================


def dropout_plan(rng, units, rate):
    """x (3) -> A (no bias) -> dropout -> B -> mse. For one row, A's weight gradient
    column j is x * (mask_j * scale * g_j): zero exactly where unit j was dropped."""
    g = Graph(rng)
    a = g.dense(g.input(3), units, "linear", bias=False)
    d = g.op("dropout", [a], rate=rate)
    y = g.dense(d, 2)
    return g.plan(heads=[(y, "mse", "linear", 2, 1.0)]), a


def one_row_step(plan, x, y, opt):
    run = _engine.Run(plan, [x], [y], 1, 1, False, 0, 1)
    assert plan.train(run, opt, 1, 0.0, False) == "done"
    return plan.grads.copy(), run.take_totals()[0]


def test_dropout_backward_uses_the_forward_mask(kernels, ref, rng):
    """One row per step: the mask read off A's gradient must explain the loss of that
    step's forward and B's gradient (forward's mask) as well as A's (backward's mask)."""
    units = 33
    for rate in (0.2, 0.5):
        plan, a = dropout_plan(rng, units, rate)
        plan.set_dropout_seed(11)
        opt = sgd(plan)
        masks = []
        for step in range(5):
            x, y = f32(rng, 1, 3) + 0.1, f32(rng, 1, 2)
            got, totals = one_row_step(plan, x, y, opt)
            mask = (got[:3 * units].reshape(3, units) != 0).all(axis=0)
            zero = (got[:3 * units].reshape(3, units) == 0).all(axis=0)
            assert (mask | zero).all()  # a whole column, or nothing
            assert 0 < mask.sum() < units
            masks.append(mask)
            m = {1: mask[None, :].astype(F64)}
            loss, want = ref_grads(ref, plan.spec, plan.params, plan.state, [x], [y], m)
            assert_close(got, want, 1e-4, f"rate {rate} step {step}")
            np.testing.assert_allclose(totals[1], loss, rtol=1e-5)
        assert len({m.tobytes() for m in masks}) == len(masks)  # a new mask each step


def pad16(w):
    return (w + 15) // 16 * 16


def arena_rows(plan, t, rows, grad=False):
    """Tensor t's value (or gradient) rows in plan.arena, where fnn_plan_bind places them:
    the tensors in order, each max_batch rows `ld` apart (inputs packed, the others padded
    to 16 floats), its gradient right after when it carries one, each region padded to 16."""
    carries = plan.gradient_flow()[0]
    at = 0
    for u, (width, is_input) in enumerate(plan.spec["tensors"]):
        ld = width if is_input else pad16(width)
        size = pad16(plan.max_batch * ld)
        if u == t:
            assert not grad or carries[u]
            start = at + (size if grad else 0)
            return plan.arena[start:start + rows * ld].reshape(rows, ld)[:, :width]
        at += size * (2 if carries[u] else 1)
    raise AssertionError(t)


def test_dropout_zeroed_outputs_are_the_zero_gradients(kernels, ref, rng):
    """Several rows, read from the arena after a step: the dropout output is A's output
    scaled or 0, and dL/dA is 0 exactly where the output was zeroed (backward redraws the
    forward mask); with that mask the reference gives every gradient and the loss."""
    units, rows, rate = 17, 6, 0.4
    plan, a = dropout_plan(rng, units, rate)
    d = plan.spec["ops"][1]["out"]
    plan.set_dropout_seed(5)
    xs, ys = [f32(rng, rows, 3)], [f32(rng, rows, 2)]
    got, totals = train_step_grads(plan, xs, ys)
    v, _ = ref_forward(ref, plan.spec, plan.params, plan.state, xs)
    assert_close(arena_rows(plan, a, rows), v[a], 1e-5, "arena layout changed?")
    out, grad_a = arena_rows(plan, d, rows), arena_rows(plan, a, rows, grad=True)
    zeroed = out == 0
    assert 0.2 < zeroed.mean() < 0.65
    np.testing.assert_array_equal(grad_a == 0, zeroed)
    assert_close(out[~zeroed], v[a][~zeroed] / (1 - rate), 1e-5)
    mask = (~zeroed).astype(F64)
    loss, want = ref_grads(ref, plan.spec, plan.params, plan.state, xs, ys, {1: mask})
    assert_close(got, want, 1e-4)
    np.testing.assert_allclose(totals[1] / rows, loss, rtol=1e-5)


def test_dropout_adds_into_a_shared_gradient(kernels, ref, rng):
    """A read by dropout -> B and by C, Add(B, C): in backward C writes A's gradient
    first and dropout adds its masked share (acc). One row: B's weight gradient row j is
    d_j * dz, zero exactly where forward dropped unit j."""
    units, rate = 17, 0.5
    for step in range(4):
        g = Graph(rng)
        a = g.dense(g.input(3), units, "tanh")              # op0
        d = g.op("dropout", [a], rate=rate)                 # op1
        b = g.dense(d, 2)                                   # op2
        c = g.dense(a, 2)                                   # op3
        y = g.op("add", [b, c])                             # op4
        plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
        assert plan.gradient_flow()[1][1] == (True, 0b1, False)
        plan.set_dropout_seed(step)
        x, t = f32(rng, 1, 3), f32(rng, 1, 2)
        got, totals = train_step_grads(plan, [x], [t])
        w_b = plan.spec["ops"][2]["w_off"]
        rows_b = got[w_b:w_b + units * 2].reshape(units, 2)
        mask = (rows_b != 0).all(axis=1)
        assert (mask | (rows_b == 0).all(axis=1)).all() and 0 < mask.sum() < units
        loss, want = ref_grads(ref, plan.spec, plan.params, plan.state, [x], [t],
                               {1: mask[None, :].astype(F64)})
        assert_close(got, want, 1e-4)
        np.testing.assert_allclose(totals[1], loss, rtol=1e-5)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_rate_fraction(rng, rate):
    units = 4096
    plan, a = dropout_plan(rng, units, rate)
    plan.set_dropout_seed(1)
    got, _ = one_row_step(plan, np.ones((1, 3), np.float32), f32(rng, 1, 2), sgd(plan))
    dropped = (got[:units] == 0).mean()
    sigma = np.sqrt(rate * (1 - rate) / units)
    assert abs(dropped - rate) < 5 * sigma + 1e-3


def test_dropout_is_seeded(rng):
    """Same seed, same data: the same masks and weights; another seed: others."""
    def trained(seed):
        plan, _ = dropout_plan(np.random.default_rng(3), 40, 0.5)
        plan.set_dropout_seed(seed)
        d = np.random.default_rng(4)
        xs, ys = [f32(d, 20, 3)], [f32(d, 20, 2)]
        run = _engine.Run(plan, xs, ys, 5, 2, True, 9, 2)
        assert plan.train(run, sgd(plan, 0.1), 100, 0.0, False) == "done"
        return plan.params.copy(), run.take_totals()

    p1, t1 = trained(7)
    p2, t2 = trained(7)
    p3, _ = trained(8)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(t1, t2)
    assert not np.array_equal(p1, p3)


# ==== 7. heads, loss weights, metrics, evaluate ===========================================


def two_head_plan(rng, second):
    """x -> A (3 wide, head 0: mse, weight 0.3) -> B (head 1: `second`, weight 2.0)."""
    g = Graph(rng)
    x = g.input(4)
    a = g.dense(x, 3, "tanh")
    if second == "sparse_softmax_crossentropy":
        b, folded, tw, width = g.dense(a, 5), "softmax", 1, 5
        metrics = [(0, "mse"), (0, "mae"), (1, "accuracy")]
    elif second == "sigmoid_crossentropy":
        b, folded, tw, width = g.dense(a, 1), "sigmoid", 1, 1
        metrics = [(0, "mae"), (1, "accuracy"), (1, "mse")]
    elif second == "softmax_crossentropy":
        b, folded, tw, width = g.dense(a, 4), "softmax", 4, 4
        metrics = [(1, "accuracy"), (1, "mae")]
    else:
        b, folded, tw, width = g.dense(a, 2), "linear", 2, 2
        metrics = [(1, "mae"), (0, "accuracy")]
    heads = [(a, "mse", "linear", 3, 0.3), (b, second, folded, tw, 2.0)]
    return g.plan(heads=heads, metrics=metrics), width


def head_targets(rng, loss, rows, width):
    if loss == "sparse_softmax_crossentropy":
        return labels(rng, rows, width)
    if loss == "sigmoid_crossentropy":
        return rng.integers(0, 2, size=(rows, width)).astype(np.float32)
    if loss == "softmax_crossentropy":
        t = rng.random((rows, width))
        return (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
    return f32(rng, rows, width)


def ref_metric(ref, head, kind, logits, target):
    _t, loss, folded, _tw, _w = head
    p = act_forward(ref, folded, logits)
    t = np.asarray(target, F64)
    if kind == "mse":
        return np.mean((p - t) ** 2)
    if kind == "mae":
        return np.mean(np.abs(p - t))
    if p.shape[1] == 1:
        return np.mean((p[:, 0] > 0.5) == (t[:, 0] > 0.5))
    if t.shape[1] == 1:
        return np.mean(p.argmax(axis=1) == t[:, 0])
    return np.mean(p.argmax(axis=1) == t.argmax(axis=1))


def ref_totals(ref, plan, xs, ys, batch):
    spec = plan.spec
    n = xs[0].shape[0]
    tot = np.zeros(plan.totals_size)
    for s in range(0, n, batch):
        bx, by = [x[s:s + batch] for x in xs], [y[s:s + batch] for y in ys]
        rows = bx[0].shape[0]
        v, _ = ref_forward(ref, spec, plan.params, plan.state, bx)
        per_head = [val for val, _ in ref_losses(ref, spec, v, by)]
        tot[0] += rows
        tot[1] += rows * sum(h[4] * val for h, val in zip(spec["heads"], per_head))
        tot[2:2 + len(per_head)] += rows * np.array(per_head)
        for m, (h, kind) in enumerate(spec["metrics"]):
            head = spec["heads"][h]
            tot[2 + len(per_head) + m] += rows * ref_metric(ref, head, kind, v[head[0]], by[h])
    return tot


@pytest.mark.parametrize("second", ["sparse_softmax_crossentropy", "sigmoid_crossentropy",
                                    "softmax_crossentropy", "mae"])
def test_heads_evaluate_totals(kernels, ref, rng, second):
    plan, width = two_head_plan(rng, second)
    rows = 23
    xs = [f32(rng, rows, 4)]
    ys = [f32(rng, rows, 3), head_targets(rng, second, rows, width)]
    full = plan.evaluate(xs, ys, rows)
    assert full.shape == (2 + 2 + len(plan.spec["metrics"]),)
    assert full.dtype == F64
    # evaluate chunks by max_batch: its totals are the per-chunk means times rows
    assert_close(full, ref_totals(ref, plan, xs, ys, MAX_BATCH), 1e-5)
    for batch in (1, 3, 7):
        got = plan.evaluate(xs, ys, batch)
        assert got[0] == rows
        assert_close(got, ref_totals(ref, plan, xs, ys, batch), 1e-5, f"batch {batch}")
        # the means (loss and head losses) do not depend on the batch size
        np.testing.assert_allclose(got[1:4] / got[0], full[1:4] / full[0], rtol=1e-5)
    assert_close(full[1] / rows, ref_total(ref, plan.spec, plan.params, plan.state, xs, ys),
                 1e-5)


@pytest.mark.parametrize("second", ["sparse_softmax_crossentropy", "sigmoid_crossentropy",
                                    "softmax_crossentropy", "mae"])
def test_heads_weighted_gradients(kernels, ref, rng, second):
    plan, width = two_head_plan(rng, second)
    xs = [f32(rng, 6, 4)]
    ys = [f32(rng, 6, 3), head_targets(rng, second, 6, width)]
    _, totals = train_step_grads(plan, xs, ys)
    check_gradients(ref, rng, plan, xs, ys)
    # training totals: the same layout, from the pre-update outputs
    assert_close(totals, ref_totals(ref, plan, xs, ys, 6), 1e-5)


# ==== 8. training runs ====================================================================


def small_plan(rng, dropout=0.0):
    g = Graph(rng)
    h = g.dense(g.input(3), 17, "tanh")
    if dropout:
        h = g.op("dropout", [h], rate=dropout)
    y = g.dense(h, 2)
    return g.plan(heads=[(y, "mse", "linear", 2, 1.0)], metrics=[(0, "mae")])


def test_train_statuses_and_bookkeeping(ref, rng):
    plan = small_plan(rng)
    d = np.random.default_rng(2)
    xs, ys = [f32(d, 10, 3)], [f32(d, 10, 2)]
    run = _engine.Run(plan, xs, ys, 3, 3, False, 0, 3)
    assert run.steps_per_epoch == 4
    opt = sgd(plan, 0.05)
    want_params = plan.params.astype(F64)
    want_totals = np.zeros((3, 4))
    p = want_params.copy()
    for e in range(3):  # the float64 reference of the whole run
        for s in range(0, 10, 3):
            bx, by = [xs[0][s:s + 3]], [ys[0][s:s + 3]]
            loss, gr = ref_grads(ref, plan.spec, p, plan.state, bx, by)
            v, _ = ref_forward(ref, plan.spec, p, plan.state, bx)
            rows = bx[0].shape[0]
            want_totals[e] += [rows, rows * loss, rows * loss,
                               rows * ref.LOSSES["mae"](v[plan.spec["heads"][0][0]], by[0])[0]]
            p = p - 0.05 * gr

    assert plan.train(run, opt, 2, 0.0, False) == "paused"
    assert (run.epoch, run.step) == (0, 2)
    np.testing.assert_array_equal(run.current()[0], 6)
    assert run.take_totals().shape == (0, 4)
    assert plan.train(run, opt, 3, 0.0, False) == "paused"
    assert (run.epoch, run.step) == (1, 1)
    first = run.take_totals()  # mid-epoch: epoch 0, and epoch 1's first step moves up
    assert first.shape == (1, 4)
    assert run.current()[0] == 3
    assert plan.train(run, opt, 100, 0.0, True) == "epoch_end"
    assert (run.epoch, run.step) == (2, 0)
    first = np.concatenate([first, run.take_totals()])
    assert first.shape == (2, 4)
    assert plan.train(run, opt, 0, 0.0, False) == "paused"  # no steps asked: none done
    assert (run.epoch, run.step) == (2, 0)
    assert plan.train(run, opt, 100, 0.0, True) == "done"  # the last epoch's end is done
    assert (run.epoch, run.step) == (3, 0)
    totals = np.concatenate([first, run.take_totals()])
    assert_close(totals, want_totals, 1e-4)
    assert_close(plan.params, p, 1e-4)
    assert plan.train(run, opt, 100, 0.0, False) == "done"  # nothing left
    assert run.take_totals().shape == (0, 4)


def test_totals_cap_smaller_than_epochs(rng):
    """With room for one epoch's totals, each call stops at an epoch's end until they are
    taken; the collected rows equal an uninterrupted run's."""
    d = np.random.default_rng(2)
    xs, ys = [f32(d, 11, 3)], [f32(d, 11, 2)]
    whole = small_plan(np.random.default_rng(1))
    run = _engine.Run(whole, xs, ys, 4, 5, True, 3, 5)
    assert whole.train(run, sgd(whole, 0.05), 10 ** 6, 0.0, False) == "done"
    want = run.take_totals()

    capped = small_plan(np.random.default_rng(1))
    run = _engine.Run(capped, xs, ys, 4, 5, True, 3, 1)
    opt = sgd(capped, 0.05)
    rows, statuses = [], []
    for _ in range(20):
        statuses.append(capped.train(run, opt, 10 ** 6, 0.0, False))
        rows.append(run.take_totals())
        if statuses[-1] == "done":
            break
    assert statuses == ["epoch_end"] * 4 + ["done"]
    assert [r.shape[0] for r in rows] == [1] * 5
    np.testing.assert_array_equal(np.concatenate(rows), want)
    np.testing.assert_array_equal(capped.params, whole.params)

    # two epochs of room with stop_at_epoch_end: one epoch a call
    plan = small_plan(np.random.default_rng(1))
    run = _engine.Run(plan, xs, ys, 4, 5, True, 3, 2)
    opt = sgd(plan, 0.05)
    got = []
    while True:
        status = plan.train(run, opt, 10 ** 6, 0.0, True)
        got.append(run.take_totals())
        if status == "done":
            break
        assert status == "epoch_end"
    np.testing.assert_array_equal(np.concatenate(got), want)


def test_diverged(rng):
    """A loss of Inf stops the run; that step is counted in the totals, not applied."""
    plan = small_plan(rng)
    plan.params[:] *= 1e19  # tanh saturates, the output layer's weights are huge
    xs, ys = [f32(rng, 8, 3)], [f32(rng, 8, 2)]
    run = _engine.Run(plan, xs, ys, 4, 2, False, 0, 2)
    before = plan.params.copy()
    assert plan.train(run, sgd(plan, 0.1), 100, 0.0, False) == "diverged"
    np.testing.assert_array_equal(plan.params, before)
    assert (run.epoch, run.step) == (0, 0)
    assert run.current()[0] == 4 and not np.isfinite(run.current()[1])

    plan = small_plan(np.random.default_rng(1))  # a huge learning rate: later
    run = _engine.Run(plan, xs, ys, 2, 50, False, 0, 50)
    opt = sgd(plan, 1e18)
    assert plan.train(run, opt, 10 ** 6, 0.0, False) == "diverged"
    assert run.epoch < 50
    steps = run.epoch * run.steps_per_epoch + run.step
    assert steps >= 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_is_bit_identical(rng, optimizer):
    """Shuffled, with dropout: one call vs chunks of 1-3 steps, pauses by time, and stops
    at epoch ends give the same weights and totals bit for bit."""
    d = np.random.default_rng(4)
    xs, ys = [f32(d, 13, 3)], [f32(d, 13, 2)]

    def fresh():
        plan = small_plan(np.random.default_rng(1), dropout=0.3)
        plan.set_dropout_seed(99)
        opt = _engine.OptimizerState(optimizer, plan.params.shape[0], learning_rate=0.02,
                                     **({"momentum": 0.9} if optimizer == "sgd" else {}))
        return plan, opt, _engine.Run(plan, xs, ys, 4, 4, True, 21, 4)

    plan, opt, run = fresh()
    assert plan.train(run, opt, 10 ** 6, 0.0, False) == "done"
    want_params, want_totals = plan.params.copy(), run.take_totals()

    plan, opt, run = fresh()
    chunks = iter([1, 2, 3, 1, 1, 3, 2] * 10)
    statuses = set()
    while True:
        status = plan.train(run, opt, next(chunks), 0.0, True)
        statuses.add(status)
        if status == "done":
            break
    assert statuses == {"paused", "epoch_end", "done"}
    np.testing.assert_array_equal(plan.params, want_params)
    np.testing.assert_array_equal(run.take_totals(), want_totals)

    plan, opt, run = fresh()
    calls = 0
    while plan.train(run, opt, 10 ** 6, 1e-9, False) != "done":
        calls += 1
    assert calls >= 1
    np.testing.assert_array_equal(plan.params, want_params)
    np.testing.assert_array_equal(run.take_totals(), want_totals)


def test_tiny_time_budget_still_makes_progress(rng):
    plan = small_plan(rng)
    xs, ys = [f32(rng, 40, 3)], [f32(rng, 40, 2)]
    run = _engine.Run(plan, xs, ys, 4, 2, False, 0, 2)
    opt = sgd(plan, 0.01)
    done = 0
    for _ in range(5):
        assert plan.train(run, opt, 10 ** 6, 1e-9, False) == "paused"
        now = run.epoch * run.steps_per_epoch + run.step
        assert now > done
        done = now
    totals = plan.evaluate(xs, ys, 4, 1e-9)
    assert totals[0] == 40


def test_zero_epochs_is_done(rng):
    plan = small_plan(rng)
    xs, ys = [f32(rng, 5, 3)], [f32(rng, 5, 2)]
    before = plan.params.copy()
    run = _engine.Run(plan, xs, ys, 5, 0, True, 0)
    assert plan.train(run, sgd(plan, 0.1), 10, 0.0, False) == "done"
    np.testing.assert_array_equal(plan.params, before)


# ==== 9. bad plans and bad calls raise ====================================================


def valid_spec():
    """x (3) -> dense (3 -> 4, bias) -> out; params hold exactly its 16 weights."""
    return dict(tensors=[(3, True), (4, False)],
                ops=[{"kind": "dense", "inputs": [0], "out": 1, "w_off": 0, "b_off": 12}],
                inputs=[0], outputs=[1], heads=[(1, "mse", "linear", 4, 1.0)],
                metrics=[(0, "mae")], params=np.zeros(16, np.float32),
                state=np.zeros(1, np.float32), max_batch=4)


def make(spec):
    return _engine.Plan(spec["tensors"], spec["ops"], spec["inputs"], spec["outputs"],
                        spec["heads"], spec["metrics"], spec["params"],
                        np.zeros_like(spec["params"]), spec["state"], spec["max_batch"])


def with_(**changes):
    spec = valid_spec()
    for key, value in changes.items():
        if key.startswith("op_"):
            spec["ops"][0][key[3:]] = value
        else:
            spec[key] = value
    return spec


MERGE_SPEC = dict(tensors=[(3, True), (3, True), (3, False)], inputs=[0, 1], outputs=[2],
                  heads=[], metrics=[], params=np.zeros(1, np.float32),
                  state=np.zeros(1, np.float32), max_batch=4)


def merge(kind, inputs, widths=(3, 3), out_width=3):
    tensors = [(w, True) for w in widths] + [(out_width, False)]
    return {**MERGE_SPEC, "tensors": tensors, "inputs": list(range(len(widths))),
            "outputs": [len(widths)],
            "ops": [{"kind": kind, "inputs": inputs, "out": len(widths)}]}


BAD_PLANS = {
    "unknown op kind": with_(op_kind="conv2d"),
    "unknown activation": with_(op_act="gelu"),
    "unknown path": with_(op_path="gpu"),
    "input id out of range": with_(op_inputs=[7]),
    "negative input id": with_(op_inputs=[-1]),
    "output id out of range": with_(op_out=9),
    "no inputs": with_(op_inputs=[]),
    "writes an input tensor": with_(op_out=0),
    "plan output out of range": with_(outputs=[5]),
    "model input out of range": with_(inputs=[3]),
    "model input not marked as input": with_(inputs=[1]),
    "width 0": with_(tensors=[(3, True), (0, False)]),
    "weights overrun params": with_(op_w_off=5),
    "bias overruns params": with_(op_b_off=14),
    "negative w_off": with_(op_w_off=-1),
    "frozen weights overrun state": with_(op_trainable=False),
    "dense with two inputs": with_(op_inputs=[0, 0]),
    "unknown loss": with_(heads=[(1, "hinge", "linear", 4, 1.0)]),
    "unknown folded activation": with_(heads=[(1, "mse", "swish", 4, 1.0)]),
    "head tensor out of range": with_(heads=[(2, "mse", "linear", 4, 1.0)]),
    "head target width 0": with_(heads=[(1, "mse", "linear", 0, 1.0)]),
    "two heads on one tensor": with_(heads=[(1, "mse", "linear", 4, 1.0)] * 2),
    "unknown metric": with_(metrics=[(0, "auc")]),
    "metric of a missing head": with_(metrics=[(1, "mae")]),
    "max_batch 0": with_(max_batch=0),
    "max_batch negative": with_(max_batch=-3),
    "read before produced": {
        **valid_spec(), "tensors": [(3, True), (4, False), (4, False)], "outputs": [2],
        "heads": [], "metrics": [],
        "ops": [{"kind": "activation", "inputs": [2], "out": 1},
                {"kind": "activation", "inputs": [0], "out": 2}]},
    "two producers": {
        **valid_spec(), "tensors": [(3, True), (3, False)], "heads": [], "metrics": [],
        "ops": [{"kind": "activation", "inputs": [0], "out": 1},
                {"kind": "dropout", "inputs": [0], "out": 1}]},
    "reads its own output": {
        **valid_spec(), "tensors": [(3, True), (3, False)], "heads": [], "metrics": [],
        "ops": [{"kind": "activation", "inputs": [1], "out": 1}]},
    "activation width mismatch": merge("activation", [0], widths=(3,), out_width=4),
    "dropout width mismatch": merge("dropout", [0], widths=(3,), out_width=2),
    "dropout rate 1": {**merge("dropout", [0], widths=(3,)),
                       "ops": [{"kind": "dropout", "inputs": [0], "out": 1, "rate": 1.0}]},
    "dropout rate negative": {**merge("dropout", [0], widths=(3,)),
                              "ops": [{"kind": "dropout", "inputs": [0], "out": 1,
                                       "rate": -0.1}]},
    "add of different widths": merge("add", [0, 1], widths=(3, 4)),
    "add output width wrong": merge("add", [0, 1], out_width=4),
    "multiply of different widths": merge("multiply", [0, 1], widths=(4, 3)),
    "maximum of different widths": merge("maximum", [0, 1], widths=(3, 2)),
    "concatenate width sum wrong": merge("concatenate", [0, 1], widths=(3, 4), out_width=6),
    "subtract with 3 inputs": merge("subtract", [0, 1, 2], widths=(3, 3, 3)),
    "subtract with 1 input": merge("subtract", [0], widths=(3,)),
    "more than MAX_OP_INPUTS inputs": merge("add", [0] * (_engine.MAX_OP_INPUTS + 1),
                                            widths=(3,)),
}


@pytest.mark.parametrize("name", sorted(BAD_PLANS))
def test_bad_plan_raises(name):
    with pytest.raises(ValueError):
        make(BAD_PLANS[name])


def test_valid_specs_above_are_valid():
    """The bad plans are each one change away from these, which build."""
    make(valid_spec())
    for kind in ("add", "multiply", "maximum", "subtract"):
        make(merge(kind, [0, 1]))
    make(merge("concatenate", [0, 1], widths=(3, 4), out_width=7))
    make(merge("add", [0] * _engine.MAX_OP_INPUTS, widths=(3,)))
    make({**merge("dropout", [0], widths=(3,)),
          "ops": [{"kind": "dropout", "inputs": [0], "out": 1, "rate": 0.99}]})


@pytest.mark.parametrize("head", [(1, "mse", "linear", 1, 1.0),
                                  (1, "mae", "linear", 2, 1.0),
                                  (1, "sigmoid_crossentropy", "sigmoid", 1, 1.0),
                                  (1, "softmax_crossentropy", "softmax", 3, 1.0),
                                  (1, "sparse_softmax_crossentropy", "softmax", 4, 1.0)],
                         ids=["mse", "mae", "bce", "cce", "sparse"])
def test_head_target_width_must_match_its_loss(head):
    with pytest.raises(ValueError):
        make(with_(heads=[head], metrics=[]))


@pytest.mark.parametrize("case", ["unproduced output", "unproduced head", "unfed input",
                                  "input listed twice"])
def test_every_tensor_is_produced_or_fed(case):
    act = [{"kind": "activation", "inputs": [0], "out": 1}]
    spec = {
        "unproduced output": with_(tensors=[(3, True), (4, False), (4, False)], outputs=[2],
                                   heads=[], metrics=[]),
        "unproduced head": with_(tensors=[(3, True), (4, False), (4, False)],
                                 heads=[(2, "mse", "linear", 4, 1.0)], metrics=[]),
        "unfed input": {**merge("add", [0, 1]), "inputs": [0]},
        "input listed twice": {**merge("activation", [0], widths=(3,)), "inputs": [0, 0],
                               "ops": act},
    }[case]
    with pytest.raises(ValueError):
        make(spec)


@pytest.mark.parametrize("label", [5.0, 7.0, -1.0, 2.5])
def test_sparse_labels_are_checked(rng, label):
    g = Graph(rng)
    y = g.dense(g.input(3), 5)
    plan = g.plan(heads=[(y, "sparse_softmax_crossentropy", "softmax", 1, 1.0)])
    x, t = f32(rng, 4, 3), labels(rng, 4, 5)
    plan.evaluate([x], [t], 4)  # valid labels: fine
    t[1, 0] = label
    with pytest.raises(ValueError):
        plan.evaluate([x], [t], 4)
    with pytest.raises(ValueError):
        _engine.Run(plan, [x], [t], 4, 1, False, 0)


def no_core_dumps():
    """In a child about to crash on purpose: no core file."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def test_huge_width_is_rejected_not_a_crash(tmp_path):
    """Run in a child process: the failure mode is a segfault."""
    code = (
        "import numpy as np\n"
        "from fastnn import _engine\n"
        "p = np.zeros(16, np.float32)\n"
        "try:\n"
        "    plan = _engine.Plan([(3, True), (2 ** 62, False)], [{'kind': 'dense', "
        "'inputs': [0], 'out': 1, 'w_off': 0}], [0], [], [], [], p, p.copy(), p.copy(), 4)\n"
        "    plan.predict_many([np.ones((1, 3), np.float32)])\n"
        "except (ValueError, MemoryError, OverflowError):\n"
        "    print('rejected')\n")
    import fastnn  # the child imports the same fastnn as these tests
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path, preexec_fn=no_core_dumps)
    assert done.returncode == 0 and done.stdout.strip() == "rejected", done


def test_run_keeps_its_arrays_alive(ref, rng):
    g = Graph(rng)
    y = g.dense(g.input(3), 2)
    plan = g.plan(heads=[(y, "mse", "linear", 2, 1.0)])
    xs, ys = [f32(rng, 8, 3)], [f32(rng, 8, 2)]
    alive = weakref.ref(xs[0]), weakref.ref(ys[0])
    want = ref_grads(ref, plan.spec, plan.params, plan.state, xs, ys)[1]
    run = _engine.Run(plan, xs, ys, 8, 1, False, 0)
    xs[0] = ys[0] = None
    gc.collect()
    assert alive[0]() is not None and alive[1]() is not None
    assert plan.train(run, sgd(plan), 1, 0.0, False) == "done"
    assert_close(plan.grads, want)


def test_shared_kernel_with_own_biases(ref, rng):
    g = Graph(rng)
    x = g.input(3)
    w_off, b1 = g.weights(3, 3)
    b2 = g._put(g.params, rng.standard_normal(3), False)
    h = g.dense(x, 3, "tanh", at=(w_off, b1))
    y = g.dense(h, 3, at=(w_off, b2))
    # a weight is shared whole (a layer called twice) or not at all: the engine refuses a
    # kernel shared without its bias (its gradient bookkeeping is per whole layer)
    with pytest.raises(ValueError, match="share a kernel but not its bias"):
        g.plan(heads=[(y, "mse", "linear", 3, 1.0)])


def test_bad_calls_raise(rng):
    plan = make(valid_spec())
    x, y = f32(rng, 5, 3), f32(rng, 5, 4)
    good = plan.evaluate([x], [y], 2)
    assert good[0] == 5
    bad_x = {
        "no arrays": [],
        "two arrays": [x, x],
        "wrong width": [f32(rng, 5, 4)],
        "1-D": [x[0].copy()],
        "3-D": [x[None].copy()],
        "non-contiguous": [np.asfortranarray(f32(rng, 5, 3))],
        "strided": [f32(rng, 10, 3)[::2]],
    }
    for name, xs in bad_x.items():
        for call in (lambda: plan.predict_many(xs), lambda: plan.evaluate(xs, [y], 2),
                     lambda: _engine.Run(plan, xs, [y], 2, 1, False, 0)):
            with pytest.raises(ValueError):
                call()
    for xs in ([x.astype(F64)], [x.astype(np.float16)], [x.astype(">f4")]):
        for call in (lambda: plan.predict_many(xs), lambda: plan.evaluate(xs, [y], 2),
                     lambda: _engine.Run(plan, xs, [y], 2, 1, False, 0)):
            with pytest.raises(TypeError):  # the binding's documented error for dtypes
                call()
    bad_y = {"no targets": [], "two": [y, y], "wrong width": [f32(rng, 5, 3)],
             "wrong rows": [f32(rng, 4, 4)], "1-D": [y[:, 0].copy()],
             "strided": [f32(rng, 10, 4)[::2]]}
    for name, ys in bad_y.items():
        with pytest.raises(ValueError):
            plan.evaluate([x], ys, 2)
        with pytest.raises(ValueError):
            _engine.Run(plan, [x], ys, 2, 1, False, 0)
    with pytest.raises(TypeError):
        plan.evaluate([x], [y.astype(F64)], 2)
    for batch in (0, -1):
        with pytest.raises(ValueError):
            plan.evaluate([x], [y], batch)
    for batch in (0, 5):  # above max_batch 4
        with pytest.raises(ValueError):
            _engine.Run(plan, [x], [y], batch, 1, False, 0)
    with pytest.raises(ValueError):
        _engine.Run(plan, [x], [y], 2, -1, False, 0)
    with pytest.raises(ValueError):
        _engine.Run(plan, [x[:0]], [y[:0]], 2, 1, False, 0)

    # two inputs of different row counts
    g = Graph(rng)
    a, b = g.input(3), g.input(3)
    two = g.plan([g.op("add", [a, b])])
    with pytest.raises(ValueError):
        two.predict_many([f32(rng, 5, 3), f32(rng, 4, 3)])
    with pytest.raises(ValueError):
        two.predict(f32(rng, 5, 3))  # predict() is for one input
    with pytest.raises(ValueError):
        plan.predict(f32(rng, 5, 2))
    with pytest.raises(ValueError):
        plan.predict(x[:0])

    # a Run of another plan, an optimizer too small for the plan
    other = make(valid_spec())
    run = _engine.Run(other, [x], [y], 2, 1, False, 0)
    with pytest.raises(ValueError):
        plan.train(run, sgd(plan), 1, 0.0, False)
    run = _engine.Run(plan, [x], [y], 2, 1, False, 0)
    with pytest.raises(ValueError):
        plan.train(run, _engine.OptimizerState("sgd", 15, learning_rate=0.1), 1, 0.0, False)
    assert plan.train(run, sgd(plan, 0.1), 10, 0.0, False) == "done"  # still fine


# ==== 10. threads =========================================================================


def test_concurrent_predict_many(rng):
    """Calls share the plan's arena under its lock: four threads get exactly the
    single-threaded results."""
    g = Graph(rng)
    x1, x2 = g.input(5), g.input(3)
    a = g.dense(x1, 33, "relu")
    b = g.dense(x2, 33, "tanh")
    m = g.op("multiply", [a, b])
    c = g.op("concatenate", [m, g.dense(x2, 4)])
    y = g.dense(c, 3, "softmax")
    plan = g.plan([y, m], max_batch=8)
    inputs = [[f32(rng, 301 + i, 5), f32(rng, 301 + i, 3)] for i in range(4)]
    want = [plan.predict_many(xs) for xs in inputs]
    errors, results = [], [None] * 4
    barrier = threading.Barrier(4)

    def work(i):
        try:
            barrier.wait()
            results[i] = [plan.predict_many(inputs[i]) for _ in range(25)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        for outs in results[i]:
            for got, exp in zip(outs, want[i]):
                np.testing.assert_array_equal(got, exp)
