"""The file format under attack and in use: damaged and hostile files raise one error
type without allocating, whatever save writes load reads, files land with the umask's
permissions, file objects and bytes, pickle/copy/deepcopy, optimizer state resumes."""
import copy
import hashlib
import io
import json
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, utils
from fastnn.callbacks import History
from fastnn.layers import Add, Dense, Dropout
from fastnn.models import load_model
from fastnn.saving import FormatError


def _model(seed=0):
    utils.set_random_seed(seed)
    a = Input(shape=(5,), name="a")
    h = Dense(6, activation="relu", name="h")(a)
    y = Dense(2, name="y")(Add()([Dense(6, name="g")(h), h]))
    return Model(a, y)


def _data(rng, n=40):
    return rng.standard_normal((n, 5)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32)


def _trained(rng, optimizer="adam"):
    model = _model()
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    x, y = _data(rng)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return model, x, y


def _rewrite(data, config_edit=None, drop=(), add=(), replace=None):
    """The bytes of a fastnn file with its config edited and members dropped/added/replaced."""
    src = zipfile.ZipFile(io.BytesIO(data))
    config = json.loads(src.read("fastnn.json"))
    if config_edit:
        config_edit(config)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("fastnn.json", json.dumps(config))
        for name in src.namelist():
            if name == "fastnn.json" or name in drop:
                continue
            z.writestr(name, (replace or {}).get(name, src.read(name)))
        for name, content in add:
            z.writestr(name, content)
    return out.getvalue()


def test_round_trip_resumes_training_exactly(rng, tmp_path):
    for optimizer in ("adam", "rmsprop", "sgd", "nadam"):
        model, x, y = _trained(rng, optimizer)
        model.save(tmp_path / "m.fastnn")
        loaded = load_model(tmp_path / "m.fastnn")
        assert loaded.optimizer.iterations == model.optimizer.iterations == 15
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        loaded.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        for a, b in zip(model.get_weights(), loaded.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_nan_weights_save_and_load(rng, tmp_path):
    model, x, _ = _trained(rng)
    model.layers[1].kernel[0, 0] = np.nan  # as a diverged fit leaves them
    model.save(tmp_path / "nan.fastnn")
    loaded = load_model(tmp_path / "nan.fastnn")
    assert np.isnan(loaded.layers[1].kernel[0, 0])
    model.save_weights(tmp_path / "nan.weights")
    other = _model(1)
    other.load_weights(tmp_path / "nan.weights")
    assert np.isnan(other.layers[1].kernel[0, 0])


def test_file_objects_and_bytes(rng):
    model, x, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    np.testing.assert_array_equal(load_model(buf).predict(x), model.predict(x))
    wbuf = io.BytesIO()
    model.save_weights(wbuf)
    other = _model(3)
    other.load_weights(io.BytesIO(wbuf.getvalue()))
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_pickle_copy_deepcopy_are_independent(rng):
    model, x, y = _trained(rng)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        np.testing.assert_array_equal(clone.predict(x), model.predict(x))
        assert clone.optimizer.get_config() == model.optimizer.get_config()
        clone.fit(x, y, epochs=1, verbose=0)
        assert not np.array_equal(clone.predict(x), model.predict(x))  # its own weights
    unbuilt = pickle.loads(pickle.dumps(Sequential([Dense(3), Dropout(0.5)])))
    assert [type(layer) for layer in unbuilt.layers] == [Dense, Dropout]


def test_history_pickles(rng):
    model, x, y = _trained(rng)
    history = model.fit(x, y, epochs=2, verbose=0)
    again = pickle.loads(pickle.dumps(history))
    assert isinstance(again, History) and again.history == history.history
    assert again.model is None


def test_permissions_follow_the_umask_and_no_temporary_is_left(rng, tmp_path):
    model, _, _ = _trained(rng)
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.fastnn")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.fastnn").st_mode & 0o777) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["m.fastnn"]
    with pytest.raises(OSError):
        model.save(tmp_path / "no-such-folder" / "m.fastnn")
    assert sorted(os.listdir(tmp_path)) == ["m.fastnn"]


def test_hostile_declared_shapes_do_not_allocate(rng, tmp_path):
    """A tiny file declaring a 20000 x 20000 layer (1.6 GB) fails before any allocation."""
    model, _, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)

    def huge_layer(config):
        for layer in config["architecture"]["layers"]:
            if layer["config"]["name"] == "h":
                layer["config"]["units"] = 20000
        config["architecture"]["inputs"][0]["shape"] = [20000]

    def huge_array(config):
        config["arrays"][0]["shape"] = [40000, 40000]

    def many_arrays(config):
        config["arrays"] = [dict(config["arrays"][0], name=f"x{i}", shape=[1 << 20, 1 << 10])
                            for i in range(10)]

    for edit in (huge_layer, huge_array, many_arrays):
        hostile = _rewrite(buf.getvalue(), edit)
        assert len(hostile) < 20000
        tracemalloc.start()
        with pytest.raises(FormatError):
            load_model(io.BytesIO(hostile))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 100 << 20, f"{edit.__name__}: {peak / 2**20:.0f} MB"


def test_zip_bomb_member_is_refused_unread(rng):
    model, _, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
        for name in src.namelist():
            content = src.read(name)
            if name == "arrays/weight_0.npy":
                content = content + b"\0" * (200 << 20)  # 200 MB of zeros, a few hundred KB zipped
            z.writestr(name, content)
    tracemalloc.start()
    with pytest.raises(FormatError, match="holds .* bytes for shape"):
        load_model(io.BytesIO(bomb.getvalue()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100 << 20


@pytest.mark.parametrize("case", ["missing member", "extra member", "bad checksum", "bad json",
                                  "deep json", "no arrays", "wrong version", "unknown layer",
                                  "unknown optimizer", "getattr name", "wrong array shape",
                                  "huge config"])
def test_damaged_files_raise_format_error(rng, case):
    model, _, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)
    data = buf.getvalue()
    first = "arrays/weight_0.npy"
    flipped = bytearray(zipfile.ZipFile(io.BytesIO(data)).read(first))
    flipped[-1] ^= 0xFF

    def set_optimizer(name):
        def edit(config):
            config["compile"]["optimizer"] = {"class_name": name, "config": {}}
        return edit

    def bad_layer(config):
        config["architecture"]["layers"][0]["class"] = "os.system"

    def wrong_shape(config):
        config["arrays"][0]["shape"] = [3, 3]

    def deep(config):
        nest = []
        for _ in range(200):
            nest = [nest]
        config["extra"] = nest

    files = {
        "missing member": lambda: _rewrite(data, drop=(first,)),
        "extra member": lambda: _rewrite(data, add=(("evil.py", b"print(1)"),)),
        "bad checksum": lambda: _rewrite(data, replace={first: bytes(flipped)}),
        "bad json": lambda: _rewrite(data, replace={}, add=()) .replace(b'"format"', b'"format'),
        "deep json": lambda: _rewrite(data, deep),
        "no arrays": lambda: _rewrite(data, lambda c: c.pop("arrays")),
        "wrong version": lambda: _rewrite(data, lambda c: c.update(version=99)),
        "unknown layer": lambda: _rewrite(data, bad_layer),
        "unknown optimizer": lambda: _rewrite(data, set_optimizer("NoSuchOptimizer")),
        "getattr name": lambda: _rewrite(data, set_optimizer("get")),
        "wrong array shape": lambda: _rewrite(data, wrong_shape),
        "huge config": lambda: _rewrite(data, lambda c: c.update(pad="x" * (17 << 20))),
    }
    with pytest.raises(FormatError):
        load_model(io.BytesIO(files[case]()))


def test_fuzz_truncations_and_byte_flips(rng):
    """Every truncation point class and many random byte flips: FormatError or a correct
    model, never another exception."""
    model, x, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)
    data = buf.getvalue()
    want = model.predict(x)
    cuts = sorted(set(np.linspace(0, len(data) - 1, 60).astype(int)))
    variants = [data[:c] for c in cuts]
    for _ in range(300):
        b = bytearray(data)
        for pos in rng.integers(0, len(b), size=int(rng.integers(1, 4))):
            b[pos] ^= int(rng.integers(1, 256))
        variants.append(bytes(b))
    outcomes = {"error": 0, "ok": 0}
    for v in variants:
        try:
            loaded = load_model(io.BytesIO(v))
        except FormatError:
            outcomes["error"] += 1
            continue
        # a flip that survived every check (e.g. in zip padding) must not change the model
        np.testing.assert_array_equal(loaded.predict(x), want)
        outcomes["ok"] += 1
    assert outcomes["error"] > len(variants) // 2


def test_config_checksums_cover_every_array(rng):
    model, _, _ = _trained(rng)
    buf = io.BytesIO()
    model.save(buf)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    config = json.loads(z.read("fastnn.json"))
    assert {a["name"] for a in config["arrays"]} == {
        n[len("arrays/"):-4] for n in z.namelist() if n.startswith("arrays/")}
    for a in config["arrays"]:
        assert hashlib.sha256(z.read(f"arrays/{a['name']}.npy")).hexdigest() == a["sha256"]
    assert config["optimizer"]["iterations"] == 15
    assert len(config["optimizer"]["slots"]) == len(model._opt_state.slots)
