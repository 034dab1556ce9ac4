"""Layers: Dense, activations, Dropout, the merges, and the symbolic Input."""
from fastnn.layers.activation import ELU, PReLU, Activation, LeakyReLU, ReLU, Softmax
from fastnn.layers.core import Dense, Input, InputLayer, KerasTensor, Layer
from fastnn.layers.dropout import Dropout
from fastnn.layers.identity import Identity
from fastnn.layers.lambda_layer import Lambda
from fastnn.layers.merge import (Add, Average, Concatenate, Maximum, Minimum, Multiply,
                                 Subtract, add, average, concatenate, maximum, minimum,
                                 multiply, subtract)
from fastnn.layers.noise import GaussianDropout, GaussianNoise
from fastnn.layers.reshaping import Flatten, Reshape
from fastnn.layers.embedding import Embedding
from fastnn.layers.normalization import BatchNormalization, LayerNormalization, Normalization
from fastnn.layers.regularization import ActivityRegularization

__all__ = ["Activation", "Add", "Average", "Concatenate", "Dense", "Dropout", "Input",
           "InputLayer", "KerasTensor", "Layer", "Maximum", "Minimum", "Multiply", "ReLU",
           "Subtract", "add", "average", "concatenate", "maximum", "minimum", "multiply",
           "subtract"]
__all__ += ["ELU", "Flatten", "GaussianDropout", "GaussianNoise", "Identity", "LeakyReLU",
            "PReLU", "Reshape", "Softmax"]
__all__ += ["ActivityRegularization", "BatchNormalization", "Embedding", "LayerNormalization",
            "Normalization"]
__all__ += ["Lambda"]
