"""fastnn: Keras-shaped neural networks for the CPU with a compiled C core."""
from fastnn import activations, callbacks, datasets, initializers, layers, losses, metrics
from fastnn import optimizers, utils
from fastnn._blas import set_num_threads
from fastnn.layers import Input
from fastnn.models import Model, Sequential

__version__ = "0.1.0"
__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "datasets",
           "initializers", "layers", "losses", "metrics", "optimizers", "set_num_threads",
           "utils"]
