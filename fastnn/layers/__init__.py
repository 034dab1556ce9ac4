"""Layers: Dense, activations, Dropout, the merges, and the symbolic Input."""
from fastnn.layers.activation import Activation, ReLU
from fastnn.layers.core import Dense, Input, InputLayer, KerasTensor, Layer
from fastnn.layers.dropout import Dropout
from fastnn.layers.merge import (Add, Average, Concatenate, Maximum, Minimum, Multiply,
                                 Subtract, add, average, concatenate, maximum, minimum,
                                 multiply, subtract)

__all__ = ["Activation", "Add", "Average", "Concatenate", "Dense", "Dropout", "Input",
           "InputLayer", "KerasTensor", "Layer", "Maximum", "Minimum", "Multiply", "ReLU",
           "Subtract", "add", "average", "concatenate", "maximum", "minimum", "multiply",
           "subtract"]
