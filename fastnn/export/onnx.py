"""ONNX out: a model's forward pass as an ONNX graph (fastnn.export.to_onnx).

``to_onnx(model, "housing.onnx")`` walks the very plan the engine runs for predict
(``model._plan(..., "predict")``: activations fused into their dense op, dead ops pruned),
as fastnn.export.c does, and writes each op with ONNX operators through the ``onnx``
package (imported only here: ``pip install onnx``). One emitter per op kind in EMITTERS and
one per activation in ACTIVATIONS; a kind without one cannot be exported (ValueError).

Every value inside the graph is 2-D, (batch, width), as the engine's rows: an input of
more axes is flattened on the way in, an output of more axes reshaped on the way out, and
an op that works on groups of a row (grouped softmax, layer norm over the last axis)
reshapes to (batch, groups, c) and back. The batch dimension is dynamic ("batch").
Weights are initializers named after their layer ("dense/kernel"), each stored once however
many ops read it. Ops that act only while training (dropout, the noise layers, activity
regularization) are the identity, as in predict.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from fastnn._typing import PathLike
from fastnn.export.c import _act_params, op_act

if TYPE_CHECKING:
    from fastnn.models.model import Model

_INFER_ROWS = 1024  # the plan predict uses (its max_batch only picks dense kernels)
MIN_OPSET = 13      # Softmax over one axis, Clip's bounds as inputs, GreaterOrEqual
DEFAULT_OPSET = 17  # the first with LayerNormalization


def _import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("to_onnx() needs the onnx package: pip install onnx "
                          "(or pip install fastnn[onnx])") from e
    return onnx


def to_onnx(model: Model, path: Optional[PathLike] = None, opset: int = DEFAULT_OPSET) -> Any:
    """The ONNX ModelProto of `model`'s forward pass (inference) at ONNX opset `opset`,
    also saved to `path` when given. Inputs and outputs are float32, named after the
    model's, with a dynamic batch dimension; onnx.checker.check_model passes on it."""
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if (isinstance(opset, bool) or not isinstance(opset, (int, np.integer))
            or not MIN_OPSET <= opset <= newest):
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest "
                         f"this onnx package knows). Received: opset={opset!r}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike) or None. "
                        f"Received: path={path!r}")
    model._require_built("to_onnx()")
    plan = model._plan(_INFER_ROWS, "predict")
    g = _Graph(onnx, int(opset), plan.spec, model._weights_store())
    for t, sym in zip(plan.spec["inputs"], model.inputs):
        g.add_input(t, sym)
    # outputs keep the model's names (one named as an input, when a model returns its
    # input, takes a suffix: ONNX names are unique)
    out_names = [g.fresh(sym.name) for sym in model.outputs]
    for op in plan.spec["ops"]:
        emit = EMITTERS.get(op["kind"])
        if emit is None:
            raise ValueError(
                f"Cannot export layer '{op.get('layer', '?')}' to ONNX: fastnn has no ONNX "
                f"emitter for its op kind '{op['kind']}' (exportable kinds: {sorted(EMITTERS)})")
        g.value[op["out"]] = emit(g, op)
    for t, sym, name in zip(plan.spec["outputs"], model.outputs, out_names):
        g.add_output(t, sym, name)
    proto = g.model(model)
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


# ---- the graph being built: names, initializers, nodes ------------------------------------------


class _Graph:
    """Nodes, initializers and value names of the graph: g.value[t] is the ONNX name of
    the plan's tensor t (a (batch, width) float32)."""

    def __init__(self, onnx, opset, spec, store):
        self.onnx, self.opset, self.spec = onnx, opset, spec
        self.buffers = {True: store.params, False: store.state}
        self.weight_names = {}  # (trainable, offset) -> "layer/weight"
        for layer, attr, _ in store.views:
            self.weight_names[store.where[(id(layer), attr)]] = f"{layer.name}/{attr}"
        self.taken = set()      # every value and node name used
        self.value = {}
        self.consts = {}        # key -> initializer name (weights once, shared scalars)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []

    def fresh(self, hint):
        name, k = hint, 1
        while name in self.taken:
            name, k = f"{hint}_{k}", k + 1
        self.taken.add(name)
        return name

    def width(self, t):
        return self.spec["tensors"][t][0]

    def const(self, hint, array, key=None):
        """An initializer holding `array` (float32 unless integer); returns its name. With a
        key, one initializer per key."""
        if key is not None and key in self.consts:
            return self.consts[key]
        arr = np.asarray(array)
        arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float32)
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        if key is not None:
            self.consts[key] = name
        return name

    def scalar(self, v):
        """A float32 scalar (shared by every op that uses the same value)."""
        v = np.float32(v)
        return self.const(f"const/{float(v)!r}", v, key=("scalar", v.tobytes()))

    def shape(self, dims):
        """A Reshape target: 0 keeps the batch dimension (so 0 rows work too)."""
        dims = [0] + [int(d) for d in dims]
        return self.const("shape/" + "x".join(map(str, dims[1:])), np.array(dims, np.int64),
                          key=("shape",) + tuple(dims))

    def weights(self, op, trainable, offset, size, shape=None):
        """The initializer of `size` floats of the params (trainable) or state buffer
        from `offset` (one per weight however many ops read it)."""
        key = ("weights", bool(trainable), int(offset), int(size))
        if key not in self.consts:
            label = self.weight_names.get(key[1:3], f"{op.get('layer', 'weights')}/w{offset}")
            values = self.buffers[key[1]][key[2]:key[2] + key[3]]
            if values.size != size:
                raise ValueError(f"{label}: the plan reads {size} floats at offset {offset}, "
                                 "beyond the model's weights")
            self.const(label, values.reshape(shape or (size,)), key=key)
        return self.consts[key]

    def node(self, op_type, inputs, op, out=None, **attrs):
        """Appends a node of `op_type` reading `inputs` (names); returns its output's name
        (`out`, or a fresh one named after the op's layer)."""
        layer = op.get("layer", op["kind"]) if op else "graph"
        out = out or self.fresh(f"{layer}/{op_type}")
        self.nodes.append(self.onnx.helper.make_node(
            op_type, list(inputs), [out], name=self.fresh(f"{layer}/{op_type}_node"), **attrs))
        return out

    def grouped(self, x, op, group, apply):
        """apply(v) over groups of `group` values of x's rows (a (batch, width / group,
        group) view when group divides the row, so ONNX ops act on the last axis)."""
        width = self.width(op["out"])
        if group in (0, width):
            return apply(x)
        y = apply(self.node("Reshape", [x, self.shape([width // group, group])], op))
        return self.node("Reshape", [y, self.shape([width])], op)

    def activation(self, act, x, op):
        entry = ACTIVATIONS.get(act)
        if entry is None:
            raise ValueError(
                f"Cannot export layer '{op.get('layer', '?')}' to ONNX: no ONNX emitter for "
                f"activation '{act}' (exportable activations: {sorted(ACTIVATIONS)})")
        return entry(self, x, op)

    # -- inputs and outputs ---------------------------------------------------------------
    def _info(self, name, sym):
        helper = self.onnx.helper
        return helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT,
                                             ["batch"] + [int(d) for d in sym.shape[1:]])

    def add_input(self, t, sym):
        name = self.fresh(sym.name)
        self.inputs.append(self._info(name, sym))
        if len(sym.shape) > 2:  # rows as the engine sees them
            name = self.node("Flatten", [name], None, out=self.fresh(f"{name}/rows"), axis=1)
        self.value[t] = name

    def add_output(self, t, sym, name):
        v = self.value[t]
        producer = next((n for n in self.nodes if n.output[0] == v), None)
        if len(sym.shape) > 2:
            self.node("Reshape", [v, self.shape(sym.shape[1:])], None, out=name)
        elif (producer is not None and not any(v in n.input for n in self.nodes)
              and v not in [o.name for o in self.outputs]):
            producer.output[0] = name  # the op writes the output directly
            self.value = {k: (name if val == v else val) for k, val in self.value.items()}
        else:  # an input, a value other ops read too, or an output already
            self.node("Identity", [v], None, out=name)
        self.outputs.append(self._info(name, sym))

    def model(self, model):
        import fastnn
        helper = self.onnx.helper
        graph = helper.make_graph(self.nodes, model.name, self.inputs, self.outputs,
                                  initializer=self.inits,
                                  doc_string=f"model '{model.name}' exported by fastnn")
        opsets = [helper.make_opsetid("", self.opset)]
        proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastnn",
                                  producer_version=fastnn.__version__)
        # the oldest IR that carries this opset: what older runtimes still read
        proto.ir_version = helper.find_min_ir_version_for(opsets)
        return proto


# ---- activations: Keras 3's definitions (csrc/activations.c) ------------------------------------
# Each entry: function(graph, x, op) -> the name of act(x). Parameters as the engine reads
# them (fastnn.export.c._act_params: an activation op's fparam, Keras' defaults when fused).


def _onnx_op(op_type, **attrs):
    return lambda g, x, op: g.node(op_type, [x], op, **attrs)


def _with_param(op_type, attr):
    """An ONNX op whose attribute `attr` is the activation's first parameter."""
    return lambda g, x, op: g.node(op_type, [x], op, **{attr: _act_params(op, 1)[0]})


def _per_row(op_type):
    """A softmax-like ONNX op over each row, or over groups of iparam[0] values of it."""
    def apply(g, x, op):
        group = int((op.get("iparam") or [0])[0]) if op["kind"] == "activation" else 0
        return g.grouped(x, op, group, lambda v: g.node(op_type, [v], op, axis=-1))
    return apply


def _times(f):
    """x * f(x)."""
    return lambda g, x, op: g.node("Mul", [x, f(g, x, op)], op)


def _sigmoid(g, x, op):
    return g.node("Sigmoid", [x], op)


def _gelu(g, x, op):
    """x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""
    e = g.node("Erf", [g.node("Mul", [x, g.scalar(0.70710678118654752)], op)], op)
    half = g.node("Mul", [x, g.scalar(0.5)], op)
    return g.node("Mul", [half, g.node("Add", [e, g.scalar(1.0)], op)], op)


def _gelu_tanh(g, x, op):
    """x sigmoid(2u), u = sqrt(2 / pi) (x + 0.044715 x^3): 0.5 x (1 + tanh u)."""
    x3 = g.node("Mul", [g.node("Mul", [x, x], op), x], op)
    inner = g.node("Add", [x, g.node("Mul", [x3, g.scalar(0.044715)], op)], op)
    u2 = g.node("Mul", [inner, g.scalar(2 * 0.79788456080286536)], op)
    return g.node("Mul", [x, g.node("Sigmoid", [u2], op)], op)


def _mish(g, x, op):
    """x tanh(softplus(x))."""
    return g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x], op)], op)], op)


def _relu6(g, x, op):
    return g.node("Clip", [x, g.scalar(0.0), g.scalar(6.0)], op)


def _relu_general(g, x, op):
    """Keras' relu(x, negative_slope=s, max_value=mx, threshold=t): a = x where x > t else
    0, clipped to [0, mx] when mx is finite, minus s max(t - x, 0)."""
    s, mx, t = (float(np.float32(v)) for v in _act_params(op, 3))
    if t != 0.0:
        zero = g.scalar(0.0)
        a = g.node("Where", [g.node("Greater", [x, g.scalar(t)], op), x, zero], op)
    else:
        a = g.node("Relu", [x], op)
    if mx < np.inf:
        a = g.node("Clip", [a, g.scalar(0.0), g.scalar(mx)], op)
    if s != 0.0:
        below = g.node("Relu", [g.node("Sub", [g.scalar(t), x], op)], op)
        a = g.node("Sub", [a, g.node("Mul", [below, g.scalar(s)], op)], op)
    return a


ACTIVATIONS = {
    "linear": lambda g, x, op: x,
    "relu": _onnx_op("Relu"),
    "sigmoid": _sigmoid,
    "tanh": _onnx_op("Tanh"),
    "softmax": _per_row("Softmax"),
    "log_softmax": _per_row("LogSoftmax"),
    "relu6": _relu6,
    "leaky_relu": _with_param("LeakyRelu", "alpha"),
    "elu": _with_param("Elu", "alpha"),
    # Keras' constants, not ONNX's float32 defaults
    "selu": _onnx_op("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _times(_sigmoid),
    "softplus": _onnx_op("Softplus"),
    "softsign": _onnx_op("Softsign"),
    # relu6(x + 3) / 6 = max(0, min(1, x / 6 + 1 / 2))
    "hard_sigmoid": _onnx_op("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "exponential": _onnx_op("Exp"),
    "mish": _mish,
    "relu_general": _relu_general,
}


# ---- op emitters: kind -> function(graph, op dict of plan.spec["ops"]) -> output's name ----------


def _x(g, op, i=0):
    return g.value[op["inputs"][i]]


def _emit_dense(g, op):
    if any(op.get("iparam", ())):
        raise ValueError(f"Cannot export layer '{op.get('layer', '?')}' to ONNX: its dense op "
                         f"has iparam={list(op['iparam'])}, a layout this exporter does not know")
    n_in, n_out = g.width(op["inputs"][0]), g.width(op["out"])
    kernel = g.weights(op, op["trainable"], op["w_off"], n_in * n_out, (n_in, n_out))
    y = g.node("MatMul", [_x(g, op), kernel], op)
    if op.get("b_off", -1) >= 0:
        y = g.node("Add", [y, g.weights(op, op["trainable"], op["b_off"], n_out)], op)
    return g.activation(op_act(op), y, op)


def _emit_activation(g, op):
    return g.activation(op_act(op), _x(g, op), op)


def _emit_identity(g, op):
    return _x(g, op)


def _variadic(op_type):
    """An ONNX op taking any number of inputs (Sum, Mean, Max, Min)."""
    def emit(g, op):
        xs = [g.value[t] for t in op["inputs"]]
        return g.node(op_type, xs, op) if len(xs) > 1 else g.node("Identity", xs, op)
    return emit


def _fold(op_type):
    """A binary ONNX op folded over the inputs from the first, in the engine's order."""
    def emit(g, op):
        y = _x(g, op)
        for t in op["inputs"][1:]:
            y = g.node(op_type, [y, g.value[t]], op)
        return y if len(op["inputs"]) > 1 else g.node("Identity", [y], op)
    return emit


def _emit_concatenate(g, op):
    return g.node("Concat", [g.value[t] for t in op["inputs"]], op, axis=1)


def _per_channel(g, op, values, hint):
    """A (width,) initializer of C per-channel values repeated over a row's groups."""
    values = np.asarray(values)
    return g.const(f"{op.get('layer', op['kind'])}/{hint}",
                   np.tile(values, g.width(op["out"]) // values.size))


def _emit_prelu(g, op):
    """y = x where x > 0, else alpha[(j / inner) % count] x at column j."""
    inner, count = (int(v) for v in op["iparam"][:2])
    width = g.width(op["out"])
    if inner == 1 and count == width:
        slope = g.weights(op, op["trainable"], op["w_off"], count)
    else:
        values = g.buffers[bool(op["trainable"])][op["w_off"]:op["w_off"] + count]
        slope = g.const(f"{op.get('layer', 'prelu')}/alpha_per_column",
                        values[(np.arange(width) // inner) % count])
    return g.node("PRelu", [_x(g, op), slope], op)


def _emit_normalization(g, op):
    """Keras' Normalization: (x - mean) / s, or x * s + mean when inverted, with
    s = max(sqrt(max(variance, 0)), 1e-7) per channel (from adapt, in the state)."""
    c, state = int(op["iparam"][0]), g.buffers[False]
    mean = state[op["state_off"][0]:op["state_off"][0] + c]
    var = state[op["state_off"][1]:op["state_off"][1] + c]
    s = np.sqrt(np.where(var > 0, var, np.float32(0)))
    s = np.where(s > np.float32(1e-7), s, np.float32(1e-7)).astype(np.float32)
    mean, s = _per_channel(g, op, mean, "mean"), _per_channel(g, op, s, "scale")
    if op["iparam"][1]:
        return g.node("Add", [g.node("Mul", [_x(g, op), s], op), mean], op)
    return g.node("Div", [g.node("Sub", [_x(g, op), mean], op), s], op)


def _gamma_beta(g, op, c):
    """gamma and beta of batch_norm / layer_norm as float arrays, or None: gamma at w_off
    when iparam[1], beta at b_off (w_off without gamma) when iparam[2]."""
    buf = g.buffers[bool(op["trainable"])]
    has_gamma, has_beta = bool(op["iparam"][1]), bool(op["iparam"][2])
    beta_off = op["b_off"] if has_gamma else op["w_off"]
    return (buf[op["w_off"]:op["w_off"] + c] if has_gamma else None,
            buf[beta_off:beta_off + c] if has_beta else None)


def _emit_batch_norm(g, op):
    """BatchNormalization at inference, on the moving statistics: (x - mean) k + beta,
    k = gamma / sqrt(moving_variance + epsilon) (in double, rounded once)."""
    c, state = int(op["iparam"][0]), g.buffers[False]
    mean = state[op["state_off"][0]:op["state_off"][0] + c]
    var = state[op["state_off"][1]:op["state_off"][1] + c].astype(np.float64)
    gamma, beta = _gamma_beta(g, op, c)
    k = 1.0 / np.sqrt(var + float(np.float32(op["fparam"][0])))
    if gamma is not None:
        k = k * gamma.astype(np.float64)
    y = g.node("Sub", [_x(g, op), _per_channel(g, op, mean, "moving_mean")], op)
    y = g.node("Mul", [y, _per_channel(g, op, k, "inv_std")], op)
    return y if beta is None else g.node("Add", [y, _per_channel(g, op, beta, "beta")], op)


def _emit_layer_norm(g, op):
    """(x - m) / sqrt(v + eps) [* gamma] [+ beta] over each group of C values of a row
    (m, v its mean and biased variance): ONNX's LayerNormalization from opset 17,
    primitives before."""
    c, eps = int(op["iparam"][0]), float(np.float32(op["fparam"][0]))
    gamma, beta = _gamma_beta(g, op, c)
    layer = op.get("layer", "layer_norm")
    g_name = g.weights(op, op["trainable"], op["w_off"], c) if gamma is not None else None
    b_name = None
    if beta is not None:
        b_off = op["b_off"] if gamma is not None else op["w_off"]
        b_name = g.weights(op, op["trainable"], b_off, c)

    def normalize(v):
        if g.opset >= 17:
            scale = g_name or g.const(f"{layer}/ones", np.ones(c, np.float32))
            return g.node("LayerNormalization", [v, scale] + ([b_name] if b_name else []), op,
                          axis=-1, epsilon=eps)
        m = g.node("ReduceMean", [v], op, axes=[-1], keepdims=1)
        d = g.node("Sub", [v, m], op)
        var = g.node("ReduceMean", [g.node("Mul", [d, d], op)], op, axes=[-1], keepdims=1)
        y = g.node("Div", [d, g.node("Sqrt", [g.node("Add", [var, g.scalar(eps)], op)], op)],
                   op)
        y = g.node("Mul", [y, g_name], op) if g_name else y
        return g.node("Add", [y, b_name], op) if b_name else y
    return g.grouped(_x(g, op), op, c, normalize)


def _emit_embedding(g, op):
    """Each of a row's k values picks a row of E (n x dim): the index truncated and clamped
    to [0, n) (NaN: row 0), as the engine; out = the k rows side by side."""
    n, dim = int(op["iparam"][0]), int(op["iparam"][1])
    k = g.width(op["inputs"][0])
    table = g.weights(op, op["trainable"], op["w_off"], n * dim, (n, dim))
    x = _x(g, op)
    at_least_1 = g.node("GreaterOrEqual", [x, g.scalar(1.0)], op)
    idx = g.node("Where", [at_least_1, x, g.scalar(0.0)], op)  # NaN compares false: 0
    idx = g.node("Min", [idx, g.scalar(n - 1)], op)
    idx = g.node("Cast", [idx], op, to=g.onnx.TensorProto.INT64)  # truncates
    rows = g.node("Gather", [table, idx], op, axis=0)
    return g.node("Reshape", [rows, g.shape([k * dim])], op)


EMITTERS = {
    "dense": _emit_dense,
    "activation": _emit_activation,
    "dropout": _emit_identity,
    "add": _variadic("Sum"),
    "subtract": _fold("Sub"),
    "multiply": _fold("Mul"),
    "average": _variadic("Mean"),
    "maximum": _variadic("Max"),
    "minimum": _variadic("Min"),
    "concatenate": _emit_concatenate,
    "gaussian_noise": _emit_identity,     # noise while training only
    "gaussian_dropout": _emit_identity,
    "prelu": _emit_prelu,
    "normalization": _emit_normalization,
    "batch_norm": _emit_batch_norm,
    "layer_norm": _emit_layer_norm,
    "embedding": _emit_embedding,
    "activity_regularization": _emit_identity,  # a penalty on the loss, while training
}
