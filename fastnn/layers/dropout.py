"""Dropout: while training, zero a fraction `rate` of the inputs and scale the rest by
1 / (1 - rate); at inference (predict, evaluate, calling the layer) pass them through.
The engine draws each step's mask from the model's seeded stream and redraws the same
mask in backward instead of storing it."""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np

from fastnn._typing import Config
from fastnn.layers.core import Layer


class Dropout(Layer):
    """Randomly sets a fraction `rate` of the inputs to 0 while training.

    The kept values are scaled by 1 / (1 - rate) so that the expected sum is unchanged;
    at inference (predict, evaluate, calling the layer) the input passes through. The
    masks come from the model's seeded random stream (fastnn.utils.set_random_seed).

    Args:
        rate: a float in [0, 1), the fraction of the inputs to drop.
        noise_shape: must stay None: fastnn drops every value independently.
        seed: accepted for Keras compatibility; the masks follow the global seed.
        **kwargs: the base Layer's arguments.

    Raises:
        ValueError: when rate is outside [0, 1) or noise_shape is given.
    """

    def __init__(self, rate: float, noise_shape: Optional[Sequence[int]] = None,
                 seed: Optional[int] = None, **kwargs: Any) -> None:
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError("Invalid value received for argument `rate`. Expected a float "
                             f"value between 0 and 1. Received: rate={rate!r}")
        if noise_shape is not None:
            raise ValueError("Dropout(noise_shape=...) is not supported: every unit of every "
                             "row is dropped independently")
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed  # accepted for Keras compatibility; masks follow set_random_seed

    def call(self, x: np.ndarray) -> np.ndarray:
        return x  # inference

    def _lower(self, ctx, inputs):
        return ctx.op("dropout", inputs, rate=self.rate) if self.rate > 0 else inputs[0]

    def get_config(self) -> Config:
        return {**super().get_config(), "rate": self.rate}
