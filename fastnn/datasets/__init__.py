"""Small bundled datasets, shaped like ``keras.datasets``."""
from . import boston_housing

__all__ = ["boston_housing"]
