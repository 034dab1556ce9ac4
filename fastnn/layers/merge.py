"""Merge layers: several inputs of one shape (Concatenate: one shape but the axis), one
output, as Keras' Add, Subtract, Multiply, Average, Maximum, Minimum and Concatenate,
with the functional forms add(), concatenate(), ... Each lowers to one engine op
(csrc/ops/merge.c)."""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from fastnn._typing import ArrayLike, Config, InputShape, Shape
from fastnn.layers.core import KerasTensor, Layer


class _Merge(Layer):
    op = None          # the engine op
    min_inputs, max_inputs = 2, None

    def _check_inputs(self, inputs, is_list):
        n = len(inputs)
        if not is_list or n < self.min_inputs or (self.max_inputs and n > self.max_inputs):
            want = (f"exactly {self.max_inputs}" if self.max_inputs == self.min_inputs
                    else f"at least {self.min_inputs}")
            raise ValueError(f"A {type(self).__name__} layer should be called on a list of "
                             f"{want} inputs. Received: {n if is_list else 'one tensor'} "
                             f"(layer '{self.name}')")

    def build(self, input_shape: InputShape) -> None:
        if any(len(s) != 2 for s in input_shape):
            raise ValueError(f"{type(self).__name__} '{self.name}' takes 2-D inputs (batch, "
                             f"features). Received: input_shape={input_shape}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        shapes = {tuple(s[1:]) for s in input_shape}
        if len(shapes) != 1:
            raise ValueError(f"Inputs of {type(self).__name__} '{self.name}' must have the "
                             f"same shape. Received: input_shape={list(input_shape)}")
        return tuple(input_shape[0])

    def _lower(self, ctx, inputs):
        return ctx.op(self.op, inputs)

    def call(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self._numpy(inputs).astype(np.float32)


class Add(_Merge):
    """Adds a list of inputs of one shape, value by value (a + b + ... per value).

    Args:
        **kwargs: the base Layer's arguments (name, ...).

    Example::

        y = fastnn.layers.Add()([a, b])
    """
    op = "add"

    def _numpy(self, xs):
        return np.sum(xs, axis=0)


class Subtract(_Merge):
    """Subtracts the second of exactly two inputs from the first: a - b.

    Args:
        **kwargs: the base Layer's arguments (name, ...).
    """
    op = "subtract"
    min_inputs = max_inputs = 2

    def _numpy(self, xs):
        return xs[0] - xs[1]


class Multiply(_Merge):
    """Multiplies a list of inputs of one shape, value by value (a * b * ... per value).

    Args:
        **kwargs: the base Layer's arguments (name, ...).
    """
    op = "multiply"

    def _numpy(self, xs):
        return np.prod(xs, axis=0)


class Average(_Merge):
    """Averages a list of n inputs of one shape, value by value: (a + b + ...) / n.

    Args:
        **kwargs: the base Layer's arguments (name, ...).
    """
    op = "average"

    def _numpy(self, xs):
        return np.mean(xs, axis=0)


class Maximum(_Merge):
    """Takes the value-by-value maximum of a list of inputs of one shape.

    Args:
        **kwargs: the base Layer's arguments (name, ...).
    """
    op = "maximum"

    def _numpy(self, xs):
        return np.max(xs, axis=0)


class Minimum(_Merge):
    """Takes the value-by-value minimum of a list of inputs of one shape.

    Args:
        **kwargs: the base Layer's arguments (name, ...).
    """
    op = "minimum"

    def _numpy(self, xs):
        return np.min(xs, axis=0)


class Concatenate(_Merge):
    """Joins a list of 2-D inputs along the features: (n, a), (n, b) -> (n, a + b).

    Args:
        axis: default -1; -1 or 1 (fastnn concatenates 2-D inputs along the features
            only).
        **kwargs: the base Layer's arguments (name, ...).

    Raises:
        ValueError: for another axis.
    """
    op = "concatenate"
    min_inputs = 1

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        if axis not in (-1, 1):
            raise ValueError("fastnn concatenates 2-D inputs along the features: axis=-1 "
                             f"(or 1). Received: axis={axis!r}")
        super().__init__(**kwargs)
        self.axis = axis

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return (None, sum(s[-1] for s in input_shape))

    def _numpy(self, xs):
        return np.concatenate(xs, axis=-1)

    def get_config(self) -> Config:
        return {**super().get_config(), "axis": self.axis}


def add(inputs: Sequence[Union[KerasTensor, ArrayLike]],
        **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Add: add([a, b]) is a + b."""
    return Add(**kwargs)(inputs)


def subtract(inputs: Sequence[Union[KerasTensor, ArrayLike]],
             **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Subtract: subtract([a, b]) is a - b."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: Sequence[Union[KerasTensor, ArrayLike]],
             **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Multiply: multiply([a, b]) is a * b."""
    return Multiply(**kwargs)(inputs)


def average(inputs: Sequence[Union[KerasTensor, ArrayLike]],
            **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Average: average([a, b]) is (a + b) / 2."""
    return Average(**kwargs)(inputs)


def maximum(inputs: Sequence[Union[KerasTensor, ArrayLike]],
            **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Maximum: maximum([a, b]) is max(a, b) per value."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Sequence[Union[KerasTensor, ArrayLike]],
            **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Minimum: minimum([a, b]) is min(a, b) per value."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Sequence[Union[KerasTensor, ArrayLike]], axis: int = -1,
                **kwargs: Any) -> Union[KerasTensor, np.ndarray]:
    """Functional form of Concatenate: concatenate([a, b], axis=-1)."""
    return Concatenate(axis=axis, **kwargs)(inputs)
