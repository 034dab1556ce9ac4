"""Lowers a chain of layers into what the engine runs: one flat float32
parameter buffer (layers' weights become views into it), a gradient buffer of
the same layout, and the per-layer specs of _engine.Net."""
import numpy as np

from fastnn import _blas, _engine
from fastnn.layers.activation import Activation
from fastnn.layers.core import Dense

# A wide layer's GEMMs (more than 16 units; narrower ones always take the narrow
# kernels) go to the BLAS when batch*in*out reaches this many multiply-adds.
# bench/calibrate_blas.py on the 2-core dev machine: below ~4k the two are level
# (call overhead dominates), from there OpenBLAS is 1.5-2x faster at 13x32 and
# 3-8x faster from 64x64 up, at every batch size >= 8.
BLAS_MIN_MACS = 1 << 12


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


def layer_specs(layers, offsets, max_batch):
    """The engine's (n_in, n_out, activation, use_bias, w_off, b_off, use_blas) list.

    An activation layer after a Dense without one fuses into it; otherwise it
    becomes an activation-only step (w_off = -1)."""
    specs, fusable = [], False
    for layer in layers:
        if isinstance(layer, Dense):
            n_in, n_out = layer.kernel.shape
            use_blas = (n_out > _engine.NARROW and max_batch * n_in * n_out >= BLAS_MIN_MACS
                        and _blas.available())
            specs.append([n_in, n_out, layer.activation, layer.use_bias,
                          offsets[(id(layer), "kernel")],
                          offsets.get((id(layer), "bias"), 0), use_blas])
            fusable = layer.activation == "linear"
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
    return [tuple(s) for s in specs]
