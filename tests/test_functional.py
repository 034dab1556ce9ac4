"""Functional models: graphs with several inputs and outputs, shared layers, merges,
nested and subclassed models, frozen weights, live optimizer settings, summary and
errors. Every number is checked against a float64 NumPy reference written here from
the maths (Keras 3's definitions), never against pasted values."""
import re

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, optimizers, utils
from fastnn.layers import (Add, Average, Concatenate, Dense, Maximum, Minimum, Multiply,
                           Subtract, add, average, concatenate, maximum, minimum, multiply,
                           subtract)
from fastnn.models import load_model
from fastnn.optimizers import schedules

# ---- float64 reference pieces ----------------------------------------------------------------


def _relu(z):
    return np.maximum(z, 0.0)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _scce(z, labels):
    """Mean of logsumexp(z) - z[label] and its gradient with respect to z."""
    n = z.shape[0]
    m = z.max(axis=1, keepdims=True)
    lse = (np.log(np.exp(z - m).sum(axis=1, keepdims=True)) + m)[:, 0]
    grad = _softmax(z)
    grad[np.arange(n), labels] -= 1.0
    return float(np.mean(lse - z[np.arange(n), labels])), grad / n


def _w64(layer):
    return [w.astype(np.float64) for w in layer.get_weights()]


def _snapshot(model):
    return [w.copy() for w in model.get_weights()]


def _same(a, b):
    return [np.array_equal(x, y) for x, y in zip(a, b)]


class _RefSGD:
    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        return {k: [w - self.lr * g for w, g in zip(params[k], grads[k])] for k in params}


class _RefRMSprop:
    """Keras: v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + eps) (epsilon inside the root)."""

    def __init__(self, lr, rho=0.9, eps=1e-7):
        self.lr, self.rho, self.eps, self.v = lr, rho, eps, None

    def step(self, params, grads):
        if self.v is None:
            self.v = {k: [np.zeros_like(w) for w in params[k]] for k in params}
        out = {}
        for k in params:
            out[k] = []
            for i, (w, g) in enumerate(zip(params[k], grads[k])):
                self.v[k][i] = self.rho * self.v[k][i] + (1 - self.rho) * g * g
                out[k].append(w - self.lr * g / np.sqrt(self.v[k][i] + self.eps))
        return out


def _grad_from_sgd_step(model, x, y):
    """One full-batch step of SGD(learning_rate=1) exposes the gradient: w_before - w_after."""
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
    before = model.get_weights()
    model.train_on_batch(x, y)
    return [b.astype(np.float64) - a for b, a in zip(before, model.get_weights())]


def _check_gradients(engine, fd):
    scale = max(float(np.abs(g).max()) for g in fd)
    assert scale > 1e-3  # the check is not vacuous
    for i, (g, f) in enumerate(zip(engine, fd)):
        np.testing.assert_allclose(g, f, rtol=1e-3, atol=1e-4 * scale, err_msg=f"weight {i}")


# ---- 1. the headline: two inputs, two outputs, a shared layer, a skip link -------------------

LAYERS = ["shared", "deep", "price", "proj", "kind"]
LOSS_WEIGHTS = {"price": 1.0, "kind": 0.5}


def _headline(seed=7):
    """features -> shared(relu) -> deep(tanh) -> skip=Add(shared, deep) -> joined=[skip, extra]
    -> price; extra -> proj -> shared again -> both=[joined, shared(proj)] -> kind(softmax)."""
    utils.set_random_seed(seed)
    a = Input(13, name="features")
    b = Input(4, name="extra")
    shared = Dense(10, activation="relu", name="shared")
    h1 = shared(a)
    h2 = Dense(10, activation="tanh", name="deep")(h1)
    s = Add(name="skip")([h1, h2])
    c = Concatenate(name="joined")([s, b])
    price = Dense(1, name="price")(c)
    h3 = shared(Dense(13, name="proj")(b))
    kind = Dense(3, activation="softmax", name="kind")(concatenate([c, h3], name="both"))
    return Model([a, b], [price, kind], name="house")


def _compile_headline(model, optimizer):
    model.compile(optimizer=optimizer,
                  loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
                  loss_weights=LOSS_WEIGHTS, metrics={"price": ["mae"], "kind": ["accuracy"]})


def _headline_data(n=24, seed=3):
    r = np.random.default_rng(seed)
    xa = r.standard_normal((n, 13)).astype(np.float32)
    xb = r.standard_normal((n, 4)).astype(np.float32)
    yp = (xa[:, :1] - 0.5 * xb[:, 1:2] + 0.1 * r.standard_normal((n, 1))).astype(np.float32)
    yk = r.integers(0, 3, size=n)
    return xa, xb, yp, yk


def _params(model):
    return {name: _w64(model.get_layer(name)) for name in LAYERS}


def _headline_forward(p, xa, xb):
    f = {}
    ws, bs = p["shared"]
    f["z1"] = xa @ ws + bs
    f["h1"] = _relu(f["z1"])
    f["h2"] = np.tanh(f["h1"] @ p["deep"][0] + p["deep"][1])
    f["c"] = np.concatenate([f["h1"] + f["h2"], xb], axis=1)
    f["price"] = f["c"] @ p["price"][0] + p["price"][1]
    f["pb"] = xb @ p["proj"][0] + p["proj"][1]
    f["z3"] = f["pb"] @ ws + bs          # the shared layer's second call
    f["both"] = np.concatenate([f["c"], _relu(f["z3"])], axis=1)
    f["zk"] = f["both"] @ p["kind"][0] + p["kind"][1]
    f["kind"] = _softmax(f["zk"])
    return f


def _headline_logs_and_grads(p, xa, xb, yp, yk, loss_weights=None):
    """Keras 3's logs (loss = weighted sum, <output>_loss unweighted, <output>_<metric>)
    and the gradients of the weighted loss, by hand."""
    lw = LOSS_WEIGHTS if loss_weights is None else loss_weights
    f = _headline_forward(p, xa, xb)
    d = f["price"] - yp.astype(np.float64).reshape(-1, 1)
    price_loss = float(np.mean(d * d))
    kind_loss, dzk = _scce(f["zk"], yk)
    logs = {"loss": lw["price"] * price_loss + lw["kind"] * kind_loss,
            "price_loss": price_loss, "kind_loss": kind_loss,
            "price_mae": float(np.mean(np.abs(d))),
            "kind_accuracy": float(np.mean(np.argmax(f["zk"], axis=1) == yk))}
    dprice = lw["price"] * 2.0 * d / d.size
    dzk = lw["kind"] * dzk
    g = {"kind": [f["both"].T @ dzk, dzk.sum(0)],
         "price": [f["c"].T @ dprice, dprice.sum(0)]}
    dboth = dzk @ p["kind"][0].T
    dc = dboth[:, :14] + dprice @ p["price"][0].T
    dz3 = dboth[:, 14:] * (f["z3"] > 0)
    ds = dc[:, :10]
    dz2 = ds * (1.0 - f["h2"] ** 2)
    g["deep"] = [f["h1"].T @ dz2, dz2.sum(0)]
    dz1 = (ds + dz2 @ p["deep"][0].T) * (f["z1"] > 0)
    # the shared layer: the gradients of its two calls add up
    g["shared"] = [xa.T @ dz1 + f["pb"].T @ dz3, dz1.sum(0) + dz3.sum(0)]
    dpb = dz3 @ p["shared"][0].T
    g["proj"] = [xb.T @ dpb, dpb.sum(0)]
    return logs, g


def _assert_params(model, p, what):
    for name in LAYERS:
        for got, want in zip(model.get_layer(name).get_weights(), p[name]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5,
                                       err_msg=f"{what}: layer {name}")


def _assert_logs(got, want, what):
    assert set(got) == set(want), what
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=1e-6, err_msg=f"{what}: {k}")


def test_headline_reference_gradient_is_right(ref):
    """The hand-written backward above agrees with central differences (the reference
    itself is checked before anything is compared with it)."""
    xa, xb, yp, yk = _headline_data(n=6)
    p = _params(_headline())
    _, g = _headline_logs_and_grads(p, xa, xb, yp, yk)
    flat = [w for name in LAYERS for w in p[name]]
    fd = ref.finite_difference(lambda: _headline_logs_and_grads(p, xa, xb, yp, yk)[0]["loss"],
                               flat)
    for got, want in zip([w for name in LAYERS for w in g[name]], fd):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("opt", ["sgd", "rmsprop"])
def test_headline_train_on_batch_step_by_step(opt, kernels):
    model = _headline()
    optimizer, reference = ((optimizers.SGD(learning_rate=0.05), _RefSGD(0.05)) if opt == "sgd"
                            else (optimizers.RMSprop(learning_rate=0.01), _RefRMSprop(0.01)))
    _compile_headline(model, optimizer)
    xa, xb, yp, yk = _headline_data()
    p = _params(model)
    for step, (lo, hi) in enumerate([(0, 8), (8, 13), (13, 24), (0, 24), (5, 9), (3, 20)]):
        rows = slice(lo, hi)
        logs = model.train_on_batch([xa[rows], xb[rows]], [yp[rows], yk[rows]],
                                    return_dict=True)
        want, g = _headline_logs_and_grads(p, xa[rows], xb[rows], yp[rows], yk[rows])
        _assert_logs(logs, want, f"step {step}")  # the loss before the step
        p = reference.step(p, g)
        _assert_params(model, p, f"after step {step}")
    assert model.optimizer.iterations == 6


def _reference_fit(p, reference, data, batch, epochs, val=None):
    """Minibatches in order; per epoch the row-weighted means of the per-step logs (as
    Keras 3's trackers), then the val_ logs with the epoch's final weights."""
    xa, xb, yp, yk = data
    n = len(xa)
    history = {}
    for _ in range(epochs):
        sums = {}
        for lo in range(0, n, batch):
            rows = slice(lo, lo + batch)
            logs, g = _headline_logs_and_grads(p, xa[rows], xb[rows], yp[rows], yk[rows])
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v * len(xa[rows])
            p = reference.step(p, g)
        for k, v in sums.items():
            history.setdefault(k, []).append(v / n)
        if val is not None:
            logs, _ = _headline_logs_and_grads(p, *val)
            for k, v in logs.items():
                history.setdefault("val_" + k, []).append(v)
    return p, history


def _assert_history(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("opt", ["sgd", "rmsprop"])
def test_headline_fit_matches_reference(opt):
    model = _headline()
    optimizer, reference = ((optimizers.SGD(learning_rate=0.05), _RefSGD(0.05)) if opt == "sgd"
                            else (optimizers.RMSprop(learning_rate=0.01), _RefRMSprop(0.01)))
    _compile_headline(model, optimizer)
    data = _headline_data(n=20)
    xa, xb, yp, yk = data
    p, want = _reference_fit(_params(model), reference, data, batch=8, epochs=3)  # 8, 8, 4
    history = model.fit([xa, xb], [yp, yk], batch_size=8, epochs=3, shuffle=False, verbose=0)
    assert set(history.history) == {"loss", "price_loss", "kind_loss", "price_mae",
                                    "kind_accuracy"}
    _assert_history(history.history, want)
    _assert_params(model, p, "after fit")
    assert model.optimizer.iterations == 9


def test_headline_validation_split_logs():
    """validation_split holds out the last rows of every input and target; History has
    Keras 3's keys and their val_ versions, each matching the reference."""
    model = _headline()
    _compile_headline(model, optimizers.SGD(learning_rate=0.05))
    xa, xb, yp, yk = _headline_data(n=20)
    train = (xa[:16], xb[:16], yp[:16], yk[:16])
    val = (xa[16:], xb[16:], yp[16:], yk[16:])
    p, want = _reference_fit(_params(model), _RefSGD(0.05), train, batch=8, epochs=2, val=val)
    history = model.fit([xa, xb], [yp, yk], batch_size=8, epochs=2, shuffle=False, verbose=0,
                        validation_split=0.2)
    assert set(history.history) == {"loss", "price_loss", "kind_loss", "price_mae",
                                    "kind_accuracy", "val_loss", "val_price_loss",
                                    "val_kind_loss", "val_price_mae", "val_kind_accuracy"}
    for k in want:
        np.testing.assert_allclose(history.history[k], want[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)
    _assert_params(model, p, "after fit")


def test_headline_evaluate_and_predict():
    model = _headline()
    _compile_headline(model, optimizers.SGD(learning_rate=0.05))
    xa, xb, yp, yk = _headline_data()
    model.fit([xa, xb], [yp, yk], batch_size=8, epochs=2, shuffle=False, verbose=0)
    p = _params(model)
    want, _ = _headline_logs_and_grads(p, xa, xb, yp, yk)
    logs = model.evaluate([xa, xb], [yp, yk], return_dict=True)
    _assert_logs(logs, want, "evaluate")
    assert set(model.metrics_names) == set(want) and model.metrics_names[0] == "loss"
    # without return_dict: the values in metrics_names' order
    np.testing.assert_allclose(model.evaluate([xa, xb], [yp, yk]),
                               [want[k] for k in model.metrics_names], rtol=2e-5, atol=1e-6)
    out = model.predict([xa, xb])
    assert isinstance(out, list) and len(out) == 2
    f = _headline_forward(p, xa, xb)
    assert out[0].shape == (24, 1) and out[1].shape == (24, 3)
    assert out[0].dtype == np.float32 and out[1].dtype == np.float32
    np.testing.assert_allclose(out[0], f["price"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], f["kind"], rtol=1e-5, atol=1e-6)
    step = model.train_on_batch([xa, xb], [yp, yk])  # also in metrics_names' order
    np.testing.assert_allclose(step, [want[k] for k in model.metrics_names], rtol=2e-5,
                               atol=1e-6)


def test_headline_lists_and_dicts_agree():
    """x and y as lists, or as dicts keyed by input/output names (in any key order),
    train and evaluate identically."""
    xa, xb, yp, yk = _headline_data()
    runs = []
    for as_dict in (False, True):
        model = _headline()
        _compile_headline(model, optimizers.RMSprop(learning_rate=0.01))
        if as_dict:
            x, y = {"extra": xb, "features": xa}, {"kind": yk, "price": yp}
        else:
            x, y = [xa, xb], [yp, yk]
        h = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
                      validation_data=(x, y))
        step = model.train_on_batch(x, y, return_dict=True)
        runs.append((h.history, step, model.evaluate(x, y, return_dict=True),
                     model.predict(x), model.get_weights()))
    (h0, s0, e0, p0, w0), (h1, s1, e1, p1, w1) = runs
    assert h0 == h1 and s0 == s1 and e0 == e1
    assert all(np.array_equal(a, b) for a, b in zip(p0, p1))
    assert all(_same(w0, w1))


def test_headline_predict_and_evaluate_over_many_chunks():
    """More rows than one engine call takes: every chunk lands in its place."""
    model = _headline()
    _compile_headline(model, optimizers.SGD(learning_rate=0.05))
    xa, xb, yp, yk = _headline_data(n=2500)
    p = _params(model)
    f = _headline_forward(p, xa, xb)
    price, kind = model.predict([xa, xb])
    np.testing.assert_allclose(price, f["price"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kind, f["kind"], rtol=1e-5, atol=1e-6)
    want, _ = _headline_logs_and_grads(p, xa, xb, yp, yk)
    _assert_logs(model.evaluate([xa, xb], [yp, yk], return_dict=True), want, "evaluate")


def test_headline_with_a_loss_on_one_output_only():
    """An output without a loss needs no target and trains nothing of its own: the step is
    the reference's with a zero weight on 'kind' ('proj' and 'kind' stay bit-identical)."""
    model = _headline()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss={"price": "mse"},
                  metrics={"price": ["mae"]})
    assert set(model.metrics_names) == {"loss", "price_mae"}
    xa, xb, yp, yk = _headline_data()
    p = _params(model)
    frozen = {n: model.get_layer(n).get_weights() for n in ("proj", "kind")}
    logs = model.train_on_batch([xa, xb], {"price": yp}, return_dict=True)
    want, g = _headline_logs_and_grads(p, xa, xb, yp, yk, {"price": 1.0, "kind": 0.0})
    assert set(logs) == {"loss", "price_mae"}
    assert logs["loss"] == pytest.approx(want["price_loss"], rel=1e-5)
    assert logs["price_mae"] == pytest.approx(want["price_mae"], rel=1e-5)
    _assert_params(model, _RefSGD(0.05).step(p, g), "after the step")
    for n, ws in frozen.items():
        assert all(_same(ws, model.get_layer(n).get_weights())), n


def test_headline_save_and_load(tmp_path):
    """The round trip keeps the graph (the shared layer stays one layer called twice),
    the weights and the compile settings (loss dict, loss weights, metrics)."""
    model = _headline()
    _compile_headline(model, optimizers.RMSprop(learning_rate=0.01))
    xa, xb, yp, yk = _headline_data()
    model.fit([xa, xb], [yp, yk], batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "house.npz")
    slots_at_save = [np.array(s) for s in model._opt_state.slots]
    iterations_at_save = model.optimizer.iterations
    loaded = load_model(tmp_path / "house.npz")
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.input_names == ["features", "extra"]
    assert loaded.output_names == ["price", "kind"]
    assert loaded.count_params() == model.count_params() == 405
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict([xa, xb]),
                                                    model.predict([xa, xb])))
    assert loaded.evaluate([xa, xb], [yp, yk], return_dict=True) == \
        model.evaluate([xa, xb], [yp, yk], return_dict=True)
    # the loaded weights are its own: training the original leaves the copy alone
    before = loaded.get_weights()
    model.fit([xa, xb], [yp, yk], batch_size=8, epochs=1, verbose=0)
    assert all(_same(before, loaded.get_weights()))
    # and the optimizer's state travelled with the file (RMSprop's mean squares, the
    # iteration count): training resumes where it stopped
    assert loaded.optimizer.iterations == iterations_at_save > 0
    for got, want in zip(loaded._opt_state.slots, slots_at_save):
        np.testing.assert_array_equal(got, want)


def test_headline_against_pytorch():
    """The same forward and weighted loss in PyTorch (float64, autograd) agrees with
    three SGD steps of the engine."""
    torch = pytest.importorskip("torch")
    model = _headline()
    _compile_headline(model, optimizers.SGD(learning_rate=0.05))
    xa, xb, yp, yk = _headline_data()
    tp = {k: [torch.tensor(w, requires_grad=True) for w in v] for k, v in _params(model).items()}
    ta, tb = torch.tensor(xa, dtype=torch.float64), torch.tensor(xb, dtype=torch.float64)
    ty, tk = torch.tensor(yp, dtype=torch.float64), torch.tensor(yk, dtype=torch.long)
    for _ in range(3):
        model.train_on_batch([xa, xb], [yp, yk])
        ws, bs = tp["shared"]
        h1 = torch.relu(ta @ ws + bs)
        c = torch.cat([h1 + torch.tanh(h1 @ tp["deep"][0] + tp["deep"][1]), tb], dim=1)
        price = c @ tp["price"][0] + tp["price"][1]
        h3 = torch.relu((tb @ tp["proj"][0] + tp["proj"][1]) @ ws + bs)
        zk = torch.cat([c, h3], dim=1) @ tp["kind"][0] + tp["kind"][1]
        loss = (torch.nn.functional.mse_loss(price, ty)
                + 0.5 * torch.nn.functional.cross_entropy(zk, tk))
        loss.backward()
        with torch.no_grad():
            for ws_ in tp.values():
                for w in ws_:
                    w -= 0.05 * w.grad
                    w.grad = None
    _assert_params(model, {k: [w.detach().numpy() for w in v] for k, v in tp.items()},
                   "against PyTorch")


# ---- 2. every merge layer --------------------------------------------------------------------

MERGES = {
    "Add": (lambda ts: Add()(ts), lambda xs: sum(xs), 3),
    "add": (lambda ts: add(ts), lambda xs: sum(xs), 3),
    "Subtract": (lambda ts: Subtract()(ts), lambda xs: xs[0] - xs[1], 2),
    "subtract": (lambda ts: subtract(ts), lambda xs: xs[0] - xs[1], 2),
    "Multiply": (lambda ts: Multiply()(ts), lambda xs: xs[0] * xs[1] * xs[2], 3),
    "multiply": (lambda ts: multiply(ts), lambda xs: xs[0] * xs[1] * xs[2], 3),
    "Average": (lambda ts: Average()(ts), lambda xs: (xs[0] + xs[1] + xs[2]) / 3.0, 3),
    "average": (lambda ts: average(ts), lambda xs: (xs[0] + xs[1] + xs[2]) / 3.0, 3),
    "Maximum": (lambda ts: Maximum()(ts), lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
                3),
    "maximum": (lambda ts: maximum(ts), lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
                3),
    "Minimum": (lambda ts: Minimum()(ts), lambda xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2]),
                3),
    "minimum": (lambda ts: minimum(ts), lambda xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2]),
                3),
    "Concatenate": (lambda ts: Concatenate()(ts), lambda xs: np.concatenate(xs, axis=1), 3),
    "concatenate": (lambda ts: concatenate(ts), lambda xs: np.concatenate(xs, axis=1), 3),
}
BRANCH_ACTS = ["tanh", "sigmoid", "linear"]
ACT = {"tanh": np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "linear": lambda z: z}


def _merge_model(case, seed=5):
    """a (4) and b (5) feed up to three Dense branches, merged, then Dense(2)."""
    make, _, n_in = MERGES[case]
    widths = [3, 2, 4] if case.lower() == "concatenate" else [3, 3, 3]
    utils.set_random_seed(seed)
    a, b = Input(4, name="a"), Input(5, name="b")
    sources = [a, b, a]
    branches = [Dense(widths[i], activation=BRANCH_ACTS[i], name=f"br{i}")(sources[i])
                for i in range(n_in)]
    out = Dense(2, name="out")(make(branches))
    return Model([a, b], out)


def _merge_forward(case, weights, xa, xb):
    _, numpy_merge, n_in = MERGES[case]
    sources = [xa, xb, xa]
    hs = [ACT[BRANCH_ACTS[i]](sources[i] @ weights[2 * i] + weights[2 * i + 1])
          for i in range(n_in)]
    return numpy_merge(hs) @ weights[2 * n_in] + weights[2 * n_in + 1]


def _merge_data(rng, n=12):
    return (rng.standard_normal((n, 4)).astype(np.float32),
            rng.standard_normal((n, 5)).astype(np.float32),
            rng.standard_normal((n, 2)).astype(np.float32))


@pytest.mark.parametrize("case", sorted(MERGES))
def test_merge_in_a_model_predict_and_gradient(case, rng, ref, kernels):
    model = _merge_model(case)
    xa, xb, y = _merge_data(rng)
    w = [a.astype(np.float64) for a in model.get_weights()]
    np.testing.assert_allclose(model.predict([xa, xb]), _merge_forward(case, w, xa, xb),
                               rtol=1e-5, atol=1e-5)
    engine = _grad_from_sgd_step(model, [xa, xb], y)
    fd = ref.finite_difference(
        lambda: float(np.mean((_merge_forward(case, w, xa, xb) - y) ** 2)), w)
    _check_gradients(engine, fd)


@pytest.mark.parametrize("case", sorted(MERGES))
def test_merge_called_eagerly_on_arrays(case, rng):
    make, numpy_merge, n_in = MERGES[case]
    widths = [3, 2, 4] if case.lower() == "concatenate" else [3, 3, 3]
    xs = [rng.standard_normal((5, widths[i])).astype(np.float32) for i in range(n_in)]
    got = make(xs)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_allclose(got, numpy_merge([x.astype(np.float64) for x in xs]),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("merge,numpy_merge", [
    (Add, lambda h: 2 * h), (Multiply, lambda h: h * h),
    (Concatenate, lambda h: np.concatenate([h, h], axis=1)), (Average, lambda h: h)])
def test_merge_of_one_tensor_with_itself(merge, numpy_merge, rng, ref):
    """A tensor read twice by one merge: both reads' gradients add up."""
    utils.set_random_seed(2)
    a = Input(4)
    h = Dense(3, activation="tanh", name="h")(a)
    model = Model(a, Dense(2, name="out")(merge()([h, h])))
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]

    def forward():
        return numpy_merge(np.tanh(x @ w[0] + w[1])) @ w[2] + w[3]
    np.testing.assert_allclose(model.predict(x), forward(), rtol=1e-5, atol=1e-5)
    engine = _grad_from_sgd_step(model, x, y)
    _check_gradients(engine, ref.finite_difference(lambda: float(np.mean((forward() - y) ** 2)),
                                                   w))


def test_an_intermediate_tensor_as_an_output(rng, ref):
    """A hidden tensor that is both an output (with its own loss) and the input of the
    next layer gets both gradients."""
    utils.set_random_seed(4)
    a = Input(4)
    h = Dense(3, activation="tanh", name="h")(a)
    model = Model(a, [h, Dense(2, name="o")(h)])
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y1 = rng.standard_normal((8, 3)).astype(np.float32)
    y2 = rng.standard_normal((8, 2)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]

    def loss():
        hh = np.tanh(x @ w[0] + w[1])
        return float(np.mean((hh - y1) ** 2) + 0.3 * np.mean((hh @ w[2] + w[3] - y2) ** 2))
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse",
                  loss_weights=[1.0, 0.3])
    assert model.train_on_batch(x, [y1, y2], return_dict=True)["loss"] == pytest.approx(
        loss(), rel=1e-5)
    engine = [b.astype(np.float64) - a for b, a in zip(w, model.get_weights())]
    _check_gradients(engine, ref.finite_difference(loss, w))


def test_shared_wide_layer_on_the_blas_path(rng, blas, monkeypatch):
    """A wide layer called three times (twice into an Add, once deeper) gets the sum of
    its calls' gradients on the BLAS path as on the panel kernels."""
    from fastnn.models import plan
    xa = rng.standard_normal((64, 40)).astype(np.float32)
    xb = rng.standard_normal((64, 40)).astype(np.float32)
    y = rng.standard_normal((64, 20)).astype(np.float32)
    grads = {}
    for path in ("panels", "blas"):
        monkeypatch.setattr(plan, "BLAS_MIN_MACS", 1 if path == "blas" else 1 << 40)
        utils.set_random_seed(1)
        a, b = Input(40), Input(40)
        shared = Dense(30, activation="tanh", name="shared")
        h = Add()([shared(a), shared(b)])
        model = Model([a, b], Dense(20, name="o")(concatenate([h, shared(Dense(40)(h))])))
        model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
        assert {op["path"] for op in model._plan(64, "loss").spec["ops"]
                if op["kind"] == "dense"} == {path}
        w = [v.astype(np.float64) for v in model.get_weights()]
        model.train_on_batch([xa, xb], y)
        grads[path] = [b - a for b, a in zip(w, model.get_weights())]

    def loss(w):
        ws, bs, wp, bp, wo, bo = w
        h = np.tanh(xa @ ws + bs) + np.tanh(xb @ ws + bs)
        z = np.concatenate([h, np.tanh((h @ wp + bp) @ ws + bs)], axis=1) @ wo + bo
        return float(np.mean((z - y) ** 2))
    for i, g in enumerate(grads["blas"]):
        np.testing.assert_allclose(g, grads["panels"][i], rtol=1e-3, atol=1e-6)
    pick = np.random.default_rng(0)
    for i, g in enumerate(grads["blas"]):   # central differences on a sample of entries
        for _ in range(6):
            idx = tuple(pick.integers(0, d) for d in w[i].shape)
            up, down = [v.copy() for v in w], [v.copy() for v in w]
            up[i][idx] += 1e-6
            down[i][idx] -= 1e-6
            fd = (loss(up) - loss(down)) / 2e-6
            assert g[idx] == pytest.approx(fd, rel=1e-3, abs=1e-6), (i, idx)


# ---- 3. the article's functional example with a skip link ------------------------------------

def test_article_skip_link_model_learns(housing):
    utils.set_random_seed(0)
    inputs = Input(shape=(13,))
    h1 = Dense(10, activation="relu")(inputs)
    h2 = Dense(10, activation="relu")(h1)
    outputs = Dense(1)(Add()([h1, h2]))
    model = Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    w = [v.astype(np.float64) for v in model.get_weights()]

    def forward(x):
        a1 = _relu(x @ w[0] + w[1])
        return (a1 + _relu(a1 @ w[2] + w[3])) @ w[4] + w[5]
    np.testing.assert_allclose(model.predict(housing.x_test), forward(housing.x_test),
                               rtol=1e-5, atol=1e-4)
    history = model.fit(housing.x_train, housing.y_train, epochs=40, batch_size=16, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.25 * loss[0]
    w = [v.astype(np.float64) for v in model.get_weights()]
    pred = model.predict(housing.x_test)
    np.testing.assert_allclose(pred, forward(housing.x_test), rtol=1e-5, atol=1e-4)
    d = forward(housing.x_test)[:, 0] - housing.y_test
    logs = model.evaluate(housing.x_test, housing.y_test, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(d * d), rel=1e-5)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(d)), rel=1e-5)
    assert logs["loss"] < 40.0  # far below the ~600 of predicting zero


# ---- 4. nested models ------------------------------------------------------------------------

def _inner_sequential():
    return Sequential([Dense(6, activation="tanh", input_shape=(5,), name="in1"),
                       Dense(3, name="in2")], name="inner")


def _inner_forward(w, x):
    return np.tanh(x @ w[0] + w[1]) @ w[2] + w[3]


def test_sequential_inside_functional_shares_weights(rng):
    utils.set_random_seed(1)
    inner = _inner_sequential()
    x_in = Input(5, name="x")
    outer = Model(x_in, Dense(1, name="head")(inner(x_in)), name="outer")
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)

    def check():
        wi = [v.astype(np.float64) for v in inner.get_weights()]
        wh = _w64(outer.get_layer("head"))
        np.testing.assert_allclose(inner.predict(x), _inner_forward(wi, x), rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(outer.predict(x), _inner_forward(wi, x) @ wh[0] + wh[1],
                                   rtol=1e-5, atol=1e-5)
    assert outer.get_layer("inner") is inner
    assert [w.shape for w in outer.get_weights()] == [(5, 6), (6,), (6, 3), (3,), (3, 1), (1,)]
    check()
    before = inner.get_weights()
    outer.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    outer.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert not any(_same(before, inner.get_weights()))   # outer's training moved inner
    check()                                              # inner.predict uses them
    # and the other way round: training inner alone shows in outer
    inner.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    before = outer.get_weights()
    inner.fit(x, rng.standard_normal((32, 3)).astype(np.float32), epochs=2, verbose=0)
    assert _same(before, outer.get_weights()) == [False] * 4 + [True] * 2
    check()
    outer.fit(x, y, epochs=1, verbose=0)
    check()


def test_functional_model_used_twice_inside_another(rng, ref):
    """A functional encoder called on two inputs (siamese): one set of weights whose
    gradient is the sum over both calls; summary counts them once."""
    utils.set_random_seed(6)
    e_in = Input(4, name="e_in")
    encoder = Model(e_in, Dense(3, activation="tanh", name="enc")(e_in), name="encoder")
    a, b = Input(4, name="left"), Input(4, name="right")
    out = Dense(1, name="score")(Subtract(name="diff")([encoder(a), encoder(b)]))
    model = Model([a, b], out, name="siamese")
    assert [layer.name for layer in model.layers] == ["left", "right", "encoder", "diff",
                                                     "score"]
    assert model.count_params() == 4 * 3 + 3 + 3 + 1
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 19" in lines and "Trainable params: 19" in lines
    assert re.match(r"encoder \(\w+\)\s+\(None, 3\)\s+15\s", [ln for ln in lines
                                                               if ln.startswith("encoder")][0])
    xa = rng.standard_normal((9, 4)).astype(np.float32)
    xb = rng.standard_normal((9, 4)).astype(np.float32)
    y = rng.standard_normal((9, 1)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]

    def forward():
        return (np.tanh(xa @ w[0] + w[1]) - np.tanh(xb @ w[0] + w[1])) @ w[2] + w[3]
    np.testing.assert_allclose(model.predict([xa, xb]), forward(), rtol=1e-5, atol=1e-5)
    engine = _grad_from_sgd_step(model, [xa, xb], y)
    _check_gradients(engine, ref.finite_difference(lambda: float(np.mean((forward() - y) ** 2)),
                                                   w))
    np.testing.assert_allclose(encoder.predict(xa),
                               np.tanh(xa @ model.get_weights()[0] + model.get_weights()[1]),
                               rtol=1e-5, atol=1e-5)


def test_nested_summary_counts(rng):
    utils.set_random_seed(1)
    inner = _inner_sequential()
    x_in = Input(5)
    outer = Model(x_in, Dense(1, name="head")(inner(x_in)))
    lines = []
    outer.summary(print_fn=lines.append)
    n_inner = 5 * 6 + 6 + 6 * 3 + 3
    row = [ln for ln in lines if ln.startswith("inner (")][0]
    assert row.split()[-1] == str(n_inner)
    assert f"Total params: {n_inner + 4}" in lines
    assert outer.count_params() == n_inner + 4 == sum(w.size for w in outer.get_weights())


def test_save_load_nested_models(tmp_path, rng):
    utils.set_random_seed(8)
    inner = _inner_sequential()
    e_in = Input(3)
    encoder = Model(e_in, Dense(2, activation="relu", name="enc")(e_in), name="encoder")
    a, b = Input(5, name="a"), Input(5, name="b")
    ha, hb = inner(a), inner(b)
    out = Dense(1, name="head")(concatenate([encoder(ha), encoder(hb), Add()([ha, hb])]))
    model = Model([a, b], out, name="outer")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.02), loss="mse")
    xa = rng.standard_normal((16, 5)).astype(np.float32)
    xb = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    model.fit([xa, xb], y, epochs=2, verbose=0)
    path = tmp_path / "outer.npz"
    model.save(path)
    loaded = load_model(path)
    assert loaded.count_params() == model.count_params()
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]
    assert np.array_equal(loaded.predict([xa, xb]), model.predict([xa, xb]))
    # the loaded copy is independent and trains like the original (SGD has no slots)
    model.fit([xa, xb], y, epochs=1, shuffle=False, verbose=0)
    loaded.fit([xa, xb], y, epochs=1, shuffle=False, verbose=0)
    assert all(_same(model.get_weights(), loaded.get_weights()))
    assert np.array_equal(loaded.predict([xa, xb]), model.predict([xa, xb]))


def test_two_input_model_as_a_layer(rng, tmp_path):
    utils.set_random_seed(11)
    p_in, q_in = Input(3, name="p"), Input(3, name="q")
    pair = Model([p_in, q_in], Dense(2, name="pd")(Add()([p_in, q_in])), name="pair")
    a, b = Input(3, name="a"), Input(3, name="b")
    model = Model([a, b], Dense(1, name="top")(pair([a, Dense(3, name="bd")(b)])))
    xa = rng.standard_normal((7, 3)).astype(np.float32)
    xb = rng.standard_normal((7, 3)).astype(np.float32)
    wp, wt, wb = _w64(pair.get_layer("pd")), _w64(model.get_layer("top")), \
        _w64(model.get_layer("bd"))
    want = ((xa + xb @ wb[0] + wb[1]) @ wp[0] + wp[1]) @ wt[0] + wt[1]
    np.testing.assert_allclose(model.predict([xa, xb]), want, rtol=1e-5, atol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "m.npz")
    assert np.array_equal(load_model(tmp_path / "m.npz").predict([xa, xb]),
                          model.predict([xa, xb]))


def test_functional_model_inside_sequential(rng, tmp_path):
    utils.set_random_seed(12)
    e_in = Input(5)
    encoder = Model(e_in, Dense(3, activation="tanh", name="enc")(e_in), name="encoder")
    model = Sequential([Input((5,)), encoder, Dense(1, name="top")])
    assert [layer.name for layer in model.layers] == ["encoder", "top"]
    x = rng.standard_normal((6, 5)).astype(np.float32)
    we, wt = _w64(encoder.get_layer("enc")), _w64(model.get_layer("top"))
    np.testing.assert_allclose(model.predict(x), np.tanh(x @ we[0] + we[1]) @ wt[0] + wt[1],
                               rtol=1e-5, atol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "s.npz")
    assert np.array_equal(load_model(tmp_path / "s.npz").predict(x), model.predict(x))


# ---- 5. subclassed models --------------------------------------------------------------------

class WideDeep(Model):
    """Wide & deep (two inputs as a list) with a main and an auxiliary output."""

    def __init__(self, units=8, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.hidden1 = Dense(units, activation=activation)
        self.hidden2 = Dense(units, activation=activation)
        self.main_output = Dense(1)
        self.aux_output = Dense(1)

    def call(self, inputs):
        input_wide, input_deep = inputs
        hidden1 = self.hidden1(input_deep)
        hidden2 = self.hidden2(hidden1)
        concat = concatenate([input_wide, hidden2])
        return [self.main_output(concat), self.aux_output(hidden2)]


def _wide_deep_forward(m, xw, xd):
    h1 = _relu(xd @ m.hidden1.kernel.astype(np.float64) + m.hidden1.bias)
    h2 = _relu(h1 @ m.hidden2.kernel.astype(np.float64) + m.hidden2.bias)
    main = np.concatenate([xw, h2], axis=1) @ m.main_output.kernel.astype(np.float64)
    return main + m.main_output.bias, h2 @ m.aux_output.kernel.astype(np.float64) + \
        m.aux_output.bias


def test_subclassed_wide_and_deep(rng, ref):
    utils.set_random_seed(9)
    model = WideDeep(name="wide_deep")
    xw = rng.standard_normal((40, 5)).astype(np.float32)
    xd = rng.standard_normal((40, 6)).astype(np.float32)
    y = (xw[:, :1] + np.abs(xd[:, 1:2])).astype(np.float32)
    model.compile(optimizer=optimizers.SGD(learning_rate=0.02), loss=["mse", "mse"],
                  loss_weights=[0.9, 0.1])
    history = model.fit([xw, xd], [y, y], epochs=20, batch_size=8, verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < loss[0]
    main, aux = model.predict([xw, xd])
    want_main, want_aux = _wide_deep_forward(model, xw, xd)
    np.testing.assert_allclose(main, want_main, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(aux, want_aux, rtol=1e-5, atol=1e-5)
    assert model.count_params() == (6 * 8 + 8) + (8 * 8 + 8) + (13 + 1) + (8 + 1)
    # one more step is one SGD step on the weighted loss, through the traced graph
    w = [v.astype(np.float64) for v in model.get_weights()]
    order = [model.hidden1, model.hidden2, model.main_output, model.aux_output]
    assert all(np.array_equal(w[2 * i], layer.kernel) for i, layer in enumerate(order))

    def loss_fn():
        h2 = _relu(_relu(xd @ w[0] + w[1]) @ w[2] + w[3])
        m = np.concatenate([xw, h2], axis=1) @ w[4] + w[5]
        return float(0.9 * np.mean((m - y) ** 2) + 0.1 * np.mean((h2 @ w[6] + w[7] - y) ** 2))
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss=["mse", "mse"],
                  loss_weights=[0.9, 0.1])
    assert model.train_on_batch([xw, xd], [y, y], return_dict=True)["loss"] == \
        pytest.approx(loss_fn(), rel=1e-5)
    engine = [b - a for b, a in zip(w, model.get_weights())]
    _check_gradients(engine, ref.finite_difference(loss_fn, w))


def test_subclassed_save_and_load(rng, tmp_path):
    """A subclassed model saves its traced graph; the loaded model predicts the same."""
    utils.set_random_seed(10)
    model = WideDeep()
    xw = rng.standard_normal((6, 5)).astype(np.float32)
    xd = rng.standard_normal((6, 6)).astype(np.float32)
    model.compile(optimizer="sgd", loss=["mse", "mse"])
    model.fit([xw, xd], [xw[:, :1], xd[:, :1]], verbose=0)
    model.save(tmp_path / "wd.npz")
    loaded = load_model(tmp_path / "wd.npz")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.predict([xw, xd]),
                                                    model.predict([xw, xd])))


class _DataDependent(Model):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.a, self.b = Dense(2), Dense(2)

    def call(self, x):
        h = self.a(x)
        if self.how == "compare":
            return self.a(x) if h > 0 else self.b(x)
        if self.how == "float":
            return self.b(h) if float(h) else h
        if self.how == "numpy":
            return self.b(np.tanh(h))
        if self.how == "truth":
            return self.b(h) if h else h
        raise AssertionError(self.how)


class _OneDense(Model):
    def __init__(self):
        super().__init__()
        self.d = Dense(2)

    def call(self, x):
        return self.d(x)


@pytest.mark.parametrize("how", ["compare", "float", "numpy", "truth"])
def test_subclassed_call_with_data_dependent_python_cannot_be_traced(how, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    model = _DataDependent(how)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="cannot be traced") as e:
        model.fit(x, x[:, :2], verbose=0)
    assert "_DataDependent" in str(e.value)
    with pytest.raises(ValueError, match="cannot be traced"):
        model.predict(x)


@pytest.mark.parametrize("kind", ["subclassed", "sequential"])
def test_unbuilt_model_called_on_a_symbolic_tensor_builds(kind, rng):
    """Keras builds an unbuilt Sequential (or traces a subclassed model) when it is called
    on a KerasTensor."""
    utils.set_random_seed(3)
    inner = Sequential([Dense(2, name="d")]) if kind == "sequential" else _OneDense()
    a = Input(3)
    model = Model(a, inner(a))
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]
    np.testing.assert_allclose(model.predict(x), x @ w[0] + w[1], rtol=1e-5, atol=1e-6)


# ---- 6. frozen weights -----------------------------------------------------------------------

def _three_layers(frozen_middle=True, seed=3):
    utils.set_random_seed(seed)
    x = Input(5)
    d1 = Dense(6, activation="tanh", name="d1")
    d2 = Dense(4, activation="relu", name="d2", trainable=not frozen_middle)
    d3 = Dense(1, name="d3")
    return Model(x, d3(d2(d1(x)))), (d1, d2, d3)


def _param_counts(model):
    lines = []
    model.summary(print_fn=lines.append)
    counts = {}
    for key in ("Total", "Trainable", "Non-trainable"):
        line = [ln for ln in lines if ln.startswith(f"{key} params:")][0]
        counts[key] = int(line.split(":")[1].replace(",", ""))
    return counts


def test_dense_created_frozen_passes_gradients_through(rng, ref):
    """A frozen middle layer keeps its weights bit-identical, and the layers before it
    still get the gradient through it."""
    model, (d1, d2, d3) = _three_layers()
    assert _param_counts(model) == {"Total": 36 + 28 + 5, "Trainable": 41,
                                    "Non-trainable": 28}
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    w = [v.astype(np.float64) for v in d1.get_weights() + d2.get_weights() + d3.get_weights()]
    frozen = d2.get_weights()

    def loss():
        h = _relu(np.tanh(x @ w[0] + w[1]) @ w[2] + w[3])
        return float(np.mean((h @ w[4] + w[5] - y) ** 2))
    fd = ref.finite_difference(loss, w)
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
    model.train_on_batch(x, y)
    assert all(_same(frozen, d2.get_weights()))
    after = d1.get_weights() + d3.get_weights()
    engine = [b - a for b, a in zip(w[:2] + w[4:], after)]
    _check_gradients(engine, fd[:2] + fd[4:])


def test_freeze_then_compile_and_unfreeze(rng):
    model, (d1, d2, d3) = _three_layers(frozen_middle=False)
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    d1.trainable = False
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    assert _param_counts(model) == {"Total": 69, "Trainable": 33, "Non-trainable": 36}
    assert len(model.trainable_weights) == 4 and len(model.non_trainable_weights) == 2
    before = _snapshot(model)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert _same(before, model.get_weights()) == [True, True, False, False, False, False]
    d1.trainable = True
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    assert _param_counts(model) == {"Total": 69, "Trainable": 69, "Non-trainable": 0}
    before = _snapshot(model)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not any(_same(before, model.get_weights()))


def test_frozen_nested_model(rng):
    utils.set_random_seed(1)
    inner = _inner_sequential()
    x_in = Input(5)
    outer = Model(x_in, Dense(1, name="head")(inner(x_in)))
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    inner.trainable = False
    outer.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    n_inner = inner.count_params()
    assert _param_counts(outer) == {"Total": n_inner + 4, "Trainable": 4,
                                    "Non-trainable": n_inner}
    assert len(outer.trainable_weights) == 2
    before = _snapshot(outer)
    outer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert _same(before, outer.get_weights()) == [True] * 4 + [False] * 2
    wi = [v.astype(np.float64) for v in inner.get_weights()]
    np.testing.assert_allclose(inner.predict(x), _inner_forward(wi, x), rtol=1e-5, atol=1e-5)
    inner.trainable = True
    outer.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    assert _param_counts(outer)["Trainable"] == n_inner + 4
    before = _snapshot(outer)
    outer.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not any(_same(before, outer.get_weights()))


# ---- 7. live optimizer settings --------------------------------------------------------------

def test_learning_rate_zero_between_fits_stops_training(rng):
    model, _ = _three_layers(frozen_middle=False)
    model.compile(optimizer=optimizers.RMSprop(learning_rate=0.01), loss="mse")
    x = rng.standard_normal((30, 5)).astype(np.float32)
    y = rng.standard_normal((30, 1)).astype(np.float32)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)          # 4 steps an epoch
    assert model.optimizer.iterations == 8
    model.optimizer.learning_rate = 0.0
    before = _snapshot(model)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert all(_same(before, model.get_weights()))
    assert model.optimizer.iterations == 16
    model.optimizer.learning_rate = 0.01
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not any(_same(before, model.get_weights()))
    model.train_on_batch(x, y)
    assert model.optimizer.iterations == 21


def test_schedule_as_learning_rate_in_fit(rng):
    """SGD with ExponentialDecay: step t uses lr(t) = 0.1 * 0.5^(t/3), t counted across fits."""
    model, (d1, d2, d3) = _three_layers(frozen_middle=False)
    sched = schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    model.compile(optimizer=optimizers.SGD(learning_rate=sched), loss="mse")
    x = rng.standard_normal((20, 5)).astype(np.float32)
    y = rng.standard_normal((20, 1)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]

    def grads(w, xb, yb):
        z1 = xb @ w[0] + w[1]
        h1 = np.tanh(z1)
        z2 = h1 @ w[2] + w[3]
        h2 = _relu(z2)
        d = 2.0 * (h2 @ w[4] + w[5] - yb) / yb.size
        dz2 = (d @ w[4].T) * (z2 > 0)
        dz1 = (dz2 @ w[2].T) * (1 - h1 ** 2)
        return [xb.T @ dz1, dz1.sum(0), h1.T @ dz2, dz2.sum(0), h2.T @ d, d.sum(0)]
    t = 0
    for epochs in (2, 1):
        model.fit(x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
        for _ in range(epochs):
            for lo in range(0, 20, 8):
                lr = 0.1 * 0.5 ** (t / 3)
                w = [a - lr * g for a, g in zip(w, grads(w, x[lo:lo + 8], y[lo:lo + 8]))]
                t += 1
        assert model.optimizer.iterations == t
        for got, want in zip(model.get_weights(), w):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1 * 0.5 ** (t / 3), rel=1e-5)


# ---- 8. summary and structure ----------------------------------------------------------------

def _summary(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines


def _connections(lines, name):
    """Every 'layer[node][tensor]' printed in the Connected to column of a layer's rows."""
    start = next(i for i, ln in enumerate(lines) if ln.startswith(name + " ("))
    found = []
    for ln in lines[start:]:
        if ln.startswith(("___", "===")):
            break
        found += re.findall(r"'(\w+\[\d+\]\[\d+\])'", ln[65:])
    return found


def test_graph_summary_layout():
    model = _headline()
    lines = _summary(model)
    assert lines[0] == 'Model: "house"'
    assert all(len(ln) <= 98 for ln in lines)
    assert lines[1] == "_" * 98 and lines[3] == "=" * 98
    header = lines[2]
    assert [header.index(h) for h in ("Layer (type)", "Output Shape", "Param #",
                                      "Connected to")] == [0, 32, 53, 65]
    rows = {ln.split(" ")[0]: ln for ln in lines[4:] if re.match(r"\w+ \(\w+\)", ln)}
    assert list(rows) == [layer.name for layer in model.layers]
    assert rows["features"].startswith("features (InputLayer)")
    assert rows["features"][32:].startswith("[(None, 13)]")
    assert rows["features"][65:].rstrip() == "[]"
    # a layer fed by an input: tf.keras 2.x's "['name[node][tensor]']"
    assert rows["proj"][65:].rstrip() == "['extra[0][0]']"
    assert rows["proj"][32:53].rstrip() == "(None, 13)"
    assert rows["proj"][53:65].rstrip() == str(4 * 13 + 13)
    assert rows["shared"][53:65].rstrip() == str(13 * 10 + 10)  # counted once
    assert rows["both"][32:53].rstrip() == "(None, 24)"
    assert "Total params: 405" in lines and "Trainable params: 405" in lines
    assert "Non-trainable params: 0" in lines


def test_graph_summary_connected_to_node_indices():
    """tf.keras 2.x: 'layer[i][0]' names the i-th call of that layer (0 for a layer called
    once; the shared layer's second call is [1])."""
    lines = _summary(_headline())
    assert _connections(lines, "shared") == ["features[0][0]", "proj[0][0]"]
    assert _connections(lines, "deep") == ["shared[0][0]"]
    assert _connections(lines, "skip") == ["shared[0][0]", "deep[0][0]"]
    assert _connections(lines, "joined") == ["skip[0][0]", "extra[0][0]"]
    assert _connections(lines, "both") == ["joined[0][0]", "shared[1][0]"]
    assert _connections(lines, "kind") == ["both[0][0]"]


def test_layers_get_layer_inputs_outputs():
    model = _headline()
    names = [layer.name for layer in model.layers]
    assert sorted(names) == sorted(["features", "extra", "shared", "deep", "skip", "joined",
                                    "price", "proj", "both", "kind"])  # shared listed once
    position = {n: i for i, n in enumerate(names)}
    for before, after in [("shared", "deep"), ("deep", "skip"), ("skip", "joined"),
                          ("joined", "price"), ("proj", "both"), ("both", "kind")]:
        assert position[before] < position[after], (before, after)
    assert position["shared"] < position["proj"]  # listed at its first call
    assert model.get_layer("deep") is model.layers[position["deep"]]
    assert model.get_layer(index=0).name == "features"
    assert model.get_layer(index=-1) is model.layers[-1]
    assert isinstance(model.get_layer("shared"), Dense)
    with pytest.raises(ValueError, match="nope.*features"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match="index 10.*10 layers"):
        model.get_layer(index=10)
    with pytest.raises(ValueError, match="exactly one"):
        model.get_layer()
    with pytest.raises(ValueError, match="exactly one"):
        model.get_layer("deep", index=1)
    assert model.input_names == ["features", "extra"]
    assert model.output_names == ["price", "kind"]
    assert [t.shape for t in model.inputs] == [(None, 13), (None, 4)]
    assert [t.shape for t in model.outputs] == [(None, 1), (None, 3)]
    assert [t.name for t in model.outputs] == ["price", "kind"]
    assert model.inputs[0]._layer is model.get_layer("features")


# ---- 9. errors name the layers and shapes ----------------------------------------------------

def test_output_not_computed_from_the_inputs():
    a, b = Input(3, name="first"), Input(4, name="second")
    with pytest.raises(ValueError, match="second") as e:
        Model(a, Dense(2)(Add()([Dense(4)(a), b])))
    assert "first" in str(e.value)


def test_layer_names_must_be_unique_in_a_model():
    a = Input(3, name="in")
    with pytest.raises(ValueError, match="same"):
        Model(a, Dense(3, name="same")(Dense(3, name="same")(a)))


def test_merge_shapes_must_agree():
    a = Input(3)
    with pytest.raises(ValueError, match=r"Add 'bad_add'.*\(None, 3\), \(None, 4\)"):
        Add(name="bad_add")([Dense(3)(a), Dense(4)(a)])
    with pytest.raises(ValueError, match=r"Multiply.*\(None, 3\), \(None, 2\)"):
        multiply([a, Dense(2)(a)])


def test_layers_refuse_the_wrong_number_of_inputs():
    a, b = Input(3), Input(3)
    with pytest.raises(ValueError, match="'single'.*Dense.*one input.*2"):
        Dense(2, name="single")([a, b])
    with pytest.raises(ValueError, match="Subtract.*exactly 2.*3"):
        Subtract()([a, b, a])
    with pytest.raises(ValueError, match="Add.*list"):
        Add()(a)


@pytest.fixture
def two_by_two():
    utils.set_random_seed(4)
    a, c = Input(3, name="a"), Input(3, name="c")
    model = Model([a, c], [Dense(1, name="o1")(Add()([a, c])), Dense(2, name="o2")(a)])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    return model


def test_wrong_number_of_input_arrays(two_by_two, rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    y = [np.zeros((5, 1), np.float32), np.zeros((5, 2), np.float32)]
    for bad in ([x], [x, x, x], x):
        with pytest.raises(ValueError, match=r"2 inputs \['a', 'c'\]"):
            two_by_two.predict(bad)
        with pytest.raises(ValueError, match=r"2 inputs \['a', 'c'\]"):
            two_by_two.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"2 outputs \['o1', 'o2'\]"):
        two_by_two.fit([x, x], y[:1], verbose=0)
    with pytest.raises(ValueError, match=r"x\[c\].*3 features.*\(5, 4\)"):
        two_by_two.predict([x, np.zeros((5, 4), np.float32)])


def test_input_dicts(two_by_two, rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"lacks inputs \['c'\]"):
        two_by_two.predict({"a": x, "cc": x})
    # as Keras 3 (functional.py, _standardize_inputs): keys beyond the inputs are ignored
    got = two_by_two.predict({"a": x, "c": 2 * x, "extra": x})
    want = two_by_two.predict([x, 2 * x])
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_compile_names_unknown_outputs(two_by_two, rng):
    for arg in ({"loss": {"o1": "mse", "nope": "mse"}},
                {"loss": "mse", "loss_weights": {"nope": 1.0}},
                {"loss": "mse", "metrics": {"nope": ["mae"]}}):
        with pytest.raises(ValueError, match=r"\['nope'\].*\['o1', 'o2'\]"):
            two_by_two.compile(optimizer="sgd", **arg)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"unknown outputs \['bad'\]"):
        two_by_two.fit([x, x], {"o1": np.zeros((5, 1)), "bad": np.zeros((5, 2))}, verbose=0)
    # the failed compiles left the previous one in place
    assert two_by_two.evaluate([x, x], [np.zeros((5, 1)), np.zeros((5, 2))],
                               return_dict=True).keys() == {"loss", "o1_loss", "o2_loss"}


def test_a_failed_call_leaves_the_model_usable(two_by_two, rng):
    x = rng.standard_normal((8, 3)).astype(np.float32)
    good = [rng.standard_normal((8, 1)).astype(np.float32),
            rng.standard_normal((8, 2)).astype(np.float32)]
    clean = two_by_two.get_weights()
    for bad in ([good[0], np.zeros((8, 3))], [good[0], np.full((8, 2), np.nan)],
                [good[0][:7], good[1]], [good[0], ["a"] * 8]):
        with pytest.raises((ValueError, TypeError)):
            two_by_two.fit([x, x], bad, verbose=0)
        with pytest.raises((ValueError, TypeError)):
            two_by_two.train_on_batch([x, x], bad)
    assert all(_same(clean, two_by_two.get_weights()))  # nothing half-done
    assert two_by_two.optimizer.iterations == 0
    with pytest.raises(ValueError):
        two_by_two.predict([x])
    two_by_two.fit([x, x], good, epochs=2, batch_size=4, shuffle=False, verbose=0)
    # the same training on a model that never saw an error
    utils.set_random_seed(4)
    a, c = Input(3, name="a"), Input(3, name="c")
    fresh = Model([a, c], [Dense(1, name="o1")(Add()([a, c])), Dense(2, name="o2")(a)])
    fresh.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    assert all(_same(clean, fresh.get_weights()))
    fresh.fit([x, x], good, epochs=2, batch_size=4, shuffle=False, verbose=0)
    assert all(_same(fresh.get_weights(), two_by_two.get_weights()))
    assert all(np.array_equal(p, q) for p, q in zip(fresh.predict([x, x]),
                                                    two_by_two.predict([x, x])))


# ---- 10. Keras sugar: arithmetic on symbolic tensors -----------------------------------------

def test_tensor_arithmetic_builds_merge_layers(rng, ref):
    """a + b, a - b and a * b on KerasTensors are Add, Subtract and Multiply layers."""
    utils.set_random_seed(12)
    a, b = Input(4, name="a"), Input(4, name="b")
    ha = Dense(3, activation="tanh", name="ha")(a)
    hb = Dense(3, activation="sigmoid", name="hb")(b)
    s = ha + hb
    t = (s - hb) * ha + s
    assert isinstance(s._layer, Add) and isinstance(t._layer, Add)
    assert [type(x._layer) for x in t._inputs] == [Multiply, Add]
    model = Model([a, b], Dense(2, name="out")(t))
    xa = rng.standard_normal((10, 4)).astype(np.float32)
    xb = rng.standard_normal((10, 4)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    w = [v.astype(np.float64) for v in model.get_weights()]

    def forward():
        p = np.tanh(xa @ w[0] + w[1])
        q = 1.0 / (1.0 + np.exp(-(xb @ w[2] + w[3])))
        return ((p + q - q) * p + (p + q)) @ w[4] + w[5]
    np.testing.assert_allclose(model.predict([xa, xb]), forward(), rtol=1e-5, atol=1e-5)
    engine = _grad_from_sgd_step(model, [xa, xb], y)
    _check_gradients(engine, ref.finite_difference(lambda: float(np.mean((forward() - y) ** 2)),
                                                   w))
    with pytest.raises(ValueError, match=r"\(None, 3\), \(None, 4\)"):
        ha + a
