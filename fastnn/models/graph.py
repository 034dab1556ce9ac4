"""The graph of a functional model: its input and output tensors and every layer call
between them (nodes: the tensors the calls made), in topological order."""
from __future__ import annotations

from typing import Sequence

from fastnn.layers.core import InputLayer, KerasTensor, Layer


class Graph:
    def __init__(self, inputs: Sequence[KerasTensor], outputs: Sequence[KerasTensor],
                 model_name: str) -> None:
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
        self.layers = self._layers_by_depth()
        seen = {}
        for layer in self.layers:
            if layer.name in seen:
                raise ValueError(f"Model '{model_name}': the name \"{layer.name}\" is used 2 "
                                 "times in the model. All layer names should be unique.")
            seen[layer.name] = layer
        # per tensor, the index of the call of its layer that made it ('name[i][0]')
        self.call_index, counts = {id(t): 0 for t in self.inputs}, {}
        for t in self.nodes:
            self.call_index[id(t)] = counts.get(id(t._layer), 0)
            counts[id(t._layer)] = self.call_index[id(t)] + 1

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

    def _layers_by_depth(self):
        """model.layers in Keras' order: by depth from the outputs (inputs first), ties by
        the order a depth-first walk from the outputs meets the layers, so that weight
        lists line up with Keras' get_weights() for the same graph."""
        first_seen, post_order, done = {}, [], set()
        inputs = {id(t) for t in self.inputs}
        for out in self.outputs:
            stack = [(out, False)]
            while stack:
                t, expanded = stack.pop()
                if expanded:
                    done.add(id(t))
                    post_order.append(t)
                    continue
                if id(t) in done:
                    continue
                first_seen.setdefault(id(t._layer), len(first_seen))
                stack.append((t, True))
                if id(t) not in inputs:
                    for i in reversed(t._inputs):
                        stack.append((i, False))
        node_depth, layer_depth, layers = {}, {}, {}
        for t in reversed(post_order):
            depth = max(node_depth.setdefault(id(t), 0), layer_depth.get(id(t._layer), 0))
            layer_depth[id(t._layer)] = depth
            layers[id(t._layer)] = t._layer
            node_depth[id(t)] = depth
            if id(t) not in inputs:
                for i in t._inputs:
                    node_depth[id(i)] = max(depth + 1, node_depth.get(id(i), 0))
        return sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)],
                                                          first_seen[id(layer)]))

    def inbound(self, layer: Layer) -> list[list[str]]:
        """For summary's 'Connected to': per call of `layer`, the names of its inputs."""
        return [[i.name for i in t._inputs] for t in self.nodes if t._layer is layer]
