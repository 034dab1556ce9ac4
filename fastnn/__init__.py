"""fastnn: Keras-shaped neural networks for the CPU with a compiled C core.

Build a model with fastnn.Sequential, the functional fastnn.Model(inputs, outputs) or a
Model subclass; compile, fit, evaluate and predict as in Keras 3. Training runs whole
epochs in C over flat float32 buffers; fastnn.show_config() tells what it runs on.
"""


def _check_extension():
    """Says how to build fastnn when its compiled core is missing. A source checkout has
    no compiled _engine until it is built, and Python imports the checkout first when
    started in its root (``python -m fastnn`` and ``python -c`` put the current folder
    first on sys.path). fastnn then stops with the commands that build it; it never
    loads another installed copy's modules in its place (a finder that maps
    ``fastnn._engine`` elsewhere, as an editable install's does, included)."""
    import importlib.machinery
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    if any(os.path.exists(os.path.join(here, "_engine" + suffix))
           for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        return
    checkout = os.path.exists(os.path.join(os.path.dirname(here), "setup.py"))
    where = (" (a source checkout: Python imports it first when started in that folder; "
             "start it elsewhere, or use the `fastnn` command, to import an installed "
             "fastnn)" if checkout else "")
    raise ImportError(
        f"fastnn's compiled extension is not built in {here}{where}. Install fastnn with "
        "`pip install .`, or for development build it in place with `python setup.py "
        "build_ext --inplace` (or `pip install -e .`).", name="fastnn")


_check_extension()
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
