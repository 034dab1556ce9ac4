"""Model.save / fastnn.models.load_model and save_weights / load_weights."""
import json
import os
import zipfile

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, optimizers, utils
from fastnn.layers import Activation, Dense, ReLU
from fastnn.models import load_model


def _data(rng, n=40):
    return rng.standard_normal((n, 13)).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def _sequential():
    return Sequential([Dense(10, input_shape=(13,), activation="relu"), Dense(6),
                       Activation("tanh"), Dense(4, use_bias=False), ReLU(), Dense(1)])


def _functional():
    inp = Input(shape=(13,))
    h = Dense(10, activation="sigmoid")(inp)
    return Model(inp, Dense(1)(ReLU()(Dense(5)(h))))


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_save_and_load_round_trip(tmp_path, rng, make):
    utils.set_random_seed(2)
    model = make()
    model.compile(optimizer=optimizers.RMSprop(learning_rate=0.01, rho=0.8), loss="mae",
                  metrics=["mse"])
    x, y = _data(rng)
    model.fit(x, y, epochs=3, verbose=0)
    path = tmp_path / "model.fastnn"
    model.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.name == model.name
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.loss.name == "mean_absolute_error"
    assert loaded.evaluate(x, y) == pytest.approx(model.evaluate(x, y), rel=1e-6)
    loaded.fit(x, y, epochs=1, verbose=0)  # trains on (fresh optimizer slots)
    lines = []
    loaded.summary(print_fn=lines.append)
    assert f"Total params: {model.count_params():,}" in lines


def test_saved_file_is_a_zip_of_json_config_and_npy_arrays(tmp_path):
    utils.set_random_seed(1)
    model = _sequential()
    path = tmp_path / "m.fastnn"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        config = json.loads(z.read("fastnn.json"))
    n = len(model.get_weights())
    assert names == sorted([f"arrays/weight_{i}.npy" for i in range(n)] + ["fastnn.json"])
    assert config["format"] == "fastnn.model" and config["version"] == 3
    assert config["architecture"]["input"]["shape"] == [13]
    assert [spec["class"] for spec in config["architecture"]["layers"]] == [
        "Dense", "Dense", "Activation", "Dense", "ReLU", "Dense"]
    assert config["compile"] is None and config["optimizer"] is None
    assert [a["name"] for a in config["arrays"]] == [f"weight_{i}" for i in range(n)]
    assert [a["shape"] for a in config["arrays"]] == [list(w.shape) for w in model.get_weights()]
    loaded = load_model(path)
    assert loaded.loss is None


def test_save_weights_and_load_weights(tmp_path, rng):
    utils.set_random_seed(4)
    a, b = _sequential(), _sequential()
    a.save_weights(tmp_path / "w.weights")  # the name is kept as given (no suffix added)
    b.load_weights(tmp_path / "w.weights")
    x, _ = _data(rng)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    other = Sequential([Dense(3, input_shape=(13,))])
    before = other.get_weights()
    with pytest.raises(ValueError, match="stores 7 weight arrays, model '.*' has 2"):
        other.load_weights(tmp_path / "w.weights")
    for w, v in zip(other.get_weights(), before):
        np.testing.assert_array_equal(w, v)  # untouched
    with pytest.raises(ValueError, match="weights only.*load_weights"):
        load_model(tmp_path / "w.weights")


def test_loading_garbage_raises_format_error(tmp_path):
    from fastnn.saving import FormatError
    bad = tmp_path / "bad.fastnn"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(FormatError, match="not a fastnn file"):
        load_model(bad)
    other = tmp_path / "other.npz"
    np.savez(other, config=np.frombuffer(b'{"format": "something"}', np.uint8))
    with pytest.raises(ValueError, match="not a valid fastnn file.*npz"):
        load_model(other)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.fastnn")


def test_unbuilt_sequential_saves_its_stack(tmp_path, rng):
    """A Sequential waiting for its input shape saves as such (no weights yet) and builds
    from data after loading; a subclassed model not yet traced cannot be saved."""
    Sequential([Dense(3, name="d3"), Dense(1)]).save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.built and [layer.name for layer in loaded.layers][0] == "d3"
    loaded.compile(loss="mse")
    x, y = _data(rng)
    loaded.fit(x, y, epochs=1, verbose=0)
    assert loaded.layers[0].kernel.shape == (13, 3)

    class Untraced(Model):
        def call(self, inputs):
            return inputs
    with pytest.raises(ValueError, match="not yet been built"):
        Untraced().save(tmp_path / "u")
    assert sorted(os.listdir(tmp_path)) == ["m"]  # nothing half-written left behind
