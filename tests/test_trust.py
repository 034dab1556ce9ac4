"""No silent corruption at the boundary: non-finite results stop training with a warning
naming where, hyper-parameters and weights out of float32's range are refused, arguments
are bounded with messages naming them, and a call that raises leaves the model as it was."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import Sequential, optimizers, utils
from fastnn.layers import Dense


def _model(seed=0, lr=0.01):
    utils.set_random_seed(seed)
    model = Sequential([Dense(4, input_shape=(3,), activation="relu"), Dense(1)])
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), loss="mse")
    return model


def _data(rng, n=64):
    return rng.standard_normal((n, 3)).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def test_an_update_to_inf_is_caught_at_the_end_of_the_call(rng):
    """A finite loss followed by an update that overflows: the last step of the fit is
    checked, so the fit warns instead of returning Inf weights silently."""
    model = _model(lr=3e38)
    x, y = _data(rng)
    with pytest.warns(RuntimeWarning, match=r"epoch 1, step \d+: the loss or the weights "
                                            r"became NaN or Inf"):
        model.fit(x[:8], y[:8] * 1e3, epochs=1, batch_size=8, verbose=0)


def test_divergence_names_epoch_and_step_and_stops(rng):
    model = _model(lr=1e6)
    x, y = _data(rng)
    with pytest.warns(RuntimeWarning, match=r"epoch \d+, step \d+"):
        history = model.fit(x, y * 1e6, epochs=50, batch_size=8, verbose=0)
    assert len(history.epoch) < 50


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 1e39])
def test_set_weights_refuses_values_float32_cannot_hold(value):
    model = _model()
    before = model.get_weights()
    bad = [w.astype(np.float64) for w in before]
    bad[2][0, 0] = value
    with pytest.raises(ValueError, match="weight 2 must be finite and within float32's range"):
        model.set_weights(bad)
    with pytest.raises(ValueError, match="within float32's range"):
        model.layers[1].set_weights([bad[2], bad[3]])
    for w, v in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, v)


@pytest.mark.parametrize("value", [np.inf, np.nan, 1e39, -1.0])
def test_hyper_parameters_must_be_finite(value):
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=value)
    opt = optimizers.Adam()
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = value
    assert opt.learning_rate == pytest.approx(0.001)


def test_fit_arguments_are_bounded_and_named(rng):
    model = _model()
    x, y = _data(rng)
    before = model.get_weights()
    for kwargs, match in ((dict(epochs=2**31), r"epochs must be an integer in \[0, "),
                          (dict(epochs=-1), r"epochs must be an integer"),
                          (dict(initial_epoch=1.5), r"initial_epoch must be an integer"),
                          (dict(batch_size=0), r"batch_size must be a positive integer"),
                          (dict(validation_split=1.5), r"validation_split must be in"),
                          (dict(verbose=3), r"verbose must be")):
        with pytest.raises(ValueError, match=match):
            model.fit(x, y, **kwargs)
    with pytest.raises(TypeError, match="callbacks must be"):
        model.fit(x, y, callbacks=[1], verbose=0)
    for w, v in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, v)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("n", [0, -1, 2**32 + 1, 10**6, 1.5, True])
def test_set_num_threads_is_bounded(n):
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, \d+\]"):
        fastnn.set_num_threads(n)


@pytest.mark.parametrize("length", [0, 10, 10**9, 65.5])
def test_summary_line_length_is_bounded(length):
    with pytest.raises(ValueError, match=r"line_length must be an integer in \[20, 1000\]"):
        _model().summary(line_length=length)


def test_failed_compile_and_add_leave_the_model_as_it_was(rng):
    model = _model()
    x, y = _data(rng)
    model.fit(x, y, epochs=1, verbose=0)
    opt, state = model.optimizer, model._opt_state
    with pytest.raises(ValueError):
        model.compile(optimizer="adam", loss="no_such_loss")
    assert model.optimizer is opt and model._opt_state is state and model.loss.name == \
        "mean_squared_error"
    model.fit(x, y, epochs=1, verbose=0)  # still trains with the old settings
    seq = Sequential([Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError):
        seq.add(fastnn.layers.Add())  # a merge cannot follow in a stack
    assert len(seq.layers) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seq.predict(x)
