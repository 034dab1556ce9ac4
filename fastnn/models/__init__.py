"""Models: Sequential and the functional Model."""
from fastnn.models.model import Model
from fastnn.models.sequential import Sequential


def load_model(filepath, compile=True):
    """Rebuilds a model written by Model.save (see fastnn.saving)."""
    from fastnn.saving import load_model as _load
    return _load(filepath, compile=compile)


__all__ = ["Model", "Sequential", "load_model"]
