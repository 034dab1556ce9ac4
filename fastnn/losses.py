"""Losses with Keras 3's names, arguments, defaults and maths (keras/src/losses/losses.py).

Each loss is a C kernel (csrc/losses.c, named by `key`) that gives every sample's loss and
its gradient w.r.t. the predictions; the engine runs it on each batch of fit/evaluate, and
calling a Loss object on arrays runs the same kernel and reduces the per-sample values as
Keras does ("sum_over_batch_size": sum_i w_i L_i / n). The functions (mean_squared_error,
...) return the per-sample values, as Keras' do.

The cross-entropies run on logits inside the engine. With from_logits=False (Keras'
default) the model must end in the matching activation (softmax, or sigmoid for the
binary loss): training then hands the engine that layer's pre-activation, which is the
same loss, numerically stable, with gradient p - t; predict still returns
probabilities."""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Union

import numpy as np

from fastnn import _engine
from fastnn._typing import ArrayLike, Config, DTypeLike

_EPSILON = 1e-7  # Keras' clip of probabilities, for losses called on arrays
_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None, "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                         f"{list(_REDUCTIONS)}. Received: reduction={reduction!r}")
    return reduction


def _check_axis(axis):
    if isinstance(axis, bool) or axis not in (-1, 1):
        raise ValueError(f"fastnn computes losses over the features axis of 2-D outputs: axis "
                         f"must be -1. Received: axis={axis!r}")
    return axis


def _check_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real) \
            or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1]. Received: "
                         f"label_smoothing={label_smoothing!r}")
    return float(label_smoothing)


def _check_from_logits(from_logits):
    if not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"from_logits must be True or False. Received: "
                         f"from_logits={from_logits!r}")
    return bool(from_logits)


def _as_real(a, name):
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype} with shape "
                        f"{arr.shape}")
    return arr


class Loss:
    """Keras' Loss: `loss(y_true, y_pred, sample_weight=None)` reduces the per-sample
    losses of `call(y_true, y_pred)`; compile(loss=...) runs the same kernel in the engine.

    reduction: "sum_over_batch_size" (the default, as "mean": sum of the weighted
    per-sample losses over the number of samples), "sum", "mean_with_sample_weight" (over
    the sum of the weights), or None/"none" (the per-sample values; arrays only).

    Args:
        reduction: default "sum_over_batch_size"; see above.
        name: default None (the class's default name, e.g. "mean_squared_error").
        dtype: None or "float32" (fastnn computes losses in float32).

    Example::

        loss = fastnn.losses.MeanSquaredError()
        value = loss(y_true, y_pred)
        model.compile(optimizer="adam", loss=loss)
    """
    key = None               # the engine's kernel (_engine.LOSSES)
    from_logits = True       # False: the model's last activation is folded into the loss
    output_activation = None  # ... and must be this one
    sparse_labels = False    # targets are class indices (n,) rather than shaped like y
    default_name = None

    def __init__(self, reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = None,
                 dtype: DTypeLike = None) -> None:
        self.reduction = _check_reduction(reduction)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string. Received: name={name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"fastnn computes losses in float32. Received: dtype={dtype!r}")
        self.name = name or self.default_name

    @property
    def param(self) -> float:
        """The kernel's parameter (huber's delta, the cross-entropies' label smoothing)."""
        return 0.0

    # -- on arrays ----------------------------------------------------------------------
    def _prepare(self, y_true, y_pred):
        """(target, prediction) as float32 C-contiguous (n, m) (n, 1 for class indices),
        prediction as logits for a cross-entropy; and the samples per row of the input."""
        pred = _as_real(y_pred, "y_pred").astype(np.float32)
        true = _as_real(y_true, "y_true").astype(np.float32)
        if pred.ndim == 0 or pred.size == 0:
            raise ValueError(f"y_pred must be a non-empty array, got shape {pred.shape}")
        if self.sparse_labels:
            rows = pred.reshape(-1, pred.shape[-1])
            labels = true.reshape(-1)
            if labels.shape[0] != rows.shape[0]:
                raise ValueError(f"{self.name}: y_true must hold one class index per row of "
                                 f"y_pred. Received: y_true.shape={true.shape}, "
                                 f"y_pred.shape={pred.shape}")
            return labels, rows, pred.shape[:-1]
        # Keras: shapes that differ by a trailing 1 are made equal
        if true.ndim == pred.ndim + 1 and true.shape[-1] == 1:
            true = true.reshape(true.shape[:-1])
        elif pred.ndim == true.ndim + 1 and pred.shape[-1] == 1:
            pred = pred.reshape(pred.shape[:-1])
        if true.shape != pred.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same shape. "
                             f"Received: y_true.shape={true.shape}, y_pred.shape={pred.shape}")
        lead = pred.shape[:-1]  # 1-D: one sample, as Keras' mean over the last axis
        return (np.ascontiguousarray(true.reshape(-1, true.shape[-1])),
                np.ascontiguousarray(pred.reshape(-1, pred.shape[-1])), lead)

    def _logits(self, probabilities):
        return probabilities

    def _values(self, y_true, y_pred):
        """Per-sample losses (float64, the leading shape of y_pred) by the C kernel."""
        target, pred, lead = self._prepare(y_true, y_pred)
        if not self.from_logits:
            pred = np.ascontiguousarray(self._logits(pred), dtype=np.float32)
        values, _ = _engine.loss_rows(self.key, pred, target, self.param)
        return values.reshape(lead)

    def call(self, y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
        """The per-sample losses (float32, y_pred's shape without its last axis)."""
        values = self._values(y_true, y_pred).astype(np.float32)
        return values[()] if values.ndim == 0 else values

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike,
                 sample_weight: Optional[ArrayLike] = None) -> Union[np.ndarray, np.float32]:
        values = self._values(y_true, y_pred)
        if sample_weight is not None:
            w = _as_real(sample_weight, "sample_weight").astype(np.float64)
            if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
                w = w.reshape(w.shape[:-1])
            try:
                w = np.broadcast_to(w.reshape(w.shape + (1,) * (values.ndim - w.ndim)),
                                    values.shape)
            except ValueError:
                raise ValueError(f"sample_weight of shape {np.shape(sample_weight)} does not "
                                 f"match the {values.shape} per-sample losses") from None
            values = values * w
        if self.reduction in (None, "none"):
            return values.astype(np.float32)
        total = values.sum()
        if self.reduction == "sum":
            return np.float32(total)
        if self.reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = w.sum()
        else:
            divisor = values.size
        return np.float32(total / divisor if divisor else 0.0)

    # -- config -------------------------------------------------------------------------
    def get_config(self) -> Config:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config: Config) -> Loss:
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over the last axis."""
    key, default_name = "mse", "mean_squared_error"


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over the last axis."""
    key, default_name = "mae", "mean_absolute_error"


class MeanAbsolutePercentageError(Loss):
    """100 mean(|y_true - y_pred| / max(|y_true|, 1e-7)) over the last axis."""
    key, default_name = "mape", "mean_absolute_percentage_error"


class MeanSquaredLogarithmicError(Loss):
    """mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))^2)."""
    key, default_name = "msle", "mean_squared_logarithmic_error"


class LogCosh(Loss):
    """mean(log(cosh(y_pred - y_true))), computed as x + softplus(-2x) - log 2 (finite
    for any error)."""
    key, default_name = "log_cosh", "log_cosh"


class KLDivergence(Loss):
    """sum(y_true log(y_true / y_pred)) over the last axis, both clipped to [1e-7, 1]."""
    key, default_name = "kld", "kl_divergence"


class Poisson(Loss):
    """mean(y_pred - y_true log(y_pred + 1e-7))."""
    key, default_name = "poisson", "poisson"


class Hinge(Loss):
    """mean(max(1 - y_true y_pred, 0)); labels -1/1, or 0/1 (converted when all are)."""
    key, default_name = "binary_hinge", "hinge"


class SquaredHinge(Loss):
    """mean(max(1 - y_true y_pred, 0)^2); labels as Hinge."""
    key, default_name = "binary_squared_hinge", "squared_hinge"


class CategoricalHinge(Loss):
    """max(max((1 - y_true) y_pred) - sum(y_true y_pred) + 1, 0) per sample."""
    key, default_name = "categorical_hinge", "categorical_hinge"


class Huber(Loss):
    """mean of e^2 / 2 where |e| <= delta, else delta (|e| - delta / 2); e = y_pred - y_true."""
    key, default_name = "huber", "huber_loss"

    def __init__(self, delta: float = 1.0, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "huber_loss", dtype: DTypeLike = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real) \
                or not np.isfinite(delta) or delta <= 0:
            raise ValueError(f"delta must be a positive number. Received: delta={delta!r}")
        self.delta = float(delta)

    @property
    def param(self) -> float:
        return self.delta

    def get_config(self) -> Config:
        return {**super().get_config(), "delta": self.delta}


class CosineSimilarity(Loss):
    """-sum(l2_normalize(y_true) * l2_normalize(y_pred)) over the last axis (in [-1, 1]:
    -1 when they point the same way)."""
    key, default_name = "cosine", "cosine_similarity"

    def __init__(self, axis: int = -1, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "cosine_similarity", dtype: DTypeLike = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.axis = _check_axis(axis)

    def get_config(self) -> Config:
        return {**super().get_config(), "axis": self.axis}


class _CrossEntropy(Loss):
    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = None,
                 dtype: DTypeLike = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.from_logits = _check_from_logits(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = _check_axis(axis)

    @property
    def param(self) -> float:
        return self.label_smoothing

    def get_config(self) -> Config:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class BinaryCrossentropy(_CrossEntropy):
    """mean(-(t log p + (1 - t) log(1 - p))) over the last axis, p = sigmoid(logits);
    label_smoothing s squeezes the targets towards 0.5: t (1 - s) + s / 2."""
    key, default_name = "sigmoid_crossentropy", "binary_crossentropy"
    output_activation = "sigmoid"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "binary_crossentropy", dtype: DTypeLike = None) -> None:
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)

    def _logits(self, p):
        p = np.clip(p.astype(np.float64), _EPSILON, 1.0 - _EPSILON)
        return np.log(p / (1.0 - p))


class CategoricalCrossentropy(_CrossEntropy):
    """-sum(t log p) over the last axis with target distributions (e.g. one-hot rows),
    p = softmax(logits); label_smoothing s: t (1 - s) + s / classes."""
    key, default_name = "softmax_crossentropy", "categorical_crossentropy"
    output_activation = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "categorical_crossentropy", dtype: DTypeLike = None) -> None:
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)

    def _logits(self, p):  # log p: its softmax is p renormalised, as Keras does
        return np.log(np.clip(p.astype(np.float64), _EPSILON, 1.0))


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """-log p[label] with integer class labels, p = softmax(logits). As in Keras 3 there is
    no label_smoothing here; ignore_class is not supported (None only)."""
    key, default_name = "sparse_softmax_crossentropy", "sparse_categorical_crossentropy"
    sparse_labels = True

    def __init__(self, from_logits: bool = False, ignore_class: Optional[int] = None,
                 reduction: Optional[str] = "sum_over_batch_size", axis: int = -1,
                 name: Optional[str] = "sparse_categorical_crossentropy",
                 dtype: DTypeLike = None) -> None:
        if ignore_class is not None:
            raise ValueError(f"fastnn does not support ignore_class (masked labels). "
                             f"Received: ignore_class={ignore_class!r}")
        super().__init__(from_logits, 0.0, axis, reduction, name, dtype)
        self.ignore_class = None

    def _prepare(self, y_true, y_pred):
        labels, rows, lead = super()._prepare(y_true, y_pred)
        m = rows.shape[1]
        if labels.size and (np.any(labels != np.floor(labels)) or labels.min() < 0
                            or labels.max() >= m):
            raise ValueError(f"{self.name}: y_true must hold integer class labels in [0, {m}), "
                             f"got values in [{labels.min()}, {labels.max()}]")
        return np.ascontiguousarray(labels), np.ascontiguousarray(rows), lead

    def get_config(self) -> Config:
        config = super().get_config()
        del config["label_smoothing"]
        return {**config, "ignore_class": None}


# ---- functions: the per-sample losses, as Keras' -------------------------------------------

def mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample mean squared error of y_true and y_pred.

    See MeanSquaredError for the formula and the arguments.
    """
    return MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample mean absolute error of y_true and y_pred.

    See MeanAbsoluteError for the formula and the arguments.
    """
    return MeanAbsoluteError().call(y_true, y_pred)


def mean_absolute_percentage_error(y_true: ArrayLike,
                                   y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample mean absolute percentage error of y_true and y_pred.

    See MeanAbsolutePercentageError for the formula and the arguments.
    """
    return MeanAbsolutePercentageError().call(y_true, y_pred)


def mean_squared_logarithmic_error(y_true: ArrayLike,
                                   y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample mean squared logarithmic error of y_true and y_pred.

    See MeanSquaredLogarithmicError for the formula and the arguments.
    """
    return MeanSquaredLogarithmicError().call(y_true, y_pred)


def cosine_similarity(y_true: ArrayLike, y_pred: ArrayLike,
                      axis: int = -1) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample negated cosine similarity of y_true and y_pred.

    See CosineSimilarity for the formula and the arguments.
    """
    return CosineSimilarity(axis=axis).call(y_true, y_pred)


def huber(y_true: ArrayLike, y_pred: ArrayLike,
          delta: float = 1.0) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample Huber loss of y_true and y_pred (see Huber for the formula)."""
    return Huber(delta=delta).call(y_true, y_pred)


def log_cosh(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample log-cosh loss of y_true and y_pred.

    See LogCosh for the formula and the arguments.
    """
    return LogCosh().call(y_true, y_pred)


def kl_divergence(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample Kullback-Leibler divergence of y_true and y_pred.

    See KLDivergence for the formula and the arguments.
    """
    return KLDivergence().call(y_true, y_pred)


def poisson(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample Poisson loss of y_true and y_pred.

    See Poisson for the formula and the arguments.
    """
    return Poisson().call(y_true, y_pred)


def hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample hinge loss of y_true and y_pred (see Hinge for the formula)."""
    return Hinge().call(y_true, y_pred)


def squared_hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample squared hinge loss of y_true and y_pred.

    See SquaredHinge for the formula and the arguments.
    """
    return SquaredHinge().call(y_true, y_pred)


def categorical_hinge(y_true: ArrayLike, y_pred: ArrayLike) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample categorical hinge loss of y_true and y_pred.

    See CategoricalHinge for the formula and the arguments.
    """
    return CategoricalHinge().call(y_true, y_pred)


def binary_crossentropy(y_true: ArrayLike, y_pred: ArrayLike, from_logits: bool = False,
                        label_smoothing: float = 0.0,
                        axis: int = -1) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample binary cross-entropy of y_true and y_pred.

    See BinaryCrossentropy for the formula and the arguments.
    """
    return BinaryCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def categorical_crossentropy(y_true: ArrayLike, y_pred: ArrayLike, from_logits: bool = False,
                             label_smoothing: float = 0.0,
                             axis: int = -1) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample categorical cross-entropy of y_true and y_pred.

    See CategoricalCrossentropy for the formula and the arguments.
    """
    return CategoricalCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true: ArrayLike, y_pred: ArrayLike, from_logits: bool = False,
                                    ignore_class: Optional[int] = None,
                                    axis: int = -1) -> Union[np.ndarray, np.float32]:
    """Returns the per-sample cross-entropy of integer labels y_true and y_pred.

    See SparseCategoricalCrossentropy for the formula and the arguments.
    """
    return SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis).call(y_true,
                                                                                     y_pred)


# Keras' short names
mse, mae, mape, msle = (mean_squared_error, mean_absolute_error,
                        mean_absolute_percentage_error, mean_squared_logarithmic_error)
kld, logcosh = kl_divergence, log_cosh

_CLASSES = (MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
            MeanSquaredLogarithmicError, CosineSimilarity, Huber, LogCosh, Hinge, SquaredHinge,
            CategoricalHinge, KLDivergence, Poisson, BinaryCrossentropy,
            CategoricalCrossentropy, SparseCategoricalCrossentropy)
_FUNCTIONS = {mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
              mean_absolute_percentage_error: MeanAbsolutePercentageError,
              mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
              cosine_similarity: CosineSimilarity, huber: Huber, log_cosh: LogCosh,
              kl_divergence: KLDivergence, poisson: Poisson, hinge: Hinge,
              squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge,
              binary_crossentropy: BinaryCrossentropy,
              categorical_crossentropy: CategoricalCrossentropy,
              sparse_categorical_crossentropy: SparseCategoricalCrossentropy}
# names, looked up case-insensitively: Keras' function names and short aliases, the class
# names, and each class's default instance name
_BY_NAME = {f.__name__: cls for f, cls in _FUNCTIONS.items()}
_BY_NAME.update({cls.__name__.lower(): cls for cls in _CLASSES})
_BY_NAME.update({cls.default_name: cls for cls in _CLASSES})
_BY_NAME.update({"mse": MeanSquaredError, "mae": MeanAbsoluteError,
                 "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError,
                 "kld": KLDivergence, "logcosh": LogCosh, "bce": BinaryCrossentropy})

# what compile(loss=...) takes: a name, a Loss (or class), a function of this module, or
# serialize()'s dict
LossLike = Union[str, Loss, type, Callable[..., Any], Config]


def serialize(loss: LossLike) -> Config:
    """{"class_name": ..., "config": ...} of a Loss (as keras.losses.serialize)."""
    loss = get(loss)
    return {"class_name": type(loss).__name__, "config": loss.get_config()}


def deserialize(config: Union[Config, str]) -> Loss:
    """The Loss described by serialize()'s dict, or by a name."""
    if isinstance(config, dict) and "class_name" in config:
        by_class = {cls.__name__: cls for cls in _CLASSES}
        if config["class_name"] not in by_class:
            raise ValueError(f"Unknown loss class: {config['class_name']!r}. Valid: "
                             f"{sorted(by_class)}")
        return by_class[config["class_name"]].from_config(dict(config.get("config") or {}))
    return get(config)


def get(identifier: LossLike) -> Loss:
    """A Loss from a Loss, a Loss class, one of the functions above, a name (Keras' names,
    case-insensitive) or a serialize() dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss) and identifier.key:
        return identifier()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    try:
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier]()
    except TypeError:  # unhashable
        pass
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Unknown loss: {identifier!r}. Valid names: {sorted(_BY_NAME)}")
