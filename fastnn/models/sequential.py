"""Sequential: a model built from a list of layers, or layer by layer with add()."""
from fastnn import utils
from fastnn.layers.core import InputLayer, KerasTensor, Layer
from fastnn.models.model import Model


class Sequential(Model):
    def __init__(self, layers=None, name=None):
        super().__init__(name=name or utils.unique_name("sequential"))
        self._pending = []  # layers added before the input shape is known
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer._layer, InputLayer):
            layer = layer._layer
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add() takes a layer. Received: {layer!r}")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._pending or self._chain:
                raise ValueError("An Input can only be the first entry of a Sequential model")
            self._input_layer = layer
            return
        if any(layer is other for other in self._chain + self._pending):
            raise ValueError(f"Layer '{layer.name}' is already in model '{self.name}'")
        if self._input_layer is None and not self._chain and not self._pending \
                and layer._batch_input_shape is not None:
            # tf.keras names the implicit input after the first layer: "dense_input"
            self._input_layer = InputLayer(layer._batch_input_shape[1:],
                                           name=f"{layer.name}_input")
        self._pending.append(layer)
        if self._input_layer is not None:
            self._build_pending()

    def pop(self):
        layers = self._chain + self._pending
        if not layers:
            raise TypeError("There are no layers in the model.")
        layer = layers[-1]
        if self._pending:
            self._pending.pop()
        elif len(self._chain) > 1:
            self._set_chain(self._chain[:-1])
        else:
            self._clear()
        layer._owner = None
        return layer

    def _clear(self):
        self._chain, self.built = [], False
        self._params = self._grads = None
        self._nets, self._predict_net, self._opt_state = {}, None, None

    def _build_pending(self):
        shape = self._chain[-1].output_shape if self._chain else self._input_layer.output_shape
        for layer in self._pending:
            layer._build_once(shape)
            shape = layer.compute_output_shape(shape)
        self._set_chain(self._chain + self._pending)
        self._pending = []

    def _build_from_data(self, n_features):
        if not self._pending:
            raise ValueError(f"Model '{self.name}' has no layers")
        self._input_layer = InputLayer((n_features,), name=f"{self._pending[0].name}_input")
        self._build_pending()

    @property
    def layers(self):  # as Keras: the InputLayer is not listed
        return list(self._chain) + list(self._pending)

    def _summary_layers(self):
        return list(self._chain)
