"""The graph of a functional model: its input and output tensors and every layer call
between them (nodes: the tensors the calls made), in topological order."""
from fastnn.layers.core import InputLayer, KerasTensor


class Graph:
    def __init__(self, inputs, outputs, model_name):
        self.inputs, self.outputs = list(inputs), list(outputs)
        for t in self.inputs:
            if not isinstance(t, KerasTensor) or not isinstance(t._layer, InputLayer):
                raise TypeError(f"Model '{model_name}': inputs must be tensors made by Input(). "
                                f"Received: inputs={inputs!r}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise ValueError(f"Model '{model_name}': an input is listed twice: {inputs!r}")
        for t in self.outputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"Model '{model_name}': outputs must be tensors made by calling "
                                f"layers on the inputs. Received: outputs={outputs!r}")
        if len({id(t) for t in self.outputs}) != len(self.outputs):
            raise ValueError(f"Model '{model_name}': an output is listed twice: {outputs!r}")
        self.nodes = self._topological(model_name)
        layers = [t._layer for t in self.inputs]
        for t in self.nodes:
            if not any(t._layer is layer for layer in layers):
                layers.append(t._layer)
        self.layers = layers

    def _topological(self, model_name):
        """Every tensor between the inputs and the outputs, each after its inputs.
        Tensors are immutable once made, so the graph has no cycle by construction."""
        known = {id(t) for t in self.inputs}
        order, done = [], set(known)
        for out in self.outputs:
            stack = [(out, False)]
            while stack:
                t, expanded = stack.pop()
                if id(t) in done:
                    continue
                if expanded:
                    done.add(id(t))
                    order.append(t)
                    continue
                if isinstance(t._layer, InputLayer):
                    names = [i.name for i in self.inputs]
                    raise ValueError(
                        f"Model '{model_name}': output {out!r} is not computed from the inputs "
                        f"{names}: it needs input '{t.name}', which is not one of them")
                stack.append((t, True))
                for i in reversed(t._inputs):
                    if id(i) not in done:
                        stack.append((i, False))
        return order

    def inbound(self, layer):
        """For summary's 'Connected to': per call of `layer`, the names of its inputs."""
        return [[i.name for i in t._inputs] for t in self.nodes if t._layer is layer]
