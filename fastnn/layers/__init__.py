"""Layers: Dense, activations, and the symbolic Input."""
from fastnn.layers.activation import Activation, ReLU
from fastnn.layers.core import Dense, Input, InputLayer, KerasTensor, Layer

__all__ = ["Activation", "Dense", "Input", "InputLayer", "KerasTensor", "Layer", "ReLU"]
