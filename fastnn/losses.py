"""Losses with Keras' definitions. Each has a `key` naming its C kernel
(csrc/losses.c); calling one on arrays returns the mean loss as Keras does."""
import numpy as np

from fastnn import _engine


class Loss:
    key = None
    name = None

    def __call__(self, y_true, y_pred):
        pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if pred.ndim == 1:
            pred = pred.reshape(-1, 1)
        target = np.ascontiguousarray(y_true, dtype=np.float32)
        if self.key != "sparse_softmax_crossentropy":
            target = target.reshape(pred.shape) if target.size == pred.size else target
        value, _ = _engine.loss(self.key, pred, target)
        return np.float32(value)

    def get_config(self):
        return {"name": self.name}


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over all elements."""
    key, name = "mse", "mean_squared_error"


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over all elements."""
    key, name = "mae", "mean_absolute_error"


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy of integer labels against logits (from_logits=True only: the
    softmax is fused into the loss, which is both faster and numerically stable)."""
    key, name = "sparse_softmax_crossentropy", "sparse_categorical_crossentropy"

    def __init__(self, from_logits=True):
        if not from_logits:
            raise ValueError(
                "SparseCategoricalCrossentropy supports from_logits=True only: give the last "
                "Dense no activation and pass from_logits=True. Received: from_logits=False")
        self.from_logits = True

    def get_config(self):
        return {"name": self.name, "from_logits": True}


_BY_NAME = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
            "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}


def get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Unknown loss: {identifier!r}. Valid names: {sorted(_BY_NAME)}")


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError()(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError()(y_true, y_pred)


mse, mae = mean_squared_error, mean_absolute_error
