"""Builds fastnn's extension: csrc/ (C99 kernels) bound by fastnn/_engine.pyx.

Portable x86-64 code: no -march=native; the hot loops carry target_clones
(an AVX2+FMA clone and a baseline clone, picked at load time, see csrc/fastnn.h).
-fno-math-errno lets sqrtf vectorise (it never sets errno for our inputs)."""
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCES = ["activations.c", "dense.c", "engine.c", "gemm.c", "losses.c", "metrics.c",
           "narrow.c", "optimizers.c", "ops/ops.c", "ops/dense.c", "ops/activation.c",
           "ops/dropout.c", "ops/merge.c", "ops/noise.c", "ops/prelu.c",
           "regularizers.c", "ops/normalization.c", "ops/embedding.c", "ops/regularization.c",
           "pool.c", "parallel.c"]

if sys.platform == "win32":
    compile_args = ["/O2"]
else:
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math",
                    "-Wall", "-Wno-unused-function"]

extension = Extension(
    "fastnn._engine",
    sources=["fastnn/_engine.pyx"] + [os.path.join("csrc", f) for f in SOURCES],
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
)

setup(ext_modules=cythonize([extension], language_level=3,
                            compiler_directives={"boundscheck": False, "wraparound": False,
                                                 "cdivision": True}))
