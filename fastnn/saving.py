"""Save and load models in a documented, pickle-free format.

A saved model is one NumPy .npz archive (written with allow_pickle=False and read
the same way, so loading a file never runs code) holding:

- ``config``: UTF-8 JSON as a uint8 array: ``{"format": "fastnn.model", "version": 1,
  "class": "Sequential" | "Model", "name": ..., "input": {"name": ..., "shape": [...]},
  "layers": [{"class": "Dense", "config": {...}}, ...], "compile": {"optimizer":
  {...}, "loss": {"name": ..., "from_logits": ...}, "metrics": [...]} or null}``;
- ``weight_0``, ``weight_1``, ...: the float32 arrays of ``get_weights()``, in order.

Optimizer slots (e.g. RMSprop's mean squares) are not saved: a loaded model resumes
training with fresh optimizer state. The file is written to a temporary name and
renamed into place, so an interrupted save never leaves a half-written file.
"""
import json
import os
import tempfile

import numpy as np

FORMAT, VERSION = "fastnn.model", 1


def _layer_classes():
    from fastnn.layers import Activation, Dense, Dropout, ReLU
    return {cls.__name__: cls for cls in (Dense, ReLU, Activation, Dropout)}


def model_config(model):
    """The JSON-able description of a built model (architecture and compile settings)."""
    from fastnn.models.sequential import Sequential
    model._require_built("save()")
    classes = _layer_classes()
    layers = []
    for layer in model._chain:
        if type(layer).__name__ not in classes:
            raise ValueError(f"cannot save layer '{layer.name}' of type {type(layer).__name__}")
        config = layer.get_config()
        config.pop("input_shape", None)  # the model's input carries it
        layers.append({"class": type(layer).__name__, "config": config})
    compiled = None
    if model.loss is not None:
        compiled = {"optimizer": model.optimizer.get_config(), "loss": model.loss.get_config(),
                    "metrics": [name for _, name in model._metrics]}
    return {"format": FORMAT, "version": VERSION,
            "class": "Sequential" if isinstance(model, Sequential) else "Model",
            "name": model.name,
            "input": {"name": model._input_layer.name,
                      "shape": list(model._input_layer.output_shape[1:])},
            "layers": layers, "compile": compiled}


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
    from fastnn import losses, optimizers
    from fastnn.layers import Input
    from fastnn.models.model import Model
    from fastnn.models.sequential import Sequential

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
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError) as e:
        raise ValueError(f"{filepath!r} is not a valid fastnn model file: {e}") from None

    classes = _layer_classes()
    layers = []
    for spec in config["layers"]:
        if spec.get("class") not in classes:
            raise ValueError(f"{filepath!r}: unknown layer class {spec.get('class')!r}")
        layers.append(classes[spec["class"]].from_config(spec["config"]))
    inp = Input(shape=tuple(config["input"]["shape"]), name=config["input"]["name"])
    if config["class"] == "Sequential":
        model = Sequential([inp] + layers, name=config["name"])
    else:
        t = inp
        for layer in layers:
            t = layer(t)
        model = Model(inp, t, name=config["name"])
    model.set_weights(weights)
    if compile and config.get("compile"):
        c = config["compile"]
        opt_config = dict(c["optimizer"])
        opt_class = getattr(optimizers, opt_config.pop("name"))
        loss_config = dict(c["loss"])
        loss = losses.get(loss_config.pop("name"))
        if loss_config:  # e.g. from_logits
            loss = type(loss)(**loss_config)
        model.compile(optimizer=opt_class(**opt_config), loss=loss, metrics=c["metrics"] or None)
    return model
