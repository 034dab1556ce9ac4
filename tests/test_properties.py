"""Property-based tests (hypothesis, a test extra) of the bad-input policy and of the
engine against NumPy: any array a user may pass either gives the float64 reference's
answer or raises ValueError/TypeError naming the problem; never another exception."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from fastnn import Input, Model, Sequential, utils  # noqa: E402
from fastnn.layers import Add, Concatenate, Dense  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _mlp(n_in=4):
    utils.set_random_seed(0)
    model = Sequential([Dense(5, input_shape=(n_in,), activation="tanh"), Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


MODEL = _mlp()


def _reference(model, x):
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    k1, b1, k2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    return np.tanh(h @ k1 + b1) @ k2 + b2


dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8,
                          np.bool_, ">f4", np.complex64, object])


@SETTINGS
@given(hnp.arrays(dtype=dtypes, shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
def test_predict_answers_or_refuses(x):
    try:
        out = MODEL.predict(x)
    except (ValueError, TypeError):
        ok_shape = x.ndim == 2 and x.shape[1] == 4 and x.shape[0] > 0
        real = np.dtype(x.dtype).kind in "fiub"
        finite = not real or np.all(np.isfinite(x.astype(np.float64)))
        # refusing a well-formed, finite, real array would be a bug
        assert not (ok_shape and real and finite and
                    np.all(np.abs(x.astype(np.float64)) < 3e38))
        return
    assert x.ndim == 2 and x.shape[1] == 4
    want = _reference(MODEL, x.astype(np.float32))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 70), st.integers(1, 5))
def test_merges_of_any_width_match_numpy(w1, w2, n, seed):
    utils.set_random_seed(seed)
    a, b = Input(shape=(w1,)), Input(shape=(w2,))
    h = Dense(w1, activation="relu")(b)
    y = Dense(3)(Concatenate()([Add()([a, h]), b]))
    model = Model([a, b], y)
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal((n, w1)).astype(np.float32)
    xb = rng.standard_normal((n, w2)).astype(np.float32)
    k1, b1, k2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    hh = np.maximum(xb @ k1 + b1, 0)
    want = np.concatenate([xa + hh, xb], axis=1) @ k2 + b2
    np.testing.assert_allclose(model.predict([xa, xb]), want, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=8),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=64)))
def test_fit_targets_answer_or_refuse(y):
    model = _mlp()
    x = np.ones((len(y), 4), np.float32)
    before = model.get_weights()
    try:
        model.fit(x, y, epochs=1, verbose=0)
    except (ValueError, TypeError):
        for w, v in zip(model.get_weights(), before):  # a refused call changes nothing
            np.testing.assert_array_equal(w, v)
        return
    assert np.all(np.isfinite(y)) and (y.ndim == 1 or y.shape[1] == 2)
