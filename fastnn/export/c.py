"""C source out: a model's forward pass as self-contained C99.

``model.export_c("housing.c", name="housing")`` writes housing.c and housing.h: the
weights as ``static const float`` arrays, and the ops of the very plan the engine runs
for predict (``model._plan(..., "predict")``: activations already fused into their dense
op, dead ops pruned) written as plain loops, one emitter per op kind in EMITTERS. A new
op kind is one more emitter; a kind without one cannot be exported (ValueError).

The generated code allocates nothing and writes no global: rows go through in blocks of
<NAME>_BLOCK_ROWS (a macro; define it when compiling to change it) held in arrays on the
stack, whose tensors share a few buffers by liveness. Ops that only act while training
(dropout, the noise layers, activity regularization) are the identity there. Only libm is
needed. Every name the file defines starts with the model's name. Floats are written with
the shortest decimal that rounds back to the same float32; each kernel repeats the
formula of its op in csrc/ (same float operations, same order where it matters), so that
the C output matches predict to float32 rounding.
"""
from __future__ import annotations

import os
import re
import textwrap
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from fastnn._typing import PathLike

if TYPE_CHECKING:
    from fastnn.models.model import Model

# The stack the work buffers may take (floats): the block of rows shrinks to fit, down
# to one row at a time for wide models.
STACK_FLOATS = 16384
MAX_BLOCK_ROWS = 64
_INFER_ROWS = 1024  # the plan predict uses (its max_batch only picks dense kernels)

_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto "
    "if inline int long register restrict return short signed sizeof static struct switch "
    "typedef union unsigned void volatile while _Bool _Complex _Imaginary _Alignas _Alignof "
    "_Atomic _Generic _Noreturn _Static_assert _Thread_local".split())


def check_name(name: str) -> str:
    """Raises ValueError unless name is a valid C identifier (not a keyword)."""
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
            and name not in _C_KEYWORDS):
        raise ValueError("name must be a valid C identifier (letters, digits and underscores, "
                         f"not starting with a digit, not a C keyword). Received: name={name!r}")
    return name


def default_name(filepath: PathLike) -> str:
    """The C name for a file: its stem, with what C does not allow made an underscore."""
    stem = os.path.splitext(os.path.basename(os.fspath(filepath)))[0]
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "model"
    if name[0].isdigit() or name in _C_KEYWORDS:
        name = "model_" + name
    return name


def export_c(model: Model, filepath: PathLike, name: Optional[str] = None) -> tuple[str, str]:
    """Writes `filepath` (ending in .c) and the header beside it (.h) holding `model`'s
    forward pass in C99; `name` (default: the file's stem) prefixes every public symbol.
    Returns the paths written (source, header)."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".c") or not os.path.basename(filepath)[:-2]:
        raise ValueError(f"filepath must name a .c file. Received: filepath={filepath!r}")
    name = default_name(filepath) if name is None else check_name(name)
    model._require_built("export_c()")
    header_path = filepath[:-2] + ".h"
    source, header = generate(model, name, os.path.basename(header_path))
    for path, text in ((header_path, header), (filepath, source)):
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    return filepath, header_path


def generate(model: Model, name: str, header_file: str) -> tuple[str, str]:
    """(source, header) of `model` exported under `name`; the source includes
    `header_file`."""
    plan = model._plan(_INFER_ROWS, "predict")
    store = model._weights_store()
    writer = _Writer(name, plan.spec, store)
    for op in plan.spec["ops"]:
        emit = EMITTERS.get(op["kind"])
        if emit is None:
            raise ValueError(
                f"Cannot export layer '{op.get('layer', '?')}' to C: fastnn has no C emitter "
                f"for its op kind '{op['kind']}' (exportable kinds: {sorted(EMITTERS)})")
        writer.begin(op)
        emit(writer, op)
    return writer.source(model, header_file), writer.header(model, header_file)


# ---- the writer: weights, helpers, tensors and buffers ---------------------------------------


def _float(v):
    """A float32 as a C literal that reads back to the same bits."""
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return str(np.float32(v)) + "f"


def _double(v):
    """A float64 as a C literal that reads back to the same bits."""
    if not np.isfinite(v):
        return _float(v)
    return repr(float(v))


def _literals(values, ctype):
    """C literals of many values at once (float32 or float64)."""
    arr = np.asarray(values, np.float32 if ctype == "float" else np.float64).ravel()
    if ctype == "float":
        text = [str(v) + "f" for v in arr]  # NumPy's shortest repr that reads back the same
    else:
        text = [repr(v) for v in arr.tolist()]
    for i in np.flatnonzero(~np.isfinite(arr)):
        text[i] = _float(arr[i])
    return text


def _shape(tensor):
    """A symbolic tensor's feature shape, as a C row holds it (flattened in C order)."""
    dims = tuple(tensor.shape[1:])
    return f"({dims[0]},)" if len(dims) == 1 else f"{dims}, flattened"


def _block_comment(*paragraphs):
    """A C block comment of the paragraphs, wrapped at 90 columns, as a list of lines."""
    lines = []
    for k, text in enumerate(paragraphs):
        lines += ([" *"] if k else []) + textwrap.wrap(
            text, 90, initial_indent=" * ", subsequent_indent=" * ", break_on_hyphens=False)
    lines[0] = "/*" + lines[0][2:]
    lines[-1] += " */"
    return lines


def _comment(text):
    """Text safe inside a C comment: ASCII, no comment delimiters or trigraphs."""
    text = str(text).encode("ascii", "backslashreplace").decode("ascii")
    for bad, good in (("*/", "* /"), ("/*", "/ *"), ("??", "? ?"), ("@", "(at)")):
        text = text.replace(bad, good)
    return text


class _Writer:
    """Collects what the emitters write. Tensors are named by placeholders (@T<id>@) until
    every op is in: then each tensor gets its storage (a model input's rows, or one of the
    block buffers, shared by tensors whose lifetimes do not overlap)."""

    def __init__(self, name, spec, store):
        self.name, self.upper, self.spec = name, name.upper(), spec
        self.buffers = {True: store.params, False: store.state}
        self.weight_names = {}  # (trainable, offset) -> "layer/weight"
        for layer, attr, _ in store.views:
            self.weight_names[store.where[(id(layer), attr)]] = f"{layer.name}/{attr}"
        self.arrays = {}        # (trainable, offset, size) -> C name
        # every name the file defines starts with `name`_ (arrays: `name`_w_), so that
        # several exported models can share a translation unit (a unity build)
        self.names = set()      # of the arrays
        self.array_defs = []
        self.helpers = {}       # C name -> definition, in first-use order
        self.alias = {}         # tensor -> the tensor whose storage it shares
        self.blocks = []        # per op: (op, C lines)
        self.needs_math = False

    # -- for emitters -------------------------------------------------------------------
    def begin(self, op):
        self.blocks.append((op, []))

    def line(self, text):
        """Adds a C statement to the current op."""
        self.blocks[-1][1].append(text)

    def width(self, t):
        return self.spec["tensors"][t][0]

    def t(self, t):
        """The C expression of tensor t's rows (packed, `width` floats a row)."""
        return f"@T{t}@"

    def n(self, t):
        """The C expression of the number of floats in tensor t's rows of this block."""
        return f"rows * {self.width(t)}"

    def rows(self, k=1):
        """The C expression of k times this block's rows."""
        return "rows" if k == 1 else f"rows * {k}"

    def same(self, op):
        """The op's output is its input (the identity at inference): no code, no copy."""
        self.alias[op["out"]] = op["inputs"][0]

    def helper(self, name, code, math=False):
        """Uses the static C function `name` defined by `code`; returns name."""
        self.helpers.setdefault(name, code)
        self.needs_math |= math
        return name

    def weights(self, trainable, offset, size, what=""):
        """The C array holding `size` floats of the params (trainable) or state buffer
        from `offset` (written once however many ops read it)."""
        key = (bool(trainable), int(offset), int(size))
        if key not in self.arrays:
            label = self.weight_names.get(key[:2], f"weights at {offset}")
            values = self.buffers[key[0]][key[1]:key[1] + key[2]]
            if values.size != size:
                raise ValueError(f"{label}: the plan reads {size} floats at offset {offset}, "
                                 "beyond the model's weights")
            self.arrays[key] = self.constants(label, values, what)
        return self.arrays[key]

    def constants(self, label, values, what="", ctype="float"):
        """A new static const array of `values` (float32, or float64 for ctype "double"),
        named after `label`; returns its C name."""
        base = f"{self.name}_w_" + re.sub(r"[^A-Za-z0-9_]", "_", label)[:40]
        c_name, k = base, 1
        while c_name in self.names:
            c_name, k = f"{base}_{k}", k + 1
        self.names.add(c_name)
        text = _literals(values, ctype)
        self.needs_math |= not all(np.isfinite(np.asarray(values, np.float64)))
        rows = [", ".join(text[i:i + 8]) for i in range(0, len(text), 8)]
        self.array_defs.append(f"/* {_comment(label)}{' ' + what if what else ''} */\n"
                               f"static const {ctype} {c_name}[{len(text)}] = {{\n    "
                               + ",\n    ".join(rows) + "\n};\n")
        return c_name

    def activation(self, act, t, op):
        """Applies activation `act` in place to tensor t's rows."""
        entry = ACTIVATIONS.get(act)
        if entry is None:
            raise ValueError(
                f"Cannot export layer '{op.get('layer', '?')}' to C: no C code for activation "
                f"'{act}' (exportable activations: {sorted(ACTIVATIONS)})")
        entry(self, t, op)

    # -- assembly -------------------------------------------------------------------------
    def _root(self, t):
        while t in self.alias:
            t = self.alias[t]
        return t

    def _storage(self):
        """Model inputs keep the caller's rows (x<i>); every other tensor gets a buffer
        b<k>, reused once its last reader has run (an op's output never shares with its
        inputs). Returns ({root tensor: C name}, [buffer widths])."""
        spec, end = self.spec, len(self.blocks)
        where = {t: f"x{i}" for i, t in enumerate(spec["inputs"])}
        born, last = {}, {}
        for k, (op, _) in enumerate(self.blocks):
            for t in op["inputs"]:
                last[self._root(t)] = k
            if op["out"] not in self.alias:
                born[op["out"]] = k
        for t in spec["outputs"]:
            last[self._root(t)] = end
        free_at, widths = [], []   # per buffer: the op index after which it is free
        for t, k in sorted(born.items(), key=lambda item: item[1]):
            for b in range(len(widths)):
                if free_at[b] < k:
                    break
            else:
                b = len(widths)
                free_at.append(-1)
                widths.append(0)
            free_at[b] = last.get(t, k)
            widths[b] = max(widths[b], self.width(t))
            where[t] = f"b{b}"
        return where, widths

    def _forward(self):
        spec, N = self.spec, self.upper
        where, widths = self._storage()
        body = []
        for op, lines in self.blocks:
            widths_in = " + ".join(str(self.width(t)) for t in op["inputs"])
            desc = (f"{op.get('layer', op['kind'])}: {op['kind']} {widths_in} -> "
                    f"{self.width(op['out'])}")
            if op_act(op) != "linear":
                desc += f", {op_act(op)}"
            if op["out"] in self.alias and not lines:
                desc += " (the identity at inference)"
            body.append(f"/* {_comment(desc)} */")
            body.extend(lines)
        for j, t in enumerate(spec["outputs"]):
            self.helper("copy", _COPY)
            body.append(f"copy(@T{t}@, y[{j}] + start * {self.width(t)}, "
                        f"{self.n(t)});")
        used = set()

        def storage(match):
            used.add(where[self._root(int(match.group(1)))])
            return where[self._root(int(match.group(1)))]
        code = re.sub(r"@T(\d+)@", storage, "\n".join(body))
        inputs = [f"const float *x{i} = x[{i}] + start * {self.width(t)};"
                  for i, t in enumerate(spec["inputs"]) if f"x{i}" in used]
        rows_per_block = max(1, min(MAX_BLOCK_ROWS, STACK_FLOATS // max(1, sum(widths))))
        out = [f"#ifndef {N}_BLOCK_ROWS",
               f"#define {N}_BLOCK_ROWS {rows_per_block} /* rows per pass: the stack holds "
               f"{N}_BLOCK_ROWS * {sum(widths)} floats */",
               "#endif", "",
               f"int {self.name}_predict_multi(const float *const *x, int n, float *const *y)",
               "{"]
        out += [f"    float b{b}[{N}_BLOCK_ROWS * {w}];" for b, w in enumerate(widths)]
        out += ["    size_t start = 0, total;", "    int i;",
                "    if (x == 0 || y == 0) return -1;",
                f"    for (i = 0; i < {N}_INPUT_COUNT; i++)",
                "        if (x[i] == 0) return -1;",
                f"    for (i = 0; i < {N}_OUTPUT_COUNT; i++)",
                "        if (y[i] == 0) return -1;",
                "    if (n < 0) return -2;", "    total = (size_t)n;",
                "    while (start < total) {",
                f"        const size_t rows = total - start < {N}_BLOCK_ROWS ? total - start : "
                f"{N}_BLOCK_ROWS;"]
        out += ["        " + s for s in inputs + code.split("\n")]
        out += ["        start += rows;", "    }", "    return 0;", "}"]
        if len(spec["inputs"]) == 1 and len(spec["outputs"]) == 1:
            out += ["", f"int {self.name}_predict(const float *x, int n, float *y)", "{",
                    f"    return {self.name}_predict_multi(&x, n, &y);", "}"]
        return "\n".join(out) + "\n"

    def source(self, model, header_file):
        import fastnn
        forward = self._forward()  # first: it may still add helpers
        parts = _block_comment(
            f"{header_file[:-2]}.c - model '{_comment(model.name)}' exported by fastnn "
            f"{fastnn.__version__}: its forward pass (inference) in C99, see {header_file}. "
            "Generated: export the model again rather than edit.")
        parts.append("#include <stddef.h>")
        if self.needs_math:
            parts.append("#include <math.h>")
        parts += [f'#include "{header_file}"', "", "/* ---- weights ---- */"]
        parts += self.array_defs
        parts.append("/* ---- kernels: rows are packed, `width` floats each ---- */")
        parts += [code.strip("\n") + "\n" for code in self.helpers.values()]
        parts += ["/* ---- the forward pass ---- */", forward]
        # the kernels' names, prefixed where they are defined and called
        calls = re.compile(r"\b(" + "|".join(map(re.escape, self.helpers)) + r")\(")
        return calls.sub(rf"{self.name}_\1(", "\n".join(parts))

    def header(self, model, header_file):
        spec, N, name = self.spec, self.upper, self.name
        single = len(spec["inputs"]) == 1 and len(spec["outputs"]) == 1
        guard = re.sub(r"[^A-Za-z0-9_]", "_", header_file).upper()
        import fastnn
        lines = _block_comment(
            f"{header_file} - model '{_comment(model.name)}' exported by fastnn "
            f"{fastnn.__version__} as C99: its forward pass (inference), with the weights "
            f"compiled into {header_file[:-2]}.c. Build that file with any C99 compiler and "
            "link with libm (-lm).",
            f"Rows are packed float32: input i holds n rows of {N}_INPUT<i>_WIDTH floats and "
            f"output j receives n rows of {N}_OUTPUT<j>_WIDTH floats (features of several "
            "dimensions flattened in C order, as NumPy's reshape(n, -1)). The functions "
            "return 0, -1 when a pointer is NULL, or -2 when n < 0 (then nothing is written). "
            "They allocate nothing and write no global: threads may call them at once. Work "
            f"buffers sit on the stack, {N}_BLOCK_ROWS rows at a time (compile the .c with "
            f"-D{N}_BLOCK_ROWS=1 for the smallest stack). Dropout and the noise layers are the "
            "identity, as in predict.")
        lines += [
            f"#ifndef {guard}", f"#define {guard}", "",
            "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
            f"#define {N}_INPUT_COUNT {len(spec['inputs'])}",
            f"#define {N}_OUTPUT_COUNT {len(spec['outputs'])}"]
        for i, (t, sym) in enumerate(zip(spec["inputs"], model.inputs)):
            lines.append(f"#define {N}_INPUT{i}_WIDTH {self.width(t)} /* input "
                         f"'{_comment(sym.name)}' {_shape(sym)} */")
        for j, (t, sym) in enumerate(zip(spec["outputs"], model.outputs)):
            lines.append(f"#define {N}_OUTPUT{j}_WIDTH {self.width(t)} /* output "
                         f"'{_comment(sym.name)}' {_shape(sym)} */")
        if single:
            lines += [
                f"#define {N}_N_INPUTS {self.width(spec['inputs'][0])} /* floats per input "
                "row */",
                f"#define {N}_N_OUTPUTS {self.width(spec['outputs'][0])} /* floats per output "
                "row */", "",
                f"/* y[n * {N}_N_OUTPUTS] = the model's outputs for x[n * {N}_N_INPUTS] */",
                f"int {name}_predict(const float *x, int n, float *y);"]
        lines += [
            "",
            f"/* x[i]: input i's rows (i < {N}_INPUT_COUNT), y[j]: output j's "
            f"(j < {N}_OUTPUT_COUNT) */",
            f"int {name}_predict_multi(const float *const *x, int n, float *const *y);", "",
            "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {guard} */", ""]
        return "\n".join(lines)


# ---- kernels (static C functions, written once when used) ------------------------------------

_COPY = """
static void copy(const float *src, float *dst, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) dst[i] = src[i];
}
"""

_DENSE = """
/* y = x . W + b, W (n_in x n_out) row-major; b may be 0 (no bias) */
static void dense(const float *x, const float *w, const float *b, float *y, size_t rows,
        size_t n_in, size_t n_out)
{
    size_t r, i, j;
    for (r = 0; r < rows; r++) {
        const float *xr = x + r * n_in;
        float *yr = y + r * n_out;
        for (j = 0; j < n_out; j++) yr[j] = b ? b[j] : 0.0f;
        for (i = 0; i < n_in; i++) {
            const float xi = xr[i];
            const float *wi = w + i * n_out;
            for (j = 0; j < n_out; j++) yr[j] += xi * wi[j];
        }
    }
}
"""


def _elementwise(name, params, body, math=True):
    """The C definition of an in-place elementwise function `name`: `body` maps the
    float `v` to the new value, reading the float arguments `params`."""
    args = "".join(f", float {p}" for p in params)
    return (f"static void {name}(float *y, size_t n{args})\n{{\n    size_t i;\n"
            f"    for (i = 0; i < n; i++) {{\n        const float v = y[i];\n"
            f"        y[i] = {body};\n    }}\n}}\n"), math


def _binary(name, body):
    """The C definition of y[i] = body(y[i], a[i]) over n floats."""
    return (f"static void {name}(float *y, const float *a, size_t n)\n{{\n    size_t i;\n"
            f"    for (i = 0; i < n; i++) y[i] = {body};\n}}\n")


# ---- activations: the formulas of csrc/activations.c -----------------------------------------
# Each entry: function(writer, tensor, op) applying the activation in place. Parameters come
# as the engine reads them: an activation op's fparam (zeros past those given), Keras'
# defaults where a dense op applies a fused activation (the engine passes no parameters).

_ACT_DEFAULTS = {"leaky_relu": (0.2,), "elu": (1.0,), "relu_general": (0.0, np.inf, 0.0)}


def op_act(op: dict[str, Any]) -> str:
    return op.get("act", "linear")


def _act_params(op, count):
    if op["kind"] == "activation":
        given = [float(v) for v in op.get("fparam", ())]
        return (given + [0.0] * count)[:count]
    return list(_ACT_DEFAULTS.get(op_act(op), ()))[:count]


def _simple(name, body, params=(), math=True):
    """Activation `name` applied elementwise: v -> body, reading the float parameters
    `params` (p0, p1, ...)."""
    fn = f"act_{name}"

    def apply(w, t, op):
        w.helper(fn, *_elementwise(fn, params, body, math))
        args = "".join(f", {_float(v)}" for v in _act_params(op, len(params)))
        w.needs_math |= "INF" in args or "NAN" in args
        w.line(f"{fn}({w.t(t)}, {w.n(t)}{args});")
    return apply


def _per_row(name, code):
    """Activation `name` over groups of m values (a row; an activation op's iparam[0],
    when set, splits the row into groups of that many, as the engine)."""
    fn = f"act_{name}"

    def apply(w, t, op):
        w.helper(fn, code, math=True)
        width = w.width(t)
        group = int((op.get("iparam") or [0])[0]) if op["kind"] == "activation" else 0
        m = group if group > 0 else width
        w.line(f"{fn}({w.t(t)}, {w.rows(width // m)}, {m});")
    return apply


_SOFTMAX = """
/* y_j = e^(z_j - max z) / sum_k e^(z_k - max z), per group of m */
static void act_softmax(float *y, size_t groups, size_t m)
{
    size_t i, j;
    for (i = 0; i < groups; i++) {
        float *r = y + i * m, top = r[0], sum = 0.0f, inv;
        for (j = 1; j < m; j++) top = r[j] > top ? r[j] : top;
        for (j = 0; j < m; j++) sum += (r[j] = expf(r[j] - top));
        inv = 1.0f / sum;
        for (j = 0; j < m; j++) r[j] *= inv;
    }
}
"""

_LOG_SOFTMAX = """
/* y_j = z_j - max z - log sum_k e^(z_k - max z), per group of m */
static void act_log_softmax(float *y, size_t groups, size_t m)
{
    size_t i, j;
    for (i = 0; i < groups; i++) {
        float *r = y + i * m, top = r[0], sum = 0.0f, shift;
        for (j = 1; j < m; j++) top = r[j] > top ? r[j] : top;
        for (j = 0; j < m; j++) sum += expf(r[j] - top);
        shift = top + logf(sum);
        for (j = 0; j < m; j++) r[j] -= shift;
    }
}
"""

_RELU_GENERAL = """
/* Keras' relu(x, negative_slope=s, max_value=mx, threshold=t); mx = INFINITY: no maximum */
static void act_relu_general(float *y, size_t n, float s, float mx, float t)
{
    size_t i;
    for (i = 0; i < n; i++) {
        const float v = y[i];
        float a = t != 0.0f ? (v > t ? v : 0.0f) : (v > 0.0f ? v : 0.0f);
        if (mx < INFINITY) a = fminf(fmaxf(a, 0.0f), mx);
        y[i] = s != 0.0f ? a - s * fmaxf(t - v, 0.0f) : a;
    }
}
"""


def _relu_general(w, t, op):
    w.helper("act_relu_general", _RELU_GENERAL, math=True)
    s, mx, th = (_float(v) for v in _act_params(op, 3))
    w.line(f"act_relu_general({w.t(t)}, {w.n(t)}, {s}, {mx}, {th});")


_SIGMOID_OF = "(1.0f / (1.0f + expf(-({}))))"  # sigmoidf(x)
_SOFTPLUS_OF = "(fmaxf({0}, 0.0f) + log1pf(expf(-fabsf({0}))))"
_GELU_TANH_U = "(0.79788456080286536f * (v + 0.044715f * v * v * v))"

ACTIVATIONS = {
    "linear": lambda w, t, op: None,
    "relu": _simple("relu", "v < 0.0f ? 0.0f : v", math=False),  # NaN stays NaN
    "sigmoid": _simple("sigmoid", "1.0f / (1.0f + expf(-v))"),
    "tanh": _simple("tanh", "tanhf(v)"),
    "softmax": _per_row("softmax", _SOFTMAX),
    "relu6": _simple("relu6", "v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v)", math=False),
    "leaky_relu": _simple("leaky_relu", "v > 0.0f ? v : p0 * v", ("p0",), math=False),
    "elu": _simple("elu", "v > 0.0f ? v : p0 * expm1f(v)", ("p0",)),
    "selu": _simple("selu", "1.0507009873554805f * (v > 0.0f ? v : 1.6732632423543772f * "
                            "expm1f(v))"),
    # x Phi(x) = 0.5 x erfc(-x / sqrt 2)
    "gelu": _simple("gelu", "0.5f * v * erfcf(-0.70710678118654752f * v)"),
    "gelu_tanh": _simple("gelu_tanh", "v * " + _SIGMOID_OF.format("2.0f * " + _GELU_TANH_U)),
    "silu": _simple("silu", "v * " + _SIGMOID_OF.format("v")),
    "softplus": _simple("softplus", _SOFTPLUS_OF.format("v")),
    "softsign": _simple("softsign", "v / (1.0f + fabsf(v))"),
    "hard_sigmoid": _simple("hard_sigmoid", "(v + 3.0f < 0.0f ? 0.0f : (v + 3.0f > 6.0f ? "
                                            "6.0f : v + 3.0f)) * (1.0f / 6.0f)", math=False),
    "exponential": _simple("exponential", "expf(v)"),
    "mish": _simple("mish", "v * tanhf(" + _SOFTPLUS_OF.format("v") + ")"),
    "log_softmax": _per_row("log_softmax", _LOG_SOFTMAX),
    "relu_general": _relu_general,
}


# ---- op emitters: kind -> function(writer, op dict of plan.spec["ops"]) ------------------------


def _emit_dense(w, op):
    x, y = op["inputs"][0], op["out"]
    if any(op.get("iparam", ())):
        raise ValueError(f"Cannot export layer '{op.get('layer', '?')}' to C: its dense op "
                         f"has iparam={list(op['iparam'])}, a layout this exporter does not know")
    n_in, n_out = w.width(x), w.width(y)
    kernel = w.weights(op["trainable"], op["w_off"], n_in * n_out, f"({n_in} x {n_out})")
    bias = w.weights(op["trainable"], op["b_off"], n_out) if op.get("b_off", -1) >= 0 else "0"
    w.helper("dense", _DENSE)
    w.line(f"dense({w.t(x)}, {kernel}, {bias}, {w.t(y)}, rows, {n_in}, {n_out});")
    w.activation(op_act(op), y, op)


def _emit_activation(w, op):
    if op_act(op) == "linear":
        return w.same(op)
    w.helper("copy", _COPY)
    w.line(f"copy({w.t(op['inputs'][0])}, {w.t(op['out'])}, {w.n(op['out'])});")
    w.activation(op_act(op), op["out"], op)


def _emit_identity(w, op):
    w.same(op)


def _fold(fn, body):
    """A merge that starts from the first input and folds each next one in with `body`
    (y: the value so far, a: the next input's), in the engine's order."""
    def emit(w, op):
        x0, *rest = op["inputs"]
        y = op["out"]
        w.helper("copy", _COPY)
        w.helper(fn, _binary(fn, body))
        w.line(f"copy({w.t(x0)}, {w.t(y)}, {w.n(y)});")
        for x in rest:
            w.line(f"{fn}({w.t(y)}, {w.t(x)}, {w.n(y)});")
    return emit


_emit_add = _fold("add_into", "y[i] + a[i]")


def _emit_average(w, op):
    _emit_add(w, op)  # the sum, then times 1/n as a float (as the engine)
    inv = np.float32(1.0) / np.float32(len(op["inputs"]))
    w.helper("scale", *_elementwise("scale", ("s",), "v * s", math=False))
    w.line(f"scale({w.t(op['out'])}, {w.n(op['out'])}, {_float(inv)});")


def _emit_concatenate(w, op):
    y = op["out"]
    w.helper("put_columns", """
/* columns [at, at + m) of the rows of y (ld floats each) = x's rows of m */
static void put_columns(const float *x, size_t m, float *y, size_t ld, size_t at, size_t rows)
{
    size_t r, j;
    for (r = 0; r < rows; r++)
        for (j = 0; j < m; j++) y[r * ld + at + j] = x[r * m + j];
}
""")
    at = 0
    for x in op["inputs"]:
        w.line(f"put_columns({w.t(x)}, {w.width(x)}, {w.t(y)}, {w.width(y)}, {at}, rows);")
        at += w.width(x)


def _emit_prelu(w, op):
    x, y = op["inputs"][0], op["out"]
    inner, count = (int(v) for v in op["iparam"][:2])
    alpha = w.weights(op["trainable"], op["w_off"], count, f"({count})")
    w.helper("prelu", """
/* y = x where x > 0, else alpha[(j / inner) % count] x at column j of rows of m */
static void prelu(const float *x, const float *alpha, float *y, size_t rows, size_t m,
        size_t inner, size_t count)
{
    size_t r, j;
    for (r = 0; r < rows; r++)
        for (j = 0; j < m; j++) {
            const float v = x[r * m + j];
            y[r * m + j] = v > 0.0f ? v : alpha[(j / inner) % count] * v;
        }
}
""")
    w.line(f"prelu({w.t(x)}, {alpha}, {w.t(y)}, rows, {w.width(y)}, {inner}, {count});")


def _channels(w, op):
    """(channels C, groups per row) of the normalization ops: rows are groups of C."""
    c = int(op["iparam"][0])
    return c, w.width(op["out"]) // c


def _emit_normalization(w, op):
    """Keras' Normalization: y = (x - mean) / s, or x * s + mean when inverted, with
    s = max(sqrt(max(variance, 0)), 1e-7) per channel (from adapt, in the state)."""
    c, groups = _channels(w, op)
    state = w.buffers[False]
    mean = w.weights(False, op["state_off"][0], c, f"({c})")
    var = state[op["state_off"][1]:op["state_off"][1] + c]
    s = np.sqrt(np.where(var > 0, var, np.float32(0)))  # float32, rounded as sqrtf
    s = np.where(s > np.float32(1e-7), s, np.float32(1e-7)).astype(np.float32)
    scale = w.constants(f"{op.get('layer', 'normalization')}/scale", s,
                        "(max(sqrt(variance), 1e-7))")
    invert = bool(op["iparam"][1])
    fn = "denormalize" if invert else "normalize"
    w.helper(fn, f"""
/* y = {"x * s + mean" if invert else "(x - mean) / s"} over groups of c channels */
static void {fn}(const float *x, const float *mean, const float *s, float *y, size_t groups,
        size_t c)
{{
    size_t g, j;
    for (g = 0; g < groups; g++)
        for (j = 0; j < c; j++) {{
            const size_t at = g * c + j;
            y[at] = {"x[at] * s[j] + mean[j]" if invert else "(x[at] - mean[j]) / s[j]"};
        }}
}}
""")
    w.line(f"{fn}({w.t(op['inputs'][0])}, {mean}, {scale}, {w.t(op['out'])}, "
           f"{w.rows(groups)}, {c});")


def _affine(w, op, c):
    """The C arrays of gamma and beta (or 0) of batch_norm / layer_norm: gamma at w_off
    when iparam[1], beta at b_off (w_off without gamma) when iparam[2]."""
    has_gamma, has_beta = bool(op["iparam"][1]), bool(op["iparam"][2])
    gamma = w.weights(op["trainable"], op["w_off"], c, f"({c})") if has_gamma else "0"
    beta_off = op["b_off"] if has_gamma else op["w_off"]
    beta = w.weights(op["trainable"], beta_off, c, f"({c})") if has_beta else "0"
    return gamma, beta


_SCALE_SHIFT = """
/* y = (float)(((double)x - mean) * inv [* gamma] [+ beta]) over groups of c channels (in
 * double, as the engine); gamma and beta may be 0 */
static void scale_shift(const float *x, const float *mean, const double *inv,
        const float *gamma, const float *beta, float *y, size_t groups,
        size_t c)
{
    size_t g, j;
    for (g = 0; g < groups; g++)
        for (j = 0; j < c; j++) {
            const size_t at = g * c + j;
            double v = ((double)x[at] - (double)mean[j]) * inv[j];
            if (gamma) v *= (double)gamma[j];
            if (beta) v += (double)beta[j];
            y[at] = (float)v;
        }
}
"""


def _emit_batch_norm(w, op):
    """BatchNormalization at inference: the moving statistics, inv = 1 / sqrt(var + eps)
    (computed here in double, as the engine does each call)."""
    c, groups = _channels(w, op)
    state, label = w.buffers[False], op.get("layer", "batch_norm")
    var = state[op["state_off"][1]:op["state_off"][1] + c].astype(np.float64)
    eps = float(np.float32(op["fparam"][0]))
    mean_c = w.weights(False, op["state_off"][0], c, f"({c})")
    inv_c = w.constants(f"{label}/inv_std", 1.0 / np.sqrt(var + eps),
                        f"(1 / sqrt(moving_variance + {eps!r}))", ctype="double")
    gamma, beta = _affine(w, op, c)
    w.helper("scale_shift", _SCALE_SHIFT)
    w.line(f"scale_shift({w.t(op['inputs'][0])}, {mean_c}, {inv_c}, {gamma}, {beta}, "
           f"{w.t(op['out'])}, {w.rows(groups)}, {c});")


def _emit_layer_norm(w, op):
    c, groups = _channels(w, op)
    gamma, beta = _affine(w, op, c)
    w.helper("layer_norm", """
/* per group of c values: y = (x - m) / sqrt(v + eps) [* gamma] [+ beta], m and v the
 * group's mean and (biased) variance, in double as the engine */
static void layer_norm(const float *x, const float *gamma, const float *beta, float *y,
        size_t groups, size_t c, double eps)
{
    size_t g, j;
    for (g = 0; g < groups; g++) {
        const float *xg = x + g * c;
        float *yg = y + g * c;
        double m = 0.0, s = 0.0, inv;
        for (j = 0; j < c; j++) m += (double)xg[j];
        m /= (double)c;
        for (j = 0; j < c; j++) s += ((double)xg[j] - m) * ((double)xg[j] - m);
        inv = 1.0 / sqrt(s / (double)c + eps);
        for (j = 0; j < c; j++) {
            double v = ((double)xg[j] - m) * inv;
            if (gamma) v *= (double)gamma[j];
            if (beta) v += (double)beta[j];
            yg[j] = (float)v;
        }
    }
}
""", math=True)
    eps = _double(float(np.float32(op["fparam"][0])))
    w.line(f"layer_norm({w.t(op['inputs'][0])}, {gamma}, {beta}, {w.t(op['out'])}, "
           f"{w.rows(groups)}, {c}, {eps});")


def _emit_embedding(w, op):
    x, y = op["inputs"][0], op["out"]
    n, dim = int(op["iparam"][0]), int(op["iparam"][1])
    table = w.weights(op["trainable"], op["w_off"], n * dim, f"({n} x {dim})")
    w.helper("embedding", """
/* each of a row's k values picks a row of E (n x dim): the index truncated, clamped to
 * [0, n) (NaN: row 0), as the engine */
static void embedding(const float *x, const float *e, float *y, size_t rows, size_t k,
        size_t n, float n_float, size_t dim)
{
    size_t r, i, j;
    for (r = 0; r < rows; r++)
        for (i = 0; i < k; i++) {
            const float v = x[r * k + i];
            const size_t row = v >= 1.0f ? (v < n_float ? (size_t)v : n - 1) : 0;
            const float *src = e + row * dim;
            float *dst = y + (r * k + i) * dim;
            for (j = 0; j < dim; j++) dst[j] = src[j];
        }
}
""")
    w.line(f"embedding({w.t(x)}, {table}, {w.t(y)}, rows, {w.width(x)}, {n}, "
           f"{_float(np.float32(n))}, {dim});")


EMITTERS = {
    "dense": _emit_dense,
    "activation": _emit_activation,
    "dropout": _emit_identity,
    "add": _emit_add,
    "subtract": _fold("subtract_from", "y[i] - a[i]"),
    "multiply": _fold("multiply_into", "y[i] * a[i]"),
    "average": _emit_average,
    # the first extreme input wins ties, as the engine's strict comparison does
    "maximum": _fold("maximum_into", "a[i] > y[i] ? a[i] : y[i]"),
    "minimum": _fold("minimum_into", "a[i] < y[i] ? a[i] : y[i]"),
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
