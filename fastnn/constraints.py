"""Weight constraints with Keras 3's names and maths, applied to a weight after each
optimizer update (in the compiled engine, csrc/regularizers.c):

- MaxNorm(max_value=2, axis=0): w * clip(n, 0, max_value) / (eps + n)
- NonNeg(): max(w, 0)
- UnitNorm(axis=0): w / (eps + n)
- MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0):
  w * (rate * clip(n, min_value, max_value) + (1 - rate) * n) / (eps + n)

with n the L2 norm along `axis` (axis=0 on a Dense kernel (inputs, units): each unit's
incoming weights) and eps = 1e-7. The engine takes the norms of the last axis, of all the
axes but the last (axis=0 on a 2-D kernel), or of the whole weight. By name (get):
"max_norm", "non_neg", "unit_norm", "min_max_norm" and the class names."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from fastnn._typing import ArrayLike, Config
from fastnn.initializers import Configurable, resolve, serialize_object

if TYPE_CHECKING:
    from fastnn.layers.core import Layer
    from fastnn.models.plan import Lowering

EPSILON = 1e-7  # Keras' backend epsilon


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    return float(value) if not isinstance(value, numbers.Integral) else int(value)


def _axis(axis):
    if isinstance(axis, (list, tuple)):
        items = list(axis)
    else:
        items = [axis]
    if not items or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool)
                            for a in items):
        raise ValueError(f"Argument `axis` must be an integer or a list of integers. "
                         f"Received: axis={axis!r}")
    return [int(a) for a in items] if isinstance(axis, (list, tuple)) else int(axis)


class Constraint(Configurable):
    """Base class: __call__(w) returns the projected weight (NumPy, as a reference)."""

    kind = None  # the engine's name

    def __call__(self, w: ArrayLike) -> np.ndarray:
        return w

    # (min_value, max_value, rate) as the engine reads them
    def _bounds(self):
        return 0.0, 0.0, 1.0


class _NormConstraint(Constraint):
    axis = 0

    def _norms(self, w):
        w = np.asarray(w, dtype=np.float64)
        return w, np.sqrt(np.sum(np.square(w), axis=_tuple(self.axis), keepdims=True))


def _tuple(axis):
    return tuple(axis) if isinstance(axis, list) else axis


class MaxNorm(_NormConstraint):
    kind = "max_norm"

    def __init__(self, max_value: float = 2, axis: Union[int, Sequence[int]] = 0) -> None:
        self.max_value = _number(max_value, "max_value")
        self.axis = _axis(axis)

    def __call__(self, w: ArrayLike) -> np.ndarray:
        w, n = self._norms(w)
        return w * (np.clip(n, 0, self.max_value) / (EPSILON + n))

    def get_config(self) -> Config:
        return {"max_value": self.max_value, "axis": self.axis}

    def _bounds(self):
        return 0.0, float(self.max_value), 1.0


class NonNeg(Constraint):
    kind = "non_neg"

    def __call__(self, w: ArrayLike) -> np.ndarray:
        return np.maximum(np.asarray(w, dtype=np.float64), 0.0)


class UnitNorm(_NormConstraint):
    kind = "unit_norm"

    def __init__(self, axis: Union[int, Sequence[int]] = 0) -> None:
        self.axis = _axis(axis)

    def __call__(self, w: ArrayLike) -> np.ndarray:
        w, n = self._norms(w)
        return w / (EPSILON + n)

    def get_config(self) -> Config:
        return {"axis": self.axis}


class MinMaxNorm(_NormConstraint):
    kind = "min_max_norm"

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: Union[int, Sequence[int]] = 0) -> None:
        self.min_value = _number(min_value, "min_value")
        self.max_value = _number(max_value, "max_value")
        self.rate = _number(rate, "rate")
        self.axis = _axis(axis)

    def __call__(self, w: ArrayLike) -> np.ndarray:
        w, n = self._norms(w)
        want = self.rate * np.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return w * (want / (EPSILON + n))

    def get_config(self) -> Config:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}

    def _bounds(self):
        return float(self.min_value), float(self.max_value), float(self.rate)


_BY_NAME = {"MaxNorm": MaxNorm, "NonNeg": NonNeg, "UnitNorm": UnitNorm,
            "MinMaxNorm": MinMaxNorm, "max_norm": MaxNorm, "non_neg": NonNeg,
            "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm}


# what layers' `*_constraint=` arguments take: a name, an instance, serialize()'s dict,
# a class, or None
ConstraintLike = Union[str, Constraint, Config, type, None]


def get(identifier: ConstraintLike) -> Optional[Constraint]:
    """A Constraint (or None) from None, an instance, a name, or serialize()'s dict."""
    return resolve(identifier, "constraint", _BY_NAME, (MaxNorm, NonNeg, UnitNorm, MinMaxNorm))


serialize = serialize_object


def _layout(constraint, shape):
    """(engine axis name, rows, cols): the weight as a rows x cols matrix and which norms
    the constraint takes, or ValueError for axes the engine cannot group."""
    size = math.prod(shape)
    if not isinstance(constraint, _NormConstraint) or len(shape) == 0:
        return "all", size, 1
    ndim = len(shape)
    axes = constraint.axis if isinstance(constraint.axis, list) else [constraint.axis]
    if any(not -ndim <= a < ndim for a in axes):
        raise ValueError(f"{type(constraint).__name__}(axis={constraint.axis!r}) does not fit a "
                         f"weight of shape {tuple(shape)}")
    axes = {a % ndim for a in axes}
    rows, cols = math.prod(shape[:-1]), shape[-1]
    if axes == set(range(ndim)):
        return "all", size, 1
    if axes == set(range(ndim - 1)):
        return "columns", rows, cols
    if axes == {ndim - 1}:
        return "rows", rows, cols
    raise ValueError(f"fastnn takes the norms of the last axis, of all axes but the last, or "
                     f"of all axes; {type(constraint).__name__}(axis={constraint.axis!r}) on a "
                     f"weight of shape {tuple(shape)} is not one of them")


def lower(ctx: Lowering, layer: Layer, name: str, constraint: Optional[Constraint]) -> None:
    """Constrains the layer's weight `name` after each update in the plan ctx is building
    (once, however many times the layer is called; only while the weight trains)."""
    if constraint is None:
        return
    trainable, offset = ctx.weight(layer, name)
    if not trainable or any(c[2] == offset for c in ctx.constraints):
        return
    axis, rows, cols = _layout(constraint, getattr(layer, name).shape)
    ctx.constraints.append((constraint.kind, axis, offset, rows, cols, *constraint._bounds()))
