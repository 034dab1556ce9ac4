"""The planner: lowers a model's graph into an _engine.Plan, the plain data the C core
runs. A generic walker: each layer emits its own ops (Layer._lower), and the passes
here know no layer class:

1. lower: input tensors, then every node of the graph in topological order (a layer
   called twice lowers twice over the same weights; a model used as a layer inlines);
2. heads: one loss per output; a cross-entropy on probabilities (Keras' default,
   from_logits=False) takes the pre-activation of the output's softmax/sigmoid;
3. fuse: an activation right after a dense op with no other reader joins the dense op
   (one pass over its output, no copy);
4. prune: ops that nothing needed reads are dropped; tensors are renumbered.

The C side (fnn_plan_layout) then derives strides, gradient flow and the accumulate
flags of tensors read by several ops."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

from fastnn import _blas, _engine, activations

if TYPE_CHECKING:
    from fastnn.layers.core import Layer
    from fastnn.models.graph import Graph
    from fastnn.models.model import Model
    from fastnn.models.weights import Store

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


def use_blas(batch: int, n_in: int, n_out: int) -> bool:
    """True if a dense layer of this shape, run on batches of `batch` rows, should call
    the BLAS (when one was found) instead of the panel kernels."""
    if n_out <= _engine.NARROW:
        return False
    if batch < SMALL_BATCH:
        wins = n_in * n_out >= SMALL_BATCH_MIN_WEIGHTS
    else:
        wins = batch * n_in * n_out >= BLAS_MIN_MACS
    return wins and _blas.available()


class Lowering:
    """What layers emit into: tensors (width, is_input) and ops (dicts, see
    _engine.Plan), over the weights' places in a models.weights.Store."""

    def __init__(self, store: Store, max_batch: int) -> None:
        self.store, self.max_batch = store, max_batch
        self.tensors, self.ops = [], []
        # weight penalties and constraints (fastnn.regularizers/constraints.lower), and
        # input tensor -> bound of its values (an Embedding's input_dim)
        self.penalties, self.constraints, self.index_limits = [], [], {}

    def tensor(self, width: Optional[int], is_input: bool = False) -> int:
        self.tensors.append((int(width), bool(is_input)))
        return len(self.tensors) - 1

    def width(self, t: int) -> int:
        return self.tensors[t][0]

    def op(self, kind: str, inputs: Sequence[int], width: Optional[int] = None,
           **fields: Any) -> int:
        """Emits an op reading `inputs`; its output is `width` wide (default: the first
        input's, or their sum for concatenate). Returns the output tensor id."""
        if len(inputs) > _engine.MAX_OP_INPUTS:
            raise ValueError(f"an op takes at most {_engine.MAX_OP_INPUTS} inputs, got "
                             f"{len(inputs)}")
        if width is None:
            width = (sum(self.width(t) for t in inputs) if kind == "concatenate"
                     else self.width(inputs[0]))
        out = self.tensor(width)
        self.ops.append({"kind": kind, "inputs": list(inputs), "out": out, **fields})
        return out

    def weight(self, layer: Layer, name: Optional[str]) -> tuple[bool, int]:
        """(trainable, offset) of a layer's weight: an offset into the trainable parameters
        when trainable, else into the state buffer (frozen weights, and weights made with
        add_weight(trainable=False) such as moving statistics)."""
        return self.store.locate(layer, name)

    def dense(self, layer: Layer, x: int, units: int, activation: str, kernel: str,
              bias: Optional[str] = None) -> int:
        """A dense op over the layer's weights `kernel` (and `bias`), by attribute name."""
        trainable, w_off = self.store.locate(layer, kernel)
        b_off = self.store.locate(layer, bias)[1] if bias else -1
        n_in = self.width(x)
        path = "blas" if use_blas(self.max_batch, n_in, units) else "panels"
        fused = not _engine.act_needs_input(activation)  # dense keeps no pre-activation
        out = self.op("dense", [x], units, act=activation if fused else "linear", path=path,
                      trainable=trainable, w_off=w_off, b_off=b_off)
        if not fused:
            out = self.op("activation", [out], act=activation,
                          fparam=activations.engine_params(activation))
        return out

    def graph(self, graph: Graph, inputs: Sequence[int]) -> list[int]:
        """Lowers a Graph whose input tensors are the ids `inputs`; returns its outputs' ids."""
        ids = {id(t): i for t, i in zip(graph.inputs, inputs)}
        for node in graph.nodes:
            ins = [ids[id(t)] for t in node._inputs]
            first = len(self.ops)
            ids[id(node)] = node._layer._lower(self, ins)
            for op in self.ops[first:]:  # the layer that emitted it (errors, export)
                op.setdefault("layer", node._layer.name)
        return [ids[id(t)] for t in graph.outputs]

    # -- passes ---------------------------------------------------------------------
    def producer(self, t: int) -> Optional[int]:
        for k, op in enumerate(self.ops):
            if op["out"] == t:
                return k
        return None

    def readers(self, t: int) -> int:
        return sum(op["inputs"].count(t) for op in self.ops)

    def logits(self, t: int, activation: str, output_name: str, loss_name: str) -> int:
        """The tensor holding the pre-activation of output t, whose producer must end in
        `activation` (folded into the loss). A fused dense op is split in two."""
        k = self.producer(t)
        op = self.ops[k] if k is not None else None
        if op is not None and op["kind"] == "activation" and op["act"] == activation:
            return op["inputs"][0]
        if op is not None and op["kind"] == "dense" and op["act"] == activation:
            z = self.tensor(self.width(t))
            op["out"], op["act"] = z, "linear"
            self.ops.insert(k + 1, {"kind": "activation", "inputs": [z], "out": t,
                                    "act": activation})
            return z
        if op is not None and op["kind"] == "activity_regularization":
            raise ValueError(f"{loss_name} with from_logits=False works on the logits, so output "
                             f"'{output_name}' cannot carry an activity regularizer (it penalises "
                             "the probabilities); move it to an earlier layer")
        last = op["act"] if op is not None and "act" in op else "linear"
        raise ValueError(
            f"{loss_name} with from_logits=False (Keras' default) takes probabilities, but "
            f"output '{output_name}' ends in '{last}': it needs '{activation}' as its last "
            "activation, or pass from_logits=True if the outputs are logits")

    def fuse(self, keep: set[int]) -> None:
        """Joins each activation op into the dense op before it when that dense op is
        linear and the activation is its output's only reader (and `keep` does not need
        the pre-activation), when dense can apply it: its derivative comes from the output
        alone (not act_needs_input) and it runs over whole rows."""
        k = 0
        while k < len(self.ops):
            op = self.ops[k]
            src = op["inputs"][0] if op["kind"] == "activation" else None
            p = self.producer(src) if src is not None else None
            if (p is not None and self.ops[p]["kind"] == "dense" and
                    self.ops[p]["act"] == "linear" and src not in keep and
                    self.readers(src) == 1 and not _engine.act_needs_input(op["act"]) and
                    not op.get("iparam")):  # a grouped softmax runs over part of a row
                self.ops[p]["act"], self.ops[p]["out"] = op["act"], op["out"]
                del self.ops[k]
                continue
            k += 1

    def prune(self, roots: Sequence[int], inputs: Sequence[int]) -> dict[int, int]:
        """Drops ops nothing in `roots` needs; renumbers tensors. Returns the id map."""
        live, need = [], set(roots)
        for op in reversed(self.ops):
            if op["out"] in need:
                live.append(op)
                need.update(op["inputs"])
        self.ops = live[::-1]
        used = sorted(set(inputs) | set(roots) | {t for op in self.ops
                                                  for t in op["inputs"] + [op["out"]]})
        ids = {t: i for i, t in enumerate(used)}
        self.tensors = [self.tensors[t] for t in used]
        for op in self.ops:
            op["inputs"] = [ids[t] for t in op["inputs"]]
            op["out"] = ids[op["out"]]
        return ids


def build(model: Model, store: Store, max_batch: int, heads: Sequence[Any] = (),
          metrics: Sequence[Any] = (), predict: bool = True) -> _engine.Plan:
    """The Plan of `model` over `store`'s buffers for batches of up to max_batch rows.

    heads: per model output, (Loss, weight) or None; metrics: (output index, engine
    key or (engine key, options)) (_engine.Plan's metrics); predict: whether the plan
    returns the outputs (predict) or only computes the heads' losses (training,
    evaluation)."""
    ctx = Lowering(store, max_batch)
    inputs = [ctx.tensor(math.prod(t.shape[1:]), is_input=True) for t in model._graph.inputs]
    outputs = ctx.graph(model._graph, inputs)
    names = model.output_names
    head_specs, head_of = [], {}
    for j, spec in enumerate(heads):
        if spec is None:
            continue
        loss, weight = spec
        t, folded = outputs[j], "linear"
        if not loss.from_logits and loss.output_activation:
            folded = loss.output_activation
            t = ctx.logits(t, folded, names[j], loss.name)
        width = ctx.width(outputs[j])
        head_of[j] = len(head_specs)
        head_specs.append([t, loss.key, folded, 1 if loss.sparse_labels else width, weight,
                           {"param": loss.param, "reduction": loss.reduction}])
    roots = list(outputs) if predict else [h[0] for h in head_specs]
    keep = set(roots) | {h[0] for h in head_specs}
    ctx.fuse(keep)
    ids = ctx.prune(roots + [h[0] for h in head_specs], inputs)
    for h in head_specs:
        h[0] = ids[h[0]]
    plan = _engine.Plan(ctx.tensors, ctx.ops, [ids[t] for t in inputs],
                        [ids[t] for t in outputs] if predict else [],
                        [tuple(h) for h in head_specs],
                        [(head_of[j],) + ((key,) if isinstance(key, str) else tuple(key))
                         for j, key in metrics],
                        store.params, store.grads, store.state, max_batch,
                        penalties=ctx.penalties, constraints=ctx.constraints,
                        index_limits=[ctx.index_limits.get(t, 0) for t in inputs])
    return plan
