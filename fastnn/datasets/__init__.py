"""Small bundled datasets, shaped like ``keras.datasets``."""
from . import boston_housing, digits

__all__ = ["boston_housing", "digits"]
