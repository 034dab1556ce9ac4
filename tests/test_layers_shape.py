"""Shape and noise layers: Flatten, Reshape, Identity and inputs of more than two axes
(free in the engine: the same rows under a new shape), GaussianNoise and GaussianDropout
(training only; their statistics, their seeding, and backward reusing forward's noise).
Numbers are checked against float64 NumPy references written here, never pasted."""
import math

import numpy as np
import pytest

import fastnn
from fastnn import Input, Model, Sequential, optimizers, utils
from fastnn.layers import (Dense, Flatten, GaussianDropout, GaussianNoise, Identity, Reshape)
from fastnn.models import load_model

F64 = np.float64


def dense64(w, b, x, relu=False):
    z = np.asarray(x, F64).reshape(len(x), -1) @ w.astype(F64) + b.astype(F64)
    return np.maximum(z, 0.0) if relu else z


def assert_close(got, want, tol=1e-5):
    want = np.asarray(want, F64)
    scale = max(float(np.abs(want).max()), 1e-6)
    np.testing.assert_allclose(np.asarray(got, F64), want, rtol=10 * tol, atol=tol * scale)


def saved_and_loaded(model, tmp_path, x):
    """get_config rebuilds each layer alike; the loaded model predicts the same bits."""
    for layer in model.layers:
        if type(layer).__name__ != "InputLayer":
            config = layer.get_config()
            assert type(layer).from_config(config).get_config() == config
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    return loaded


# ---- Flatten, Reshape, Identity, inputs of several axes -----------------------------------------


def test_image_input_flatten_dense(kernels, rng, tmp_path):
    """Input(shape=(28, 28)) -> Flatten -> Dense: (n, 28, 28) arrays in, fit, predict and
    evaluate as the float64 reference of the flattened rows; save/load."""
    utils.set_random_seed(0)
    model = Sequential([Input(shape=(28, 28)), Flatten(), Dense(10, activation="relu"),
                        Dense(3)])
    assert model.layers[0].output_shape == (None, 784)
    assert model.output_shape == (None, 3)
    x = rng.standard_normal((37, 28, 28))  # float64: converted once
    w1, b1, w2, b2 = model.get_weights()
    want = dense64(w2, b2, dense64(w1, b1, x, relu=True))
    assert_close(model.predict(x), want)
    assert_close(model.predict(x.astype(np.float32)), want)
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    y = rng.standard_normal((37, 3)).astype(np.float32)
    assert model.evaluate(x, y) == pytest.approx(np.mean((want - y) ** 2), rel=1e-4)
    # one full-batch SGD step: the same step as on the flattened rows
    utils.set_random_seed(0)
    flat = Sequential([Input(shape=(784,)), Dense(10, activation="relu"), Dense(3)])
    flat.set_weights(model.get_weights())
    flat.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    model.fit(x, y, batch_size=37, epochs=2, shuffle=False, verbose=0)
    flat.fit(x.reshape(37, 784), y, batch_size=37, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), flat.get_weights()):
        np.testing.assert_array_equal(a, b)
    saved_and_loaded(model, tmp_path, x[:5].astype(np.float32))


def test_inputs_of_several_axes_are_checked(rng):
    model = Sequential([Input(shape=(4, 5)), Flatten(), Dense(2)])
    for bad in (np.zeros((3, 20)), np.zeros((3, 5, 4)), np.zeros((3, 4, 5, 1))):
        with pytest.raises(ValueError, match=r"must have shape \(samples, 4, 5\) to match the "
                                             r"model's input shape \(None, 4, 5\), got shape"):
            model.predict(bad)
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(np.full((3, 4, 5), "a"))
    x = np.zeros((3, 4, 5))
    x[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.predict(x)
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.zeros((0, 4, 5)))
    # several inputs, one of them with several axes, by name
    a, b = Input(shape=(2, 3), name="img"), Input(shape=(4,), name="vec")
    out = Dense(1)(fastnn.layers.concatenate([Flatten()(a), b]))
    two = Model([a, b], out)
    xa, xb = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 4))
    w, bias = two.get_weights()
    assert_close(two.predict({"img": xa, "vec": xb}),
                 dense64(w, bias, np.concatenate([xa.reshape(6, 6), xb], axis=1)))


def test_targets_of_several_axes_convert_to_rows():
    """data.as_targets takes an output's feature shape too: (n, 2, 3) targets as rows of 6
    (what a model whose output has several axes hands it)."""
    from fastnn.models import data
    y = np.arange(30.0).reshape(5, 2, 3)
    np.testing.assert_array_equal(data.as_targets(y, "y", 5, (2, 3), False),
                                  y.reshape(5, 6).astype(np.float32))
    np.testing.assert_array_equal(data.as_targets(y[:, 0, 0], "y", 5, (1,), False),
                                  y[:, :1, 0])
    with pytest.raises(ValueError, match=r"got shape \(5, 3, 2\)"):
        data.as_targets(y.reshape(5, 3, 2), "y", 5, (2, 3), False)


def test_reshape_and_flatten(kernels, rng, tmp_path):
    """Reshape((3, -1)) then Flatten: the same rows, shapes as Keras computes them."""
    utils.set_random_seed(1)
    inp = Input(shape=(12,))
    r = Reshape((3, -1))(Dense(12)(inp))
    assert r.shape == (None, 3, 4)
    r2 = Reshape((2, 2, 3))(r)
    assert r2.shape == (None, 2, 2, 3)
    f = Flatten()(r2)
    assert f.shape == (None, 12)
    model = Model(inp, Dense(2)(f))
    x = rng.standard_normal((9, 12)).astype(np.float32)
    w1, b1, w2, b2 = model.get_weights()
    assert_close(model.predict(x), dense64(w2, b2, dense64(w1, b1, x)))
    # the plan has no op for them: two dense ops, nothing between
    assert [op["kind"] for op in model._plan(8, "predict").spec["ops"]] == ["dense", "dense"]
    loaded = saved_and_loaded(model, tmp_path, x)
    assert [layer.get_config().get("target_shape") for layer in loaded.layers[2:4]] == \
        [(3, -1), (2, 2, 3)]
    # on arrays
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(Reshape((4, 3))(a), a.reshape(2, 4, 3))
    np.testing.assert_array_equal(Reshape((-1,))(a), a.reshape(2, 12))
    np.testing.assert_array_equal(Flatten()(a), a.reshape(2, 12))


def test_reshape_and_flatten_errors():
    for bad in ((0, 3), (-1, -1), (2.5,), (), (True,)):
        with pytest.raises(ValueError, match=r"Received: target_shape="):
            Reshape(bad)
    with pytest.raises(TypeError, match=r"Received: target_shape=3"):
        Reshape(3)
    with pytest.raises(ValueError, match=r"cannot take target_shape=\(5,\)"):
        Reshape((5,))(Input(shape=(12,)))
    with pytest.raises(ValueError, match=r"cannot take target_shape=\(5, -1\)"):
        Reshape((5, -1))(Input(shape=(12,)))
    with pytest.raises(ValueError, match=r"Received: data_format='channels_first'"):
        Flatten(data_format="channels_first")
    # Dense applies to the features of 2-D inputs only (a clear error, not a wrong answer)
    with pytest.raises(ValueError, match=r"takes 2-D input"):
        Dense(3)(Input(shape=(4, 5)))


def test_identity(kernels, rng, tmp_path):
    utils.set_random_seed(2)
    inp = Input(shape=(5,))
    h = Dense(4, activation="tanh")(inp)
    model = Model(inp, Dense(2)(Identity()(h)))
    x = rng.standard_normal((7, 5)).astype(np.float32)
    w1, b1, w2, b2 = model.get_weights()
    assert_close(model.predict(x), dense64(w2, b2, np.tanh(dense64(w1, b1, x))))
    assert len(model._plan(8, "predict").spec["ops"]) == 2
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, rng.standard_normal((7, 2)), epochs=2, verbose=0)
    saved_and_loaded(model, tmp_path, x)
    np.testing.assert_array_equal(Identity()(x), x)
    # a model whose output is its input, through Identity and Flatten
    direct = Model(inp, Identity()(inp))
    np.testing.assert_array_equal(direct.predict(x), x)


# ---- noise layers ---------------------------------------------------------------------------


def _noisy_model(layer_factory, seed=3):
    utils.set_random_seed(seed)
    layers = [Input(shape=(6,)), Dense(16, activation="relu")]
    if layer_factory is not None:
        layers.append(layer_factory())
    return Sequential(layers + [Dense(2)])


NOISES = {"gaussian_noise": lambda: GaussianNoise(0.4), "gaussian_dropout":
          lambda: GaussianDropout(0.3)}


@pytest.mark.parametrize("kind", sorted(NOISES))
def test_noise_is_identity_at_inference(rng, kind, tmp_path):
    noisy, plain = _noisy_model(NOISES[kind]), _noisy_model(None)
    x = rng.standard_normal((9, 6)).astype(np.float32)
    y = rng.standard_normal((9, 2)).astype(np.float32)
    np.testing.assert_array_equal(noisy.predict(x), plain.predict(x))
    noisy.compile(loss="mse")
    plain.compile(loss="mse")
    assert noisy.evaluate(x, y) == plain.evaluate(x, y)
    np.testing.assert_array_equal(NOISES[kind]()(x), x)
    loaded = saved_and_loaded(noisy, tmp_path, x)
    assert type(loaded.layers[1]).__name__ == type(noisy.layers[1]).__name__


@pytest.mark.parametrize("kind", sorted(NOISES))
def test_noise_training_is_seeded(rng, kind):
    """Same seed, same data: bit-identical weights; another seed, or no noise: others."""
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.standard_normal((40, 2)).astype(np.float32)

    def trained(factory, seed):
        model = _noisy_model(factory, seed=1)
        model.compile(optimizer="rmsprop", loss="mse")
        utils.set_random_seed(seed)
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)
        model.train_on_batch(x[:8], y[:8])
        return model.get_weights()

    a, b = trained(NOISES[kind], 7), trained(NOISES[kind], 7)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, trained(NOISES[kind], 8)))
    assert not all(np.array_equal(u, v) for u, v in zip(a, trained(None, 7)))


def test_gaussian_noise_statistics():
    """x + N(0, s^2) while training: MSE against x is s^2, MAE is s sqrt(2/pi), and against
    x + c it is s^2 + c^2 (mean 0), over 2 x 20000 values."""
    utils.set_random_seed(4)
    s, n = 0.5, 20000
    inp = Input(shape=(n,))
    model = Model(inp, GaussianNoise(s)(inp))
    x = np.linspace(-3, 3, 2 * n, dtype=np.float32).reshape(2, n)
    sigma = math.sqrt(2.0 / (2 * n))  # relative standard error of a mean of squares
    model.compile(loss="mse")
    assert model.train_on_batch(x, x) == pytest.approx(s * s, rel=5 * sigma)
    assert model.train_on_batch(x, x + 0.3) == pytest.approx(s * s + 0.09, rel=5 * sigma)
    model.compile(loss="mae")
    assert model.train_on_batch(x, x) == pytest.approx(s * math.sqrt(2 / math.pi),
                                                       rel=5 * sigma)
    model.compile(loss="mse")
    assert model.evaluate(x, x) == 0.0  # inference: no noise


def test_gaussian_dropout_backward_uses_the_forward_noise():
    """1 -> Dense(K, ones) -> GaussianDropout(rate) -> Dense(1, ones), no biases, one SGD
    step at lr 1 against 0: the output is sum_j m_j, the loss its square, and both layers'
    gradients are 2 out m_j, with the same m_j (backward redraws forward's noise), whose
    mean is 1 and variance rate / (1 - rate)."""
    k, rate = 4000, 0.3
    utils.set_random_seed(5)
    model = Sequential([Input(shape=(1,)), Dense(k, use_bias=False, kernel_initializer="ones"),
                        GaussianDropout(rate), Dense(1, use_bias=False,
                                                     kernel_initializer="ones")])
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
    w1, w2 = [w.astype(F64) for w in model.get_weights()]
    loss = model.train_on_batch(np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32))
    v1, v2 = [w.astype(F64) for w in model.get_weights()]
    g1, g2 = (w1 - v1).ravel(), (w2 - v2).ravel()
    out = math.sqrt(loss)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-3)
    assert g2.sum() == pytest.approx(2.0 * loss, rel=1e-4)
    m = g2 / (2.0 * out) if g2.sum() > 0 else -g2 / (2.0 * out)
    assert m.mean() == pytest.approx(1.0, abs=5 * math.sqrt(rate / (1 - rate) / k))
    assert m.var() == pytest.approx(rate / (1 - rate), rel=5 * math.sqrt(2.0 / k))
    assert abs(np.mean(((m - 1) / math.sqrt(rate / (1 - rate))) ** 3)) < 0.2  # symmetric


def test_noise_arguments_and_rate_zero():
    for make, message in ((lambda: GaussianNoise(-0.1), r"Received: stddev=-0.1"),
                          (lambda: GaussianNoise(1.5), r"Received: stddev=1.5"),
                          (lambda: GaussianNoise("a"), r"Received: stddev='a'"),
                          (lambda: GaussianDropout(1.0), r"Received: rate=1.0"),
                          (lambda: GaussianDropout(-1), r"Received: rate=-1"),
                          (lambda: GaussianNoise(0.1, seed=1.5), r"Received: seed=1.5")):
        with pytest.raises(ValueError, match=message):
            make()
    assert GaussianNoise(0.2, seed=3).get_config()["seed"] == 3
    assert GaussianDropout(0.25).get_config()["rate"] == 0.25
    # level 0 lowers to no op: the plan of Dense -> noise(0) -> Dense has two ops
    for layer in (GaussianNoise(0.0), GaussianDropout(0.0)):
        model = _noisy_model(lambda: layer)
        assert [op["kind"] for op in model._plan(8, "predict").spec["ops"]] == ["dense", "dense"]
