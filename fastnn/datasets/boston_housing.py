"""Boston housing price regression dataset, split exactly as ``keras.datasets.boston_housing``."""
from __future__ import annotations

from typing import Optional

import numpy as np

from fastnn._typing import PathLike

__all__ = ["load_data"]


def _read_csv(source):
    # Header row, then 13 feature columns and MEDV (the target) last.
    data = np.loadtxt(source, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if data.shape[1] != 14:
        raise ValueError(
            f"Expected 14 columns (13 features + MEDV) in the housing CSV; got {data.shape[1]}."
        )
    return data[:, :13], data[:, 13]


def load_data(path: Optional[PathLike] = None, test_split: float = 0.2, seed: int = 113
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the Boston housing dataset (506 rows, 13 features, float64).

    Args:
        path: optional path to a CSV with the same layout as the bundled one
            (header row, 13 feature columns, MEDV last). Defaults to the bundled copy.
        test_split: fraction of the data reserved for testing, in [0, 1).
        seed: seed for the shuffle done before splitting; the default (113) gives the
            same train/test split as Keras.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: x arrays of shape (n, 13) and
        y arrays of shape (n,), all float64 (404/102 rows with the defaults).
    """
    if not 0 <= test_split < 1:
        raise ValueError(f"`test_split` must be between 0 and 1. Received: test_split={test_split}")
    if path is None:
        from importlib.resources import files  # here: it costs ~4 ms at import time
        resource = files(__package__) / "data" / "boston_housing.csv"
        with resource.open("r", encoding="utf-8") as f:
            x, y = _read_csv(f)
    else:
        x, y = _read_csv(path)

    # Same shuffle and split as Keras, so results are comparable with it.
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x))
    rng.shuffle(indices)
    x = x[indices]
    y = y[indices]
    n_train = int(len(x) * (1 - test_split))
    x_train = np.array(x[:n_train])
    y_train = np.array(y[:n_train])
    x_test = np.array(x[n_train:])
    y_test = np.array(y[n_train:])
    return (x_train, y_train), (x_test, y_test)
