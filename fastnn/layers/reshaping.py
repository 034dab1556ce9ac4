"""Shape layers: Flatten and Reshape, as Keras'. In the engine a tensor is rows of its
features, whatever their shape, so both only give the same rows a new symbolic shape:
they lower to no op at all."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import numpy as np

from fastnn._typing import Config, InputShape, Shape
from fastnn.layers.core import Layer


class _Reshaping(Layer):
    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list):
            raise ValueError(f"{type(self).__name__} '{self.name}' takes one input")
        super().build(input_shape)

    def call(self, x: np.ndarray) -> np.ndarray:
        return x.reshape((x.shape[0],) + self.compute_output_shape(x.shape)[1:])

    def _lower(self, ctx, inputs):
        return inputs[0]


class Flatten(_Reshaping):
    """Flattens each sample: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...).

    Values keep their row-major (channels_last) order; the layer costs nothing in the
    engine.

    Args:
        data_format: None or "channels_last" (the only order fastnn keeps).
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, data_format: Optional[str] = None, **kwargs: Any) -> None:
        if data_format not in (None, "channels_last"):
            raise ValueError("fastnn's Flatten keeps the row-major order of the features "
                             "(data_format='channels_last'). "
                             f"Received: data_format={data_format!r}")
        super().__init__(**kwargs)
        self.data_format = "channels_last"

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return (input_shape[0], math.prod(input_shape[1:]))

    def get_config(self) -> Config:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_Reshaping):
    """Reshapes each sample: (batch, ...) -> (batch, *target_shape).

    The layer costs nothing in the engine (the values keep their order).

    Args:
        target_shape: a tuple of positive ints, the shape of one output sample; one
            entry may be -1, the size that keeps the number of features.
        **kwargs: the base Layer's arguments.

    Raises:
        TypeError: when target_shape is not a tuple of ints.
        ValueError: when target_shape is invalid or does not fit the input's size.
    """

    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise TypeError("target_shape must be a tuple of ints. "
                            f"Received: target_shape={target_shape!r}") from None
        if not shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and
                                (d > 0 or d == -1) for d in shape) or shape.count(-1) > 1:
            raise ValueError("target_shape must be a non-empty tuple of positive ints, with at "
                             f"most one -1. Received: target_shape={target_shape!r}")
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in shape)

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        size = math.prod(input_shape[1:])
        others = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape and size % others == 0:
            shape = tuple(size // others if d == -1 else d for d in self.target_shape)
        else:
            shape = self.target_shape
        if math.prod(shape) != size:
            raise ValueError(f"Reshape '{self.name}': the input's {size} features (shape "
                             f"{tuple(input_shape)}) cannot take target_shape={self.target_shape}")
        return (input_shape[0],) + shape

    def get_config(self) -> Config:
        return {**super().get_config(), "target_shape": self.target_shape}
