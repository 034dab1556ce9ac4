"""Losses with Keras' definitions. Each has a `key` naming its C kernel
(csrc/losses.c); calling one on arrays returns the mean loss as Keras does.

The cross-entropies run on logits inside the engine. With from_logits=False (Keras'
default) the model must end in the matching activation (softmax, or sigmoid for the
binary loss): training then hands the engine that layer's pre-activation, which is the
same loss, numerically stable, with gradient p - t; predict still returns
probabilities."""
import numpy as np

from fastnn import _engine

_EPSILON = 1e-7  # Keras' clip of probabilities, for losses called on arrays


class Loss:
    key = None               # the engine's loss
    name = None
    from_logits = True       # False: the model's last activation is folded into the loss
    output_activation = None  # ... and must be this one
    sparse_labels = False    # targets are class indices (n,) rather than shaped like y

    def __call__(self, y_true, y_pred):
        pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        if pred.ndim == 1:
            pred = pred.reshape(-1, 1)
        if not self.from_logits:
            pred = self._logits(pred)
        target = np.ascontiguousarray(y_true, dtype=np.float32)
        if self.sparse_labels:
            target = target.reshape(-1)
        elif target.size == pred.size:
            target = target.reshape(pred.shape)
        value, _ = _engine.loss(self.key, pred, target)
        return np.float32(value)

    def _logits(self, probabilities):
        return probabilities

    def get_config(self):
        return {"name": self.name}


class MeanSquaredError(Loss):
    """mean((y_pred - y_true)^2) over all elements."""
    key, name = "mse", "mean_squared_error"


class MeanAbsoluteError(Loss):
    """mean(|y_pred - y_true|) over all elements."""
    key, name = "mae", "mean_absolute_error"


class _CrossEntropy(Loss):
    def __init__(self, from_logits=False):
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(f"from_logits must be True or False. Received: "
                             f"from_logits={from_logits!r}")
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}


class SparseCategoricalCrossentropy(_CrossEntropy):
    """-log p[label] with integer labels; p = softmax(logits)."""
    key, name = "sparse_softmax_crossentropy", "sparse_categorical_crossentropy"
    output_activation, sparse_labels = "softmax", True

    def _logits(self, p):  # log p: its softmax is p renormalised, as Keras does
        return np.log(np.clip(p, _EPSILON, 1.0)).astype(np.float32)


class CategoricalCrossentropy(SparseCategoricalCrossentropy):
    """-sum_j t_j log p_j with target distributions (e.g. one-hot rows)."""
    key, name = "softmax_crossentropy", "categorical_crossentropy"
    sparse_labels = False


class BinaryCrossentropy(_CrossEntropy):
    """-(t log p + (1 - t) log(1 - p)), mean over all elements; p = sigmoid(logits)."""
    key, name = "sigmoid_crossentropy", "binary_crossentropy"
    output_activation = "sigmoid"

    def _logits(self, p):
        p = np.clip(p, _EPSILON, 1.0 - _EPSILON)
        return np.log(p / (1.0 - p)).astype(np.float32)


_BY_NAME = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
            "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "categorical_crossentropy": CategoricalCrossentropy,
            "binary_crossentropy": BinaryCrossentropy}


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
