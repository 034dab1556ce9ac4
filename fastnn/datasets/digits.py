"""Handwritten digits (8x8 images, 10 classes), split as ``keras.datasets`` loaders are.

The bundled file is the UCI "Optical Recognition of Handwritten Digits" test set as
scikit-learn ships it (``sklearn/datasets/data/digits.csv.gz``, BSD-3-Clause): 1797
rows of 64 pixel counts 0..16 (an 8x8 image, row by row), the digit last."""
from __future__ import annotations

import gzip
from typing import Optional

import numpy as np

from fastnn._typing import PathLike

__all__ = ["load_data"]

N_PIXELS = 64


def _read_csv(source):
    data = np.loadtxt(source, delimiter=",", dtype=np.float64, ndmin=2)
    if data.shape[1] != N_PIXELS + 1:
        raise ValueError(f"Expected {N_PIXELS + 1} columns (64 pixels + the digit) in the "
                         f"digits CSV; got {data.shape[1]}.")
    return data[:, :N_PIXELS], data[:, N_PIXELS]


def load_data(path: Optional[PathLike] = None, test_split: float = 0.2, seed: int = 113
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the digits dataset.

    Args:
        path: optional path to a CSV (plain or gzipped) with the same layout as the
            bundled one (64 pixel columns, the digit last, no header). Defaults to the
            bundled copy.
        test_split: fraction of the data reserved for testing, in [0, 1).
        seed: seed of the shuffle done before splitting (NumPy's RandomState, as the
            Keras loaders use).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: x float32 arrays of shape (n, 64)
        holding the pixel counts 0..16 (divide by 16 for [0, 1]; reshape to (n, 8, 8) for
        the images), y int64 arrays of shape (n,) holding the digits 0..9; 1437/360 rows
        with the defaults.
    """
    if isinstance(test_split, bool) or not isinstance(test_split, (int, float)) or \
            not 0 <= test_split < 1:
        raise ValueError(f"`test_split` must be between 0 and 1. Received: "
                         f"test_split={test_split!r}")
    if path is None:
        from importlib.resources import files
        with (files(__package__) / "data" / "digits.csv.gz").open("rb") as raw:
            with gzip.open(raw, "rt", encoding="ascii") as f:
                x, y = _read_csv(f)
    elif str(path).endswith(".gz"):
        with gzip.open(path, "rt", encoding="ascii") as f:
            x, y = _read_csv(f)
    else:
        x, y = _read_csv(path)
    if np.any(y != np.floor(y)) or y.min() < 0 or y.max() > 9:
        raise ValueError("the digits CSV's last column must hold the digits 0..9")

    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices].astype(np.float32), y[indices].astype(np.int64)
    n_train = int(len(x) * (1 - test_split))
    return (x[:n_train].copy(), y[:n_train].copy()), (x[n_train:].copy(), y[n_train:].copy())
