# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Binds csrc/ to Python: the one place where buffers are checked.

Every entry point checks dtype (float32), C-contiguity and shapes once and
raises ValueError/TypeError naming the argument and its shape; the kernels
behind it trust their inputs and run with the GIL released. Entry points take
ndarrays, not memoryviews: acquiring a buffer per argument costs ~1 us a call,
reading PyArray_DATA a few ns (DESIGN.md, "Kernel strategy").
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t, intptr_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memset
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK,
                               NOWAIT_LOCK)

from fastnn._cfastnn cimport *

cnp.import_array()

import os as _os


KERNEL_LEVELS = ("baseline", "avx2", "avx512")


def select_kernels(level="avx512"):
    """Picks the narrow-layer kernels: the best of "avx512", "avx2" (AVX2+FMA) and
    "baseline" that the CPU has, up to `level`. Returns the name picked. Not
    thread-safe: call it when no model is running (tests use it to check each set).
    """
    if level not in KERNEL_LEVELS:
        raise ValueError(f"level must be one of {KERNEL_LEVELS}, got {level!r}")
    fnn_optimizer_select(KERNEL_LEVELS.index(level))
    return fnn_narrow_select(KERNEL_LEVELS.index(level)).decode()


# FASTNN_SIMD caps the kernels for the whole process: 0 or "baseline", "avx2".
_cap = _os.environ.get("FASTNN_SIMD", "avx512")
KERNELS = select_kernels("baseline" if _cap == "0" else _cap if _cap in KERNEL_LEVELS else "avx512")

# Names of the C enums (csrc/fastnn.h): the values come from the header, never retyped.
ACTIVATIONS = {"linear": FNN_ACT_LINEAR, "relu": FNN_ACT_RELU, "sigmoid": FNN_ACT_SIGMOID,
               "tanh": FNN_ACT_TANH, "softmax": FNN_ACT_SOFTMAX, "relu6": FNN_ACT_RELU6,
               "leaky_relu": FNN_ACT_LEAKY_RELU, "elu": FNN_ACT_ELU, "selu": FNN_ACT_SELU,
               "gelu": FNN_ACT_GELU, "gelu_tanh": FNN_ACT_GELU_TANH, "silu": FNN_ACT_SILU,
               "softplus": FNN_ACT_SOFTPLUS, "softsign": FNN_ACT_SOFTSIGN,
               "hard_sigmoid": FNN_ACT_HARD_SIGMOID, "exponential": FNN_ACT_EXPONENTIAL,
               "mish": FNN_ACT_MISH, "log_softmax": FNN_ACT_LOG_SOFTMAX,
               "relu_general": FNN_ACT_RELU_GENERAL}
# the engine's loss kernels (csrc/losses.c; fastnn.losses maps Keras' names onto them)
LOSSES = {"mse": FNN_LOSS_MSE, "mae": FNN_LOSS_MAE,
          "sparse_softmax_crossentropy": FNN_LOSS_SPARSE_CCE_LOGITS,
          "softmax_crossentropy": FNN_LOSS_CCE_LOGITS,
          "sigmoid_crossentropy": FNN_LOSS_BCE_LOGITS, "mape": FNN_LOSS_MAPE,
          "msle": FNN_LOSS_MSLE, "huber": FNN_LOSS_HUBER, "log_cosh": FNN_LOSS_LOG_COSH,
          "kld": FNN_LOSS_KLD, "poisson": FNN_LOSS_POISSON, "binary_hinge": FNN_LOSS_HINGE,
          "binary_squared_hinge": FNN_LOSS_SQUARED_HINGE,
          "categorical_hinge": FNN_LOSS_CATEGORICAL_HINGE, "cosine": FNN_LOSS_COSINE}
REDUCTIONS = {"sum_over_batch_size": FNN_REDUCE_MEAN, "mean": FNN_REDUCE_MEAN,
              "sum": FNN_REDUCE_SUM, "mean_with_sample_weight": FNN_REDUCE_WEIGHTED_MEAN}
OP_KINDS = {"dense": FNN_OP_DENSE, "activation": FNN_OP_ACTIVATION, "dropout": FNN_OP_DROPOUT,
            "add": FNN_OP_ADD, "subtract": FNN_OP_SUBTRACT, "multiply": FNN_OP_MULTIPLY,
            "average": FNN_OP_AVERAGE, "maximum": FNN_OP_MAXIMUM, "minimum": FNN_OP_MINIMUM,
            "concatenate": FNN_OP_CONCAT, "gaussian_noise": FNN_OP_GAUSSIAN_NOISE,
            "gaussian_dropout": FNN_OP_GAUSSIAN_DROPOUT, "prelu": FNN_OP_PRELU,
            "normalization": FNN_OP_NORMALIZATION, "batch_norm": FNN_OP_BATCH_NORM,
            "layer_norm": FNN_OP_LAYER_NORM, "embedding": FNN_OP_EMBEDDING,
            "activity_regularization": FNN_OP_ACTIVITY_REG}
# weight constraints (csrc/regularizers.c) and the norms they take
CONSTRAINTS = {"max_norm": FNN_CONSTRAINT_MAX_NORM, "non_neg": FNN_CONSTRAINT_NON_NEG,
               "unit_norm": FNN_CONSTRAINT_UNIT_NORM,
               "min_max_norm": FNN_CONSTRAINT_MIN_MAX_NORM}
CONSTRAINT_AXES = {"columns": FNN_CONSTRAIN_COLUMNS, "rows": FNN_CONSTRAIN_ROWS,
                   "all": FNN_CONSTRAIN_ALL}
DENSE_PATHS = {"panels": FNN_PATH_PANELS, "portable": FNN_PATH_PORTABLE, "blas": FNN_PATH_BLAS}
# the engine's metric statistics (csrc/metrics.c; fastnn.metrics maps Keras' metrics on them)
METRICS = {"mse": FNN_METRIC_MSE, "mae": FNN_METRIC_MAE, "accuracy": FNN_METRIC_ACCURACY,
           "binary_accuracy": FNN_METRIC_BINARY_ACCURACY,
           "categorical_accuracy": FNN_METRIC_CATEGORICAL_ACCURACY,
           "sparse_categorical_accuracy": FNN_METRIC_SPARSE_CATEGORICAL_ACCURACY,
           "top_k": FNN_METRIC_TOP_K, "sparse_top_k": FNN_METRIC_SPARSE_TOP_K,
           "loss": FNN_METRIC_LOSS, "r2": FNN_METRIC_R2, "confusion": FNN_METRIC_CONFUSION,
           "fscore": FNN_METRIC_FSCORE, "equality": FNN_METRIC_EQUALITY}
MAX_OP_INPUTS = FNN_MAX_OP_INPUTS
RUN_STATUS = {FNN_RUN_PAUSED: "paused", FNN_RUN_EPOCH_END: "epoch_end", FNN_RUN_DONE: "done",
              FNN_RUN_DIVERGED: "diverged"}
_PLAN_ERRORS = {FNN_EPLAN_TENSOR: "a tensor id is out of range or a width is < 1",
                FNN_EPLAN_PRODUCER: "an op reads a tensor not produced before it, or two "
                                    "ops (or heads) write one tensor",
                FNN_EPLAN_SHAPE: "an op's widths do not agree",
                FNN_EPLAN_PARAMS: "weights lie outside the parameter buffers, or two ops "
                                  "share a kernel but not its bias",
                FNN_EPLAN_KIND: "an unknown op kind, path, activation, loss or metric",
                FNN_EPLAN_BATCH: "max_batch must be >= 1"}
NARROW = FNN_NARROW  # layers of at most this many units run the narrow kernels, never a GEMM


cdef inline float *fptr(cnp.ndarray a) noexcept nogil:
    return <float *>cnp.PyArray_DATA(a)


cdef inline tuple _shape(cnp.ndarray a):
    return (<object>a).shape


cdef int _check(cnp.ndarray a, str name, int ndim=-1) except -1:
    """Raises unless `a` is a C-contiguous float32 array (of `ndim` dims)."""
    if a is None:
        raise TypeError(f"{name} must be a float32 ndarray, got None")
    if cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32:
        raise TypeError(f"{name} must be float32, got dtype {a.dtype} with shape {_shape(a)}")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{name} must be float32 in native byte order, got dtype "
                        f"{a.dtype.str} with shape {_shape(a)}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{name} must be C-contiguous (shape {_shape(a)})")
    if ndim >= 0 and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {_shape(a)}")
    return 0


cdef int _check_shape(cnp.ndarray a, str name, tuple shape) except -1:
    _check(a, name, len(shape))
    if _shape(a) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {_shape(a)}")
    return 0


cdef fnn_sgemm_fn _gemm(bint use_blas) noexcept nogil:
    if use_blas:
        return fnn_sgemm_cblas
    return NULL


def _act_id(act):
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[act]


# ---- BLAS registration ---------------------------------------------------------

def set_cblas_sgemm(intptr_t address, bint ilp64):
    """Registers a CBLAS sgemm by address (found by fastnn._blas)."""
    if address == 0:
        raise ValueError("address must be non-zero")
    fnn_set_cblas_sgemm(<void *>address, ilp64)


def have_cblas():
    return bool(fnn_have_cblas())


# ---- single kernels (the API's building blocks; tested against NumPy) ------------

def sgemm(cnp.ndarray a, cnp.ndarray b, bint trans_a=False, bint trans_b=False,
          bint use_blas=False):
    """op(a) . op(b) as a new float32 array."""
    _check(a, "a", 2)
    _check(b, "b", 2)
    cdef int64_t m = a.shape[1] if trans_a else a.shape[0]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    cdef int64_t k2 = b.shape[1] if trans_b else b.shape[0]
    cdef int64_t n = b.shape[0] if trans_b else b.shape[1]
    if k != k2:
        raise ValueError(f"inner sizes differ: a {_shape(a)} (trans={trans_a}), b {_shape(b)} (trans={trans_b})")
    cdef cnp.ndarray c = np.empty((m, n), dtype=np.float32)
    cdef fnn_sgemm_fn mm = fnn_sgemm_portable
    if use_blas:
        mm = fnn_sgemm_cblas
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    if m and n:
        with nogil:
            mm(trans_a, trans_b, m, n, k, 1.0, fptr(a), lda if lda else 1, fptr(b),
               ldb if ldb else 1, 0.0, fptr(c), n)
    return c


PATHS = ("auto", "panels", "narrow", "portable", "blas")


cdef int _path_check(str path) except -1:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    return 0


cdef int64_t _pad(int64_t width) noexcept nogil:
    return (width + FNN_NARROW - 1) // FNN_NARROW * FNN_NARROW


cdef bint _uses_panels(str path, int64_t n_out) except -1:
    """path "panels"/"auto": fastnn's panel kernels; "narrow": the same, for layers
    of at most 16 units only; "portable": the plain portable GEMM; "blas": the BLAS."""
    if path == "narrow" and n_out > FNN_NARROW:
        raise ValueError(f"the narrow path takes at most {FNN_NARROW} units, got {n_out}")
    return path in ("auto", "panels", "narrow")


def dense_forward(cnp.ndarray x, cnp.ndarray w, cnp.ndarray b=None, activation="linear",
                  bint use_blas=False, str path="auto"):
    """act(x . w + b) as a new (n, units) float32 array.

    path: "panels" or "auto" (fastnn's register-blocked kernels, 16 columns at a time),
    "narrow" (the same, at most 16 units), "portable" (the plain portable GEMM), "blas"
    (the registered CBLAS). use_blas=True is path="blas".
    """
    cdef int act = _act_id(activation)
    if use_blas:
        path = "blas"
    _path_check(path)
    _check(x, "x", 2)
    _check(w, "w", 2)
    cdef int64_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    if w.shape[0] != n_in:
        raise ValueError(f"x {_shape(x)} and w {_shape(w)} do not chain")
    cdef float *bp = NULL
    if b is not None:
        _check_shape(b, "b", (n_out,))
        bp = fptr(b)
    cdef bint use_panels = _uses_panels(path, n_out)
    cdef int64_t ldy = _pad(n_out) if use_panels else n_out
    cdef cnp.ndarray y = np.empty((n, ldy), dtype=np.float32)
    cdef cnp.ndarray scratch = np.empty(fnn_dense_scratch(n_in, n_out), dtype=np.float32)
    cdef float *sp = fptr(scratch) if use_panels else NULL
    cdef fnn_sgemm_fn mm = _gemm(path == "blas")
    if n:
        with nogil:
            fnn_dense_forward(fptr(x), n_in, fptr(w), bp, fptr(y), ldy, n, n_in, n_out, act, mm, sp)
    return y[:, :n_out].copy() if ldy != n_out else y


def dense_backward(cnp.ndarray x, cnp.ndarray w, cnp.ndarray y, cnp.ndarray gy,
                   activation="linear", bint use_bias=True, bint use_blas=False,
                   str path="auto"):
    """Returns (gx, gw, gb) for y = act(x . w + b) given gy = dL/dy (not modified)."""
    cdef int act = _act_id(activation)
    if use_blas:
        path = "blas"
    _path_check(path)
    _check(x, "x", 2)
    _check(w, "w", 2)
    cdef int64_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    if w.shape[0] != n_in:
        raise ValueError(f"x {_shape(x)} and w {_shape(w)} do not chain")
    _check_shape(y, "y", (n, n_out))
    _check_shape(gy, "gy", (n, n_out))
    cdef bint use_panels = _uses_panels(path, n_out)
    # the panel kernels read and write whole 16-column panels: pad y, dz and gx
    cdef int64_t ldy = _pad(n_out) if use_panels else n_out
    cdef int64_t ldgx = _pad(n_in) if use_panels else n_in
    cdef cnp.ndarray yp = np.zeros((n, ldy), dtype=np.float32)
    cdef cnp.ndarray dz = np.zeros((n, ldy), dtype=np.float32)
    yp[:, :n_out] = y
    dz[:, :n_out] = gy
    cdef cnp.ndarray gx = np.empty((n, ldgx), dtype=np.float32)
    cdef cnp.ndarray gw = np.empty((n_in, n_out), dtype=np.float32)
    cdef cnp.ndarray gb = np.empty((n_out,), dtype=np.float32)
    cdef cnp.ndarray scratch = np.empty(fnn_dense_scratch(n_in, n_out), dtype=np.float32)
    cdef float *sp = fptr(scratch) if use_panels else NULL
    cdef float *gbp = fptr(gb) if use_bias else NULL
    cdef fnn_sgemm_fn mm = _gemm(path == "blas")
    if n:
        with nogil:
            fnn_dense_backward(fptr(x), n_in, fptr(w), fptr(yp), fptr(dz), ldy, fptr(gx), ldgx,
                               fptr(gw), gbp, n, n_in, n_out, act, mm, sp)
    else:
        gw[...] = 0
        gb[...] = 0
    return gx[:, :n_in].copy(), gw, (gb if use_bias else None)


cdef tuple _rows(cnp.ndarray a):
    """(rows, row width) of an array seen as rows of its last axis."""
    cdef int64_t m = a.shape[a.ndim - 1] if a.ndim else 1
    return (cnp.PyArray_SIZE(a) // m if m else 0), m


def act_needs_input(activation):
    """True if the activation's derivative needs its input (a dense op cannot fuse it)."""
    return bool(fnn_act_needs_input(_act_id(activation)))


cdef int _act_params(params, float *out) except -1:
    """The activation's parameters (csrc/fastnn.h), up to FNN_OP_AUX floats, into out."""
    if len(params) > FNN_OP_AUX:
        raise ValueError(f"at most {FNN_OP_AUX} activation parameters, got {params!r}")
    for i, v in enumerate(params):
        out[i] = v
    return 0


def activation_forward(cnp.ndarray x, activation, params=None):
    """act(x) as a new array (the softmaxes over the last axis); params: the activation's
    parameters (csrc/fastnn.h), None for Keras' defaults."""
    cdef int act = _act_id(activation)
    cdef float p[FNN_OP_AUX]
    if params is not None:
        _act_params(params, p)
    _check(x, "x")
    cdef cnp.ndarray y = x.copy()
    cdef int64_t n, m
    n, m = _rows(y)
    cdef const float *pp = p if params is not None else NULL
    if n and m:
        with nogil:
            fnn_act_forward_p(act, pp, fptr(y), m, n, m)
    return y


def activation_backward(cnp.ndarray y, cnp.ndarray gy, activation, cnp.ndarray x=None,
                        params=None):
    """dL/dz given the activation's output y, dL/dy, and (for the activations that need
    it: act_needs_input) its input x."""
    cdef int act = _act_id(activation)
    cdef float p[FNN_OP_AUX]
    if params is not None:
        _act_params(params, p)
    _check(y, "y")
    _check_shape(gy, "gy", _shape(y))
    if x is not None:
        _check_shape(x, "x", _shape(y))
    elif fnn_act_needs_input(act):
        raise ValueError(f"the derivative of {activation!r} needs its input x")
    cdef cnp.ndarray g = gy.copy()
    cdef int64_t n, m
    n, m = _rows(y)
    cdef const float *pp = p if params is not None else NULL
    cdef const float *xp = fptr(x) if x is not None else NULL
    if n and m:
        with nogil:
            fnn_act_backward_p(act, pp, xp, m, fptr(y), fptr(g), m, n, m)
    return g


cdef int _loss_args(str kind, cnp.ndarray pred, cnp.ndarray target) except -1:
    """Checks a loss kernel's arguments; returns the kernel's enum."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid: {sorted(LOSSES)}")
    cdef int k = LOSSES[kind]
    _check(pred, "pred", 2)
    cdef int64_t n = pred.shape[0], m = pred.shape[1]
    if k == FNN_LOSS_SPARSE_CCE_LOGITS:
        _check_shape(target, "target", (n,))
        if n and (target.min() < 0 or target.max() >= m or np.any(target != np.floor(target))):
            raise ValueError(f"labels must be integers in [0, {m}), got range "
                             f"[{target.min()}, {target.max()}]")
    else:
        _check_shape(target, "target", (n, m))
    if n == 0 or m == 0:
        raise ValueError(f"pred must not be empty, got shape {_shape(pred)}")
    return k


def loss(str kind, cnp.ndarray pred, cnp.ndarray target, float param=0.0):
    """(mean loss, dL/dpred) for 2-D pred; target like pred, or (n,) labels for CCE;
    param: the kernel's parameter (loss_rows)."""
    cdef int k = _loss_args(kind, pred, target)
    cdef int64_t n = pred.shape[0], m = pred.shape[1]
    cdef cnp.ndarray grad = np.empty_like(pred)
    cdef double value
    with nogil:
        value = fnn_loss_sum(k, param, fptr(pred), m, fptr(target), NULL, fptr(grad),
                             1.0 / <double>n, n, m, NULL) / <double>n
    return value, grad


def loss_rows(str kind, cnp.ndarray pred, cnp.ndarray target, float param=0.0,
              cnp.ndarray weight=None):
    """(L, grad): each row's loss L_i (float64 (n,)) and grad = d(sum_i w_i L_i)/dpred
    (float32 like pred); weight: None (all 1) or (n,) float32. param: the kernel's
    parameter (huber's delta, the cross-entropies' label smoothing)."""
    cdef int k = _loss_args(kind, pred, target)
    cdef int64_t n = pred.shape[0], m = pred.shape[1]
    cdef const float *wp = NULL
    if weight is not None:
        _check_shape(weight, "weight", (n,))
        wp = fptr(weight)
    cdef cnp.ndarray grad = np.empty_like(pred)
    cdef cnp.ndarray values = np.empty(n, dtype=np.float64)
    with nogil:
        fnn_loss_sum(k, param, fptr(pred), m, fptr(target), wp, fptr(grad), 1.0, n, m,
                     <double *>cnp.PyArray_DATA(values))
    return values, grad


cdef int _metric_spec(fnn_metric *m, object key, dict opts, list keep) except -1:
    """Fills m (all but head and slots) from an engine metric key and its options:
    weighted, param, iparam (one or two ints), loss (a LOSSES key, for "loss"),
    thresholds (ascending floats, for "confusion"). Arrays m points to go into keep."""
    if key not in METRICS:
        raise ValueError(f"unknown metric {key!r}; valid: {sorted(METRICS)}")
    unknown = set(opts) - {"weighted", "param", "iparam", "loss", "thresholds"}
    if unknown:
        raise ValueError(f"metric {key!r}: unknown options {sorted(unknown)}")
    m.kind = METRICS[key]
    m.weighted = bool(opts.get("weighted", False))
    m.param = opts.get("param", 0.0)
    iparam = opts.get("iparam", (0, 0))
    iparam = (iparam, 0) if isinstance(iparam, int) else tuple(iparam) + (0,) * (2 - len(iparam))
    m.iparam[0], m.iparam[1] = iparam[0], iparam[1]
    if "loss" in opts:
        if opts["loss"] not in LOSSES:
            raise ValueError(f"unknown loss {opts['loss']!r}; valid: {sorted(LOSSES)}")
        m.iparam[0] = LOSSES[opts["loss"]]
    m.n_thresholds, m.thresholds = 0, NULL
    if opts.get("thresholds") is not None:
        thr = np.ascontiguousarray(opts["thresholds"], dtype=np.float32).reshape(-1)
        keep.append(thr)
        m.n_thresholds = thr.shape[0]
        m.thresholds = fptr(thr)
    return 0


def metric_slots(str key, int64_t width, dict opts=None):
    """The doubles a metric's statistics take on outputs `width` wide."""
    cdef fnn_metric m
    memset(&m, 0, sizeof(m))
    keep = []
    _metric_spec(&m, key, opts or {}, keep)
    return fnn_metric_slots(&m, width)


def metric_update(str key, cnp.ndarray pred, cnp.ndarray target, cnp.ndarray slots,
                  cnp.ndarray weight=None, dict opts=None, bint logits=False):
    """Adds the statistics of metric `key` (METRICS, options as Plan's metrics) on
    pred (n, width) against target (n, width), or (n, 1) class indices for the sparse
    kinds, rows weighted by weight ((n,) float32, or None), into slots (float64,
    metric_slots() of them). The kernel the engine runs on each batch."""
    cdef fnn_metric m
    memset(&m, 0, sizeof(m))
    keep = []
    _metric_spec(&m, key, opts or {}, keep)
    _check(pred, "y_pred", 2)
    _check(target, "y_true", 2)
    cdef int64_t n = pred.shape[0], width = pred.shape[1], tw = target.shape[1]
    if target.shape[0] != n:
        raise ValueError(f"y_true and y_pred must have the same number of rows, got shapes "
                         f"{_shape(target)} and {_shape(pred)}")
    cdef int code = fnn_metric_check(&m, width, tw)
    if code == FNN_EPLAN_SHAPE:
        raise ValueError(f"metric {key!r} cannot compare y_pred of shape {_shape(pred)} with "
                         f"y_true of shape {_shape(target)}")
    if code:
        raise ValueError(f"metric {key!r}: invalid options {opts!r}")
    cdef const float *wp = NULL
    if weight is not None:
        _check_shape(weight, "sample_weight", (n,))
        wp = fptr(weight)
    if cnp.PyArray_TYPE(slots) != cnp.NPY_FLOAT64 or not cnp.PyArray_IS_C_CONTIGUOUS(slots) \
            or slots.ndim != 1 or slots.shape[0] != fnn_metric_slots(&m, width):
        raise ValueError(f"slots must be a contiguous float64 array of "
                         f"{fnn_metric_slots(&m, width)} values")
    if n:
        with nogil:
            fnn_metric_update(&m, fptr(pred), width, fptr(target), tw, wp, n, width, logits,
                              <double *>cnp.PyArray_DATA(slots))
    return slots


include "_optimizers.pxi"


# ---- the plan: ops over tensors, one arena, run by csrc/engine.c ------------------

cdef inline void *_alloc(size_t n, size_t size) except NULL:
    cdef void *p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


# A predict of less work than this (floating-point operations: ~2-5 us here) keeps the GIL.
cdef double _KEEP_GIL_FLOP = 2e4


cdef inline void _sync_threads(Plan plan) noexcept nogil:
    """(Re)makes the plan's per-thread copies when the pool's size changed; called with
    the plan's lock held. Out of memory, the plan runs whole on the calling thread."""
    cdef int n = fnn_pool_threads()
    if n != plan.threads:
        fnn_plan_set_threads(&plan.p, n)
        plan.threads = n


cdef class Plan:
    """A compiled graph: tensors, ops in topological order, loss heads and metrics over
    the model's parameter buffers (float32, owned by the model: params and grads of the
    same layout for the trainable weights, state for the frozen ones).

    tensors: list of (width, is_input); ops: list of dicts with keys kind (OP_KINDS),
    inputs (tensor ids), out, and for dense act, path (DENSE_PATHS), trainable, w_off,
    b_off (-1: no bias); activation: act; dropout: rate; other kinds also state_off,
    fparam, iparam (lists of up to FNN_OP_AUX values, as csrc/fastnn.h's fnn_op). inputs/outputs: tensor ids;
    heads: list of (tensor, loss (LOSSES), folded activation, target width, weight[,
    options]) with options {"param": the loss's parameter, "reduction": REDUCTIONS key};
    metrics: list of (head, METRICS key[, options]) (options: metric_update's). Totals
    (evaluate, Run) are float64 [rows, loss sum, head loss sums, metric slots], each
    metric's slots at metric_slots[i] = (offset, count). penalties: list of (offset, size,
    l1, l2) over params; constraints: list of (CONSTRAINTS key, CONSTRAINT_AXES key, offset,
    rows, cols, min_value, max_value, rate); index_limits: per input, 0 or the bound its
    values must stay below (an Embedding's input_dim: checked on every call's arrays).
    The C core checks the plan (fnn_plan_layout)
    and lays out the arena: nothing is allocated per step. Calls run without the GIL and
    share the arena, so each holds the plan's lock.
    """
    cdef fnn_plan p
    cdef PyThread_type_lock lock
    cdef int *op_inputs
    cdef int *input_ids
    cdef int *output_ids
    cdef readonly object params, grads, state, arena, spec
    cdef readonly tuple input_widths, output_widths, target_widths, metric_slots
    cdef readonly int max_batch, totals_size
    cdef list metric_arrays     # what the metrics point to (thresholds)
    cdef fnn_penalty *penalty_list
    cdef fnn_constraint *constraint_list
    cdef readonly tuple index_limits
    cdef bint has_index_limits
    cdef int64_t in_width       # the latency path's input width (one input, one output)
    cdef public bint stale      # set when the weights it reads moved to another model's buffers
    cdef public double chunk_seconds  # predict's time per native call between Ctrl-C checks
    cdef int threads            # the pool size its per-thread copies were made for (0: none yet)
    cdef readonly double row_flop  # a row's forward, in floating-point operations
    cdef object __weakref__
    cdef cnp.npy_intp out_dims[2]

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        fnn_plan_free_threads(&self.p)
        free(self.p.tensors)
        free(self.p.ops)
        free(self.op_inputs)
        free(self.input_ids)
        free(self.output_ids)
        free(self.p.heads)
        free(<void *>self.p.metrics)
        free(self.penalty_list)
        free(self.constraint_list)

    def __init__(self, list tensors, list ops, list inputs, list outputs, list heads,
                 list metrics, cnp.ndarray params, cnp.ndarray grads, cnp.ndarray state,
                 int max_batch, penalties=(), constraints=(), index_limits=None):
        _check(params, "params", 1)
        _check_shape(grads, "grads", (params.shape[0],))
        _check(state, "state", 1)
        cdef int i, k, j
        cdef int n_links = sum(len(op["inputs"]) for op in ops)
        self.p.n_tensors = len(tensors)
        self.p.tensors = <fnn_tensor *>_alloc(len(tensors), sizeof(fnn_tensor))
        for i, (width, is_input) in enumerate(tensors):
            self.p.tensors[i].width = width
            self.p.tensors[i].is_input = is_input
        self.p.n_ops = len(ops)
        self.p.ops = <fnn_op *>_alloc(len(ops), sizeof(fnn_op))
        self.op_inputs = <int *>_alloc(n_links, sizeof(int))
        j = 0
        for k, op in enumerate(ops):
            if op["kind"] not in OP_KINDS:
                raise ValueError(f"op {k}: unknown kind {op['kind']!r}; valid: {sorted(OP_KINDS)}")
            self.p.ops[k].kind = OP_KINDS[op["kind"]]
            self.p.ops[k].n_in = len(op["inputs"])
            self.p.ops[k].in_ = self.op_inputs + j
            for t in op["inputs"]:
                self.op_inputs[j] = t
                j += 1
            self.p.ops[k].out = op["out"]
            self.p.ops[k].act = _act_id(op.get("act", "linear"))
            path = op.get("path", "panels")
            if path not in DENSE_PATHS:
                raise ValueError(f"op {k}: unknown path {path!r}; valid: {sorted(DENSE_PATHS)}")
            self.p.ops[k].path = DENSE_PATHS[path]
            self.p.ops[k].trainable = op.get("trainable", True)
            self.p.ops[k].w_off = op.get("w_off", 0)
            self.p.ops[k].b_off = op.get("b_off", -1)
            self.p.ops[k].rate = op.get("rate", 0.0)
            for key in ("state_off", "fparam", "iparam"):
                if len(op.get(key, ())) > FNN_OP_AUX:
                    raise ValueError(f"op {k}: at most {FNN_OP_AUX} values in {key}, got "
                                     f"{op[key]!r}")
            for i, v in enumerate(op.get("state_off", ())):
                self.p.ops[k].state_off[i] = v
            for i, v in enumerate(op.get("fparam", ())):
                self.p.ops[k].fparam[i] = v
            for i, v in enumerate(op.get("iparam", ())):
                self.p.ops[k].iparam[i] = v
        self.p.n_inputs = len(inputs)
        self.input_ids = <int *>_alloc(len(inputs), sizeof(int))
        for i, t in enumerate(inputs):
            self.input_ids[i] = t
        self.p.inputs = self.input_ids
        self.p.n_outputs = len(outputs)
        self.output_ids = <int *>_alloc(len(outputs), sizeof(int))
        for i, t in enumerate(outputs):
            self.output_ids[i] = t
        self.p.outputs = self.output_ids
        self.p.n_heads = len(heads)
        self.p.heads = <fnn_head *>_alloc(len(heads), sizeof(fnn_head))
        for i, head in enumerate(heads):
            tensor, loss, folded, target_width, weight = head[:5]
            options = head[5] if len(head) > 5 else {}
            if loss not in LOSSES:
                raise ValueError(f"head {i}: unknown loss {loss!r}; valid: {sorted(LOSSES)}")
            reduction = options.get("reduction", "sum_over_batch_size")
            if reduction not in REDUCTIONS:
                raise ValueError(f"head {i}: unknown reduction {reduction!r}; valid: "
                                 f"{sorted(REDUCTIONS)}")
            self.p.heads[i].tensor = tensor
            self.p.heads[i].loss = LOSSES[loss]
            self.p.heads[i].folded_act = _act_id(folded)
            self.p.heads[i].target_width = target_width
            self.p.heads[i].weight = weight
            self.p.heads[i].param = options.get("param", 0.0)
            self.p.heads[i].reduction = REDUCTIONS[reduction]
        self.p.n_metrics = len(metrics)
        self.p.metrics = <fnn_metric *>_alloc(len(metrics), sizeof(fnn_metric))
        self.metric_arrays = []
        for i, metric in enumerate(metrics):
            self.p.metrics[i].head = metric[0]
            _metric_spec(&self.p.metrics[i], metric[1], metric[2] if len(metric) > 2 else {},
                         self.metric_arrays)
        self.params, self.grads, self.state = params, grads, state
        # the plan as given (tests and exporters read it)
        self.spec = {"tensors": list(tensors), "ops": [dict(op) for op in ops],
                     "inputs": list(inputs), "outputs": list(outputs), "heads": list(heads),
                     "metrics": list(metrics), "max_batch": max_batch}
        self.p.params, self.p.grads, self.p.n_params = fptr(params), fptr(grads), params.shape[0]
        self.p.state, self.p.n_state = fptr(state), state.shape[0]
        self.p.max_batch = max_batch
        self.max_batch = max_batch
        self.chunk_seconds = 0.1
        self._regularization(list(penalties), list(constraints))
        self.spec.update(penalties=list(penalties), constraints=list(constraints))
        self.index_limits = tuple(index_limits or (0,) * len(inputs))
        if len(self.index_limits) != len(inputs):
            raise ValueError(f"index_limits: one per input, got {index_limits!r}")
        self.has_index_limits = any(self.index_limits)
        cdef int where = 0
        cdef int64_t floats = fnn_plan_layout(&self.p, &where)
        if floats < 0:
            raise ValueError(f"invalid plan: {_PLAN_ERRORS.get(floats, floats)} (at index {where})")
        # on a 64-byte boundary: every region in it then starts on a cache line
        raw = np.zeros(floats + 16, dtype=np.float32)
        skip = (-raw.ctypes.data % 64) // 4
        self.arena = raw[skip:skip + floats]
        fnn_plan_bind(&self.p, fptr(self.arena))
        self.row_flop = fnn_plan_flop_per_row(&self.p)
        self.input_widths = tuple(self.p.tensors[t].width for t in inputs)
        self.output_widths = tuple(self.p.tensors[t].width for t in outputs)
        self.target_widths = tuple(h[3] for h in heads)
        self.totals_size = fnn_totals_size(&self.p)
        self.metric_slots = tuple((self.p.metrics[i].slot, self.p.metrics[i].n_slots)
                                  for i in range(self.p.n_metrics))
        self.in_width = self.input_widths[0] if len(inputs) == 1 and len(outputs) == 1 else -1
        if len(outputs) == 1:
            self.out_dims[1] = self.output_widths[0]

    cdef int _regularization(self, list penalties, list constraints) except -1:
        """Fills the plan's weight penalties and constraints (see the class docstring)."""
        self.p.n_penalties = len(penalties)
        self.penalty_list = <fnn_penalty *>_alloc(len(penalties), sizeof(fnn_penalty))
        for i, (offset, size, l1, l2) in enumerate(penalties):
            self.penalty_list[i].offset, self.penalty_list[i].size = offset, size
            self.penalty_list[i].l1, self.penalty_list[i].l2 = l1, l2
        self.p.penalties = self.penalty_list
        self.p.n_constraints = len(constraints)
        self.constraint_list = <fnn_constraint *>_alloc(len(constraints), sizeof(fnn_constraint))
        for i, (kind, axis, offset, rows, cols, low, high, rate) in enumerate(constraints):
            if kind not in CONSTRAINTS or axis not in CONSTRAINT_AXES:
                raise ValueError(f"constraint {i}: unknown kind {kind!r} or axis {axis!r}; "
                                 f"valid: {sorted(CONSTRAINTS)}, {sorted(CONSTRAINT_AXES)}")
            self.constraint_list[i].kind = CONSTRAINTS[kind]
            self.constraint_list[i].axis = CONSTRAINT_AXES[axis]
            self.constraint_list[i].offset = offset
            self.constraint_list[i].rows, self.constraint_list[i].cols = rows, cols
            self.constraint_list[i].min_value, self.constraint_list[i].max_value = low, high
            self.constraint_list[i].rate = rate
        self.p.constraints = self.constraint_list
        return 0

    cdef int _check_indices(self, list xs, str name) except -1:
        """Inputs feeding an Embedding hold indices below its input_dim (checked arrays)."""
        for i, limit in enumerate(self.index_limits):
            if not limit or xs[i].shape[0] == 0:
                continue
            low, high = xs[i].min(), xs[i].max()
            if low < 0 or high >= limit:
                label = name if len(xs) == 1 else f"{name}[{i}]"
                raise ValueError(f"{label} feeds an Embedding of input_dim={limit}: its values "
                                 f"are indices in [0, {limit}), got values in [{low}, {high}]")
        return 0

    def set_dropout_seed(self, uint64_t seed):
        """Seeds the dropout masks of the training steps that follow."""
        self.p.dropout_state = seed

    @property
    def dropout_state(self):
        """The dropout stream's state now (BackupAndRestore saves it; set_dropout_seed
        puts it back)."""
        return self.p.dropout_state

    def gradient_flow(self):
        """(per tensor: carries a gradient, per op: (backward runs, acc bits, wacc)), as
        fnn_plan_layout derived them (for tests)."""
        return ([bool(self.p.tensors[t].needs_grad) for t in range(self.p.n_tensors)],
                [(bool(self.p.ops[k].backward), int(self.p.ops[k].acc), bool(self.p.ops[k].wacc))
                 for k in range(self.p.n_ops)])

    cdef int64_t _rows(self, list xs, str name) except -1:
        """Checks xs (one C-contiguous float32 (n, width) array per input); returns n."""
        if len(xs) != self.p.n_inputs:
            raise ValueError(f"{name}: expected {self.p.n_inputs} arrays, got {len(xs)}")
        cdef int64_t n = -1
        cdef cnp.ndarray a
        for i, a in enumerate(xs):
            _check(a, f"{name}[{i}]", 2)
            if a.shape[1] != self.input_widths[i]:
                raise ValueError(f"{name}[{i}] must have {self.input_widths[i]} features per "
                                 f"row, got shape {_shape(a)}")
            if n >= 0 and a.shape[0] != n:
                raise ValueError(f"{name}: all arrays need the same number of rows, got "
                                 f"{[x.shape for x in xs]}")
            n = a.shape[0]
        if self.has_index_limits:
            self._check_indices(xs, name)
        return n

    def predict(self, cnp.ndarray x):
        """The latency path of a one-input, one-output plan: a checked (n, width) float32
        array in, a new (n, out) array out. Runs in chunks of self.chunk_seconds, checking
        for Ctrl-C between them. (One argument: parsing an optional one cost ~20 ns.)"""
        cdef int64_t n = self._check_latency_input(x)
        self.out_dims[0] = n
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, self.out_dims, cnp.NPY_FLOAT32, 0)
        self._predict_rows(x, out, n)
        return out

    def splits(self, int64_t rows, bint training=True):
        """Whether a training step (or a predict) of `rows` rows is split between threads
        at the current thread count and threshold (bench/ reports what the rule picks)."""
        cdef int split
        with nogil:  # (waiting for the plan with the GIL held would stall other threads)
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            _sync_threads(self)
            split = fnn_plan_splits(&self.p, rows, training)
            PyThread_release_lock(self.lock)
        return bool(split)

    def predict_into(self, cnp.ndarray x, cnp.ndarray out):
        """predict(x) written into `out`, a C-contiguous float32 (n, out width) array
        (no allocation); returns out."""
        cdef int64_t n = self._check_latency_input(x)
        _check_shape(out, "out", (n, self.output_widths[0]))
        if not cnp.PyArray_ISWRITEABLE(out):
            raise ValueError("out must be writeable")
        self._predict_rows(x, out, n)
        return out

    cdef int64_t _check_latency_input(self, cnp.ndarray x) except -1:
        if self.stale:
            raise ValueError("this plan's weights moved: rebuild it")
        _check(x, "x", 2)
        if self.in_width < 0:
            raise ValueError("predict() takes one input and one output; use predict_many()")
        if x.shape[1] != self.in_width:
            raise ValueError(f"x must have {self.in_width} features per row, got "
                             f"shape {_shape(x)}")
        cdef int64_t n = x.shape[0]
        if n == 0:
            raise ValueError(f"x is empty (shape {_shape(x)})")
        cdef int finite
        if <double>n * self.row_flop < _KEEP_GIL_FLOP:
            finite = fnn_all_finite(fptr(x), <size_t>(n * x.shape[1]))
        else:
            with nogil:
                finite = fnn_all_finite(fptr(x), <size_t>(n * x.shape[1]))
        if not finite:
            raise ValueError(f"x contains NaN or Inf (shape {_shape(x)})")
        if self.has_index_limits:
            self._check_indices([x], "x")
        return n

    cdef int _predict_rows(self, cnp.ndarray x, cnp.ndarray out, int64_t n) except -1:
        cdef double max_seconds = self.chunk_seconds
        cdef const float *xp = fptr(x)
        cdef float *op = fptr(out)
        cdef int64_t s = 0
        # Work of a few microseconds runs with the GIL held: releasing and retaking it
        # would cost more than the arithmetic. (Only if the plan is free: waiting for it
        # with the GIL held would stall every other thread.)
        if <double>n * self.row_flop < _KEEP_GIL_FLOP and PyThread_acquire_lock(self.lock,
                                                                             NOWAIT_LOCK):
            _sync_threads(self)
            s = fnn_plan_predict(&self.p, &xp, s, n, &op, max_seconds)
            PyThread_release_lock(self.lock)
        while s < n:
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
                _sync_threads(self)
                s = fnn_plan_predict(&self.p, &xp, s, n, &op, max_seconds)
                PyThread_release_lock(self.lock)
            if s < n:
                PyErr_CheckSignals()
        return 0

    def predict_many(self, list xs, double max_seconds=0.1):
        """Outputs (a list of new (n, width) arrays) for checked inputs xs."""
        cdef int64_t n = self._rows(xs, "x"), s = 0
        outs = [np.empty((n, w), dtype=np.float32) for w in self.output_widths]
        cdef const float **xp = <const float **>_alloc(len(xs), sizeof(float *))
        cdef float **op = <float **>_alloc(len(outs), sizeof(float *))
        try:
            for i, a in enumerate(xs):
                xp[i] = fptr(a)
            for i, a in enumerate(outs):
                op[i] = fptr(a)
            while s < n:
                with nogil:
                    PyThread_acquire_lock(self.lock, WAIT_LOCK)
                    _sync_threads(self)
                    s = fnn_plan_predict(&self.p, xp, s, n, op, max_seconds)
                    PyThread_release_lock(self.lock)
                PyErr_CheckSignals()
        finally:
            free(xp)
            free(op)
        return outs

    def evaluate(self, list xs, list ys, int batch, double max_seconds=0.1, list sws=None):
        """Totals (float64 [rows, loss sum, head loss sums, metric slots]) over xs and the
        heads' targets ys, rows weighted by sws (None, or per head None or (n,) float32
        sample weights), weights unchanged."""
        cdef int64_t n = self._rows(xs, "x"), s = 0
        self._check_targets(ys, n)
        sws = self._check_weights(sws, n)
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        totals = np.zeros(self.totals_size, dtype=np.float64)
        cdef double *tp = <double *>cnp.PyArray_DATA(totals)
        cdef const float **xp = <const float **>_alloc(len(xs), sizeof(float *))
        cdef const float **yp = <const float **>_alloc(len(ys), sizeof(float *))
        cdef const float **wp = NULL
        try:
            for i, a in enumerate(xs):
                xp[i] = fptr(a)
            for i, a in enumerate(ys):
                yp[i] = fptr(a)
            if sws is not None:
                wp = <const float **>_alloc(len(sws), sizeof(float *))
                for i, a in enumerate(sws):
                    wp[i] = fptr(a) if a is not None else NULL
            while s < n:
                with nogil:
                    PyThread_acquire_lock(self.lock, WAIT_LOCK)
                    _sync_threads(self)
                    s = fnn_plan_evaluate(&self.p, xp, yp, wp, s, n, batch, tp, max_seconds)
                    PyThread_release_lock(self.lock)
                PyErr_CheckSignals()
        finally:
            free(xp)
            free(yp)
            free(wp)
        return totals

    cdef list _check_weights(self, list sws, int64_t n):
        """Sample weights: None, or one entry per head, None or (n,) float32, finite and
        non-negative. Returns None when no head has weights."""
        if sws is None:
            return None
        if len(sws) != self.p.n_heads:
            raise ValueError(f"sample_weight: expected {self.p.n_heads} arrays (one per "
                             f"loss), got {len(sws)}")
        for h, a in enumerate(sws):
            if a is None:
                continue
            _check_shape(a, f"sample_weight[{h}]", (n,))
            if not fnn_all_finite(fptr(a), <size_t>n) or (n and a.min() < 0):
                raise ValueError(f"sample_weight[{h}] must be finite and non-negative, got "
                                 f"values in [{a.min()}, {a.max()}]")
        return sws if any(a is not None for a in sws) else None

    cdef int _check_targets(self, list ys, int64_t n) except -1:
        """Each head's targets: (n, target width) float32; integer labels in range (the
        loss indexes the outputs by them)."""
        if len(ys) != self.p.n_heads:
            raise ValueError(f"y: expected {self.p.n_heads} target arrays, got {len(ys)}")
        cdef int h
        for h, a in enumerate(ys):
            _check_shape(a, f"y[{h}]", (n, self.target_widths[h]))
            if self.p.heads[h].loss == FNN_LOSS_SPARSE_CCE_LOGITS and n:
                width = self.p.tensors[self.p.heads[h].tensor].width
                if a.min() < 0 or a.max() >= width or np.any(a != np.floor(a)):
                    raise ValueError(f"y[{h}] must hold integer class labels in [0, {width}), "
                                     f"got values in [{a.min()}, {a.max()}]")
        return 0

    def train(self, Run run, OptimizerState opt, int64_t max_steps, double max_seconds,
              bint stop_at_epoch_end):
        """Continues `run` (made for this plan): see fnn_plan_train. Returns RUN_STATUS's
        name of how the chunk ended."""
        if run.plan is not self:
            raise ValueError("this run belongs to another plan")
        if opt.size < self.p.n_params:
            raise ValueError(f"the optimizer state holds {opt.size} values, the plan "
                             f"{self.p.n_params} parameters")
        cdef int status
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            _sync_threads(self)
            status = fnn_plan_train(&self.p, &opt.opt, &run.r, max_steps, max_seconds,
                                    stop_at_epoch_end)
            PyThread_release_lock(self.lock)
        return RUN_STATUS[status]


cdef class Run:
    """A resumable training run over checked arrays: Plan.train continues it. Totals of
    the epochs it completed are read with take_totals(); current() is the epoch so far."""
    cdef fnn_run r
    cdef const float **xp
    cdef const float **yp
    cdef const float **wp
    cdef readonly Plan plan
    cdef readonly object xs, ys, sws, perm, totals

    def __dealloc__(self):
        free(self.xp)
        free(self.yp)
        free(self.wp)

    def __init__(self, Plan plan, list xs, list ys, int batch, int epochs, bint shuffle,
                 uint64_t seed, int totals_cap=256, list sws=None):
        """sws: None, or per head None or its (n,) float32 sample weights."""
        cdef int64_t n = plan._rows(xs, "x")
        plan._check_targets(ys, n)
        sws = plan._check_weights(sws, n)
        if n == 0:
            raise ValueError("x is empty")
        if batch <= 0 or batch > plan.max_batch:
            raise ValueError(f"batch must be in [1, {plan.max_batch}], got {batch}")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.plan, self.xs, self.ys = plan, tuple(xs), tuple(ys)  # the arrays stay alive
        self.perm = np.arange(n, dtype=np.int64)
        self.totals = np.zeros((max(totals_cap, 1), plan.totals_size), dtype=np.float64)
        self.xp = <const float **>_alloc(len(xs), sizeof(float *))
        self.yp = <const float **>_alloc(len(ys), sizeof(float *))
        for i, a in enumerate(xs):
            self.xp[i] = fptr(a)
        for i, a in enumerate(ys):
            self.yp[i] = fptr(a)
        self.r.x, self.r.y, self.r.n, self.r.batch = self.xp, self.yp, n, batch
        self.r.perm = <int64_t *>cnp.PyArray_DATA(self.perm)
        self.r.shuffle, self.r.shuffle_state = shuffle, seed
        self.r.epochs, self.r.epoch, self.r.step = epochs, 0, 0
        self.r.totals = <double *>cnp.PyArray_DATA(self.totals)
        self.r.epoch_base, self.r.totals_cap = 0, max(totals_cap, 1)
        self.sws, self.r.sw = sws, NULL
        if sws is not None:
            self.wp = <const float **>_alloc(len(sws), sizeof(float *))
            for i, a in enumerate(sws):
                self.wp[i] = fptr(a) if a is not None else NULL
            self.r.sw = self.wp

    @property
    def epoch(self):
        return self.r.epoch

    @property
    def step(self):
        return self.r.step

    @property
    def steps_per_epoch(self):
        return (self.r.n + self.r.batch - 1) // self.r.batch

    @property
    def shuffle_state(self):
        """The shuffler's state, advanced by each epoch's shuffle of perm (with perm, what
        a resumed fit needs to draw the same batches)."""
        return self.r.shuffle_state

    @shuffle_state.setter
    def shuffle_state(self, uint64_t value):
        self.r.shuffle_state = value

    def take_totals(self):
        """The totals rows of the epochs completed since the last call (a new array);
        the epoch in progress moves to the first row."""
        cdef int done = self.r.epoch - self.r.epoch_base
        rows = self.totals[:done].copy()
        if done:
            self.totals[0] = self.totals[done] if done < self.totals.shape[0] else 0.0
            self.totals[1:] = 0.0
            self.r.epoch_base = self.r.epoch
        return rows

    def current(self):
        """The totals of the epoch in progress (a view)."""
        return self.totals[self.r.epoch - self.r.epoch_base] \
            if self.r.epoch - self.r.epoch_base < self.totals.shape[0] else None


def all_finite(cnp.ndarray a):
    """True if a (float32, C-contiguous) holds no NaN or Inf; one pass, no temporary."""
    _check(a, "a")
    cdef size_t n = <size_t>cnp.PyArray_SIZE(a)
    cdef int ok
    with nogil:
        ok = fnn_all_finite(fptr(a), n)
    return bool(ok)


def shuffle(cnp.ndarray perm, uint64_t seed):
    """Seeded in-place Fisher-Yates shuffle of an int64 array; returns the next seed state."""
    if cnp.PyArray_TYPE(perm) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(perm) or perm.ndim != 1:
        raise TypeError("perm must be a contiguous 1-D int64 array")
    cdef uint64_t state = seed
    cdef int64_t n = perm.shape[0]
    with nogil:
        fnn_shuffle(<int64_t *>cnp.PyArray_DATA(perm), n, &state)
    return state


# ---- the thread pool ------------------------------------------------------------------------
fnn_pool_threads()  # sets the pool up while the import holds the GIL


def set_num_threads(int n):
    """Threads fastnn's parallel regions use, the caller included (1..MAX_THREADS)."""
    if fnn_pool_set_threads(n) != 0:
        raise ValueError(f"n must be in [1, {FNN_MAX_THREADS}], got {n}")


def get_num_threads():
    return fnn_pool_threads()


def parallel_min_flop(double flop=-1.0):
    """The work (floating-point operations) from which a step or predict call is split
    between threads (flop >= 0 sets it: tests and bench/ lower it); returns the previous
    value. Plans apply a new value when their thread count next changes."""
    return fnn_parallel_min_flop(flop)


def cpu_count():
    """CPUs this process may run on (its affinity mask where the system has one)."""
    return fnn_pool_cpu_count()


MAX_THREADS = FNN_MAX_THREADS


ctypedef struct _probe_ctx:
    int *counts
    int fail_from
    int work
    float *sink


cdef int _probe_task(void *ctx, int task) noexcept nogil:
    cdef _probe_ctx *c = <_probe_ctx *>ctx
    c.counts[task] += 1  # one task per index and region: no two threads share a count
    cdef float acc = task
    cdef int i
    for i in range(c.work):  # a task's length, for timing regions
        acc = acc * 0.999 + 1.0
    c.sink[task * 16] = acc
    return 100 + task if 0 <= c.fail_from <= task else 0


def pool_probe(int n_tasks, int regions, int fail_from=-1, int work=0):
    """Runs `regions` parallel regions of n_tasks tasks that count their runs (after `work`
    dependent multiply-adds each), tasks from fail_from on failing with code 100 + index
    (for tests and timing). Returns (counts, codes)."""
    if not 1 <= n_tasks <= 1000 or regions < 0:
        raise ValueError(f"n_tasks must be in [1, 1000] and regions >= 0, got {n_tasks}, "
                         f"{regions}")
    counts = np.zeros(n_tasks, dtype=np.int32)
    codes = np.zeros(regions, dtype=np.int32)
    cdef int[::1] cv = counts
    cdef int[::1] kv = codes
    cdef _probe_ctx c
    c.counts = &cv[0]
    c.fail_from = fail_from
    c.work = work
    sink = np.zeros(n_tasks * 16, dtype=np.float32)
    cdef float[::1] sv = sink
    c.sink = &sv[0]
    cdef int r
    with nogil:
        for r in range(regions):
            kv[r] = fnn_pool_run(_probe_task, &c, n_tasks)
    return counts, codes
