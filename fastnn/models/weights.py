"""Where a model's weights live: one flat float32 buffer of trainable parameters (the
optimizer updates it in one pass, gradients share its layout) and one of frozen state.
Layers keep their weights as views into these buffers.

A layer may sit in several models (a model used as a layer, a layer shared between
models); the model that compiles last re-homes the weights into its buffers, copying
their current values, and the others notice (their views are no longer the layers'
arrays) and re-home in turn when they next run. `generation` counts re-homings, so
that predict's latency path can tell in one comparison that nothing moved."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from fastnn.layers.core import Layer

generation = 0
# (id(layer), attribute) -> weakref to the Store whose buffers hold that weight now
_holder = {}
# bumped whenever any layer's or model's `trainable` changes: with `generation`, the key
# under which a model's store is known valid without walking its layers
trainable_version = 0


def bump_trainable() -> None:
    global trainable_version
    trainable_version += 1


def aligned_zeros(n: int) -> np.ndarray:
    """n float32 zeros starting on a 64-byte boundary (a cache line: the kernels' vector
    loads never straddle two), with a spare float so C never sees a zero-length buffer."""
    raw = np.zeros(n + 17, dtype=np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return raw[skip:skip + n]


class Store:
    """The buffers of one model. entries: (layer, attribute name, trainable) per weight,
    in the model's weight order."""

    def __init__(self, entries: Sequence[tuple[Layer, str, bool]]) -> None:
        global generation
        sizes = [getattr(layer, name).size for layer, name, _ in entries]
        n_params = sum(s for s, (_, _, t) in zip(sizes, entries) if t)
        n_state = sum(s for s, (_, _, t) in zip(sizes, entries) if not t)
        self.params = aligned_zeros(n_params)
        self.grads = aligned_zeros(n_params)
        self.state = aligned_zeros(n_state)
        self.where = {}         # (id(layer), name) -> (trainable, offset)
        self.views = []         # (layer, name, view): what each layer must still hold
        self.variables = []     # (layer/name, offset, size) of the trainable ones
        at = {True: 0, False: 0}
        for (layer, name, trainable), size in zip(entries, sizes):
            buf = self.params if trainable else self.state
            value = getattr(layer, name)
            view = buf[at[trainable]:at[trainable] + size].reshape(value.shape)
            view[...] = value
            setattr(layer, name, view)
            self.where[(id(layer), name)] = (trainable, at[trainable])
            self.views.append((layer, name, view))
            if trainable:
                self.variables.append((f"{layer.name}/{name}", at[True], size))
            at[trainable] += size
        self.signature = tuple((id(layer), name, trainable) for layer, name, trainable in entries)
        self.layout = tuple(self.variables)
        self.plans = weakref.WeakSet()  # plans over these buffers (made stale when they move)
        for layer, name, _ in entries:  # the stores these weights leave
            old = _holder.get((id(layer), name))
            old = old() if old is not None else None
            if old is not None and old is not self:
                old.retire()
            _holder[(id(layer), name)] = weakref.ref(self)
        generation += 1

    def retire(self) -> None:
        """Some weights moved to another store: plans over these buffers must not run."""
        for plan in list(self.plans):
            plan.stale = True

    def holds(self, entries: Sequence[tuple[Layer, str, bool]]) -> bool:
        """True if these entries are this store's and every layer still holds its view."""
        if tuple((id(layer), name, t) for layer, name, t in entries) != self.signature:
            return False
        return all(getattr(layer, name) is view for layer, name, view in self.views)

    def locate(self, layer: Layer, name: Optional[str]) -> tuple[bool, int]:
        """(trainable, offset) of a weight."""
        return self.where[(id(layer), name)]
