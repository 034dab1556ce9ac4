"""Regularizers with Keras 3's names and maths: a penalty l1 * sum(|x|) + l2 * sum(x^2).

On a weight (Dense(kernel_regularizer=...), ...) the penalty joins the loss that training
minimises and reports (fit's and evaluate's `loss`, not the per-output losses), and its
gradient l1 * sign(w) + 2 * l2 * w joins the weight's; frozen weights are not penalised.
On a layer's output (activity_regularizer=..., ActivityRegularization) the penalty of the
batch is divided by the batch size, as Keras 3 does. Both run in the compiled engine:
weight penalties over the flat parameter buffer (csrc/regularizers.c), activity penalties
as an op (csrc/ops/regularization.c).

By name (get): "l1" = L1(0.01), "l2" = L2(0.01), "l1_l2" = L1L2(l1=0.01, l2=0.01) (the
defaults Keras documents for these strings), and the class names "L1", "L2", "L1L2" (their
constructors' defaults)."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from fastnn._typing import ArrayLike, Config
from fastnn.initializers import Configurable, resolve, serialize_object

if TYPE_CHECKING:
    from fastnn.layers.core import Layer
    from fastnn.models.plan import Lowering


def _factor(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value!r}")
    return float(value)


class Regularizer(Configurable):
    """l1 * sum(|x|) + l2 * sum(x^2); the subclasses name the usual cases."""
    l1 = l2 = 0.0

    def __call__(self, x: ArrayLike) -> float:
        """The penalty of an array (in float64)."""
        x = np.asarray(x, dtype=np.float64)
        return float(self.l1 * np.abs(x).sum() + self.l2 * np.square(x).sum())

    def get_config(self) -> Config:
        return {"l1": self.l1, "l2": self.l2}


class L1L2(Regularizer):
    def __init__(self, l1: Optional[float] = 0.0, l2: Optional[float] = 0.0) -> None:
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")


class L1(Regularizer):
    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def get_config(self) -> Config:
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def get_config(self) -> Config:
        return {"l2": self.l2}


_BY_NAME = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2,
            "l1_l2": lambda: L1L2(l1=0.01, l2=0.01)}


# what layers' `*_regularizer=` arguments take: a name, an instance, serialize()'s dict,
# a class, or None
RegularizerLike = Union[str, Regularizer, Config, type, None]


def get(identifier: RegularizerLike) -> Optional[Regularizer]:
    """A Regularizer (or None) from None, an instance, a name, or serialize()'s dict."""
    return resolve(identifier, "regularizer", _BY_NAME, (L1, L2, L1L2))


serialize = serialize_object


# ---- lowering into the engine (layers call these from _lower) ---------------------------

def lower(ctx: Lowering, layer: Layer, name: str,
          regularizer: Optional[Regularizer]) -> None:
    """Penalises the layer's weight `name` in the plan ctx is building: once, however many
    times the layer is called, and only while the weight trains."""
    if regularizer is None or (regularizer.l1 == 0.0 and regularizer.l2 == 0.0):
        return
    trainable, offset = ctx.weight(layer, name)
    if trainable and all(p[0] != offset for p in ctx.penalties):
        ctx.penalties.append((offset, int(getattr(layer, name).size), regularizer.l1,
                              regularizer.l2))


def lower_activity(ctx: Lowering, tensor: int,
                   regularizer: Optional[Regularizer]) -> int:
    """The tensor after an activity penalty op (the tensor itself when there is none)."""
    if regularizer is None or (regularizer.l1 == 0.0 and regularizer.l2 == 0.0):
        return tensor
    return ctx.op("activity_regularization", [tensor], fparam=[regularizer.l1, regularizer.l2])
