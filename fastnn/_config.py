"""fastnn.show_config(): what this fastnn runs on (versions, kernel set, BLAS, compiler,
CPU features), for bug reports and benchmarks. Read-only: it changes no setting (it may
look up NumPy's BLAS, as the first large layer would)."""
from __future__ import annotations

import os
import platform
import sys
import sysconfig
from typing import Any, Optional

# the CPU features each kernel level of csrc/ needs (narrow.c / optimizers.c's dispatch)
_LEVEL_NEEDS = {"baseline": (), "avx2": ("AVX2", "FMA3"), "avx512": ("AVX2", "FMA3", "AVX512F")}
# the features worth showing, in this order (NumPy's names); others are left out
_SHOWN_FEATURES = ("SSE2", "SSE42", "AVX", "FMA3", "AVX2", "AVX512F", "AVX512BW", "AVX512VL",
                   "AVX512_BF16", "AVX512BF16", "NEON", "ASIMD", "SVE")


def _cpu_features():
    """The SIMD features the CPU has, as NumPy's dispatcher detected them (a dict of
    name -> bool), or from /proc/cpuinfo's flags when NumPy does not say."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = None
    if features is not None:
        return {k: bool(v) for k, v in features.items()}
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return {}
    names = {"sse2": "SSE2", "sse4_2": "SSE42", "avx": "AVX", "fma": "FMA3", "avx2": "AVX2",
             "avx512f": "AVX512F", "avx512bw": "AVX512BW", "avx512vl": "AVX512VL"}
    return {name: flag in flags for flag, name in names.items()}


def _blas_info():
    """Whether fastnn uses a BLAS for large GEMMs, and which: its family (openblas, mkl,
    blis, flexiblas, accelerate), library, sgemm symbol and integer width, threads and
    build string when the library tells them, and the BLAS NumPy names (fastnn._blas)."""
    from fastnn import _blas
    return _blas.info()


def _config():
    import numpy as np

    import fastnn
    from fastnn import _engine
    features = _cpu_features()
    available = [level for level in _engine.KERNEL_LEVELS
                 if all(features.get(f, False) for f in _LEVEL_NEEDS.get(level, ()))]
    return {
        "fastnn": {"version": fastnn.__version__,
                   "path": os.path.dirname(os.path.abspath(fastnn.__file__))},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "numpy": {"version": np.__version__},
        "platform": {"system": platform.system(), "machine": platform.machine(),
                     "processor": platform.processor() or None,
                     "cpu_count": os.cpu_count()},
        "kernels": {"in_use": _engine.KERNELS, "levels": list(_engine.KERNEL_LEVELS),
                    "available": available, "FASTNN_SIMD": os.environ.get("FASTNN_SIMD")},
        "threads": {"fastnn": _engine.get_num_threads(), "cpus_usable": _engine.cpu_count(),
                    "parallel_min_flop": _engine.parallel_min_flop()},
        "blas": _blas_info(),
        "compiler": {"python_compiler": platform.python_compiler(),
                     "CC": sysconfig.get_config_var("CC"),
                     "CFLAGS": sysconfig.get_config_var("CFLAGS")},
        "cpu_features": {"detected": [f for f in _SHOWN_FEATURES if features.get(f)],
                         "all": sorted(f for f, on in features.items() if on)},
    }


def show_config(print_: bool = True) -> Optional[dict[str, dict[str, Any]]]:
    """Shows what fastnn runs on: versions, kernel set, BLAS, compiler and CPU features.

    Useful in bug reports and next to benchmark figures. The sections are:

    - "fastnn": its version and where it is installed;
    - "python", "numpy": their versions;
    - "platform": operating system, machine, processor and core count;
    - "kernels": the SIMD kernel set in use for narrow layers and optimizers
      ("baseline", "avx2" or "avx512"), every level fastnn knows, the levels this CPU
      can run, and the FASTNN_SIMD environment cap if set;
    - "threads": the threads fastnn computes with (fastnn.set_num_threads), the CPUs
      this process may use, and the work (floating-point operations) from which a step
      or predict call is split between the threads;
    - "blas": whether a BLAS sgemm was found for large layers (the BLAS NumPy uses:
      OpenBLAS, MKL, BLIS, FlexiBLAS or, on macOS, Accelerate), its family, library path,
      sgemm symbol and whether it takes 64-bit integers (ilp64), its thread count and
      build string when the library reports them, and the BLAS NumPy's build names;
    - "compiler": the compiler and flags Python was built with (sysconfig; fastnn's
      extension is built with the same compiler and adds its own optimisation flags);
    - "cpu_features": the SIMD features detected (NumPy's CPU dispatcher).

    Args:
        print_: default True prints the sections and returns None; False returns
            them as a dict of dicts instead, printing nothing.

    Returns:
        None, or (print_=False) a dict keyed by the section names above.

    Example::

        >>> import fastnn
        >>> info = fastnn.show_config(print_=False)
        >>> info["kernels"]["in_use"] in info["kernels"]["levels"]
        True
    """
    config = _config()
    if not print_:
        return config
    for section, values in config.items():
        print(f"{section}:")
        for key, value in values.items():
            if isinstance(value, list):
                value = " ".join(value) if value else "(none)"
            print(f"  {key}: {value}")
    return None
