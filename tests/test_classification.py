"""Classification: softmax, the cross-entropies (on logits and on probabilities, as
Keras' from_logits=False default), and accuracy by target shape."""
import numpy as np
import pytest

from fastnn import Sequential, _engine, losses, optimizers, utils
from fastnn.layers import Activation, Dense
from fastnn.models import load_model


# ---- kernels ---------------------------------------------------------------------------

def test_softmax_activation_matches_numpy_and_finite_differences(rng, ref):
    z = rng.standard_normal((7, 5)).astype(np.float32) * 3
    y = _engine.activation_forward(z, "softmax")
    np.testing.assert_allclose(y, ref.ACT_FORWARD["softmax"](z.astype(np.float64)), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    gy = rng.standard_normal((7, 5)).astype(np.float32)
    dz = _engine.activation_backward(y, gy, "softmax")
    z64 = z.astype(np.float64)
    (fd,) = ref.finite_difference(
        lambda: float(np.sum(gy * ref.ACT_FORWARD["softmax"](z64))), [z64])
    np.testing.assert_allclose(dz, fd, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("kind", ["softmax_crossentropy", "sigmoid_crossentropy"])
def test_cross_entropy_kernels(rng, ref, kind):
    z = rng.standard_normal((9, 4)).astype(np.float32) * 2
    if kind == "softmax_crossentropy":
        t = rng.random((9, 4)).astype(np.float32)
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = (rng.random((9, 4)) > 0.5).astype(np.float32)
    value, grad = _engine.loss(kind, z, t)
    want, want_grad = ref.LOSSES[kind](z, t)
    assert value == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-8)
    z64 = z.astype(np.float64)
    (fd,) = ref.finite_difference(lambda: ref.LOSSES[kind](z64, t)[0], [z64])
    np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-7)


def test_public_losses_on_probabilities_match_keras_formulas(rng, ref):
    z = rng.standard_normal((6, 3))
    p = ref.ACT_FORWARD["softmax"](z)
    onehot = np.eye(3)[rng.integers(0, 3, 6)]
    assert losses.CategoricalCrossentropy()(onehot, p) == pytest.approx(
        np.mean(-np.sum(onehot * np.log(p), axis=1)), rel=1e-5)
    assert losses.CategoricalCrossentropy(from_logits=True)(onehot, z) == pytest.approx(
        ref.LOSSES["softmax_crossentropy"](z, onehot)[0], rel=1e-5)
    q = 1 / (1 + np.exp(-z))
    t = (rng.random((6, 3)) > 0.5).astype(float)
    assert losses.BinaryCrossentropy()(t, q) == pytest.approx(
        np.mean(-(t * np.log(q) + (1 - t) * np.log(1 - q))), rel=1e-5)


# ---- models ----------------------------------------------------------------------------

def _blobs(rng, n=60, classes=3):
    centers = rng.standard_normal((classes, 4)) * 3
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.standard_normal((n, 4))).astype(np.float32), y


def _pair(last_logits, last_probs, seed=5):
    """Two models with equal weights: one ending in logits, one in probabilities."""
    models = []
    for last in (last_logits, last_probs):
        utils.set_random_seed(seed)
        models.append(Sequential([Dense(8, input_shape=(4,), activation="tanh")] + last()))
    models[1].set_weights(models[0].get_weights())
    return models


@pytest.mark.parametrize("probs_last", ["dense", "activation_layer"])
def test_softmax_model_trains_like_logits_model(rng, probs_last):
    x, y = _blobs(rng)
    last_probs = (lambda: [Dense(3, activation="softmax")]) if probs_last == "dense" else \
        (lambda: [Dense(3), Activation("softmax")])
    logit_model, prob_model = _pair(lambda: [Dense(3)], last_probs)
    logit_model.compile(optimizer=optimizers.SGD(0.1),
                        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                        metrics=["accuracy"])
    prob_model.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    ha = logit_model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    hb = prob_model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    assert ha.history["accuracy"] == hb.history["accuracy"]
    for a, b in zip(logit_model.get_weights(), prob_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    z = logit_model.predict(x)
    p = prob_model.predict(x)  # probabilities: softmax of the logits model's outputs
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-5)
    loss, acc = prob_model.evaluate(x, y)
    assert loss == pytest.approx(np.mean(-np.log(p[np.arange(len(y)), y])), rel=1e-4)
    assert acc == pytest.approx(np.mean(p.argmax(1) == y))


def test_categorical_crossentropy_with_one_hot_targets(rng):
    x, y = _blobs(rng)
    sparse, dense = _pair(lambda: [Dense(3, activation="softmax")],
                          lambda: [Dense(3, activation="softmax")])
    sparse.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                   metrics=["sparse_categorical_accuracy"])
    dense.compile(optimizer="adam", loss="categorical_crossentropy",
                  metrics=["categorical_accuracy"])
    hs = sparse.fit(x, y, batch_size=20, epochs=4, shuffle=False, verbose=0)
    hd = dense.fit(x, np.eye(3)[y], batch_size=20, epochs=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(hs.history["loss"], hd.history["loss"], rtol=1e-5)
    assert hs.history["sparse_categorical_accuracy"] == hd.history["categorical_accuracy"]
    with pytest.raises(ValueError, match=r"y must have shape \(60, 3\)"):
        dense.fit(x, y, verbose=0)


def test_binary_crossentropy_with_sigmoid_output(rng):
    x, labels = _blobs(rng, classes=2)
    logit_model, prob_model = _pair(lambda: [Dense(1)], lambda: [Dense(1, activation="sigmoid")])
    logit_model.compile(optimizer=optimizers.SGD(0.1),
                        loss=losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    prob_model.compile(optimizer=optimizers.SGD(0.1), loss="binary_crossentropy",
                       metrics=["binary_accuracy"])
    ha = logit_model.fit(x, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
    hb = prob_model.fit(x, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    # accuracy thresholds logits at 0 and probabilities at 0.5: the same decisions
    assert ha.history["accuracy"] == hb.history["binary_accuracy"]
    p = prob_model.predict(x)[:, 0]
    loss, acc = prob_model.evaluate(x, labels)
    assert loss == pytest.approx(np.mean(-(labels * np.log(p) + (1 - labels) * np.log(1 - p))),
                                 rel=1e-4)
    assert acc == pytest.approx(np.mean((p > 0.5) == labels))
    assert acc > 0.9


def test_sparse_labels_refuse_metrics_that_need_shaped_targets():
    m = Sequential([Dense(3, input_shape=(4,), activation="softmax")])
    with pytest.raises(ValueError, match="metric 'mae' .* with integer labels use 'accuracy'"):
        m.compile(loss="sparse_categorical_crossentropy", metrics=["mae"])


def test_deferred_model_checks_its_output_at_fit(rng):
    x, y = _blobs(rng)
    m = Sequential([Dense(3)])  # no input shape: built by fit
    m.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="ends in 'linear': it needs 'softmax'"):
        m.fit(x, y, verbose=0)


def test_save_and_load_keep_from_logits(tmp_path, rng):
    x, y = _blobs(rng)
    utils.set_random_seed(3)
    m = Sequential([Dense(3, input_shape=(4,))])
    m.compile(loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    m.save(tmp_path / "m.fastnn")
    loaded = load_model(tmp_path / "m.fastnn")
    assert loaded.loss.from_logits
    assert loaded.evaluate(x, y) == pytest.approx(m.evaluate(x, y), rel=1e-6)


def test_to_categorical():
    np.testing.assert_array_equal(utils.to_categorical([2, 0, 1]), np.eye(3)[[2, 0, 1]])
    out = utils.to_categorical(np.array([[1], [3]]), num_classes=5)
    assert out.shape == (2, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out.argmax(1), [1, 3])
    with pytest.raises(ValueError, match="out of range for num_classes=3"):
        utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="non-negative integer"):
        utils.to_categorical([0.5, 1])
