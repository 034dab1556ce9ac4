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


def test_saved_file_is_pickle_free_npz_with_json_config(tmp_path):
    utils.set_random_seed(1)
    model = _sequential()
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
    assert names == ["config.npy"] + [f"weight_{i}.npy" for i in range(len(model.get_weights()))]
    with np.load(path, allow_pickle=False) as archive:
        config = json.loads(archive["config"].tobytes())
    assert config["format"] == "fastnn.model" and config["version"] == 2
    assert config["architecture"]["input"]["shape"] == [13]
    assert [spec["class"] for spec in config["architecture"]["layers"]] == [
        "Dense", "Dense", "Activation", "Dense", "ReLU", "Dense"]
    assert config["compile"] is None
    loaded = load_model(path)
    assert loaded.loss is None


def test_save_weights_and_load_weights(tmp_path, rng):
    utils.set_random_seed(4)
    a, b = _sequential(), _sequential()
    a.save_weights(tmp_path / "w.weights")  # the name is kept as given (no .npz added)
    b.load_weights(tmp_path / "w.weights")
    x, _ = _data(rng)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    other = Sequential([Dense(3, input_shape=(13,))])
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        other.load_weights(tmp_path / "w.weights")


def test_loading_garbage_raises_value_error(tmp_path):
    bad = tmp_path / "bad.fastnn"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a fastnn model file"):
        load_model(bad)
    other = tmp_path / "other.npz"
    np.savez(other, config=np.frombuffer(b'{"format": "something"}', np.uint8))
    with pytest.raises(ValueError, match="not a valid fastnn model file"):
        load_model(other)
    with pytest.raises(ValueError, match="not a fastnn model file"):
        load_model(tmp_path / "missing.fastnn")


def test_unbuilt_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not yet been built"):
        Sequential([Dense(3)]).save(tmp_path / "m")
    assert not os.listdir(tmp_path)  # nothing half-written left behind
