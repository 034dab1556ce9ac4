"""fastnn._blas: which BLAS the C core's large layers call, found among the libraries NumPy
uses (OpenBLAS, MKL, BLIS, FlexiBLAS, Accelerate), with its integer width (LP64/ILP64)
and thread setter.

This machine has only NumPy's OpenBLAS, so the other families are fakes: objects that
expose the symbols a real library exports, their sgemm a ctypes callback the C core
really calls (computing with NumPy in float64), their thread calls recording what they
were given. One test checks the real OpenBLAS is found here."""
import ctypes
import os
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _blas, _engine

c_float_p = ctypes.POINTER(ctypes.c_float)


class FakeLibrary:
    """A stand-in for a ctypes.CDLL: its attributes are the symbols given."""

    def __init__(self, path, **symbols):
        self._name = path
        self._symbols = dict(symbols)

    def __getattr__(self, name):
        try:
            return self.__dict__["_symbols"][name]
        except KeyError:
            raise AttributeError(name) from None


def make_sgemm(int_type, calls):
    """A CBLAS row-major sgemm taking `int_type` integers, as a C-callable function.
    It computes only when every size matches the arrays the test passed (a wrong integer
    width shows as wrong sizes, recorded, never as a stray memory access)."""
    prototype = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, int_type,
                                 int_type, int_type, ctypes.c_float, c_float_p, int_type,
                                 c_float_p, int_type, ctypes.c_float, c_float_p, int_type)

    def sgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        calls.append((order, ta, tb, m, n, k, lda, ldb, ldc))
        limits = FakeSizes.current
        if (order != 101 or (m, n, k) != limits[:3] or ta not in (111, 112)
                or tb not in (111, 112) or (lda, ldb, ldc) != limits[3:]):
            return
        a_rows, a_cols = (k, m) if ta == 112 else (m, k)
        b_rows, b_cols = (n, k) if tb == 112 else (k, n)
        a_arr = np.ctypeslib.as_array(a, shape=(a_rows, lda))[:, :a_cols].astype(np.float64)
        b_arr = np.ctypeslib.as_array(b, shape=(b_rows, ldb))[:, :b_cols].astype(np.float64)
        c_arr = np.ctypeslib.as_array(c, shape=(m, ldc))
        op_a = a_arr.T if ta == 112 else a_arr
        op_b = b_arr.T if tb == 112 else b_arr
        c_arr[:, :n] = (alpha * (op_a @ op_b) + beta * c_arr[:, :n]).astype(np.float32)

    return prototype(sgemm)


class FakeSizes:
    current = None  # (m, n, k, lda, ldb, ldc) of the product under test


def recorder(log, value=None):
    """A thread setter/getter or version call: records its arguments, returns value."""
    def fn(*args):
        log.append(tuple(getattr(a, "value", a) for a in args))
        return value
    return fn


def not_called(*args):
    raise AssertionError("this symbol must not be called")


# ---- names and families ------------------------------------------------------------

@pytest.mark.parametrize("name, family", [
    ("scipy-openblas", "openblas"), ("openblas64", "openblas"), ("OpenBLAS", "openblas"),
    ("mkl", "mkl"), ("mkl-sdl", "mkl"), ("mkl-dynamic-ilp64-iomp", "mkl"),
    ("accelerate", "accelerate"), ("blis", "blis"), ("flexiblas", "flexiblas"),
    ("lapack", None), ("", None), (None, None)])
def test_family_of_numpy_blas_name(name, family):
    assert _blas.family_of_name(name) == family


def test_numpy_blas_name_is_what_numpy_reports():
    try:
        expected = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except TypeError:
        expected = None  # NumPy < 1.26 has no mode="dicts"
    assert _blas.numpy_blas_name() == expected


def test_numpy_blas_name_without_dicts_mode(monkeypatch):
    def old_show_config():  # NumPy < 1.26: prints, takes no mode
        raise AssertionError("must not be called without arguments")
    monkeypatch.setattr(np, "show_config", old_show_config)
    assert _blas.numpy_blas_name() is None


# ---- one library: family, sgemm symbol, integer width ------------------------------

def probe(path, **symbols):
    return _blas.probe(FakeLibrary(path, **symbols), path)


def test_probe_numpy_wheel_openblas():
    found = probe("/x/numpy.libs/libscipy_openblas64_-abc.so",
                  scipy_openblas_get_config64_=recorder([]),
                  scipy_cblas_sgemm64_=not_called, cblas_sgemm=not_called)
    assert (found.family, found.symbol, found.ilp64) == \
        ("openblas", "scipy_cblas_sgemm64_", True)


def test_probe_scipy_openblas32_is_lp64():
    found = probe("/x/libscipy_openblas-1.so", scipy_openblas_get_config=recorder([]),
                  scipy_cblas_sgemm=not_called)
    assert (found.symbol, found.ilp64) == ("scipy_cblas_sgemm", False)


@pytest.mark.parametrize("config, ilp64", [(b"OpenBLAS 0.3.26 DYNAMIC_ARCH Haswell", False),
                                           (b"OpenBLAS 0.3.26 USE64BITINT Zen", True)])
def test_probe_system_openblas_width_from_its_config(config, ilp64):
    # a distribution's OpenBLAS exports plain cblas_sgemm; its build string tells the width
    found = probe("/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
                  openblas_get_config=recorder([], config), cblas_sgemm=not_called)
    assert (found.family, found.symbol, found.ilp64) == ("openblas", "cblas_sgemm", ilp64)


def test_probe_openblas_64_suffix():
    found = probe("/usr/lib/libopenblas64_.so.0", openblas_get_config64_=recorder([]),
                  cblas_sgemm64_=not_called)
    assert (found.symbol, found.ilp64) == ("cblas_sgemm64_", True)


def test_probe_mkl_prefers_its_ilp64_entry_point():
    found = probe("/opt/conda/lib/libmkl_rt.so.2", MKL_Get_Max_Threads=recorder([], 2),
                  cblas_sgemm=not_called, cblas_sgemm_64=not_called)
    assert (found.family, found.symbol, found.ilp64) == ("mkl", "cblas_sgemm_64", True)
    found = probe("/opt/conda/lib/libmkl_rt.so.2", MKL_Get_Max_Threads=recorder([], 2),
                  cblas_sgemm=not_called, cblas_sgemm64_=not_called)
    assert (found.symbol, found.ilp64) == ("cblas_sgemm64_", True)


def test_probe_mkl_lp64_unless_its_interface_layer_says_ilp64(monkeypatch):
    monkeypatch.delenv("MKL_INTERFACE_LAYER", raising=False)
    found = probe("/opt/conda/lib/libmkl_rt.so.1", MKL_Get_Max_Threads=recorder([], 2),
                  cblas_sgemm=not_called)
    assert (found.family, found.symbol, found.ilp64) == ("mkl", "cblas_sgemm", False)
    monkeypatch.setenv("MKL_INTERFACE_LAYER", "ILP64,GNU")
    found = probe("/opt/conda/lib/libmkl_rt.so.1", MKL_Get_Max_Threads=recorder([], 2),
                  cblas_sgemm=not_called)
    assert found.ilp64 is True
    monkeypatch.delenv("MKL_INTERFACE_LAYER")
    found = probe("/opt/intel/lib/libmkl_intel_ilp64.so", MKL_Get_Max_Threads=recorder([]),
                  cblas_sgemm=not_called)
    assert found.ilp64 is True


@pytest.mark.parametrize("symbols, symbol, ilp64", [
    (("cblas_sgemm$NEWLAPACK$ILP64", "cblas_sgemm"), "cblas_sgemm$NEWLAPACK$ILP64", True),
    (("cblas_sgemm",), "cblas_sgemm", False)])
def test_probe_accelerate(symbols, symbol, ilp64):
    # Accelerate exports no marker symbol: it is known by its path
    found = probe(_blas.ACCELERATE, **{s: not_called for s in symbols})
    assert (found.family, found.symbol, found.ilp64) == ("accelerate", symbol, ilp64)
    veclib = ("/System/Library/Frameworks/Accelerate.framework/Versions/A/Frameworks/"
              "vecLib.framework/Versions/A/libBLAS.dylib")
    assert probe(veclib, **{s: not_called for s in symbols}).family == "accelerate"


@pytest.mark.parametrize("int_size, ilp64", [(32, False), (64, True)])
def test_probe_blis_asks_its_integer_size(int_size, ilp64):
    found = probe("/usr/lib/libblis.so.4", bli_info_get_version_str=recorder([], b"1.0"),
                  bli_info_get_blas_int_type_size=recorder([], int_size),
                  cblas_sgemm=not_called)
    assert (found.family, found.symbol, found.ilp64) == ("blis", "cblas_sgemm", ilp64)


def test_probe_flexiblas_width_from_its_name():
    marker = {"flexiblas_get_num_threads": recorder([], 1), "cblas_sgemm": not_called}
    assert probe("/usr/lib64/libflexiblas.so.3", **marker).ilp64 is False
    assert probe("/usr/lib64/libflexiblas64.so.3", **marker).ilp64 is True


def test_probe_skips_unknown_and_sgemm_less_libraries():
    # a reference (netlib) CBLAS is slower than fastnn's own kernels: not used
    assert probe("/usr/lib/x86_64-linux-gnu/libcblas.so.3", cblas_sgemm=not_called) is None
    assert probe("/usr/lib/libblas.so.3", sgemm_=not_called) is None
    # an OpenBLAS without the CBLAS interface
    assert probe("/usr/lib/libopenblas.so", openblas_get_config=recorder([])) is None


# ---- the order libraries are tried in ----------------------------------------------

@pytest.fixture
def fake_process(monkeypatch):
    """Replaces the three candidate sources and the loader; returns (libraries by path,
    the sources as lists to fill, the paths opened)."""
    libraries, opened = {}, []
    sources = {"bundled": [], "loaded": [], "fallbacks": []}
    monkeypatch.setattr(_blas, "_numpy_bundled", lambda: iter(sources["bundled"]))
    monkeypatch.setattr(_blas, "_loaded_libraries", lambda: list(sources["loaded"]))
    monkeypatch.setattr(_blas, "_system_fallbacks", lambda: list(sources["fallbacks"]))

    def open_library(path):
        opened.append(path)
        if path not in libraries:
            raise OSError(f"cannot open {path}")
        return libraries[path]
    monkeypatch.setattr(_blas, "_open", open_library)
    monkeypatch.setattr(_blas, "numpy_blas_name", lambda: None)
    return libraries, sources, opened


def _openblas(path):
    return FakeLibrary(path, openblas_get_config=recorder([], b"OpenBLAS"),
                       cblas_sgemm=not_called)


def _mkl(path):
    return FakeLibrary(path, MKL_Get_Max_Threads=recorder([], 1), cblas_sgemm_64=not_called)


def test_discover_takes_numpy_bundled_first(fake_process):
    libraries, sources, opened = fake_process
    libraries["/np/libscipy_openblas64_.so"] = _openblas("/np/libscipy_openblas64_.so")
    libraries["/conda/libmkl_rt.so.2"] = _mkl("/conda/libmkl_rt.so.2")
    sources["bundled"].append("/np/libscipy_openblas64_.so")
    sources["loaded"] += ["/conda/libmkl_rt.so.2", "/np/libscipy_openblas64_.so"]
    found = _blas.discover()
    assert (found.family, found.path) == ("openblas", "/np/libscipy_openblas64_.so")
    assert opened == ["/np/libscipy_openblas64_.so"]  # stops at the first fit


def test_discover_prefers_the_family_numpy_names(fake_process, monkeypatch):
    libraries, sources, opened = fake_process
    # e.g. a conda process where PyTorch loaded its OpenBLAS before NumPy's MKL
    for path, make in (("/torch/libopenblas.so", _openblas),
                       ("/conda/libmkl_rt.so.2", _mkl)):
        libraries[path] = make(path)
        sources["loaded"].append(path)
    assert _blas.discover().family == "openblas"  # NumPy says nothing: the first
    monkeypatch.setattr(_blas, "numpy_blas_name", lambda: "mkl-sdl")
    found = _blas.discover()
    assert (found.family, found.path, found.ilp64) == ("mkl", "/conda/libmkl_rt.so.2", True)


def test_discover_falls_back_to_another_family(fake_process, monkeypatch):
    libraries, sources, opened = fake_process
    monkeypatch.setattr(_blas, "numpy_blas_name", lambda: "accelerate")
    libraries["/usr/lib/libopenblas.so.0"] = _openblas("/usr/lib/libopenblas.so.0")
    sources["loaded"].append("/usr/lib/libopenblas.so.0")
    sources["fallbacks"].append("/nowhere/Accelerate")  # cannot be opened here
    assert _blas.discover().path == "/usr/lib/libopenblas.so.0"
    assert opened == ["/usr/lib/libopenblas.so.0", "/nowhere/Accelerate"]


def test_discover_opens_accelerate_only_when_nothing_else_serves(fake_process):
    libraries, sources, opened = fake_process
    libraries[_blas.ACCELERATE] = FakeLibrary(_blas.ACCELERATE, cblas_sgemm=not_called)
    sources["fallbacks"].append(_blas.ACCELERATE)
    libraries["/usr/lib/libcblas.so.3"] = FakeLibrary("/usr/lib/libcblas.so.3",
                                                      cblas_sgemm=not_called)
    sources["loaded"].append("/usr/lib/libcblas.so.3")  # a reference BLAS: skipped
    assert _blas.discover().family == "accelerate"
    libraries["/np/.dylibs/libscipy_openblas64_.dylib"] = _openblas("/np/.dylibs/x")
    sources["bundled"].append("/np/.dylibs/libscipy_openblas64_.dylib")
    opened.clear()
    assert _blas.discover().family == "openblas"
    assert _blas.ACCELERATE not in opened


def test_discover_finds_nothing(fake_process):
    libraries, sources, opened = fake_process
    sources["loaded"].append("/gone/libopenblas.so")
    assert _blas.discover() is None and opened == ["/gone/libopenblas.so"]


def test_candidates_are_tried_once(fake_process, tmp_path):
    libraries, sources, opened = fake_process
    target = tmp_path / "libopenblas.so.0"
    target.write_bytes(b"")
    link = tmp_path / "libopenblas.so"
    link.symlink_to(target)
    sources["bundled"].append(str(target))
    sources["loaded"] += [str(link), str(target)]
    assert list(_blas._candidates()) == [str(target)]


def test_accelerate_is_a_fallback_on_macos_only(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _blas._system_fallbacks() == [
        "/System/Library/Frameworks/Accelerate.framework/Accelerate"]
    monkeypatch.setattr(sys, "platform", "linux")
    assert _blas._system_fallbacks() == []


def test_loaded_libraries_keep_blas_names_only(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(_blas, "_loaded_linux", lambda: [
        "/usr/lib/libc.so.6", "/np/numpy.libs/libscipy_openblas64_-1.so",
        "/conda/lib/libmkl_rt.so.2", "/usr/lib/libblis.so.4", "/usr/lib64/libflexiblas.so.3",
        "/usr/lib/libgfortran.so.5", "/opt/blas-tools/libm.so"])
    assert _blas._loaded_libraries() == [
        "/np/numpy.libs/libscipy_openblas64_-1.so", "/conda/lib/libmkl_rt.so.2",
        "/usr/lib/libblis.so.4", "/usr/lib64/libflexiblas.so.3"]

    def fails():
        raise OSError("no /proc")
    monkeypatch.setattr(_blas, "_loaded_linux", fails)
    assert _blas._loaded_libraries() == []


def test_no_blas_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTNN_NO_BLAS", "1")
    monkeypatch.setattr(_blas, "discover", not_called)
    monkeypatch.setattr(_blas, "_state", {"tried": False, "lib": None, "found": None})
    assert _blas.available() is False
    assert _blas.set_num_threads(2) is False and _blas.get_num_threads() is None
    info = _blas.info()
    assert info["found"] is False and info["family"] is None
    assert info["disabled_by"] == "FASTNN_NO_BLAS"


# ---- threads and show_config, per family --------------------------------------------

def _use(monkeypatch, found):
    """Makes `found` the BLAS in use for _blas's Python side (the C core is untouched)."""
    monkeypatch.setattr(_blas, "_state", {"tried": True, "lib": found.lib, "found": found})


@pytest.mark.parametrize("family, path, symbols, setter, getter", [
    ("openblas", "/np/libscipy_openblas64_.so",
     ("scipy_openblas_get_config64_", "scipy_cblas_sgemm64_"),
     "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas", "/usr/lib/libopenblas.so.0", ("openblas_get_config", "cblas_sgemm"),
     "openblas_set_num_threads", "openblas_get_num_threads"),
    ("mkl", "/conda/libmkl_rt.so.2", ("MKL_Get_Version_String", "cblas_sgemm_64"),
     "MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
    ("blis", "/usr/lib/libblis.so.4", ("bli_info_get_version_str", "cblas_sgemm"),
     "bli_thread_set_num_threads", "bli_thread_get_num_threads"),
    ("flexiblas", "/usr/lib64/libflexiblas.so.3", ("cblas_sgemm",),
     "flexiblas_set_num_threads", "flexiblas_get_num_threads")])
def test_thread_calls_per_family(monkeypatch, family, path, symbols, setter, getter):
    set_log, get_log = [], []
    lib = FakeLibrary(path, **{s: recorder([], b"v1") for s in symbols},
                      **{setter: recorder(set_log), getter: recorder(get_log, 3)})
    found = _blas.probe(lib, path)
    assert found.family == family
    _use(monkeypatch, found)
    assert _blas.set_num_threads(3) is True
    assert set_log == [(3,)]
    assert _blas.get_num_threads() == 3 and get_log == [()]


def test_blis_thread_count_is_a_64_bit_dim_t(monkeypatch):
    log = []
    lib = FakeLibrary("/usr/lib/libblis.so.4", bli_info_get_version_str=recorder([], b"1"),
                      cblas_sgemm=not_called, bli_thread_set_num_threads=recorder(log))
    _use(monkeypatch, _blas.probe(lib, lib._name))
    _blas.set_num_threads(2)
    assert log == [(2,)]
    assert _blas.FAMILIES["blis"].set_threads[0][1] is ctypes.c_int64


def test_mkl_local_setter_serves_when_the_global_one_is_missing(monkeypatch):
    log = []
    lib = FakeLibrary("/x/libmkl_rt.so", MKL_Get_Max_Threads=recorder([], 1),
                      cblas_sgemm=not_called, mkl_set_num_threads_local=recorder(log, 0))
    _use(monkeypatch, _blas.probe(lib, lib._name))
    assert _blas.set_num_threads(2) is True and log == [(2,)]


def test_accelerate_has_no_thread_calls(monkeypatch):
    lib = FakeLibrary(_blas.ACCELERATE, cblas_sgemm=not_called)
    _use(monkeypatch, _blas.probe(lib, lib._name))
    assert _blas.set_num_threads(2) is False
    assert _blas.get_num_threads() is None


def test_fastnn_set_num_threads_limits_the_blas_in_use(monkeypatch):
    log = []
    lib = FakeLibrary("/conda/libmkl_rt.so.2", MKL_Get_Max_Threads=recorder([], 1),
                      cblas_sgemm_64=not_called, MKL_Set_Num_Threads=recorder(log))
    _use(monkeypatch, _blas.probe(lib, lib._name))
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(1)
    finally:
        _engine.set_num_threads(before)
    assert log == [(1,)]


def test_show_config_reports_the_family(monkeypatch):
    def version(buffer, length):
        text = b"Intel(R) oneAPI Math Kernel Library Version 2024.2"
        ctypes.memmove(buffer, text, len(text) + 1)
        assert length.value == 512
    lib = FakeLibrary("/conda/libmkl_rt.so.2", MKL_Get_Max_Threads=recorder([], 4),
                      cblas_sgemm_64=not_called, MKL_Get_Version_String=version)
    _use(monkeypatch, _blas.probe(lib, lib._name))
    monkeypatch.setattr(_blas, "numpy_blas_name", lambda: "mkl-sdl")
    blas = fastnn.show_config(print_=False)["blas"]
    assert blas == {"found": True, "family": "mkl", "library": "/conda/libmkl_rt.so.2",
                    "symbol": "cblas_sgemm_64", "ilp64": True, "threads": 4,
                    "config": "Intel(R) oneAPI Math Kernel Library Version 2024.2",
                    "numpy_blas": "mkl-sdl"}


# ---- the C core calls what was found, with the integer width found ---------------------

@pytest.fixture
def restore_blas():
    """Puts the real BLAS back in the C core after a test registered a fake one."""
    if not _blas.available():
        pytest.skip("no real BLAS here to restore after registering a fake one")
    saved = dict(_blas._state)
    yield
    _blas._state.clear()
    _blas._state.update(saved)
    _blas._register(saved["found"])


@pytest.mark.parametrize("path, symbols, int_type", [
    ("/conda/libmkl_rt.so.2", {"MKL_Get_Max_Threads": recorder([], 1)}, ctypes.c_int64),
    ("/conda/libmkl_rt.so.1", {"MKL_Get_Max_Threads": recorder([], 1)}, ctypes.c_int),
    (_blas.ACCELERATE, {}, ctypes.c_int64),
    (_blas.ACCELERATE, {}, ctypes.c_int),
    ("/usr/lib/libblis.so.4", {"bli_info_get_version_str": recorder([], b"1"),
                               "bli_info_get_blas_int_type_size": recorder([], 32)},
     ctypes.c_int)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_engine_calls_the_registered_sgemm(restore_blas, rng, monkeypatch, path, symbols,
                                           int_type, trans_a, trans_b):
    monkeypatch.delenv("MKL_INTERFACE_LAYER", raising=False)
    calls = []
    fn = make_sgemm(int_type, calls)
    ilp64_names = {"/conda/libmkl_rt.so.2": "cblas_sgemm_64",
                   _blas.ACCELERATE: "cblas_sgemm$NEWLAPACK$ILP64"}
    name = ilp64_names[path] if int_type is ctypes.c_int64 else "cblas_sgemm"
    lib = FakeLibrary(path, **symbols, **{name: fn})
    found = _blas.probe(lib, path)
    assert (found.symbol, found.ilp64) == (name, int_type is ctypes.c_int64)
    _blas._register(found)
    m, n, k = 5, 3, 7
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    FakeSizes.current = (m, n, k, a.shape[1], b.shape[1], n)
    try:
        c = _engine.sgemm(a, b, trans_a, trans_b, use_blas=True)
    finally:
        FakeSizes.current = None
    assert calls == [(101, 112 if trans_a else 111, 112 if trans_b else 111, m, n, k,
                      a.shape[1], b.shape[1], n)]
    op_a = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    op_b = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    np.testing.assert_allclose(c, op_a @ op_b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ilp64", [True, False])
def test_register_hands_the_address_and_width_to_the_c_core(monkeypatch, ilp64):
    # (on x86-64 a width mismatch can go unnoticed in a product: checked here directly)
    monkeypatch.delenv("MKL_INTERFACE_LAYER", raising=False)
    registered = []
    monkeypatch.setattr(_engine, "set_cblas_sgemm", lambda *args: registered.append(args))
    monkeypatch.setattr(_blas, "_state", {"tried": True, "lib": None, "found": None})
    fn = make_sgemm(ctypes.c_int64 if ilp64 else ctypes.c_int, [])
    lib = FakeLibrary("/conda/libmkl_rt.so.2", MKL_Get_Max_Threads=recorder([], 1),
                      **{"cblas_sgemm_64" if ilp64 else "cblas_sgemm": fn})
    found = _blas.probe(lib, lib._name)
    _blas._register(found)
    assert registered == [(ctypes.cast(fn, ctypes.c_void_p).value, ilp64)]
    assert _blas._state["found"] is found and _blas.available()


# ---- this machine --------------------------------------------------------------------

def test_numpy_openblas_is_found_here():
    if os.environ.get("FASTNN_NO_BLAS"):
        pytest.skip("FASTNN_NO_BLAS is set")
    name = _blas.numpy_blas_name()
    if name is not None and _blas.family_of_name(name) != "openblas":
        pytest.skip(f"NumPy here uses {name}, not OpenBLAS")
    assert _blas.available()
    info = _blas.info()
    assert info["family"] == "openblas"
    assert "openblas" in os.path.basename(info["library"]).lower()
    assert os.path.exists(info["library"])
    assert info["symbol"] in ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "scipy_cblas_sgemm",
                              "cblas_sgemm")
    assert info["ilp64"] == ("64_" in info["symbol"] or "USE64BITINT" in info["config"])
    assert info["config"].startswith("OpenBLAS")
    # the thread setter reaches the real library
    before = _blas.get_num_threads()
    assert before >= 1
    try:
        assert _blas.set_num_threads(1) and _blas.get_num_threads() == 1
    finally:
        _blas.set_num_threads(before)
    assert _blas.get_num_threads() == before
    # and the C core's BLAS path computes with it
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 48)).astype(np.float32)
    b = rng.standard_normal((48, 32)).astype(np.float32)
    np.testing.assert_allclose(_engine.sgemm(a, b, use_blas=True),
                               a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")
def test_loaded_libraries_here_include_numpys_blas():
    if not _blas.available():
        pytest.skip("no BLAS found")
    loaded = [os.path.realpath(p) for p in _blas._loaded_libraries()]
    assert os.path.realpath(_blas.info()["library"]) in loaded
