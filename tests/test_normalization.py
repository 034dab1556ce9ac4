"""Normalization, BatchNormalization and LayerNormalization: forward (training and
inference) against float64 NumPy written here from Keras 3's definitions, gradients read
off one SGD step (learning rate 1: w - g in float32 gives g back) against central
differences of the float64 reference, under every kernel set; moving statistics, frozen
layers, summary counts, get_config and save/load.

The helpers `sgd_gradients` and `check_gradients` serve test_embedding and
test_regularizers too."""
import numpy as np
import pytest

import fastnn
from fastnn import Model, Sequential, _engine, utils
from fastnn.layers import (BatchNormalization, Dense, Flatten, Input, LayerNormalization,
                           Normalization, Reshape)
from fastnn.optimizers import SGD

F64 = np.float64


# ---- shared helpers ---------------------------------------------------------------------

def sgd_gradients(model, x, y, loss="mse"):
    """(the loss train_on_batch reports, dL/dw per trainable weight in float64), from one
    SGD step at learning rate 1 on (x, y) as one batch."""
    model.compile(optimizer=SGD(learning_rate=1.0), loss=loss)
    before = [w.astype(F64) for w in model.trainable_weights]
    value = model.train_on_batch(x, y)
    return value, [b - a.astype(F64) for b, a in zip(before, model.trainable_weights)]


def check_gradients(ref, model, x, y, total, loss="mse", tol=2e-4):
    """The step's loss and gradients against total(weights) (float64) and its central
    differences; returns the weights (float64) the step started from."""
    weights = [w.astype(F64) for w in model.trainable_weights]
    start = [w.copy() for w in weights]
    value, got = sgd_gradients(model, x, y, loss)
    want = ref.finite_difference(lambda: total(weights), weights, eps=1e-6)
    assert value == pytest.approx(total(start), rel=1e-5, abs=1e-6)
    for g, w in zip(got, want):
        scale = max(np.abs(w).max(), 1e-3)
        np.testing.assert_allclose(g, w, rtol=tol * 10, atol=tol * scale)
    return start


def mse(pred, y):
    return float(np.mean((pred - y) ** 2))


# ---- references (Keras 3's maths, float64) ------------------------------------------------

def norm_ref(x, mean, var, invert=False):
    s = np.maximum(np.sqrt(np.asarray(var, F64)), 1e-7)
    return x * s + mean if invert else (x - mean) / s


def batch_norm_ref(h, channels, gamma, beta, eps, mean=None, var=None):
    """h (n, groups * channels); batch statistics over rows and groups unless given.
    Returns (output, batch mean, batch variance)."""
    hc = h.reshape(h.shape[0], -1, channels)
    m = hc.mean(axis=(0, 1)) if mean is None else mean
    v = hc.var(axis=(0, 1)) if var is None else var
    y = (hc - m) / np.sqrt(v + eps)
    y = y * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)
    return y.reshape(h.shape), hc.mean(axis=(0, 1)), hc.var(axis=(0, 1))


def layer_norm_ref(h, channels, gamma, beta, eps):
    hc = h.reshape(h.shape[0], -1, channels)
    y = (hc - hc.mean(axis=2, keepdims=True)) / np.sqrt(hc.var(axis=2, keepdims=True) + eps)
    y = y * (1.0 if gamma is None else gamma.ravel()) + (0.0 if beta is None else beta.ravel())
    return y.reshape(h.shape)


@pytest.fixture
def data(rng):
    x = (rng.standard_normal((24, 5)) * [1, 2, 3, 0.5, 4] + [0, 1, -2, 3, 10]).astype(np.float32)
    y = rng.standard_normal((24, 2)).astype(np.float32)
    return x, y


# ==== Normalization ========================================================================

@pytest.mark.parametrize("axis", [-1, None])
@pytest.mark.parametrize("invert", [False, True])
def test_normalization_adapt_and_predict(data, axis, invert):
    x, _ = data
    layer = Normalization(axis=axis, invert=invert)
    layer.adapt(x.astype(F64))
    reduce = 0 if axis == -1 else None
    np.testing.assert_allclose(layer.mean, x.astype(F64).mean(axis=reduce), rtol=1e-6)
    np.testing.assert_allclose(layer.variance, x.astype(F64).var(axis=reduce), rtol=1e-5)
    assert layer.count == (x.shape[0] if axis == -1 else x.size)
    model = Sequential([Input(shape=(5,)), layer])
    want = norm_ref(x.astype(F64), layer.mean.astype(F64), layer.variance, invert)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)  # eager, NumPy


def test_normalization_given_values_and_the_epsilon_floor(data):
    x, _ = data
    # Keras divides by max(sqrt(variance), 1e-7): a zero variance divides by 1e-7
    mean, var = [1.0, 0.0, -2.0, 3.0, 10.0], [4.0, 0.0, 9.0, 1e-20, 16.0]
    model = Sequential([Input(shape=(5,)), Normalization(mean=mean, variance=var)])
    want = norm_ref(x.astype(F64), np.array(mean), var)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5)
    # a scalar broadcast to every feature, as Keras
    model = Sequential([Input(shape=(5,)), Normalization(mean=3.0, variance=2.0)])
    np.testing.assert_allclose(model.predict(x), (x - 3.0) / np.sqrt(2.0), rtol=1e-5, atol=1e-6)


def test_normalization_adapt_after_the_model_runs(data):
    """adapt() writes into the weights in place: a compiled model sees the new values."""
    x, _ = data
    layer = Normalization()
    model = Sequential([Input(shape=(5,)), layer])
    np.testing.assert_allclose(model.predict(x), x)  # mean 0, variance 1 before adapt
    layer.adapt(x)
    np.testing.assert_allclose(model.predict(x).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(model.predict(x).std(axis=0), 1, rtol=1e-4)


def test_normalization_passes_gradients(kernels, ref, data):
    x, y = data
    utils.set_random_seed(1)
    mean, var = np.array([0.5, -1, 0, 2]), np.array([4.0, 0.25, 1.0, 9.0])
    for invert in (False, True):
        model = Sequential([Input(shape=(5,)), Dense(4, activation="tanh"),
                            Normalization(mean=mean, variance=var, invert=invert), Dense(2)])

        def total(w):
            h = norm_ref(np.tanh(x @ w[0] + w[1]), mean, var, invert)
            return mse(h @ w[2] + w[3], y)
        check_gradients(ref, model, x, y, total)


def test_normalization_counts_saves_and_loads(data, tmp_path):
    x, _ = data
    layer = Normalization()
    layer.adapt(x)
    model = Sequential([Input(shape=(5,)), layer, Dense(1)])
    # Keras 3 counts mean, variance and the sample count: 2 * 5 + 1, all non-trainable
    assert layer.count_params() == 11 and not layer.trainable_weights
    assert model.count_params() == 11 + 6
    model.save(tmp_path / "m.keras")
    loaded = fastnn.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.layers[0].get_config() == layer.get_config()
    given = Normalization(mean=[1, 2], variance=[3, 4], invert=True, name="given")
    again = Normalization.from_config(given.get_config())
    assert again.get_config() == given.get_config()


def test_normalization_bad_arguments(data):
    x, _ = data
    with pytest.raises(ValueError, match="both `mean` and `variance`"):
        Normalization(mean=1.0)
    with pytest.raises(ValueError, match="same shape"):
        Normalization(mean=[1.0, 2.0], variance=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        Normalization(mean=[1.0], variance=[-1.0])
    with pytest.raises(TypeError, match="axis"):
        Normalization(axis="last")
    with pytest.raises(ValueError, match="adapt"):
        Normalization(mean=0.0, variance=1.0).adapt(x)
    with pytest.raises(ValueError, match="incompatible shape"):
        layer = Normalization()
        layer.adapt(x)
        layer.adapt(x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        Normalization().adapt(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="trailing"):  # per position of (None, 3, 4): axis=1
        Sequential([Input(shape=(12,)), Reshape((3, 4)), Normalization(axis=1)])


# ==== BatchNormalization =====================================================================

def _bn_model(scale=True, center=True, grouped=False, **kwargs):
    """Input(5) -> Dense(6, tanh) -> [Reshape (2, 3)] -> BatchNormalization -> Dense(2)."""
    utils.set_random_seed(3)
    layers = [Input(shape=(5,)), Dense(6, activation="tanh")]
    layers += [Reshape((2, 3))] if grouped else []
    bn = BatchNormalization(scale=scale, center=center, gamma_initializer="random_normal",
                            beta_initializer="random_uniform", **kwargs)
    layers += [bn] + ([Flatten()] if grouped else []) + [Dense(2)]
    return Sequential(layers), bn


def _unpack(w, scale, center):
    """(k1, b1, gamma, beta, k2, b2) from the trainable weights (None where absent)."""
    w = list(w)
    k1, b1 = w.pop(0), w.pop(0)
    gamma = w.pop(0) if scale else None
    beta = w.pop(0) if center else None
    return k1, b1, gamma, beta, w[0], w[1]


@pytest.mark.parametrize("scale,center", [(True, True), (False, True), (True, False),
                                          (False, False)])
@pytest.mark.parametrize("grouped", [False, True], ids=["2d", "groups"])
def test_batch_norm_gradients_through_batch_statistics(kernels, ref, data, scale, center,
                                                       grouped):
    x, y = data
    model, bn = _bn_model(scale, center, grouped, epsilon=0.01)
    channels = 3 if grouped else 6

    def total(w):
        k1, b1, gamma, beta, k2, b2 = _unpack(w, scale, center)
        h, _, _ = batch_norm_ref(np.tanh(x @ k1 + b1), channels, gamma, beta, 0.01)
        return mse(h @ k2 + b2, y)
    check_gradients(ref, model, x, y, total)


def test_batch_norm_training_step_inference_and_moving_statistics(kernels, data):
    """train_on_batch normalizes by the batch and moves the statistics; predict and
    evaluate use the moving ones."""
    x, y = data
    model, bn = _bn_model(momentum=0.9, epsilon=1e-3)
    model.compile(SGD(learning_rate=0.0), "mse")  # the weights stay: the references hold
    k1, b1, gamma, beta, k2, b2 = [w.astype(F64) for w in model.trainable_weights]
    mm0, mv0 = bn.moving_mean.astype(F64), bn.moving_variance.astype(F64)
    h = np.tanh(x @ k1 + b1)
    out, mean, var = batch_norm_ref(h, 6, gamma, beta, 1e-3)
    assert model.train_on_batch(x, y) == pytest.approx(mse(out @ k2 + b2, y), rel=1e-5)
    mm, mv = 0.9 * mm0 + 0.1 * mean, 0.9 * mv0 + 0.1 * var  # Keras: the biased variance
    np.testing.assert_allclose(bn.moving_mean, mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, mv, rtol=1e-5, atol=1e-6)
    inference = batch_norm_ref(h, 6, gamma, beta, 1e-3, mm, mv)[0] @ k2 + b2
    np.testing.assert_allclose(model.predict(x), inference, rtol=1e-4, atol=1e-5)
    assert model.evaluate(x, y) == pytest.approx(mse(inference, y), rel=1e-4)
    np.testing.assert_allclose(bn(h.astype(np.float32)),  # eager: inference
                               batch_norm_ref(h, 6, gamma, beta, 1e-3, mm, mv)[0], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean, mm, rtol=1e-5, atol=1e-6)  # unchanged


def test_batch_norm_moving_statistics_after_many_steps(rng):
    """BatchNormalization first, so its inputs are the data: after an unshuffled fit the
    moving statistics are the exponential averages of the batches' statistics."""
    x = (rng.standard_normal((50, 4)) * [1, 3, 0.1, 2] + [5, -1, 0, 2]).astype(np.float32)
    y = rng.standard_normal((50, 1)).astype(np.float32)
    utils.set_random_seed(0)
    bn = BatchNormalization(momentum=0.8)
    model = Sequential([Input(shape=(4,)), bn, Dense(1)])
    model.compile("rmsprop", "mse")
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    mm, mv = np.zeros(4), np.ones(4)
    for _ in range(3):
        for s in range(0, 50, 16):
            batch = x[s:s + 16].astype(F64)
            mm = 0.8 * mm + 0.2 * batch.mean(axis=0)
            mv = 0.8 * mv + 0.2 * batch.var(axis=0)
    np.testing.assert_allclose(bn.moving_mean, mm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, mv, rtol=1e-5, atol=1e-6)


def test_frozen_batch_norm_runs_in_inference_mode(kernels, ref, data):
    """Keras 3: trainable=False makes BatchNormalization use (and keep) its moving
    statistics in training too; gradients flow through them to the layers before."""
    x, y = data
    model, bn = _bn_model(epsilon=0.01)
    bn.moving_mean[...] = [0.1, -0.2, 0.3, 0, 0.5, -0.1]
    bn.moving_variance[...] = [0.5, 1.5, 0.2, 1, 2, 0.3]
    bn.trainable = False
    frozen = [w.copy() for w in bn.weights]
    mm, mv = bn.moving_mean.astype(F64), bn.moving_variance.astype(F64)
    gamma, beta = bn.gamma.astype(F64), bn.beta.astype(F64)
    assert len(model.trainable_weights) == 4 and bn.non_trainable_weights

    def total(w):
        h, _, _ = batch_norm_ref(np.tanh(x @ w[0] + w[1]), 6, gamma, beta, 0.01, mm, mv)
        return mse(h @ w[2] + w[3], y)
    check_gradients(ref, model, x, y, total)
    model.fit(x, y, epochs=2, verbose=0)
    for w, before in zip(bn.weights, frozen):
        np.testing.assert_array_equal(w, before)


def test_batch_norm_summary_counts(capsys):
    model = Sequential([Input(shape=(7,)), Dense(8), BatchNormalization()])
    model.summary()
    text = capsys.readouterr().out
    # Keras: gamma, beta trainable and the two moving statistics: 4 * units, 2 * units not
    assert model.layers[1].count_params() == 32
    assert "Total params: 96" in text and "Trainable params: 80" in text
    assert "Non-trainable params: 16" in text
    no_affine = BatchNormalization(scale=False, center=False)
    Sequential([Input(shape=(7,)), no_affine])
    assert no_affine.count_params() == 14 and not no_affine.trainable_weights


def test_batch_norm_save_load_keeps_moving_statistics(data, tmp_path):
    x, y = data
    model, bn = _bn_model(momentum=0.5, beta_regularizer="l2", gamma_constraint="non_neg")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert not np.allclose(bn.moving_mean, 0)
    model.save(tmp_path / "bn.keras")
    loaded = fastnn.models.load_model(tmp_path / "bn.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    lbn = loaded.layers[-2]
    np.testing.assert_array_equal(lbn.moving_mean, bn.moving_mean)
    np.testing.assert_array_equal(lbn.moving_variance, bn.moving_variance)
    assert lbn.get_config() == bn.get_config()
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)


def test_batch_norm_bad_arguments():
    with pytest.raises(TypeError, match="axis"):
        BatchNormalization(axis=[1])
    with pytest.raises(ValueError, match="epsilon"):
        BatchNormalization(epsilon=0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNormalization(momentum=float("nan"))
    with pytest.raises(ValueError, match="synchronized"):
        BatchNormalization(synchronized=True)
    with pytest.raises(ValueError, match="last axis"):  # per position of (None, 3, 4)
        Sequential([Input(shape=(12,)), Reshape((3, 4)), BatchNormalization(axis=1)])
    with pytest.raises(ValueError, match="not a feature axis"):
        Sequential([Input(shape=(4,)), BatchNormalization(axis=2)])


# ==== LayerNormalization ======================================================================

@pytest.mark.parametrize("case", ["2d", "last axis of (3, 4)", "axes (1, 2) of (3, 4)",
                                  "no scale", "no center"])
def test_layer_norm_forward_and_gradients(kernels, ref, rng, case):
    x = rng.standard_normal((9, 5)).astype(np.float32)
    y = rng.standard_normal((9, 2)).astype(np.float32)
    utils.set_random_seed(5)
    axis, shaped = (-1, False) if case in ("2d", "no scale", "no center") else \
        ((-1, True) if case.startswith("last") else ([1, 2], True))
    scale, center = case != "no scale", case != "no center"
    ln = LayerNormalization(axis=axis, epsilon=1e-2, scale=scale, center=center,
                            gamma_initializer="random_normal", beta_initializer="random_normal")
    hidden = [Dense(12, activation="tanh")] + ([Reshape((3, 4))] if shaped else [])
    model = Sequential([Input(shape=(5,))] + hidden + [ln] + ([Flatten()] if shaped else []) +
                       [Dense(2)])
    channels = 4 if case.startswith("last") else 12

    def forward(w):
        w = list(w)
        k1, b1 = w.pop(0), w.pop(0)
        gamma = w.pop(0) if scale else None
        beta = w.pop(0) if center else None
        h = layer_norm_ref(np.tanh(x @ k1 + b1), channels, gamma, beta, 1e-2)
        return h @ w[0] + w[1]

    start = [w.astype(F64) for w in model.trainable_weights]
    np.testing.assert_allclose(model.predict(x), forward(start), rtol=1e-4, atol=1e-5)
    check_gradients(ref, model, x, y, lambda w: mse(forward(w), y))


def test_layer_norm_in_a_functional_model_and_config(rng, tmp_path):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    inp = Input(shape=(4,))
    out = LayerNormalization(epsilon=1e-5, name="ln")(Dense(4)(inp))
    model = Model(inp, out)
    h = x.astype(F64) @ model.layers[1].kernel + model.layers[1].bias
    np.testing.assert_allclose(model.predict(x), layer_norm_ref(h, 4, None, None, 1e-5),
                               rtol=1e-4, atol=1e-5)
    model.save(tmp_path / "ln.keras")
    loaded = fastnn.models.load_model(tmp_path / "ln.keras")
    assert loaded.get_layer("ln").get_config() == model.get_layer("ln").get_config()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_layer_norm_bad_arguments():
    with pytest.raises(ValueError, match="rms_scaling"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(TypeError, match="axis"):
        LayerNormalization(axis="features")
    with pytest.raises(ValueError, match="trailing"):
        Sequential([Input(shape=(12,)), Reshape((3, 4)), LayerNormalization(axis=1)])
    with pytest.raises(ValueError, match="increasing"):
        Sequential([Input(shape=(12,)), Reshape((3, 4)), LayerNormalization(axis=[2, 1])])


# ==== the engine ops checked whole ================================================================

@pytest.mark.parametrize("kind,fields", [
    ("normalization", {"iparam": [0, 0]}),                     # no channels
    ("normalization", {"iparam": [3, 0], "state_off": [0, 0]}),  # 4 values are not groups of 3
    ("normalization", {"iparam": [4, 0], "state_off": [0, 9]}),  # statistics beyond the state
    ("batch_norm", {"iparam": [4, 1, 1, 0], "fparam": [0.0, 0.9], "w_off": 0, "b_off": 4}),
    ("batch_norm", {"iparam": [4, 1, 1, 0], "fparam": [1e-3, 0.9], "w_off": 6, "b_off": 0}),
    ("layer_norm", {"iparam": [4, 2, 0], "fparam": [1e-3]}),
    ("embedding", {"iparam": [5, 0]}),
    ("embedding", {"iparam": [50, 1], "w_off": 0}),             # 50 x 1 beyond 8 parameters
    ("activity_regularization", {"fparam": [-1.0, 0.0]}),
])
def test_bad_plans_raise_not_crash(kind, fields):
    width = 4 if kind != "embedding" else 4 * max(fields["iparam"][1], 1)
    ops = [{"kind": kind, "inputs": [0], "out": 1, "trainable": True, **fields}]
    params = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="invalid plan"):
        _engine.Plan([(4, True), (width, False)], ops, [0], [1], [], [], params,
                     np.zeros_like(params), np.zeros(10, np.float32), 4)

