"""Activation functions by name, with Keras 3's names, arguments and maths. The maths runs
in C (csrc/activations.c); the functions here apply it to arrays, as
keras.activations.relu(x) does, and return float32 arrays.

In a model an activation is given by name ("gelu") or as one of these functions; the
parametrised forms (relu's max_value, leaky_relu's negative_slope, elu's alpha) are the
layers ReLU, LeakyReLU and ELU."""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union
import numbers

import numpy as np

from fastnn import _engine
from fastnn._typing import ArrayLike

NAMES = ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "softplus",
         "softsign", "sigmoid", "hard_sigmoid", "tanh", "exponential", "mish", "log_softmax",
         "softmax")
_ALIASES = {None: "linear", "swish": "silu", **{name: name for name in NAMES}}

# Keras' default parameters of the parametrised kinds, in the engine's order (fparam,
# csrc/fastnn.h): what an activation given by name means
_DEFAULT_PARAMS = {"leaky_relu": (0.2,), "elu": (1.0,)}

# what layers' `activation=` arguments take: a name, a function of this module, or None
ActivationLike = Union[str, Callable[..., Any], None]


def get(identifier: ActivationLike) -> str:
    """Canonical name of an activation given a name, None, or a function of this module."""
    if callable(identifier) and getattr(identifier, "__module__", None) == __name__:
        identifier = identifier.__name__
    if isinstance(identifier, str):
        identifier = identifier.lower()
    if identifier not in _ALIASES:
        valid = sorted(k for k in _ALIASES if k)
        raise ValueError(f"Unknown activation: {identifier!r}. Valid names: {valid}")
    return _ALIASES[identifier]


def engine_params(name: str) -> tuple[float, ...]:
    """The engine's parameters (fparam) of the activation `name` at Keras' defaults."""
    return _DEFAULT_PARAMS.get(name, ())


def _real(value, argname):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{argname} must be a real number. Received: {argname}={value!r}")
    return float(value)


def _apply(name, x, params=None, axis=-1):
    """The engine's activation `name` over x (float32 copy), along `axis` for the softmaxes."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"x must hold real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float32)
    if name not in ("softmax", "log_softmax") or axis in (-1, arr.ndim - 1):
        return _engine.activation_forward(np.ascontiguousarray(arr), name, params)
    if not isinstance(axis, numbers.Integral) or not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis must be an axis of x (shape {arr.shape}). "
                         f"Received: axis={axis!r}")
    moved = np.ascontiguousarray(np.moveaxis(arr, axis, -1))
    return np.ascontiguousarray(np.moveaxis(_engine.activation_forward(moved, name), -1, axis))


def relu(x: ArrayLike, negative_slope: float = 0.0, max_value: Optional[float] = None,
         threshold: float = 0.0) -> np.ndarray:
    """max(x, 0); generally x for threshold < x < max_value, max_value from there on and
    negative_slope * (x - threshold) up to threshold."""
    s, t = _real(negative_slope, "negative_slope"), _real(threshold, "threshold")
    mx = math.inf if max_value is None else _real(max_value, "max_value")
    if s == 0.0 and t == 0.0 and mx == math.inf:
        return _apply("relu", x)
    return _apply("relu_general", x, (s, mx, t))


def relu6(x: ArrayLike) -> np.ndarray:
    """min(max(x, 0), 6)."""
    return _apply("relu6", x)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.2) -> np.ndarray:
    """x for x > 0, else negative_slope * x."""
    return _apply("leaky_relu", x, (_real(negative_slope, "negative_slope"),))


def elu(x: ArrayLike, alpha: float = 1.0) -> np.ndarray:
    """x for x > 0, else alpha * (exp(x) - 1)."""
    return _apply("elu", x, (_real(alpha, "alpha"),))


def selu(x: ArrayLike) -> np.ndarray:
    """scale * elu(x, alpha) with Keras' alpha = 1.67326324, scale = 1.05070098."""
    return _apply("selu", x)


def gelu(x: ArrayLike, approximate: bool = False) -> np.ndarray:
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); approximate=True: the tanh form
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    return _apply("gelu_tanh" if approximate else "gelu", x)


def silu(x: ArrayLike) -> np.ndarray:
    """x * sigmoid(x) (also swish)."""
    return _apply("silu", x)


swish = silu


def softplus(x: ArrayLike) -> np.ndarray:
    """log(exp(x) + 1)."""
    return _apply("softplus", x)


def softsign(x: ArrayLike) -> np.ndarray:
    """x / (|x| + 1)."""
    return _apply("softsign", x)


def sigmoid(x: ArrayLike) -> np.ndarray:
    """1 / (1 + exp(-x))."""
    return _apply("sigmoid", x)


def hard_sigmoid(x: ArrayLike) -> np.ndarray:
    """relu6(x + 3) / 6: 0 up to -3, 1 from 3, x / 6 + 0.5 between."""
    return _apply("hard_sigmoid", x)


def tanh(x: ArrayLike) -> np.ndarray:
    return _apply("tanh", x)


def exponential(x: ArrayLike) -> np.ndarray:
    """exp(x)."""
    return _apply("exponential", x)


def mish(x: ArrayLike) -> np.ndarray:
    """x * tanh(softplus(x))."""
    return _apply("mish", x)


def linear(x: ArrayLike) -> np.ndarray:
    """The identity (as a float32 array)."""
    return _apply("linear", x)


def softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along `axis`."""
    return _apply("softmax", x, axis=axis)


def log_softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """x - log(sum(exp(x))) along `axis`."""
    return _apply("log_softmax", x, axis=axis)
