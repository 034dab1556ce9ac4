"""ActivityRegularization: passes its input through and adds the activity penalty
(l1 * sum|x| + l2 * sum x^2) / batch size to the loss, as Keras 3 does (see
fastnn.regularizers; the engine op is csrc/ops/regularization.c)."""
from __future__ import annotations

from typing import Any

import numpy as np

from fastnn import regularizers
from fastnn._typing import Config
from fastnn.layers.core import Layer


class ActivityRegularization(Layer):
    """Passes its input through and adds an activity penalty to the loss.

    The penalty is (l1 * sum|x| + l2 * sum x^2) / batch size, as in Keras 3.

    Args:
        l1: default 0.0; the non-negative L1 factor.
        l2: default 0.0; the non-negative L2 factor.
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any) -> None:
        self._penalty = regularizers.L1L2(l1=l1, l2=l2)  # checks l1, l2
        super().__init__(**kwargs)
        self.l1, self.l2 = self._penalty.l1, self._penalty.l2

    def call(self, x: np.ndarray) -> np.ndarray:
        return x

    def _lower(self, ctx, inputs):
        return regularizers.lower_activity(ctx, inputs[0], self._penalty)

    def get_config(self) -> Config:
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
