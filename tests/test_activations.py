"""Activations: every kind forward against a float64 NumPy reference written here from
Keras 3's definitions, its derivative against the reference's and against central
differences of the reference, as functions (fastnn.activations), as kernels, and in the
engine (a standalone activation op, fused into a dense op, inside models), under every
kernel set; extreme inputs; the activation layers' predict, training step, config and
save/load."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import _engine, activations, optimizers, utils
from fastnn.layers import (ELU, Activation, Dense, Flatten, Input, LeakyReLU, PReLU, ReLU,
                           Reshape, Softmax, add)
from fastnn.models import load_model

F64 = np.float64
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848, 1.0507009873554804934
_erf = np.vectorize(math.erf, otypes=[F64])
_erfc = np.vectorize(math.erfc, otypes=[F64])


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow


def _softplus(z):
    return np.logaddexp(0.0, z)


def _relu_general(z, s, mx, t):
    """Keras' relu(x, negative_slope=s, max_value=mx, threshold=t), as its docs state."""
    a = np.where(z > t, z, 0.0) if t != 0 else np.maximum(z, 0.0)
    if mx != math.inf:
        a = np.clip(a, 0.0, mx)
    return a - s * np.maximum(t - z, 0.0)


def _relu_general_d(z, s, mx, t):
    d = np.where(z > t, 1.0, 0.0) if t != 0 else np.where(z > 0, 1.0, 0.0)
    if mx != math.inf:
        d = np.where((z >= mx) | (z < 0), 0.0, d)
    return d + s * (t - z > 0)


_C, _K = math.sqrt(2.0 / math.pi), 0.044715
ELEMENTWISE_ELU = (lambda z, p: np.where(z > 0, z, p[0] * np.expm1(np.minimum(z, 0))),
                   lambda z, p: np.where(z > 0, 1.0, p[0] * np.exp(np.minimum(z, 0))))

# name -> (forward, derivative dy/dz), both of (z, params), float64; from the definitions
ELEMENTWISE = {
    "linear": (lambda z, p: z, lambda z, p: np.ones_like(z)),
    "relu": (lambda z, p: np.maximum(z, 0.0), lambda z, p: (z > 0) * 1.0),
    "relu6": (lambda z, p: np.clip(z, 0.0, 6.0), lambda z, p: ((z > 0) & (z < 6)) * 1.0),
    "leaky_relu": (lambda z, p: np.where(z > 0, z, p[0] * z),
                   lambda z, p: np.where(z > 0, 1.0, p[0])),
    "elu": ELEMENTWISE_ELU,
    "selu": (lambda z, p: SELU_SCALE * ELEMENTWISE_ELU[0](z, (SELU_ALPHA,)),
             lambda z, p: SELU_SCALE * ELEMENTWISE_ELU[1](z, (SELU_ALPHA,))),
    "gelu": (lambda z, p: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
             lambda z, p: 0.5 * _erfc(-z / math.sqrt(2.0)) +
             z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda z, p: 0.5 * z * (1.0 + np.tanh(_C * (z + _K * z ** 3))),
                  lambda z, p: 0.5 * (1.0 + np.tanh(_C * (z + _K * z ** 3))) +
                  0.5 * z * (1.0 - np.tanh(_C * (z + _K * z ** 3)) ** 2) * _C *
                  (1.0 + 3 * _K * z * z)),
    "silu": (lambda z, p: z * _sigmoid(z),
             lambda z, p: _sigmoid(z) + z * _sigmoid(z) * (1.0 - _sigmoid(z))),
    "softplus": (lambda z, p: _softplus(z), lambda z, p: _sigmoid(z)),
    "softsign": (lambda z, p: z / (1.0 + np.abs(z)), lambda z, p: 1.0 / (1.0 + np.abs(z)) ** 2),
    "sigmoid": (lambda z, p: _sigmoid(z), lambda z, p: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "hard_sigmoid": (lambda z, p: np.clip(z / 6.0 + 0.5, 0.0, 1.0),
                     lambda z, p: ((z > -3) & (z < 3)) / 6.0),
    "tanh": (lambda z, p: np.tanh(z), lambda z, p: 1.0 - np.tanh(z) ** 2),
    "exponential": (lambda z, p: np.exp(z), lambda z, p: np.exp(z)),
    "mish": (lambda z, p: z * np.tanh(_softplus(z)),
             lambda z, p: np.tanh(_softplus(z)) +
             z * (1.0 - np.tanh(_softplus(z)) ** 2) * _sigmoid(z)),
    "relu_general": (lambda z, p: _relu_general(z, *p), lambda z, p: _relu_general_d(z, *p)),
}


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# the softmaxes over the last axis: forward, and dL/dz given z and dL/dy (Jacobian^T g)
ROWWISE = {
    "softmax": (_softmax,
                lambda z, g: _softmax(z) * (g - (g * _softmax(z)).sum(-1, keepdims=True))),
    "log_softmax": (_log_softmax, lambda z, g: g - _softmax(z) * g.sum(-1, keepdims=True)),
}

# (engine name, parameters): every kind, the parametrised ones at defaults and others
CASES = [(name, ()) for name in ELEMENTWISE if name not in ("leaky_relu", "elu", "relu_general")]
CASES += [("leaky_relu", (0.2,)), ("leaky_relu", (0.05,)), ("elu", (1.0,)), ("elu", (0.4,)),
          ("relu_general", (0.1, 6.0, 0.5)), ("relu_general", (0.0, 1.5, 0.0)),
          ("relu_general", (0.3, math.inf, 1.0)), ("softmax", ()), ("log_softmax", ())]
IDS = [f"{n}{list(p) if p else ''}" for n, p in CASES]


def ref_forward(name, z, params=()):
    z = np.asarray(z, F64)
    return ROWWISE[name][0](z) if name in ROWWISE else ELEMENTWISE[name][0](z, params)


def ref_backward(name, z, g, params=()):
    """dL/dz given z and dL/dy = g."""
    z = np.asarray(z, F64)
    return ROWWISE[name][1](z, g) if name in ROWWISE else g * ELEMENTWISE[name][1](z, params)


def central_vjp(name, z, g, params=(), eps=1e-6):
    """dL/dz of L = sum(g * act(z)) by central differences of the float64 reference."""
    z = np.asarray(z, F64).copy()
    out = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        old = z[idx]
        z[idx] = old + eps
        up = np.sum(g * ref_forward(name, z, params))
        z[idx] = old - eps
        down = np.sum(g * ref_forward(name, z, params))
        z[idx] = old
        out[idx] = (up - down) / (2 * eps)
    return out


def away_from_kinks(name, params, z):
    """Moves values within 1e-3 of a kink of `name` off it (differences straddling a
    kink measure neither side)."""
    kinks = {"relu": [0], "relu6": [0, 6], "leaky_relu": [0], "elu": [0], "selu": [0],
             "hard_sigmoid": [-3, 3],
             "relu_general": [0] + [p for p in params[1:] if p != math.inf]}.get(name, [])
    for k in kinks:
        z = np.where(np.abs(z - k) < 1e-3, z + 2e-3, z)
    return z


def assert_close(got, want, tol=1e-5):
    """float32 against float64: relative to the largest value compared."""
    want = np.asarray(want, F64)
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1e-6)
    np.testing.assert_allclose(np.asarray(got, F64), want, rtol=10 * tol, atol=tol * scale)


# ---- names and functions ------------------------------------------------------------------


def test_every_keras_name_resolves_and_the_functions_are_keras_shaped(rng):
    for name in activations.NAMES:
        assert activations.get(name) == name
        assert activations.get(getattr(activations, name)) == name
    assert activations.get("swish") == activations.get(activations.swish) == "silu"
    assert activations.get(None) == "linear"
    assert activations.get("GELU") == "gelu"
    with pytest.raises(ValueError, match="Unknown activation: 'crelu'"):
        activations.get("crelu")
    with pytest.raises(ValueError, match="Unknown activation"):
        activations.get(np.tanh)  # a function of another module never runs per step
    x = rng.standard_normal((4, 6)) * 3
    # defaults as Keras 3: leaky_relu 0.2, elu 1.0, gelu exact, softmax over the last axis
    assert_close(activations.leaky_relu(x), ref_forward("leaky_relu", x, (0.2,)))
    assert_close(activations.elu(x), ref_forward("elu", x, (1.0,)))
    assert_close(activations.gelu(x), ref_forward("gelu", x))
    assert_close(activations.gelu(x, approximate=True), ref_forward("gelu_tanh", x))
    assert_close(activations.relu(x, max_value=6.0), ref_forward("relu6", x))
    assert_close(activations.relu(x, negative_slope=0.5, max_value=5.0, threshold=1.0),
                 ref_forward("relu_general", x, (0.5, 5.0, 1.0)))
    # Keras' documented examples of relu
    v = [-10, -5, 0.0, 5, 10]
    np.testing.assert_array_equal(activations.relu(v), [0, 0, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(v, negative_slope=0.5), [-5, -2.5, 0, 5, 10])
    np.testing.assert_array_equal(activations.relu(v, max_value=5.0), [0, 0, 0, 5, 5])
    np.testing.assert_array_equal(activations.relu(v, threshold=5.0), [0, 0, 0, 0, 10])
    x3 = rng.standard_normal((2, 3, 4))
    for axis in (0, 1, -2):
        want = np.moveaxis(_softmax(np.moveaxis(x3, axis, -1)), -1, axis)
        assert_close(activations.softmax(x3, axis=axis), want)
        want = np.moveaxis(_log_softmax(np.moveaxis(x3, axis, -1)), -1, axis)
        assert_close(activations.log_softmax(x3, axis=axis), want)
    with pytest.raises(ValueError, match=r"Received: axis=3"):
        activations.softmax(x3, axis=3)
    with pytest.raises(ValueError, match=r"Received: negative_slope='a'"):
        activations.leaky_relu(x, negative_slope="a")
    with pytest.raises(TypeError, match="real numbers"):
        activations.tanh(np.array(["a"]))


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_function_forward_and_kernel_backward(rng, name, params):
    """fastnn.activations and the kernels: forward vs the reference, backward vs the
    reference's derivative and central differences of its forward, over shapes whose
    flat passes cover padding-free and odd sizes."""
    for shape in [(1, 1), (5, 7), (3, 17), (2, 3, 4)]:
        z = away_from_kinks(name, params, 2.5 * rng.standard_normal(shape))
        z32 = z.astype(np.float32)
        want = ref_forward(name, z32, params)
        if name in ROWWISE:
            got = getattr(activations, name)(z32)
        else:
            got = _engine.activation_forward(z32, name, params or None)
        assert got.dtype == np.float32 and got.shape == shape
        assert_close(got, want)
        g = rng.standard_normal(shape)
        gz = _engine.activation_backward(got, g.astype(np.float32), name, z32, params or None)
        assert_close(gz, ref_backward(name, z32, g, params), 1e-4)
        assert_close(gz, central_vjp(name, z32, g, params), 1e-4)
    if _engine.act_needs_input(name):
        with pytest.raises(ValueError, match="needs its input"):
            _engine.activation_backward(got, got, name)


def test_which_kinds_need_their_input():
    """dense fuses only activations whose derivative its output y determines."""
    need = {n for n in _engine.ACTIVATIONS if _engine.act_needs_input(n)}
    assert need == {"leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "mish", "relu_general"}


EXTREMES = np.array([-1e4, -1e3, -100.0, -88.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 80.0,
                     100.0, 1e3, 1e4], np.float32)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_extreme_inputs_stay_finite(name, params):
    """Up to |x| = 1e4: finite wherever the function is (exp overflows past ~88.7, as in
    Keras), with the reference's values and derivatives."""
    z = EXTREMES.reshape(1, -1)
    with np.errstate(over="ignore", invalid="ignore"):
        want = ref_forward(name, z, params)
        want_d = ref_backward(name, z, np.ones_like(z, F64), params)
        finite = np.isfinite(want.astype(np.float32))  # float32's range, as Keras'
    got = _engine.activation_forward(z, name, params or None)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    assert_close(got[finite], want[finite])
    gz = _engine.activation_backward(got, np.ones_like(z), name, z, params or None)
    with np.errstate(over="ignore"):
        finite_d = np.isfinite(want_d.astype(np.float32)) & finite
    assert not np.isnan(gz[finite_d]).any()
    assert_close(gz[finite_d], want_d[finite_d], 1e-4)


# ---- the engine: plans by hand ------------------------------------------------------------

N_IN, N_OUT, MAX_BATCH = 3, 2, 8


class Chain:
    """x (3) -> dense (linear, or `act` fused) -> [activation op] -> dense (2), over random
    float32 weights; reference forward and gradients in float64."""

    def __init__(self, rng, name, params, width, fused=False, group=0):
        self.name, self.params, self.width, self.fused, self.group = (name, params, width,
                                                                      fused, group)
        self.shapes = [(N_IN, width), (width,), (width, N_OUT), (N_OUT,)]
        self.flat = np.concatenate([rng.standard_normal(s).ravel() / 1.5
                                    for s in self.shapes]).astype(np.float32)
        offs = np.cumsum([0] + [math.prod(s) for s in self.shapes])
        d1 = {"kind": "dense", "inputs": [0], "out": 1, "w_off": int(offs[0]),
              "b_off": int(offs[1]), "act": name if fused else "linear"}
        d2 = {"kind": "dense", "inputs": [1 if fused else 2], "out": 2 if fused else 3,
              "w_off": int(offs[2]), "b_off": int(offs[3])}
        act = {"kind": "activation", "inputs": [1], "out": 2, "act": name,
               "fparam": list(params), **({"iparam": [group]} if group else {})}
        self.ops = [d1, d2] if fused else [d1, act, d2]
        self.tensors = [(N_IN, True)] + [(width, False)] * (1 if fused else 2) + [(N_OUT, False)]
        self.out = len(self.tensors) - 1

    def plan(self, train):
        heads = [(self.out, "mse", "linear", N_OUT, 1.0)] if train else []
        return _engine.Plan(self.tensors, [dict(o) for o in self.ops], [0],
                            [] if train else [self.out], heads, [], self.flat,
                            np.zeros_like(self.flat), np.zeros(1, np.float32), MAX_BATCH)

    def weights(self, flat):
        out, at = [], 0
        for s in self.shapes:
            out.append(np.asarray(flat[at:at + math.prod(s)], F64).reshape(s))
            at += math.prod(s)
        return out

    def _act(self, z):
        if self.group:
            return ref_forward(self.name, z.reshape(-1, self.group), self.params).reshape(z.shape)
        return ref_forward(self.name, z, self.params)

    def forward(self, flat, x):
        w1, b1, w2, b2 = self.weights(flat)
        z = np.asarray(x, F64) @ w1 + b1
        return z, self._act(z) @ w2 + b2

    def loss(self, flat, x, y):
        return float(np.mean((self.forward(flat, x)[1] - y) ** 2))

    def grads(self, x, y):
        """dL/d(flat) by backpropagation through the reference."""
        w1, b1, w2, b2 = self.weights(self.flat)
        z, out = self.forward(self.flat, x)
        h = self._act(z)
        g = 2.0 * (out - y) / out.size
        gh = g @ w2.T
        if self.group:
            gz = ref_backward(self.name, z.reshape(-1, self.group), gh.reshape(-1, self.group),
                              self.params).reshape(z.shape)
        else:
            gz = ref_backward(self.name, z, gh, self.params)
        return np.concatenate([(np.asarray(x, F64).T @ gz).ravel(), gz.sum(0),
                               (h.T @ g).ravel(), g.sum(0)])


def engine_grads(plan, x, y):
    opt = _engine.OptimizerState("sgd", plan.params.shape[0], learning_rate=0.0)
    run = _engine.Run(plan, [x], [y], x.shape[0], 1, False, 0, 1)
    assert plan.train(run, opt, 1, 0.0, False) == "done"
    return plan.grads.copy(), run.take_totals()[0]


def check_chain(rng, chain, rows=(1, 5, 19), n_fd=24):
    predict = chain.plan(train=False)
    for n in rows:  # one row, a partial chunk, several chunks
        x = rng.standard_normal((n, N_IN)).astype(np.float32)
        assert_close(predict.predict(x), chain.forward(chain.flat, x)[1])
    train = chain.plan(train=True)
    x = rng.standard_normal((5, N_IN)).astype(np.float32)
    y = rng.standard_normal((5, N_OUT)).astype(np.float32)
    got, totals = engine_grads(train, x, y)
    np.testing.assert_allclose(totals[1] / totals[0], chain.loss(chain.flat, x, y), rtol=1e-4)
    assert_close(got, chain.grads(x, y), 1e-4)
    flat = chain.flat.astype(F64)
    idx = rng.choice(flat.size, size=min(n_fd, flat.size), replace=False)
    fd = []
    for i in idx:
        old = flat[i]
        flat[i] = old + 1e-6
        up = chain.loss(flat, x, y)
        flat[i] = old - 1e-6
        down = chain.loss(flat, x, y)
        flat[i] = old
        fd.append((up - down) / 2e-6)
    assert_close(got[idx], fd, 1e-4)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_engine_activation_op(kernels, rng, name, params):
    """The standalone activation op (reading its input in backward where needed), at
    widths of one, under and over a 16-float panel."""
    for width in (1, 5, 17):
        check_chain(rng, Chain(rng, name, params, width))


FUSABLE = [(n, p) for n, p in CASES if not _engine.act_needs_input(n)]


@pytest.mark.parametrize("name,params", FUSABLE, ids=[f"{n}" for n, _ in FUSABLE])
def test_engine_fused_into_dense(kernels, rng, name, params):
    for width in (1, 5, 16, 17, 33):
        check_chain(rng, Chain(rng, name, params, width, fused=True), rows=(5, 19))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_engine_grouped_softmax(kernels, rng, name):
    """iparam[0] = g: a softmax over each run of g values (a last axis of a row)."""
    check_chain(rng, Chain(rng, name, (), 12, group=4))
    check_chain(rng, Chain(rng, name, (), 12, group=12))


def test_engine_refuses_what_it_cannot_run(rng):
    for fused, group, params in ((True, 0, ()), (False, 5, ()), (False, -1, ())):
        chain = Chain(rng, "gelu" if fused else "softmax", params, 12, fused=fused, group=group)
        if group < 0:
            chain.ops[1]["iparam"] = [group]
        with pytest.raises(ValueError, match="invalid plan"):
            chain.plan(train=False)
    chain = Chain(rng, "tanh", (), 4)
    chain.ops[1]["fparam"] = [0.0] * 5
    with pytest.raises(ValueError, match="at most 4 values in fparam"):
        chain.plan(train=False)


# ---- in models --------------------------------------------------------------------------------


def model_step_check(model, x, y, forward, lr=1.0):
    """predict == forward(weights, x) (float64), and one SGD step's gradients (from the
    weight change) == central differences of the reference's MSE."""
    w0 = [w.astype(F64) for w in model.get_weights()]
    assert_close(model.predict(x), forward(w0, x))
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    model.train_on_batch(x, y)
    got = np.concatenate([(a - b.astype(F64)).ravel() / lr
                          for a, b in zip(w0, model.get_weights())])
    flat = np.concatenate([w.ravel() for w in w0])
    shapes = [w.shape for w in w0]

    def loss(v):
        ws, at = [], 0
        for s in shapes:
            ws.append(v[at:at + math.prod(s)].reshape(s))
            at += math.prod(s)
        return np.mean((forward(ws, x) - y) ** 2)

    fd = np.zeros_like(flat)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + 1e-6
        up = loss(flat)
        flat[i] = old - 1e-6
        down = loss(flat)
        flat[i] = old
        fd[i] = (up - down) / 2e-6
    assert_close(got, fd, 2e-4)


def roundtrip(model, tmp_path, x):
    """get_config rebuilds each layer alike; save/load predicts the same, bit for bit."""
    for layer in model.layers[1:]:
        config = layer.get_config()
        again = type(layer).from_config(config)
        assert again.get_config() == config
    path = tmp_path / "m"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    return loaded


@pytest.mark.parametrize("name", activations.NAMES + ("swish",))
def test_dense_activation_in_a_model(kernels, rng, tmp_path, name):
    """Dense(activation=name) (fused, or dense + activation op) and Activation(name) after
    another layer's output (the standalone op): predictions and gradients."""
    canon = activations.get(name)
    params = activations.engine_params(canon)
    utils.set_random_seed(1)
    inp = Input(shape=(3,))
    h = Dense(6, activation=name)(inp)
    out = Dense(2)(Activation(name)(Dense(4)(h)))
    model = fastnn.Model(inp, out)

    def forward(w, x):
        z = np.asarray(x, F64) @ w[0] + w[1]
        a = ref_forward(canon, z, params) @ w[2] + w[3]
        return ref_forward(canon, a, params) @ w[4] + w[5]

    x = rng.standard_normal((7, 3)).astype(np.float32)
    model_step_check(model, x, rng.standard_normal((7, 2)).astype(np.float32), forward)
    loaded = roundtrip(model, tmp_path, x)
    assert loaded.layers[1].get_config()["activation"] == canon


LAYERS = {
    "relu": (lambda: ReLU(), "relu", ()),
    "relu6": (lambda: ReLU(max_value=6), "relu6", ()),
    "relu_leaky": (lambda: ReLU(negative_slope=0.1), "leaky_relu", (0.1,)),
    "relu_general": (lambda: ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3),
                     "relu_general", (0.2, 1.5, 0.3)),
    "relu_threshold": (lambda: ReLU(threshold=0.4), "relu_general", (0.0, math.inf, 0.4)),
    "leaky_relu": (lambda: LeakyReLU(), "leaky_relu", (0.3,)),
    "leaky_relu_0.05": (lambda: LeakyReLU(negative_slope=0.05), "leaky_relu", (0.05,)),
    "elu": (lambda: ELU(), "elu", (1.0,)),
    "elu_0.5": (lambda: ELU(alpha=0.5), "elu", (0.5,)),
    "softmax": (lambda: Softmax(), "softmax", ()),
    "softmax_axis1": (lambda: Softmax(axis=1), "softmax", ()),
}


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_activation_layers(kernels, rng, tmp_path, key):
    make, name, params = LAYERS[key]
    utils.set_random_seed(2)
    inp = Input(shape=(3,))
    layer = make()
    out = Dense(2)(layer(Dense(5)(inp)))
    model = fastnn.Model(inp, out)

    def forward(w, x):
        z = np.asarray(x, F64) @ w[0] + w[1]
        return ref_forward(name, z, params) @ w[2] + w[3]

    x = away_from_kinks(name, params, rng.standard_normal((6, 3))).astype(np.float32)
    # the layer on arrays, too
    z = away_from_kinks(name, params, 2 * rng.standard_normal((4, 5))).astype(np.float32)
    assert_close(make()(z), ref_forward(name, z, params))
    model_step_check(model, x, rng.standard_normal((6, 2)).astype(np.float32), forward)
    roundtrip(model, tmp_path, x)


def test_prelu_trains_alpha(kernels, rng, tmp_path):
    """alpha per unit (and shared): predictions, gradients of alpha and the weights."""
    for shared, alpha_shape in ((None, (5,)), ([1], (1,))):
        utils.set_random_seed(3)
        inp = Input(shape=(3,))
        prelu = PReLU(alpha_initializer="random_normal", shared_axes=shared)
        model = fastnn.Model(inp, Dense(2)(prelu(Dense(5)(inp))))
        assert prelu.alpha.shape == alpha_shape

        def forward(w, x):
            z = np.asarray(x, F64) @ w[0] + w[1]
            return np.where(z > 0, z, w[2] * z) @ w[3] + w[4]

        x = rng.standard_normal((6, 3)).astype(np.float32)
        model_step_check(model, x, rng.standard_normal((6, 2)).astype(np.float32), forward)
        loaded = roundtrip(model, tmp_path, x)
        assert loaded.layers[2].shared_axes == shared
    assert PReLU()(np.array([[-2.0, 3.0]], np.float32)).tolist() == [[0.0, 3.0]]


def test_prelu_on_steps_and_channels(kernels, rng):
    """(batch, 4, 3) inputs: one alpha per channel (shared_axes=[1]), per step ([2]),
    per value, or one in all; a shared layer called twice sums its alpha gradients."""
    for shared in (None, [1], [2], [1, 2]):
        utils.set_random_seed(4)
        inp = Input(shape=(12,))
        prelu = PReLU(alpha_initializer="random_normal", shared_axes=shared)
        a = Flatten()(prelu(Reshape((4, 3))(Dense(12)(inp))))
        b = Flatten()(prelu(Reshape((4, 3))(Dense(12)(inp))))
        model = fastnn.Model(inp, Dense(2)(add([a, b])))

        def forward(w, x):
            x = np.asarray(x, F64)
            alpha = w[4]  # Keras' order: both Dense first (by depth), then the PReLU
            z1 = (x @ w[0] + w[1]).reshape(-1, 4, 3)
            z2 = (x @ w[2] + w[3]).reshape(-1, 4, 3)
            p = [np.where(z > 0, z, alpha * z).reshape(-1, 12) for z in (z1, z2)]
            return (p[0] + p[1]) @ w[5] + w[6]

        x = rng.standard_normal((5, 12)).astype(np.float32)
        model_step_check(model, x, rng.standard_normal((5, 2)).astype(np.float32), forward)
    with pytest.raises(ValueError, match="leaves axes"):
        PReLU(shared_axes=[2]).build((None, 2, 3, 4))


def test_softmax_over_the_last_axes_of_3d_inputs(kernels, rng, tmp_path):
    for axis, group in ((-1, 3), (2, 3), ([1, 2], 12)):
        utils.set_random_seed(5)
        inp = Input(shape=(3,))
        sm = Softmax(axis=axis)
        out = Dense(2)(Flatten()(sm(Reshape((4, 3))(Dense(12)(inp)))))
        model = fastnn.Model(inp, out)

        def forward(w, x):
            z = (np.asarray(x, F64) @ w[0] + w[1]).reshape(-1, group)
            return _softmax(z).reshape(-1, 12) @ w[2] + w[3]

        x = rng.standard_normal((6, 3)).astype(np.float32)
        model_step_check(model, x, rng.standard_normal((6, 2)).astype(np.float32), forward)
        roundtrip(model, tmp_path, x)
        z = rng.standard_normal((2, 4, 3)).astype(np.float32)
        assert_close(Softmax(axis=axis)(z), _softmax(z.reshape(-1, group)).reshape(z.shape))
    for axis in (1, 0, [1]):
        with pytest.raises(ValueError, match=r"Received: axis="):
            Softmax(axis=axis)(Input(shape=(4, 3)))


def test_activation_layer_arguments_are_checked():
    for make, message in ((lambda: ReLU(max_value=-1), r"Received: max_value=-1"),
                          (lambda: ReLU(negative_slope=-0.1), r"Received: negative_slope=-0.1"),
                          (lambda: ReLU(threshold=None), r"Received: threshold=None"),
                          (lambda: LeakyReLU(negative_slope=-1), r"Received: negative_slope=-1"),
                          (lambda: ELU(alpha="x"), r"Received: alpha='x'"),
                          (lambda: Activation("nope"), r"Unknown activation: 'nope'"),
                          (lambda: PReLU(shared_axes=[0]), r"Received: shared_axes=\[0\]"),
                          (lambda: PReLU(alpha_regularizer="l2"),
                           r"Received: alpha_regularizer='l2'")):
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.warns(UserWarning, match="alpha"):
        assert LeakyReLU(alpha=0.1).negative_slope == 0.1
    relu = ReLU()
    assert relu.get_config()["max_value"] is None and relu.name.startswith("re_lu")
