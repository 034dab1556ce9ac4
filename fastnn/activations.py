"""Activation functions by name. The maths runs in C (csrc/activations.c); the
functions here apply it to arrays, as keras.activations.relu(x) does."""
import numpy as np

from fastnn import _engine

_ALIASES = {None: "linear", "linear": "linear", "relu": "relu", "sigmoid": "sigmoid",
            "tanh": "tanh", "softmax": "softmax"}


def get(identifier):
    """Canonical name of an activation given a name, None, or a function of this module."""
    if callable(identifier) and getattr(identifier, "__module__", None) == __name__:
        identifier = identifier.__name__
    if isinstance(identifier, str):
        identifier = identifier.lower()
    if identifier not in _ALIASES:
        valid = sorted(k for k in _ALIASES if k)
        raise ValueError(f"Unknown activation: {identifier!r}. Valid names: {valid}")
    return _ALIASES[identifier]


def _apply(name, x):
    return _engine.activation_forward(np.ascontiguousarray(x, dtype=np.float32), name)


def relu(x):
    return _apply("relu", x)


def sigmoid(x):
    return _apply("sigmoid", x)


def tanh(x):
    return _apply("tanh", x)


def linear(x):
    return _apply("linear", x)


def softmax(x):
    """Softmax over the last axis."""
    return _apply("softmax", x)
