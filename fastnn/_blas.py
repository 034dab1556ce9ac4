"""Finds the CBLAS sgemm of the OpenBLAS that NumPy already loaded, and hands
its address to the C core. Using NumPy's own copy adds no dependency and keeps
one BLAS thread pool in the process (a second OpenBLAS, e.g. SciPy's, would
fight NumPy's for the two cores). When none is found, fastnn's portable GEMM
serves every size."""
import glob
import os

_state = {"tried": False, "lib": None}

# (symbol, ILP64) in the order NumPy wheels (scipy-openblas) and plain builds name them
_SGEMM_SYMBOLS = [("scipy_cblas_sgemm64_", True), ("cblas_sgemm64_", True),
                  ("scipy_cblas_sgemm", False), ("cblas_sgemm", False)]
_THREAD_SYMBOLS = ["scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                   "openblas_set_num_threads64_", "openblas_set_num_threads"]


def _candidate_libraries():
    """NumPy wheels' bundled OpenBLAS first, then (Linux) any BLAS already mapped into
    the process, e.g. the MKL or system OpenBLAS of a conda or distribution NumPy."""
    import numpy as np
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*", "numpy.libs/*blas*"):
        yield from sorted(glob.glob(os.path.join(root, pattern)))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if ".so" in line}
    except OSError:
        return
    for path in sorted(paths):
        name = os.path.basename(path).lower()
        if any(key in name for key in ("blas", "mkl_rt", "libmkl")):
            yield path


def _load():
    _state["tried"] = True
    if os.environ.get("FASTNN_NO_BLAS"):
        return
    import ctypes
    from fastnn import _engine
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: same handle, same pool
        except OSError:
            continue
        for symbol, ilp64 in _SGEMM_SYMBOLS:
            fn = getattr(lib, symbol, None)
            if fn is not None:
                _engine.set_cblas_sgemm(ctypes.cast(fn, ctypes.c_void_p).value, ilp64)
                _state["lib"] = lib
                return


def available():
    """True when a BLAS sgemm is registered with the C core."""
    if not _state["tried"]:
        _load()
    return _state["lib"] is not None


def set_num_threads(n):
    """Threads of the BLAS pool (fastnn.set_num_threads checked n)."""
    if not available():
        return
    for symbol in _THREAD_SYMBOLS:
        fn = getattr(_state["lib"], symbol, None)
        if fn is not None:
            fn(n)
            return
