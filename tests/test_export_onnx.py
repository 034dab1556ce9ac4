"""ONNX export (fastnn.export.to_onnx, Model.to_onnx): each model is exported, checked with
onnx.checker, run in ONNX Runtime (CPUExecutionProvider) at batch sizes 1 and 7 (one graph,
a dynamic batch dimension) and compared with model.predict (under every kernel set), and
the article model also with the float64 reference of conftest. Models are exported once
per module; skipped without onnx or onnxruntime (pip install onnx onnxruntime)."""
import sys

import numpy as np
import pytest

from fastnn import Input, Model, Sequential, _engine, activations, utils
from fastnn.export import onnx as onnx_export
from fastnn.export import to_onnx
from fastnn.layers import (ELU, ActivityRegularization, Activation, Add, Average,
                           BatchNormalization, Concatenate, Dense, Dropout, Embedding, Flatten,
                           GaussianDropout, GaussianNoise, Identity, LayerNormalization,
                           LeakyReLU, Maximum, Minimum, Multiply, Normalization, PReLU, ReLU,
                           Reshape, Softmax, Subtract)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = dict(rtol=1e-5, atol=1e-5)
BATCHES = (1, 7)


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(proto, model, xs):
    """The exported graph's outputs for the inputs xs (a list, in the model's order)."""
    feed = {name: np.ascontiguousarray(x, np.float32) for name, x in zip(model.input_names, xs)}
    return _session(proto).run(None, feed)


def _predict(model, xs):
    out = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    return out if isinstance(out, list) else [out]


# ---- the models --------------------------------------------------------------------------------


def _article(housing):
    utils.set_random_seed(0)
    model = Sequential([Dense(10, input_shape=(13,), activation="relu"),
                        Dense(10, activation="relu"), Dense(1)], name="housing")
    model.compile(loss="mse", optimizer="rmsprop")
    model.fit(housing.x_train, housing.y_train, epochs=3, verbose=0)
    return model


def _graph():
    """Two inputs, two outputs (and an output that is an input's rows): a shared layer, a
    frozen one, a nested model, every merge, dropout, a softmax head."""
    utils.set_random_seed(1)
    a, b = Input(shape=(5,), name="a"), Input(shape=(3,), name="b")
    pa = Dense(6, activation="relu", name="pa")(a)
    pb = Dense(6, activation="sigmoid", name="pb")(b)
    shared = Dense(6, activation="tanh", name="shared")
    sa, sb = shared(pa), shared(pb)
    fz = Dense(6, name="frozen", trainable=False)(sa)
    s = Add(name="sum3")([sa, sb, fz])
    inner = Sequential([Dense(4, activation="relu", input_shape=(6,)), Dense(3)], name="inner")
    top = Maximum(name="top")([sa, sb, pa])
    parts = [s, Subtract(name="diff")([pa, pb]), Multiply(name="prod")([pa, pb, sa]),
             Average(name="mean")([sa, sb, pa]), top, Minimum(name="low")([sa, sb, pb]),
             inner(s)]
    y1 = Dense(4, activation="softmax", name="y1")(Concatenate(name="cat")(parts))
    y2 = Dense(2, name="y2")(Add(name="skip")([Dropout(0.5, name="drop")(sb), top]))
    y3 = Dropout(0.1, name="b_again")(b)
    return Model([a, b], [y1, y2, y3], name="two_by_two")


class _GeluTanh(Activation):
    """gelu(approximate=True) as a layer (fastnn reaches it only through
    fastnn.activations.gelu(x, approximate=True)): the exporter must still know it."""

    def __init__(self, **kwargs):
        super().__init__("gelu", **kwargs)

    def _engine_act(self):
        return "gelu_tanh", ()


def _activations():
    """Every activation by name, fused into a Dense (where the engine fuses it) and as a
    standalone op; the parametrised and grouped ones through their layers."""
    utils.set_random_seed(2)
    x = Input(shape=(7,), name="x")
    h = Dense(12, name="h")(x)  # read by every Activation below: none fuses into it
    r = Reshape((4, 3))(h)
    outs = []
    for act in activations.NAMES:
        outs.append(Dense(8, activation=act, name=f"fused_{act}")(x))
        outs.append(Activation(act, name=f"layer_{act}")(h))
    outs += [LeakyReLU(0.1, name="leaky")(h), ELU(0.5, name="elu")(h),
             ReLU(max_value=6.0, name="relu6")(h),
             ReLU(max_value=4.0, negative_slope=0.1, threshold=0.5, name="relu_general")(h),
             ReLU(negative_slope=0.2, name="relu_leaky")(h),
             ReLU(threshold=0.3, name="relu_threshold")(h),
             Flatten()(Softmax(name="softmax3")(r)),
             Flatten()(Activation("log_softmax", name="log_softmax3")(r)),
             _GeluTanh(name="gelu_tanh")(h)]
    return Model(x, Concatenate(name="all")(outs), name="activations")


def _layers():
    """Every other layer kind with an op: PReLU (per unit, per channel), Normalization
    (and inverted), BatchNormalization and LayerNormalization (over the features and over
    the channels of (4, 3) rows, with and without gamma/beta), Embedding, the training-only
    ops (the identity at inference), an input and an output of three axes."""
    utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x, ids = Input(shape=(12,), name="x"), Input(shape=(3,), name="ids")
    x3 = Input(shape=(2, 3), name="x3")
    h = Dense(12, name="h")(x)
    r = Reshape((4, 3))(h)
    noisy = [GaussianNoise(0.5, name="noise")(h), GaussianDropout(0.3, name="gdrop")(h),
             ActivityRegularization(l1=0.01, name="activity")(h), Identity(name="same")(h),
             Dropout(0.2, name="drop")(h)]
    outs = [PReLU(name="prelu")(h), Flatten()(PReLU(shared_axes=[1], name="prelu_ch")(r)),
            Normalization(mean=np.linspace(-1, 1, 12), variance=np.linspace(0.25, 4, 12),
                          name="norm")(x),
            Normalization(mean=np.linspace(-1, 1, 12), variance=np.linspace(0.25, 4, 12),
                          invert=True, name="denorm")(x),
            BatchNormalization(name="bn")(h),
            Flatten()(BatchNormalization(center=False, name="bn3")(r)),
            BatchNormalization(scale=False, name="bn_beta")(h),
            LayerNormalization(name="ln")(h),
            Flatten()(LayerNormalization(scale=False, name="ln3")(r)),
            LayerNormalization(center=False, name="ln_gamma")(h),
            Flatten(name="emb_rows")(Embedding(10, 4, name="emb")(ids)),
            Add(name="noisy")(noisy),
            LayerNormalization(name="ln_in")(x3)]  # (2, 3) in, (2, 3) out
    model = Model([x, ids, x3], outs, name="layers")
    for layer in model.layers:
        if isinstance(layer, (PReLU, BatchNormalization, LayerNormalization)):
            layer.set_weights([rng.uniform(0.2, 1.5, w.shape) for w in layer.get_weights()])
    return model


def _layers_inputs(rng, n):
    ids = rng.integers(0, 10, size=(n, 3)).astype(np.float32)
    ids[0, :] = [0.5, 9.7, 3.999]  # truncated, as the engine
    return [rng.normal(size=(n, 12)).astype(np.float32), ids,
            rng.normal(size=(n, 2, 3)).astype(np.float32)]


@pytest.fixture(scope="module")
def exported(housing):
    models = {"article": _article(housing), "graph": _graph(), "activations": _activations(),
              "layers": _layers()}
    return {key: (m, to_onnx(m)) for key, m in models.items()}


# ---- outputs against predict -----------------------------------------------------------------


@pytest.mark.parametrize("n", BATCHES)
def test_article_model(exported, housing, kernels, ref, article_acts, n):
    model, proto = exported["article"]
    x = housing.x_test[:n]
    (got,) = _run(proto, model, [x])
    assert got.shape == (n, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, model.predict(x, verbose=0), **TOL)
    want = ref.mlp_predict(model.get_weights(), article_acts, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_one_graph_serves_every_batch_size(exported, housing):
    model, proto = exported["article"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 13
    session = _session(proto)
    for n in (0, 1, 7, 102):
        x = housing.x_test[:n]
        (got,) = session.run(None, {model.input_names[0]: x})
        assert got.shape == (n, 1)
        if n:
            np.testing.assert_allclose(got, model.predict(x, verbose=0), **TOL)


@pytest.mark.parametrize("n", BATCHES)
def test_two_inputs_two_outputs_graph(exported, rng, kernels, n):
    model, proto = exported["graph"]
    xs = [rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)]
    got, want = _run(proto, model, xs), _predict(model, xs)
    assert len(got) == len(want) == 3
    for name, g, p in zip(model.output_names, got, want):
        np.testing.assert_allclose(g, p, **TOL, err_msg=name)
    np.testing.assert_array_equal(got[2], xs[1])  # dropout: the identity


@pytest.mark.parametrize("n", BATCHES)
def test_every_activation(exported, rng, kernels, n):
    model, proto = exported["activations"]
    x = rng.normal(scale=3.0, size=(n, 7)).astype(np.float32)
    x[:1] *= 4.0  # saturating
    with np.errstate(over="ignore"):
        (got,) = _run(proto, model, [x])
        want = model.predict(x, verbose=0)
    widths = [8, 12] * len(activations.NAMES) + [12] * 9
    at = 0
    names = [f"{k}_{a}" for a in activations.NAMES for k in ("fused", "layer")] + [
        "leaky", "elu", "relu6", "relu_general", "relu_leaky", "relu_threshold", "softmax3",
        "log_softmax3", "gelu_tanh"]
    for name, w in zip(names, widths):
        np.testing.assert_allclose(got[:, at:at + w], want[:, at:at + w], **TOL, err_msg=name)
        at += w
    assert at == got.shape[1] == want.shape[1]


@pytest.mark.parametrize("opset", [onnx_export.DEFAULT_OPSET, onnx_export.MIN_OPSET])
@pytest.mark.parametrize("n", BATCHES)
def test_other_layers(exported, rng, kernels, n, opset):
    model, proto = exported["layers"]
    if opset != onnx_export.DEFAULT_OPSET:  # layer norm from primitives
        proto = to_onnx(model, opset=opset)
        kinds = {node.op_type for node in proto.graph.node}
        assert "LayerNormalization" not in kinds and "ReduceMean" in kinds
    xs = _layers_inputs(rng, n)
    got, want = _run(proto, model, xs), _predict(model, xs)
    assert len(got) == len(want) == len(model.outputs)
    assert got[-1].shape == (n, 2, 3)  # an output of three axes keeps them
    for name, g, p in zip(model.output_names, got, want):
        assert g.shape == p.shape, name
        np.testing.assert_allclose(g, p, **TOL, err_msg=name)


def test_embedding_indices_out_of_range_are_clamped_as_the_engine(exported):
    """predict refuses such indices; the engine's kernel (csrc/ops/embedding.c) truncates
    and clamps them to [0, n), NaN to row 0: so does the graph."""
    model, proto = exported["layers"]
    ids = np.float32([[-2.5, 0.99, 9.99], [10.0, 42.0, np.nan], [np.inf, -np.inf, 3.5]])
    xs = [np.zeros((3, 12), np.float32), ids, np.zeros((3, 2, 3), np.float32)]
    got = _run(proto, model, xs)[model.output_names.index("emb_rows")]
    table = model.get_layer("emb").get_weights()[0].astype(np.float64)
    rows = np.int64([[0, 0, 9], [9, 9, 0], [9, 0, 3]])
    np.testing.assert_array_equal(got, table[rows].reshape(3, 12).astype(np.float32))


def test_a_model_returning_its_input(rng):
    x = Input(shape=(3,), name="x")
    y = Dense(2, name="d")(x)
    model = Model(x, [x, y])
    proto = to_onnx(model)
    assert [o.name for o in proto.graph.output] == ["x_1", "d"]  # ONNX names are unique
    assert [n.op_type for n in proto.graph.node] == ["MatMul", "Add", "Identity"]
    xs = [rng.normal(size=(4, 3)).astype(np.float32)]
    for g, p in zip(_run(proto, model, xs), _predict(model, xs)):
        np.testing.assert_allclose(g, p, **TOL)


def test_every_op_kind_and_activation_is_exported_and_tested(exported):
    assert set(_engine.OP_KINDS) <= set(onnx_export.EMITTERS)
    assert set(_engine.ACTIVATIONS) <= set(onnx_export.ACTIVATIONS)
    ops = [op for m, _ in exported.values() for op in m._plan(1024, "predict").spec["ops"]]
    kinds, acts = {op["kind"] for op in ops}, {op.get("act", "linear") for op in ops}
    assert kinds >= set(_engine.OP_KINDS), \
        f"add layers of kinds {set(_engine.OP_KINDS) - kinds} to this file's models"
    assert acts >= set(_engine.ACTIVATIONS), \
        f"add layers with activations {set(_engine.ACTIVATIONS) - acts} to this file's models"


# ---- the graph --------------------------------------------------------------------------------


def test_checker_names_and_weights(exported):
    for model, proto in (v for v in exported.values()):
        onnx.checker.check_model(proto, full_check=True)  # with shape inference
        assert [i.name for i in proto.graph.input] == model.input_names
        assert [o.name for o in proto.graph.output] == model.output_names
        inits = {i.name for i in proto.graph.initializer}
        assert not inits & set(model.input_names)
        assert inits <= {name for node in proto.graph.node for name in node.input}  # all used
    model, proto = exported["graph"]
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    np.testing.assert_array_equal(inits["shared/kernel"], model.get_layer("shared").kernel)
    np.testing.assert_array_equal(inits["frozen/kernel"], model.get_layer("frozen").kernel)
    weights = [v for k, v in inits.items() if "/" in k and not k.startswith("const/")]
    assert sorted(w.size for w in weights) == sorted(w.size for w in model.weights)  # once each
    dims = proto.graph.input[1].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 3
    assert proto.opset_import[0].version == onnx_export.DEFAULT_OPSET
    assert proto.producer_name == "fastnn"


def test_saved_file_and_model_method(exported, tmp_path, housing):
    model, proto = exported["article"]
    path = tmp_path / "housing.onnx"
    again = model.to_onnx(path)
    assert again == proto
    loaded = onnx.load(str(path))
    assert loaded == proto
    x = housing.x_test[:5]
    np.testing.assert_allclose(_run(loaded, model, [x])[0], model.predict(x, verbose=0), **TOL)
    assert to_onnx(model, str(tmp_path / "str.onnx"), opset=18).opset_import[0].version == 18
    assert (tmp_path / "str.onnx").stat().st_size > 0


# ---- errors ------------------------------------------------------------------------------------


def test_an_op_kind_without_emitter_names_the_layer(monkeypatch, tmp_path):
    monkeypatch.delitem(onnx_export.EMITTERS, "maximum")
    with pytest.raises(ValueError, match=r"layer 'top'.*op kind 'maximum'"):
        to_onnx(_graph(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_an_activation_without_emitter_names_the_layer(monkeypatch):
    monkeypatch.delitem(onnx_export.ACTIVATIONS, "mish")
    with pytest.raises(ValueError, match=r"layer 'fused_mish'.*activation 'mish'"):
        to_onnx(_activations())


@pytest.mark.parametrize("opset", [12, 10_000, 17.0, "17", True, None])
def test_bad_opset(opset):
    model = Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=f"Received: opset={opset!r}"):
        to_onnx(model, opset=opset)


def test_bad_path_and_unbuilt_model():
    model = Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(TypeError, match="Received: path=3"):
        to_onnx(model, 3)
    with pytest.raises(ValueError, match="not yet been built"):
        Sequential([Dense(1)]).to_onnx()


def test_without_onnx_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(ImportError, match="pip install onnx"):
        to_onnx(Sequential([Dense(1, input_shape=(2,))]))
