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
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)

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

ACTIVATIONS = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4}
LOSSES = {"mse": 0, "mae": 1, "sparse_softmax_crossentropy": 2, "softmax_crossentropy": 3,
          "sigmoid_crossentropy": 4}
METRICS = {"mse": 0, "mae": 1, "accuracy": 2}
MAX_METRICS = FNN_MAX_METRICS
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


def activation_forward(cnp.ndarray x, activation):
    """act(x) as a new array (softmax over the last axis)."""
    cdef int act = _act_id(activation)
    _check(x, "x")
    cdef cnp.ndarray y = x.copy()
    cdef int64_t n, m
    n, m = _rows(y)
    if n and m:
        with nogil:
            fnn_act_forward(act, fptr(y), m, n, m)
    return y


def activation_backward(cnp.ndarray y, cnp.ndarray gy, activation):
    """dL/dz given the activation's output y and dL/dy."""
    cdef int act = _act_id(activation)
    _check(y, "y")
    _check_shape(gy, "gy", _shape(y))
    cdef cnp.ndarray g = gy.copy()
    cdef int64_t n, m
    n, m = _rows(y)
    if n and m:
        with nogil:
            fnn_act_backward(act, fptr(y), fptr(g), m, n, m)
    return g


def loss(str kind, cnp.ndarray pred, cnp.ndarray target):
    """(mean loss, dL/dpred) for 2-D pred; target like pred, or (n,) labels for CCE."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; valid: {sorted(LOSSES)}")
    cdef int k = LOSSES[kind]
    _check(pred, "pred", 2)
    cdef int64_t n = pred.shape[0], m = pred.shape[1]
    if k == 2:
        _check_shape(target, "target", (n,))
        if n and (target.min() < 0 or target.max() >= m or np.any(target != np.floor(target))):
            raise ValueError(f"labels must be integers in [0, {m}), got range "
                             f"[{target.min()}, {target.max()}]")
    else:
        _check_shape(target, "target", (n, m))
    if n == 0 or m == 0:
        raise ValueError(f"pred must not be empty, got shape {_shape(pred)}")
    cdef cnp.ndarray grad = np.empty_like(pred)
    cdef double value
    with nogil:
        value = fnn_loss(k, fptr(pred), m, fptr(target), fptr(grad), n, m)
    return value, grad


include "_optimizers.pxi"


# ---- the network: a chain of dense layers over one flat parameter buffer -------

cdef class Net:
    """A compiled chain of dense layers with its activation arena.

    layers: list of (n_in, n_out, activation, use_bias, w_off, b_off, use_blas[, rate]);
    w_off = -1 marks an activation-only layer, -2 a dropout layer dropping `rate` of
    its units while training (both n_in == n_out, no weights).
    params/grads: flat float32 buffers owned by the model (the layers' weights
    are views into params). The arena holds max_batch rows per layer output and
    gradient, plus the gathered inputs and targets: nothing is allocated per step.
    Calls run without the GIL and share that arena, so each holds the net's lock:
    threads predicting with one model take turns instead of mixing activations.
    """
    cdef fnn_net net
    cdef PyThread_type_lock lock
    cdef fnn_layer *layer_specs
    cdef float **act_ptrs
    cdef float **delta_ptrs
    cdef int64_t *lds
    cdef uint64_t *mask_seeds
    cdef uint64_t dropout_state
    cdef readonly object params, grads, arena
    cdef readonly int64_t n_in, n_out, max_batch, target_width
    cdef cnp.npy_intp out_dims[2]

    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()
        self.layer_specs = NULL
        self.act_ptrs = NULL
        self.delta_ptrs = NULL
        self.lds = NULL
        self.mask_seeds = NULL

    def __dealloc__(self):
        free(self.mask_seeds)
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        free(self.lds)
        free(self.layer_specs)
        free(self.act_ptrs)
        free(self.delta_ptrs)

    def __init__(self, list layers, cnp.ndarray params, cnp.ndarray grads, str loss="mse",
                 int max_batch=32, int target_width=-1):
        cdef int L = len(layers), l
        if L == 0:
            raise ValueError("a net needs at least one dense layer")
        if max_batch <= 0:
            raise ValueError(f"max_batch must be positive, got {max_batch}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {sorted(LOSSES)}")
        _check(params, "params", 1)
        _check_shape(grads, "grads", (params.shape[0],))
        self.params, self.grads = params, grads
        self.layer_specs = <fnn_layer *>malloc(L * sizeof(fnn_layer))
        self.act_ptrs = <float **>malloc((L + 1) * sizeof(float *))
        self.delta_ptrs = <float **>malloc((L + 1) * sizeof(float *))
        self.lds = <int64_t *>malloc((L + 1) * sizeof(int64_t))
        self.mask_seeds = <uint64_t *>calloc(L, sizeof(uint64_t))
        if not self.layer_specs or not self.act_ptrs or not self.delta_ptrs or not self.lds \
                or not self.mask_seeds:
            raise MemoryError()
        cdef int64_t prev = layers[0][0], total = 0, scratch = 0
        for l in range(L):
            n_in, n_out, act, use_bias, w_off, b_off, use_blas = layers[l][:7]
            rate = layers[l][7] if len(layers[l]) > 7 else 0.0
            if n_in != prev or n_in <= 0 or n_out <= 0:
                raise ValueError(f"layer {l}: {n_in}->{n_out} does not chain after width {prev}")
            if w_off in (-1, -2):
                if n_in != n_out:
                    raise ValueError(f"layer {l}: an activation or dropout layer keeps its "
                                     f"width, got {n_in}->{n_out}")
                if not 0.0 <= rate < 1.0:
                    raise ValueError(f"layer {l}: dropout rate must be in [0, 1), got {rate}")
                self.layer_specs[l].kind = FNN_LAYER_ACTIVATION if w_off == -1 else FNN_LAYER_DROPOUT
            elif w_off < 0 or w_off + n_in * n_out > params.shape[0] or (
                    use_bias and (b_off < 0 or b_off + n_out > params.shape[0])):
                raise ValueError(f"layer {l}: weights at {w_off}/{b_off} overrun {params.shape[0]} params")
            else:
                self.layer_specs[l].kind = FNN_LAYER_DENSE
            self.layer_specs[l].n_in = n_in
            self.layer_specs[l].n_out = n_out
            self.layer_specs[l].act = _act_id(act)
            self.layer_specs[l].use_bias = use_bias
            self.layer_specs[l].w_off = w_off
            self.layer_specs[l].b_off = b_off
            self.layer_specs[l].gemm = _gemm(use_blas)
            self.layer_specs[l].rate = rate
            # rows of each layer's output are padded to 16 floats (the narrow kernels' width)
            self.lds[l + 1] = _pad(n_out)
            total += 2 * self.lds[l + 1]
            scratch = max(scratch, <int64_t>fnn_dense_scratch(n_in, n_out))
            prev = n_out
        self.n_in, self.n_out, self.max_batch = layers[0][0], prev, max_batch
        self.target_width = prev if target_width < 0 else target_width
        # arena: input rows, then (output, gradient) per layer, then targets
        self.arena = np.zeros(max_batch * (self.n_in + total + self.target_width) + scratch,
                              np.float32)
        cdef float *p = fptr(self.arena)
        self.lds[0] = self.n_in
        self.act_ptrs[0] = p
        self.delta_ptrs[0] = NULL
        p += max_batch * self.n_in
        for l in range(L):
            self.act_ptrs[l + 1] = p
            p += max_batch * self.lds[l + 1]
            self.delta_ptrs[l + 1] = p
            p += max_batch * self.lds[l + 1]
        self.net.target = p
        p += max_batch * self.target_width
        self.net.scratch = p
        self.net.ld = self.lds
        self.dropout_state = 0
        self.net.dropout_state = &self.dropout_state
        self.net.mask_seeds = self.mask_seeds
        self.net.n_layers = L
        self.net.layers = self.layer_specs
        self.net.params = fptr(params)
        self.net.grads = fptr(grads)
        self.net.n_params = params.shape[0]
        self.net.loss = LOSSES[loss]
        self.net.max_batch = max_batch
        self.net.acts = self.act_ptrs
        self.net.deltas = self.delta_ptrs
        self.net.target_width = self.target_width
        self.out_dims[1] = self.n_out

    def set_dropout_seed(self, uint64_t seed):
        """Seeds the dropout masks of the training steps that follow."""
        self.dropout_state = seed

    cdef int _check_x(self, cnp.ndarray x) except -1:
        _check(x, "x", 2)
        if x.shape[1] != self.n_in:
            raise ValueError(f"x must have {self.n_in} features per row, got shape {_shape(x)}")
        return 0

    cdef int _check_y(self, cnp.ndarray y, int64_t n) except -1:
        _check_shape(y, "y", (n, self.target_width))
        return 0

    def predict(self, cnp.ndarray x):
        """Forward of a checked (n, n_in) float32 array into a new (n, n_out) array."""
        self._check_x(x)
        cdef int64_t n = x.shape[0]
        if n == 0:
            raise ValueError(f"x is empty (shape {_shape(x)})")
        cdef int finite
        with nogil:
            finite = fnn_all_finite(fptr(x), <size_t>(n * self.n_in))
        if not finite:
            raise ValueError(f"x contains NaN or Inf (shape {_shape(x)})")
        self.out_dims[0] = n
        cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, self.out_dims, cnp.NPY_FLOAT32, 0)
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            fnn_net_predict(&self.net, fptr(x), n, fptr(out))
            PyThread_release_lock(self.lock)
        return out

    cdef int64_t *_perm_ptr(self, cnp.ndarray perm, int64_t n) except? NULL:
        """Checks perm (None, or n int64 row indices in [0, n)) and returns its data."""
        if perm is None:
            return NULL
        if cnp.PyArray_TYPE(perm) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(perm) \
                or perm.ndim != 1 or perm.shape[0] != n:
            raise ValueError(f"perm must be a contiguous int64 array of {n} indices")
        cdef int64_t *p = <int64_t *>cnp.PyArray_DATA(perm)
        cdef int64_t i
        cdef bint bad = False
        with nogil:
            for i in range(n):
                bad |= p[i] < 0 or p[i] >= n
        if bad:
            raise ValueError(f"perm holds indices outside [0, {n})")
        return p

    cdef int _check_train(self, cnp.ndarray x, cnp.ndarray y, OptimizerState opt,
                          int batch) except -1:
        self._check_x(x)
        self._check_y(y, x.shape[0])
        if batch <= 0 or batch > self.max_batch:
            raise ValueError(f"batch must be in [1, {self.max_batch}], got {batch}")
        if opt.slot1.shape[0] < self.net.n_params:
            raise ValueError("optimizer state is smaller than the parameters")
        return 0

    def train_epoch(self, cnp.ndarray x, cnp.ndarray y, OptimizerState opt, int batch,
                    cnp.ndarray perm=None, tuple metrics=()):
        """One epoch over (x, y) in the order of perm (int64 row indices, or None).

        Returns (loss_sum, metric_sums, rows, diverged): sums are weighted by batch rows.
        """
        self._check_train(x, y, opt, batch)
        cdef int64_t n = x.shape[0]
        cdef int64_t *pp = self._perm_ptr(perm, n)
        cdef int mids[4]
        cdef int nm = self._metric_ids(metrics, mids)
        cdef fnn_totals tot
        memset(&tot, 0, sizeof(tot))
        cdef int status
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            status = fnn_net_train_epoch(&self.net, &opt.opt, fptr(x), fptr(y), pp, n, batch,
                                         mids, nm, &tot)
            PyThread_release_lock(self.lock)
        return tot.loss_sum, [tot.metric_sum[l] for l in range(nm)], tot.rows, bool(status)

    def train(self, cnp.ndarray x, cnp.ndarray y, OptimizerState opt, int batch, int epochs,
              cnp.ndarray perm, uint64_t seed, bint shuffle, tuple metrics=()):
        """`epochs` epochs in one native call (shuffling perm before each when shuffle).

        Returns (losses, metrics, seed): the per-epoch mean losses (as many as epochs
        ran: fewer if the loss diverged), per epoch a list of metric means, and the
        shuffle state to continue from.
        """
        self._check_train(x, y, opt, batch)
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        cdef int64_t n = x.shape[0]
        cdef int64_t *pp = self._perm_ptr(perm, n)
        if pp == NULL:
            raise ValueError("train needs perm (row indices)")
        cdef int mids[4]
        cdef int nm = self._metric_ids(metrics, mids)
        cdef fnn_totals *tp = <fnn_totals *>calloc(max(epochs, 1), sizeof(fnn_totals))
        if tp == NULL:
            raise MemoryError()
        cdef uint64_t state = seed
        cdef int done, e, j
        try:
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
                done = fnn_net_train(&self.net, &opt.opt, fptr(x), fptr(y), pp,
                                     &state if shuffle else NULL, n, batch, epochs, mids, nm, tp)
                PyThread_release_lock(self.lock)
            losses = [tp[e].loss_sum / tp[e].rows for e in range(done)]
            metric_means = [[tp[e].metric_sum[j] / tp[e].rows for j in range(nm)]
                            for e in range(done)]
        finally:
            free(tp)
        return losses, metric_means, state

    def evaluate(self, cnp.ndarray x, cnp.ndarray y, int batch, tuple metrics=()):
        """(loss_sum, metric_sums, rows) over (x, y), weights unchanged."""
        self._check_x(x)
        cdef int64_t n = x.shape[0]
        self._check_y(y, n)
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        cdef int mids[4]
        cdef int nm = self._metric_ids(metrics, mids)
        cdef fnn_totals tot
        memset(&tot, 0, sizeof(tot))
        with nogil:
            PyThread_acquire_lock(self.lock, WAIT_LOCK)
            fnn_net_evaluate(&self.net, fptr(x), fptr(y), n, batch, mids, nm, &tot)
            PyThread_release_lock(self.lock)
        return tot.loss_sum, [tot.metric_sum[l] for l in range(nm)], tot.rows

    cdef int _metric_ids(self, tuple metrics, int *mids) except -1:
        if len(metrics) > FNN_MAX_METRICS:
            raise ValueError(f"at most {FNN_MAX_METRICS} metrics, got {len(metrics)}")
        for i, name in enumerate(metrics):
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; valid: {sorted(METRICS)}")
            mids[i] = METRICS[name]
        return len(metrics)


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
