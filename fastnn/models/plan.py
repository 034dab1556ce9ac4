"""Lowers a chain of layers into what the engine runs: one flat float32
parameter buffer (layers' weights become views into it), a gradient buffer of
the same layout, and the per-layer specs of _engine.Net."""
import numpy as np

from fastnn import _blas, _engine
from fastnn.layers.activation import Activation
from fastnn.layers.core import Dense
from fastnn.layers.dropout import Dropout

# Whether a layer's products go to the BLAS rather than fastnn's panel kernels, from
# bench/calibrate_blas.py on the 2-core dev machine (forward + backward, one layer):
# - the panel kernels (one thread) beat OpenBLAS up to ~2M multiply-adds per call at
#   batch 32-128 (0.8-0.95x its time); from ~8M OpenBLAS, on both cores, is 1.4-1.6x
#   faster: the BLAS takes batch*in*out >= BLAS_MIN_MACS;
# - below 16 rows the panel path's per-call repacking of W^T (in*out values, whatever
#   the batch) dominates and OpenBLAS wins from 64x64 (1.2-2.6x): in*out >= 4096 there.
# Layers of <= 16 units are one panel and never use a GEMM.
BLAS_MIN_MACS = 1 << 22
SMALL_BATCH, SMALL_BATCH_MIN_WEIGHTS = 16, 1 << 12


def use_blas(batch, n_in, n_out):
    """True if a dense layer of this shape, run on batches of `batch` rows, should call
    the BLAS (when one was found) instead of the panel kernels."""
    if n_out <= _engine.NARROW:
        return False
    if batch < SMALL_BATCH:
        wins = n_in * n_out >= SMALL_BATCH_MIN_WEIGHTS
    else:
        wins = batch * n_in * n_out >= BLAS_MIN_MACS
    return wins and _blas.available()


def flatten_weights(layers):
    """Moves every layer's weights into one new flat buffer; returns (params, offsets)."""
    weights = [(layer, name) for layer in layers for name in layer._weight_names
               if getattr(layer, name) is not None]
    total = sum(getattr(layer, name).size for layer, name in weights)
    params = np.empty(max(total, 1), dtype=np.float32)[:total]
    offsets, at = {}, 0
    for layer, name in weights:
        w = getattr(layer, name)
        view = params[at:at + w.size].reshape(w.shape)
        view[...] = w
        setattr(layer, name, view)
        offsets[(id(layer), name)] = at
        at += w.size
    return params, offsets


def layer_specs(layers, offsets, max_batch, logits=False):
    """The engine's (n_in, n_out, activation, use_bias, w_off, b_off, use_blas[, rate])
    list.

    An activation layer after a Dense without one fuses into it; otherwise it
    becomes an activation-only step (w_off = -1). Dropout is a step of its own
    (w_off = -2, with its rate). logits: the final activation
    (softmax or sigmoid) is left to the loss, which takes logits."""
    specs, fusable = [], False
    for layer in layers:
        if isinstance(layer, Dense):
            n_in, n_out = layer.kernel.shape
            specs.append([n_in, n_out, layer.activation, layer.use_bias,
                          offsets[(id(layer), "kernel")],
                          offsets.get((id(layer), "bias"), 0), use_blas(max_batch, n_in, n_out)])
            fusable = layer.activation == "linear"
        elif isinstance(layer, Dropout):
            width = layer.input_shape[-1]
            specs.append([width, width, "linear", False, -2, -1, False, layer.rate])
            fusable = False
        elif isinstance(layer, Activation):
            if fusable:
                specs[-1][2] = layer.activation
            else:
                width = layer.input_shape[-1]
                specs.append([width, width, layer.activation, False, -1, -1, False])
            fusable = False
        else:
            raise NotImplementedError(
                f"fastnn cannot run layer '{layer.name}' ({type(layer).__name__}) yet")
    if logits:
        specs[-1][2] = "linear"
    return [tuple(s) for s in specs]
