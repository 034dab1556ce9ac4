"""Activation layers. In a model each one fuses into the Dense before it when
that Dense has no activation of its own (one pass over the output, no copy)."""
from fastnn import _engine, activations
from fastnn.layers.core import Layer


class Activation(Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, x):
        return _engine.activation_forward(x, self.activation)

    def _lower(self, ctx, inputs):
        return ctx.op("activation", inputs, act=self.activation)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """max(x, 0). Keras' max_value / negative_slope / threshold are not supported."""

    def __init__(self, **kwargs):
        for arg in ("max_value", "negative_slope", "threshold"):
            if kwargs.pop(arg, None) not in (None, 0, 0.0):
                raise ValueError(f"ReLU supports the plain max(x, 0) only; {arg} is unsupported")
        super().__init__("relu", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return config
