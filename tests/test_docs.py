"""Docstrings of the public API, and fastnn.show_config()."""
import doctest
import inspect
import platform
import re

import numpy as np
import pytest

import fastnn
from fastnn import _blas, _config, _engine

MODULES = [fastnn, fastnn.layers, fastnn.losses, fastnn.metrics, fastnn.optimizers,
           fastnn.callbacks]


def public_names(module):
    """__all__ when the module has one, else the names it defines without an underscore
    (imported modules and other packages' objects left out)."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, obj in vars(module).items()
            if not n.startswith("_") and not inspect.ismodule(obj)
            and getattr(obj, "__module__", "").startswith("fastnn")]


PUBLIC = [(m.__name__, n) for m in MODULES for n in public_names(m)]


def own_doc(obj):
    """The object's own docstring: a class does not count its base class's."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    return inspect.cleandoc(doc or "")


def is_sentence(doc):
    """At least one full sentence: a few words ending in a full stop."""
    return len(doc.split()) >= 4 and re.search(r"\w[^.]*\.(\s|$)", doc) is not None


def mentions(doc, name):
    return re.search(rf"(?<![\w.]){re.escape(name)}\b", doc) is not None


def params_of(fn):
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_public_names_are_found():
    names = {n for _, n in PUBLIC}
    for expected in ("Model", "Dense", "MeanSquaredError", "Adam", "EarlyStopping", "AUC",
                     "mean_squared_error", "show_config"):
        assert expected in names


@pytest.mark.parametrize("module,name", PUBLIC)
def test_every_public_name_has_a_docstring(module, name):
    import importlib
    obj = getattr(importlib.import_module(module), name)
    doc = own_doc(obj)
    assert is_sentence(doc), f"{module}.{name} has no docstring of a full sentence: {doc!r}"


MODEL_METHODS = ["compile", "fit", "evaluate", "predict", "train_on_batch", "test_on_batch",
                 "predict_on_batch", "summary", "save", "save_weights", "load_weights",
                 "get_weights", "set_weights", "get_layer", "export_c"]


@pytest.mark.parametrize("method", MODEL_METHODS)
def test_model_methods_document_each_parameter(method):
    fn = getattr(fastnn.Model, method)
    doc = own_doc(fn)
    assert is_sentence(doc)
    missing = [p for p in params_of(fn) if not mentions(doc, p)]
    assert not missing, f"Model.{method}'s docstring does not mention {missing}"
    if params_of(fn):
        assert "Args:" in doc


@pytest.mark.parametrize("fn", [fastnn.Model.__init__, fastnn.Sequential.__init__,
                                fastnn.Sequential.add, fastnn.Sequential.build, fastnn.Input,
                                fastnn.layers.Layer.__init__, fastnn.layers.Layer.add_weight,
                                fastnn.layers.Layer.build,
                                fastnn.layers.Layer.compute_output_shape],
                         ids=lambda f: f.__qualname__)
def test_entry_points_document_each_parameter(fn):
    owner = fn
    if fn.__name__ == "__init__":  # a class documents its constructor
        owner = getattr(fastnn, fn.__qualname__.split(".")[0], None) or \
            getattr(fastnn.layers, fn.__qualname__.split(".")[0])
    doc = own_doc(owner)
    missing = [p for p in params_of(fn) if not mentions(doc, p)]
    assert not missing, f"{fn.__qualname__}'s docstring does not mention {missing}"


def constructor_classes(module):
    return [getattr(module, n) for n in public_names(module)
            if inspect.isclass(getattr(module, n))]


@pytest.mark.parametrize("cls", constructor_classes(fastnn.layers) +
                         constructor_classes(fastnn.optimizers), ids=lambda c: c.__name__)
def test_layer_and_optimizer_classes_document_their_arguments(cls):
    if cls is fastnn.layers.KerasTensor:
        pytest.skip("not built by users: Input() and layer calls make KerasTensors")
    doc = own_doc(cls)
    # the base class documents its own arguments; subclasses say they pass them on
    base = next(b for b in (fastnn.layers.Layer, fastnn.optimizers.Optimizer)
                if issubclass(cls, b))
    inherited = set() if cls is base else set(params_of(base.__init__)) - {"learning_rate"}
    missing = [p for p in params_of(cls.__init__) if p not in inherited and not mentions(doc, p)]
    assert not missing, f"{cls.__name__}'s docstring does not mention {missing}"


def test_main_entry_points_have_examples():
    for obj in (fastnn.Model, fastnn.Sequential, fastnn.Input, fastnn.layers.Dense,
                fastnn.Model.fit, fastnn.Model.compile, fastnn.Model.predict,
                fastnn.Model.evaluate, fastnn.show_config):
        assert "Example" in own_doc(obj), obj


def test_rmsprop_doc_says_where_epsilon_goes():
    doc = own_doc(fastnn.optimizers.RMSprop)
    assert "sqrt(v + epsilon)" in doc and "PyTorch" in doc


def test_help_of_fit_renders():
    text = __import__("pydoc").render_doc(fastnn.Model.fit, renderer=__import__("pydoc").plaintext)
    for word in ("Trains the model", "Args:", "Returns:", "validation_split", "History"):
        assert word in text


# -- show_config -----------------------------------------------------------------------------

SECTIONS = {"fastnn", "python", "numpy", "platform", "kernels", "threads", "blas", "compiler",
            "cpu_features"}


def test_show_config_returns_the_sections():
    config = fastnn.show_config(print_=False)
    assert set(config) == SECTIONS
    assert config["fastnn"]["version"] == fastnn.__version__
    assert config["python"]["version"] == platform.python_version()
    assert config["numpy"]["version"] == np.__version__
    kernels = config["kernels"]
    assert kernels["in_use"] == _engine.KERNELS
    assert kernels["levels"] == list(_engine.KERNEL_LEVELS)
    assert "baseline" in kernels["available"]
    assert set(kernels["available"]) <= set(kernels["levels"])
    threads = config["threads"]
    assert threads["fastnn"] == fastnn.get_num_threads() and threads["cpus_usable"] >= 1
    assert threads["parallel_min_flop"] == _engine.parallel_min_flop()
    blas = config["blas"]
    assert set(blas) >= {"found", "library", "threads", "config"}
    assert blas["found"] == _blas.available()
    if blas["found"]:
        assert blas["library"]
        assert blas["threads"] is None or blas["threads"] >= 1
    else:
        assert blas["library"] is None
    assert set(config["compiler"]) == {"python_compiler", "CC", "CFLAGS"}
    detected = config["cpu_features"]["detected"]
    assert set(detected) <= set(config["cpu_features"]["all"])


def test_show_config_available_levels_match_the_cpu():
    config = fastnn.show_config(print_=False)
    features = set(config["cpu_features"]["all"])
    available = config["kernels"]["available"]
    assert ("avx2" in available) == ({"AVX2", "FMA3"} <= features)
    assert ("avx512" in available) == ({"AVX2", "FMA3", "AVX512F"} <= features)
    # the set in use is one the CPU can run (FASTNN_SIMD may cap it lower)
    assert config["kernels"]["in_use"] in available


def test_show_config_prints_every_section(capsys):
    assert fastnn.show_config() is None
    out = capsys.readouterr().out
    config = fastnn.show_config(print_=False)
    for section, values in config.items():
        assert f"{section}:\n" in out
        for key in values:
            assert f"  {key}: " in out
    assert f"in_use: {_engine.KERNELS}" in out
    assert f"version: {fastnn.__version__}" in out


def test_show_config_changes_no_setting():
    before = (_engine.KERNELS, _engine.select_kernels.__doc__)
    fastnn.show_config(print_=False)
    assert (_engine.KERNELS, _engine.select_kernels.__doc__) == before


def test_config_doctest():
    result = doctest.testmod(_config, verbose=False)
    assert result.attempted >= 1 and result.failed == 0
