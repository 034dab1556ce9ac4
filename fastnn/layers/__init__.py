"""Layers: Dense, activations, Dropout, and the symbolic Input."""
from fastnn.layers.activation import Activation, ReLU
from fastnn.layers.core import Dense, Input, InputLayer, KerasTensor, Layer
from fastnn.layers.dropout import Dropout

__all__ = ["Activation", "Dense", "Dropout", "Input", "InputLayer", "KerasTensor", "Layer",
           "ReLU"]
