"""Type aliases for fastnn's annotations.

fastnn's modules use postponed annotations (``from __future__ import annotations``), so
annotations cost nothing at import. numpy.typing is imported for type checkers only: at
run time ``ArrayLike`` and ``DTypeLike`` are ``typing.Any`` (typing.get_type_hints
resolves them to Any), which keeps ``import fastnn`` as fast as it was."""
import os
from typing import IO, TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, \
    Tuple, Union

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from numpy.typing import DTypeLike as _NumpyDTypeLike
    DTypeLike = Optional[_NumpyDTypeLike]  # None: fastnn's default, float32
else:
    ArrayLike = Any
    DTypeLike = Any

Shape = Tuple[Optional[int], ...]
"""A tensor's shape; None for the batch axis or a size not known yet."""

InputShape = Union[Shape, List[Shape]]
"""What build() and compute_output_shape() take: a shape, or a list of shapes for a
layer with several inputs."""

Config = Dict[str, Any]
"""get_config()'s dict: the constructor's arguments, JSON-able."""

Logs = Optional[Dict[str, Any]]
"""The logs a callback receives: metric names to values (or None)."""

Inputs = Union[ArrayLike, Sequence[ArrayLike], Mapping[str, ArrayLike]]
"""A model's inputs or targets: an array, or a list or dict (by name) of arrays for
several."""

Batches = Iterable[Any]
"""Batches from Python: a generator, an iterable or a PyDataset yielding (x, y) or
(x, y, sample_weight)."""

PathLike = Union[str, os.PathLike]
"""A file's path."""

FileLike = Union[str, os.PathLike, IO[bytes]]
"""A file's path, or a binary file object."""

__all__ = ["ArrayLike", "Batches", "Config", "DTypeLike", "FileLike", "InputShape", "Inputs",
           "Logs", "PathLike", "Shape"]
