"""sample_weight and class_weight, against float64 references: Keras' reduction
"sum_over_batch_size" (the batch loss is sum_i w_i loss_i / batch rows, the gradient
likewise), weights gathered with their rows through shuffled epochs, validation, several
outputs, class_weight as sample weights from the targets' classes, and errors."""
import numpy as np
import pytest

import fastnn
from fastnn import losses, metrics, optimizers
from fastnn.layers import Dense

F64 = np.float64


def f32(a):
    return np.asarray(a, np.float32).astype(F64)


def _linear(rng, k, units, act=None):
    model = fastnn.Sequential([Dense(units, input_shape=(k,), activation=act)])
    model.set_weights([rng.standard_normal((k, units)), 0.3 * rng.standard_normal(units)])
    return model


def _mse_rows(p, t):
    return np.mean((p - t) ** 2, axis=1)


def test_train_on_batch_gradient_is_the_weighted_mean(kernels, rng):
    x, y = rng.standard_normal((13, 4)), rng.standard_normal((13, 3))
    w = rng.uniform(0, 3, 13)
    w[2] = 0.0
    model = _linear(rng, 4, 3)
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse")
    w0, b0 = [a.astype(F64) for a in model.get_weights()]
    p = f32(x) @ w0 + b0
    got = model.train_on_batch(x, y, sample_weight=w)
    assert got == pytest.approx(np.sum(f32(w) * _mse_rows(p, f32(y))) / 13, rel=1e-5)
    g = f32(w)[:, None] * 2 * (p - f32(y)) / (3 * 13)  # divided by rows, not by sum(w)
    w1, b1 = model.get_weights()
    np.testing.assert_allclose((w0 - w1) / 0.5, f32(x).T @ g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((b0 - b1) / 0.5, g.sum(axis=0), rtol=1e-4, atol=1e-6)


def test_weighted_cross_entropy_gradient(rng):
    x, labels = rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    w = rng.uniform(0, 2, 9)
    model = _linear(rng, 4, 3, "softmax")
    model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    w0, b0 = [a.astype(F64) for a in model.get_weights()]
    z = f32(x) @ w0 + b0
    e = np.exp(z - z.max(axis=1, keepdims=True))
    sm = e / e.sum(axis=1, keepdims=True)
    rows = -np.log(sm[np.arange(9), labels])
    got = model.train_on_batch(x, labels, sample_weight=w)
    assert got == pytest.approx(np.sum(f32(w) * rows) / 9, rel=1e-5)
    g = f32(w)[:, None] * (sm - np.eye(3)[labels]) / 9
    np.testing.assert_allclose(w0 - model.get_weights()[0], f32(x).T @ g, rtol=1e-4, atol=1e-6)


def test_fit_weights_follow_their_rows_through_shuffles(kernels, rng):
    """At learning rate 0 an epoch's loss does not depend on the order of the rows, but on
    each weight meeting its own row: a shuffled fit must give the weighted mean."""
    x, y = rng.standard_normal((101, 5)), rng.standard_normal((101, 2))
    y[::3] += 1e3  # poisoned rows, weight 0: any misplaced weight shows
    w = rng.uniform(0.5, 2, 101)
    w[::3] = 0.0
    model = _linear(rng, 5, 2)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse",
                  metrics=["mse", metrics.RootMeanSquaredError()])
    history = model.fit(x, y, batch_size=8, epochs=3, sample_weight=w, verbose=0)
    p = model.predict(x).astype(F64)
    rows = _mse_rows(p, f32(y))
    np.testing.assert_allclose(history.history["loss"], [np.sum(f32(w) * rows) / 101] * 3,
                               rtol=1e-5)
    # compiled metrics are not weighted (Keras: only weighted_metrics are)
    np.testing.assert_allclose(history.history["mse"], [rows.mean()] * 3, rtol=1e-5)
    np.testing.assert_allclose(history.history["root_mean_squared_error"],
                               [np.sqrt(rows.mean())] * 3, rtol=1e-5)
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True)
    assert logs["loss"] == pytest.approx(np.sum(f32(w) * rows) / 101, rel=1e-5)
    assert logs["mse"] == pytest.approx(rows.mean(), rel=1e-5)
    assert model.evaluate(x, y) == pytest.approx([rows.mean()] * 2 + [np.sqrt(rows.mean())],
                                                 rel=1e-5)
    assert model.test_on_batch(x, y, sample_weight=w)[0] == pytest.approx(logs["loss"],
                                                                           rel=1e-6)


def test_weighted_training_matches_a_float64_replay(rng):
    """SGD with sample weights, no shuffle, over several epochs and batches."""
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 1))
    sw = rng.uniform(0, 2, 40)
    model = _linear(rng, 3, 1)
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    w, b = [a.astype(F64) for a in model.get_weights()]
    history = model.fit(x, y, batch_size=12, epochs=3, shuffle=False, sample_weight=sw,
                        verbose=0)
    x32, y32, sw32 = f32(x), f32(y), f32(sw)
    for epoch in range(3):
        total = 0.0
        for s in range(0, 40, 12):
            xb, yb, wb = x32[s:s + 12], y32[s:s + 12], sw32[s:s + 12]
            p = xb @ w + b
            total += np.sum(wb * _mse_rows(p, yb))
            g = wb[:, None] * 2 * (p - yb) / len(xb)
            w, b = w - 0.1 * xb.T @ g, b - 0.1 * g.sum(axis=0)
        assert history.history["loss"][epoch] == pytest.approx(total / 40, rel=1e-5)
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-4, atol=1e-6)


def test_validation_split_and_validation_data_carry_weights(rng):
    x, y = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    w = rng.uniform(0, 2, 50)
    model = _linear(rng, 3, 2)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mae")
    rows = np.mean(np.abs(model.predict(x).astype(F64) - f32(y)), axis=1)
    h = model.fit(x, y, epochs=1, sample_weight=w, validation_split=0.2, verbose=0)
    assert h.history["loss"][0] == pytest.approx(np.sum(f32(w[:40]) * rows[:40]) / 40, rel=1e-5)
    assert h.history["val_loss"][0] == pytest.approx(np.sum(f32(w[40:]) * rows[40:]) / 10,
                                                     rel=1e-5)
    h = model.fit(x, y, epochs=1, validation_data=(x[:20], y[:20], w[:20]), verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(np.sum(f32(w[:20]) * rows[:20]) / 20,
                                                     rel=1e-5)
    h = model.fit(x, y, epochs=1, validation_data=(x[:20], y[:20]), verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(np.mean(rows[:20]), rel=1e-5)


def _two_outputs(rng):
    inp = fastnn.Input(shape=(3,))
    model = fastnn.Model(inp, [Dense(2, name="a")(inp), Dense(1, name="b")(inp)])
    model.compile(optimizer=optimizers.SGD(0.0), loss=["mse", "mae"], loss_weights=[1.0, 0.5])
    return model


def test_several_outputs(rng):
    model = _two_outputs(rng)
    x = rng.standard_normal((20, 3))
    ya, yb = rng.standard_normal((20, 2)), rng.standard_normal((20, 1))
    wa, wb = rng.uniform(0, 2, 20), rng.uniform(0, 2, 20)
    pa, pb = [p.astype(F64) for p in model.predict(x)]
    la, lb = _mse_rows(pa, f32(ya)), np.abs(pb - f32(yb))[:, 0]

    def want(w1, w2):
        a, b = np.sum(f32(w1) * la) / 20, np.sum(f32(w2) * lb) / 20
        return {"loss": a + 0.5 * b, "a_loss": a, "b_loss": b}

    for sw, (w1, w2) in [([wa, wb], (wa, wb)), ({"a": wa, "b": wb}, (wa, wb)),
                         (wa, (wa, wa)), ({"b": wb}, (np.ones(20), wb)),
                         ([None, wb], (np.ones(20), wb))]:
        logs = model.evaluate(x, [ya, yb], sample_weight=sw, return_dict=True)
        for k, v in want(w1, w2).items():
            assert logs[k] == pytest.approx(v, rel=1e-5), (k, sw)


@pytest.mark.parametrize("targets", ["labels", "column", "onehot", "binary"])
def test_class_weight_is_sample_weight_by_class(targets, rng):
    """class_weight gives the same training as the sample weights of each row's class."""
    x = rng.standard_normal((60, 4))
    labels = rng.integers(0, 3 if targets != "binary" else 2, 60)
    cw = {0: 0.5, 1: 2.0, 2: 1.5} if targets != "binary" else {0: 3.0, 1: 0.25}
    if targets == "binary":
        units, act, loss, y = 1, "sigmoid", "binary_crossentropy", labels.astype(float)
    elif targets == "onehot":
        units, act, loss, y = 3, "softmax", "categorical_crossentropy", np.eye(3)[labels]
    else:
        units, act, loss = 3, "softmax", "sparse_categorical_crossentropy"
        y = labels if targets == "labels" else labels[:, None]
    runs = []
    for kwargs in ({"class_weight": cw}, {"sample_weight": np.array([cw[c] for c in labels])}):
        fastnn.utils.set_random_seed(5)
        model = fastnn.Sequential([Dense(units, input_shape=(4,), activation=act)])
        model.compile(optimizer=optimizers.SGD(0.2), loss=loss)
        h = model.fit(x, y, batch_size=16, epochs=3, verbose=0, **kwargs)
        runs.append((h.history["loss"], model.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)
    # classes missing from the dict weigh 1, as Keras
    model = fastnn.Sequential([Dense(units, input_shape=(4,), activation=act)])
    model.compile(optimizer=optimizers.SGD(0.0), loss=loss)
    assert model.train_on_batch(x, y, class_weight={}) == pytest.approx(
        model.train_on_batch(x, y), rel=1e-6)


def test_reductions_over_a_fit(rng):
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((30, 1))
    w = rng.uniform(0, 2, 30)
    for reduction in ("sum", "mean_with_sample_weight"):
        model = _linear(rng, 2, 1)
        model.compile(optimizer=optimizers.SGD(0.0),
                      loss=losses.MeanSquaredError(reduction=reduction))
        rows = _mse_rows(model.predict(x).astype(F64), f32(y))
        h = model.fit(x, y, batch_size=30, sample_weight=w, epochs=1, verbose=0)
        want = np.sum(f32(w) * rows) / (1.0 if reduction == "sum" else np.sum(f32(w)))
        assert h.history["loss"][0] == pytest.approx(want, rel=1e-5)


def test_all_zero_weights_change_nothing(rng):
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    model = _linear(rng, 3, 2)
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse")
    before = model.get_weights()
    assert model.train_on_batch(x, y, sample_weight=np.zeros(8)) == 0.0
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"sample_weight": np.ones(7)}, ValueError, r"sample_weight for y must have shape \(8,\)"),
    ({"sample_weight": np.ones((8, 2))}, ValueError, r"got shape \(8, 2\)"),
    ({"sample_weight": -np.ones(8)}, ValueError, r"finite and non-negative"),
    ({"sample_weight": np.full(8, np.nan)}, ValueError, r"finite and non-negative"),
    ({"sample_weight": np.array(["a"] * 8)}, TypeError, r"must hold real numbers"),
    ({"class_weight": {0: 1.0}, "sample_weight": np.ones(8)}, ValueError,
     r"cannot `class_weight` and `sample_weight`"),
    ({"class_weight": [1.0, 2.0]}, ValueError, r"must be a dict"),
    ({"class_weight": {"a": 1.0}}, ValueError, r"invalid key: 'a'"),
    ({"class_weight": {0.5: 1.0}}, ValueError, r"invalid key: 0.5"),
    ({"class_weight": {0: -1.0}}, ValueError, r"class_weight\[0\]=-1.0"),
])
def test_bad_weights_raise(kwargs, error, match, rng):
    model = _linear(rng, 3, 2)
    model.compile(loss="mse")
    with pytest.raises(error, match=match):
        model.fit(np.zeros((8, 3)), np.zeros((8, 2)), verbose=0, **kwargs)


def test_bad_weights_for_several_outputs_raise(rng):
    model = _two_outputs(rng)
    x, ys = np.zeros((6, 3)), [np.zeros((6, 2)), np.zeros((6, 1))]
    with pytest.raises(ValueError, match=r"one `sample_weight` array per output: the model "
                                         r"has 2 outputs"):
        model.fit(x, ys, sample_weight=[np.ones(6)] * 3, verbose=0)
    with pytest.raises(ValueError, match=r"names unknown outputs \['c'\]"):
        model.evaluate(x, ys, sample_weight={"c": np.ones(6)})
    with pytest.raises(ValueError, match=r"only supported for Models with a single output"):
        model.fit(x, ys, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight for y\[b\] must have shape \(6,\)"):
        model.fit(x, ys, sample_weight={"b": np.ones(5)}, verbose=0)


def test_batches_with_weights_arguments_raise():
    model = fastnn.Sequential([Dense(1, input_shape=(2,))])
    model.compile(loss="mse")
    batches = ((np.zeros((4, 2)), np.zeros((4, 1))) for _ in range(2))
    with pytest.raises(ValueError, match=r"when x is batches, give batches of \(x, y, "
                                         r"sample_weight\)"):
        model.fit(batches, sample_weight=np.ones(4), verbose=0)


def test_weighted_metrics_use_the_weights(rng):
    """Keras' compile(weighted_metrics=...): metrics that count each sample by its weight,
    logged beside the unweighted ones ("weighted_" before a name both use). compile() takes
    no weighted_metrics argument yet: the model's attribute stands in for it here."""
    x, y = rng.standard_normal((40, 3)), rng.standard_normal((40, 2))
    w = rng.uniform(0, 2, 40)
    model = _linear(rng, 3, 2)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", metrics=["mae"])
    model._weighted_metrics_arg = ["mae", metrics.R2Score()]
    model._compiled_for = None
    rows = np.mean(np.abs(model.predict(x).astype(F64) - f32(y)), axis=1)
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True)
    assert list(logs) == ["loss", "mae", "weighted_mae", "r2_score"]
    assert logs["mae"] == pytest.approx(np.mean(rows), rel=1e-5)
    assert logs["weighted_mae"] == pytest.approx(np.sum(f32(w) * rows) / np.sum(f32(w)),
                                                 rel=1e-5)
    p, wc = model.predict(x).astype(F64), f32(w)[:, None]
    mean = np.sum(wc * f32(y), axis=0) / np.sum(f32(w))
    r2 = 1 - np.sum(wc * (f32(y) - p) ** 2, axis=0) / np.sum(wc * (f32(y) - mean) ** 2, axis=0)
    assert logs["r2_score"] == pytest.approx(np.mean(r2), rel=1e-5)
