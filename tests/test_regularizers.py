"""Regularizers and constraints: Keras 3's names, defaults and maths; the penalised loss
(what fit, train_on_batch and evaluate report) and its gradients against a float64
reference and central differences under every kernel set; constraints applied after
each update against NumPy projections of the reference step."""
import numpy as np
import pytest

import fastnn
from fastnn import Model, Sequential, constraints, regularizers, utils
from fastnn.layers import (ActivityRegularization, BatchNormalization, Dense, Embedding,
                           Flatten, Input)
from fastnn.optimizers import SGD
from test_normalization import check_gradients, mse, sgd_gradients

F64 = np.float64


def penalty(w, l1=0.0, l2=0.0):
    return l1 * np.abs(w).sum() + l2 * np.square(w).sum()


@pytest.fixture
def data(rng):
    return (rng.standard_normal((20, 4)).astype(np.float32),
            rng.standard_normal((20, 2)).astype(np.float32))


# ==== regularizers by name, config, direct calls ============================================

def test_names_defaults_and_configs():
    cases = {"l1": (0.01, 0.0), "l2": (0.0, 0.01), "l1_l2": (0.01, 0.01), "L1": (0.01, 0.0),
             "L2": (0.0, 0.01), "L1L2": (0.0, 0.0)}
    for name, (l1, l2) in cases.items():
        reg = regularizers.get(name)
        assert (reg.l1, reg.l2) == (l1, l2), name
        again = regularizers.get(regularizers.serialize(reg))
        assert type(again) is type(reg) and again.get_config() == reg.get_config()
    assert regularizers.get(None) is None
    assert regularizers.L1L2(l1=0.2, l2=0.3)(2 * np.ones(1)) == pytest.approx(4 * 0.3 + 2 * 0.2)
    assert regularizers.L2(2.0)(np.ones((5, 5))) == pytest.approx(50.0)
    assert regularizers.get(regularizers.L2).l2 == 0.01


def test_bad_regularizers():
    for cls, arg, value in ((regularizers.L1, "l1", -1), (regularizers.L2, "l2", float("nan")),
                            (regularizers.L1L2, "l2", "big"), (regularizers.L1, "l1", True)):
        with pytest.raises(ValueError, match=f"Received: {arg}={value!r}"):
            cls(**{arg: value})
    with pytest.raises(ValueError, match="regularizer identifier: 'l3'"):
        regularizers.get("l3")
    with pytest.raises(TypeError, match="Python function"):
        Dense(2, kernel_regularizer=lambda w: 0.01 * np.sum(w))

    class Orthogonality(regularizers.Regularizer):
        def __call__(self, x):
            return 0.0
    with pytest.raises(TypeError, match="regularizers L1, L2, L1L2 only"):
        Dense(2, kernel_regularizer=Orthogonality())
    with pytest.raises(TypeError, match="subclass"):
        Dense(2, kernel_regularizer=Orthogonality)
    with pytest.raises(ValueError, match="Received: l1=-0.5"):
        ActivityRegularization(l1=-0.5)


# ==== penalties in the loss and its gradients ================================================

def _dense_model(**kwargs):
    utils.set_random_seed(6)
    dense = Dense(3, activation="tanh", bias_initializer="random_normal", **kwargs)
    return Sequential([Input(shape=(4,)), dense, Dense(2)]), dense


def test_weight_penalties_join_loss_and_gradients(kernels, ref, data):
    x, y = data
    model, _ = _dense_model(kernel_regularizer=regularizers.L1L2(l1=0.02, l2=0.05),
                            bias_regularizer=regularizers.L1(0.1))

    def total(w):
        out = np.tanh(x @ w[0] + w[1]) @ w[2] + w[3]
        return mse(out, y) + penalty(w[0], 0.02, 0.05) + penalty(w[1], l1=0.1)
    start = check_gradients(ref, model, x, y, total)
    # evaluate reports the penalised loss too (of the weights after the step)
    now = [w.astype(F64) for w in model.trainable_weights]
    assert model.evaluate(x, y) == pytest.approx(total(now), rel=1e-5)
    assert total(start) > mse(np.tanh(x @ start[0] + start[1]) @ start[2] + start[3], y)


@pytest.mark.parametrize("how", ["dense", "layer"])
def test_activity_penalty_divided_by_the_batch(kernels, ref, data, how):
    """Keras 3: (l1 sum|h| + l2 sum h^2) / batch size, h the layer's output."""
    x, y = data
    if how == "dense":
        model, _ = _dense_model(activity_regularizer=regularizers.L1L2(l1=0.03, l2=0.2))
    else:
        utils.set_random_seed(6)
        model = Sequential([Input(shape=(4,)), Dense(3, activation="tanh"),
                            ActivityRegularization(l1=0.03, l2=0.2), Dense(2)])

    def total(w):
        h = np.tanh(x @ w[0] + w[1])
        return mse(h @ w[2] + w[3], y) + penalty(h, 0.03, 0.2) / len(x)
    check_gradients(ref, model, x, y, total)
    now = [w.astype(F64) for w in model.trainable_weights]
    # evaluate's batches do not change it: each is divided by its own size
    assert model.evaluate(x, y, batch_size=7) == pytest.approx(total(now), rel=1e-5)


def test_fit_logs_the_penalised_loss(data):
    x, y = data
    model, dense = _dense_model(kernel_regularizer="l2")
    model.compile(SGD(learning_rate=0.0), "mse")
    history = model.fit(x, y, batch_size=5, epochs=2, verbose=0, validation_data=(x, y))
    w = [v.astype(F64) for v in model.trainable_weights]
    want = mse(np.tanh(x @ w[0] + w[1]) @ w[2] + w[3], y) + penalty(w[0], l2=0.01)
    np.testing.assert_allclose(history.history["loss"], [want] * 2, rtol=1e-5)
    np.testing.assert_allclose(history.history["val_loss"], [want] * 2, rtol=1e-5)


def test_frozen_and_shared_weights(data):
    """A frozen layer's weights are not penalised (Keras: trainable weights only); a layer
    called twice is penalised once."""
    x, y = data
    model, dense = _dense_model(kernel_regularizer=regularizers.L2(0.5))
    dense.trainable = False
    model.compile(SGD(learning_rate=0.0), "mse")
    w = [v.astype(F64) for v in model.weights]
    plain = mse(np.tanh(x @ w[0] + w[1]) @ w[2] + w[3], y)
    assert model.evaluate(x, y) == pytest.approx(plain, rel=1e-5)

    utils.set_random_seed(0)
    shared = Dense(4, kernel_regularizer=regularizers.L1(0.1), bias_regularizer="l2")
    inp = Input(shape=(4,))
    model = Model(inp, shared(shared(inp)))
    model.compile(SGD(learning_rate=0.0), "mse")
    k, b = (v.astype(F64) for v in shared.weights)
    out = (x @ k + b) @ k + b
    want = mse(out, np.zeros_like(out)) + penalty(k, l1=0.1) + penalty(b, l2=0.01)
    assert model.evaluate(x, np.zeros((20, 4))) == pytest.approx(want, rel=1e-5)


def test_penalised_weights_outside_the_loss_path(rng):
    """A regularized layer on an output without a loss gets only its penalty's gradient,
    every step (not accumulated over steps)."""
    x = rng.standard_normal((8, 3)).astype(np.float32)
    utils.set_random_seed(1)
    inp = Input(shape=(3,))
    side = Dense(2, kernel_regularizer=regularizers.L2(0.5), use_bias=False, name="side")
    model = Model(inp, [Dense(1, name="main")(inp), side(inp)])
    model.compile(SGD(learning_rate=0.1), loss=["mse", None])
    k = side.kernel.astype(F64)
    # one step an epoch, the three epochs in one native call
    model.fit(x, [np.zeros((8, 1)), np.zeros((8, 2))], batch_size=8, epochs=3, verbose=0)
    np.testing.assert_allclose(side.kernel, k * (1 - 0.1 * 2 * 0.5) ** 3, rtol=1e-5)


def test_batch_norm_and_embedding_regularizers(ref, rng):
    idx = rng.integers(0, 5, size=(10, 2))
    y = rng.standard_normal((10, 1)).astype(np.float32)
    utils.set_random_seed(2)
    model = Sequential([Input(shape=(2,)),
                        Embedding(5, 3, embeddings_regularizer=regularizers.L2(0.1)),
                        Flatten(), BatchNormalization(gamma_regularizer=regularizers.L1(0.2),
                                                      beta_regularizer="l2"),
                        Dense(1)])

    def total(w):
        h = w[0][idx].reshape(10, -1)
        h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-3) * w[1] + w[2]
        return (mse(h @ w[3] + w[4], y) + penalty(w[0], l2=0.1) + penalty(w[1], l1=0.2) +
                penalty(w[2], l2=0.01))
    check_gradients(ref, model, idx, y, total)


# ==== constraints ============================================================================

def test_constraint_names_configs_and_maths(rng):
    w = rng.standard_normal((4, 3)) * 2
    for name, cls in (("max_norm", constraints.MaxNorm), ("non_neg", constraints.NonNeg),
                      ("unit_norm", constraints.UnitNorm),
                      ("min_max_norm", constraints.MinMaxNorm)):
        c = constraints.get(name)
        assert type(c) is cls and type(constraints.get(cls.__name__)) is cls
        again = constraints.get(constraints.serialize(c))
        assert again.get_config() == c.get_config()
    n = np.sqrt((w ** 2).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(constraints.MaxNorm(1.5)(w), w * np.minimum(n, 1.5) / (1e-7 + n))
    np.testing.assert_allclose(constraints.UnitNorm(axis=1)(w),
                               w / (1e-7 + np.sqrt((w ** 2).sum(axis=1, keepdims=True))))
    assert constraints.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert constraints.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0,
                                                     "rate": 1.0, "axis": 0}
    with pytest.raises(ValueError, match="Received: max_value=inf"):
        constraints.MaxNorm(float("inf"))
    with pytest.raises(ValueError, match="constraint identifier: 'positive'"):
        constraints.get("positive")
    with pytest.raises(TypeError, match="Python function"):
        Dense(2, kernel_constraint=lambda w: w)


@pytest.mark.parametrize("kernel_c,bias_c", [
    (constraints.MaxNorm(0.5), constraints.NonNeg()),
    (constraints.MaxNorm(0.5, axis=1), constraints.MaxNorm(0.1)),
    (constraints.UnitNorm(), None),
    (constraints.UnitNorm(axis=[0, 1]), constraints.UnitNorm()),
    (constraints.MinMaxNorm(0.8, 0.9, rate=0.5), constraints.MinMaxNorm(2.0, 3.0)),
    (constraints.NonNeg(), None),
])
def test_constraints_after_each_update(kernels, ref, data, kernel_c, bias_c):
    """Each step: w <- constraint(w - lr * g), g the reference gradient at w."""
    x, y = data
    model, dense = _dense_model(kernel_constraint=kernel_c, bias_constraint=bias_c)
    model.compile(SGD(learning_rate=0.5), "mse")
    for _ in range(3):
        w = [v.astype(F64) for v in model.trainable_weights]

        def total(v):
            return mse(np.tanh(x @ v[0] + v[1]) @ v[2] + v[3], y)
        g = ref.finite_difference(lambda: total(w), w, eps=1e-6)
        want = [v - 0.5 * d for v, d in zip(w, g)]
        want[0] = kernel_c(want[0])
        if bias_c is not None:
            want[1] = bias_c(want[1])
        model.train_on_batch(x, y)
        for got, expect in zip(model.trainable_weights, want):
            np.testing.assert_allclose(got, expect, rtol=2e-4, atol=2e-5)


def test_constraints_hold_through_fit_and_skip_frozen_weights(data, rng):
    x, y = data
    model, dense = _dense_model(kernel_constraint=constraints.MaxNorm(0.3))
    model.compile("adam", "mse")
    model.fit(x, y * 10, epochs=5, batch_size=4, verbose=0)
    assert np.sqrt((dense.kernel.astype(F64) ** 2).sum(axis=0)).max() <= 0.3 + 1e-6
    emb = Embedding(6, 4, embeddings_constraint=constraints.UnitNorm(axis=1))
    model = Sequential([Input(shape=(2,)), emb, Flatten(), Dense(1)])
    model.compile("sgd", "mse")
    model.fit(rng.integers(0, 6, size=(12, 2)), np.ones((12, 1)), epochs=1, verbose=0)
    np.testing.assert_allclose(np.sqrt((emb.embeddings.astype(F64) ** 2).sum(axis=1)), 1,
                               rtol=1e-5)
    model, dense = _dense_model(kernel_constraint=constraints.MaxNorm(1e-3))
    dense.trainable = False
    before = dense.kernel.copy()
    model.compile("sgd", "mse")
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(dense.kernel, before)


def test_unsupported_constraint_axes_raise(data):
    x, y = data
    model = Sequential([Input(shape=(4,)), Dense(3, kernel_constraint=constraints.MaxNorm(
        axis=2))])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"MaxNorm\(axis=2\) does not fit"):
        model.fit(x, y[:, :1].repeat(3, axis=1), verbose=0)


def test_dense_config_round_trip(data, tmp_path):
    x, y = data
    model, dense = _dense_model(kernel_regularizer=regularizers.L1L2(l1=0.01, l2=0.02),
                                bias_regularizer="l1", activity_regularizer="l2",
                                kernel_constraint=constraints.MinMaxNorm(0.5, 2.0, 0.7, axis=1),
                                bias_constraint="non_neg",
                                kernel_initializer=fastnn.initializers.Orthogonal(gain=2.0))
    config = dense.get_config()
    assert Dense.from_config(config).get_config() == config
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "d.keras")
    loaded = fastnn.models.load_model(tmp_path / "d.keras")
    assert loaded.layers[0].get_config() == config
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    # and training goes on with the same penalties and constraints
    before = [w.copy() for w in loaded.weights]
    loaded.compile(SGD(learning_rate=0.1), "mse")
    model.compile(SGD(learning_rate=0.1), "mse")
    assert loaded.train_on_batch(x, y) == pytest.approx(model.train_on_batch(x, y), rel=1e-6)
    for a, b, c in zip(loaded.weights, model.weights, before):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert not np.array_equal(a, c)


def test_sgd_gradients_helper_sees_penalties(data):
    """The L2 gradient 2 * l2 * w alone, when the data gives none (zero inputs, bias off)."""
    x, y = data
    utils.set_random_seed(0)
    dense = Dense(2, use_bias=False, kernel_regularizer=regularizers.L2(0.25))
    model = Sequential([Input(shape=(4,)), dense])
    w = dense.kernel.astype(F64)
    loss, (g,) = sgd_gradients(model, np.zeros_like(x), np.zeros((20, 2)))
    np.testing.assert_allclose(g, 0.5 * w, rtol=1e-5, atol=1e-7)
    assert loss == pytest.approx(0.25 * (w ** 2).sum(), rel=1e-6)


def test_activity_penalty_on_a_folded_softmax_output_is_refused(data):
    """A cross-entropy on probabilities trains on the logits: a penalty on the
    probabilities of that output is refused with a clear error, not mis-trained."""
    x, _ = data
    model = Sequential([Input(shape=(4,)), Dense(3, activation="softmax",
                                                 activity_regularizer="l2")])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="cannot carry an activity regularizer"):
        model.fit(x, np.zeros(len(x)), verbose=0)


@pytest.mark.parametrize("penalties,constraints_", [
    ([(6, 4, 0.1, 0.0)], []),                       # beyond the 8 parameters
    ([(0, 4, -0.1, 0.0)], []),                      # a negative factor
    ([], [("max_norm", "columns", 0, 3, 3, 0.0, 1.0, 1.0)]),  # 9 values from 0
    ([], [("unit_norm", "rows", -1, 2, 2, 0.0, 1.0, 1.0)]),
])
def test_bad_penalties_and_constraints_raise_not_crash(penalties, constraints_):
    from fastnn import _engine
    params = np.zeros(8, np.float32)
    ops = [{"kind": "dense", "inputs": [0], "out": 1, "w_off": 0, "b_off": 4}]
    with pytest.raises(ValueError, match="invalid plan"):
        _engine.Plan([(2, True), (2, False)], ops, [0], [1], [], [], params,
                     np.zeros_like(params), np.zeros(1, np.float32), 4, penalties=penalties,
                     constraints=constraints_)
    with pytest.raises(ValueError, match="unknown kind"):
        _engine.Plan([(2, True), (2, False)], ops, [0], [1], [], [], params,
                     np.zeros_like(params), np.zeros(1, np.float32), 4,
                     constraints=[("clip", "rows", 0, 2, 2, 0.0, 1.0, 1.0)])
