"""clone_model, as keras.models.clone_model: the same architecture, every layer a new one
(fresh weights), shared layers still shared."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from fastnn.layers.core import Input, InputLayer, KerasTensor, Layer, Tensors

if TYPE_CHECKING:
    from fastnn.models.model import Model


def _clone_layer(layer):
    return type(layer).from_config(layer.get_config())


def clone_model(model: Model, input_tensors: Optional[Tensors] = None,
                clone_function: Optional[Callable[[Layer], Layer]] = None) -> Model:
    """A new model with the architecture of `model` and new layers: clone_function(layer)
    makes each (default: the layer's class from its get_config(), so names and settings
    are kept and weights are fresh; a layer used twice is cloned once). A nested model is
    a layer too: by default it is rebuilt from its config. input_tensors: Input() tensors
    to build the clone on (one per model input), instead of new ones. A subclassed model
    comes back as the functional Model of its traced graph."""
    from fastnn.models import Model, Sequential
    from fastnn.saving import _merge_base
    if not isinstance(model, Model):
        raise TypeError(f"clone_model takes a Model or Sequential. Received: model={model!r}")
    clone_function = clone_function or _clone_layer
    if not callable(clone_function):
        raise TypeError(f"clone_function must be a function of a layer. Received: "
                        f"clone_function={clone_function!r}")

    def clone(layer):
        new = clone_function(layer)
        if not isinstance(new, Layer):
            raise TypeError(f"clone_function must return a layer; for '{layer.name}' it "
                            f"returned {new!r}")
        return new

    inputs = None if input_tensors is None else _check_inputs(model, input_tensors)
    if isinstance(model, Sequential):
        first = inputs or ([] if model._input_layer is None else [Input(
            shape=model._input_layer.output_shape[1:], name=model._input_layer.name)])
        return Sequential(first + [clone(layer) for layer in model.layers], name=model.name,
                          trainable=model.trainable)
    if model._graph is None:
        raise ValueError(f"Model '{model.name}' is not built yet: call it on data or "
                         "build(input_shape) before clone_model()")
    graph = model._graph
    inputs = inputs or [Input(shape=t.shape[1:], name=t.name) for t in graph.inputs]
    made = {id(old): new for old, new in zip(graph.inputs, inputs)}
    layers = {}
    for t in graph.nodes:
        layer = t._layer
        if id(layer) not in layers:
            layers[id(layer)] = clone(layer)
        new = layers[id(layer)]
        args = [made[id(i)] for i in t._inputs]
        made[id(t)] = new(args if len(args) > 1 or isinstance(new, _merge_base()) else args[0])
    outs = [made[id(t)] for t in graph.outputs]
    return Model(inputs if model._list_inputs else inputs[0],
                 outs if model._list_outputs else outs[0], name=model.name,
                 trainable=model.trainable)


def _check_inputs(model, input_tensors):
    tensors = list(input_tensors) if isinstance(input_tensors, (list, tuple)) else \
        [input_tensors]
    want = len(model._graph.inputs) if model._graph is not None else 1
    if len(tensors) != want or not all(isinstance(t, KerasTensor) and
                                       isinstance(t._layer, InputLayer) for t in tensors):
        raise ValueError(f"input_tensors must be {want} tensor(s) made by Input(), one per "
                         f"input of model '{model.name}'. Received: "
                         f"input_tensors={input_tensors!r}")
    return tensors
