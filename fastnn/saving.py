"""Save and load models: the fastnn file format (version 3), built to be loaded from
untrusted sources without running code, exhausting memory or corrupting silently.

A file is a zip archive (members stored, not compressed) holding exactly:

- ``fastnn.json``: UTF-8 JSON, ``{"format": "fastnn.model" | "fastnn.weights",
  "version": 3, "class": "Sequential" | "Model", "architecture": {...}, "compile": {...}
  or null, "arrays": [{"name": ..., "shape": [...], "dtype": "float32", "sha256": ...}],
  "optimizer": {"iterations": ..., "u_product": ..., "slots": [array names]} or null}``.
  A Sequential's architecture is its input and its stack of layers; any other model's is
  its inputs, its layers (``{"class": "Dense", "config": {...}}``; a nested model nests
  its own architecture), the nodes of its graph in topological order (``[layer name,
  [[input layer, call index], ...]]``) and its outputs. Layer classes are looked up among
  those ``fastnn.layers`` exports, optimizers and losses in their modules' registries:
  a name in a file never reaches ``getattr``;
- ``arrays/<name>.npy`` for each array listed: ``weight_0``, ``weight_1``, ... (the
  arrays of ``get_weights()``, in order) and the optimizer's slots (``slot_0``, ...), so
  that training resumes where it stopped.

Loading checks before it allocates: the config's size (MAX_CONFIG_BYTES) and nesting
depth, the member list (nothing missing, nothing extra), each member's stored size
against its declared shape, the total of declared values (MAX_VALUES), and the model's
weight shapes (layers are built without allocating their weights) against the arrays;
then it reads each array, checks its SHA-256, and fills the weights. Every failure is a
``FormatError`` (a ValueError) saying what is wrong. Whatever ``save`` writes, ``load``
reads (NaN weights of a diverged fit included).

Files are written to a temporary file in the same folder, fsynced, given the process
umask's permissions and renamed into place: an interrupted save leaves the old file
and no temporary behind. ``save``/``load_model``/``save_weights``/``load_weights``
take a path or a binary file object; ``dumps``/``loads`` work on bytes (pickle and
copy go through them).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING

import numpy as np

from fastnn._typing import Config, FileLike

if TYPE_CHECKING:
    from fastnn.models.model import Model

FORMAT, WEIGHTS_FORMAT, VERSION = "fastnn.model", "fastnn.weights", 3
CONFIG_MEMBER = "fastnn.json"
MAX_CONFIG_BYTES = 16 << 20   # a config larger than this is not a model's
MAX_DEPTH = 64                 # JSON nesting (models nest models)
MAX_VALUES = 1 << 31           # float32 values a file may declare in all (8 GiB)
_NPY_HEADER_MAX = 4096         # bytes of .npy header allowed beyond the data


class FormatError(ValueError):
    """A file that is not a valid fastnn file (damaged, hostile, or another format)."""


def _layer_class(name):
    """A layer class by name: any Layer that fastnn.layers exports (or a model class)."""
    from fastnn import layers
    from fastnn.layers.core import Layer
    from fastnn.models import Model, Sequential
    cls = {"Model": Model, "Sequential": Sequential}.get(name) or getattr(layers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or name.startswith("_"):
        raise ValueError(f"unknown layer class {name!r}")
    return cls


def _architecture(model):
    """A model's layers and how they connect, JSON-able. Sequential: its stack; any other
    model (functional, or a subclassed one as traced): its layers and its graph's nodes in
    topological order, each node naming its layer and its inputs as [layer, call]."""
    from fastnn.layers.core import InputLayer
    from fastnn.models import Model, Sequential

    def layer_entry(layer):
        if isinstance(layer, Model):
            return {"class": "Sequential" if isinstance(layer, Sequential) else "Model",
                    "config": _architecture(layer)}
        if type(layer) is not _layer_class(type(layer).__name__):
            raise ValueError(f"cannot save layer '{layer.name}' of type {type(layer).__name__}")
        config = layer.get_config()
        config.pop("input_shape", None)  # the model's input carries it
        return {"class": type(layer).__name__, "config": config}

    if isinstance(model, Sequential) and model._graph is None:  # waits for its input shape
        return {"name": model.name, "trainable": model.trainable, "input": None,
                "layers": [layer_entry(layer) for layer in model.layers]}
    model._require_built("save()")
    if isinstance(model, Sequential):
        inp = model._graph.inputs[0]._layer
        return {"name": model.name, "trainable": model.trainable,
                "input": {"name": inp.name, "shape": list(inp.output_shape[1:])},
                "layers": [layer_entry(layer) for layer in model.layers]}
    graph = model._graph
    calls, refs = {}, {}
    for t in graph.inputs:
        refs[id(t)] = [t.name, 0]
    nodes = []
    for t in graph.nodes:
        index = calls.get(id(t._layer), 0)
        calls[id(t._layer)] = index + 1
        refs[id(t)] = [t._layer.name, index]
        nodes.append([t._layer.name, [refs[id(i)] for i in t._inputs]])
    return {"name": model.name, "trainable": model.trainable,
            "inputs": [{"name": t.name, "shape": list(t.shape[1:])} for t in graph.inputs],
            "layers": [layer_entry(layer) for layer in graph.layers
                       if not isinstance(layer, InputLayer)],
            "nodes": nodes, "outputs": [refs[id(t)] for t in graph.outputs],
            "list_inputs": model._list_inputs, "list_outputs": model._list_outputs}


def _rebuild(kind, arch):
    """The model _architecture described (fresh weights)."""
    from fastnn.layers.core import Layer
    from fastnn.layers import Input
    from fastnn.models import Model, Sequential

    def make_layer(entry):
        if entry["class"] in ("Model", "Sequential"):
            return _rebuild(entry["class"], entry["config"])
        return _layer_class(entry["class"]).from_config(entry["config"])

    if kind == "Sequential":
        first = [] if arch["input"] is None else [
            Input(shape=tuple(arch["input"]["shape"]), name=arch["input"]["name"])]
        model = Sequential(first + [make_layer(e) for e in arch["layers"]], name=arch["name"])
    else:
        ins = [Input(shape=tuple(i["shape"]), name=i["name"]) for i in arch["inputs"]]
        layers = {}
        for entry in arch["layers"]:
            layer = make_layer(entry)
            layers[layer.name] = layer
        made = {(t.name, 0): t for t in ins}
        for name, inbound in arch["nodes"]:
            if name not in layers:
                raise ValueError(f"node of unknown layer {name!r}")
            args = [made[(n, i)] for n, i in inbound]
            call = sum(1 for key in made if key[0] == name)
            made[(name, call)] = layers[name](args if len(args) > 1 or
                                              isinstance(layers[name], _merge_base()) else args[0])
        outs = [made[(n, i)] for n, i in arch["outputs"]]
        model = Model(ins if arch.get("list_inputs") else ins[0],
                      outs if arch.get("list_outputs") else outs[0], name=arch["name"])
    # the model's own flag only: each layer's config carries its own (a frozen layer in a
    # trainable model stays frozen)
    Layer.trainable.fset(model, arch.get("trainable", True))
    return model


def _merge_base():
    from fastnn.layers.merge import _Merge
    return _Merge


def model_config(model: Model) -> Config:
    """The JSON-able description of a built model (architecture and compile settings)."""
    from fastnn.models.sequential import Sequential
    compiled = None
    if model.optimizer is not None:
        from fastnn import optimizers
        compiled = {"optimizer": optimizers.serialize(model.optimizer),
                    "loss": _loss_config(model._loss_arg),
                    "metrics": _metrics_config(model._metrics_arg),
                    "weighted_metrics": _metrics_config(
                        model.__dict__.get("_weighted_metrics_arg")),
                    "loss_weights": model._loss_weights_arg}
    return {"format": FORMAT, "version": VERSION,
            "class": "Sequential" if isinstance(model, Sequential) else "Model",
            "architecture": _architecture(model), "compile": compiled}


def _loss_config(loss):
    """compile()'s loss argument as JSON: names stay names, Loss objects become
    {"loss": losses.serialize(...)}; lists and dicts keep their shape."""
    from fastnn import losses
    if isinstance(loss, losses.Loss):
        return {"loss": losses.serialize(loss)}
    if isinstance(loss, dict):
        return {k: _loss_config(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_loss_config(v) for v in loss]
    return loss


def _loss_from_config(config):
    from fastnn import losses
    if isinstance(config, dict) and set(config) == {"loss"}:
        return losses.deserialize(config["loss"])
    if isinstance(config, dict):
        return {k: _loss_from_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_loss_from_config(v) for v in config]
    return config


def _metrics_config(metrics):
    """compile()'s metrics as JSON: Metric objects become {"metric": serialize(...)}."""
    from fastnn import metrics as metrics_module
    if isinstance(metrics, metrics_module.Metric):
        return {"metric": metrics_module.serialize(metrics)}
    if isinstance(metrics, dict):
        return {k: _metrics_config(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [_metrics_config(v) for v in metrics]
    return metrics


def _metrics_from_config(config):
    from fastnn import metrics as metrics_module
    if isinstance(config, dict) and set(config) == {"metric"}:
        return metrics_module.deserialize(config["metric"])
    if isinstance(config, dict):
        return {k: _metrics_from_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_metrics_from_config(v) for v in config]
    return config


# ---- writing ---------------------------------------------------------------------------

def _npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array, dtype=np.float32),
                              allow_pickle=False)
    return buf.getvalue()


def _archive(config, arrays):
    """The zip bytes of a config and its named arrays (checksums recorded in the config)."""
    members, listing = [], []
    for name, array in arrays:
        data = _npy_bytes(array)
        listing.append({"name": name, "shape": list(np.shape(array)), "dtype": "float32",
                        "sha256": hashlib.sha256(data).hexdigest()})
        members.append((f"arrays/{name}.npy", data))
    config = dict(config, arrays=listing)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(CONFIG_MEMBER, json.dumps(config).encode("utf-8"))
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def _optimizer_arrays(model):
    """(config, arrays) of the optimizer's state, or (None, []) before any training."""
    state = getattr(model, "_opt_state", None)
    if state is None or model.optimizer is None:
        return None, []
    n = int(state.size)
    arrays = [(f"slot_{i}", np.asarray(slot)[:n]) for i, slot in enumerate(state.slots)]
    return {"iterations": int(state.iterations), "u_product": float(state.u_product),
            "slots": [name for name, _ in arrays]}, arrays


def dumps(model: Model) -> bytes:
    """The model as the bytes of a fastnn file (architecture, weights, compile settings,
    optimizer state)."""
    config = model_config(model)
    arrays = [(f"weight_{i}", w) for i, w in enumerate(model.get_weights())]
    config["optimizer"], slots = _optimizer_arrays(model)
    return _archive(config, arrays + slots)


def save_model(model: Model, filepath: FileLike) -> None:
    """Writes model to filepath (a path, under exactly that name, or a binary file)."""
    write_bytes(filepath, dumps(model))


def save_weights(model: Model, filepath: FileLike) -> None:
    """Writes get_weights() alone (format "fastnn.weights")."""
    config = {"format": WEIGHTS_FORMAT, "version": VERSION}
    write_bytes(filepath, _archive(config, [(f"weight_{i}", w)
                                            for i, w in enumerate(model.get_weights())]))


def write_bytes(filepath: FileLike, data: bytes) -> None:
    """data to a binary file object, or to a path atomically: a temporary file in the same
    folder, fsynced, with the permissions the umask gives new files, renamed into place."""
    if hasattr(filepath, "write"):
        filepath.write(data)
        return
    filepath = os.fspath(filepath)
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastnn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600: a serving account could not read
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # the rename itself survives a crash once the folder is synced
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ---- reading ---------------------------------------------------------------------------

def _depth(value):
    """Nesting depth of parsed JSON, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


class _Archive:
    """A fastnn file opened for reading: its checked config and a reader of its arrays."""

    def __init__(self, source, want_format):
        name = getattr(source, "name", None) if hasattr(source, "read") else source
        self.label = repr(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else \
            "the data"
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        self._own = None
        if not hasattr(source, "read"):  # a path: a missing file is an OSError, as open()'s
            source = self._own = open(os.fspath(source), "rb")
        try:
            self.zip = zipfile.ZipFile(source)
        except Exception as e:  # zipfile raises many kinds on damaged directories
            if self._own:
                self._own.close()
            raise FormatError(f"{self.label} is not a fastnn file (not a readable zip "
                              f"archive: {type(e).__name__}: {e})") from None
        try:
            self.config = self._read_config(want_format)
        except BaseException:
            self.close()
            raise

    def fail(self, what):
        raise FormatError(f"{self.label} is not a valid fastnn file: {what}")

    def _read_config(self, want_format):
        infos = {i.filename: i for i in self.zip.infolist()}
        if CONFIG_MEMBER not in infos:
            if any(n.endswith(".npy") and "/" not in n for n in infos):
                self.fail("it is an .npz file of fastnn 0.1 (format 1) or 0.2 previews; "
                          f"this fastnn reads format {VERSION}")
            self.fail(f"no {CONFIG_MEMBER} member")
        if infos[CONFIG_MEMBER].file_size > MAX_CONFIG_BYTES:
            self.fail(f"its config declares {infos[CONFIG_MEMBER].file_size} bytes "
                      f"(at most {MAX_CONFIG_BYTES})")
        try:
            config = json.loads(self._member(CONFIG_MEMBER).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            self.fail(f"its config is not JSON ({type(e).__name__})")
        if not isinstance(config, dict) or _depth(config) > MAX_DEPTH:
            self.fail(f"its config is not a JSON object of depth <= {MAX_DEPTH}")
        if config.get("format") not in (FORMAT, WEIGHTS_FORMAT):
            self.fail(f"format is {config.get('format')!r}")
        if config.get("version") != VERSION:
            self.fail(f"version {config.get('version')!r}; this fastnn reads {VERSION}")
        if want_format == FORMAT and config["format"] != FORMAT:
            self.fail("it holds weights only (save_weights): use load_weights")
        listing = config.get("arrays")
        if not isinstance(listing, list):
            self.fail("no array listing")
        self.arrays, total = {}, 0
        for entry in listing:
            ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and
                  entry["name"].replace("_", "").isalnum() and entry.get("dtype") == "float32"
                  and isinstance(entry.get("shape"), list) and len(entry["shape"]) <= 8 and
                  all(type(d) is int and 0 <= d < MAX_VALUES for d in entry["shape"]) and
                  isinstance(entry.get("sha256"), str))
            if not ok or entry["name"] in self.arrays:
                self.fail(f"bad array entry {str(entry)[:200]}")
            size = int(np.prod(entry["shape"], dtype=np.int64)) if entry["shape"] else 1
            total += size
            if total > MAX_VALUES:
                self.fail(f"its arrays declare more than {MAX_VALUES} values")
            member = f"arrays/{entry['name']}.npy"
            if member not in infos:
                self.fail(f"member {member} is missing")
            if infos[member].file_size > 4 * size + _NPY_HEADER_MAX:
                self.fail(f"member {member} holds {infos[member].file_size} bytes for "
                          f"shape {tuple(entry['shape'])}")
            self.arrays[entry["name"]] = entry
        extra = set(infos) - {CONFIG_MEMBER} - {f"arrays/{n}.npy" for n in self.arrays}
        if extra:
            self.fail(f"unexpected members {sorted(extra)[:5]}")
        return config

    def _member(self, name):
        try:
            return self.zip.read(name)
        except Exception as e:  # damaged members: CRC, header, compression errors
            self.fail(f"member {name} cannot be read ({type(e).__name__}: {e})")

    def array(self, name):
        """The checked array `name` (its checksum, dtype and shape as listed)."""
        entry = self.arrays[name]
        data = self._member(f"arrays/{name}.npy")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            self.fail(f"array {name} does not match its checksum (the file is damaged)")
        try:
            array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:
            self.fail(f"array {name} cannot be read ({e})")
        if array.dtype != np.float32 or list(array.shape) != entry["shape"]:
            self.fail(f"array {name} is {array.dtype} {array.shape}, listed as float32 "
                      f"{tuple(entry['shape'])}")
        return np.ascontiguousarray(array)

    def weight_names(self):
        names = [n for n in self.arrays if n.startswith("weight_")]
        if sorted(names) != sorted(f"weight_{i}" for i in range(len(names))):
            self.fail("weights are not numbered weight_0, weight_1, ...")
        return [f"weight_{i}" for i in range(len(names))]

    def close(self):
        self.zip.close()
        if self._own:
            self._own.close()


def _fill_weights(archive, model):
    """Puts the stored weights into a model built without allocating them, after checking
    every shape (nothing is allocated for a file that does not match)."""
    entries = model._weight_entries()
    names = archive.weight_names()
    if len(names) != len(entries):
        archive.fail(f"it stores {len(names)} weight arrays, the model has {len(entries)}")
    for (layer, attr, _), name in zip(entries, names):
        want = tuple(getattr(layer, attr).shape)
        if tuple(archive.arrays[name]["shape"]) != want:
            archive.fail(f"{name} has shape {tuple(archive.arrays[name]['shape'])}, layer "
                         f"'{layer.name}' needs {attr} of shape {want}")
    for (layer, attr, _), name in zip(entries, names):
        setattr(layer, attr, archive.array(name))


def load_model(filepath: FileLike, compile: bool = True) -> Model:
    """Rebuilds a model saved by save_model (or Model.save, pickle): a path or a binary file
    object. A Keras .keras/.h5 file goes to fastnn.export.keras_in."""
    from fastnn.export import keras_in
    if keras_in.is_keras_file(filepath):
        return keras_in.load_model(filepath, compile=compile)
    archive = _Archive(filepath, FORMAT)
    try:
        return _load(archive, compile)
    finally:
        archive.close()


def loads(data: bytes, compile: bool = True) -> Model:
    """The model in the bytes of a fastnn file (as dumps wrote them)."""
    return load_model(io.BytesIO(data), compile=compile)


def _load(archive, compile):
    from fastnn import optimizers
    from fastnn.layers import core

    config = archive.config
    try:
        with core.deferred_weights():  # shapes only: nothing allocated before the checks
            model = _rebuild(config["class"], config["architecture"])
    except FormatError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError,
            RecursionError) as e:
        archive.fail(f"its architecture cannot be built ({type(e).__name__}: {e})")
    _fill_weights(archive, model)
    if compile and config.get("compile"):
        c = config["compile"]
        try:
            model.compile(optimizer=optimizers.deserialize(c["optimizer"]),
                          loss=_loss_from_config(c["loss"]),
                          metrics=_metrics_from_config(c.get("metrics")),
                          weighted_metrics=_metrics_from_config(c.get("weighted_metrics")),
                          loss_weights=c.get("loss_weights"))
        except (KeyError, ValueError, TypeError) as e:
            archive.fail(f"its compile settings are invalid ({type(e).__name__}: {e})")
        _restore_optimizer(archive, model, config.get("optimizer"))
    return model


def _restore_optimizer(archive, model, saved):
    if not saved:
        return
    state = model._optimizer_state()
    names = saved.get("slots")
    if not isinstance(names, list) or len(names) != len(state.slots) or \
            any(n not in archive.arrays for n in names):
        archive.fail("its optimizer slots do not match the optimizer")
    for name, slot in zip(names, state.slots):
        values = archive.array(name)
        if values.shape != (state.size,):
            archive.fail(f"optimizer slot {name} has shape {values.shape}, the optimizer "
                         f"needs ({state.size},)")
        np.asarray(slot)[:state.size] = values
    try:
        state.iterations = int(saved.get("iterations", 0))
        state.u_product = float(saved.get("u_product", 1.0))
    except (TypeError, ValueError, OverflowError) as e:
        archive.fail(f"its optimizer counters are invalid ({e})")


def load_weights(model: Model, filepath: FileLike) -> None:
    """Loads weights written by save_weights (or save) into model, all or nothing."""
    archive = _Archive(filepath, WEIGHTS_FORMAT)
    try:
        own = model.weights
        names = archive.weight_names()
        if len(names) != len(own):
            archive.fail(f"it stores {len(names)} weight arrays, model '{model.name}' has "
                         f"{len(own)}")
        for w, name in zip(own, names):
            if tuple(archive.arrays[name]["shape"]) != w.shape:
                archive.fail(f"{name} has shape {tuple(archive.arrays[name]['shape'])}, the "
                             f"model needs {w.shape}")
        values = [archive.array(name) for name in names]
    finally:
        archive.close()
    for w, v in zip(own, values):  # all read and checked first: no half-loaded model
        w[...] = v
