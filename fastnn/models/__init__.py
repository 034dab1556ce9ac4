"""Models: Sequential and the functional Model."""
from __future__ import annotations

from fastnn._typing import FileLike
from fastnn.models.cloning import clone_model
from fastnn.models.config import model_from_json
from fastnn.models.model import Model
from fastnn.models.sequential import Sequential


def load_model(filepath: FileLike, compile: bool = True) -> Model:
    """Rebuilds a model written by Model.save (see fastnn.saving)."""
    from fastnn.saving import load_model as _load
    return _load(filepath, compile=compile)


__all__ = ["Model", "Sequential", "clone_model", "load_model", "model_from_json"]
