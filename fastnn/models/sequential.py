"""Sequential: sugar over Model for a stack of single-input layers (as in Keras 3): its
graph is Input -> layer -> layer ..., rebuilt whenever the stack changes."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from fastnn import utils
from fastnn._typing import InputShape
from fastnn.layers.core import InputLayer, KerasTensor, Layer
from fastnn.models.model import Model


class Sequential(Model):
    """A model made of a plain stack of layers, each with one input and one output.

    Sugar over the functional Model: the stack becomes the graph
    Input -> layer -> layer -> ..., rebuilt whenever the stack changes. Give the input
    shape with an Input as the first entry (or `input_shape=` on the first layer);
    without it the model is built from the data's shape at the first fit/predict.

    Args:
        layers: default None; a list of layers (an Input may come first) to add.
        name: default None gives "sequential", "sequential_1", ...
        trainable: default True; False freezes every layer.

    Example::

        model = fastnn.Sequential([
            fastnn.Input(shape=(13,)),
            fastnn.layers.Dense(10, activation="relu"),
            fastnn.layers.Dense(10, activation="relu"),
            fastnn.layers.Dense(1),
        ])
        model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
        model.fit(x_train, y_train, epochs=100, batch_size=32, verbose=0)
    """

    def __init__(self, layers: Optional[Sequence[Layer]] = None, name: Optional[str] = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name or utils.unique_name("sequential"), trainable=trainable)
        self._input_layer = None
        self._stack = []
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Union[Layer, KerasTensor]) -> None:
        """Adds a layer on top of the stack.

        Args:
            layer: a Layer, or an Input (only as the first entry: it sets the model's
                input shape).

        Raises:
            TypeError: when `layer` is not a layer.
            ValueError: when an Input comes after other entries, the layer is already
                in the model, or it does not accept the previous layer's output (the
                model is then left as it was).
        """
        if isinstance(layer, KerasTensor) and isinstance(layer._layer, InputLayer):
            layer = layer._layer
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a layer. Received: {layer!r}")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._stack:
                raise ValueError("An Input can only be the first entry of a Sequential model")
            self._input_layer = layer
            return
        if any(layer is other for other in self._stack):
            raise ValueError(f"Layer '{layer.name}' is already in model '{self.name}'")
        if self._input_layer is None and not self._stack and layer._batch_input_shape is not None:
            # tf.keras names the implicit input after the first layer: "dense_input"
            self._input_layer = InputLayer(layer._batch_input_shape[1:],
                                           name=f"{layer.name}_input")
        self._stack.append(layer)
        if self._input_layer is not None:
            try:
                self._rebuild()
            except Exception:
                self._stack.pop()  # a layer that does not fit leaves the model as it was
                self._rebuild()
                raise

    def pop(self) -> Layer:
        """Removes the last layer of the stack and returns it.

        Raises:
            TypeError: when the model has no layers (as Keras).
        """
        if not self._stack:
            raise TypeError("There are no layers in the model.")
        layer = self._stack.pop()
        self._rebuild()
        return layer

    def _rebuild(self):
        if self._input_layer is None or not self._stack:
            self._graph, self.built = None, False
            self._invalidate()
            return
        t = self._input_layer.output
        for layer in self._stack:
            t = layer(t)
        self._set_graph(self._input_layer.output, t)

    def build(self, input_shape: Optional[InputShape] = None) -> None:
        """Builds the model (creates its weights) for inputs of a given shape.

        Not needed when the model has an Input or its first layer an `input_shape`.

        Args:
            input_shape: the inputs' shape with the batch axis first, e.g. (None, 13);
                default None (only valid when the model already knows its input).

        Raises:
            ValueError: when no input shape is known or given.
        """
        if self._graph is None:
            if input_shape is None:
                raise ValueError("Sequential.build() needs an input_shape, e.g. (None, 13)")
            if self._input_layer is None:
                name = f"{self._stack[0].name}_input" if self._stack else None
                self._input_layer = InputLayer(tuple(input_shape)[1:], name=name)
            self._rebuild()
        self.built = True

    def _build_from_shapes(self, input_shape):
        if not self._stack:
            raise ValueError(f"Model '{self.name}' has no layers")
        if isinstance(input_shape, list):
            raise ValueError(f"Sequential model '{self.name}' takes one input, got "
                             f"{len(input_shape)}")
        self.build(input_shape)

    def _require_built(self, what):
        if self._graph is None and self._stack == [] and self._input_layer is not None:
            raise ValueError(f"Model '{self.name}' has no layers")
        super()._require_built(what)

    @property
    def layers(self) -> list[Layer]:  # as Keras: the InputLayer is not listed
        """The stacked layers, in order (without the InputLayer, as Keras)."""
        return list(self._stack)

    def _summary_layers(self):
        return list(self._stack)
