"""Identity: the input, unchanged (Keras' placeholder layer). It lowers to no op."""
from __future__ import annotations

import numpy as np

from fastnn.layers.core import Layer


class Identity(Layer):
    """Returns its input unchanged: a placeholder layer that compiles to no op.

    Args:
        **kwargs: the base Layer's arguments (name, input_shape, ...).
    """

    def call(self, x: np.ndarray) -> np.ndarray:
        return x

    def _lower(self, ctx, inputs):
        return inputs[0]
