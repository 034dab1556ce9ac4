"""Models: structure and summary, weights, predict/evaluate/fit against NumPy
references, seeding, callbacks, training quality, and whole-model gradient checks."""
import numpy as np
import pytest

import fastnn._blas
from fastnn import Input, Model, Sequential, _engine, losses, optimizers, utils
from fastnn.callbacks import Callback, EarlyStopping
from fastnn.layers import Activation, Dense, InputLayer, ReLU
from fastnn.models import plan

LINE = 65


def _row(name_type, shape, params):
    """A summary row of the tf.keras 2.x layout: columns end at 29, 55 and 65."""
    return f"{name_type:<29}{shape:<26}{params:<10}"


def _capture_summary(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return lines


def _dense_params(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


@pytest.fixture
def fresh_names(monkeypatch):
    """Auto-naming counters as at the start of a session."""
    monkeypatch.setattr(utils, "_name_counts", {})


def _numpy_predict(model, x, ref):
    h = np.asarray(x, np.float64)
    for layer in model.layers:
        if isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Dense):
            h = h @ layer.kernel.astype(np.float64)
            if layer.use_bias:
                h = h + layer.bias
            h = ref.ACT_FORWARD[layer.activation](h)
        elif isinstance(layer, Activation):
            h = ref.ACT_FORWARD[layer.activation](h)
        elif isinstance(layer, ReLU) and layer.get_config()["max_value"] is None:
            h = ref.ACT_FORWARD["relu"](h)  # ReLU() (not an Activation, as in Keras)
        else:
            raise AssertionError(f"no reference for {layer!r}")
    return h


# ---- structure and summary ------------------------------------------------------------------

def test_article_summary_lines(article_model):
    model = article_model()
    names = [layer.name for layer in model.layers]
    lines = _capture_summary(model)
    expected = [
        f'Model: "{model.name}"',
        "_" * LINE,
        _row("Layer (type)", "Output Shape", "Param #"),
        "=" * LINE,
        _row(f"{names[0]} (Dense)", "(None, 10)", _dense_params(13, 10)),
        "_" * LINE,
        _row(f"{names[1]} (Dense)", "(None, 10)", _dense_params(10, 10)),
        "_" * LINE,
        _row(f"{names[2]} (Dense)", "(None, 1)", _dense_params(10, 1)),
        "=" * LINE,
        "Total params: 261",
        "Trainable params: 261",
        "Non-trainable params: 0",
        "_" * LINE,
    ]
    assert lines == expected
    assert _dense_params(13, 10) + _dense_params(10, 10) + _dense_params(10, 1) == 261
    assert all(len(line) == LINE for line in lines[1:10])


def test_summary_first_model_of_a_session(fresh_names):
    model = Sequential([Dense(10, input_shape=(13,), activation="relu"),
                        Dense(10, activation="relu"), Dense(1)])
    lines = _capture_summary(model)
    assert lines[0] == 'Model: "sequential"'
    assert lines[4].startswith("dense (Dense)") and lines[6].startswith("dense_1 (Dense)")
    assert lines[8].startswith("dense_2 (Dense)")


def test_summary_prints_thousands_with_commas():
    model = Sequential([Dense(1000, input_shape=(784,)), Dense(10)])
    total = _dense_params(784, 1000) + _dense_params(1000, 10)
    lines = _capture_summary(model)
    assert lines[4] == _row(f"{model.layers[0].name} (Dense)", "(None, 1000)", 785000)
    assert f"Total params: {total:,}" in lines
    assert "Total params: 795,010" in lines
    assert "Trainable params: 795,010" in lines
    assert "Non-trainable params: 0" in lines


def test_summary_goes_to_stdout_by_default(capsys, article_model):
    article_model().summary()
    out = capsys.readouterr().out
    assert "Total params: 261" in out and "Layer (type)" in out


def test_summary_custom_line_length(article_model):
    lines = _capture_summary(article_model(), line_length=80)
    assert lines[1] == "_" * 80 and lines[3] == "=" * 80
    assert len(lines[2]) == 80


def test_auto_names(fresh_names):
    layers = [Dense(3), Dense(3), ReLU(), Dense(3), ReLU(), Activation("tanh")]
    assert [layer.name for layer in layers] == ["dense", "dense_1", "re_lu", "dense_2",
                                                "re_lu_1", "activation"]
    assert Sequential().name == "sequential"
    assert Sequential().name == "sequential_1"
    assert Dense(2, name="head").name == "head"


def test_add_equals_list_form():
    utils.set_random_seed(11)
    a = Sequential([Dense(10, input_shape=(13,), activation="relu"),
                    Dense(10, activation="relu"), Dense(1)])
    utils.set_random_seed(11)
    b = Sequential()
    b.add(Dense(10, input_shape=(13,), activation="relu"))
    b.add(Dense(10, activation="relu"))
    b.add(Dense(1))
    assert a.count_params() == b.count_params() == 261
    assert [(type(la), la.output_shape) for la in a.layers] == \
        [(type(lb), lb.output_shape) for lb in b.layers]
    assert len(a.get_weights()) == len(b.get_weights()) == 6
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_input_repr():
    inp = Input(shape=(13,))
    assert inp.shape == (None, 13)
    assert "shape=(None, 13)" in repr(inp)
    assert "float32" in repr(inp)


def test_functional_model(fresh_names):
    inp = Input(shape=(13,))
    h = Dense(10, activation="relu")(inp)
    h = Dense(10, activation="relu")(h)
    out = Dense(1)(h)
    model = Model(inp, out)
    assert model.count_params() == 261
    assert out.shape == (None, 1)
    lines = _capture_summary(model)
    input_row = lines[4]
    assert input_row == _row(f"{inp.name} (InputLayer)", "[(None, 13)]", 0)
    assert "Total params: 261" in lines
    assert isinstance(model.layers[0], InputLayer) and len(model.layers) == 4


def test_functional_and_sequential_agree(article_model, housing):
    seq = article_model(seed=4)
    inp = Input(shape=(13,))
    h = Dense(10, activation="relu")(inp)
    h = Dense(10, activation="relu")(h)
    fun = Model(inp, Dense(1)(h))
    fun.set_weights(seq.get_weights())
    np.testing.assert_array_equal(fun.predict(housing.x_test), seq.predict(housing.x_test))


def test_count_params_and_weight_shapes(article_model):
    model = article_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(13, 10), (10,), (10, 10), (10,), (10, 1), (1,)]
    assert all(w.dtype == np.float32 for w in weights)
    assert model.count_params() == sum(w.size for w in weights) == 261
    model2 = Sequential([Dense(4, input_shape=(3,), use_bias=False), Dense(2)])
    assert model2.count_params() == _dense_params(3, 4, bias=False) + _dense_params(4, 2)


def test_initial_weights_follow_glorot_uniform_and_zero_bias(article_model):
    model = article_model(seed=0)
    for kernel, bias in zip(model.get_weights()[::2], model.get_weights()[1::2]):
        limit = np.sqrt(6.0 / sum(kernel.shape))
        assert np.abs(kernel).max() <= limit
        assert np.abs(kernel).max() > 0.5 * limit  # spread over the range, not tiny
        np.testing.assert_array_equal(bias, 0.0)


def test_get_set_weights_round_trip(article_model, rng, housing, ref):
    model = article_model()
    new = [rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    # get_weights returns copies
    model.get_weights()[0][...] = 0
    np.testing.assert_array_equal(model.get_weights()[0], new[0])
    # predictions follow the new weights
    np.testing.assert_allclose(model.predict(housing.x_test),
                               ref.mlp_predict(new, ["relu", "relu", "linear"], housing.x_test),
                               rtol=1e-5, atol=1e-4)
    # float64 weights are accepted and converted
    model.set_weights([w.astype(np.float64) for w in new])
    assert all(w.dtype == np.float32 for w in model.get_weights())


def test_set_weights_shape_mismatch_leaves_model_unchanged(article_model):
    model = article_model()
    before = model.get_weights()
    bad = [w + 1 for w in before]
    bad[2] = np.zeros((10, 11), np.float32)
    with pytest.raises(ValueError, match=r"weight 2: expected shape \(10, 10\), got \(10, 11\)"):
        model.set_weights(bad)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"weight 0: expected shape \(13, 10\), got \(10, 13\)"):
        model.set_weights([before[0].T] + before[1:])


def test_set_weights_rejects_non_finite(article_model):
    model = article_model()
    w = model.get_weights()
    w[1][0] = np.nan
    with pytest.raises(ValueError, match="weight 1 must be finite"):
        model.set_weights(w)


# ---- predict / evaluate -------------------------------------------------------------------------

def test_predict_matches_numpy_forward(article_model, housing, ref, article_acts):
    model = article_model(seed=7)
    y = model.predict(housing.x_test)
    expected = ref.mlp_predict(model.get_weights(), article_acts, housing.x_test)
    assert y.shape == (102, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # the warm (cached) path gives the same numbers, and so does __call__
    np.testing.assert_array_equal(model.predict(housing.x_test), y)
    np.testing.assert_array_equal(model(housing.x_test), y)
    np.testing.assert_array_equal(model.predict(housing.x_test, batch_size=7), y)


@pytest.mark.parametrize("n", [1, 1023, 1024, 1025, 2500])
def test_predict_and_evaluate_in_chunks(rng, ref, kernels, n):
    """More rows than one engine call holds: results must not depend on chunking."""
    utils.set_random_seed(1)
    model = Sequential([Dense(8, input_shape=(5,), activation="tanh"), Dense(3)])
    model.compile(loss="mse", metrics=["mae"])
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.standard_normal((n, 3)).astype(np.float32)
    expected = _numpy_predict(model, x, ref)
    p = model.predict(x)
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-5)
    loss, mae = model.evaluate(x, y)
    assert loss == pytest.approx(ref.LOSSES["mse"](expected, y)[0], rel=1e-5)
    assert mae == pytest.approx(ref.LOSSES["mae"](expected, y)[0], rel=1e-5)


def test_evaluate_matches_numpy_mse_of_predict(article_model, housing):
    model = article_model(seed=2)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    p = model.predict(housing.x_test).astype(np.float64)[:, 0]
    loss, mae = model.evaluate(housing.x_test, housing.y_test)
    assert loss == pytest.approx(np.mean((p - housing.y_test) ** 2), rel=1e-5)
    assert mae == pytest.approx(np.mean(np.abs(p - housing.y_test)), rel=1e-5)
    logs = model.evaluate(housing.x_test, housing.y_test, return_dict=True)
    assert list(logs) == ["loss", "mae"]
    assert logs["loss"] == pytest.approx(loss)
    # a y of shape (n, 1) means the same as (n,)
    assert model.evaluate(housing.x_test, housing.y_test[:, None])[0] == pytest.approx(loss)


def test_evaluate_without_metrics_returns_a_float(article_model, housing):
    model = article_model()
    model.compile(loss="mae")
    value = model.evaluate(housing.x_test, housing.y_test)
    p = model.predict(housing.x_test)[:, 0].astype(np.float64)
    assert isinstance(value, float)
    assert value == pytest.approx(np.mean(np.abs(p - housing.y_test)), rel=1e-5)


def test_binary_accuracy_for_one_output(rng):
    utils.set_random_seed(3)
    model = Sequential([Dense(4, input_shape=(2,), activation="tanh"), Dense(1, activation="sigmoid")])
    model.compile(loss="mse", metrics=["accuracy"])
    x = rng.standard_normal((50, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    p = model.predict(x)[:, 0]
    _, acc = model.evaluate(x, y)
    assert acc == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))


# ---- fit: logs, validation, callbacks ------------------------------------------------------------

def test_fit_history_and_metrics(article_model, housing):
    x, y = housing.x_train[:100], housing.y_train[:100]
    model = article_model(seed=1)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    p0 = model.predict(x)[:, 0].astype(np.float64)
    history = model.fit(x, y, batch_size=100, epochs=3, verbose=0, shuffle=False)
    assert history is model.history
    assert set(history.history) == {"loss", "mae"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.epoch == [0, 1, 2]
    # one batch per epoch: the logs are those of the pre-update predictions (as Keras)
    assert history.history["loss"][0] == pytest.approx(np.mean((p0 - y) ** 2), rel=1e-5)
    assert history.history["mae"][0] == pytest.approx(np.mean(np.abs(p0 - y)), rel=1e-5)


@pytest.mark.parametrize("metric,key", [("mse", "mse"), ("mean_squared_error", "mean_squared_error"),
                                        ("mae", "mae"), ("mean_absolute_error", "mean_absolute_error")])
def test_metric_names_in_history(article_model, housing, metric, key):
    model = article_model()
    model.compile(loss="mse", metrics=[metric])
    history = model.fit(housing.x_train[:64], housing.y_train[:64], epochs=2, verbose=0)
    assert set(history.history) == {"loss", key}


def test_validation_split_holds_out_the_last_rows(article_model, housing):
    x, y = housing.x_train[:100], housing.y_train[:100]
    split = int(100 * (1 - 0.2))
    a = article_model(seed=9)
    a.compile(loss="mse", metrics=["mae"])
    utils.set_random_seed(123)
    hist = a.fit(x, y, batch_size=16, epochs=4, validation_split=0.2, verbose=0)
    assert set(hist.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert len(hist.history["val_loss"]) == 4
    val_loss, val_mae = a.evaluate(x[split:], y[split:])
    assert hist.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert hist.history["val_mae"][-1] == pytest.approx(val_mae, rel=1e-6)
    # training used exactly the first `split` rows
    b = article_model(seed=9)
    b.compile(loss="mse", metrics=["mae"])
    utils.set_random_seed(123)
    hist_b = b.fit(x[:split], y[:split], batch_size=16, epochs=4, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert hist.history["loss"] == hist_b.history["loss"]


def test_validation_data(article_model, housing):
    model = article_model(seed=2)
    model.compile(loss="mse")
    hist = model.fit(housing.x_train, housing.y_train, epochs=2, verbose=0,
                     validation_data=(housing.x_test, housing.y_test))
    assert set(hist.history) == {"loss", "val_loss"}
    p = model.predict(housing.x_test)[:, 0].astype(np.float64)
    assert hist.history["val_loss"][-1] == pytest.approx(np.mean((p - housing.y_test) ** 2),
                                                         rel=1e-5)


def test_validation_data_must_be_a_pair(article_model, housing):
    model = article_model()
    model.compile(loss="mse")
    with pytest.raises(ValueError, match=r"validation_data must be a tuple \(x_val, y_val\)"):
        model.fit(housing.x_train, housing.y_train, verbose=0, validation_data=(housing.x_test,))


@pytest.mark.parametrize("patience", [0, 2, 4])
def test_early_stopping_stops(article_model, housing, patience):
    model = article_model()
    model.compile(loss="mse")
    # nothing ever improves by 1e9: the first epoch sets `best`, then patience runs out
    # (Keras 3: the stop comes at the patience-th epoch without improvement, at least one)
    stop = EarlyStopping(monitor="loss", min_delta=1e9, patience=patience)
    hist = model.fit(housing.x_train[:64], housing.y_train[:64], epochs=50, verbose=0,
                     callbacks=[stop])
    assert len(hist.history["loss"]) == max(patience, 1) + 1
    assert stop.stopped_epoch == max(patience, 1)


def test_early_stopping_on_val_loss_and_restore_best_weights(article_model, housing):
    x, y = housing.x_train[:64], housing.y_train[:64]
    model = article_model(seed=5)
    model.compile(optimizer=optimizers.SGD(learning_rate=1e-3), loss="mse")
    stop = EarlyStopping(monitor="val_loss", min_delta=1e9, patience=1, restore_best_weights=True)
    utils.set_random_seed(77)
    hist = model.fit(x, y, epochs=30, verbose=0, validation_split=0.25, callbacks=[stop])
    assert len(hist.history["val_loss"]) == 2
    # the restored weights are those after the first epoch
    twin = article_model(seed=5)
    twin.compile(optimizer=optimizers.SGD(learning_rate=1e-3), loss="mse")
    utils.set_random_seed(77)
    twin.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_missing_monitor_warns(article_model, housing):
    # as Keras 3: an epoch without the monitored value (validation_freq > 1, a typo) is
    # skipped with a warning naming what the logs hold
    model = article_model()
    model.compile(loss="mse")
    with pytest.warns(RuntimeWarning, match=r"`val_loss` which is not available. Available "
                                            r"metrics are: loss"):
        hist = model.fit(housing.x_train[:32], housing.y_train[:32], epochs=2, verbose=0,
                         callbacks=[EarlyStopping()])
    assert len(hist.history["loss"]) == 2


def test_callbacks_see_every_epoch(article_model, housing):
    seen = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            seen.append("begin")

        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            seen.append("end")

    model = article_model()
    model.compile(loss="mse")
    model.fit(housing.x_train[:64], housing.y_train[:64], epochs=3, verbose=0,
              callbacks=[Recorder()])
    assert seen == ["begin", (0, ["loss"]), (1, ["loss"]), (2, ["loss"]), "end"]


def test_verbose_progress_lines(article_model, housing, capsys):
    model = article_model()
    model.compile(loss="mse")
    model.fit(housing.x_train[:64], housing.y_train[:64], batch_size=32, epochs=2, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2"
    assert out[1].startswith("2/2 [==============================] - ") and " - loss: " in out[1]
    model.fit(housing.x_train[:64], housing.y_train[:64], epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_epochs_zero_and_initial_epoch(article_model, housing):
    model = article_model()
    model.compile(loss="mse")
    w0 = model.get_weights()
    hist = model.fit(housing.x_train[:32], housing.y_train[:32], epochs=0, verbose=0)
    assert hist.history == {}
    for a, b in zip(w0, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    hist = model.fit(housing.x_train[:32], housing.y_train[:32], epochs=5, initial_epoch=3,
                     verbose=0)
    assert hist.epoch == [3, 4]


def test_divergence_warns_and_stops(article_model, housing):
    model = article_model()
    model.compile(optimizer=optimizers.SGD(learning_rate=1e6), loss="mse")
    with pytest.warns(RuntimeWarning, match="NaN or Inf"):
        hist = model.fit(housing.x_train, housing.y_train * 1e3, epochs=20, verbose=0)
    assert len(hist.history["loss"]) < 20
    assert not np.isfinite(hist.history["loss"][-1])


# ---- layer-level equivalences ------------------------------------------------------------------

def _fit_twice_same_seed(a, b, x, y, **kwargs):
    utils.set_random_seed(99)
    ha = a.fit(x, y, verbose=0, **kwargs)
    utils.set_random_seed(99)
    hb = b.fit(x, y, verbose=0, **kwargs)
    return ha, hb


@pytest.mark.parametrize("variant", ["ReLU-layer", "Activation-layer", "double-relu"])
def test_relu_layer_trains_like_dense_activation(article_model, housing, variant):
    fused = article_model(seed=6)
    if variant == "ReLU-layer":
        layers = [Dense(10, input_shape=(13,)), ReLU(), Dense(10), ReLU(), Dense(1)]
    elif variant == "Activation-layer":
        layers = [Dense(10, input_shape=(13,)), Activation("relu"), Dense(10),
                  Activation("relu"), Dense(1)]
    else:  # an activation layer that cannot fuse: relu(relu(z)) == relu(z), same gradient
        layers = [Dense(10, input_shape=(13,), activation="relu"), ReLU(),
                  Dense(10, activation="relu"), ReLU(), Dense(1)]
    split = Sequential(layers)
    assert split.count_params() == 261
    split.set_weights(fused.get_weights())
    for m in (fused, split):
        m.compile(optimizer="rmsprop", loss="mse")
    np.testing.assert_array_equal(split.predict(housing.x_test), fused.predict(housing.x_test))
    ha, hb = _fit_twice_same_seed(fused, split, housing.x_train, housing.y_train,
                                  batch_size=32, epochs=3)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    for a, b in zip(fused.get_weights(), split.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_unfused_activation_layer_matches_reference(housing, ref, rng):
    """Dense(tanh) then Activation(sigmoid): a standalone activation step in the engine."""
    utils.set_random_seed(8)
    model = Sequential([Dense(6, input_shape=(13,), activation="tanh"), Activation("sigmoid"),
                        Dense(2)])
    p = model.predict(housing.x_test)
    np.testing.assert_allclose(p, _numpy_predict(model, housing.x_test, ref), rtol=1e-5, atol=1e-6)


def test_layer_called_eagerly_on_arrays(rng, ref):
    layer = Dense(4, activation="tanh")
    x = rng.standard_normal((3, 5)).astype(np.float32)
    y = layer(x)
    expected = np.tanh(x.astype(np.float64) @ layer.kernel + layer.bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ReLU()(x), np.maximum(x, 0))


# ---- deferred build -----------------------------------------------------------------------------

def test_deferred_build_on_fit(housing):
    model = Sequential([Dense(10, activation="relu"), Dense(1)])
    assert not model.built
    with pytest.raises(ValueError, match="not yet been built"):
        model.count_params()
    model.compile(loss="mse")
    hist = model.fit(housing.x_train, housing.y_train, epochs=2, verbose=0)
    assert model.built and len(hist.history["loss"]) == 2
    assert model.count_params() == _dense_params(13, 10) + _dense_params(10, 1)
    assert model.input_shape == (None, 13) and model.output_shape == (None, 1)
    assert "Total params: 151" in _capture_summary(model)


def test_deferred_build_on_predict(rng, ref):
    model = Sequential()
    model.add(Dense(3, activation="sigmoid"))
    x = rng.standard_normal((4, 6)).astype(np.float32)
    p = model.predict(x)
    assert model.built and p.shape == (4, 3)
    np.testing.assert_allclose(p, _numpy_predict(model, x, ref), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"must have 6 features per row"):
        model.predict(np.ones((2, 5), np.float32))


def test_pop_removes_the_last_layer(article_model, housing, ref):
    model = article_model()
    removed = model.pop()
    assert isinstance(removed, Dense) and removed.units == 1
    assert model.output_shape == (None, 10) and model.count_params() == 250
    p = model.predict(housing.x_test)
    np.testing.assert_allclose(p, _numpy_predict(model, housing.x_test, ref), rtol=1e-5, atol=1e-5)


# ---- seeding ------------------------------------------------------------------------------------

def _seeded_run(seed, housing, epochs=5):
    utils.set_random_seed(seed)
    model = Sequential([Dense(10, input_shape=(13,), activation="relu"),
                        Dense(10, activation="relu"), Dense(1)])
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    hist = model.fit(housing.x_train, housing.y_train, batch_size=32, epochs=epochs, verbose=0,
                     validation_split=0.1)
    return model.get_weights(), hist.history


def test_same_seed_is_bit_identical(housing):
    w1, h1 = _seeded_run(1234, housing)
    w2, h2 = _seeded_run(1234, housing)
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2


def test_different_seeds_differ(housing):
    w1, h1 = _seeded_run(1, housing, epochs=2)
    w2, h2 = _seeded_run(2, housing, epochs=2)
    assert not np.array_equal(w1[0], w2[0])
    assert h1["loss"] != h2["loss"]


class _NoOp(Callback):
    """Any callback makes fit() return to Python between epochs."""


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("batch_size", [32, 404, 50])
def test_one_call_fit_equals_epoch_by_epoch_fit(housing, shuffle, batch_size):
    """fit() without callbacks or validation runs all epochs in one native call; with a
    callback it runs epoch by epoch. Same seed: bit-identical weights and logs."""
    def run(callbacks):
        utils.set_random_seed(31)
        model = Sequential([Dense(10, input_shape=(13,), activation="relu"),
                            Dense(10, activation="relu"), Dense(1)])
        model.compile(optimizer="adam", loss="mse", metrics=["mae"])
        hist = model.fit(housing.x_train, housing.y_train, batch_size=batch_size, epochs=4,
                         shuffle=shuffle, verbose=0, callbacks=callbacks)
        return model, hist

    a, ha = run(None)
    b, hb = run([_NoOp()])
    assert ha.history == hb.history and ha.epoch == hb.epoch == [0, 1, 2, 3]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.optimizer.iterations == b.optimizer.iterations == 4 * -(-404 // batch_size)


def test_seeded_fit_without_callbacks_is_bit_identical(housing):
    def run(seed):
        utils.set_random_seed(seed)
        model = Sequential([Dense(10, input_shape=(13,), activation="relu"), Dense(1)])
        model.compile(optimizer="rmsprop", loss="mse")
        hist = model.fit(housing.x_train, housing.y_train, epochs=3, verbose=0)
        return model.get_weights(), hist.history["loss"]

    (w1, l1), (w2, l2), (w3, l3) = run(5), run(5), run(6)
    assert l1 == l2 and l1 != l3
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)


def test_shuffle_changes_the_order_but_not_the_data(article_model, housing):
    """With full-batch training the row order only changes rounding."""
    a, b = article_model(seed=3), article_model(seed=3)
    for m in (a, b):
        m.compile(optimizer="sgd", loss="mse")
    a.fit(housing.x_train, housing.y_train, batch_size=404, epochs=3, shuffle=True, verbose=0)
    b.fit(housing.x_train, housing.y_train, batch_size=404, epochs=3, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    # with minibatches, shuffling does change the result
    c, d = article_model(seed=3), article_model(seed=3)
    for m in (c, d):
        m.compile(optimizer="sgd", loss="mse")
    c.fit(housing.x_train, housing.y_train, batch_size=32, epochs=2, shuffle=True, verbose=0)
    d.fit(housing.x_train, housing.y_train, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert not np.allclose(c.get_weights()[0], d.get_weights()[0], rtol=1e-4, atol=1e-5)


# ---- training quality ---------------------------------------------------------------------------

def test_article_model_learns_housing(article_model, housing):
    model = article_model(seed=42)
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    hist = model.fit(housing.x_train, housing.y_train, batch_size=32, epochs=100, verbose=0)
    losses = hist.history["loss"]
    assert len(losses) == 100
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    assert sum(b < a for a, b in zip(losses, losses[1:])) > 80  # mostly decreasing
    test_mse = model.evaluate(housing.x_test, housing.y_test)[0]
    baseline = np.mean((housing.y_test.astype(np.float64) - housing.y_train.mean()) ** 2)
    assert test_mse < 0.5 * baseline, (test_mse, baseline)


def _blobs(rng, n_per_class=60, dim=4, classes=3):
    centers = rng.standard_normal((classes, dim)) * 3
    x = np.concatenate([c + rng.standard_normal((n_per_class, dim)) for c in centers])
    y = np.repeat(np.arange(classes), n_per_class)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def test_classification_reaches_high_accuracy(rng, ref):
    x, y = _blobs(rng)
    utils.set_random_seed(0)
    model = Sequential([Dense(16, input_shape=(4,), activation="relu"), Dense(3)])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=16, epochs=30, verbose=0)
    assert set(hist.history) == {"loss", "accuracy"}
    assert hist.history["accuracy"][-1] > 0.95
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    logits = model.predict(x)
    loss, acc = model.evaluate(x, y)
    assert acc == pytest.approx(np.mean(np.argmax(logits, axis=1) == y))
    assert acc > 0.95
    assert loss == pytest.approx(ref.LOSSES["sparse_softmax_crossentropy"](logits, y)[0], rel=1e-5)
    # labels given as an (n, 1) float column mean the same
    assert model.evaluate(x, y.reshape(-1, 1).astype(np.float64))[0] == pytest.approx(loss)


def test_classification_first_epoch_logs_match_numpy(rng, ref):
    x, y = _blobs(rng, n_per_class=20)
    utils.set_random_seed(1)
    model = Sequential([Dense(8, input_shape=(4,), activation="tanh"), Dense(3)])
    model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["acc"])
    logits = model.predict(x)
    hist = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    assert hist.history["loss"][0] == pytest.approx(
        ref.LOSSES["sparse_softmax_crossentropy"](logits, y)[0], rel=1e-5)
    assert hist.history["acc"][0] == pytest.approx(np.mean(np.argmax(logits, 1) == y))


# ---- engine vs an independent NumPy training loop ------------------------------------------------

def test_three_epochs_match_numpy_float64_training(article_model, article_acts, housing, ref,
                                                   kernels):
    """RMSprop (Keras defaults), MSE, batch 32, rows in order: 39 steps over 404 rows."""
    model = article_model(seed=21)
    model.compile(optimizer="rmsprop", loss="mse")
    w0 = model.get_weights()
    hist = model.fit(housing.x_train, housing.y_train, batch_size=32, epochs=3, shuffle=False,
                     verbose=0)
    x, y = housing.x_train.astype(np.float64), housing.y_train.astype(np.float64)
    opt = ref.Optimizer("rmsprop", learning_rate=0.001, rho=0.9, epsilon=1e-7)
    w = [a.astype(np.float64) for a in w0]
    epoch_losses = []
    for _ in range(3):
        total = 0.0
        for s in range(0, len(x), 32):
            value, grads = ref.mlp_loss_and_grads(w, article_acts, x[s:s + 32], y[s:s + 32])
            total += value * len(x[s:s + 32])
            w = ref.unflatten(opt.step(ref.flatten(w), ref.flatten(grads)), w)
        epoch_losses.append(total / len(x))
    for got, want in zip(model.get_weights(), w):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hist.history["loss"], epoch_losses, rtol=1e-5)


ARCHS = {
    "article": (lambda: [Dense(10, input_shape=(13,), activation="relu"),
                         Dense(10, activation="relu"), Dense(1)], "mse", 1),
    "tanh-sigmoid-2out": (lambda: [Dense(8, input_shape=(13,), activation="tanh"),
                                   Dense(6, activation="sigmoid"), Dense(2)], "mse", 2),
    "unfused-activation": (lambda: [Dense(7, input_shape=(13,), activation="tanh"),
                                    Activation("sigmoid"), Dense(5), ReLU(), Dense(1)], "mse", 1),
    "no-bias": (lambda: [Dense(9, input_shape=(13,), activation="relu", use_bias=False),
                         Dense(1, use_bias=False)], "mse", 1),
    "mae": (lambda: [Dense(10, input_shape=(13,), activation="tanh"), Dense(1)], "mae", 1),
    "cce": (lambda: [Dense(10, input_shape=(13,), activation="relu"), Dense(4)],
            "sparse_categorical_crossentropy", 4),
    # layers wider than 16 (portable GEMM) between narrow ones, and an unfused activation
    # step on a wide layer: the arena's padded row strides change from layer to layer
    "mixed-widths": (lambda: [Dense(20, input_shape=(13,), activation="relu"),
                              Dense(17, activation="tanh"), Activation("sigmoid"), Dense(5),
                              Dense(24, activation="tanh"), Dense(3)], "mse", 3),
    "wide-cce": (lambda: [Dense(18, input_shape=(13,), activation="tanh"), Dense(17)],
                 "sparse_categorical_crossentropy", 17),
    # single-unit layers take the dot kernels when their input rows are padded (n_in <= 16);
    # sigmoid makes the padding lanes 0.5, which the kernels must mask out
    "single-unit-sigmoid-3": (lambda: [Dense(3, input_shape=(13,), activation="sigmoid"),
                                       Dense(1)], "mse", 1),
    "single-unit-16": (lambda: [Dense(16, input_shape=(13,), activation="tanh"),
                                Dense(1, activation="sigmoid")], "mse", 1),
    "single-unit-17": (lambda: [Dense(17, input_shape=(13,), activation="tanh"), Dense(1)],
                       "mse", 1),
    "single-unit-first": (lambda: [Dense(1, input_shape=(13,)), Dense(4, activation="tanh"),
                                   Dense(1)], "mse", 1),
    # softmax inside the model (its backward is the row Jacobian, not elementwise), fused
    # into a Dense and as a layer of its own after a relu Dense
    "softmax-hidden": (lambda: [Dense(6, input_shape=(13,), activation="tanh"),
                                Dense(5, activation="softmax"), Dense(7, activation="relu"),
                                Activation("softmax"), Dense(2)], "mse", 2),
}


def _model_loss(model, weights, x, y, loss, ref):
    """float64 loss of the model's layers evaluated with `weights` (in get_weights() order)."""
    h, i = np.asarray(x, np.float64), 0
    for layer in model.layers:
        if isinstance(layer, Dense):
            h = h @ weights[i]
            i += 1
            if layer.use_bias:
                h = h + weights[i]
                i += 1
        h = ref.ACT_FORWARD[getattr(layer, "activation", "relu")](h)  # or ReLU()
    key = "sparse_softmax_crossentropy" if loss.startswith("sparse") else loss
    target = y if key == "sparse_softmax_crossentropy" else np.asarray(y, np.float64).reshape(h.shape)
    return ref.LOSSES[key](h, target)[0]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_whole_model_gradient_finite_differences(housing, ref, rng, kernels, arch):
    """One full-batch SGD step with learning rate 1 exposes the gradient: g = w_before - w_after.
    It must match central differences of the model's loss computed in float64 from the weights."""
    make, loss, n_out = ARCHS[arch]
    utils.set_random_seed(13)
    model = Sequential(make())
    x = housing.x_train[:24]
    if loss.startswith("sparse"):
        y = rng.integers(0, n_out, size=24)
    elif n_out == 1:
        y = (housing.y_train[:24] - 22.0) / 9.0
    else:
        y = rng.standard_normal((24, n_out)).astype(np.float32)
    model.compile(optimizer=optimizers.SGD(learning_rate=1.0),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True)
                  if loss.startswith("sparse") else loss)
    w0 = model.get_weights()
    np.testing.assert_allclose(model.predict(x), _numpy_predict(model, x, ref), rtol=1e-5,
                               atol=1e-5)
    model.fit(x, y, batch_size=24, epochs=1, verbose=0, shuffle=False)
    g_model = [a.astype(np.float64) - b for a, b in zip(w0, model.get_weights())]
    w64 = [a.astype(np.float64) for a in w0]
    fd = ref.finite_difference(lambda: _model_loss(model, w64, x, y, loss, ref), w64)
    scale = max(np.abs(g).max() for g in fd)
    for i, (g, f) in enumerate(zip(g_model, fd)):
        np.testing.assert_allclose(g, f, rtol=1e-3, atol=1e-4 * scale, err_msg=f"weight {i}")


# ---- the BLAS path for larger layers ----------------------------------------------------------------

def _wide_model(seed):
    utils.set_random_seed(seed)
    return Sequential([Dense(200, input_shape=(300,), activation="relu"), Dense(10)])


def test_blas_path_matches_portable_path(rng, ref, blas, monkeypatch):
    """The same wide model trained on the BLAS and on fastnn's panel kernels (each forced
    by moving the crossover) gives the same weights, and both match a NumPy reference."""
    x = rng.standard_normal((64, 300)).astype(np.float32)
    y = rng.standard_normal((64, 10)).astype(np.float32)
    monkeypatch.setattr(plan, "BLAS_MIN_MACS", 1)
    a = _wide_model(0)
    a.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    paths = [op["path"] for op in a._plan(32, "loss").spec["ops"]]
    assert paths == ["blas", "panels"]  # first layer on the BLAS
    w0 = a.get_weights()
    a.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)

    monkeypatch.setattr(plan, "BLAS_MIN_MACS", 1 << 62)
    b = _wide_model(1)
    b.set_weights(w0)
    b.compile(optimizer=optimizers.SGD(learning_rate=0.05), loss="mse")
    assert [op["path"] for op in b._plan(32, "loss").spec["ops"]] == ["panels", "panels"]
    b.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)

    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)
    expected = ref.train_reference(w0, ["relu", "linear"], x, y,
                                   ref.Optimizer("sgd", learning_rate=0.05), 32, 2)
    for got, want in zip(a.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.predict(x), b.predict(x), rtol=1e-4, atol=1e-5)


# ---- model surgery and shared layers ----------------------------------------------------------------

def test_predict_after_popping_every_layer(rng):
    utils.set_random_seed(0)
    model = Sequential([Dense(3, input_shape=(4,))])
    x = rng.standard_normal((2, 4)).astype(np.float32)
    model.predict(x)  # caches the fast path
    model.pop()
    assert model.layers == []
    with pytest.raises(ValueError, match="no layers|not yet been built"):
        model.predict(x)


def test_layer_shared_by_two_models_stays_consistent(rng, ref):
    utils.set_random_seed(0)
    shared = Dense(2, input_shape=(4,))
    first = Sequential([shared])
    try:
        inp = Input(shape=(4,))
        second = Model(inp, shared(inp))
    except ValueError:
        return  # refusing to share a layer with a clear error is a fine behaviour too
    x = rng.standard_normal((8, 4)).astype(np.float32)
    first.compile(optimizer="sgd", loss="mse")
    first.fit(x, np.ones((8, 2), np.float32), epochs=3, verbose=0)
    for model in (first, second):
        np.testing.assert_allclose(model.predict(x),
                                   ref.mlp_predict(model.get_weights(), ["linear"], x),
                                   rtol=1e-5, atol=1e-5)


def test_train_on_batch_is_one_step_of_fit(rng):
    x = rng.standard_normal((20, 13)).astype(np.float32)
    y = rng.standard_normal(20).astype(np.float32)
    models = []
    for _ in range(2):
        utils.set_random_seed(3)
        m = Sequential([Dense(10, input_shape=(13,), activation="relu"), Dense(1)])
        m.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
        models.append(m)
    a, b = models
    loss, mae = a.train_on_batch(x, y)
    hist = b.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0)
    assert loss == pytest.approx(hist.history["loss"][0], rel=1e-6)
    assert mae == pytest.approx(hist.history["mae"][0], rel=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # batches of other sizes reuse power-of-two nets and keep training the same weights
    for n in (3, 7, 20, 5):
        a.train_on_batch(x[:n], y[:n])
    assert len(a._plans) <= 3
    with pytest.raises(ValueError, match="13 features"):
        a.train_on_batch(x[:, :5], y)


def test_blas_crossover_rule(monkeypatch):
    monkeypatch.setattr(fastnn._blas, "available", lambda: True)
    assert not plan.use_blas(1024, 784, 16)          # one panel: never a GEMM
    assert not plan.use_blas(32, 256, 256)           # 2M multiply-adds: the panel kernels
    assert plan.use_blas(32, 512, 512)               # 8M: the BLAS
    assert plan.use_blas(128, 784, 512)
    assert not plan.use_blas(8, 32, 32)              # small batch, small layer
    assert plan.use_blas(8, 64, 64)                  # small batch: W^T repacking dominates
    monkeypatch.setattr(fastnn._blas, "available", lambda: False)
    assert not plan.use_blas(128, 784, 512)


def test_fit_memory_stays_flat_across_epochs(rng):
    """No copy of the data set and no allocation per step or epoch: while a wide model
    trains several more epochs (and validates on a split), the peak of NumPy's traced
    allocations stays far below one copy of x, and nothing is left behind."""
    import tracemalloc
    x = rng.random((6000, 784), dtype=np.float32)  # 18.8 MB
    y = rng.integers(0, 10, 6000)
    model = Sequential([Dense(128, input_shape=(784,), activation="relu"), Dense(10)])
    model.compile(optimizer="rmsprop",
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)  # plans and optimizer slots
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        model.fit(x, y, batch_size=128, epochs=4, verbose=0)
        model.fit(x, y, batch_size=128, epochs=2, verbose=0)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (peak - before) / 2**20 < 1.0, f"peak grew by {(peak - before) / 2**20:.1f} MB"
    assert (current - before) / 2**20 < 0.1


def test_threads_predicting_with_one_model_get_their_own_answers(rng):
    """predict runs without the GIL on an arena shared by the model's calls: threads
    predicting at once must each get the answer for their own rows."""
    import threading
    utils.set_random_seed(8)
    model = Sequential([Dense(64, input_shape=(32,), activation="relu"),
                        Dense(10, activation="tanh"), Dense(3)])
    inputs = [rng.standard_normal((700, 32)).astype(np.float32) for _ in range(4)]
    expected = [model.predict(x) for x in inputs]
    failures = []

    def worker(k):
        for _ in range(60):
            if not np.array_equal(model.predict(inputs[k]), expected[k]):
                failures.append(k)
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
