"""Metrics with Keras 3's names, arguments and maths (keras/src/metrics/).

A metric is the sum of some statistics over batches (its slots: a weighted sum of
per-sample values and their count, a confusion histogram, sums of y, y^2 and residual^2,
...) and a function of those sums (`_result`): RMSE, R2, AUC or precision are not means of
per-batch values. The engine adds each batch's statistics with the C kernels of
csrc/metrics.c during fit and evaluate; a Metric object used alone (update_state,
result, reset_state) runs the same kernels on NumPy arrays.

As Keras: metrics given to compile(metrics=...) ignore sample weights; a weighted metric
(weighted_metrics) counts each sample by its weight."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from fastnn import _engine, losses as losses_module
from fastnn._typing import ArrayLike, Config, DTypeLike
from fastnn.utils import to_snake_case, unique_name

_EPSILON = 1e-7  # Keras' backend.epsilon()
_NEG_INF = -1e10  # Keras' threshold when only top_k decides


def _divide_no_nan(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), 0.0)


def _scalar(v):
    """A 0-d or 1-element result as a float, else the array."""
    v = np.asarray(v, np.float64)
    return float(v.reshape(())) if v.size == 1 else v


def _as_2d(a, name):
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype} with shape "
                        f"{arr.shape}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr.reshape(-1, 1) if arr.ndim == 1
                                else arr.reshape(-1, arr.shape[-1]))


class Metric:
    """The base class of the metrics, with Keras' interface.

    ``update_state(y_true, y_pred, sample_weight=None)`` adds a batch to the running
    statistics, ``result()`` returns the value so far and ``reset_state()`` starts
    again. In ``compile(metrics=[...])`` the engine computes the same statistics on
    every batch, in C, with no Python per step.

    Args:
        name: default None (the class's default name, e.g. "mean_absolute_error").
        dtype: None or "float32".

    Example::

        m = fastnn.metrics.MeanAbsoluteError()
        m.update_state(y_true, y_pred)
        m.result()
    """
    sparse_targets = False   # compares class indices (n, 1) rather than targets like y

    def __init__(self, name: Optional[str] = None, dtype: DTypeLike = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string. Received: name={name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"fastnn computes metrics in float32. Received: dtype={dtype!r}")
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.dtype = "float32"
        self.reset_state()

    # -- what the engine computes -------------------------------------------------------
    def _engine(self, width, weighted):
        """(engine key, options) of the statistics, on outputs `width` wide."""
        raise NotImplementedError

    def _result(self, s, rows):
        """The value from the summed slots s (rows: the samples they count)."""
        raise NotImplementedError

    def _check_output(self, width, target_width):
        """Raises unless outputs `width` wide with targets target_width wide fit."""
        want = 1 if self.sparse_targets else width
        if target_width != want:
            kind = "class indices (one per row)" if self.sparse_targets else \
                f"targets shaped like the outputs ({width} per row)"
            raise ValueError(f"metric {self.name!r} compares {kind}; the targets here have "
                             f"{target_width} value(s) per row")

    # -- alone, on arrays -----------------------------------------------------------------
    def reset_state(self) -> None:
        """Forgets every batch seen: the next result() is 0.0 until the next update."""
        self._slots = None
        self._spec = None
        self._rows = 0.0

    def update_state(self, y_true: ArrayLike, y_pred: ArrayLike,
                     sample_weight: Optional[ArrayLike] = None) -> None:
        """Adds a batch to the metric's running statistics.

        Args:
            y_true: the targets, an array of n samples (class indices for the sparse
                metrics).
            y_pred: the predictions, an array (n, ...).
            sample_weight: default None; a weight per sample, (n,) or (n, 1).

        Raises:
            ValueError: when the shapes do not match.
            TypeError: when an array does not hold real numbers.
        """
        pred = _as_2d(y_pred, "y_pred")
        true = _as_2d(y_true, "y_true")
        n, width = pred.shape
        if true.shape[0] != n and true.size == pred.size:
            true = np.ascontiguousarray(true.reshape(pred.shape))
        if true.shape[0] != n:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same number of "
                             f"samples. Received: y_true.shape={np.shape(y_true)}, "
                             f"y_pred.shape={np.shape(y_pred)}")
        weight = None
        if sample_weight is not None:
            w = np.asarray(sample_weight)
            if w.dtype.kind not in "fiub":
                raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
            if w.ndim == 2 and w.shape[1] == 1:
                w = w.reshape(-1)
            try:
                weight = np.ascontiguousarray(np.broadcast_to(w, (n,)), dtype=np.float32)
            except ValueError:
                raise ValueError(f"{self.name}: sample_weight of shape {w.shape} does not "
                                 f"match {n} samples") from None
        if self._spec is None:
            self._check_output(width, true.shape[1])
            key, opts = self._engine(width, True)
            self._spec = (width, key, opts)
            self._slots = np.zeros(_engine.metric_slots(key, width, opts))
        elif self._spec[0] != width:
            raise ValueError(f"{self.name}: y_pred has {width} values per sample, earlier "
                             f"updates had {self._spec[0]}")
        _, key, opts = self._spec
        _engine.metric_update(key, pred, true, self._slots, weight, opts)
        self._rows += n

    def result(self) -> float:
        """Returns the metric's value over every batch since the last reset (a float)."""
        if self._slots is None:
            return 0.0
        return self._result(self._slots, self._rows)

    def __call__(self, y_true: ArrayLike, y_pred: ArrayLike,
                 sample_weight: Optional[ArrayLike] = None) -> float:
        """update_state(y_true, y_pred, sample_weight), then returns result()."""
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self) -> Config:
        """Returns the constructor arguments as a JSON-able dict (for from_config)."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: Config) -> Metric:
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


# ---- means of per-sample values -------------------------------------------------------------

class _MeanMetric(Metric):
    """The (weighted) mean of a per-sample value over all samples (Keras' MeanMetricWrapper):
    slots [sum w v] (each sample counts 1) or, weighted, [sum w v, sum w]."""
    _key, _options = None, {}

    def _engine(self, width, weighted):
        return self._key, {**self._options, "weighted": weighted}

    def _result(self, s, rows):  # plain floats: logs read this after every chunk
        count = s[1] if len(s) > 1 else rows
        return float(s[0]) / float(count) if count else 0.0


class MeanSquaredError(_MeanMetric):
    """The mean squared error over all samples: mean((y_pred - y_true)^2)."""
    _key = "mse"

    def __init__(self, name: Optional[str] = "mean_squared_error", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class MeanAbsoluteError(_MeanMetric):
    """The mean absolute error over all samples: mean(|y_pred - y_true|)."""
    _key = "mae"

    def __init__(self, name: Optional[str] = "mean_absolute_error",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class RootMeanSquaredError(MeanSquaredError):
    """sqrt of the mean squared error over all samples (not a mean of batch values)."""

    def __init__(self, name: Optional[str] = "root_mean_squared_error",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)

    def _result(self, s, rows):
        return math.sqrt(max(super()._result(s, rows), 0.0))


class _LossMetric(_MeanMetric):
    """The mean of a loss's per-sample values (fastnn.losses' kernel)."""
    _key, _loss = "loss", None

    def _engine(self, width, weighted):
        return "loss", {"loss": self._loss, "weighted": weighted}


class MeanAbsolutePercentageError(_LossMetric):
    """The mean absolute percentage error: 100 mean(|y_true - y_pred| / max(|y_true|,
    1e-7))."""
    _loss = "mape"

    def __init__(self, name: Optional[str] = "mean_absolute_percentage_error",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class MeanSquaredLogarithmicError(_LossMetric):
    """The mean squared logarithmic error: mean((log(y_pred + 1) - log(y_true + 1))^2)."""
    _loss = "msle"

    def __init__(self, name: Optional[str] = "mean_squared_logarithmic_error",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class LogCoshError(_LossMetric):
    """The mean log-cosh error: mean(log(cosh(y_pred - y_true)))."""
    _loss = "log_cosh"

    def __init__(self, name: Optional[str] = "logcosh", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class KLDivergence(_LossMetric):
    """The mean Kullback-Leibler divergence: sum(y_true log(y_true / y_pred)) per
    sample."""
    _loss = "kld"

    def __init__(self, name: Optional[str] = "kl_divergence", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class Poisson(_LossMetric):
    """The mean Poisson loss: mean(y_pred - y_true log(y_pred + 1e-7))."""
    _loss = "poisson"

    def __init__(self, name: Optional[str] = "poisson", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class Hinge(_LossMetric):
    """The mean hinge loss: mean(max(1 - y_true y_pred, 0)), labels -1/1 or 0/1."""
    _loss = "binary_hinge"

    def __init__(self, name: Optional[str] = "hinge", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class SquaredHinge(_LossMetric):
    """The mean squared hinge loss: mean(max(1 - y_true y_pred, 0)^2)."""
    _loss = "binary_squared_hinge"

    def __init__(self, name: Optional[str] = "squared_hinge", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class CategoricalHinge(_LossMetric):
    """The mean categorical hinge loss: max(max((1 - y_true) y_pred) - sum(y_true
    y_pred) + 1, 0)."""
    _loss = "categorical_hinge"

    def __init__(self, name: Optional[str] = "categorical_hinge", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class CosineSimilarity(_LossMetric):
    """The mean cosine similarity of y_true and y_pred rows (the loss's value negated)."""
    _loss = "cosine"

    def __init__(self, name: Optional[str] = "cosine_similarity", dtype: DTypeLike = None,
                 axis: int = -1) -> None:
        super().__init__(name, dtype)
        self.axis = losses_module._check_axis(axis)

    def _result(self, s, rows):
        return -super()._result(s, rows)

    def get_config(self) -> Config:
        return {**super().get_config(), "axis": self.axis}


class _CrossEntropy(_LossMetric):
    """The mean cross-entropy of the outputs: probabilities by default (normalised and
    clipped to [1e-7, 1 - 1e-7], as Keras' metrics take them), logits when from_logits."""

    def __init__(self, name: str, dtype: DTypeLike, from_logits: bool, label_smoothing: float = 0.0,
                 axis: int = -1) -> None:
        self.from_logits = losses_module._check_from_logits(from_logits)
        self.label_smoothing = losses_module._check_smoothing(label_smoothing)
        self.axis = losses_module._check_axis(axis)
        super().__init__(name, dtype)

    def _engine(self, width, weighted):
        return "loss", {"loss": self._loss, "param": self.label_smoothing,
                        "iparam": (0, 0 if self.from_logits else 1), "weighted": weighted}

    def get_config(self) -> Config:
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class BinaryCrossentropy(_CrossEntropy):
    """The mean binary cross-entropy: mean(-(t log p + (1 - t) log(1 - p)))."""
    _loss = "sigmoid_crossentropy"

    def __init__(self, name: Optional[str] = "binary_crossentropy", dtype: DTypeLike = None,
                 from_logits: bool = False, label_smoothing: float = 0) -> None:
        super().__init__(name, dtype, from_logits, label_smoothing)

    def get_config(self) -> Config:
        config = super().get_config()
        del config["axis"]
        return config


class CategoricalCrossentropy(_CrossEntropy):
    """The mean categorical cross-entropy: -sum(t log p) per sample (one-hot or soft
    targets)."""
    _loss = "softmax_crossentropy"

    def __init__(self, name: Optional[str] = "categorical_crossentropy", dtype: DTypeLike = None,
                 from_logits: bool = False, label_smoothing: float = 0, axis: int = -1) -> None:
        super().__init__(name, dtype, from_logits, label_smoothing, axis)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """The mean cross-entropy of integer labels: -log p[label] per sample."""
    _loss, sparse_targets = "sparse_softmax_crossentropy", True

    def __init__(self, name: Optional[str] = "sparse_categorical_crossentropy",
                 dtype: DTypeLike = None, from_logits: bool = False,
                 ignore_class: Optional[int] = None, axis: int = -1) -> None:
        if ignore_class is not None:
            raise ValueError(f"fastnn does not support ignore_class (masked labels). "
                             f"Received: ignore_class={ignore_class!r}")
        super().__init__(name, dtype, from_logits, 0.0, axis)

    def get_config(self) -> Config:
        config = super().get_config()
        del config["label_smoothing"]
        return {**config, "ignore_class": None}


class Accuracy(_MeanMetric):
    """How often y_pred equals y_true exactly (Keras' Accuracy class; the name "accuracy"
    in compile picks binary, sparse or categorical accuracy instead)."""
    _key = "equality"

    def __init__(self, name: Optional[str] = "accuracy", dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class BinaryAccuracy(_MeanMetric):
    """How often (y_pred > threshold) equals y_true (a sigmoid cross-entropy's logits are
    compared with logit(threshold): the same decisions)."""
    _key = "binary_accuracy"

    def __init__(self, name: Optional[str] = "binary_accuracy", dtype: DTypeLike = None,
                 threshold: float = 0.5) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
                or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a number. Received: threshold={threshold!r}")
        self.threshold = float(threshold)
        super().__init__(name, dtype)

    def _engine(self, width, weighted):
        return self._key, {"param": self.threshold, "weighted": weighted}

    def get_config(self) -> Config:
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(_MeanMetric):
    """How often argmax(y_pred) equals argmax(y_true) (one-hot targets)."""
    _key = "categorical_accuracy"

    def __init__(self, name: Optional[str] = "categorical_accuracy",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


class SparseCategoricalAccuracy(_MeanMetric):
    """How often argmax(y_pred) equals the integer label."""
    _key, sparse_targets = "sparse_categorical_accuracy", True

    def __init__(self, name: Optional[str] = "sparse_categorical_accuracy",
                 dtype: DTypeLike = None) -> None:
        super().__init__(name, dtype)


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer. Received: k={k!r}")
    return int(k)


class TopKCategoricalAccuracy(_MeanMetric):
    """How often the target class (argmax of one-hot y_true) is among the k largest
    predictions (ties count in, as Keras' in_top_k)."""
    _key = "top_k"

    def __init__(self, k: int = 5, name: Optional[str] = "top_k_categorical_accuracy",
                 dtype: DTypeLike = None) -> None:
        self.k = _check_k(k)
        super().__init__(name, dtype)

    def _engine(self, width, weighted):
        return self._key, {"iparam": self.k, "weighted": weighted}

    def get_config(self) -> Config:
        return {**super().get_config(), "k": self.k}


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """How often the integer label is among the k largest predictions."""
    _key, sparse_targets = "sparse_top_k", True

    def __init__(self, k: int = 5, name: Optional[str] = "sparse_top_k_categorical_accuracy",
                 dtype: DTypeLike = None, from_sorted_ids: bool = False) -> None:
        if from_sorted_ids:
            raise ValueError("fastnn's outputs are scores, not sorted class ids: "
                             "from_sorted_ids must be False")
        super().__init__(k, name, dtype)
        self.from_sorted_ids = False

    def get_config(self) -> Config:
        return {**super().get_config(), "from_sorted_ids": False}


class _AutoAccuracy(_MeanMetric):
    """compile's "accuracy"/"acc": binary accuracy for one output, sparse categorical for
    integer labels, categorical otherwise (Keras picks by the shapes)."""
    _key = "accuracy"

    def _check_output(self, width, target_width):
        if target_width not in (1, width):
            raise ValueError(f"metric {self.name!r}: targets of {target_width} values per "
                             f"row for outputs {width} wide")


# ---- statistics of the whole data: regression ------------------------------------------------

class R2Score(Metric):
    """The coefficient of determination, 1 - sum (y - p)^2 / sum (y - mean y)^2 per output
    column from summed statistics, aggregated as class_aggregation says; num_regressors > 0
    gives the adjusted score."""

    def __init__(self, class_aggregation: Optional[str] = "uniform_average",
                 num_regressors: int = 0, name: Optional[str] = "r2_score",
                 dtype: DTypeLike = None) -> None:
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise ValueError(f"Invalid value for argument `class_aggregation`. Expected one of "
                             f"{valid}. Received: class_aggregation={class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, numbers.Integral) \
                or num_regressors < 0:
            raise ValueError(f"Invalid value for argument `num_regressors`. Expected a value "
                             f">= 0. Received: num_regressors={num_regressors!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, int(num_regressors)
        super().__init__(name, dtype)

    def _engine(self, width, weighted):
        return "r2", {"weighted": weighted}

    def _result(self, s, rows):
        s = np.asarray(s, np.float64)
        m = (len(s) - 1) // 4
        total_y, total_yy, residual, count = s[:m], s[m:2 * m], s[2 * m:3 * m], s[3 * m:4 * m]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total_y / count
            total = total_yy - total_y * mean
            raw = 1.0 - residual / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = np.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            score = np.sum(total * raw) / np.sum(total)
        else:
            score = raw
        n, p = s[4 * m], self.num_regressors
        if p:
            if p > n - 1:
                warnings.warn("More independent predictors than datapoints in adjusted R2 "
                              "score. Falling back to standard R2 score.", stacklevel=2)
            elif p == n - 1:
                warnings.warn("Division by zero in Adjusted R2 score. Falling back to "
                              "standard R2 score.", stacklevel=2)
            else:
                score = 1.0 - (1.0 - score) * (n - 1.0) / (n - p - 1.0)
        return _scalar(score)

    def get_config(self) -> Config:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}


# ---- statistics of the whole data: confusion counts ------------------------------------------

def _thresholds(thresholds, default):
    """The thresholds as a list of floats in [0, 1] (Keras' parse_init_thresholds)."""
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) \
        else [thresholds]
    bad = [t for t in values if isinstance(t, bool) or not isinstance(t, numbers.Real)
           or not 0.0 <= t <= 1.0]
    if bad or not values:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {bad or thresholds}")
    return [float(t) for t in values]


class _ConfusionMetric(Metric):
    """Confusion counts at thresholds from the engine's histogram: each prediction lands
    in the bucket of the thresholds below it, positives and negatives apart (summed over
    batches); TP at threshold i counts the positives above it, and so on."""

    def _setup(self, thresholds, class_id=None, top_k=None):
        if class_id is not None and (isinstance(class_id, bool) or
                                     not isinstance(class_id, numbers.Integral) or class_id < 0):
            raise ValueError(f"class_id must be a non-negative integer. Received: "
                             f"class_id={class_id!r}")
        if top_k is not None:
            _check_k(top_k)
        self.class_id, self.top_k = class_id, top_k
        self.thresholds = thresholds
        self._order = np.argsort(thresholds, kind="stable")

    def _check_output(self, width, target_width):
        super()._check_output(width, target_width)
        if self.class_id is not None and self.class_id >= width:
            raise ValueError(f"metric {self.name!r}: class_id={self.class_id} but the output "
                             f"has {width} classes")

    def _engine_thresholds(self):
        return np.asarray(self.thresholds, np.float64)[self._order]

    def _engine(self, width, weighted):
        return "confusion", {"thresholds": self._engine_thresholds(),
                             "iparam": (-1 if self.class_id is None else self.class_id,
                                        self.top_k or 0), "weighted": weighted}

    def _counts(self, s):
        """(tp, fp, tn, fn) per threshold, in the sorted order."""
        s = np.asarray(s, np.float64)
        k = len(s) // 2 - 1
        pos, neg = s[:k + 1], s[k + 1:]
        above_pos = np.cumsum(pos[::-1])[::-1]  # above_pos[b] = sum of pos[b:]
        above_neg = np.cumsum(neg[::-1])[::-1]
        tp, fp = above_pos[1:], above_neg[1:]
        return tp, fp, neg.sum() - fp, pos.sum() - tp

    def _user_order(self, v):
        out = np.empty_like(v)
        out[self._order] = v
        return _scalar(out)


class _ConditionCount(_ConfusionMetric):
    _which = None

    def __init__(self, thresholds: Union[float, Sequence[float], None] = None,
                 name: Optional[str] = None, dtype: DTypeLike = None) -> None:
        self.init_thresholds = thresholds
        self._setup(_thresholds(thresholds, 0.5))
        super().__init__(name, dtype)

    def _result(self, s, rows):
        return self._user_order(self._counts(s)[self._which])

    def get_config(self) -> Config:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConditionCount):
    """The number (or weighted sum) of true positives: predictions above the threshold
    whose target is 1."""
    _which = 0


class FalsePositives(_ConditionCount):
    """The number (or weighted sum) of false positives: predictions above the threshold
    whose target is 0."""
    _which = 1


class TrueNegatives(_ConditionCount):
    """The number (or weighted sum) of true negatives: predictions at or below the
    threshold whose target is 0."""
    _which = 2


class FalseNegatives(_ConditionCount):
    """The number (or weighted sum) of false negatives: predictions at or below the
    threshold whose target is 1."""
    _which = 3


class Precision(_ConfusionMetric):
    """TP / (TP + FP) at each threshold (0.5 by default; with top_k, only each sample's
    top_k predictions count as positive); class_id restricts it to one output column."""

    def __init__(self, thresholds: Union[float, Sequence[float], None] = None,
                 top_k: Optional[int] = None, class_id: Optional[int] = None,
                 name: Optional[str] = None, dtype: DTypeLike = None) -> None:
        self.init_thresholds = thresholds
        # with top_k alone, a prediction counts as positive when it is among the top k
        self._setup(_thresholds(thresholds, 0.5) if thresholds is not None or top_k is None
                    else [_NEG_INF], class_id, top_k)
        super().__init__(name, dtype)

    def _result(self, s, rows):
        tp, fp, _, _ = self._counts(s)
        return self._user_order(_divide_no_nan(tp, tp + fp))

    def get_config(self) -> Config:
        return {**super().get_config(), "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Recall(Precision):
    """TP / (TP + FN), arguments as Precision."""

    def _result(self, s, rows):
        tp, _, _, fn = self._counts(s)
        return self._user_order(_divide_no_nan(tp, tp + fn))


class AUC(_ConfusionMetric):
    """The area under the ROC (or PR, or PR-gain) curve, a Riemann sum over num_thresholds
    thresholds (or the ones given, plus one just below 0 and one just above 1), from the
    confusion counts summed over all batches."""

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: Optional[str] = None,
                 dtype: DTypeLike = None, thresholds: Union[float, Sequence[float], None] = None,
                 multi_label: bool = False, num_labels: Optional[int] = None,
                 label_weights: Optional[ArrayLike] = None, from_logits: bool = False) -> None:
        curve = curve.upper() if isinstance(curve, str) else curve
        if curve not in ("ROC", "PR", "PRGAIN"):
            raise ValueError(f'Invalid `curve` argument value "{curve}". Expected one of: '
                             f"['ROC', 'PR', 'PRGAIN']")
        method = summation_method.lower() if isinstance(summation_method, str) else None
        if method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f'Invalid `summation_method` argument value "{summation_method}".'
                             f" Expected one of: ['interpolation', 'minoring', 'majoring']")
        if multi_label or num_labels is not None or label_weights is not None:
            raise NotImplementedError("fastnn's AUC flattens the outputs (multi_label=False); "
                                      "multi_label, num_labels and label_weights are not "
                                      "supported")
        losses_module._check_from_logits(from_logits)
        if thresholds is not None:
            inner = sorted(_thresholds(thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds,
                                                                  numbers.Integral) \
                    or num_thresholds <= 1:
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. "
                                 f"Received: num_thresholds={num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self.curve, self.summation_method = curve, method
        self.multi_label, self.num_labels, self.label_weights = False, None, None
        self.from_logits = bool(from_logits)
        self._init_thresholds = thresholds
        self._setup([0.0 - _EPSILON] + inner + [1.0 + _EPSILON])
        super().__init__(name, dtype)

    def _engine_thresholds(self):
        thr = super()._engine_thresholds()
        if not self.from_logits:
            return thr
        # sigmoid(z) > t exactly when z > logit(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(thr <= 0, -np.inf, np.where(thr >= 1, np.inf,
                                                        np.log(thr / (1.0 - thr))))

    def _result(self, s, rows):
        tp, fp, tn, fn = self._counts(s)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr(tp, fp, fn)
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:  # PRGAIN
            scale = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = np.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp))
            precision_gain = np.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
            x, y = np.maximum(recall_gain, 0.0), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    @staticmethod
    def _interpolate_pr(tp, fp, fn):
        """Davis & Goadrich's interpolation of the PR curve, Keras' closed form."""
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                         _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return float(np.sum(_divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                                           np.maximum(tp[1:] + fn[1:], 0))))

    def get_config(self) -> Config:
        return {**super().get_config(), "num_thresholds": self.num_thresholds,
                "curve": self.curve, "summation_method": self.summation_method,
                "thresholds": self._init_thresholds, "multi_label": False,
                "num_labels": None, "label_weights": None, "from_logits": self.from_logits}


# ---- F-scores ---------------------------------------------------------------------------------

class FBetaScore(Metric):
    """(1 + beta^2) precision recall / (beta^2 precision + recall) per class from summed
    true/false positives and false negatives (predictions above `threshold`, or each row's
    largest when threshold is None); average None (per class), "micro", "macro" or
    "weighted" (by each class's support)."""

    def __init__(self, average: Optional[str] = None, beta: float = 1.0,
                 threshold: Optional[float] = None, name: Optional[str] = "fbeta_score",
                 dtype: DTypeLike = None) -> None:
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"Invalid `average` argument value. Expected one of: {{None, "
                             f"'micro', 'macro', 'weighted'}}. Received: average={average!r}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be a Python float > 0."
                             f" Received: beta={beta!r}")
        if threshold is not None and (not isinstance(threshold, float)
                                      or not 0.0 < threshold <= 1.0):
            raise ValueError(f"Invalid `threshold` argument value. It should be a Python float"
                             f" with 0 < threshold <= 1. Received: threshold={threshold!r}")
        self.average, self.beta, self.threshold = average, beta, threshold
        super().__init__(name, dtype)

    def _engine(self, width, weighted):
        return "fscore", {"param": math.nan if self.threshold is None else self.threshold,
                          "weighted": weighted}

    def _result(self, s, rows):
        s = np.asarray(s, np.float64)
        m = len(s) // 4
        tp, fp, fn, support = s[:m], s[m:2 * m], s[2 * m:3 * m], s[3 * m:]
        if self.average == "micro":
            tp, fp, fn, support = tp.sum(), fp.sum(), fn.sum(), support.sum()
        precision = tp / (tp + fp + _EPSILON)
        recall = tp / (tp + fn + _EPSILON)
        b2 = self.beta ** 2
        f = precision * recall / (b2 * precision + recall + _EPSILON) * (1.0 + b2)
        if self.average == "weighted":
            f = np.sum(f * support / (np.sum(support) + _EPSILON))
        elif self.average is not None:
            f = np.mean(f)
        return _scalar(f) if self.average is not None else np.asarray(f, np.float64)

    def get_config(self) -> Config:
        return {**super().get_config(), "average": self.average, "beta": self.beta,
                "threshold": self.threshold}


class F1Score(FBetaScore):
    """2 precision recall / (precision + recall): FBetaScore with beta = 1."""

    def __init__(self, average: Optional[str] = None, threshold: Optional[float] = None,
                 name: Optional[str] = "f1_score", dtype: DTypeLike = None) -> None:
        super().__init__(average, 1.0, threshold, name, dtype)

    def get_config(self) -> Config:
        config = super().get_config()
        del config["beta"]
        return config


# ---- by name ---------------------------------------------------------------------------------

_CLASSES = (MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError,
            MeanAbsolutePercentageError, MeanSquaredLogarithmicError, LogCoshError,
            KLDivergence, Poisson, Hinge, SquaredHinge, CategoricalHinge, CosineSimilarity,
            BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
            TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, R2Score, AUC, Precision,
            Recall, TruePositives, TrueNegatives, FalsePositives, FalseNegatives, FBetaScore,
            F1Score)
# names (looked up case-insensitively) -> class: Keras' snake-case class names, its
# aliases, the metric functions' names; "accuracy"/"acc" pick by shape, as compile does
_BY_NAME = {to_snake_case(cls.__name__): cls for cls in _CLASSES}
_BY_NAME.update({cls.__name__.lower(): cls for cls in _CLASSES})
_BY_NAME.update({"mse": MeanSquaredError, "mae": MeanAbsoluteError,
                 "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError,
                 "rmse": RootMeanSquaredError, "logcosh": LogCoshError, "log_cosh": LogCoshError,
                 "kld": KLDivergence, "bce": BinaryCrossentropy,
                 "accuracy": _AutoAccuracy, "acc": _AutoAccuracy,
                 "top_k_categorical_accuracy": TopKCategoricalAccuracy,
                 "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
                 "fbeta_score": FBetaScore})
# the loss functions that are also Keras metric functions
_FUNCTIONS = {losses_module.mean_squared_error: MeanSquaredError,
              losses_module.mean_absolute_error: MeanAbsoluteError,
              losses_module.mean_absolute_percentage_error: MeanAbsolutePercentageError,
              losses_module.mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
              losses_module.log_cosh: LogCoshError, losses_module.kl_divergence: KLDivergence,
              losses_module.poisson: Poisson, losses_module.hinge: Hinge,
              losses_module.squared_hinge: SquaredHinge,
              losses_module.categorical_hinge: CategoricalHinge,
              losses_module.binary_crossentropy: BinaryCrossentropy,
              losses_module.categorical_crossentropy: CategoricalCrossentropy,
              losses_module.sparse_categorical_crossentropy: SparseCategoricalCrossentropy}

# what compile(metrics=[...]) takes: a name, a Metric (or class), one of fastnn.losses'
# functions, or serialize()'s dict
MetricLike = Union[str, Metric, type, Callable[..., Any], Config]


def get(identifier: MetricLike) -> Metric:
    """A Metric from a Metric (itself), a Metric class, a name (Keras' names, looked up
    case-insensitively; the metric is named by the string as given, as compile does) or
    one of fastnn.losses' functions that Keras also has as metrics."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric) and \
            identifier in _CLASSES:
        return identifier()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    try:
        if identifier in _FUNCTIONS:
            return _FUNCTIONS[identifier](name=identifier.__name__)
    except TypeError:  # unhashable
        pass
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()](name=identifier)
    raise ValueError(f"Unknown metric: {identifier!r}. Valid names: {sorted(_BY_NAME)}")


def serialize(metric: MetricLike) -> Config:
    """{"class_name": ..., "config": ...} of a Metric (as keras.metrics.serialize)."""
    metric = get(metric)
    return {"class_name": type(metric).__name__.lstrip("_"), "config": metric.get_config()}


def deserialize(config: Union[Config, str]) -> Metric:
    """The Metric described by serialize()'s dict, or by a name."""
    if isinstance(config, dict) and "class_name" in config:
        by_class = {cls.__name__: cls for cls in _CLASSES}
        by_class["AutoAccuracy"] = _AutoAccuracy
        if config["class_name"] not in by_class:
            raise ValueError(f"Unknown metric class: {config['class_name']!r}. Valid: "
                             f"{sorted(by_class)}")
        return by_class[config["class_name"]].from_config(dict(config.get("config") or {}))
    return get(config)
