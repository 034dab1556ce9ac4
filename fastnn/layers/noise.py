"""Noise layers, as Keras': GaussianNoise adds N(0, stddev^2) to every value and
GaussianDropout multiplies every value by N(1, rate / (1 - rate)), both while training
only (fit, train_on_batch); predict, evaluate and calling the layer pass the input
through. The engine draws the noise from the model's seeded stream, as Dropout's masks
(fastnn.utils.set_random_seed gives bit-identical training), and GaussianDropout's
backward redraws the noise its forward used (csrc/ops/noise.c)."""
from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np

from fastnn._typing import Config
from fastnn.layers.core import Layer


def _seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an integer or None. Received: seed={seed!r}")
    return None if seed is None else int(seed)


def _fraction(value, argname, top, closed):
    """value in [0, top] (closed) or [0, top)."""
    ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and
          0 <= value and (value <= top if closed else value < top))
    if not ok:
        raise ValueError(f"Invalid value received for argument `{argname}`. Expected a float "
                         f"value in [0, {top}{']' if closed else ')'}. "
                         f"Received: {argname}={value!r}")
    return float(value)


class _Noise(Layer):
    op = arg = None  # the engine op, the argument that sets the noise level
    closed = True    # the level may reach 1

    def __init__(self, level: float, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        setattr(self, self.arg, _fraction(level, self.arg, 1, self.closed))
        self.seed = _seed(seed)

    def call(self, x: np.ndarray) -> np.ndarray:
        return x  # inference

    def _lower(self, ctx, inputs):
        level = getattr(self, self.arg)
        return ctx.op(self.op, inputs, fparam=[level]) if level > 0 else inputs[0]

    def get_config(self) -> Config:
        return {**super().get_config(), self.arg: getattr(self, self.arg), "seed": self.seed}


class GaussianNoise(_Noise):
    """Adds zero-centred Gaussian noise while training: x + N(0, stddev^2) per value.

    At inference the input passes through.

    Args:
        stddev: a float in [0, 1], the noise's standard deviation (Keras' range).
        seed: default None; an int kept in the config. The noise follows the model's
            seeded stream, as Dropout's masks do.
        **kwargs: the base Layer's arguments.
    """
    op, arg = "gaussian_noise", "stddev"

    def __init__(self, stddev: float, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(stddev, seed, **kwargs)


class GaussianDropout(_Noise):
    """Multiplies by Gaussian noise of mean 1 while training: x * N(1, rate / (1 - rate)).

    At inference the input passes through.

    Args:
        rate: a float in [0, 1) (1 would be an infinite variance).
        seed: default None; an int kept in the config (the noise follows the model's
            seeded stream).
        **kwargs: the base Layer's arguments.
    """
    op, arg, closed = "gaussian_dropout", "rate", False

    def __init__(self, rate: float, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(rate, seed, **kwargs)
