"""Checks and converts user arrays once, at the API boundary.

Policy: any real numeric array (float64, ints, bool, lists) is converted to a
C-contiguous float32 copy once per call; strings, objects and complex numbers
are rejected with TypeError; NaN/Inf, empty arrays and shape mismatches raise
ValueError naming the shapes. A float32 C-contiguous array is used as is."""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from fastnn._engine import all_finite
from fastnn._typing import ArrayLike


def as_matrix(a: Any, name: str, n_features: Optional[int] = None) -> np.ndarray:
    """A (n, features) float32 C-contiguous array, checked. n_features: the features per
    row, or the shape of a sample (a tuple: an input of more than one feature axis, such
    as (28, 28), takes (n, 28, 28) arrays, returned as rows of 784)."""
    if isinstance(n_features, tuple):
        if len(n_features) != 1:
            return _as_samples(a, name, n_features)
        n_features = n_features[0]
    from fastnn.layers.core import KerasTensor
    if a is None:
        raise ValueError(f"{name} is required, got None")
    if isinstance(a, KerasTensor):
        raise TypeError(f"{name} must be data (a NumPy array), got the symbolic tensor {a!r}")
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype} "
                        f"with shape {arr.shape}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features per row (the model's input "
                         f"shape is (None, {n_features})), got shape {arr.shape}")
    if arr.dtype == np.float32:
        arr = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore"):  # beyond float32's range becomes Inf, refused below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not all_finite(arr):  # np.isfinite would allocate a bool copy of the data set
        raise ValueError(f"{name} contains NaN or Inf (shape {arr.shape}); "
                         "clean or impute the data first")
    return arr


def _as_samples(a, name, sample_shape):
    """as_matrix for samples of `sample_shape` (several axes): checked, then flattened."""
    arr = np.asarray(a) if a is not None else None
    if arr is None or arr.dtype.kind not in "fiub":
        return as_matrix(a, name, math.prod(sample_shape))  # raises for what it is
    if arr.shape[1:] != tuple(sample_shape):
        dims = ", ".join(map(str, sample_shape))
        raise ValueError(f"{name} must have shape (samples, {dims}) to match the model's input "
                         f"shape (None, {dims}), got shape {arr.shape}")
    return as_matrix(arr.reshape(arr.shape[0], math.prod(sample_shape)), name,
                     math.prod(sample_shape))


def as_targets(y: ArrayLike, name: str, n_rows: int, n_out: int, sparse_labels: bool) -> np.ndarray:
    """Targets as (n, width) float32: width n_out, or 1 for integer class labels. n_out
    may be the output's feature shape (a tuple): targets of several axes, such as
    (n, 4, 3) for an output (None, 4, 3), are returned as rows of 12."""
    if isinstance(n_out, tuple):
        shape, n_out = n_out, math.prod(n_out)
        if len(shape) > 1 and not sparse_labels and y is not None:
            arr = np.asarray(y)
            if arr.shape[1:] == shape and arr.dtype.kind in "fiub":
                y = arr.reshape(arr.shape[0], n_out)
    if y is None:
        raise ValueError(f"{name} is required, got None")
    arr = np.asarray(y)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype} "
                        f"with shape {arr.shape}")
    if arr.shape[:1] != (n_rows,):
        raise ValueError(f"x and {name} must have the same number of rows: x has {n_rows}, "
                         f"{name} has shape {arr.shape}")
    width = 1 if sparse_labels else n_out
    if arr.ndim == 1 and width == 1:
        arr = arr.reshape(n_rows, 1)
    if arr.ndim != 2 or arr.shape[1] != width:
        expected = f"({n_rows},) or ({n_rows}, 1) class labels" if sparse_labels else \
            f"({n_rows}, {n_out})" + (f" or ({n_rows},)" if n_out == 1 else "")
        raise ValueError(f"{name} must have shape {expected} to match the model's output "
                         f"(None, {n_out}), got shape {arr.shape}")
    if arr.dtype == np.float32:
        arr = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore"):  # beyond float32's range becomes Inf, refused below
            arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or Inf (shape {arr.shape})")
    if sparse_labels and (np.any(arr != np.floor(arr)) or arr.min() < 0 or arr.max() >= n_out):
        raise ValueError(f"{name} must hold integer class labels in [0, {n_out}), got values "
                         f"in [{arr.min()}, {arr.max()}]")
    return arr
