"""Dropout: identity at inference, a seeded mask while training that backward reuses."""
import numpy as np
import pytest

from fastnn import Sequential, optimizers, utils
from fastnn.layers import Dense, Dropout
from fastnn.models import load_model


def test_dropout_is_identity_at_inference(rng):
    utils.set_random_seed(1)
    with_drop = Sequential([Dense(20, input_shape=(5,), activation="relu"), Dropout(0.5),
                            Dense(3)])
    utils.set_random_seed(1)
    without = Sequential([Dense(20, input_shape=(5,), activation="relu"), Dense(3)])
    x = rng.standard_normal((9, 5)).astype(np.float32)
    np.testing.assert_array_equal(with_drop.predict(x), without.predict(x))
    with_drop.compile(loss="mse")
    without.compile(loss="mse")
    y = rng.standard_normal((9, 3)).astype(np.float32)
    assert with_drop.evaluate(x, y) == without.evaluate(x, y)
    np.testing.assert_array_equal(Dropout(0.3)(x), x)
    lines = []
    with_drop.summary(print_fn=lines.append)
    assert any(line.startswith("dropout (Dropout)") and line.rstrip().endswith(" 0")
               for line in lines)


def test_training_step_uses_one_mask_forward_and_backward(rng):
    """One SGD step (lr 1) on one row through Dense(tanh) -> Dropout(0.5) -> Dense(1):
    the output layer's gradient reveals the mask (zero where a unit was dropped, twice
    the undropped gradient where kept), and the first layer's gradient must use that
    same mask."""
    utils.set_random_seed(4)
    model = Sequential([Dense(200, input_shape=(3,), activation="tanh"), Dropout(0.5),
                        Dense(1, use_bias=False)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0), loss="mse")
    x = rng.standard_normal((1, 3)).astype(np.float32)
    y = np.array([[3.0]], np.float32)
    w1, b1, w2 = [w.astype(np.float64) for w in model.get_weights()]
    h = np.tanh(x @ w1 + b1)[0]                        # (200,)
    model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0)
    v1, c1, v2 = [w.astype(np.float64) for w in model.get_weights()]
    g2 = (w2 - v2)[:, 0]                               # dL/dw2_j = dL/dy * 2 m_j h_j
    kept = np.abs(g2) > 1e-9
    assert 60 < kept.sum() < 140                       # ~Binomial(200, 0.5)
    out = 2.0 * np.sum(kept * h * w2[:, 0])           # the prediction with this mask
    dl_dy = 2.0 * (out - y[0, 0])
    np.testing.assert_allclose(g2, dl_dy * 2.0 * kept * h, rtol=1e-4, atol=1e-7)
    dl_dz = dl_dy * 2.0 * kept * w2[:, 0] * (1 - h ** 2)
    np.testing.assert_allclose(b1 - c1, dl_dz, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(w1 - v1, np.outer(x[0], dl_dz), rtol=1e-4, atol=1e-6)


def test_dropout_training_is_seeded_and_rate_zero_is_a_no_op(rng):
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = rng.standard_normal(64).astype(np.float32)

    def train(rate, seed):
        utils.set_random_seed(seed)
        layers = [Dense(16, input_shape=(6,), activation="relu")]
        layers += [Dropout(rate)] if rate is not None else []
        m = Sequential(layers + [Dense(1)])
        m.compile(loss="mse", optimizer="rmsprop")
        m.fit(x, y, batch_size=8, epochs=3, verbose=0)
        m.train_on_batch(x[:8], y[:8])
        return m.get_weights()

    for a, b in zip(train(0.4, 7), train(0.4, 7)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(train(0.4, 7), train(0.4, 8)))
    for a, b in zip(train(0.0, 7), train(None, 7)):
        np.testing.assert_array_equal(a, b)


def test_dropout_keeps_the_expected_activation(rng):
    """Inverted dropout: E[output] = input, about `rate` of the units zeroed."""
    utils.set_random_seed(0)
    model = Sequential([Dense(4000, input_shape=(1,), use_bias=False, kernel_initializer="ones"),
                        Dropout(0.3), Dense(1, use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e-30), loss="mse")  # ~frozen
    x = np.ones((1, 1), np.float32)
    losses = [model.train_on_batch(x, np.zeros((1, 1), np.float32)) for _ in range(20)]
    # output = sum of kept units / 0.7 ~ 4000 on average
    mean_out = np.mean(np.sqrt(losses))
    assert mean_out == pytest.approx(4000, rel=0.02)


def test_dropout_rate_validation_and_saving(tmp_path):
    with pytest.raises(ValueError, match=r"Received: rate=1"):
        Dropout(1)
    with pytest.raises(ValueError, match=r"Received: rate=-0.1"):
        Dropout(-0.1)
    with pytest.raises(ValueError, match="noise_shape"):
        Dropout(0.2, noise_shape=(1, 4))
    utils.set_random_seed(0)
    m = Sequential([Dense(4, input_shape=(3,)), Dropout(0.25), Dense(1)])
    m.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.layers[1], Dropout) and loaded.layers[1].rate == 0.25
