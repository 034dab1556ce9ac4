"""Models: Sequential and the functional Model."""
from fastnn.models.model import Model
from fastnn.models.sequential import Sequential

__all__ = ["Model", "Sequential"]
