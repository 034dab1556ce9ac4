"""fastnn: Keras-shaped neural networks for the CPU with a compiled C core.

Build a model with fastnn.Sequential, the functional fastnn.Model(inputs, outputs) or a
Model subclass; compile, fit, evaluate and predict as in Keras 3. Training runs whole
epochs in C over flat float32 buffers; fastnn.show_config() tells what it runs on.
"""


def _find_compiled_package():
    """A source checkout has no compiled _engine. When Python imports fastnn from one
    (``python -m fastnn demo`` at the checkout's root puts it first on sys.path), load
    the submodules from the installed package instead, so that the checkout never runs
    without its extension."""
    import importlib.machinery
    import os
    import sys

    def has_engine(folder):
        return any(os.path.exists(os.path.join(folder, "_engine" + suffix))
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES)

    here = os.path.dirname(os.path.abspath(__file__))
    if has_engine(here):
        return
    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or os.curdir), "fastnn")
        if folder != here and has_engine(folder):
            __path__[:] = [folder]
            return
    raise ImportError(f"fastnn's compiled extension is not built in {here} and no installed "
                      "fastnn was found: run `pip install .` (or, for development, "
                      "`python setup.py build_ext --inplace`)")


_find_compiled_package()
from fastnn import activations, callbacks, datasets, initializers, layers, losses, metrics
from fastnn import backend, optimizers, utils
from fastnn._threads import get_num_threads, set_num_threads
from fastnn._config import show_config
from fastnn.layers import Input
from fastnn.models import Model, Sequential

__version__ = "0.2.0"
__all__ = ["Input", "Model", "Sequential", "activations", "backend", "callbacks", "datasets",
           "initializers", "layers", "losses", "metrics", "optimizers", "set_num_threads",
           "get_num_threads", "utils"]
__all__ += ["show_config"]
