"""Keras files in: models and weights saved by Keras, read into fastnn models.

- ``.keras`` (Keras 3): a zip holding ``config.json`` (the model's config and compile
  settings) and ``model.weights.h5``, where each layer's variables sit in a group
  ``layers/<path>/vars`` as datasets ``0, 1, ...`` in the layer's order (trainable
  variables first). The path is Keras' attribute walk: ``layers/`` then the layer's class
  in snake case, numbered per class in the order of ``model.layers`` (``dense``,
  ``dense_1``, ...; a nested model adds ``/layers/...``); recent Keras also writes the
  layer's own name as the ``name`` attribute of its ``vars`` group.
- ``.h5`` (tf.keras 2, or Keras 3's legacy ``save("x.h5")``): an HDF5 file with the
  model's config in the ``model_config`` attribute, compile settings in
  ``training_config``, and ``model_weights/<layer name>/`` groups whose ``weight_names``
  attribute lists the layer's datasets (``dense/kernel:0``, ...).
- ``.weights.h5``: either layout's weights alone, for ``model.load_weights``.

Layers are matched by name: a model read from a file gets its layers' names from the
config, and the weights of each layer are those recorded under that name. When the names
of a fastnn model given to ``load_weights`` are not the file's (a model built anew numbers
its layers on), the weights go where Keras itself would put them: by the Keras path above
(``.weights.h5``) or by the order of the layers holding weights (legacy ``.h5``), each
array checked against the shape it fills. Weights are all checked before any is written.

A Keras layer maps to the fastnn layer of the same class name in ``fastnn.layers``, its
config to that class's arguments (Keras' names; serialized initializers, regularizers and
constraints as fastnn's get() functions read them). An initializer fastnn lacks leaves the
layer's default (it does not change loaded weights); a regularizer or constraint argument
the fastnn layer lacks is dropped with a warning (it changes training only). Anything
else that fastnn cannot honour raises ValueError naming the layer and its class.
Compile settings (optimizer, loss, metrics, loss weights) are read when fastnn has them,
as Keras' ``load_model(compile=True)`` does; otherwise the model loads uncompiled with a
warning saying why. Optimizer state is not read. h5py is imported on first use only.
"""
from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from fastnn._typing import PathLike

if TYPE_CHECKING:
    from fastnn.models.model import Model

_CONFIG_MAX_BYTES = 64 << 20   # a config.json larger than this is not a model's
# a zip member larger than this and than _MAX_EXPANSION times its stored bytes is refused
# (a decompression bomb: Keras stores members uncompressed)
_BOMB_FLOOR_BYTES, _MAX_EXPANSION = 64 << 20, 100
_MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Keras config keys with no bearing on what fastnn computes
_SKIPPED_KEYS = {"dtype", "batch_input_shape", "batch_shape", "input_shape", "input_length"}
# tf.keras 2 argument names that Keras 3 renamed: {class: {old: new}}
_RENAMED = {"LeakyReLU": {"alpha": "negative_slope"}}
# Keras arguments fastnn may lack, harmless at these values
_NEUTRAL = {"sparse": False, "ragged": False, "optional": False, "synchronized": False,
            "renorm": False, "renorm_momentum": 0.99, "autocast": True, "mask_zero": False}
_TRAINING_ONLY = ("_regularizer", "_constraint")   # key suffixes
# tf.keras 2 optimizer config keys with no Keras 3 meaning
_OLD_OPTIMIZER_KEYS = ("jit_compile", "is_legacy_optimizer")


class KerasFileError(ValueError):
    """A Keras file that fastnn cannot read, and why."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Reading Keras .keras and .h5 files needs h5py: "
                          "pip install fastnn[keras]  (or: pip install h5py)") from None
    return h5py


# ---- which files are Keras' -------------------------------------------------------------

def is_keras_file(filepath: Any) -> bool:
    """Whether filepath names a Keras file (by its suffix: .keras, .h5, .hdf5), as opposed
    to a fastnn file saved under such a name (a zip without Keras' config.json)."""
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    path = os.fspath(filepath)
    if not isinstance(path, str) or not path.lower().endswith((".keras", ".h5", ".hdf5")):
        return False
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return "config.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        pass
    return True  # HDF5, or damaged: the Keras reader says what is wrong


# ---- public entry points ---------------------------------------------------------------

def load_model(filepath: PathLike, compile: bool = True) -> Model:
    """The fastnn model a Keras ``.keras`` or ``.h5`` file describes, with its weights and
    (compile=True, when fastnn supports them) its compile settings."""
    path = os.fspath(filepath)
    h5py = _h5py()
    with _reading(path):
        if path.lower().endswith(".keras") or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                config = json.loads(_zip_member(zf, "config.json"))
                names = zf.namelist()
                if "model.weights.h5" not in names:
                    raise KerasFileError(
                        f"{path!r} holds no model.weights.h5 (members: {names}); fastnn "
                        "reads .keras files saved with Keras' default weights format")
                weights = io.BytesIO(_zip_member(zf, "model.weights.h5", limit=None))
            _check_config(config, path)
            model, tree = _Builder().model(config)
            with h5py.File(weights, "r") as f:
                values = _keras3_weights(f, tree)
            compile_config = config.get("compile_config") or None
        else:
            with h5py.File(path, "r") as f:
                if "model_config" not in f.attrs:
                    raise KerasFileError(
                        f"{path!r} has no model_config attribute: it is not a Keras model "
                        "file (weights alone load with model.load_weights)")
                config = json.loads(_text(f.attrs["model_config"]))
                _check_config(config, path)
                model, tree = _Builder().model(config)
                values = _legacy_weights(_group(f, "model_weights"), tree)
                training = f.attrs.get("training_config")
                compile_config = _legacy_compile(json.loads(_text(training))) \
                    if training is not None else None
    _set_weights(model, values)
    if compile and compile_config:
        _compile(model, compile_config)
    return model


def load_weights(model: Model, filepath: PathLike) -> None:
    """Loads a Keras weights file (``.weights.h5`` of Keras 3, a legacy ``.h5`` model or
    weights file, or the weights in a ``.keras`` archive) into the built fastnn model, all
    arrays or none."""
    model._require_built("load_weights()")
    path = os.fspath(filepath)
    h5py = _h5py()
    tree = _tree_of(model)
    with _reading(path):
        source = path
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                source = io.BytesIO(_zip_member(zf, "model.weights.h5", limit=None))
        with h5py.File(source, "r") as f:
            if "layers" in f or "vars" in f:
                values = _keras3_weights(f, tree)
            elif "model_weights" in f:
                values = _legacy_weights(_group(f, "model_weights"), tree)
            elif "layer_names" in f.attrs:
                values = _legacy_weights(f, tree)
            else:
                raise KerasFileError(f"{path!r} holds no Keras weights (no layers/ group "
                                     "and no layer_names attribute)")
    _set_weights(model, values)


class _reading:
    """Turns what a damaged or foreign file makes the parsers raise into one ValueError
    naming the file; fastnn's own verdicts (KerasFileError) pass unchanged."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if kind is None or issubclass(kind, (KerasFileError, ImportError, FileNotFoundError,
                                             IsADirectoryError, PermissionError)):
            return False  # as fastnn's own loader: a missing file is FileNotFoundError
        if issubclass(kind, (OSError, ValueError, KeyError, TypeError, IndexError,
                             AttributeError, zipfile.BadZipFile, RuntimeError)):
            raise KerasFileError(f"{self.path!r} is not a readable Keras file: "
                                 f"{kind.__name__}: {error}") from None
        return False


def _zip_member(zf, name, limit=_CONFIG_MAX_BYTES):
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise KerasFileError(f"the archive has no {name}: it is not a Keras .keras "
                             "file") from None
    if limit is not None and info.file_size > limit:
        raise KerasFileError(f"{name} declares {info.file_size} bytes, more than a model "
                             f"config can need ({limit})")
    if info.file_size > max(_BOMB_FLOOR_BYTES, _MAX_EXPANSION * info.compress_size):
        raise KerasFileError(f"{name} declares {info.file_size} bytes from "
                             f"{info.compress_size} stored: refused as a decompression bomb")
    return zf.read(name)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _check_config(config, path):
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasFileError(f"{path!r}: the model config is not a Keras model's "
                             f"(no class_name)")


def _group(parent, name):
    h5py = _h5py()
    obj = parent.get(name)
    if not isinstance(obj, h5py.Group):
        raise KerasFileError(f"the file has no group {name!r}")
    return obj


# ---- config -> fastnn model ------------------------------------------------------------

def _fastnn_layer_class(keras_class):
    from fastnn import layers
    from fastnn.layers.core import InputLayer, Layer
    exported = isinstance(keras_class, str) and keras_class in layers.__all__
    cls = getattr(layers, keras_class) if exported else None  # only names fastnn exports
    if (isinstance(cls, type) and issubclass(cls, Layer) and cls not in (Layer, InputLayer)
            and not keras_class.startswith("_")):
        return cls
    return None


def _init_arguments(cls):
    """The argument names cls.__init__ declares, along its bases up to fastnn's Layer."""
    import inspect
    from fastnn.layers.core import Layer
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names.update(p.name for p in inspect.signature(klass.__init__).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if klass is Layer:
            break
    return names - {"self"}


def _plain_object(value):
    """A serialized Keras object as fastnn's get() functions take it: {"class_name",
    "config"} (Keras 3 adds "module" and "registered_name")."""
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"], "config": value.get("config") or {}}
    return value


def _initializer(value):
    """The fastnn initializer for a Keras one (its class and settings, or its name), or None
    when fastnn has no such initializer."""
    from fastnn import initializers
    for candidate in (_plain_object(value), _object_name(value)):
        try:
            initializers.get(candidate)
            return candidate
        except (ValueError, TypeError):
            pass
    return None


def _object_name(value):
    """'relu' from 'relu' or from a serialized function/object of that name."""
    from fastnn.utils import to_snake_case
    if isinstance(value, dict) and "class_name" in value:
        if value["class_name"] == "function":
            return value.get("config")
        return to_snake_case(value["class_name"])
    return value


class _Builder:
    """Builds fastnn layers and models from Keras configs (Keras 3's and the legacy
    layout), and a tree of the layers (class, name, layer, children) for the weights."""

    def model(self, spec):
        kind, config = spec.get("class_name"), spec.get("config")
        if kind == "Sequential":
            return self.sequential(config if isinstance(config, dict) else {"layers": config})
        if kind in ("Functional", "Model"):
            return self.functional(config)
        raise KerasFileError(
            f"cannot read a Keras model of class {kind!r}: fastnn reads Sequential and "
            "functional models (a subclassed model's code is not in its file)")

    # -- layers -----------------------------------------------------------------
    def layer(self, spec):
        """(fastnn layer, children tree or None) for one Keras layer config."""
        kind = spec.get("class_name")
        config = spec.get("config") or {}
        name = config.get("name", spec.get("name"))
        if kind in _MODEL_CLASSES:
            return self.model(spec)
        cls = _fastnn_layer_class(kind)
        if cls is None:
            raise KerasFileError(f"Keras layer {name!r} of class {kind!r} has no fastnn "
                                 f"counterpart (fastnn.layers has no {kind})")
        try:
            return cls(**self.arguments(cls, config, name, kind)), None
        except (ValueError, TypeError) as e:
            raise KerasFileError(f"Keras layer {name!r} ({kind}) cannot be read into "
                                 f"fastnn: {e}") from None

    def arguments(self, cls, config, name, kind):
        accepted = _init_arguments(cls)
        out = {}
        for key, value in config.items():
            key = key if key in accepted else _RENAMED.get(kind, {}).get(key, key)
            if key in _SKIPPED_KEYS or (key in _NEUTRAL and value == _NEUTRAL[key]):
                continue
            if value is None and key not in accepted:
                continue  # an unset Keras option
            if key.endswith("_initializer"):
                value = _initializer(value)
                if value is None:
                    continue  # fastnn's default: loaded weights do not depend on it
            elif key == "activation":
                value = _object_name(value)
            elif key == "axis" and isinstance(value, list) and len(value) == 1:
                value = value[0]  # tf.keras 2 wrote a built layer's axis as a list
            elif key.endswith(_TRAINING_ONLY) and key not in accepted:
                warnings.warn(f"Keras layer {name!r} ({kind}): {key}={value!r} is ignored "
                              "(fastnn has no such argument); outputs are unchanged, further "
                              "training is not regularized or constrained", stacklevel=4)
                continue
            out[key] = _plain_object(value)
        return out

    @staticmethod
    def input_shape(config, where):
        for key in ("batch_shape", "batch_input_shape"):
            shape = config.get(key)
            if shape is not None:
                if not isinstance(shape, (list, tuple)) or len(shape) < 2:
                    raise KerasFileError(f"{where}: {key}={shape!r} is not a batch shape")
                return tuple(shape[1:])
        return None

    def input_layer(self, spec):
        from fastnn.layers import Input
        config = spec.get("config") or {}
        name = config.get("name", spec.get("name"))
        for key in ("sparse", "ragged", "optional"):
            if config.get(key):
                raise KerasFileError(f"Keras input {name!r}: {key} inputs are not supported")
        shape = self.input_shape(config, f"Keras input {name!r}")
        if shape is None:
            raise KerasFileError(f"Keras input {name!r} has no batch_shape")
        try:
            return Input(shape=shape, name=name)
        except (ValueError, TypeError) as e:
            raise KerasFileError(f"Keras input {name!r} cannot be read into fastnn: "
                                 f"{e}") from None

    # -- models -----------------------------------------------------------------
    def sequential(self, config):
        from fastnn.models import Sequential
        specs = list(config.get("layers") or [])
        if not specs:
            raise KerasFileError("the Sequential model has no layers")
        if specs[0].get("class_name") == "InputLayer":
            inp = self.input_layer(specs.pop(0))
        else:  # the input shape sits on the first layer, or on the model
            first = specs[0].get("config") or {}
            shape = self.input_shape(first, "the first layer") or \
                self.input_shape({"batch_shape": config.get("build_input_shape")}, "the model")
            if shape is None:
                raise KerasFileError("the Sequential model has no input shape (it was "
                                     "saved unbuilt)")
            inp = self.input_layer({"config": {"batch_shape": (None,) + shape,
                                               "name": f"{first.get('name', 'input')}_input"}})
        model = Sequential(name=config.get("name"))
        model.add(inp)
        tree = []
        for spec in specs:
            layer, children = self.layer(spec)
            try:
                model.add(layer)
            except (ValueError, TypeError) as e:
                raise KerasFileError(f"Keras layer {layer.name!r} ({spec.get('class_name')}) "
                                     f"cannot be read into fastnn: {e}") from None
            tree.append((spec.get("class_name"), layer.name, layer, children))
        if config.get("trainable") is False:
            model.trainable = False
        return model, tree

    def functional(self, config):
        from fastnn.layers.merge import _Merge
        from fastnn.models import Model
        made, layers, tree, pending, first_call = {}, {}, [], [], {}
        for spec in config.get("layers") or []:
            kind = spec.get("class_name")
            name = spec.get("name", (spec.get("config") or {}).get("name"))
            if kind == "InputLayer":
                t = self.input_layer(spec)
                made[(name, 0)] = t
                tree.append((kind, name, t._layer, None))
                continue
            layer, children = self.layer(spec)
            layers[name] = layer
            tree.append((kind, name, layer, children))
            pending.append([name, [self.node(n, name) for n in spec.get("inbound_nodes") or []]])
        ins = _endpoints(config.get("input_layers"), "input_layers")
        outs = _endpoints(config.get("output_layers"), "output_layers")
        # A nested model's calls are numbered from 1 when its own graph counted as node 0
        # (Keras 3: functional models; tf.keras 2: also a Sequential built with an input):
        # then no reference names its node 0.
        used = {ref for _, calls in pending for call in calls for ref in _flat(call)}
        used.update(ins[0] + outs[0])
        for name, layer in layers.items():
            first_call[name] = int(isinstance(layer, Model) and (name, 0) not in used)
        while pending:  # each layer's calls in order, once their inputs exist (as Keras)
            progress = False
            for entry in pending:
                name, calls = entry
                while calls and _resolvable(calls[0], made):
                    arg = _resolve(calls.pop(0), made)
                    layer = layers[name]
                    if isinstance(layer, _Merge) and not isinstance(arg, list):
                        arg = [arg]
                    index = first_call[name] + sum(1 for key in made if key[0] == name)
                    try:
                        made[(name, index)] = layer(arg)
                    except (ValueError, TypeError) as e:
                        raise KerasFileError(f"Keras layer {name!r} ({type(layer).__name__}) "
                                             f"cannot be read into fastnn: {e}") from None
                    progress = True
            pending = [entry for entry in pending if entry[1]]
            if pending and not progress:
                raise KerasFileError("the functional model's graph cannot be resolved: calls "
                                     f"of {[entry[0] for entry in pending]} wait for inputs "
                                     "that no layer makes")
        (ins, list_ins), (outs, list_outs) = ins, outs
        missing = [ref for ref in ins + outs if ref not in made]
        if missing:
            raise KerasFileError(f"the model's inputs or outputs name tensors no layer "
                                 f"makes: {missing}")
        ins, outs = [made[ref] for ref in ins], [made[ref] for ref in outs]
        try:
            model = Model(ins if list_ins else ins[0], outs if list_outs else outs[0],
                          name=config.get("name"))
        except (ValueError, TypeError) as e:
            raise KerasFileError(f"the functional model cannot be read into fastnn: {e}") \
                from None
        if config.get("trainable") is False:
            model.trainable = False
        return model, tree

    @staticmethod
    def node(data, name):
        """One call of a layer as a structure of (layer, node, tensor) references: Keras 3's
        {"args": [...], "kwargs": {...}} or the legacy [[layer, node, tensor, kwargs], ...]."""
        where = f"a call of layer {name!r}"
        if isinstance(data, dict):
            args, kwargs = data.get("args") or [], data.get("kwargs") or {}
            if len(args) != 1:
                raise KerasFileError(f"{where} passes {len(args)} positional arguments; "
                                     "fastnn layers take one input (a tensor or a list)")
            _check_call_kwargs(kwargs, where)
            return _references(args[0], where)
        if not isinstance(data, list) or not data:
            raise KerasFileError(f"{where} is not a Keras node: {data!r}")
        refs = []
        for item in data:
            if not isinstance(item, list) or len(item) not in (3, 4):
                raise KerasFileError(f"{where} is not a Keras node: {data!r}")
            if len(item) == 4:
                _check_call_kwargs(item[3], where)
            refs.append(_reference(item[:3], where))
        return refs[0] if len(refs) == 1 else refs


def _check_call_kwargs(kwargs, where):
    if not isinstance(kwargs, dict):
        raise KerasFileError(f"{where} has call arguments {kwargs!r}")
    # unset options pass; training=False is what inference does anyway
    extra = {k: v for k, v in kwargs.items()
             if v is not None and not (k == "training" and v is False)}
    if extra:
        raise KerasFileError(f"{where} passes {extra}; fastnn layer calls take no keyword "
                             "arguments")


def _reference(item, where):
    name, node, tensor = item
    if not isinstance(name, str) or not all(isinstance(i, int) and not isinstance(i, bool)
                                            and i >= 0 for i in (node, tensor)):
        raise KerasFileError(f"{where}: {item!r} is not a tensor reference")
    if tensor != 0:
        raise KerasFileError(f"{where} reads output {tensor} of layer {name!r}; fastnn "
                             "layers have one output")
    return (name, node)


def _references(value, where):
    """Keras 3 call arguments: a serialized tensor, or a list of them."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        return _reference(list((value.get("config") or {}).get("keras_history") or []) or
                          [None, None, None], where)
    if isinstance(value, (list, tuple)):
        return [_references(v, where) for v in value]
    raise KerasFileError(f"{where} takes {value!r}; fastnn layers take tensors")


def _flat(refs):
    return [r for item in refs for r in _flat(item)] if isinstance(refs, list) else [refs]


def _resolvable(refs, made):
    return all(r in made for r in _flat(refs))


def _resolve(refs, made):
    if isinstance(refs, list):
        return [_resolve(r, made) for r in refs]
    return made[refs]


def _endpoints(value, key):
    """The references input_layers/output_layers hold (one, or a list or dict of them),
    and whether the model takes/gives a list."""
    where = f"the model's {key}"
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [_reference(value, where)], False
    if isinstance(value, (list, dict)) and value:
        items = value.values() if isinstance(value, dict) else value
        return [_reference(v, where) for v in items], True
    raise KerasFileError(f"{where} is {value!r}")


def _tree_of(model):
    """The (Keras class, name, layer, children) tree of a fastnn model, in the order of
    model.layers (Keras' order, InputLayers included for functional models)."""
    from fastnn.models import Model, Sequential
    tree = []
    for layer in model.layers:
        if isinstance(layer, Model):
            kind = "Sequential" if isinstance(layer, Sequential) else "Functional"
            tree.append((kind, layer.name, layer, _tree_of(layer)))
        else:
            tree.append((type(layer).__name__, layer.name, layer, None))
    return tree


def _leaves(tree):
    """(name, layer) of every layer holding weights, nested models expanded."""
    for _kind, name, layer, children in tree:
        if children is not None:
            yield from _leaves(children)
        elif layer._weight_entries():
            yield name, layer


# ---- weights ---------------------------------------------------------------------------

def _read_dataset(obj, shape, what):
    h5py = _h5py()
    if not isinstance(obj, h5py.Dataset):
        raise KerasFileError(f"{what} is not a dataset")
    # equal up to axes of length 1: Keras' scalars (a count, axis=None statistics) are
    # 1-element arrays in fastnn
    if tuple(obj.shape) != tuple(shape) and \
            [d for d in obj.shape if d != 1] != [d for d in shape if d != 1]:
        raise KerasFileError(f"{what} has shape {tuple(obj.shape)}, the fastnn layer's weight "
                             f"has shape {tuple(shape)}")
    if obj.dtype.kind not in "fiu":
        raise KerasFileError(f"{what} holds {obj.dtype} values, not numbers")
    return np.asarray(obj[()], dtype=np.float32).reshape(shape)


def _constant_weights(layer):
    """Whether Keras holds this layer's values as constants of its config, with no variables
    in its files (a Normalization given its mean and variance): fastnn's weights then keep
    the values the config gave them."""
    entries = layer._weight_entries()
    return bool(entries) and not any(t for _, t in entries) and \
        layer.get_config().get("mean") is not None


def _own_values(layer):
    return {(id(layer), n): getattr(layer, n).copy() for n, _ in layer._weight_entries()}


def _layer_values(layer, arrays, where):
    """{(id(layer), weight name): array} from the layer's arrays in Keras' order (the
    layer's weights, trainable first, as fastnn orders them too)."""
    entries = layer._weight_entries()
    if len(arrays) != len(entries):
        raise KerasFileError(f"{where} holds {len(arrays)} arrays; fastnn's "
                             f"{type(layer).__name__} '{layer.name}' has {len(entries)} "
                             f"({[n for n, _ in entries]})")
    return {(id(layer), n): get(getattr(layer, n).shape)
            for (n, _), get in zip(entries, arrays)}


def _keras3_weights(f, tree):
    """Each layer's arrays from a Keras 3 weights file: the vars group recorded under the
    layer's name, or when the file's names are not the model's, the group at the layer's
    Keras path (as Keras' own load_weights finds it)."""
    h5py = _h5py()
    from fastnn.utils import to_snake_case
    by_path = {}

    def paths(entries, prefix):
        used = {}
        for kind, name, layer, children in entries:
            base = to_snake_case(kind)
            n = used.get(base, -1) + 1
            used[base] = n
            path = f"{prefix}layers/{base}" + (f"_{n}" if n else "")
            if children is not None:
                paths(children, path + "/")
            else:
                by_path[id(layer)] = path + "/vars"
    paths(tree, "")

    by_name, seen = {}, set()

    def index(group):
        for key, child in group.items():
            if not isinstance(child, h5py.Group):
                continue
            if key == "vars":
                name = child.attrs.get("name")
                if name is not None:
                    name = _text(name)
                    by_name[name] = None if name in seen else child.name
                    seen.add(name)
            else:
                index(child)
    if isinstance(f.get("layers"), h5py.Group):
        index(f["layers"])

    leaves = list(_leaves(tree))
    use_names = bool(leaves) and all(by_name.get(name) for name, _ in leaves)
    values, used = {}, set()
    for name, layer in leaves:
        path = by_name[name] if use_names else by_path[id(layer)]
        group = f.get(path)
        where = f"the weights of layer '{name}' ({path.lstrip('/')})"
        if not (isinstance(group, h5py.Group) and len(group)) and _constant_weights(layer):
            values.update(_own_values(layer))
            continue
        if not isinstance(group, h5py.Group):
            raise KerasFileError(f"{where} are missing from the file")
        keys = sorted((k for k in group.keys()), key=lambda k: (len(k), k))
        if keys != [str(i) for i in range(len(keys))]:
            raise KerasFileError(f"{where}: datasets {keys} are not Keras' 0, 1, ...")
        arrays = [lambda shape, k=k, g=group: _read_dataset(g[k], shape, f"{where}/{k}")
                  for k in keys]
        values.update(_layer_values(layer, arrays, where))
        used.add(group.name)
    unused = []

    def check(group):
        for key, child in group.items():
            if isinstance(child, h5py.Group):
                if key == "vars" and len(child) and child.name not in used:
                    unused.append(child.name.lstrip("/"))
                elif key != "vars":
                    check(child)
    if isinstance(f.get("layers"), h5py.Group):
        check(f["layers"])
    if unused:
        raise KerasFileError(f"the file holds weights that no layer of the model takes: "
                             f"{unused}")
    return values


def _attribute_list(group, name):
    """A list attribute, also in the chunks (name0, name1, ...) Keras writes when it is
    large."""
    if name in group.attrs:
        raw = list(group.attrs[name])
    else:
        raw, i = [], 0
        while f"{name}{i}" in group.attrs:
            raw.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [_text(v) for v in raw]


def _legacy_weights(group, tree):
    """Each layer's arrays from a legacy HDF5 weights group: the group of the layer's name
    (or, when the file's names are not the model's, the layers holding weights in order, as
    Keras' legacy loader does); inside it, arrays by weight name, or in order."""
    from fastnn.models import Model
    file_layers = [n for n in _attribute_list(group, "layer_names")
                   if _attribute_list(_group(group, n), "weight_names")]
    values = {}
    top = []
    for _kind, name, layer, children in tree:
        if children is None and _constant_weights(layer) and name not in file_layers:
            values.update(_own_values(layer))
        elif layer._weight_entries() if children is None else layer.weights:
            top.append((name, layer))
    if all(name in file_layers for name, _ in top) and len(top) == len(file_layers):
        pairs = [(name, layer) for name, layer in top]
    elif len(top) == len(file_layers):
        pairs = [(fname, layer) for fname, (_, layer) in zip(file_layers, top)]
    else:
        raise KerasFileError(f"the file holds weights of {len(file_layers)} layers "
                             f"({file_layers}); the model has {len(top)} layers with weights "
                             f"({[n for n, _ in top]})")
    for fname, layer in pairs:
        g = _group(group, fname)
        names = _attribute_list(g, "weight_names")
        where = f"the weights of layer '{fname}'"
        if isinstance(layer, Model):
            values.update(_legacy_nested(g, names, layer, where))
            continue
        own = {n for n, _ in layer._weight_entries()}
        short = [_variable_name(n) for n in names]
        if set(short) == own and len(short) == len(own):  # by name
            order = {n: i for i, n in enumerate(short)}
            names = [names[order[n]] for n, _ in layer._weight_entries()]
        arrays = [lambda shape, n=n: _read_dataset(g.get(n), shape, f"{where}: {n}")
                  for n in names]
        values.update(_layer_values(layer, arrays, where))
    return values


def _variable_name(path):
    """'kernel' from 'dense/kernel:0' or 'sequential/dense/kernel'."""
    return path.rsplit("/", 1)[-1].split(":", 1)[0]


def _legacy_nested(g, names, model, where):
    """A nested model's arrays in a legacy file: one group for the whole model, its weights
    named <layer>/<weight>; else in the legacy order (all trainable, then the rest)."""
    layers = {layer.name: layer for layer, _ in model._weight_layers()}
    entries = model._weight_entries()
    keys = []
    for n in names:
        parts = n.split(":", 1)[0].split("/")
        layer = layers.get(parts[-2]) if len(parts) >= 2 else None
        keys.append((id(layer), parts[-1]) if layer is not None else None)
    wanted = {(id(layer), n) for layer, n, _ in entries}
    if not (None not in keys and set(keys) == wanted and len(keys) == len(wanted)):
        legacy = [e for e in entries if e[2]] + [e for e in entries if not e[2]]
        if len(names) != len(legacy):
            raise KerasFileError(f"{where} holds {len(names)} arrays; fastnn's model "
                                 f"'{model.name}' has {len(legacy)}")
        keys = [(id(layer), n) for layer, n, _ in legacy]
    shapes = {(id(layer), n): getattr(layer, n).shape for layer, n, _ in entries}
    return {key: _read_dataset(g.get(n), shapes[key], f"{where}: {n}")
            for key, n in zip(keys, names)}


def _set_weights(model, values):
    arrays = []
    for layer, name, _ in model._weight_entries():
        value = values.get((id(layer), name))
        if value is None:
            raise KerasFileError(f"the file holds no value for weight {name!r} of layer "
                                 f"'{layer.name}'")
        arrays.append(value)
    try:
        model.set_weights(arrays)
    except ValueError as e:
        raise KerasFileError(f"the file's weights cannot be loaded: {e}") from None


# ---- compile settings ------------------------------------------------------------------

def _legacy_compile(training):
    if not isinstance(training, dict):
        return None
    return {"optimizer": training.get("optimizer_config"), "loss": training.get("loss"),
            "metrics": training.get("metrics"), "loss_weights": training.get("loss_weights"),
            "weighted_metrics": training.get("weighted_metrics")}


class _Unsupported(Exception):
    pass


def _compile(model, config):
    from fastnn import losses, metrics
    try:
        if config.get("weighted_metrics"):
            raise _Unsupported(f"weighted_metrics={config['weighted_metrics']!r}")
        args = {"optimizer": _optimizer(config.get("optimizer")),
                "loss": _compile_objects(config.get("loss"), losses.get),
                "metrics": _compile_objects(config.get("metrics"), metrics.get),
                "loss_weights": config.get("loss_weights")}
        if args["loss"] is None:
            raise _Unsupported("no loss")
        model.compile(**args)
    except (_Unsupported, ValueError, TypeError) as e:
        warnings.warn(f"The Keras file's compile settings are not supported by fastnn ({e}): "
                      "the model is loaded uncompiled; compile it with model.compile(...) "
                      "before training.", stacklevel=3)


def _optimizer(value):
    from fastnn import optimizers
    if value is None:
        raise _Unsupported("no optimizer")
    if isinstance(value, str):
        return optimizers.get(value)
    if not isinstance(value, dict):
        raise _Unsupported(f"optimizer={value!r}")
    value = dict(value)
    name = value.get("class_name")
    if isinstance(name, str) and name.startswith("Custom>"):  # tf.keras 2.11's names
        value["class_name"] = name[len("Custom>"):]
    settings = dict(value.get("config") or {})
    for key in _OLD_OPTIMIZER_KEYS:
        settings.pop(key, None)
    if not settings.get("decay"):
        settings.pop("decay", None)
    value["config"] = settings
    return optimizers.deserialize(value)


def _compile_objects(value, get):
    """compile()'s loss or metrics from Keras' compile config: lists and dicts by output
    kept as they are, names checked and kept, serialized objects made by `get`
    (fastnn.losses.get and metrics.get read Keras' class names and settings)."""
    if isinstance(value, list):
        return [_compile_objects(v, get) for v in value]
    if isinstance(value, dict) and "class_name" not in value:   # per output name
        return {k: _compile_objects(v, get) for k, v in value.items()}
    if isinstance(value, dict) and value["class_name"] == "function":
        value = value.get("config")
    if value is None:
        return None
    made = get(_plain_object(value))
    return value if isinstance(value, str) else made
