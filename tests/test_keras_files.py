"""Keras files in (fastnn.export.keras_in): load_model on Keras 3 `.keras` archives and
legacy HDF5 `.h5` models, load_weights on `.weights.h5` files.

Real files written by Keras 3.15 (shared/data/keras, see its README) are checked against
the outputs Keras computed for them. Files in layouts no bundled file covers (tf.keras 2's
nested-list graphs and `kernel:0` names, shared layers, nested models, every merge) are
written here with h5py following Keras' layout, from random weights, and checked against
a float64 NumPy forward pass written from the maths."""
import io
import json
import sys
import warnings
import zipfile

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, utils
from fastnn.layers import Dense
from fastnn.models import load_model

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture
def h5py():
    return pytest.importorskip("h5py")


# ---- float64 references -------------------------------------------------------------------

def _relu(z):
    return np.maximum(z, 0.0)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _dense(x, w, b=None, act=None):
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    if b is not None:
        z = z + np.asarray(b, np.float64)
    return {None: z, "relu": _relu(z), "tanh": np.tanh(z), "softmax": _softmax(z),
            "sigmoid": 1.0 / (1.0 + np.exp(-z))}[act]


def _keras_vars(path, layer_path):
    """The datasets of one layer in a Keras 3 weights file, in order."""
    import h5py
    with h5py.File(path, "r") as f:
        group = f[layer_path]["vars"]
        return [group[str(i)][()] for i in range(len(group))]


# ---- writing files in Keras' layouts ------------------------------------------------------

_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
           "registered_name": None}


def k3_tensor(layer, node=0, width=None):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, width], "dtype": "float32",
                       "keras_history": [layer, node, 0]}}


def k3_layer(kind, name, calls=(), **config):
    """A layer entry of a Keras 3 functional config; calls: the args of each call."""
    return {"module": "keras.layers", "class_name": kind,
            "config": {"name": name, "trainable": True, "dtype": _POLICY, **config},
            "registered_name": None, "name": name,
            "inbound_nodes": [{"args": [args], "kwargs": {}} for args in calls]}


def k3_input(name, width):
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None, width], "dtype": "float32", "sparse": False,
                       "ragged": False, "name": name, "optional": False},
            "registered_name": None, "name": name, "inbound_nodes": []}


def k3_dense(name, units, activation="linear", calls=(), **extra):
    init = {"module": "keras.initializers", "class_name": "GlorotUniform",
            "config": {"seed": None}, "registered_name": None}
    zeros = {"module": "keras.initializers", "class_name": "Zeros", "config": {},
             "registered_name": None}
    config = {"units": units, "activation": activation, "use_bias": True,
              "kernel_initializer": init, "bias_initializer": zeros,
              "kernel_regularizer": None, "bias_regularizer": None,
              "kernel_constraint": None, "bias_constraint": None, "quantization_config": None}
    config.update(extra)
    return k3_layer("Dense", name, calls, **config)


def write_keras3(path, config, variables, names=True, compile_config=None):
    """A .keras zip: config.json and model.weights.h5 with `variables` as
    {keras path: (layer name, [arrays])}; names=False leaves out the `name` attributes
    (as Keras before 3.x wrote them)."""
    import h5py
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars")
        for layer_path, (name, arrays) in variables.items():
            group = f.create_group(f"{layer_path}/vars")
            if names:
                group.attrs["name"] = name
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=np.asarray(a, np.float32))
    model = {"module": "keras", "class_name": config["class_name"], "config": config["config"],
             "registered_name": None}
    if compile_config is not None:
        model["compile_config"] = compile_config
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(model))
        zf.writestr("model.weights.h5", buf.getvalue())


def k2_layer(kind, name, inbound=None, **config):
    """A layer entry of a tf.keras 2 functional config: inbound is a list of calls, each
    a list of [layer, node, tensor] references."""
    entry = {"class_name": kind, "config": {"name": name, "trainable": True,
                                            "dtype": "float32", **config}, "name": name}
    if inbound is not None:
        entry["inbound_nodes"] = [[[ref[0], ref[1], 0, {}] for ref in call]
                                  for call in inbound]
    return entry


def k2_dense(name, units, activation="linear", inbound=None):
    return k2_layer("Dense", name, inbound, units=units, activation=activation,
                    use_bias=True,
                    kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
                    bias_initializer={"class_name": "Zeros", "config": {}},
                    kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                    kernel_constraint=None, bias_constraint=None)


def write_legacy(path, config, layers, training_config=None, keras_version="2.15.0",
                 weights_only=False):
    """An HDF5 file in tf.keras 2's layout: layers is {layer name: [(weight name, array)]}
    (weight names such as 'dense/kernel:0'), in model.layers order."""
    import h5py
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = keras_version
        f.attrs["backend"] = "tensorflow"
        if weights_only:
            g = f
        else:
            f.attrs["model_config"] = json.dumps(config)
            if training_config is not None:
                f.attrs["training_config"] = json.dumps(training_config)
            g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([n.encode() for n in layers])
        for layer, weights in layers.items():
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
            for w, a in weights:
                lg.create_dataset(w, data=np.asarray(a, np.float32))


def _w(rng, *shape):
    return (0.5 * rng.standard_normal(shape)).astype(np.float32)


# ---- the files Keras wrote -------------------------------------------------------------

@pytest.mark.parametrize("filename", ["article.keras", "article.h5"])
def test_article_model_matches_keras(keras_data_dir, h5py, filename, kernels):
    x = np.load(keras_data_dir / "article_inputs.npy")
    expected = np.load(keras_data_dir / "article_outputs.npy")
    model = load_model(keras_data_dir / filename)
    assert isinstance(model, Sequential) and model.name == "sequential"
    assert [layer.name for layer in model.layers] == ["dense", "dense_1", "dense_2"]
    assert [(layer.units, layer.activation) for layer in model.layers] == [
        (10, "relu"), (10, "relu"), (1, "linear")]
    np.testing.assert_allclose(model.predict(x), expected, **TOL)
    # the weights are the file's, and a float64 forward pass over them is Keras' output
    w = [a.astype(np.float64) for a in model.get_weights()]
    np.testing.assert_allclose(_dense(_dense(_dense(x, *w[:2], "relu"), *w[2:4], "relu"), *w[4:]),
                               expected, **TOL)
    if filename.endswith(".keras"):
        with zipfile.ZipFile(keras_data_dir / filename) as zf:
            weights = io.BytesIO(zf.read("model.weights.h5"))
        for layer in model.layers:
            stored = _keras_vars(weights, f"layers/{layer.name}")
            for a, b in zip(layer.get_weights(), stored):
                np.testing.assert_array_equal(a, b)
    # compiled as Keras saved it: RMSprop(0.001, rho 0.9), mse
    assert model.compiled and type(model.optimizer).__name__ == "RMSprop"
    assert model.optimizer.learning_rate == pytest.approx(1e-3)
    assert model.optimizer.rho == pytest.approx(0.9)
    assert model.loss.name == "mean_squared_error"
    y = expected[:, 0] + 0.5
    assert model.evaluate(x, y) == pytest.approx(np.mean((expected[:, 0] - y) ** 2), rel=1e-4)


def test_loaded_weights_train_as_the_reference_step(keras_data_dir, h5py, ref, kernels):
    """One SGD step of the loaded model moves its weights as a float64 backpropagation
    from the same weights does: the file's values are the ones the engine trains."""
    from fastnn import optimizers
    x = np.load(keras_data_dir / "article_inputs.npy")[:32]
    y = np.load(keras_data_dir / "article_outputs.npy")[:32, 0] * 1.2 + 0.3
    model = load_model(keras_data_dir / "article.keras", compile=False)
    start = [w.astype(np.float64) for w in model.get_weights()]
    model.compile(optimizer=optimizers.SGD(learning_rate=0.01), loss="mse")
    model.train_on_batch(x, y)
    _, grads = ref.mlp_loss_and_grads(start, ["relu", "relu", "linear"], x, y, "mse")
    for got, w, g in zip(model.get_weights(), start, grads):
        np.testing.assert_allclose(got, w - 0.01 * g, rtol=1e-4, atol=1e-6)


def test_article_model_trains_after_loading(keras_data_dir, h5py):
    x = np.load(keras_data_dir / "article_inputs.npy")
    y = np.load(keras_data_dir / "article_outputs.npy")[:, 0] * 1.1
    model = load_model(keras_data_dir / "article.keras")
    before = model.evaluate(x, y)
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 5
    assert model.evaluate(x, y) < before


def test_load_without_compiling(keras_data_dir, h5py):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model(keras_data_dir / "article.h5", compile=False)
    assert not model.compiled


def test_functional_model_matches_keras(keras_data_dir, h5py, kernels):
    io_ = np.load(keras_data_dir / "functional_io.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # saved uncompiled: loads uncompiled, silently
        model = load_model(keras_data_dir / "functional.keras")
    assert model.input_names == ["features", "extra"]
    assert model.output_names == ["price", "kind"]
    assert not model.compiled
    price, kind = model.predict([io_["features"], io_["extra"]])
    np.testing.assert_allclose(price, io_["price"], **TOL)
    np.testing.assert_allclose(kind, io_["kind"], **TOL)
    # float64 reference from the loaded weights: dense -> tanh dense, skip add, concat
    layer = {lyr.name: [w.astype(np.float64) for w in lyr.get_weights()] for lyr in model.layers}
    h = _dense(io_["features"], *layer["dense_3"], "relu")
    joined = np.concatenate([h + _dense(h, *layer["dense_4"], "tanh"), io_["extra"]], axis=1)
    np.testing.assert_allclose(_dense(joined, *layer["price"]), io_["price"], **TOL)
    np.testing.assert_allclose(_dense(joined, *layer["kind"], "softmax"), io_["kind"], **TOL)
    # dict inputs by name, as any fastnn model
    by_name = model.predict({"extra": io_["extra"], "features": io_["features"]})
    np.testing.assert_array_equal(by_name[0], price)


def test_load_weights_of_article_into_a_fastnn_model(keras_data_dir, h5py, article_model):
    x = np.load(keras_data_dir / "article_inputs.npy")
    expected = np.load(keras_data_dir / "article_outputs.npy")
    utils.set_random_seed(3)  # names that are not the file's: Keras' paths place the weights
    model = Sequential([Input(shape=(13,)), Dense(10, activation="relu", name="h1"),
                        Dense(10, activation="relu", name="h2"), Dense(1, name="out")])
    assert np.abs(model.predict(x) - expected).max() > 1e-2
    model.load_weights(keras_data_dir / "article.weights.h5")
    np.testing.assert_allclose(model.predict(x), expected, **TOL)
    named = Sequential([Input(shape=(13,)), Dense(10, activation="relu", name="dense"),
                        Dense(10, activation="relu", name="dense_1"), Dense(1, name="dense_2")])
    named.load_weights(str(keras_data_dir / "article.weights.h5"))
    for a, b in zip(named.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for source in ("article.keras", "article.h5"):  # the weights inside a model file
        fresh = article_model(seed=5)
        fresh.load_weights(keras_data_dir / source)
        np.testing.assert_allclose(fresh.predict(x), expected, **TOL)


def test_load_weights_of_another_architecture_changes_nothing(keras_data_dir, h5py):
    utils.set_random_seed(4)
    model = Sequential([Input(shape=(13,)), Dense(10, activation="relu"), Dense(1)])
    before = model.get_weights()
    with pytest.raises(ValueError, match="shape|arrays|weights"):
        model.load_weights(keras_data_dir / "article.weights.h5")
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# ---- layouts written here ---------------------------------------------------------------

def test_weights_go_by_layer_name_not_by_order(tmp_path, h5py, rng):
    """Two layers of one shape: the file's first Dense group is recorded as layer 'b'."""
    wa, ba, wb, bb = _w(rng, 4, 4), _w(rng, 4), _w(rng, 4, 4), _w(rng, 4)
    path = tmp_path / "swapped.weights.h5"
    with h5py.File(path, "w") as f:
        for group, name, arrays in (("layers/dense", "b", (wb, bb)),
                                    ("layers/dense_1", "a", (wa, ba))):
            g = f.create_group(f"{group}/vars")
            g.attrs["name"] = name
            for i, arr in enumerate(arrays):
                g.create_dataset(str(i), data=arr)
    model = Sequential([Input(shape=(4,)), Dense(4, activation="tanh", name="a"),
                        Dense(4, name="b")])
    model.load_weights(path)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), _dense(_dense(x, wa, ba, "tanh"), wb, bb), **TOL)


def _keras3_graph(rng):
    """A functional model with a shared Dense (called on two inputs), a nested Sequential,
    every merge, ReLU, Activation and Dropout, as Keras 3 writes it; and its weights."""
    w = {"shared": (_w(rng, 5, 6), _w(rng, 6)), "inner_a": (_w(rng, 6, 6), _w(rng, 6)),
         "head": (_w(rng, 6 * 7, 2), _w(rng, 2))}
    t = k3_tensor
    inner = {"module": "keras", "class_name": "Sequential", "name": "inner",
             "config": {"name": "inner", "trainable": True, "layers": [
                 {"module": "keras.layers", "class_name": "InputLayer",
                  "config": {"batch_shape": [None, 6], "dtype": "float32", "name": "inner_in"}},
                 k3_dense("inner_a", 6, "sigmoid")]},
             "inbound_nodes": [{"args": [t("shared", 0)], "kwargs": {}}]}
    layers = [k3_input("left", 5), k3_input("right", 5),
              k3_dense("shared", 6, "linear", calls=[t("left"), t("right")]),
              inner,
              k3_layer("ReLU", "relu", [t("shared", 1)], max_value=None, negative_slope=0.0,
                       threshold=0.0),
              k3_layer("Activation", "act", [t("inner")], activation="tanh"),
              k3_layer("Dropout", "drop", [t("act")], rate=0.3, seed=None, noise_shape=None),
              k3_layer("Add", "add", [[t("relu"), t("drop")]]),
              k3_layer("Subtract", "subtract", [[t("relu"), t("drop")]]),
              k3_layer("Multiply", "multiply", [[t("relu"), t("drop")]]),
              k3_layer("Average", "average", [[t("relu"), t("drop"), t("shared")]]),
              k3_layer("Maximum", "maximum", [[t("relu"), t("drop")]]),
              k3_layer("Minimum", "minimum", [[t("relu"), t("drop")]]),
              k3_layer("Concatenate", "concatenate",
                       [[t("add"), t("subtract"), t("multiply"), t("average"), t("maximum"),
                         t("minimum"), t("shared", 1)]], axis=-1),
              k3_dense("head", 2, "softmax", calls=[t("concatenate")])]
    config = {"class_name": "Functional",
              "config": {"name": "graph", "trainable": True, "layers": layers,
                         "input_layers": [["left", 0, 0], ["right", 0, 0]],
                         "output_layers": [["head", 0, 0], ["relu", 0, 0]]}}
    # Keras' paths: model.layers order, per class: input_layer, input_layer_1, dense, ...
    variables = {"layers/dense": ("shared", w["shared"]),
                 "layers/sequential/layers/dense": ("inner_a", w["inner_a"]),
                 "layers/dense_1": ("head", w["head"])}
    return config, variables, w


def _graph_reference(w, left, right):
    s0 = _dense(left, *w["shared"])
    s1 = _dense(right, *w["shared"])
    r = _relu(s1)
    d = np.tanh(_dense(s0, *w["inner_a"], "sigmoid"))   # Dropout: identity at inference
    merged = [r + d, r - d, r * d, (r + d + s0) / 3, np.maximum(r, d), np.minimum(r, d), s1]
    return _dense(np.concatenate(merged, axis=1), *w["head"], "softmax"), r


@pytest.mark.parametrize("names", [True, False], ids=["by-name", "by-keras-path"])
def test_keras3_graph_shared_nested_and_merges(tmp_path, h5py, rng, names):
    config, variables, w = _keras3_graph(rng)
    path = tmp_path / "graph.keras"
    write_keras3(path, config, variables, names=names,
                 compile_config={"optimizer": "adam", "loss": ["categorical_crossentropy",
                                                               "mse"],
                                 "loss_weights": [1.0, 0.5], "metrics": [["accuracy"], []]})
    model = load_model(path)
    assert model.input_names == ["left", "right"] and model.output_names == ["head", "relu"]
    assert model.get_layer("inner").layers[0].name == "inner_a"
    left, right = rng.standard_normal((2, 8, 5)).astype(np.float32)
    head, relu = model.predict([left, right])
    want_head, want_relu = _graph_reference(w, left, right)
    np.testing.assert_allclose(head, want_head, **TOL)
    np.testing.assert_allclose(relu, want_relu, **TOL)
    assert model.compiled and type(model.optimizer).__name__ == "Adam"
    assert model.get_layer("drop").rate == pytest.approx(0.3)
    y = [np.eye(2, dtype=np.float32)[rng.integers(0, 2, 8)], rng.standard_normal((8, 6))]
    model.fit([left, right], y, epochs=2, verbose=0)  # trains in the engine


def test_tf_keras2_functional_h5(tmp_path, h5py, rng):
    """tf.keras 2: nested-list inbound nodes, batch_input_shape, 'kernel:0' names, a
    shared layer, a nested Sequential (its calls numbered from 1), compiled with Adam."""
    w1, b1, w2, b2, wi, bi = (_w(rng, 3, 4), _w(rng, 4), _w(rng, 8, 1), _w(rng, 1),
                              _w(rng, 4, 4), _w(rng, 4))
    inner = {"class_name": "Sequential", "name": "sequential",
             "config": {"name": "sequential", "layers": [
                 {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                         "dtype": "float32",
                                                         "name": "dense_2_input"}},
                 k2_dense("dense_2", 4, "relu")]},
             "inbound_nodes": [[["dense", 1, 0, {}]]]}
    config = {"class_name": "Functional", "config": {
        "name": "model",
        "layers": [k2_layer("InputLayer", "input_1", [], batch_input_shape=[None, 3],
                            sparse=False, ragged=False),
                   k2_layer("InputLayer", "input_2", [], batch_input_shape=[None, 3],
                            sparse=False, ragged=False),
                   k2_dense("dense", 4, "tanh", [[("input_1", 0)], [("input_2", 0)]]),
                   inner,
                   k2_layer("Concatenate", "concatenate", [[("dense", 0), ("sequential", 1)]],
                            axis=-1),
                   k2_dense("dense_1", 1, "linear", [[("concatenate", 0)]])],
        "input_layers": [["input_1", 0, 0], ["input_2", 0, 0]],
        "output_layers": [["dense_1", 0, 0]]}}
    layers = {"input_1": [], "input_2": [],
              "dense": [("dense/kernel:0", w1), ("dense/bias:0", b1)],
              "sequential": [("dense_2/kernel:0", wi), ("dense_2/bias:0", bi)],
              "concatenate": [],
              "dense_1": [("dense_1/kernel:0", w2), ("dense_1/bias:0", b2)]}
    training = {"loss": "mae", "metrics": ["mse"], "weighted_metrics": None,
                "loss_weights": None,
                "optimizer_config": {"class_name": "Adam", "config": {
                    "name": "Adam", "learning_rate": 0.01, "decay": 0.0, "beta_1": 0.9,
                    "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False,
                    "jit_compile": False, "is_legacy_optimizer": False}}}
    path = tmp_path / "model.h5"
    write_legacy(path, config, layers, training)
    model = load_model(path)
    a, b = rng.standard_normal((2, 6, 3)).astype(np.float32)
    h = _dense(b, w1, b1, "tanh")
    want = _dense(np.concatenate([_dense(a, w1, b1, "tanh"), _dense(h, wi, bi, "relu")], 1),
                  w2, b2)
    np.testing.assert_allclose(model.predict([a, b]), want, **TOL)
    assert model.compiled and model.optimizer.learning_rate == pytest.approx(0.01)
    assert model.loss.name == "mean_absolute_error"
    assert "mse" in model.fit([a, b], want, epochs=1, verbose=0).history
    # the same weights alone, loaded by order into a model whose names differ
    weights_path = tmp_path / "model_weights.h5"
    write_legacy(weights_path, None, layers, weights_only=True)
    i1, i2 = Input(shape=(3,)), Input(shape=(3,))
    shared = Dense(4, activation="tanh")
    inner_model = Sequential([Input(shape=(4,)), Dense(4, activation="relu")])
    from fastnn.layers import concatenate
    out = Dense(1)(concatenate([shared(i1), inner_model(shared(i2))]))
    fresh = Model([i1, i2], out)
    fresh.load_weights(weights_path)
    np.testing.assert_allclose(fresh.predict([a, b]), want, **TOL)


def test_tf_keras2_sequential_h5_weight_names_pick_the_arrays(tmp_path, h5py, rng):
    """The layer group lists its arrays by name: bias first still loads right; a first
    layer carrying batch_input_shape gives the input; Activation and ReLU layers map."""
    w0, b0, w1, b1 = _w(rng, 2, 3), _w(rng, 3), _w(rng, 3, 2), _w(rng, 2)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {**k2_dense("dense", 3), "config": {**k2_dense("dense", 3)["config"],
                                            "batch_input_shape": [None, 2]}},
        k2_layer("ReLU", "re_lu", max_value=None, negative_slope=0.0, threshold=0.0),
        k2_dense("dense_1", 2),
        k2_layer("Activation", "activation", activation="sigmoid")]}}
    layers = {"dense": [("dense/bias:0", b0), ("dense/kernel:0", w0)],
              "re_lu": [],
              "dense_1": [("dense_1/kernel:0", w1), ("dense_1/bias:0", b1)],
              "activation": []}
    path = tmp_path / "seq.hdf5"
    write_legacy(path, config, layers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(path)
    assert not caught and not model.compiled  # no training config: uncompiled, silently
    assert model.inputs[0].name == "dense_input"
    x = rng.standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), _dense(_relu(_dense(x, w0, b0)), w1, b1,
                                                        "sigmoid"), **TOL)


def _needs_layers(*names):
    import fastnn.layers
    missing = [n for n in names if not hasattr(fastnn.layers, n)]
    if missing:
        pytest.skip(f"fastnn.layers has no {missing}")


def _keras3_sequential(layers, input_width):
    return {"class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True, "dtype": _POLICY,
        "layers": [{"module": "keras.layers", "class_name": "InputLayer",
                    "config": {"batch_shape": [None, input_width], "dtype": "float32",
                               "name": "input_layer"}}] +
                  [{k: v for k, v in k3_layer(*layer[:2], **layer[2]).items()
                    if k not in ("name", "inbound_nodes")} for layer in layers]}}


def test_keras3_normalization_embedding_and_activation_layers(tmp_path, h5py, rng):
    _needs_layers("Embedding", "Flatten", "BatchNormalization", "LayerNormalization", "PReLU",
                  "LeakyReLU", "ELU", "Normalization", "GaussianNoise", "GaussianDropout",
                  "Identity", "ActivityRegularization", "Softmax")
    init = {"module": "keras.initializers", "class_name": "Zeros", "config": {},
            "registered_name": None}
    emb, bn_g, bn_b, bn_m, bn_v = (_w(rng, 10, 3), _w(rng, 15), _w(rng, 15), _w(rng, 15),
                                   np.abs(_w(rng, 15)) + 0.5)
    ln_g, ln_b, w1, b1, alpha = _w(rng, 15), _w(rng, 15), _w(rng, 15, 4), _w(rng, 4), _w(rng, 4)
    mean, var, w2, b2 = _w(rng, 4), np.abs(_w(rng, 4)) + 0.1, _w(rng, 4, 3), _w(rng, 3)
    layers = [
        ("Embedding", "emb", dict(input_dim=10, output_dim=3, embeddings_initializer=init,
                                  embeddings_regularizer=None, activity_regularizer=None,
                                  embeddings_constraint=None, mask_zero=False,
                                  quantization_config=None)),
        ("Flatten", "flat", dict(data_format="channels_last")),
        ("BatchNormalization", "bn", dict(axis=-1, momentum=0.99, epsilon=0.001, center=True,
                                          scale=True, beta_initializer=init,
                                          gamma_initializer=init, beta_regularizer=None,
                                          gamma_regularizer=None, beta_constraint=None,
                                          gamma_constraint=None, synchronized=False,
                                          renorm=False, renorm_clipping=None,
                                          renorm_momentum=0.99)),
        ("LayerNormalization", "ln", dict(axis=-1, epsilon=0.001, center=True, scale=True,
                                          rms_scaling=False, beta_initializer=init,
                                          gamma_initializer=init, beta_regularizer=None,
                                          gamma_regularizer=None, beta_constraint=None,
                                          gamma_constraint=None)),
        ("Dense", "d1", k3_dense("d1", 4)["config"]),
        ("PReLU", "prelu", dict(alpha_initializer=init, alpha_regularizer=None,
                                alpha_constraint=None, shared_axes=None)),
        ("LeakyReLU", "leaky", dict(negative_slope=0.2)),
        ("ELU", "elu", {}),
        ("Normalization", "norm", dict(axis=-1, invert=False, mean=None, variance=None)),
        ("GaussianNoise", "noise", dict(stddev=0.5, seed=None)),
        ("GaussianDropout", "gdrop", dict(rate=0.3, seed=None)),
        ("Identity", "ident", {}),
        ("ActivityRegularization", "actreg", dict(l1=0.0, l2=0.01)),
        ("Normalization", "fixed", dict(axis=-1, invert=False, mean=0.5, variance=2.0)),
        ("Dense", "d2", k3_dense("d2", 3)["config"]),
        ("Softmax", "softmax", dict(axis=-1)),
    ]
    for layer in layers:
        layer[2].pop("name", None)
    variables = {"layers/embedding": ("emb", [emb]), "layers/flatten": ("flat", []),
                 "layers/batch_normalization": ("bn", [bn_g, bn_b, bn_m, bn_v]),
                 "layers/layer_normalization": ("ln", [ln_g, ln_b]),
                 "layers/dense": ("d1", [w1, b1]), "layers/p_re_lu": ("prelu", [alpha]),
                 "layers/normalization": ("norm", [mean, var, np.float32(40)]),
                 "layers/normalization_1": ("fixed", []), "layers/dense_1": ("d2", [w2, b2])}
    x = rng.integers(0, 10, (6, 5)).astype(np.float32)
    h = emb.astype(np.float64)[x.astype(int)].reshape(6, 15)
    h = bn_g * (h - bn_m) / np.sqrt(bn_v + 1e-3) + bn_b
    mu, sd = h.mean(axis=1, keepdims=True), np.sqrt(h.var(axis=1, keepdims=True) + 1e-3)
    h = _dense((h - mu) / sd * ln_g + ln_b, w1, b1)
    h = np.maximum(h, 0) + alpha * np.minimum(h, 0)
    h = np.where(h > 0, h, 0.2 * h)
    h = np.where(h > 0, h, np.exp(np.minimum(h, 0)) - 1)
    h = ((h - mean) / np.sqrt(var) - 0.5) / np.sqrt(2.0)
    want = _softmax(_dense(h, w2, b2))
    for names in (True, False):
        path = tmp_path / f"layers_{names}.keras"
        write_keras3(path, _keras3_sequential(layers, 5), variables, names=names)
        model = load_model(path)
        assert [type(layer).__name__ for layer in model.layers] == [c for c, _, _ in layers]
        np.testing.assert_allclose(model.predict(x), want, **TOL)
        assert float(model.get_layer("norm").count[0]) == 40
        assert model.get_layer("leaky").get_config()["negative_slope"] == pytest.approx(0.2)


def test_tf_keras2_batch_normalization_by_weight_name(tmp_path, h5py, rng):
    _needs_layers("BatchNormalization", "LeakyReLU")
    w, b, g, beta, mm, mv = (_w(rng, 3, 4), _w(rng, 4), _w(rng, 4), _w(rng, 4), _w(rng, 4),
                             np.abs(_w(rng, 4)) + 0.5)
    bn = k2_layer("BatchNormalization", "batch_normalization", axis=[1], momentum=0.99,
                  epsilon=0.01, center=True, scale=True,
                  beta_initializer={"class_name": "Zeros", "config": {}},
                  gamma_initializer={"class_name": "Ones", "config": {}},
                  moving_mean_initializer={"class_name": "Zeros", "config": {}},
                  moving_variance_initializer={"class_name": "Ones", "config": {}},
                  beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                  gamma_constraint=None)
    first = k2_dense("dense", 4)
    first["config"]["batch_input_shape"] = [None, 3]
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        first, bn, k2_layer("LeakyReLU", "leaky_re_lu", alpha=0.1)]}}
    layers = {"dense": [("dense/kernel:0", w), ("dense/bias:0", b)],
              "batch_normalization": [("batch_normalization/moving_mean:0", mm),
                                      ("batch_normalization/gamma:0", g),
                                      ("batch_normalization/moving_variance:0", mv),
                                      ("batch_normalization/beta:0", beta)],
              "leaky_re_lu": []}
    path = tmp_path / "bn.h5"
    write_legacy(path, config, layers)
    model = load_model(path)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    h = g * (_dense(x, w, b) - mm) / np.sqrt(mv + 0.01) + beta
    np.testing.assert_allclose(model.predict(x), np.where(h > 0, h, 0.1 * h), **TOL)


# ---- what cannot be read ------------------------------------------------------------------

def _rewrite_config(src, dst, edit):
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def test_unknown_layer_is_named(keras_data_dir, h5py, tmp_path):
    def add_lstm(config):
        config["config"]["layers"].insert(2, {"module": "keras.layers", "class_name": "LSTM",
                                              "config": {"name": "my_lstm", "units": 10}})
    path = tmp_path / "lstm.keras"
    _rewrite_config(keras_data_dir / "article.keras", path, add_lstm)
    with pytest.raises(ValueError, match="'my_lstm'.*'LSTM'"):
        load_model(path)


def test_unsupported_settings_are_named(keras_data_dir, h5py, tmp_path):
    def custom_activation(config):
        config["config"]["layers"][1]["config"]["activation"] = {
            "module": "builtins", "class_name": "function", "config": "my_swish",
            "registered_name": "my_swish"}
    path = tmp_path / "act.keras"
    _rewrite_config(keras_data_dir / "article.keras", path, custom_activation)
    with pytest.raises(ValueError, match="'dense' \\(Dense\\).*my_swish"):
        load_model(path)

    def baked_in_training(config):
        layers = config["config"]["layers"]
        layers[:] = layers[:1] + [dict(layers[1], name="dense", inbound_nodes=[
            {"args": [k3_tensor("input_layer")], "kwargs": {"training": True}}])]
        config["class_name"] = "Functional"
        config["config"].update(input_layers=[["input_layer", 0, 0]],
                                output_layers=[["dense", 0, 0]])
        layers[0]["name"], layers[0]["inbound_nodes"] = "input_layer", []
    _rewrite_config(keras_data_dir / "article.keras", path, baked_in_training)
    with pytest.raises(ValueError, match="'dense'.*training"):
        load_model(path)

    def subclassed(config):
        config["class_name"] = "MyModel"
    _rewrite_config(keras_data_dir / "article.keras", path, subclassed)
    with pytest.raises(ValueError, match="MyModel"):
        load_model(path)


def test_regularizers_map_and_unknown_training_options_warn(keras_data_dir, h5py, tmp_path):
    def l2(config):
        dense = config["config"]["layers"][1]["config"]
        dense["kernel_regularizer"] = {"module": "keras.regularizers", "class_name": "L2",
                                       "config": {"l2": 0.02}, "registered_name": None}
        dense["depthwise_constraint"] = {"module": "keras.constraints",
                                         "class_name": "MaxNorm", "config": {"max_value": 2}}
    path = tmp_path / "l2.keras"
    _rewrite_config(keras_data_dir / "article.keras", path, l2)
    with pytest.warns(UserWarning, match="depthwise_constraint"):
        model = load_model(path)
    regularizer = model.layers[0].kernel_regularizer
    assert type(regularizer).__name__ == "L2" and regularizer.l2 == pytest.approx(0.02)
    x = np.load(keras_data_dir / "article_inputs.npy")
    np.testing.assert_allclose(model.predict(x), np.load(keras_data_dir / "article_outputs.npy"),
                               **TOL)


def test_unsupported_compile_settings_load_uncompiled(keras_data_dir, h5py, tmp_path):
    def custom(config):
        config["compile_config"]["loss"] = {"module": None, "class_name": "function",
                                            "config": "my_loss", "registered_name": "my>loss"}
    path = tmp_path / "custom.keras"
    _rewrite_config(keras_data_dir / "article.keras", path, custom)
    with pytest.warns(UserWarning, match="uncompiled"):
        model = load_model(path)
    assert not model.compiled
    assert model.predict(np.zeros((1, 13), np.float32)).shape == (1, 1)


def test_keras_loss_and_metric_objects_compile(keras_data_dir, h5py, tmp_path):
    def objects(config):
        config["compile_config"].update(
            optimizer={"module": "keras.optimizers", "class_name": "SGD",
                       "config": {"name": "SGD", "learning_rate": 0.05, "momentum": 0.5,
                                  "nesterov": True}, "registered_name": None},
            loss={"module": "keras.losses", "class_name": "MeanAbsoluteError",
                  "config": {"name": "mean_absolute_error", "reduction": "sum_over_batch_size"},
                  "registered_name": None},
            metrics=[{"module": "keras.metrics", "class_name": "MeanSquaredError",
                      "config": {"name": "mean_squared_error", "dtype": "float32"},
                      "registered_name": None}])
    path = tmp_path / "objects.keras"
    _rewrite_config(keras_data_dir / "article.keras", path, objects)
    model = load_model(path)
    assert type(model.optimizer).__name__ == "SGD" and model.optimizer.nesterov
    assert model.optimizer.momentum == pytest.approx(0.5)
    assert model.loss.name == "mean_absolute_error"
    x = np.load(keras_data_dir / "article_inputs.npy")
    y = np.load(keras_data_dir / "article_outputs.npy")[:, 0]
    history = model.fit(x, y + 1.0, epochs=1, verbose=0)
    assert history.history["mean_squared_error"][0] > 0

    def unknown(config):
        config["compile_config"]["loss"] = {
            "module": "my_package", "class_name": "MyLoss", "config": {"name": "my_loss"},
            "registered_name": "my_package>MyLoss"}
    _rewrite_config(keras_data_dir / "article.keras", path, unknown)
    with pytest.warns(UserWarning, match="MyLoss"):
        assert not load_model(path).compiled


def test_missing_file_is_file_not_found(tmp_path, h5py):
    for name in ("missing.keras", "missing.h5"):
        with pytest.raises(FileNotFoundError):
            load_model(tmp_path / name)


def test_damaged_files_raise_value_error(keras_data_dir, h5py, tmp_path):
    keras_bytes = (keras_data_dir / "article.keras").read_bytes()
    h5_bytes = (keras_data_dir / "article.h5").read_bytes()
    cases = {"truncated.keras": keras_bytes[:len(keras_bytes) // 2],
             "garbage.keras": b"not a zip at all" * 10,
             "truncated.h5": h5_bytes[:len(h5_bytes) // 3],
             "garbage.h5": b"\x89HDF\r\n\x1a\n" + b"\x00" * 300,
             "empty.h5": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="Keras"):
            load_model(tmp_path / name)
    # a zip whose config is not JSON, and one whose weights are not HDF5
    with zipfile.ZipFile(keras_data_dir / "article.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for broken in ({"config.json": b"{not json"}, {"model.weights.h5": b"\x00" * 64},
                   {"config.json": b"[1, 2]"}):
        with zipfile.ZipFile(tmp_path / "broken.keras", "w") as zf:
            for n, data in {**members, **broken}.items():
                zf.writestr(n, data)
        with pytest.raises(ValueError):
            load_model(tmp_path / "broken.keras")
    # weights of the wrong shape
    import h5py as h5
    bad = tmp_path / "bad.weights.h5"
    (bad).write_bytes((keras_data_dir / "article.weights.h5").read_bytes())
    with h5.File(bad, "r+") as f:
        del f["layers/dense_1/vars/0"]
        f["layers/dense_1/vars"].create_dataset("0", data=np.zeros((10, 9), np.float32))
    utils.set_random_seed(0)
    model = Sequential([Input(shape=(13,)), Dense(10, activation="relu"),
                        Dense(10, activation="relu"), Dense(1)])
    with pytest.raises(ValueError, match="shape"):
        model.load_weights(bad)
    with pytest.raises(ValueError):
        model.load_weights(tmp_path / "truncated.h5")


def test_without_h5py_the_error_says_what_to_install(keras_data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install fastnn\[keras\]"):
        load_model(keras_data_dir / "article.keras")
    model = Sequential([Input(shape=(13,)), Dense(1)])
    with pytest.raises(ImportError, match=r"pip install fastnn\[keras\]"):
        model.load_weights(keras_data_dir / "article.weights.h5")


def test_fastnn_file_named_like_a_keras_file_still_loads(tmp_path, rng):
    utils.set_random_seed(1)
    model = Sequential([Input(shape=(3,)), Dense(2, activation="tanh")])
    for name in ("model.keras", "model.h5"):
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name)
        np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    model.save_weights(tmp_path / "w.weights.h5")
    other = Sequential([Input(shape=(3,)), Dense(2, activation="tanh")])
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(other.get_weights()[1], model.get_weights()[1])
