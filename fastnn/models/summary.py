"""model.summary() in the tf.keras 2.x plain-text layout."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    from fastnn.models.model import Model


def _row(fields, positions):
    # Each field starts where the previous column ends (one space kept) and is
    # cut at its column's end, as tf.keras 2.x prints it.
    line = ""
    for i, field in enumerate(fields):
        if i > 0:
            line = line[:-1] + " "
        line += str(field)
        line = line[:positions[i]]
        line += " " * (positions[i] - len(line))
    return line


def _shape_str(shape, is_input):
    s = str(tuple(shape))
    return f"[{s}]" if is_input else s


def _is_chain(model):
    """A model whose every layer is called once on one tensor prints 3 columns (tf.keras
    2.x's sequential-like layout); other graphs add 'Connected to'."""
    graph = model._graph
    if graph is None or len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return graph is None
    return all(len(t._inputs) == 1 and sum(u._layer is t._layer for u in graph.nodes) == 1
               for t in graph.nodes)


def _connections(model, layer):
    """'name[call][0]' of each input of each call of layer, as tf.keras 2.x prints them."""
    graph = model._graph
    return [f"{i.name}[{graph.call_index.get(id(i), 0)}][0]"
            for t in graph.nodes if t._layer is layer for i in t._inputs]


def print_summary(model: Model, line_length: Optional[int] = None,
                  positions: Optional[Sequence[float]] = None,
                  print_fn: Optional[Callable[..., Any]] = None) -> None:
    from fastnn.layers.core import InputLayer

    chain = _is_chain(model)
    if line_length is not None and (type(line_length) is not int or
                                    not 20 <= line_length <= 1000):
        raise ValueError(f"line_length must be an integer in [20, 1000]. Received: "
                         f"line_length={line_length!r}")
    line_length = line_length or (65 if chain else 98)
    positions = positions or ([0.45, 0.85, 1.0] if chain else [0.33, 0.55, 0.67, 1.0])
    columns = 3 if chain else 4
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    if len(positions) != columns:
        raise ValueError(f"positions must have {columns} entries, got {positions}")
    print_fn = print_fn or print

    head = ["Layer (type)", "Output Shape", "Param #"] + ([] if chain else ["Connected to"])
    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    print_fn(_row(head, positions))
    print_fn("=" * line_length)
    layers = model._summary_layers()
    for i, layer in enumerate(layers):
        is_input = isinstance(layer, InputLayer)
        kind = type(layer).__name__
        fields = [f"{layer.name} ({'Functional' if kind == 'Model' else kind})",
                  _shape_str(layer.output_shape, is_input), layer.count_params()]
        if chain:
            print_fn(_row(fields, positions))
        else:
            links = _connections(model, layer) or [""]
            print_fn(_row(fields + [("[" + repr(links[0]) + "]") if links[0] else "[]"],
                          positions))
            for link in links[1:]:
                print_fn(_row(["", "", "", "[" + repr(link) + "]"], positions))
        print_fn(("=" if i == len(layers) - 1 else "_") * line_length)
    if not layers:
        print_fn("=" * line_length)
    total = model.count_params() if layers else 0
    trainable = sum(w.size for w in model.trainable_weights) if layers else 0
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
