"""The model API around training: get_config/from_config, to_json/model_from_json,
clone_model, Sequential.build, the *_on_batch methods, layer.input/output, reprs,
backend.clear_session and utils.plot_model."""
import json
import sys
import types

import numpy as np
import pytest

import fastnn
from fastnn import backend
from fastnn.callbacks import Callback
from fastnn.layers import Add, Concatenate, Dense, Dropout, Input, ReLU
from fastnn.models import Model, Sequential, clone_model, model_from_json
from fastnn.utils import model_to_dot, plot_model


def _sequential(seed=0):
    fastnn.utils.set_random_seed(seed)
    return Sequential([Dense(8, activation="tanh", input_shape=(4,)), Dropout(0.1),
                       Dense(6, use_bias=False), ReLU(), Dense(2, activation="sigmoid")])


def _functional(seed=0):
    """Two inputs, two outputs, a layer called twice, merges."""
    fastnn.utils.set_random_seed(seed)
    a, b = Input((4,), name="a"), Input((3,), name="b")
    shared = Dense(5, activation="relu", name="shared")
    h = Add()([shared(Dense(5, name="from_a")(a)), shared(Dense(5, name="from_b")(b))])
    out1 = Dense(1, name="price")(h)
    out2 = Dense(3, activation="softmax", name="kind")(Concatenate()([h, b]))
    return Model([a, b], [out1, out2], name="two_heads")


def _inputs(model, n=7, seed=1):
    r = np.random.default_rng(seed)
    if isinstance(model.input, list):
        return [r.standard_normal((n,) + t.shape[1:]).astype(np.float32) for t in model.input]
    return r.standard_normal((n,) + model.input.shape[1:]).astype(np.float32)


def _same_predictions(a, b, x):
    pa, pb = a.predict(x), b.predict(x)
    for p, q in zip(pa if isinstance(pa, list) else [pa], pb if isinstance(pb, list) else [pb]):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_get_config_from_config_round_trip(make):
    model = make()
    config = model.get_config()
    assert json.loads(json.dumps(config)) == config  # JSON-able
    again = type(model).from_config(config)
    assert type(again) is type(model) and again.name == model.name
    assert again.get_config() == config
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    assert [w.shape for w in again.get_weights()] == [w.shape for w in model.get_weights()]
    assert not all(np.array_equal(p, q) for p, q in zip(again.get_weights(),
                                                        model.get_weights()))  # fresh
    again.set_weights(model.get_weights())
    _same_predictions(model, again, _inputs(model))
    assert type(Model.from_config(config)) is type(model)  # Model reads both kinds


def test_to_json_and_model_from_json():
    for model in (_sequential(), _functional()):
        text = model.to_json(indent=1)
        spec = json.loads(text)
        assert spec["class_name"] == type(model).__name__ and spec["module"] == "fastnn.models"
        again = model_from_json(text)
        assert again.get_config() == model.get_config()
        again.set_weights(model.get_weights())
        _same_predictions(model, again, _inputs(model))
    with pytest.raises(ValueError, match="takes the JSON text"):
        model_from_json("{not json")
    with pytest.raises(ValueError, match="not a fastnn model JSON"):
        model_from_json('{"class_name": "Dense", "config": {}}')
    with pytest.raises(ValueError, match="not a fastnn Sequential config"):
        Sequential.from_config({"name": "x"})
    with pytest.raises(TypeError, match="takes the dict get_config"):
        Model.from_config("config")


def test_unbuilt_models_and_configs():
    lazy = Sequential([Dense(3), Dense(1)])
    again = Sequential.from_config(lazy.get_config())
    assert not again.built and [la.units for la in again.layers] == [3, 1]

    class Sub(Model):
        def __init__(self):
            super().__init__()
            self.d = Dense(2)

        def call(self, x):
            return self.d(x)
    sub = Sub()
    with pytest.raises(ValueError, match="not built yet.*get_config"):
        sub.get_config()
    sub.build((None, 3))
    traced = Model.from_config(sub.get_config())  # the traced graph, as a functional Model
    assert type(traced) is Model and traced.output_shape == (None, 2)


@pytest.mark.parametrize("make", [_sequential, _functional])
def test_clone_model(make):
    model = make()
    clone = clone_model(model)
    assert clone.get_config() == model.get_config()
    assert not any(a is b for a in clone.layers for b in model.layers)
    assert len(clone.get_weights()) == len(model.get_weights())  # shared layer cloned once
    clone.set_weights(model.get_weights())
    _same_predictions(model, clone, _inputs(model))
    # independent: training the clone leaves the original alone
    before = model.get_weights()
    clone.compile(loss="mse")
    x = _inputs(model, 16)
    ys = clone.predict(x)
    clone.fit(x, [y + 1 for y in ys] if isinstance(ys, list) else ys + 1, epochs=2, verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(before, model.get_weights()))


def test_clone_model_options():
    model = _functional()
    renamed = clone_model(model, clone_function=lambda layer: type(layer).from_config(
        {**layer.get_config(), "name": "c_" + layer.name}))
    assert [la.name for la in renamed.layers if la.name not in ("a", "b")] == \
        ["c_" + la.name for la in model.layers if la.name not in ("a", "b")]
    ins = [Input((4,), name="x1"), Input((3,), name="x2")]
    on_inputs = clone_model(model, input_tensors=ins)
    assert on_inputs.input_names == ["x1", "x2"] and on_inputs.input[0] is ins[0]
    seq = _sequential()
    assert clone_model(seq, input_tensors=Input((4,), name="z")).input.name == "z"
    with pytest.raises(ValueError, match="input_tensors must be 2 tensor"):
        clone_model(model, input_tensors=[ins[0]])
    with pytest.raises(TypeError, match="clone_function must return a layer"):
        clone_model(seq, clone_function=lambda layer: None)
    with pytest.raises(TypeError, match="takes a Model or Sequential"):
        clone_model(Dense(2))
    lazy = Sequential([Dense(3), Dense(1)])
    assert not clone_model(lazy).built


def test_sequential_build_compiled_and_metrics_names():
    model = Sequential([Dense(4, activation="relu"), Dense(1)])
    assert not model.built and not model.compiled
    model.build((None, 6))
    assert model.built and model.input_shape == (None, 6) and model.count_params() == 33
    model.compile(loss="mse", metrics=["mae"])
    assert model.compiled and model.metrics_names == ["loss", "mae"]
    with pytest.raises(ValueError, match="needs an input_shape"):
        Sequential([Dense(1)]).build()


def test_on_batch_methods():
    model = _sequential()
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = _inputs(model, 16)
    y = np.random.default_rng(3).random((16, 2)).astype(np.float32)
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x))
    assert model.test_on_batch(x, y) == model.evaluate(x, y)
    assert model.test_on_batch(x, y, return_dict=True) == model.evaluate(x, y, return_dict=True)
    before = model.evaluate(x, y)
    # the loss and metrics of the batch before the step (dropout: the loss differs a bit)
    got = model.train_on_batch(x, y)
    assert len(got) == 2 and abs(got[1] - before[1]) < 0.05
    assert model.evaluate(x, y)[0] < before[0]


def test_stop_training_from_a_callback():
    model = _sequential()
    model.compile(loss="mse")
    x = _inputs(model, 16)

    class Stop(Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1
    hist = model.fit(x, np.zeros((16, 2)), epochs=10, verbose=0, callbacks=[Stop()])
    assert hist.epoch == [0, 1] and model.stop_training


def test_layer_input_output_and_shapes():
    a = Input((4,), name="in_a")
    d1 = Dense(3)
    h = d1(a)
    assert d1.input is a and d1.output is h
    assert d1.input_shape == (None, 4) and d1.output_shape == (None, 3)
    b = Input((3,))
    add = Add()
    s = add([h, b])
    assert add.input == [h, b] and add.output is s
    assert a._layer.input is a and a._layer.output is a
    model = Model([a, b], s)
    assert model.input == [a, b] and model.output is s
    assert model.input_shape == [(None, 4), (None, 3)] and model.output_shape == (None, 3)
    again = d1(Input((4,)))  # a second call: input/output no longer name one tensor
    with pytest.raises(AttributeError, match="has been called 2 times, hence the notion of "
                                             "\"layer input\" is ill-defined"):
        d1.input
    with pytest.raises(AttributeError, match="\"layer output\" is ill-defined"):
        d1.output
    assert d1.input_shape == (None, 4) and again.shape == (None, 3)  # every call's shapes
    del again  # a call whose tensors are all dropped no longer counts
    assert d1.output is h
    with pytest.raises(AttributeError, match="is not connected"):
        Dense(2).output
    import copy
    import pickle
    assert pickle.loads(pickle.dumps(d1)).name == d1.name  # the calls stay out of its state
    assert copy.deepcopy(add).name == add.name
    with pytest.raises(AttributeError, match="not built yet"):
        Sequential([Dense(2)]).input
    # Sequential rebuilding its chain does not count as calling its layers again
    seq = Sequential([Input((5,)), Dense(2)])
    seq.add(Dense(1))
    seq.add(Dense(3))
    assert seq.layers[0].input is seq.input and seq.layers[-1].output is seq.output


def test_reprs():
    model = _sequential()
    assert repr(model) == f"<Sequential name={model.name}, built=True>"
    assert repr(model.layers[0]) == f"<Dense name={model.layers[0].name}, built=True>"
    assert repr(Dense(2, name="late")) == "<Dense name=late, built=False>"
    assert repr(_functional()) == "<Model name=two_heads, built=True>"


def test_clear_session_resets_the_names():
    Dense(1), Sequential(), Input((2,))
    backend.clear_session()
    assert Dense(1).name == "dense" and Dense(1).name == "dense_1"
    assert Sequential().name == "sequential"
    assert Input((2,)).name == "input_1"
    x = Input((2,))
    assert Model(x, Dense(1)(x)).name == "model"
    assert fastnn.backend is backend


def test_plot_model_writes_dot(tmp_path):
    model = _functional()
    path = tmp_path / "m.dot"
    assert plot_model(model, to_file=path, show_shapes=True, show_layer_activations=True,
                      show_trainable=True, rankdir="LR") is None
    text = path.read_text()
    assert text.startswith('digraph "two_heads" {') and "rankdir=LR" in text
    for layer in model.layers:
        assert f'"{layer.name}" [label="{layer.name} ({type(layer).__name__})' in text
    for edge in ('"a" -> "from_a"', '"from_a" -> "shared"', '"from_b" -> "shared"',
                 '"shared" -> "add"', '"b" -> "concatenate"', '"add" -> "price"'):
        assert edge in text
    assert text.count('"from_a" -> "shared"') == 1
    assert "input: (None, 5)  output: (None, 5)" in text and "activation: relu" in text
    assert "trainable: True" in text
    seq_text = model_to_dot(_sequential(), show_layer_names=False)
    assert '[label="InputLayer"]' in seq_text and seq_text.count("->") == 5
    with pytest.raises(ValueError, match="Received: rankdir='BT'"):
        model_to_dot(model, rankdir="BT")


def test_plot_model_images_need_pydot(tmp_path, monkeypatch):
    model = _sequential()
    monkeypatch.setitem(sys.modules, "pydot", None)  # not installed
    with pytest.raises(ImportError, match="pip install pydot.*Graphviz.*'.dot'"):
        plot_model(model, to_file=tmp_path / "m.png")
    written = []

    class Graph:
        def write(self, path, format):
            written.append((str(path), format))
    fake = types.SimpleNamespace(graph_from_dot_data=lambda dot: [Graph()] if dot.startswith(
        "digraph") else None)
    monkeypatch.setitem(sys.modules, "pydot", fake)
    plot_model(model, to_file=tmp_path / "m.svg")
    assert written == [(str(tmp_path / "m.svg"), "svg")]
