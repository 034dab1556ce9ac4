"""Seeding and small helpers shared by the package."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional

import numpy as np

from fastnn._typing import ArrayLike, DTypeLike

if TYPE_CHECKING:
    from fastnn.models.model import Model

_rng = None  # made on first use: numpy.random costs ~10 ms to import


def set_random_seed(seed: int) -> None:
    """Seeds every random choice fastnn makes (initial weights, shuffling, dropout).

    The same seed gives bit-identical training on the same machine.
    """
    global _rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    _rng = np.random.default_rng(int(seed))


def rng() -> np.random.Generator:
    """The package-wide generator (seeded by set_random_seed)."""
    global _rng
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def next_seed() -> int:
    """A 63-bit seed for the C shuffler, drawn from the package generator (its raw bits:
    Generator.integers costs ~2.5 us, a tenth of a small model's whole fit call)."""
    return int(rng().bit_generator.random_raw()) >> 1


_name_counts = {}


def to_snake_case(name: str) -> str:
    """'ReLU' -> 're_lu', 'Dense' -> 'dense', as Keras names its layers."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base: str, first: int = 0) -> str:
    """'dense', 'dense_1', 'dense_2', ... per base name, for the whole session
    (first=1 starts at 'base_1', as tf.keras names inputs)."""
    n = _name_counts.get(base, first)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def to_categorical(y: ArrayLike, num_classes: Optional[int] = None,
                   dtype: DTypeLike = "float32") -> np.ndarray:
    """One-hot rows for integer class labels, as keras.utils.to_categorical."""
    labels = np.asarray(y)
    if labels.dtype.kind not in "iuf" or (labels.size and (
            np.any(labels != np.floor(labels)) or labels.min() < 0)):
        raise ValueError("to_categorical takes non-negative integer class labels")
    labels = labels.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(f"label {int(labels.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


# ---- data from Python ---------------------------------------------------------------------

class PyDataset:
    """Batches computed in Python, as keras.utils.PyDataset (alias Sequence): subclass it,
    call super().__init__(**kwargs), and define __getitem__(index) returning one batch,
    (x,), (x, y) or (x, y, sample_weight), and __len__() returning the number of batches
    (or a num_batches property returning None for an endless dataset, which then needs
    steps_per_epoch). fit/evaluate/predict call on_epoch_begin() and on_epoch_end()
    around each epoch, and with shuffle=True (fit's default) visit the batches in a new
    seeded order every epoch.

    workers > 1 prepares up to max_queue_size batches ahead on that many threads (order
    kept); use_multiprocessing is accepted for Keras compatibility and runs threads too.
    Each batch then takes one call of the compiled engine.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False,
                 max_queue_size: int = 10) -> None:
        for name, value, low in (("workers", workers, 0), ("max_queue_size", max_queue_size, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
                    value < low:
                raise ValueError(f"{name} must be an integer >= {low}. Received: "
                                 f"{name}={value!r}")
        self._workers = int(workers)
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = int(max_queue_size)

    @property
    def workers(self) -> int:
        return getattr(self, "_workers", 1)  # a subclass may skip super().__init__()

    @property
    def use_multiprocessing(self) -> bool:
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self) -> int:
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index), "
                                  "returning the batch at that position")

    @property
    def num_batches(self) -> Optional[int]:
        """The number of batches (len(self)), or None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(f"{type(self).__name__} must define __len__() (or a "
                                  "num_batches property returning None when endless)")

    def on_epoch_begin(self) -> None:
        """Called at the start of every epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of every epoch."""


Sequence = PyDataset  # the Keras 2 name


# ---- plot_model ---------------------------------------------------------------------------

def _dot_quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def model_to_dot(model: Model, show_shapes: bool = False, show_dtype: bool = False,
                 show_layer_names: bool = True, rankdir: str = "TB", dpi: int = 200,
                 show_layer_activations: bool = False, show_trainable: bool = False) -> str:
    """The model's graph as Graphviz DOT text: one box per layer (its input layers
    included; a nested model is one box) and an arrow per connection."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"rankdir must be 'TB' or 'LR'. Received: rankdir={rankdir!r}")
    model._require_built("plot_model()")
    graph = model._graph
    layers = [t._layer for t in graph.inputs] + model.layers  # Sequential omits its input
    lines = [f"digraph {_dot_quote(model.name)} {{",
             f"  graph [rankdir={rankdir}, dpi={int(dpi)}];",
             "  node [shape=box, fontname=Helvetica];"]
    seen = set()
    for layer in layers:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        kind = type(layer).__name__
        label = [f"{layer.name} ({kind})" if show_layer_names else kind]
        if show_layer_activations and isinstance(getattr(layer, "activation", None), str):
            label.append(f"activation: {layer.activation}")
        if show_dtype:
            label.append("dtype: float32")
        if show_shapes:
            shape_in = layer.output_shape if kind == "InputLayer" else layer.input_shape
            label.append(f"input: {shape_in}  output: {layer.output_shape}")
        if show_trainable:
            label.append(f"trainable: {layer.trainable}")
        lines.append(f"  {_dot_quote(layer.name)} [label={_dot_quote(chr(10).join(label))}];")
    edges = []
    for t in graph.nodes:
        for i in t._inputs:
            edge = (i._layer.name, t._layer.name)
            if edge not in edges:
                edges.append(edge)
    lines += [f"  {_dot_quote(a)} -> {_dot_quote(b)};" for a, b in edges]
    return "\n".join(lines + ["}"]) + "\n"


def plot_model(model: Model, to_file: str = "model.png", show_shapes: bool = False,
               show_dtype: bool = False, show_layer_names: bool = True, rankdir: str = "TB",
               dpi: int = 200, show_layer_activations: bool = False,
               show_trainable: bool = False) -> None:
    """Draws the model's graph, as keras.utils.plot_model. fastnn itself writes Graphviz
    DOT text: give to_file a name ending in ".dot" (render it with `dot -Tpng`). Any other
    name needs pydot and Graphviz, which fastnn does not depend on: with pydot installed
    it renders through them, else it raises ImportError saying what to install."""
    import os
    dot = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype,
                       show_layer_names=show_layer_names, rankdir=rankdir, dpi=dpi,
                       show_layer_activations=show_layer_activations,
                       show_trainable=show_trainable)
    to_file = os.fspath(to_file)
    ext = os.path.splitext(to_file)[1][1:].lower()
    if ext == "dot":
        with open(to_file, "w", encoding="utf-8") as f:
            f.write(dot)
        return None
    try:
        import pydot
    except ImportError:
        raise ImportError(f"plot_model(to_file={to_file!r}) draws images with pydot and "
                          "Graphviz, which fastnn does not install: `pip install pydot` and "
                          "install Graphviz (https://graphviz.org/download/). Without them, "
                          "pass a to_file ending in '.dot' for the graph as Graphviz DOT "
                          "text.") from None
    graphs = pydot.graph_from_dot_data(dot)
    graphs[0].write(to_file, format=ext or "png")
    return None
