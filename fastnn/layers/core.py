"""Layer base class, symbolic tensors, Input and Dense."""
import numbers

import numpy as np

from fastnn import _engine, activations, initializers
from fastnn.utils import to_snake_case, unique_name


class KerasTensor:
    """A symbolic tensor: a shape (batch axis None), a dtype, and the layer call that made it."""

    def __init__(self, shape, dtype="float32", layer=None, inputs=()):
        self.shape = tuple(shape)
        self.dtype = dtype
        self._layer = layer          # the layer whose call produced this tensor
        self._inputs = tuple(inputs)  # that call's input tensors

    @property
    def name(self):
        return self._layer.name if self._layer is not None else None

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def _shape_tuple(shape, argname):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{argname} must be a tuple of positive ints. Received: {argname}={shape!r}")
    if not shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                            for d in shape):
        raise ValueError(f"{argname} must be a non-empty tuple of positive ints. "
                         f"Received: {argname}={shape!r}")
    return tuple(int(d) for d in shape)


class Layer:
    """Keras' layer shape: __init__ stores config, build(input_shape) makes the
    weights, call(x) computes, compute_output_shape(input_shape) infers shapes.

    Weights are float32 arrays named in `_weight_names`; once a model holds the
    layer they are views into the model's one flat parameter buffer."""

    _weight_names = ()

    def __init__(self, name=None, input_shape=None, trainable=True, dtype=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string. Received: name={name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"fastnn layers compute in float32. Received: dtype={dtype!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._batch_input_shape = (
            None if input_shape is None else (None,) + _shape_tuple(input_shape, "input_shape"))

    # -- structure --------------------------------------------------------------
    def build(self, input_shape):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def _build_once(self, input_shape):
        input_shape = tuple(input_shape)
        if not self.built:
            self.build(input_shape)
        elif input_shape[1:] != self.input_shape[1:]:
            raise ValueError(f"Layer '{self.name}' expects input shape {self.input_shape}, "
                             f"got {input_shape}")

    def __call__(self, x):
        if isinstance(x, KerasTensor):
            self._build_once(x.shape)
            return KerasTensor(self.compute_output_shape(x.shape), layer=self, inputs=(x,))
        arr = np.ascontiguousarray(x, dtype=np.float32)
        if arr.ndim < 2:
            raise ValueError(f"Layer '{self.name}' takes a batch (n, features), got shape {arr.shape}")
        self._build_once((None,) + arr.shape[1:])
        return self.call(arr)

    def call(self, x):
        raise NotImplementedError

    # -- weights ------------------------------------------------------------------
    @property
    def weights(self):
        return [getattr(self, n) for n in self._weight_names if getattr(self, n) is not None]

    trainable_weights = weights

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call count_params on layer '{self.name}', "
                             "but the layer isn't built.")
        return int(sum(w.size for w in self.weights))

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Layer '{self.name}' expects {len(own)} weight arrays, "
                             f"got {len(weights)}")
        for w, new in zip(own, weights):
            new = np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(f"Layer '{self.name}': weight shape {w.shape} does not match "
                                 f"the given shape {new.shape}")
            if not np.all(np.isfinite(new)):
                raise ValueError(f"Layer '{self.name}': weights must be finite")
            w[...] = new  # in place: the arrays may be views into a model's buffer

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self._batch_input_shape is not None:
            config["input_shape"] = self._batch_input_shape[1:]
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class InputLayer(Layer):
    """The layer behind Input(): it holds the model's input shape, no weights."""

    def __init__(self, shape, name=None):
        # tf.keras 2.x numbers inputs from 1: input_1, input_2, ...
        super().__init__(name=name or unique_name("input", first=1), input_shape=shape)
        self.build(self._batch_input_shape)

    def compute_output_shape(self, input_shape):
        return self._batch_input_shape

    def get_config(self):
        return {"name": self.name, "shape": self._batch_input_shape[1:]}


def Input(shape=None, batch_size=None, name=None, dtype="float32"):
    """A symbolic input: Input(shape=(13,)) has shape (None, 13)."""
    if shape is None:
        raise ValueError("Input() needs a shape, e.g. Input(shape=(13,))")
    if batch_size is not None:
        raise ValueError("fastnn models take any batch size; Input(batch_size=...) is unsupported. "
                         f"Received: batch_size={batch_size!r}")
    if dtype not in ("float32", np.float32):
        raise ValueError(f"fastnn inputs are float32. Received: dtype={dtype!r}")
    layer = InputLayer(shape, name=name)
    return KerasTensor(layer._batch_input_shape, layer=layer)


class Dense(Layer):
    """y = activation(x . kernel + bias), kernel of shape (input_dim, units)."""

    _weight_names = ("kernel", "bias")

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, input_dim=None, name=None, **kwargs):
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError("Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape, **kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel = None
        self.bias = None

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Dense '{self.name}' takes 2-D input (batch, features), "
                             f"got shape {tuple(input_shape)}")
        n_in = input_shape[-1]
        self.kernel = self.kernel_initializer((n_in, self.units))
        self.bias = self.bias_initializer((self.units,)) if self.use_bias else None
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x):
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Dense '{self.name}' expects {self.kernel.shape[0]} features, "
                             f"got shape {x.shape}")
        return _engine.dense_forward(x, self.kernel, self.bias, self.activation)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.name_of(self.kernel_initializer),
                "bias_initializer": initializers.name_of(self.bias_initializer)}
