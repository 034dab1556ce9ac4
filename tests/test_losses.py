"""Losses: each C kernel (per-sample values and gradients) against a float64 NumPy reference
written here from Keras 3's definitions, on ordinary and extreme data; the same kernels in
the engine (one train_on_batch step of a one-Dense model under SGD moves the weights by
-lr times the reference gradient); Loss objects, functions, names and errors."""
import numpy as np
import pytest

import fastnn
from fastnn import _engine, losses, optimizers
from fastnn.layers import Dense

F64 = np.float64
EPS = 1e-7


# ---- the float64 references: (per-sample values (n,), dL_i/dpred (n, m)) --------------------

def _mean_of(values, grads):
    m = values.shape[1]
    return values.mean(axis=1), grads / m


def _hinge_labels(t):
    return 2.0 * t - 1.0 if np.all((t == 0) | (t == 1)) else t


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _lse(z):
    zmax = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax


def ref_loss(name, p, t, param=0.0):
    p, t = np.asarray(p, F64), np.asarray(t, F64)
    e = p - t
    if name == "mse":
        return _mean_of(e * e, 2 * e)
    if name == "mae":
        return _mean_of(np.abs(e), np.sign(e))
    if name == "mape":
        den = np.maximum(np.abs(t), EPS)
        return _mean_of(100 * np.abs(e) / den, 100 * np.sign(e) / den)
    if name == "msle":
        d = np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)
        return _mean_of(d * d, np.where(p > EPS, 2 * d / (p + 1), 0.0))
    if name == "huber":
        small = np.abs(e) <= param
        return _mean_of(np.where(small, 0.5 * e * e, param * np.abs(e) - 0.5 * param ** 2),
                        np.where(small, e, param * np.sign(e)))
    if name == "log_cosh":  # log cosh x = |x| + log(1 + e^-2|x|) - log 2
        return _mean_of(np.abs(e) + np.log1p(np.exp(-2 * np.abs(e))) - np.log(2.0), np.tanh(e))
    if name == "poisson":
        return _mean_of(p - t * np.log(p + EPS), 1 - t / (p + EPS))
    if name in ("binary_hinge", "binary_squared_hinge"):
        s = _hinge_labels(t)
        h = np.maximum(1 - s * p, 0.0)
        if name == "binary_hinge":
            return _mean_of(h, np.where(h > 0, -s, 0.0))
        return _mean_of(h * h, -2 * s * h)
    if name == "sigmoid_crossentropy":  # logits z, labels smoothed towards 0.5
        s = t * (1 - param) + 0.5 * param
        return _mean_of(np.logaddexp(0.0, p) - p * s, 0.5 * (1 + np.tanh(p / 2)) - s)
    if name == "softmax_crossentropy":
        s = t * (1 - param) + param / p.shape[1]
        return (np.sum(s * (_lse(p) - p), axis=1),
                _softmax(p) * s.sum(axis=1, keepdims=True) - s)
    if name == "sparse_softmax_crossentropy":
        labels = t.reshape(-1).astype(int)
        onehot = np.eye(p.shape[1])[labels]
        return (_lse(p)[:, 0] - p[np.arange(len(p)), labels], _softmax(p) - onehot)
    if name == "kld":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return (np.sum(tc * np.log(tc / pc), axis=1),
                np.where((p >= EPS) & (p <= 1), -tc / pc, 0.0))
    if name == "categorical_hinge":
        pos = np.sum(t * p, axis=1)
        scaled = (1 - t) * p
        k = scaled.argmax(axis=1)
        v = np.maximum(scaled.max(axis=1) - pos + 1, 0.0)
        g = -t + np.eye(p.shape[1])[k] * (1 - t)
        return v, np.where(v[:, None] > 0, g, 0.0)
    if name == "cosine":
        nt = np.maximum(np.linalg.norm(t, axis=1, keepdims=True), EPS)
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        n_p = np.maximum(norm, EPS)
        u, q = t / nt, p / n_p
        uq = np.sum(u * q, axis=1, keepdims=True)
        return -uq[:, 0], np.where(norm > EPS, -(u - uq * q) / n_p, -u / EPS)
    raise ValueError(name)


# kernel -> (Loss class, the kernel's parameter, how to draw (pred, target) of shape (n, m))
def _normal(rng, n, m, scale=1.0):
    return scale * rng.standard_normal((n, m))


def _draw(name, rng, n, m, extreme=False):
    """Predictions and targets in each loss's domain; extreme: predictions of +-1e4."""
    big = 1e4
    if name in ("binary_hinge", "binary_squared_hinge"):
        t = rng.integers(0, 2, (n, m)).astype(F64)
        return (big * np.sign(_normal(rng, n, m)) if extreme else _normal(rng, n, m)), t
    if name == "sigmoid_crossentropy":
        return _normal(rng, n, m, big if extreme else 2.0), rng.integers(0, 2, (n, m)) * 1.0
    if name == "softmax_crossentropy":
        t = rng.random((n, m))
        return _normal(rng, n, m, big if extreme else 2.0), t / t.sum(axis=1, keepdims=True)
    if name == "sparse_softmax_crossentropy":
        return _normal(rng, n, m, big if extreme else 2.0), rng.integers(0, m, (n, 1)) * 1.0
    if name == "kld":
        t = rng.random((n, m))
        p = rng.uniform(0.05, 0.95, (n, m))
        if extreme:
            p[:, 0], p[:, -1] = 1e-12, 1.0 - 1e-7
        return p, t / t.sum(axis=1, keepdims=True)
    if name in ("poisson", "msle"):
        p = rng.uniform(0.1, 3.0, (n, m)) * (big if extreme else 1.0)
        return p, rng.uniform(0.0, 3.0, (n, m))
    if name == "mape":
        t = rng.uniform(0.5, 2.0, (n, m)) * np.where(rng.random((n, m)) < 0.5, -1, 1)
        return _normal(rng, n, m, big if extreme else 1.0), t
    if name == "categorical_hinge":
        return _normal(rng, n, m, big if extreme else 1.0), np.eye(m)[rng.integers(0, m, n)]
    return _normal(rng, n, m, big if extreme else 1.0), _normal(rng, n, m)


KERNELS = ["mse", "mae", "mape", "msle", "huber", "log_cosh", "kld", "poisson", "binary_hinge",
           "binary_squared_hinge", "categorical_hinge", "cosine", "sigmoid_crossentropy",
           "softmax_crossentropy", "sparse_softmax_crossentropy"]
PARAM = {"huber": 1.3, "sigmoid_crossentropy": 0.1, "softmax_crossentropy": 0.2}


def _kernel(name, p, t, param=0.0, weight=None):
    target = np.ascontiguousarray(t.reshape(-1) if name == "sparse_softmax_crossentropy" else t,
                                  np.float32)
    w = None if weight is None else np.ascontiguousarray(weight, np.float32)
    return _engine.loss_rows(name, np.ascontiguousarray(p, np.float32), target, param, w)


def test_every_kernel_is_tested():
    assert sorted(KERNELS) == sorted(_engine.LOSSES)


@pytest.mark.parametrize("name", KERNELS)
def test_reference_gradients_match_finite_differences(name, ref, rng):
    """The references' gradients are those of their values (so the kernels are checked
    against the maths, not against a second copy of a formula)."""
    p, t = _draw(name, rng, 4, 3)
    param = PARAM.get(name, 0.0)
    _, grad = ref_loss(name, p, t, param)
    (fd,) = ref.finite_difference(lambda: ref_loss(name, p, t, param)[0].sum(), [p])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "extreme"])
@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_values_and_gradients(name, m, extreme, rng):
    if name in ("softmax_crossentropy", "sparse_softmax_crossentropy", "categorical_hinge",
                "cosine") and m == 1 and not extreme:
        m = 2
    p, t = _draw(name, rng, 9, m, extreme)
    p = p.astype(np.float32).astype(F64)  # the kernel sees float32 inputs
    t = t.astype(np.float32).astype(F64)
    param = PARAM.get(name, 0.0)
    want, want_grad = ref_loss(name, p, t, param)
    values, grad = _kernel(name, p, t, param)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(values, want, rtol=2e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    scale = max(1.0, np.abs(want_grad).max())
    np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=2e-6 * scale)
    # sample weights: grad = w_i dL_i/dp, values unweighted
    w = rng.uniform(0, 2, len(p))
    values_w, grad_w = _kernel(name, p, t, param, w)
    np.testing.assert_allclose(values_w, values, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(grad_w, w[:, None] * want_grad, rtol=2e-5, atol=2e-6 * scale)


def test_hinge_converts_only_all_binary_labels(rng):
    p = rng.standard_normal((6, 3))
    t01 = rng.integers(0, 2, (6, 3)).astype(F64)
    v01, _ = _kernel("binary_hinge", p, t01)
    vpm, _ = _kernel("binary_hinge", p, 2 * t01 - 1)
    np.testing.assert_allclose(v01, vpm, rtol=1e-6)
    mixed = t01.copy()
    mixed[0, 0] = -1.0  # not all 0/1: used as given, 0 labels stay 0
    v, _ = _kernel("binary_hinge", p, mixed)
    np.testing.assert_allclose(v, np.maximum(1 - mixed * p, 0).mean(axis=1), rtol=1e-6)


# ---- in the engine: one SGD step moves the weights by -lr * the reference gradient -----------

ENGINE_CASES = [  # (loss object, output activation, output width)
    (losses.MeanSquaredError(), None, 3), (losses.MeanSquaredError(), None, 1),
    (losses.MeanAbsoluteError(), None, 2), (losses.MeanAbsolutePercentageError(), None, 2),
    (losses.MeanSquaredLogarithmicError(), None, 2), (losses.Huber(delta=0.7), None, 2),
    (losses.LogCosh(), None, 3), (losses.KLDivergence(), None, 3), (losses.Poisson(), None, 2),
    (losses.Hinge(), None, 2), (losses.SquaredHinge(), None, 1),
    (losses.CategoricalHinge(), None, 3), (losses.CosineSimilarity(), None, 3),
    (losses.BinaryCrossentropy(from_logits=True), None, 2),
    (losses.BinaryCrossentropy(label_smoothing=0.2), "sigmoid", 1),
    (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), None, 4),
    (losses.CategoricalCrossentropy(), "softmax", 3),
    (losses.SparseCategoricalCrossentropy(from_logits=True), None, 4),
    (losses.SparseCategoricalCrossentropy(), "softmax", 3),
]


def _engine_case_data(loss, units, rng, n=12, k=4):
    """x, targets and weights (W, b) that put the outputs in the loss's domain."""
    x = rng.uniform(-1, 1, (n, k))
    w = 0.3 * rng.standard_normal((k, units))
    b = 0.3 * rng.standard_normal(units)
    name = loss.key
    if name in ("msle", "poisson"):
        b = b + 2.0  # positive predictions
    if name == "kld":
        w, b = 0.05 * w, np.full(units, 0.5)
    _, t = _draw(name, rng, n, units)
    return x, t, w, b


@pytest.mark.parametrize("case", ENGINE_CASES, ids=lambda c: f"{c[0].name}-{c[1]}-{c[2]}"
                         if isinstance(c, tuple) else None)
def test_one_sgd_step_follows_the_reference_gradient(case, kernels, rng):
    loss, act, units = case
    x, t, w, b = _engine_case_data(loss, units, rng)
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential([Dense(units, input_shape=(x.shape[1],), activation=act)])
    lr = 0.5
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss=loss)
    model.set_weights([w, b])
    w32, b32 = [a.astype(F64) for a in model.get_weights()]
    x32 = x.astype(np.float32).astype(F64)
    z = x32 @ w32 + b32  # the logits under a folded sigmoid/softmax
    values, dz = ref_loss(loss.key, z, t.astype(np.float32).astype(F64), loss.param)
    got = model.train_on_batch(x, t)
    assert got == pytest.approx(values.mean(), rel=1e-5, abs=1e-6)
    g = dz / len(x)  # sum_over_batch_size
    w1, b1 = model.get_weights()
    scale = max(1e-3, np.abs(x32.T @ g).max())
    np.testing.assert_allclose((w32 - w1) / lr, x32.T @ g, rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose((b32 - b1) / lr, g.sum(axis=0), rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight", "sum_over_batch_size"])
def test_reductions_in_the_engine(reduction, rng):
    x = rng.uniform(-1, 1, (10, 3))
    t = rng.standard_normal((10, 2))
    sw = rng.uniform(0, 2, 10)
    model = fastnn.Sequential([Dense(2, input_shape=(3,))])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1),
                  loss=losses.Huber(delta=0.5, reduction=reduction))
    w0, b0 = [a.astype(F64) for a in model.get_weights()]
    x32 = x.astype(np.float32).astype(F64)
    values, dz = ref_loss("huber", x32 @ w0 + b0, t.astype(np.float32).astype(F64), 0.5)
    divisor = {"sum": 1.0, "mean_with_sample_weight": sw.astype(np.float32).sum(),
               "sum_over_batch_size": len(x)}[reduction]
    got = model.train_on_batch(x, t, sample_weight=sw)
    assert got == pytest.approx(np.sum(sw * values) / divisor, rel=1e-5)
    g = sw[:, None] * dz / divisor
    np.testing.assert_allclose((w0 - model.get_weights()[0]) / 0.1, x32.T @ g, rtol=1e-3,
                               atol=1e-5)


def test_extreme_logits_train_finitely():
    """Logits of +-1e4 give finite losses and gradients (the stable forms)."""
    x = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    for loss, units, y in [(losses.BinaryCrossentropy(), 1, np.array([[0.0], [1.0], [1.0], [0.0]])),
                           (losses.CategoricalCrossentropy(), 2, np.eye(2)[[1, 0, 0, 1]]),
                           (losses.SparseCategoricalCrossentropy(), 2, np.array([1, 0, 0, 1]))]:
        act = "sigmoid" if units == 1 else "softmax"
        model = fastnn.Sequential([Dense(units, input_shape=(1,), activation=act)])
        model.compile(optimizer=optimizers.SGD(1e-6), loss=loss)
        model.set_weights([np.full((1, units), 1e4) * np.array([1, -1][:units]),
                           np.zeros(units)])
        value = model.train_on_batch(x, y)
        assert np.isfinite(value) and value > 1e3  # about 1e4: confidently wrong rows
        assert all(np.all(np.isfinite(a)) for a in model.get_weights())
    for loss in (losses.LogCosh(), losses.Huber(), losses.MeanAbsoluteError()):
        model = fastnn.Sequential([Dense(1, input_shape=(1,))])
        model.compile(optimizer=optimizers.SGD(1e-6), loss=loss)
        model.set_weights([np.full((1, 1), 1e4), np.zeros(1)])
        assert np.isfinite(model.train_on_batch(x, np.zeros((4, 1))))


# ---- Loss objects and functions on arrays -------------------------------------------------------

OBJECTS = [  # (Loss, kernel, parameter, pred transform: to the kernel's input)
    (losses.MeanSquaredError(), "mse", 0.0, None),
    (losses.MeanAbsoluteError(), "mae", 0.0, None),
    (losses.MeanAbsolutePercentageError(), "mape", 0.0, None),
    (losses.MeanSquaredLogarithmicError(), "msle", 0.0, None),
    (losses.Huber(delta=2.0), "huber", 2.0, None),
    (losses.LogCosh(), "log_cosh", 0.0, None),
    (losses.KLDivergence(), "kld", 0.0, None),
    (losses.Poisson(), "poisson", 0.0, None),
    (losses.Hinge(), "binary_hinge", 0.0, None),
    (losses.SquaredHinge(), "binary_squared_hinge", 0.0, None),
    (losses.CategoricalHinge(), "categorical_hinge", 0.0, None),
    (losses.CosineSimilarity(), "cosine", 0.0, None),
    (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), "sigmoid_crossentropy",
     0.1, None),
    (losses.CategoricalCrossentropy(from_logits=True), "softmax_crossentropy", 0.0, None),
    (losses.SparseCategoricalCrossentropy(from_logits=True), "sparse_softmax_crossentropy", 0.0,
     None),
]


@pytest.mark.parametrize("obj,name,param,_", OBJECTS, ids=[o[0].name for o in OBJECTS])
def test_loss_objects_reduce_as_keras(obj, name, param, _, rng):
    p, t = _draw(name, rng, 7, 3)
    y_true = t.reshape(-1) if obj.sparse_labels else t
    values, _g = ref_loss(name, p.astype(np.float32), t.astype(np.float32), param)
    assert obj(y_true, p) == pytest.approx(values.mean(), rel=1e-5)
    assert isinstance(obj(y_true, p), np.float32)
    np.testing.assert_allclose(obj.call(y_true, p), values, rtol=1e-5, atol=1e-6)
    w = rng.uniform(0, 2, 7)
    assert obj(y_true, p, sample_weight=w) == pytest.approx(np.sum(w * values) / 7, rel=1e-5)
    assert obj(y_true, p, sample_weight=w[:, None]) == pytest.approx(np.sum(w * values) / 7,
                                                                     rel=1e-5)
    assert obj(y_true, p, sample_weight=2.0) == pytest.approx(2 * values.mean(), rel=1e-5)
    for reduction, want in [("sum", np.sum(w * values)),
                            ("mean_with_sample_weight", np.sum(w * values) / w.sum()),
                            ("mean", np.sum(w * values) / 7)]:
        other = type(obj).from_config({**obj.get_config(), "reduction": reduction})
        assert other(y_true, p, sample_weight=w) == pytest.approx(want, rel=1e-5)
    none = type(obj).from_config({**obj.get_config(), "reduction": None})
    np.testing.assert_allclose(none(y_true, p, sample_weight=w), w * values, rtol=1e-5,
                               atol=1e-6)


def test_cross_entropies_on_probabilities_match_keras_formulas(rng):
    z = rng.standard_normal((6, 3))
    p = _softmax(z)
    labels = rng.integers(0, 3, 6)
    onehot = np.eye(3)[labels]
    want = np.mean(-np.sum(onehot * np.log(p), axis=1))
    assert losses.CategoricalCrossentropy()(onehot, p) == pytest.approx(want, rel=1e-5)
    assert losses.SparseCategoricalCrossentropy()(labels, p) == pytest.approx(want, rel=1e-5)
    smooth = onehot * 0.7 + 0.3 / 3
    assert losses.CategoricalCrossentropy(label_smoothing=0.3)(onehot, p) == pytest.approx(
        np.mean(-np.sum(smooth * np.log(p), axis=1)), rel=1e-5)
    q = 1 / (1 + np.exp(-z))
    t = (rng.random((6, 3)) > 0.5).astype(float)
    ts = t * 0.8 + 0.1
    assert losses.BinaryCrossentropy(label_smoothing=0.2)(t, q) == pytest.approx(
        np.mean(-(ts * np.log(q) + (1 - ts) * np.log(1 - q))), rel=1e-5)
    # Keras clips probabilities to [1e-7, 1 - 1e-7]: a certain wrong answer costs -log(1e-7)
    assert losses.BinaryCrossentropy()([[1.0]], [[0.0]]) == pytest.approx(-np.log(1e-7), rel=1e-3)


def test_functions_return_per_sample_values(rng):
    p, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    for fn, name in [(losses.mean_squared_error, "mse"), (losses.mse, "mse"),
                     (losses.mae, "mae"), (losses.log_cosh, "log_cosh"),
                     (losses.cosine_similarity, "cosine"), (losses.poisson, "poisson")]:
        got = fn(t, np.abs(p) if name == "poisson" else p)
        want = ref_loss(name, np.abs(p) if name == "poisson" else p, t)[0]
        assert got.shape == (5,) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses.huber(t, p, delta=0.5), ref_loss("huber", p, t, 0.5)[0],
                               rtol=1e-5)
    # 1-D arrays are one sample (Keras' mean over the last axis)
    assert losses.mse(t[:, 0], p[:, 0]) == pytest.approx(np.mean((p[:, 0] - t[:, 0]) ** 2),
                                                         rel=1e-5)
    labels = rng.integers(0, 3, 5)
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(labels, p, from_logits=True),
        ref_loss("sparse_softmax_crossentropy", p, labels[:, None] * 1.0)[0], rtol=1e-5)
    np.testing.assert_allclose(
        losses.binary_crossentropy(t > 0, p, from_logits=True),
        ref_loss("sigmoid_crossentropy", p, (t > 0) * 1.0)[0], rtol=1e-5)


# ---- names, config, errors -----------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("MeanSquaredError", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
    ("mape", losses.MeanAbsolutePercentageError), ("msle", losses.MeanSquaredLogarithmicError),
    ("huber", losses.Huber), ("Huber", losses.Huber), ("log_cosh", losses.LogCosh),
    ("logcosh", losses.LogCosh), ("kl_divergence", losses.KLDivergence),
    ("kld", losses.KLDivergence), ("poisson", losses.Poisson), ("hinge", losses.Hinge),
    ("squared_hinge", losses.SquaredHinge), ("categorical_hinge", losses.CategoricalHinge),
    ("cosine_similarity", losses.CosineSimilarity), ("bce", losses.BinaryCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)])
def test_get_by_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls
    assert losses.get(cls) is not None and type(losses.get(cls)) is cls


def test_keras_defaults_and_config_round_trip():
    assert losses.Huber().delta == 1.0 and losses.Huber().name == "huber_loss"
    assert losses.CosineSimilarity().axis == -1
    assert losses.KLDivergence().name == "kl_divergence"
    bce = losses.BinaryCrossentropy()
    assert (bce.from_logits, bce.label_smoothing, bce.reduction) == \
        (False, 0.0, "sum_over_batch_size")
    assert not hasattr(losses.SparseCategoricalCrossentropy(), "label_smoothing") or \
        "label_smoothing" not in losses.SparseCategoricalCrossentropy().get_config()
    for loss in (losses.Huber(delta=2.5, reduction="sum", name="h"),
                 losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
                 losses.SparseCategoricalCrossentropy(from_logits=True), losses.LogCosh()):
        again = losses.deserialize(losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert losses.get(losses.mean_squared_error).name == "mean_squared_error"


def test_compiled_loss_survives_save_and_load(tmp_path, rng):
    x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    model = fastnn.Sequential([Dense(2, input_shape=(3,))])
    model.compile(optimizer="sgd", loss=losses.Huber(delta=0.3))
    model.save(tmp_path / "m.fastnn")
    loaded = fastnn.models.load_model(tmp_path / "m.fastnn")
    assert isinstance(loaded.loss, losses.Huber) and loaded.loss.delta == pytest.approx(0.3)
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)


def test_unknown_loss_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown loss: 'hubber'. Valid names: \[.*'huber'.*"
                                         r"'log_cosh'.*'mse'"):
        losses.get("hubber")
    m = fastnn.Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"Unknown loss: 'nope'"):
        m.compile(loss="nope")


@pytest.mark.parametrize("make,match", [
    (lambda: losses.Huber(delta=0), r"delta must be a positive number. Received: delta=0"),
    (lambda: losses.Huber(delta="1"), r"Received: delta='1'"),
    (lambda: losses.BinaryCrossentropy(label_smoothing=1.5),
     r"label_smoothing must be a number in \[0, 1\]. Received: label_smoothing=1.5"),
    (lambda: losses.CategoricalCrossentropy(from_logits=1), r"Received: from_logits=1"),
    (lambda: losses.MeanSquaredError(reduction="avg"), r"Received: reduction='avg'"),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class=0), r"ignore_class=0"),
    (lambda: losses.CosineSimilarity(axis=0), r"axis must be -1. Received: axis=0"),
    (lambda: losses.LogCosh(dtype="float16"), r"Received: dtype='float16'"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_calls_raise(rng):
    p = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"same shape.*y_true.shape=\(4, 2\)"):
        losses.MeanSquaredError()(np.zeros((4, 2)), p)
    with pytest.raises(ValueError, match=r"integer class labels in \[0, 3\)"):
        losses.SparseCategoricalCrossentropy(from_logits=True)([0, 1, 3, 1], p)
    with pytest.raises(ValueError, match=r"integer class labels"):
        losses.SparseCategoricalCrossentropy(from_logits=True)([0, 1, 0.5, 1], p)
    with pytest.raises(TypeError, match=r"y_true must hold real numbers"):
        losses.MeanSquaredError()(np.array(["a"] * 12).reshape(4, 3), p)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\)"):
        losses.MeanSquaredError()(p, p, sample_weight=np.ones(3))
    model = fastnn.Sequential([Dense(3, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"reduction=None; a training loss must reduce"):
        model.compile(loss=losses.MeanSquaredError(reduction=None))
    model.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"integer class labels in \[0, 3\)"):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 2, 3]), verbose=0)
