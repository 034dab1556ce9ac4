"""Where a model's weights live: one flat float32 buffer of trainable parameters (the
optimizer updates it in one pass, gradients share its layout) and one of frozen state.
Layers keep their weights as views into these buffers.

A layer may sit in several models (a model used as a layer, a layer shared between
models); the model that compiles last re-homes the weights into its buffers, copying
their current values, and the others notice (their views are no longer the layers'
arrays) and re-home in turn when they next run. `generation` counts re-homings, so
that predict's latency path can tell in one comparison that nothing moved."""
import numpy as np

generation = 0
# bumped whenever any layer's or model's `trainable` changes: with `generation`, the key
# under which a model's store is known valid without walking its layers
trainable_version = 0


def bump_trainable():
    global trainable_version
    trainable_version += 1


class Store:
    """The buffers of one model. entries: (layer, attribute name, trainable) per weight,
    in the model's weight order."""

    def __init__(self, entries):
        global generation
        sizes = [getattr(layer, name).size for layer, name, _ in entries]
        n_params = sum(s for s, (_, _, t) in zip(sizes, entries) if t)
        n_state = sum(s for s, (_, _, t) in zip(sizes, entries) if not t)
        # one spare float: C never sees a zero-length buffer
        self.params = np.zeros(n_params + 1, dtype=np.float32)[:n_params]
        self.grads = np.zeros(n_params + 1, dtype=np.float32)[:n_params]
        self.state = np.zeros(n_state + 1, dtype=np.float32)[:n_state]
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
        generation += 1

    def holds(self, entries):
        """True if these entries are this store's and every layer still holds its view."""
        if tuple((id(layer), name, t) for layer, name, t in entries) != self.signature:
            return False
        return all(getattr(layer, name) is view for layer, name, view in self.views)

    def locate(self, layer, name):
        """(trainable, offset) of a weight."""
        return self.where[(id(layer), name)]
