"""Lambda: a function of fastnn layers and tensor operations, traced into the graph, with
a clear error for anything the engine cannot run."""
import numpy as np
import pytest

from fastnn import Input, Model, utils
from fastnn.layers import Dense, Lambda, ReLU


def test_lambda_of_layers_matches_numpy(rng):
    utils.set_random_seed(0)
    dense = Dense(3, name="inner")
    a = Input(shape=(4,))
    y = Lambda(lambda t, k=None: ReLU()(dense(t) * dense(t)), arguments={})(a)
    model = Model(a, y)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    k, b = [w.astype(np.float64) for w in dense.get_weights()]
    want = np.maximum((x @ k + b) ** 2, 0)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-5, atol=1e-6)
    assert "inner" in [layer.name for layer in model.layers]  # the traced layers join


def test_lambda_with_two_inputs_and_arguments(rng):
    a, b = Input(shape=(3,)), Input(shape=(3,))
    y = Lambda(lambda ts, flip=False: ts[1] - ts[0] if flip else ts[0] - ts[1],
               arguments={"flip": True})([a, b])
    model = Model([a, b], y)
    xa, xb = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    np.testing.assert_allclose(model.predict([xa, xb]), xb - xa, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("function", [lambda t: np.tanh(t), lambda t: t * 2.0,
                                      lambda t: 3, lambda t: Input(shape=(4,))])
def test_lambda_the_engine_cannot_run_says_so(function):
    a = Input(shape=(4,))
    with pytest.raises(ValueError, match=r"Lambda '.*' cannot be compiled: .*fastnn layers "
                                         r"and tensor operations"):
        Lambda(function)(a)


def test_lambda_arguments_are_checked():
    with pytest.raises(TypeError, match="Lambda needs a callable. Received: function=3"):
        Lambda(3)
    with pytest.raises(ValueError, match="mask"):
        Lambda(lambda t: t, mask=lambda t: t)
    with pytest.raises(ValueError, match="runs inside a model"):
        Lambda(lambda t: t)(np.ones((2, 4)))
