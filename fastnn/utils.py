"""Seeding and small helpers shared by the package."""
import re

import numpy as np

_rng = None  # made on first use: numpy.random costs ~10 ms to import


def set_random_seed(seed):
    """Seeds every random choice fastnn makes (initial weights, shuffling, dropout).

    The same seed gives bit-identical training on the same machine.
    """
    global _rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    _rng = np.random.default_rng(int(seed))


def rng():
    """The package-wide generator (seeded by set_random_seed)."""
    global _rng
    if _rng is None:
        _rng = np.random.default_rng()
    return _rng


def next_seed():
    """A 63-bit seed for the C shuffler, drawn from the package generator (its raw bits:
    Generator.integers costs ~2.5 us, a tenth of a small model's whole fit call)."""
    return int(rng().bit_generator.random_raw()) >> 1


_name_counts = {}


def to_snake_case(name):
    """'ReLU' -> 're_lu', 'Dense' -> 'dense', as Keras names its layers."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(base, first=0):
    """'dense', 'dense_1', 'dense_2', ... per base name, for the whole session
    (first=1 starts at 'base_1', as tf.keras names inputs)."""
    n = _name_counts.get(base, first)
    _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot rows for integer class labels, as keras.utils.to_categorical."""
    labels = np.asarray(y)
    if labels.dtype.kind not in "iuf" or (labels.size and (
            np.any(labels != np.floor(labels)) or labels.min() < 0)):
        raise ValueError("to_categorical takes non-negative integer class labels")
    labels = labels.astype(np.int64)
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= num_classes:
        raise ValueError(f"label {int(labels.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = np.zeros(labels.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out
