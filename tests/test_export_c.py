"""C export (fastnn.export.c, Model.export_c, `python -m fastnn export`): each model is
exported, compiled with the system C compiler under -std=c99 -Wall -Wextra -Werror
-pedantic, linked with a small driver that reads rows on stdin and writes the outputs on
stdout, and its outputs are compared with model.predict (under every kernel set) and
with float64 NumPy references written here. Each program is compiled once per module."""
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, _engine, activations, utils
from fastnn.__main__ import main as cli
from fastnn.export import c as export_c_module
from fastnn.layers import (ELU, ActivityRegularization, Activation, Add, Average,
                           BatchNormalization, Concatenate, Dense, Dropout, Embedding, Flatten,
                           GaussianDropout, GaussianNoise, Identity, LayerNormalization,
                           LeakyReLU, Maximum, Minimum, Multiply, Normalization, PReLU, ReLU,
                           Reshape, Softmax, Subtract)
from fastnn.models import load_model

CC = shutil.which("cc") or shutil.which("gcc")
CXX = shutil.which("c++") or shutil.which("g++")
C_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
CXX_FLAGS = ["-std=c++11", "-Wall", "-Werror"]
TOL = dict(rtol=1e-5, atol=1e-5)

needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc or gcc) on PATH")

# A driver valid as C99 and as C++11. `prog N` reads N rows of every input (input after
# input, float32) on stdin and writes every output's rows on stdout; `prog codes` prints
# the return codes of calls with bad arguments, then whether y was left untouched.
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@name@.h"

static const int in_w[@N@_INPUT_COUNT] = {@in_w@};
static const int out_w[@N@_OUTPUT_COUNT] = {@out_w@};

static int codes(void)
{
    float *x[@N@_INPUT_COUNT], *y[@N@_OUTPUT_COUNT], *keep;
    const float *const *cx = (const float *const *)x;
    int i, j, k, untouched = 1;
    for (i = 0; i < @N@_INPUT_COUNT; i++) x[i] = (float *)calloc((size_t)in_w[i], sizeof(float));
    for (j = 0; j < @N@_OUTPUT_COUNT; j++) {
        y[j] = (float *)malloc((size_t)out_w[j] * sizeof(float));
        for (k = 0; k < out_w[j]; k++) y[j][k] = 7.0f;
    }
    printf("%d\n", @name@_predict_multi(0, 1, y));
    printf("%d\n", @name@_predict_multi(cx, 1, 0));
    printf("%d\n", @name@_predict_multi(cx, -1, y));
    keep = x[@N@_INPUT_COUNT - 1];
    x[@N@_INPUT_COUNT - 1] = 0;
    printf("%d\n", @name@_predict_multi(cx, 1, y));
    x[@N@_INPUT_COUNT - 1] = keep;
    keep = y[@N@_OUTPUT_COUNT - 1];
    y[@N@_OUTPUT_COUNT - 1] = 0;
    printf("%d\n", @name@_predict_multi(cx, 1, y));
    y[@N@_OUTPUT_COUNT - 1] = keep;
#ifdef @N@_N_INPUTS
    printf("%d\n", @name@_predict(0, 1, y[0]));
    printf("%d\n", @name@_predict(x[0], 1, 0));
    printf("%d\n", @name@_predict(x[0], -1, y[0]));
#endif
    for (j = 0; j < @N@_OUTPUT_COUNT; j++)
        for (k = 0; k < out_w[j]; k++) untouched &= y[j][k] == 7.0f;
    printf("%d\n", untouched);
    printf("%d\n", @name@_predict_multi(cx, 0, y)); /* no rows: fine */
    return 0;
}

int main(int argc, char **argv)
{
    float *x[@N@_INPUT_COUNT], *y[@N@_OUTPUT_COUNT];
    int i, j, n, rc;
    if (argc != 2) return 2;
    if (strcmp(argv[1], "codes") == 0) return codes();
    n = atoi(argv[1]);
    for (i = 0; i < @N@_INPUT_COUNT; i++) {
        x[i] = (float *)malloc(((size_t)n * in_w[i] + 1) * sizeof(float));
        if (fread(x[i], sizeof(float), (size_t)n * in_w[i], stdin) != (size_t)n * in_w[i])
            return 3;
    }
    for (j = 0; j < @N@_OUTPUT_COUNT; j++)
        y[j] = (float *)malloc(((size_t)n * out_w[j] + 1) * sizeof(float));
#ifdef @N@_N_INPUTS
    (void)in_w;
    rc = @name@_predict(x[0], n, y[0]);
#else
    rc = @name@_predict_multi((const float *const *)x, n, y);
#endif
    if (rc != 0) return 4;
    for (j = 0; j < @N@_OUTPUT_COUNT; j++)
        fwrite(y[j], sizeof(float), (size_t)n * out_w[j], stdout);
    return 0;
}
"""


class Program:
    """An exported model compiled with the driver."""

    def __init__(self, model, folder, name, flags=(), cxx=False, source=None):
        self.model, self.name = model, name
        folder.mkdir(parents=True, exist_ok=True)
        self.source, self.header = source or model.export_c(folder / f"{name}.c", name=name)
        self.in_w = [math.prod(t.shape[1:]) for t in model.inputs]
        self.out_w = [math.prod(t.shape[1:]) for t in model.outputs]
        driver = folder / f"driver_{name}.c"
        upper = name.upper()
        driver.write_text(
            DRIVER.replace("@name@", name).replace("@N@", upper)
            .replace("@in_w@", ", ".join(f"{upper}_INPUT{i}_WIDTH" for i in range(len(self.in_w))))
            .replace("@out_w@", ", ".join(f"{upper}_OUTPUT{j}_WIDTH"
                                          for j in range(len(self.out_w)))))
        self.exe = str(folder / f"prog_{name}{'_cxx' if cxx else ''}")
        if cxx:  # the model as C, the driver as C++: links only through extern "C"
            obj = str(folder / f"{name}.o")
            _compile([CC, *C_FLAGS, "-c", str(self.source), "-o", obj])
            _compile([CXX, *CXX_FLAGS, "-x", "c++", str(driver), "-x", "none", obj, "-o",
                      self.exe, "-lm"])
        else:
            _compile([CC, *C_FLAGS, *flags, str(driver), str(self.source), "-o", self.exe,
                      "-lm"])

    def run(self, xs):
        xs = xs if isinstance(xs, list) else [xs]
        n = xs[0].shape[0]
        data = b"".join(np.ascontiguousarray(x, np.float32).tobytes() for x in xs)
        done = subprocess.run([self.exe, str(n)], input=data, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        flat = np.frombuffer(done.stdout, dtype=np.float32)
        assert flat.size == n * sum(self.out_w)
        outs, at = [], 0
        for w in self.out_w:
            outs.append(flat[at:at + n * w].reshape(n, w))
            at += n * w
        return outs

    def codes(self):
        done = subprocess.run([self.exe, "codes"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return [int(v) for v in done.stdout.split()]


def _compile(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"


def _predict(model, xs):
    out = model.predict(xs if len(xs) > 1 else xs[0])
    return [o.reshape(o.shape[0], -1) for o in (out if isinstance(out, list) else [out])]


# ---- the models --------------------------------------------------------------------------------


def _article(housing):
    utils.set_random_seed(0)
    # names that C comments and identifiers must survive
    model = Sequential([Dense(10, input_shape=(13,), activation="relu", name="x0"),
                        Dense(10, activation="relu", name="b1 */ ??/"), Dense(1)],
                       name="housing /* \u00e9 @T0@")
    model.compile(loss="mse", optimizer="rmsprop")
    model.fit(housing.x_train, housing.y_train, epochs=3, verbose=0)
    return model


def _graph():
    """Two inputs, two outputs: a shared layer, a frozen one, a nested model, every merge,
    dropout, a softmax head."""
    utils.set_random_seed(1)
    a, b = Input(shape=(5,), name="a"), Input(shape=(3,), name="b")
    pa = Dense(6, activation="relu", name="pa")(a)
    pb = Dense(6, activation="sigmoid", name="pb")(b)
    shared = Dense(6, activation="tanh", name="shared")
    sa, sb = shared(pa), shared(pb)
    fz = Dense(6, name="frozen", trainable=False)(sa)
    s = Add(name="sum3")([sa, sb, fz])
    inner = Sequential([Dense(4, activation="relu", input_shape=(6,)), Dense(3)], name="inner")
    parts = [s, Subtract(name="diff")([pa, pb]), Multiply(name="prod")([pa, pb, sa]),
             Average(name="mean")([sa, sb, pa]), Maximum(name="top")([sa, sb, pa]),
             Minimum(name="low")([sa, sb]), inner(s)]
    y1 = Dense(4, activation="softmax", name="y1")(Concatenate(name="cat")(parts))
    y2 = Dense(2, name="y2")(Add(name="skip")([Dropout(0.5, name="drop")(sb), parts[4]]))
    y3 = Dropout(0.1, name="b_again")(b)  # an output that is an input's rows
    return Model([a, b], [y1, y2, y3], name="two_by_two")


def _graph_reference(model, xa, xb):
    """The graph above in float64 NumPy, from the maths."""
    def dense(name, x, act=lambda z: z):
        w = [v.astype(np.float64) for v in model.get_layer(name).get_weights()]
        return act(x @ w[0] + w[1])
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
    a, b = xa.astype(np.float64), xb.astype(np.float64)
    pa, pb = dense("pa", a, relu), dense("pb", b, lambda z: 1 / (1 + np.exp(-z)))
    sa, sb = dense("shared", pa, np.tanh), dense("shared", pb, np.tanh)
    s = sa + sb + dense("frozen", sa)
    inner = model.get_layer("inner")
    iw = [v.astype(np.float64) for v in inner.get_weights()]
    ns = relu(s @ iw[0] + iw[1]) @ iw[2] + iw[3]
    top = np.maximum(np.maximum(sa, sb), pa)
    cat = np.concatenate([s, pa - pb, pa * pb * sa, (sa + sb + pa) / 3, top,
                          np.minimum(sa, sb), ns], axis=1)
    z = dense("y1", cat)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return [e / e.sum(axis=1, keepdims=True), dense("y2", sb + top), b]


def _activations():
    """Every activation by name, fused into a Dense (when the engine fuses it) and as a
    standalone op."""
    utils.set_random_seed(2)
    x = Input(shape=(7,), name="x")
    h = Dense(8, name="h")(x)  # read by every Activation below: none fuses into it
    outs = []
    for act in ACT_NAMES:
        outs.append(Dense(8, activation=act, name=f"fused_{act}")(x))
        outs.append(Activation(act, name=f"layer_{act}")(h))
    return Model(x, Concatenate(name="all")(outs), name="activations")


def _erf(z):
    return np.vectorize(math.erf)(z)


def _softplus(z):
    return np.logaddexp(z, 0.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _row_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0)))


# float64 references of Keras 3's definitions (keras/src/activations/activations.py)
ACT_REF = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "relu6": lambda z: np.clip(z, 0.0, 6.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "elu": _elu,
    "selu": lambda z: 1.0507009873554805 * _elu(z, 1.6732632423543772),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / np.sqrt(2.0))),
    "silu": lambda z: z * _sigmoid(z),
    "softplus": _softplus,
    "softsign": lambda z: z / (1.0 + np.abs(z)),
    "sigmoid": _sigmoid,
    "hard_sigmoid": lambda z: np.clip(z + 3.0, 0.0, 6.0) / 6.0,
    "tanh": np.tanh,
    "exponential": np.exp,
    "mish": lambda z: z * np.tanh(_softplus(z)),
    "log_softmax": lambda z: z - z.max(axis=1, keepdims=True) - np.log(
        np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)),
    "softmax": _row_softmax,
}
ACT_NAMES = sorted(ACT_REF)


class _GeluTanh(Activation):
    """gelu(approximate=True) as a layer: fastnn reaches it only through
    fastnn.activations.gelu(x, approximate=True); the exporter must still know it."""

    def __init__(self, **kwargs):
        super().__init__("gelu", **kwargs)

    def _engine_act(self):
        return "gelu_tanh", ()


NORM_MEAN = np.linspace(-1.0, 1.0, 12)
NORM_VAR = np.linspace(0.25, 4.0, 12)


def _layers():
    """Every other layer kind with an op: PReLU (per unit, per channel), Normalization
    (and inverted), BatchNormalization and LayerNormalization (over features and over the
    channels of (4, 3) rows, with and without gamma/beta), Embedding, the parametrised and
    grouped activations, and the training-only ops (identity at inference)."""
    utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x, ids = Input(shape=(12,), name="x"), Input(shape=(3,), name="ids")
    x3 = Input(shape=(2, 3), name="x3")  # rows of 6 floats in C
    h = Dense(12, name="h")(x)
    r = Reshape((4, 3))(h)
    acts = [LeakyReLU(0.1, name="leaky")(h), ELU(0.5, name="elu")(h),
            ReLU(max_value=6.0, name="relu6")(h),
            ReLU(max_value=4.0, negative_slope=0.1, threshold=0.5, name="relu_general")(h),
            ReLU(negative_slope=0.2, name="relu_leaky")(h),
            Flatten()(Softmax(name="softmax3")(r)),
            Flatten()(Activation("log_softmax", name="log_softmax3")(r)),
            _GeluTanh(name="gelu_tanh")(h)]
    noisy = [GaussianNoise(0.5, name="noise")(h), GaussianDropout(0.3, name="gdrop")(h),
             ActivityRegularization(l1=0.01, name="activity")(h), Identity(name="same")(h),
             Dropout(0.2, name="drop")(h)]
    outs = [PReLU(name="prelu")(h), Flatten()(PReLU(shared_axes=[1], name="prelu_ch")(r)),
            Normalization(mean=NORM_MEAN, variance=NORM_VAR, name="norm")(x),
            Normalization(mean=NORM_MEAN, variance=NORM_VAR, invert=True, name="denorm")(x),
            BatchNormalization(name="bn")(h),
            Flatten()(BatchNormalization(center=False, name="bn3")(r)),
            LayerNormalization(name="ln")(h),
            Flatten()(LayerNormalization(scale=False, name="ln3")(r)),
            Flatten()(Embedding(10, 4, name="emb")(ids)),
            Concatenate(name="acts")(acts), Add(name="noisy")(noisy),
            Flatten()(LayerNormalization(name="ln_in")(x3))]
    model = Model([x, ids, x3], outs, name="layers")
    for name in ("prelu", "prelu_ch", "bn", "bn3", "ln", "ln3", "ln_in"):
        layer = model.get_layer(name)
        layer.set_weights([rng.uniform(0.2, 1.5, w.shape) for w in layer.get_weights()])
    return model


def _layers_reference(model, x, ids, x3):
    """The outputs of _layers() in float64 NumPy (Keras 3's definitions)."""
    def weights(name):
        return [w.astype(np.float64) for w in model.get_layer(name).get_weights()]
    x = x.astype(np.float64)
    n = x.shape[0]
    wh = weights("h")
    h = x @ wh[0] + wh[1]
    r = h.reshape(n, 4, 3)
    a = weights("prelu")[0]
    a3 = weights("prelu_ch")[0]
    scale = np.maximum(np.sqrt(NORM_VAR), 1e-7)
    g, b, mm, mv = weights("bn")
    g3, mm3, mv3 = weights("bn3")
    lg, lb = weights("ln")
    (lb3,) = weights("ln3")
    lg_in, lb_in = weights("ln_in")

    def layer_norm(v, eps=1e-3):
        m = v.mean(axis=-1, keepdims=True)
        return (v - m) / np.sqrt(v.var(axis=-1, keepdims=True) + eps)

    def relu_general(v, s=0.1, mx=4.0, t=0.5):
        out = np.clip(v * (v > t), 0.0, mx)
        return out - s * np.maximum(t - v, 0.0)

    z3 = r - r.max(axis=-1, keepdims=True)
    acts = [np.where(h > 0, h, 0.1 * h), _elu(h, 0.5), np.clip(h, 0.0, 6.0), relu_general(h),
            np.where(h > 0, h, 0.2 * h),
            (np.exp(z3) / np.exp(z3).sum(axis=-1, keepdims=True)).reshape(n, 12),
            (z3 - np.log(np.exp(z3).sum(axis=-1, keepdims=True))).reshape(n, 12),
            0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))]
    emb = weights("emb")[0]
    return [np.where(h > 0, h, a * h), np.where(r > 0, r, a3 * r).reshape(n, 12),
            (x - NORM_MEAN) / scale, x * scale + NORM_MEAN,
            (h - mm) / np.sqrt(mv + 1e-3) * g + b,
            ((r - mm3) / np.sqrt(mv3 + 1e-3) * g3).reshape(n, 12),
            layer_norm(h) * lg + lb, (layer_norm(r) + lb3).reshape(n, 12),
            emb[ids.astype(np.int64)].reshape(n, 12), np.concatenate(acts, axis=1), 5 * h,
            (layer_norm(x3.astype(np.float64)) * lg_in + lb_in).reshape(n, 6)]


@pytest.fixture(scope="module")
def programs(tmp_path_factory, housing):
    if CC is None:
        pytest.skip("no C compiler (cc or gcc) on PATH")
    folder = tmp_path_factory.mktemp("export_c")
    article = _article(housing)
    progs = {"article": Program(article, folder, "housing"),
             "graph": Program(_graph(), folder, "graph"),
             "activations": Program(_activations(), folder, "acts"),
             "layers": Program(_layers(), folder, "layers")}
    progs["article_small_blocks"] = Program(article, folder / "small", "housing",
                                            flags=["-DHOUSING_BLOCK_ROWS=3"])
    if CXX is not None:
        progs["article_cxx"] = Program(article, folder / "cxx", "housing", cxx=True)
    return progs


def _block_rows(program):
    text = open(program.source).read()
    return int(re.search(rf"#define {program.name.upper()}_BLOCK_ROWS (\d+)", text).group(1))


# ---- outputs against predict and float64 references ------------------------------------------


def test_article_model_matches_predict_and_reference(programs, housing, kernels, ref,
                                                     article_acts):
    prog = programs["article"]
    x = housing.x_test  # 102 rows: a full block of rows and a partial one
    assert x.shape[0] > _block_rows(prog)
    got = prog.run(x)[0]
    np.testing.assert_allclose(got, prog.model.predict(x), **TOL)
    want = ref.mlp_predict(prog.model.get_weights(), article_acts, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    for n in (0, 1, _block_rows(prog), _block_rows(prog) + 1):
        np.testing.assert_allclose(prog.run(x[:n])[0], prog.model.predict(x[:n]) if n else
                                   np.zeros((0, 1)), **TOL)


def test_block_size_and_cxx_build_give_the_same_bits(programs, housing):
    x = housing.x_train[:77]
    base = programs["article"].run(x)[0]
    np.testing.assert_array_equal(programs["article_small_blocks"].run(x)[0], base)
    if "article_cxx" not in programs:
        pytest.skip("no C++ compiler: extern \"C\" not checked")
    np.testing.assert_array_equal(programs["article_cxx"].run(x)[0], base)


def test_two_inputs_two_outputs_graph(programs, rng, kernels):
    prog = programs["graph"]
    xs = [rng.normal(size=(45, 5)).astype(np.float32),
          rng.normal(size=(45, 3)).astype(np.float32)]
    got = prog.run(xs)
    want = _predict(prog.model, xs)
    assert len(got) == len(want) == 3
    for g, p, r in zip(got, want, _graph_reference(prog.model, *xs)):
        np.testing.assert_allclose(g, p, **TOL)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_other_layers(programs, rng, kernels):
    prog = programs["layers"]
    xs = [rng.normal(size=(37, 12)).astype(np.float32),
          rng.integers(0, 10, size=(37, 3)).astype(np.float32),
          rng.normal(size=(37, 2, 3)).astype(np.float32)]
    got = prog.run(xs)
    want = _predict(prog.model, xs)
    names = ["prelu", "prelu_ch", "norm", "denorm", "bn", "bn3", "ln", "ln3", "emb", "acts",
             "noisy", "ln_in"]
    assert len(got) == len(want) == len(names)
    for name, g, p, r in zip(names, got, want, _layers_reference(prog.model, *xs)):
        np.testing.assert_allclose(g, p, **TOL, err_msg=name)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=name)


def test_shared_weights_are_written_once(programs):
    source = open(programs["graph"].source).read()
    arrays = re.findall(r"static const float (\w+)\[(\d+)\]", source)
    model = programs["graph"].model
    assert sorted(int(n) for _, n in arrays) == sorted(w.size for w in model.weights)
    assert "graph_w_frozen_kernel" in dict(arrays)  # from the state buffer


def test_every_activation(programs, rng, kernels):
    prog = programs["activations"]
    x = rng.normal(scale=3.0, size=(40, 7)).astype(np.float32)
    x[:4] *= 8.0  # saturating (exp amplifies a dense sum's rounding: kept below e^40)
    got = prog.run(x)[0]
    np.testing.assert_allclose(got, prog.model.predict(x), **TOL)
    wh = prog.model.get_layer("h").get_weights()
    h = x.astype(np.float64) @ wh[0] + wh[1]
    at = 0
    with np.errstate(over="ignore"):
        for act in ACT_NAMES:
            w = prog.model.get_layer(f"fused_{act}").get_weights()
            for z in (x.astype(np.float64) @ w[0] + w[1], h):
                want = ACT_REF[act](z).astype(np.float32)
                np.testing.assert_allclose(got[:, at:at + 8], want, rtol=1e-5, atol=1e-4,
                                           err_msg=act)
                at += 8
    assert at == got.shape[1]


def test_every_op_kind_and_activation_is_exported_and_tested(programs):
    assert set(_engine.OP_KINDS) <= set(export_c_module.EMITTERS)
    assert set(_engine.ACTIVATIONS) <= set(export_c_module.ACTIVATIONS)
    assert set(activations.NAMES) <= set(ACT_REF)  # every name in the activations model
    ops = [op for p in programs.values() for op in p.model._plan(1024, "predict").spec["ops"]]
    kinds, acts = {op["kind"] for op in ops}, {op.get("act", "linear") for op in ops}
    assert kinds >= set(_engine.OP_KINDS), \
        f"add layers of kinds {set(_engine.OP_KINDS) - kinds} to this file's models"
    assert acts >= set(_engine.ACTIVATIONS), \
        f"add layers with activations {set(_engine.ACTIVATIONS) - acts} to this file's models"


def test_bad_arguments_return_nonzero(programs):
    for key in ("article", "graph"):
        *bad, untouched, empty = programs[key].codes()
        assert len(bad) == (8 if key == "article" else 5)
        assert all(code != 0 for code in bad), (key, bad)
        assert untouched == 1 and empty == 0


# ---- the generated code ---------------------------------------------------------------------


def test_generated_code_is_self_contained_and_thread_safe(programs):
    source = open(programs["graph"].source).read()
    header = open(programs["graph"].header).read()
    assert set(re.findall(r"#include\s*(\S+)", source)) <= {"<stddef.h>", "<math.h>",
                                                             '"graph.h"'}
    assert re.findall(r"#include", header) == []
    for line in source.splitlines():  # file-scope objects: only constant weights
        if re.match(r"(static\s+)?(float|int|double)\s+\w+\s*[\[=;]", line):
            pytest.fail(f"mutable global: {line}")
        assert "malloc" not in line and "static float" not in line
    assert 'extern "C"' in header and "#ifndef GRAPH_H" in header
    assert re.search(r"#define GRAPH_INPUT1_WIDTH 3\b", header)
    assert re.search(r"#define GRAPH_OUTPUT0_WIDTH 4\b", header)
    assert "graph_predict(" not in header  # two inputs: predict_multi only
    layers = open(programs["layers"].header).read()
    assert "#define LAYERS_INPUT2_WIDTH 6 /* input 'x3' (2, 3), flattened */" in layers
    article = open(programs["article"].header).read()
    assert "#define HOUSING_N_INPUTS 13" in article
    assert "#define HOUSING_N_OUTPUTS 1" in article


def test_models_share_a_translation_unit_under_strict_warnings(programs, tmp_path):
    """Every name a file defines carries its model's prefix: a unity build of all the
    models compiles, here with conversion and shadowing warnings as errors too."""
    unity = tmp_path / "unity.c"
    unity.write_text("".join(f'#include "{programs[k].source}"\n'
                             for k in ("article", "graph", "activations", "layers")))
    _compile([CC, *C_FLAGS, "-Wconversion", "-Wsign-conversion", "-Wshadow",
              "-Wdouble-promotion", "-Wmissing-prototypes", "-Wstrict-prototypes", "-c",
              str(unity), "-o", str(tmp_path / "unity.o")])


def test_wide_layers_keep_the_stack_bounded(tmp_path):
    model = Sequential([Dense(6000, input_shape=(3,), activation="relu"), Dense(2)])
    src, _ = model.export_c(tmp_path / "wide.c")  # the name comes from the file
    text = open(src).read()
    assert "int wide_predict(const float *x, int n, float *y)" in text
    rows = int(re.search(r"#define WIDE_BLOCK_ROWS (\d+)", text).group(1))
    floats = sum(int(w) for w in re.findall(r"float b\d+\[WIDE_BLOCK_ROWS \* (\d+)\]", text))
    assert rows >= 1 and (rows == 1 or rows * floats <= export_c_module.STACK_FLOATS)


def test_floats_round_trip_exactly(rng):
    values = np.concatenate([rng.normal(size=200).astype(np.float32),
                             np.float32([0.0, -0.0, 1e-38, 3.4e38, 1 / 3, 16777217])])
    for v in values:
        text = export_c_module._float(v)
        assert text.endswith("f") and np.float32(text[:-1]) == v
        assert np.signbit(np.float32(text[:-1])) == np.signbit(v)


# ---- errors ----------------------------------------------------------------------------------


def test_an_op_kind_without_emitter_names_the_layer(tmp_path, monkeypatch):
    model = _graph()
    monkeypatch.delitem(export_c_module.EMITTERS, "maximum")
    with pytest.raises(ValueError, match=r"layer 'top'.*op kind 'maximum'"):
        model.export_c(tmp_path / "m.c", name="m")
    assert not (tmp_path / "m.c").exists()


def test_an_activation_without_c_code_names_the_layer(tmp_path, monkeypatch):
    monkeypatch.delitem(export_c_module.ACTIVATIONS, "tanh")
    with pytest.raises(ValueError, match=r"layer 'fused_tanh'.*activation 'tanh'"):
        _activations().export_c(tmp_path / "m.c", name="m")


@pytest.mark.parametrize("name", ["9lives", "my-model", "", "int", "a b", 3])
def test_names_must_be_c_identifiers(tmp_path, name):
    model = Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=re.escape(f"Received: name={name!r}")):
        model.export_c(tmp_path / "m.c", name=name)


def test_default_name_from_a_file_name_c_cannot_spell(tmp_path):
    model = Sequential([Dense(1, input_shape=(2,))])
    assert model.export_c(tmp_path / "9-lives.c")[0].endswith("9-lives.c")
    assert "int model_9_lives_predict(" in (tmp_path / "9-lives.h").read_text()


def test_path_and_unbuilt_model_errors(tmp_path):
    model = Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"Received: filepath=.*model\.h"):
        model.export_c(tmp_path / "model.h", name="model")
    with pytest.raises(ValueError, match="not yet been built"):
        Sequential([Dense(1)]).export_c(tmp_path / "m.c")


# ---- the command line ------------------------------------------------------------------------


@needs_cc
def test_cli_exports_a_saved_model(tmp_path, rng, capsys):
    model = _graph()
    path = tmp_path / "two-io.fastnn"
    model.save(path)
    assert cli(["export", str(path), "--c", str(tmp_path / "out")]) == 0
    assert "two_io.c" in capsys.readouterr().out  # the name from the file's
    loaded = load_model(path)
    prog = Program(loaded, tmp_path / "out", "two_io",
                   source=(tmp_path / "out" / "two_io.c", tmp_path / "out" / "two_io.h"))
    xs = [rng.normal(size=(9, 5)).astype(np.float32), rng.normal(size=(9, 3)).astype(np.float32)]
    for got, want, first in zip(prog.run(xs), _predict(loaded, xs), _predict(model, xs)):
        np.testing.assert_allclose(got, want, **TOL)
        np.testing.assert_allclose(got, first, **TOL)
    assert cli(["export", str(path), "--c", str(tmp_path / "named"), "--name", "net"]) == 0
    assert (tmp_path / "named" / "net.c").exists() and (tmp_path / "named" / "net.h").exists()


def test_cli_errors(tmp_path, capsys):
    path = tmp_path / "m.fastnn"
    Sequential([Dense(1, input_shape=(2,))]).save(path)
    assert cli(["export", str(path), "--c", str(tmp_path), "--name", "9x"]) != 0
    assert "Received: name='9x'" in capsys.readouterr().err
    assert cli(["export", str(path)]) != 0
    assert "--c" in capsys.readouterr().err
    assert cli(["export", str(tmp_path / "missing.fastnn"), "--c", str(tmp_path)]) != 0
    assert "missing.fastnn" in capsys.readouterr().err
