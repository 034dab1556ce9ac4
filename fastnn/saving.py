"""Save and load models in a documented, pickle-free format.

A saved model is one NumPy .npz archive (written with allow_pickle=False and read
the same way, so loading a file never runs code) holding:

- ``config``: UTF-8 JSON as a uint8 array: ``{"format": "fastnn.model", "version": 2,
  "class": "Sequential" | "Model", "architecture": {...}, "compile": {"optimizer": {...},
  "loss": ..., "metrics": ..., "loss_weights": ...} or null}``. A Sequential's
  architecture is its input and its stack of layers; any other model's is its inputs,
  its layers (``{"class": "Dense", "config": {...}}``; a nested model nests its own
  architecture), the nodes of its graph in topological order (``[layer name, [[input
  layer, call index], ...]]``) and its outputs. Layer classes are looked up among those
  ``fastnn.layers`` exports: a new layer needs no change here;
- ``weight_0``, ``weight_1``, ...: the float32 arrays of ``get_weights()``, in order.

Optimizer slots (e.g. RMSprop's mean squares) are not saved: a loaded model resumes
training with fresh optimizer state. The file is written to a temporary name and
renamed into place, so an interrupted save never leaves a half-written file.
"""
import json
import os
import tempfile

import numpy as np

FORMAT, VERSION = "fastnn.model", 2


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
    from fastnn.layers import Input
    from fastnn.models import Model, Sequential

    def make_layer(entry):
        if entry["class"] in ("Model", "Sequential"):
            return _rebuild(entry["class"], entry["config"])
        return _layer_class(entry["class"]).from_config(entry["config"])

    if kind == "Sequential":
        inp = Input(shape=tuple(arch["input"]["shape"]), name=arch["input"]["name"])
        model = Sequential([inp] + [make_layer(e) for e in arch["layers"]], name=arch["name"])
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
    model.trainable = arch.get("trainable", True)
    return model


def _merge_base():
    from fastnn.layers.merge import _Merge
    return _Merge


def model_config(model):
    """The JSON-able description of a built model (architecture and compile settings)."""
    from fastnn.models.sequential import Sequential
    compiled = None
    if model.optimizer is not None:
        from fastnn import optimizers
        compiled = {"optimizer": optimizers.serialize(model.optimizer),
                    "loss": _loss_config(model._loss_arg),
                    "metrics": model._metrics_arg, "loss_weights": model._loss_weights_arg}
    return {"format": FORMAT, "version": VERSION,
            "class": "Sequential" if isinstance(model, Sequential) else "Model",
            "architecture": _architecture(model), "compile": compiled}


def _loss_config(loss):
    from fastnn.losses import Loss
    if isinstance(loss, Loss):
        return {"loss": loss.get_config()}
    if isinstance(loss, dict):
        return {k: _loss_config(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_loss_config(v) for v in loss]
    return loss


def _loss_from_config(config):
    from fastnn import losses
    if isinstance(config, dict) and set(config) == {"loss"}:
        spec = dict(config["loss"])
        loss = losses.get(spec.pop("name"))
        return type(loss)(**spec) if spec else loss
    if isinstance(config, dict):
        return {k: _loss_from_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_loss_from_config(v) for v in config]
    return config


def save_model(model, filepath):
    """Writes model (architecture, weights, compile settings) to filepath, under
    exactly that name."""
    config = json.dumps(model_config(model)).encode("utf-8")
    arrays = {"config": np.frombuffer(config, dtype=np.uint8)}
    for i, w in enumerate(model.get_weights()):
        arrays[f"weight_{i}"] = w
    write_npz(filepath, arrays)


def write_npz(filepath, arrays):
    """np.savez under exactly this name, written to a temporary file and renamed into
    place, so an interrupted save never leaves a half-written file."""
    filepath = os.fspath(filepath)
    folder = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastnn-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, filepath)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_model(filepath, compile=True):
    """Rebuilds a model saved by save_model (or Model.save)."""
    from fastnn import optimizers

    try:
        with np.load(os.fspath(filepath), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{filepath!r} is not a fastnn model file: {e}") from None
    try:
        config = json.loads(arrays.pop("config").tobytes().decode("utf-8"))
        if config.get("format") != FORMAT:
            raise ValueError(f"format is {config.get('format')!r}")
        if config.get("version") != VERSION:
            raise ValueError(f"version {config.get('version')!r}; this fastnn reads {VERSION}")
        weights = [arrays[f"weight_{i}"] for i in range(len(arrays))]
        model = _rebuild(config["class"], config["architecture"])
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{filepath!r} is not a valid fastnn model file: {e}") from None
    model.set_weights(weights)
    if compile and config.get("compile"):
        c = config["compile"]
        model.compile(optimizer=optimizers.deserialize(c["optimizer"]),
                      loss=_loss_from_config(c["loss"]), metrics=c["metrics"],
                      loss_weights=c.get("loss_weights"))
    return model
