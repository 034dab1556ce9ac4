"""Bad input gives a ValueError/TypeError (RuntimeError for a call out of order)
whose message names the argument and echoes the offending shape or value, never
a crash or a silent wrong answer. Accepted-and-converted inputs give the same
results as their float32 C-contiguous copies."""
import re

import numpy as np
import pytest

from fastnn import Model, Sequential, activations, losses, metrics, optimizers, utils
from fastnn.layers import Activation, Dense, Input, ReLU


@pytest.fixture
def model(article_model):
    m = article_model(seed=0)
    m.compile(optimizer="rmsprop", loss="mse")
    return m


@pytest.fixture
def warm_model(model, housing):
    """A model whose predict() already ran once (the cached fast path is live)."""
    model.predict(housing.x_test[:2])
    return model


@pytest.fixture
def data(housing):
    return housing.x_train[:40].copy(), housing.y_train[:40].copy()


def _call(model, method, x, y=None):
    if method == "fit":
        return model.fit(x, y, epochs=1, verbose=0)
    if method == "evaluate":
        return model.evaluate(x, y)
    return model.predict(x)


METHODS = ["fit", "evaluate", "predict"]


# ---- x: shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_wrong_feature_count(model, data, method):
    x, y = data
    with pytest.raises(ValueError, match=r"x must have 13 features per row \(the model's input "
                                         r"shape is \(None, 13\)\), got shape \(40, 12\)"):
        _call(model, method, x[:, :12], y)


@pytest.mark.parametrize("method", METHODS)
def test_wrong_feature_count_after_warm_predict(warm_model, data, method):
    x, y = data
    with pytest.raises(ValueError, match=r"13 features per row.*got shape \(40, 14\)"):
        _call(warm_model, method, np.hstack([x, x[:, :1]]), y)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(13,), (40,), (40, 13, 1), (2, 20, 13)])
def test_x_must_be_2d(warm_model, data, method, shape):
    _, y = data
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=r"x must be 2-D \(samples, features\), got shape "
                                         + re.escape(str(shape))):
        _call(warm_model, method, x, y)


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_x_y_length_mismatch(model, data, method):
    x, y = data
    with pytest.raises(ValueError, match=r"x and y must have the same number of rows: x has 40, "
                                         r"y has shape \(39,\)"):
        _call(model, method, x, y[:39])


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_y_wrong_width(model, data, method):
    x, y = data
    with pytest.raises(ValueError, match=r"y must have shape \(40, 1\) or \(40,\) to match the "
                                         r"model's output \(None, 1\), got shape \(40, 2\)"):
        _call(model, method, x, np.stack([y, y], axis=1))


def test_y_wrong_width_multi_output(data):
    x, _ = data
    utils.set_random_seed(0)
    m = Sequential([Dense(3, input_shape=(13,))])
    m.compile(loss="mse")
    with pytest.raises(ValueError, match=r"y must have shape \(40, 3\) to match the model's "
                                         r"output \(None, 3\), got shape \(40,\)"):
        m.fit(x, np.zeros(40), verbose=0)


# ---- x, y: values -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("method", METHODS)
def test_non_finite_x(model, data, method, bad):
    x, y = data
    x[3, 5] = bad
    with pytest.raises(ValueError, match=r"x contains NaN or Inf \(shape \(40, 13\)\)"):
        _call(model, method, x, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_non_finite_y(model, data, method, bad):
    x, y = data
    y[7] = bad
    with pytest.raises(ValueError, match=r"y contains NaN or Inf \(shape \(40, 1\)\)"):
        _call(model, method, x, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_x_after_warm_predict(warm_model, data, bad):
    """The cached fast path must check as the converting path does (it once returned
    silently, relu even mapping NaN to 0)."""
    x, _ = data
    x[3, 5] = bad
    with pytest.raises(ValueError, match=r"x contains NaN or Inf"):
        warm_model.predict(x)


@pytest.mark.parametrize("method", METHODS)
def test_empty_x(model, method):
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 13\)\)"):
        _call(model, method, np.zeros((0, 13), np.float32), np.zeros(0, np.float32))


def test_empty_x_after_warm_predict(warm_model):
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 13\)\)"):
        warm_model.predict(np.zeros((0, 13), np.float32))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("x", [np.full((4, 13), "1.0"), np.full((4, 13), None, dtype=object),
                               np.ones((4, 13), np.complex64), [["a"] * 13] * 4],
                         ids=["str", "object", "complex", "list-of-str"])
def test_non_numeric_x(warm_model, method, x):
    with pytest.raises(TypeError, match=r"x must hold real numbers, got dtype .* with shape \(4, 13\)"):
        _call(warm_model, method, x, np.zeros(4, np.float32))


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("y", [np.full(40, "1"), np.full(40, None, dtype=object)],
                         ids=["str", "object"])
def test_non_numeric_y(model, data, method, y):
    x, _ = data
    with pytest.raises(TypeError, match=r"y must hold real numbers, got dtype .* with shape \(40,\)"):
        _call(model, method, x, y)


def test_none_x_and_y(model, data):
    x, y = data
    with pytest.raises(ValueError, match="x is required, got None"):
        model.predict(None)
    with pytest.raises(ValueError, match="y is required, got None"):
        model.fit(x, None, verbose=0)


def test_symbolic_tensor_is_not_data(model):
    with pytest.raises(TypeError, match=r"x must be data \(a NumPy array\), got the symbolic tensor"):
        model.predict(Input(shape=(13,)))


# ---- accepted and converted ------------------------------------------------------------------------

@pytest.mark.parametrize("convert", [
    lambda x: np.asfortranarray(x),
    lambda x: np.repeat(x, 2, axis=1)[:, ::2],   # strided view
    lambda x: x.astype(np.float64),
    lambda x: x.astype(np.float16),
    lambda x: np.round(x * 2).astype(np.int64),
    lambda x: np.round(x * 2).astype(np.int32),
    lambda x: x > 0,
    lambda x: x.tolist(),
], ids=["fortran", "strided", "float64", "float16", "int64", "int32", "bool", "list"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_converted_x_gives_same_predictions(model, data, convert, warm):
    x, _ = data
    given = convert(x)
    as_f32 = np.ascontiguousarray(np.asarray(given), dtype=np.float32)
    if warm:
        model.predict(as_f32[:1])
    np.testing.assert_array_equal(model.predict(given), model.predict(as_f32))


@pytest.mark.parametrize("warm", [
    False,
    True,
], ids=["cold", "warm"])
def test_byteswapped_float32_x_gives_same_predictions(model, data, warm):
    x, _ = data
    # values with short mantissas: read with the wrong byte order they are finite garbage
    # (not NaN/Inf, which the fast path would reject and so fall back to converting)
    x = np.round(x * 8) / 8
    swapped = x.astype(x.dtype.newbyteorder())  # same values, non-native byte order
    expected = model.predict(x) if warm else None
    got = model.predict(swapped)
    np.testing.assert_array_equal(got, expected if warm else model.predict(x))


def test_byteswapped_arrays_fit_and_evaluate_like_native(article_model, data):
    x, y = data
    a, b = article_model(seed=1), article_model(seed=1)
    for m in (a, b):
        m.compile(loss="mse")
    utils.set_random_seed(5)
    a.fit(x.astype(">f4"), y.astype(">f8"), epochs=2, verbose=0)
    utils.set_random_seed(5)
    b.fit(x, y, epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.evaluate(x.astype(">f4"), y) == b.evaluate(x, y)


def test_converted_inputs_train_identically(article_model, data):
    x, y = data
    a, b = article_model(seed=1), article_model(seed=1)
    for m in (a, b):
        m.compile(loss="mse")
    utils.set_random_seed(5)
    a.fit(x.astype(np.float64)[:, ::1].T.copy().T, y.astype(np.float64).tolist(), epochs=2,
          verbose=0)
    utils.set_random_seed(5)
    b.fit(x, y, epochs=2, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_input_arrays_are_not_modified(model, data):
    x, y = data
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    x_copy, y_copy = x64.copy(), y64.copy()
    model.fit(x64, y64, epochs=2, verbose=0)
    model.evaluate(x64, y64)
    model.predict(x64)
    np.testing.assert_array_equal(x64, x_copy)
    np.testing.assert_array_equal(y64, y_copy)


# ---- arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "32", True])
@pytest.mark.parametrize("method", METHODS)
def test_bad_batch_size(model, data, method, batch_size):
    x, y = data
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer. Received: "
                                         rf"batch_size={batch_size!r}"):
        if method == "fit":
            model.fit(x, y, batch_size=batch_size, verbose=0)
        elif method == "evaluate":
            model.evaluate(x, y, batch_size=batch_size)
        else:
            model.predict(x, batch_size=batch_size)


@pytest.mark.parametrize("epochs", [-1, 1.5, "3", None])
def test_bad_epochs(model, data, epochs):
    x, y = data
    with pytest.raises(ValueError, match=rf"epochs must be an integer in \[0, 2147483647\). "
                                         rf"Received: epochs={re.escape(repr(epochs))}"):
        model.fit(x, y, epochs=epochs, verbose=0)


@pytest.mark.parametrize("verbose", [3, -1, "yes"])
def test_bad_verbose(model, data, verbose):
    x, y = data
    with pytest.raises(ValueError, match=r"verbose must be 0, 1, 2 or 'auto'"):
        model.fit(x, y, verbose=verbose)


@pytest.mark.parametrize("units", [0, -3, 2.5, "10", None, True])
def test_bad_units(units):
    with pytest.raises(ValueError, match=rf"Received: units={units!r}"):
        Dense(units)


def test_units_message_names_the_argument():
    with pytest.raises(ValueError, match=r"invalid value for `units`, expected a positive integer. "
                                         r"Received: units=-3"):
        Dense(-3)


@pytest.mark.parametrize("input_shape", [(0,), (-1,), (), ("13",)])
def test_bad_input_shape(input_shape):
    with pytest.raises(ValueError, match=r"input_shape must be a non-empty tuple of positive ints"):
        Dense(3, input_shape=input_shape)


def test_dense_on_3d_input_is_rejected():
    with pytest.raises(ValueError, match=r"takes 2-D input \(batch, features\), got shape \(None, 4, 5\)"):
        Sequential([Dense(3, input_shape=(4, 5))])


@pytest.mark.parametrize("method", METHODS[:2])
def test_fit_or_evaluate_before_compile(article_model, data, method):
    x, y = data
    with pytest.raises(RuntimeError, match=rf"You must call compile\(\) on the model before {method}\(\)"):
        _call(article_model(), method, x, y)


def test_predict_before_compile_is_fine(article_model, data):
    assert article_model().predict(data[0]).shape == (40, 1)


def test_compile_needs_a_loss(article_model):
    with pytest.raises(ValueError, match=r"compile\(\) needs a loss"):
        article_model().compile(optimizer="sgd")


@pytest.mark.parametrize("kwargs,match", [
    (dict(optimizer="adamax2", loss="mse"),
     r"Unknown optimizer: 'adamax2'. Valid names: \[.*'adam'.*'rmsprop', 'sgd'\]"),
    (dict(optimizer="rmsprop", loss="hubber"), r"Unknown loss: 'hubber'. Valid names: \[.*'mse'"),
    (dict(optimizer="rmsprop", loss="mse", metrics=["r2"]),
     r"Unknown metric: 'r2'. Valid names: \[.*'accuracy'.*'mae'"),
    (dict(optimizer="rmsprop", loss="mse", metrics="aucc"), r"Unknown metric: 'aucc'"),
])
def test_unknown_names_in_compile(article_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        article_model().compile(**kwargs)


@pytest.mark.parametrize("name", ["crelu", "hard_silu", "RELU7", ""])
def test_unknown_activation(name):
    with pytest.raises(ValueError, match=rf"Unknown activation: '{name.lower()}'. Valid names: "
                                         r"\['elu', 'exponential', 'gelu', 'hard_sigmoid', "):
        Dense(3, activation=name)
    with pytest.raises(ValueError, match=r"Unknown activation"):
        Activation(name)


def test_known_names_are_case_insensitive():
    assert activations.get("ReLU") == "relu" and activations.get(None) == "linear"
    assert activations.get(activations.tanh) == "tanh"
    assert isinstance(losses.get("MSE"), losses.MeanSquaredError)
    assert metrics.get("Accuracy").name == "Accuracy"
    assert isinstance(optimizers.get("Adam"), optimizers.Adam)


@pytest.mark.parametrize("loss,needs", [("sparse_categorical_crossentropy", "softmax"),
                                        ("categorical_crossentropy", "softmax"),
                                        ("binary_crossentropy", "sigmoid")])
def test_cross_entropy_on_probabilities_needs_the_matching_output(loss, needs):
    m = Sequential([Dense(3, input_shape=(4,), activation="relu")])
    with pytest.raises(ValueError, match=rf"{loss} .*from_logits=False.*ends in "
                                         rf"'relu'.*needs '{needs}'.*from_logits=True"):
        m.compile(loss=loss)
    with pytest.raises(ValueError, match="from_logits must be True or False"):
        losses.BinaryCrossentropy(from_logits="yes")


def test_relu_options_are_rejected():
    with pytest.raises(ValueError, match=r"Received: max_value=-6.0"):
        ReLU(max_value=-6.0)


def test_summary_on_unbuilt_model():
    model = Sequential([Dense(10), Dense(1)])
    with pytest.raises(ValueError, match=r"This model has not yet been built.*summary\(\)"):
        model.summary()
    with pytest.raises(ValueError, match=r"not yet been built"):
        Sequential().summary()


@pytest.mark.parametrize("count", [0, 5, 7])
def test_set_weights_wrong_count(model, count):
    weights = (model.get_weights() * 2)[:count]
    with pytest.raises(ValueError, match=rf"expects 6 weight arrays .*got {count}"):
        model.set_weights(weights)


@pytest.mark.parametrize("split", [1.0, -0.1, 1.5, "0.2"])
def test_bad_validation_split(model, data, split):
    x, y = data
    with pytest.raises(ValueError, match=rf"validation_split must be in \[0, 1\). Received: "
                                         rf"validation_split={split!r}"):
        model.fit(x, y, validation_split=split, verbose=0)


def test_validation_split_leaving_no_rows(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"validation_split=0.99 leaves 0 of 2 rows for training"):
        model.fit(x[:2], y[:2], validation_split=0.99, verbose=0)


@pytest.fixture
def classifier():
    utils.set_random_seed(0)
    m = Sequential([Dense(8, input_shape=(4,), activation="relu"), Dense(3, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


@pytest.mark.parametrize("labels,shown", [([0, 1, 3, 2], r"\[0.0, 3.0\]"),
                                          ([0, -1, 1, 2], r"\[-1.0, 2.0\]"),
                                          ([0, 1, 1.5, 2], r"\[0.0, 2.0\]")],
                         ids=["too-big", "negative", "fractional"])
@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_sparse_labels_out_of_range(classifier, method, labels, shown):
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=rf"y must hold integer class labels in \[0, 3\), got "
                                         rf"values in {shown}"):
        _call(classifier, method, x, np.array(labels))


def test_sparse_labels_wrong_shape(classifier):
    with pytest.raises(ValueError, match=r"y must have shape \(4,\) or \(4, 1\) class labels"):
        classifier.fit(np.zeros((4, 4), np.float32), np.zeros((4, 3)), verbose=0)


def test_validation_data_is_checked(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"validation_data x must have 13 features per row"):
        model.fit(x, y, verbose=0, validation_data=(x[:, :3], y))
    with pytest.raises(ValueError, match=r"validation_data y contains NaN or Inf"):
        model.fit(x, y, verbose=0, validation_data=(x, np.full_like(y, np.nan)))


def test_model_constructor_errors():
    inp = Input(shape=(3,))
    out = Dense(2)(inp)
    with pytest.raises(TypeError, match=r"inputs must be tensors made by Input\(\)"):
        Model(out, out)
    with pytest.raises(TypeError, match=r"outputs must be tensors made by calling layers"):
        Model(inp, "out")
    with pytest.raises(ValueError, match=r"Input\(\) needs a shape"):
        Input()


def test_sequential_add_errors():
    model = Sequential()
    with pytest.raises(TypeError, match=r"Sequential.add\(\) takes a layer. Received: 3"):
        model.add(3)
    layer = Dense(2, input_shape=(3,))
    model.add(layer)
    with pytest.raises(ValueError, match=rf"Layer '{layer.name}' is already in model"):
        model.add(layer)
    with pytest.raises(TypeError, match="There are no layers in the model"):
        Sequential().pop()


def test_seed_must_be_a_non_negative_int():
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match=rf"seed must be a non-negative integer. Received: seed={bad!r}"):
            utils.set_random_seed(bad)
