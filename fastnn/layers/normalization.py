"""Normalization layers with Keras 3's arguments and maths: Normalization (standardise by
a mean and variance from adapt() or given), BatchNormalization and LayerNormalization.
Each lowers to one engine op (csrc/ops/normalization.c).

The engine keeps a row flat: an input of shape (None, k, d) normalized over its last axis
is k groups of d values, so these layers take the trailing axes of their input (the last
axis, or for Normalization/LayerNormalization the last few); other axes raise a
ValueError. Called directly on arrays, a layer computes inference in NumPy."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Union

import numpy as np

from fastnn import constraints, initializers, regularizers
from fastnn._typing import ArrayLike, Config, DTypeLike, InputShape, Shape
from fastnn.layers.core import Layer


class _Values(initializers.Initializer):
    """The given values, broadcast to the weight's shape (Normalization's mean/variance)."""

    def __init__(self, values: ArrayLike) -> None:
        self.values = np.asarray(values, dtype=np.float64)

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return np.broadcast_to(self.values, shape).astype(dtype)


def _trailing(layer, input_shape, axes, what="axis"):
    """The input axes `axes` (ints, any sign; () for none) as sorted positive axes, checked
    to be trailing feature axes of input_shape."""
    if isinstance(input_shape, list):
        raise ValueError(f"{type(layer).__name__} '{layer.name}' takes one input")
    ndim = len(input_shape)
    kept = sorted(a + ndim if a < 0 else a for a in axes)
    if any(not 1 <= a < ndim for a in kept) or len(set(kept)) != len(kept):
        raise ValueError(f"{type(layer).__name__} '{layer.name}': {what}={layer.axis!r} is not "
                         f"a feature axis of input shape {tuple(input_shape)}")
    if kept and kept != list(range(kept[0], ndim)):
        raise ValueError(f"{type(layer).__name__} '{layer.name}' normalizes over trailing "
                         f"axes of its input (the engine keeps rows flat); {what}="
                         f"{layer.axis!r} on input shape {tuple(input_shape)} is not supported")
    return kept


def _check_axis(axis, allow_list, allow_none=False):
    ok = (allow_none and axis is None) or \
        (isinstance(axis, numbers.Integral) and not isinstance(axis, bool)) or \
        (allow_list and isinstance(axis, (list, tuple)) and
         all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis))
    if not ok:
        kinds = "an int" + (" or a list/tuple of ints" if allow_list else "") + \
            (" or None" if allow_none else "")
        raise TypeError(f"Expected {kinds} for the argument 'axis'. Received: axis={axis!r}")


def _epsilon(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"epsilon must be a positive number. Received: epsilon={value!r}")
    return float(value)


# ---- Normalization ---------------------------------------------------------------------

class Normalization(Layer):
    """(x - mean) / max(sqrt(variance), 1e-7) per position of the kept axes (`axis`;
    None: one mean and variance for every value), or with invert=True the inverse,
    x * max(sqrt(variance), 1e-7) + mean. mean/variance come from adapt(data) (stored as
    non-trainable weights: saved, loaded, counted by summary as Keras 3 counts them, with
    the number of adapted samples) or are given; given ones are kept as non-trainable
    weights too (the engine reads them from its state buffer), where Keras holds constants.

    Args:
        axis: default -1; the axis (or list of axes) that keeps its own statistics;
            None for one mean and variance over every value.
        mean: default None; the mean to use (give variance too), instead of adapt().
        variance: default None; the variance to use, with mean.
        invert: default False; True maps normalized values back.
        **kwargs: the base Layer's arguments.

    Example::

        norm = fastnn.layers.Normalization()
        norm.adapt(x_train)
    """

    def __init__(self, axis: Union[int, Sequence[int], None] = -1,
                 mean: Optional[ArrayLike] = None, variance: Optional[ArrayLike] = None,
                 invert: bool = False, **kwargs: Any) -> None:
        _check_axis(axis, allow_list=True, allow_none=True)
        if (mean is None) != (variance is None):
            raise ValueError("When setting values directly, both `mean` and `variance` must be "
                             f"set. Received: mean={mean!r} and variance={variance!r}")
        super().__init__(**kwargs)
        self.axis = () if axis is None else tuple(int(a) for a in axis) \
            if isinstance(axis, (list, tuple)) else (int(axis),)
        if mean is not None:
            m, v = np.asarray(mean), np.asarray(variance)
            if m.shape != v.shape:
                raise ValueError("When setting values directly, `mean` and `variance` must have "
                                 f"the same shape. Received: mean shape {m.shape} and variance "
                                 f"shape {v.shape}")
            if m.ndim > len(self.axis):
                raise ValueError(f"The rank of `mean` must be less than or equal to the number "
                                 f"of axes ({len(self.axis)}). Received: mean shape {m.shape} "
                                 f"for axis {self.axis}")
            if m.dtype.kind not in "fiub" or v.dtype.kind not in "fiub" or \
                    not np.all(np.isfinite(m)) or not np.all(np.isfinite(v)) or np.any(v < 0):
                raise ValueError("mean must be finite numbers and variance finite non-negative "
                                 f"numbers. Received: mean={mean!r}, variance={variance!r}")
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        self.mean = self.variance = self.count = None

    def _kept(self, input_shape):
        return _trailing(self, input_shape, self.axis)

    def build(self, input_shape: InputShape) -> None:
        kept = self._kept(input_shape)
        # Keras' scalars (axis=None, the count) are (1,) here: Layer.add_weight makes every
        # weight at least 1-D (np.ascontiguousarray), so a () weight would not load back
        shape = tuple(input_shape[a] for a in kept) or (1,)
        self._channels = math.prod(shape)
        if self.input_mean is None:
            self.add_weight("mean", shape, "zeros", trainable=False)
            self.add_weight("variance", shape, "ones", trainable=False)
            self.add_weight("count", (1,), "zeros", trainable=False)
        else:
            # Keras aligns given values with the kept axes from the right
            try:
                m = np.broadcast_to(np.asarray(self.input_mean, np.float64), shape)
                v = np.broadcast_to(np.asarray(self.input_variance, np.float64), shape)
            except ValueError:
                raise ValueError(f"Normalization '{self.name}': mean of shape "
                                 f"{np.shape(self.input_mean)} does not broadcast to the kept "
                                 f"axes' shape {shape}") from None
            self.add_weight("mean", shape, _Values(m), trainable=False)
            self.add_weight("variance", shape, _Values(v), trainable=False)
        super().build(input_shape)

    def adapt(self, data: ArrayLike) -> None:
        """Sets mean and variance (and count) from data: an array of samples, (n, ...)
        with the layer's input shape, reduced over every axis but the kept ones."""
        if self.input_mean is not None:
            raise ValueError(f"Normalization '{self.name}' was given its mean and variance; "
                             "adapt() computes them for a layer created without them")
        arr = np.asarray(data)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"adapt() takes real numbers, got dtype {arr.dtype} with shape "
                            f"{arr.shape}")
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError("adapt() takes a non-empty batch of samples (n, features...). "
                             f"Received: data of shape {arr.shape}")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"adapt() data contains NaN or Inf (shape {arr.shape})")
        shape = (None,) + arr.shape[1:]
        if not self.built:
            self.build(shape)
        elif tuple(self.input_shape)[1:] != shape[1:]:
            raise ValueError(f"Normalization '{self.name}' was built with input_shape="
                             f"{self.input_shape}, but adapt() is being called with data of "
                             f"an incompatible shape, data.shape={arr.shape}")
        kept = self._kept(shape)
        reduce = tuple(a for a in range(arr.ndim) if a not in kept)
        self.mean[...] = np.reshape(arr.mean(axis=reduce), self.mean.shape)  # in place: a
        self.variance[...] = np.reshape(arr.var(axis=reduce), self.mean.shape)  # model's buffers
        self.count[...] = math.prod(arr.shape[a] for a in reduce)

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return tuple(input_shape)

    def _scale(self):
        return np.maximum(np.sqrt(self.variance.astype(np.float64)), 1e-7)

    def call(self, x: np.ndarray) -> np.ndarray:
        mean = self.mean.astype(np.float64)
        y = x * self._scale() + mean if self.invert else (x - mean) / self._scale()
        return y.astype(np.float32)

    def _lower(self, ctx, inputs):
        _, mean = ctx.weight(self, "mean")
        _, variance = ctx.weight(self, "variance")
        return ctx.op("normalization", inputs, state_off=[mean, variance],
                      iparam=[self._channels, int(self.invert)])

    def get_config(self) -> Config:
        def plain(v):
            return None if v is None else np.asarray(v, dtype=np.float64).tolist()
        axis = None if self.axis == () else list(self.axis)
        return {**super().get_config(), "axis": axis, "invert": self.invert,
                "mean": plain(self.input_mean), "variance": plain(self.input_variance)}


# ---- BatchNormalization and LayerNormalization --------------------------------------------

class _Affine(Layer):
    """gamma * xhat + beta after a normalization: the weights, their initializers,
    regularizers and constraints, and how the engine op finds them."""

    def __init__(self, axis: Union[int, Sequence[int]], epsilon: float, center: bool,
                 scale: bool, beta_initializer: initializers.InitializerLike,
                 gamma_initializer: initializers.InitializerLike,
                 beta_regularizer: regularizers.RegularizerLike,
                 gamma_regularizer: regularizers.RegularizerLike,
                 beta_constraint: constraints.ConstraintLike,
                 gamma_constraint: constraints.ConstraintLike, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis
        self.epsilon = _epsilon(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None

    def _add_affine(self, shape):
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer)

    def _affine_fields(self, ctx):
        """The op's fields for gamma and beta (see csrc/ops/normalization.c): whether they
        train, w_off (gamma, or beta alone), b_off (beta beside gamma, else -1)."""
        offsets, trainable = [], False
        for name, on, reg, con in (("gamma", self.scale, self.gamma_regularizer,
                                    self.gamma_constraint),
                                   ("beta", self.center, self.beta_regularizer,
                                    self.beta_constraint)):
            if on:
                trainable, off = ctx.weight(self, name)
                offsets.append(off)
                regularizers.lower(ctx, self, name, reg)
                constraints.lower(ctx, self, name, con)
        return {"trainable": trainable, "w_off": offsets[0] if offsets else -1,
                "b_off": offsets[1] if len(offsets) == 2 else -1}, trainable

    def _apply_affine(self, xhat):
        y = xhat
        if self.scale:
            y = y * self.gamma.astype(np.float64)
        if self.center:
            y = y + self.beta.astype(np.float64)
        return y.astype(np.float32)

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> Config:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer),
                "beta_regularizer": regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": constraints.serialize(self.beta_constraint),
                "gamma_constraint": constraints.serialize(self.gamma_constraint)}


class BatchNormalization(_Affine):
    """gamma * (x - m) / sqrt(v + epsilon) + beta per feature of `axis` (the last axis).
    While training (fit, train_on_batch) m and v are the batch's mean and variance, and
    the moving statistics move towards them: moving = moving * momentum + batch *
    (1 - momentum); at inference (predict, evaluate, calling the layer) m and v are the
    moving statistics. A frozen layer (trainable=False) always runs as at inference and
    keeps its moving statistics, as in Keras 3. Weights: gamma, beta (trainable),
    moving_mean, moving_variance (non-trainable).

    Args:
        axis: default -1; the features axis.
        momentum: default 0.99; the moving statistics' momentum.
        epsilon: default 1e-3; added to the variance.
        center: default True; add the trained offset beta.
        scale: default True; multiply by the trained scale gamma.
        beta_initializer: default "zeros".
        gamma_initializer: default "ones".
        moving_mean_initializer: default "zeros".
        moving_variance_initializer: default "ones".
        beta_regularizer, gamma_regularizer: default None; penalties on beta, gamma.
        beta_constraint, gamma_constraint: default None; applied after each update.
        synchronized: must stay False (TensorFlow only in Keras).
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True,
                 beta_initializer: initializers.InitializerLike = "zeros",
                 gamma_initializer: initializers.InitializerLike = "ones",
                 moving_mean_initializer: initializers.InitializerLike = "zeros",
                 moving_variance_initializer: initializers.InitializerLike = "ones",
                 beta_regularizer: regularizers.RegularizerLike = None,
                 gamma_regularizer: regularizers.RegularizerLike = None,
                 beta_constraint: constraints.ConstraintLike = None,
                 gamma_constraint: constraints.ConstraintLike = None,
                 synchronized: bool = False, **kwargs: Any) -> None:
        _check_axis(axis, allow_list=False)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or \
                not math.isfinite(momentum):
            raise ValueError(f"momentum must be a finite number. Received: momentum={momentum!r}")
        if synchronized:
            raise ValueError("Argument synchronized=True is only supported with the "
                             "TensorFlow backend.")
        super().__init__(int(axis), epsilon, center, scale, beta_initializer,
                         gamma_initializer, beta_regularizer, gamma_regularizer,
                         beta_constraint, gamma_constraint, **kwargs)
        self.momentum = float(momentum)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.moving_mean = self.moving_variance = None

    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list):
            raise ValueError(f"BatchNormalization '{self.name}' takes one input")
        axis = self.axis + len(input_shape) if self.axis < 0 else self.axis
        if not 1 <= axis < len(input_shape):
            raise ValueError(f"BatchNormalization '{self.name}': axis={self.axis!r} is not a "
                             f"feature axis of input shape {tuple(input_shape)}")
        if axis != len(input_shape) - 1:
            raise ValueError(f"BatchNormalization '{self.name}' normalizes the last axis of its "
                             f"input; axis={self.axis!r} on input shape {tuple(input_shape)} "
                             "is not supported")
        shape = (input_shape[axis],)
        self._add_affine(shape)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                        trainable=False)
        super().build(input_shape)

    def call(self, x: np.ndarray) -> np.ndarray:
        mean = self.moving_mean.astype(np.float64)
        var = self.moving_variance.astype(np.float64)
        return self._apply_affine((x - mean) / np.sqrt(var + self.epsilon))

    def _lower(self, ctx, inputs):
        fields, trainable = self._affine_fields(ctx)
        # without gamma and beta the layer's own flag says whether it trains (batch mode)
        frozen = not trainable if (self.scale or self.center) else not self.trainable
        _, mm = ctx.weight(self, "moving_mean")
        _, mv = ctx.weight(self, "moving_variance")
        return ctx.op("batch_norm", inputs, **fields, state_off=[mm, mv],
                      fparam=[self.epsilon, self.momentum],
                      iparam=[self.moving_mean.size, int(self.scale), int(self.center),
                              int(frozen)])

    def get_config(self) -> Config:
        return {**super().get_config(), "momentum": self.momentum,
                "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer":
                    initializers.serialize(self.moving_variance_initializer),
                "synchronized": False}


class LayerNormalization(_Affine):
    """gamma * (x - m) / sqrt(v + epsilon) + beta with m, v the mean and variance of each
    sample over `axis` (the last axis, or a list of trailing axes), the same in training
    and inference; gamma and beta have the shape of those axes.

    Args:
        axis: default -1; an int or a list of trailing axes, in increasing order.
        epsilon: default 1e-3; added to the variance.
        center: default True; add the trained offset beta.
        scale: default True; multiply by the trained scale gamma.
        rms_scaling: must stay False (not supported).
        beta_initializer: default "zeros".
        gamma_initializer: default "ones".
        beta_regularizer, gamma_regularizer: default None; penalties on beta, gamma.
        beta_constraint, gamma_constraint: default None; applied after each update.
        **kwargs: the base Layer's arguments.
    """

    def __init__(self, axis: Union[int, Sequence[int]] = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, rms_scaling: bool = False,
                 beta_initializer: initializers.InitializerLike = "zeros",
                 gamma_initializer: initializers.InitializerLike = "ones",
                 beta_regularizer: regularizers.RegularizerLike = None,
                 gamma_regularizer: regularizers.RegularizerLike = None,
                 beta_constraint: constraints.ConstraintLike = None,
                 gamma_constraint: constraints.ConstraintLike = None, **kwargs: Any) -> None:
        _check_axis(axis, allow_list=True)
        if rms_scaling:
            raise ValueError("LayerNormalization(rms_scaling=True) is not supported")
        axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        super().__init__(axis, epsilon, center, scale, beta_initializer, gamma_initializer,
                         beta_regularizer, gamma_regularizer, beta_constraint,
                         gamma_constraint, **kwargs)

    def _axes(self, input_shape):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        kept = _trailing(self, input_shape, axes)
        given = [a + len(input_shape) if a < 0 else a for a in axes]
        if given != kept:
            raise ValueError(f"LayerNormalization '{self.name}': list the axes in increasing "
                             f"order. Received: axis={self.axis!r}")
        return kept

    def build(self, input_shape: InputShape) -> None:
        kept = self._axes(input_shape)
        shape = tuple(input_shape[a] for a in kept)
        self._channels = math.prod(shape)
        self._add_affine(shape)
        super().build(input_shape)

    def call(self, x: np.ndarray) -> np.ndarray:
        axes = tuple(self._axes((None,) + x.shape[1:]))
        x = x.astype(np.float64)
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        return self._apply_affine((x - mean) / np.sqrt(var + self.epsilon))

    def _lower(self, ctx, inputs):
        fields, _ = self._affine_fields(ctx)
        return ctx.op("layer_norm", inputs, **fields, fparam=[self.epsilon],
                      iparam=[self._channels, int(self.scale), int(self.center)])

    def get_config(self) -> Config:
        return {**super().get_config(), "rms_scaling": False}
