"""Activation layers, as Keras 3's: Activation (any activation by name), ReLU, LeakyReLU,
PReLU, ELU and Softmax. Each lowers to one activation op (csrc/ops/activation.c) with
its parameters in the op's fparam, or to the prelu op (csrc/ops/prelu.c), whose alpha is
a trained weight. In a model an activation fuses into the Dense before it when that
Dense has no activation of its own and can apply this one from its output alone (relu,
sigmoid, tanh, softmax, ...); the others (gelu, silu, mish, the parametrised ones) stay
an op of their own, which reads its input in backward."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np

from fastnn import _engine, activations, initializers
from fastnn._typing import Config, InputShape
from fastnn.layers.core import Layer

_SOFTMAXES = ("softmax", "log_softmax")


def _non_negative(value, argname, layer, allow_none=False):
    if value is None and allow_none:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
            or value < 0):
        raise ValueError(f"{argname} of a {layer} layer cannot be None or a negative value. "
                         f"Received: {argname}={value!r}")
    return float(value)


class _ActivationLayer(Layer):
    """A layer that is one activation of the engine: _engine_act() names it and its
    parameters; `axis` (softmaxes) is the trailing axes it normalises over."""

    axis = -1

    def _engine_act(self):
        """(engine activation name, its parameters: csrc/fastnn.h's fparam)."""
        raise NotImplementedError

    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list):
            raise ValueError(f"{type(self).__name__} '{self.name}' takes one input")
        self._group(input_shape)  # checks the axis
        super().build(input_shape)

    def _group(self, input_shape):
        """The softmaxes' group: 0 over whole rows, else the size of the trailing axes."""
        if self._engine_act()[0] not in _SOFTMAXES:
            return 0
        ndim = len(input_shape)
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if not axes or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) and
                               -ndim < a < ndim and a % ndim != 0 for a in axes):
            raise ValueError(f"axis must name feature axes of the input (shape {input_shape}). "
                             f"Received: axis={self.axis!r}")
        first = min(a % ndim for a in axes)
        if sorted({a % ndim for a in axes}) != list(range(first, ndim)):
            raise ValueError("fastnn's softmax runs over the last axes of its input only "
                             f"(shape {input_shape}). Received: axis={self.axis!r}")
        return 0 if first == 1 else math.prod(input_shape[first:])

    def call(self, x: np.ndarray) -> np.ndarray:
        act, params = self._engine_act()
        if act in _SOFTMAXES and self._group(x.shape):
            rows = np.ascontiguousarray(x.reshape(-1, self._group(x.shape)))
            return _engine.activation_forward(rows, act, params).reshape(x.shape)
        if act in _SOFTMAXES:
            return _engine.activation_forward(x.reshape(x.shape[0], -1), act,
                                              params).reshape(x.shape)
        return _engine.activation_forward(x, act, params)

    def _lower(self, ctx, inputs):
        act, params = self._engine_act()
        group = self._group(self.input_shape)
        return ctx.op("activation", inputs, act=act, fparam=list(params),
                      **({"iparam": [group]} if group else {}))


class Activation(_ActivationLayer):
    """Applies an activation function to its input: ``y = activation(x)``.

    Args:
        activation: a name ("relu", "sigmoid", "tanh", "softmax", "gelu", ...) or a
            function of fastnn.activations, run at Keras' default parameters.
        **kwargs: the base Layer's arguments (name, input_shape, ...).

    Example::

        x = fastnn.layers.Activation("tanh")(x)
    """

    def __init__(self, activation: activations.ActivationLike, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def _engine_act(self):
        return self.activation, activations.engine_params(self.activation)

    def get_config(self) -> Config:
        return {**super().get_config(), "activation": self.activation}


class ReLU(_ActivationLayer):
    """The rectified linear unit: ``max(x, 0)`` with the default arguments.

    In general (Keras' definition): max_value where x >= max_value, x where
    threshold <= x < max_value, and negative_slope * (x - threshold) below threshold.

    Args:
        max_value: default None (no cap); a non-negative float capping the output.
        negative_slope: default 0.0; a non-negative slope below the threshold.
        threshold: default 0.0; a non-negative float, where the slope changes.
        **kwargs: the base Layer's arguments.

    Raises:
        ValueError: when an argument is negative (or max_value not a number).
    """

    def __init__(self, max_value: Optional[float] = None, negative_slope: float = 0.0,
                 threshold: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_value = _non_negative(max_value, "max_value", "ReLU", allow_none=True)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", "ReLU")
        self.threshold = _non_negative(threshold, "threshold", "ReLU")

    def _engine_act(self):
        plain = self.negative_slope == 0.0 and self.threshold == 0.0
        if plain and self.max_value is None:
            return "relu", ()
        if plain and self.max_value == 6.0:
            return "relu6", ()
        if self.threshold == 0.0 and self.max_value is None:
            return "leaky_relu", (self.negative_slope,)
        max_value = math.inf if self.max_value is None else self.max_value
        return "relu_general", (self.negative_slope, max_value, self.threshold)

    def get_config(self) -> Config:
        return {**super().get_config(), "max_value": self.max_value,
                "negative_slope": self.negative_slope, "threshold": self.threshold}


class LeakyReLU(_ActivationLayer):
    """The leaky ReLU: x for x > 0, negative_slope * x otherwise.

    Args:
        negative_slope: default 0.3 (Keras'); a non-negative float. The deprecated
            name `alpha` is still accepted, with a warning.
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any) -> None:
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.")
        super().__init__(**kwargs)
        self.negative_slope = _non_negative(negative_slope, "negative_slope", "LeakyReLU")

    def _engine_act(self):
        return "leaky_relu", (self.negative_slope,)

    def get_config(self) -> Config:
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_ActivationLayer):
    """The exponential linear unit: x for x > 0, alpha * (exp(x) - 1) otherwise.

    Args:
        alpha: default 1.0; a finite float, the scale of the negative part.
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(
                alpha):
            raise ValueError(f"alpha of an ELU layer must be a finite number. Received: "
                             f"alpha={alpha!r}")
        self.alpha = float(alpha)

    def _engine_act(self):
        return "elu", (self.alpha,)

    def get_config(self) -> Config:
        return {**super().get_config(), "alpha": self.alpha}


class Softmax(_ActivationLayer):
    """The softmax: exp(x) / sum(exp(x)) along `axis`.

    Args:
        axis: default -1; an int or a list of ints. fastnn normalises over the last
            axes of the input only (the axis, or the listed trailing axes).
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, axis: Union[int, Sequence[int]] = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis

    def _engine_act(self):
        return "softmax", ()

    def get_config(self) -> Config:
        return {**super().get_config(), "axis": self.axis}


class PReLU(Layer):
    """The parametric ReLU: x for x > 0, alpha * x otherwise, alpha a trained weight.

    alpha has the input's feature shape, or 1 along the `shared_axes`. The engine takes
    the sharings whose unshared axes are adjacent (every sharing of 2-D and 3-D inputs).

    Args:
        alpha_initializer: default "zeros".
        alpha_regularizer: must stay None (not supported yet).
        alpha_constraint: must stay None (not supported yet).
        shared_axes: default None (one alpha per value); feature axes (ints >= 1)
            along which one alpha serves, e.g. [1] for one alpha per channel of a
            (batch, steps, channels) input.
        **kwargs: the base Layer's arguments.

    Raises:
        ValueError: on an alpha_regularizer or alpha_constraint, or invalid shared_axes.
    """

    def __init__(self, alpha_initializer: initializers.InitializerLike = "zeros",
                 alpha_regularizer: Any = None, alpha_constraint: Any = None,
                 shared_axes: Optional[Sequence[int]] = None, **kwargs: Any) -> None:
        for arg, value in (("alpha_regularizer", alpha_regularizer),
                           ("alpha_constraint", alpha_constraint)):
            if value is not None:
                raise ValueError(f"PReLU does not support {arg} yet. Received: {arg}={value!r}")
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) and a >= 1
                       for a in axes):
                raise ValueError("shared_axes must be feature axes (integers >= 1). Received: "
                                 f"shared_axes={shared_axes!r}")
            self.shared_axes = [int(a) for a in axes]
        self.alpha = None

    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list):
            raise ValueError(f"PReLU '{self.name}' takes one input")
        dims = list(input_shape[1:])
        shared = set(self.shared_axes or ())
        if any(a > len(dims) for a in shared):
            raise ValueError(f"shared_axes must be axes of the input (shape {input_shape}). "
                             f"Received: shared_axes={self.shared_axes}")
        kept = [a for a in range(1, len(dims) + 1) if a not in shared]
        if kept and kept != list(range(kept[0], kept[-1] + 1)):
            raise ValueError("fastnn's PReLU shares alpha along axes that leave the others "
                             f"adjacent; input shape {input_shape} with shared_axes="
                             f"{self.shared_axes} leaves axes {kept}")
        # alpha[k] serves `inner` consecutive values, `count` alphas repeat along a row
        self._inner = math.prod(dims[kept[-1]:]) if kept else math.prod(dims)
        self._count = math.prod(dims[kept[0] - 1:kept[-1]]) if kept else 1
        shape = tuple(1 if a in shared else d for a, d in enumerate(dims, 1))
        self.add_weight("alpha", shape, self.alpha_initializer)
        super().build(input_shape)

    def call(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, self.alpha * x).astype(np.float32)

    def _lower(self, ctx, inputs):
        trainable, off = ctx.weight(self, "alpha")
        return ctx.op("prelu", inputs, trainable=trainable, w_off=off,
                      iparam=[self._inner, self._count])

    def get_config(self) -> Config:
        return {**super().get_config(),
                "alpha_initializer": initializers.name_of(self.alpha_initializer),
                "shared_axes": self.shared_axes}
