"""The C kernels through fastnn._engine, each against a NumPy float64 reference
and (for gradients) against central finite differences of a float64 forward."""
import numpy as np
import pytest

from fastnn import _engine

EPS32 = float(np.finfo(np.float32).eps)

# (m, n, k): both sides of the portable kernel's blocks (KC = 256 over k, NC = 512
# over n), degenerate sizes, and thin/wide shapes.
GEMM_SIZES = [(1, 1, 1), (3, 3, 3), (17, 17, 17), (33, 33, 33), (257, 257, 257),
              (513, 513, 513), (1000, 3, 17), (3, 1000, 17), (17, 3, 1000), (1, 513, 257),
              (513, 1, 255), (32, 10, 13), (7, 600, 300), (4, 5, 0)]


def _gemm_operands(rng, m, n, k, trans_a, trans_b):
    """float32 op(A) (m x k) and op(B) (k x n), and the arrays to pass (stored transposed if asked)."""
    a_op = rng.standard_normal((m, k)).astype(np.float32)
    b_op = rng.standard_normal((k, n)).astype(np.float32)
    a = np.ascontiguousarray(a_op.T) if trans_a else a_op
    b = np.ascontiguousarray(b_op.T) if trans_b else b_op
    return a_op, b_op, a, b


def _assert_gemm_close(c, a_op, b_op):
    """Within the classical float32 error bound |C - AB| <= k u |A||B| (u = unit roundoff)."""
    a64, b64 = a_op.astype(np.float64), b_op.astype(np.float64)
    ref = a64 @ b64
    assert c.dtype == np.float32 and c.shape == ref.shape
    k = a_op.shape[1]
    bound = (k + 2) * EPS32 * (np.abs(a64) @ np.abs(b64)) + 1e-30
    assert np.all(np.abs(c - ref) <= bound), f"max error {np.abs(c - ref).max()}"


# ---- sgemm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("mnk", GEMM_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_sgemm_portable_matches_numpy(rng, mnk, trans_a, trans_b):
    a_op, b_op, a, b = _gemm_operands(rng, *mnk, trans_a, trans_b)
    c = _engine.sgemm(a, b, trans_a, trans_b, False)
    _assert_gemm_close(c, a_op, b_op)


@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("mnk", GEMM_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_sgemm_blas_matches_numpy(rng, blas, mnk, trans_a, trans_b):
    a_op, b_op, a, b = _gemm_operands(rng, *mnk, trans_a, trans_b)
    c = _engine.sgemm(a, b, trans_a, trans_b, True)
    _assert_gemm_close(c, a_op, b_op)


def test_sgemm_blas_is_registered(blas):
    assert _engine.have_cblas()


# ---- dense_forward / dense_backward -----------------------------------------------------------
# Paths: "panels" (fastnn's register-blocked kernels, 16 output columns at a time, rows
# padded to whole panels), "narrow" (the same, units <= 16), "portable" (the plain portable
# GEMM), "blas" (the registered CBLAS) and "auto" (= panels). The panel kernels exist three
# times (AVX-512, AVX2+FMA, baseline): the `kernels` fixture runs a test under each.

PATHS = ["auto", "panels", "narrow", "portable", "blas"]

# (n, n_in, n_out): wide layers, and narrow ones around the kernels' blocking (rows by 4
# and 2, input features by 4, 8-lane halves of the 16-wide panel, n_in <= 16 or not)
DENSE_SIZES = [(1, 1, 1), (4, 13, 10), (32, 10, 1), (17, 33, 257), (64, 300, 200), (3, 5, 20),
               (1000, 17, 33)]
NARROW_SIZES = [(1, 1, 1), (2, 3, 7), (3, 4, 8), (4, 5, 9), (5, 13, 10), (7, 16, 15),
                (32, 10, 16), (33, 17, 16), (9, 40, 3), (6, 2, 12), (1, 16, 16), (35, 13, 1)]


def _dense_data(rng, n, n_in, n_out):
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    return x, w, b


def _skip_unless_path(path, n_out):
    if path == "narrow" and n_out > 16:
        pytest.skip("the narrow path takes at most 16 units")
    if path == "blas":
        import fastnn._blas
        if not fastnn._blas.available():
            pytest.skip("no BLAS")


def _check_dense_forward(rng, ref, size, activation, use_bias, path):
    x, w, b = _dense_data(rng, *size)
    y = _engine.dense_forward(x, w, b if use_bias else None, activation, path=path)
    z = x.astype(np.float64) @ w.astype(np.float64)
    if use_bias:
        z = z + b
    expected = ref.ACT_FORWARD[activation](z)
    assert y.dtype == np.float32 and y.shape == expected.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.sqrt(size[1]))


def _check_dense_backward(rng, ref, size, activation, use_bias, path):
    x, w, b = _dense_data(rng, *size)
    y = _engine.dense_forward(x, w, b if use_bias else None, activation, path=path)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gy_before = gy.copy()
    gx, gw, gb = _engine.dense_backward(x, w, y, gy, activation, use_bias, path=path)
    np.testing.assert_array_equal(gy, gy_before)  # documented: gy is not modified
    assert gx.shape == x.shape and gw.shape == w.shape and gx.flags.c_contiguous

    # transcription of the chain rule in float64, from the pre-activation z
    z = x.astype(np.float64) @ w.astype(np.float64) + (b if use_bias else 0.0)
    dz = gy.astype(np.float64) * ref.ACT_DERIVATIVE[activation](z)
    if activation == "relu":  # the kernel derives relu' from y = relu(z): agree where z != 0
        dz = np.where(y > 0, gy.astype(np.float64), 0.0)
    scale = np.sqrt(size[0] * max(size[1], size[2]))
    np.testing.assert_allclose(gw, x.astype(np.float64).T @ dz, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(gx, dz @ w.astype(np.float64).T, rtol=1e-4, atol=1e-5 * scale)
    if use_bias:
        np.testing.assert_allclose(gb, dz.sum(axis=0), rtol=1e-4, atol=1e-5 * scale)
    else:
        assert gb is None


# every (size, path) pair that exists: the narrow path only for units <= 16
SIZE_PATHS = [pytest.param(size, path, id="x".join(map(str, size)) + "-" + path)
              for size in DENSE_SIZES for path in PATHS if path != "narrow" or size[2] <= 16]


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size,path", SIZE_PATHS)
def test_dense_forward_matches_numpy(rng, ref, size, activation, use_bias, path):
    _skip_unless_path(path, size[2])
    _check_dense_forward(rng, ref, size, activation, use_bias, path)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size", NARROW_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_dense_forward_narrow_kernels(rng, ref, kernels, size, activation, use_bias):
    _check_dense_forward(rng, ref, size, activation, use_bias, "narrow")


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size,path", SIZE_PATHS)
def test_dense_backward_matches_numpy(rng, ref, size, activation, use_bias, path):
    _skip_unless_path(path, size[2])
    _check_dense_backward(rng, ref, size, activation, use_bias, path)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size", NARROW_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_narrow_kernels(rng, ref, kernels, size, activation, use_bias):
    _check_dense_backward(rng, ref, size, activation, use_bias, "narrow")


# wide layers on the panel kernels: several 16-column panels, a partial last one, inputs
# above and below 16 (dX in panels of W^T), rows around the 8/4/2 row blocks
PANEL_SIZES = [(9, 20, 37), (5, 33, 17), (12, 3, 40), (1, 16, 32)]


@pytest.mark.parametrize("activation", ["linear", "relu", "tanh"])
@pytest.mark.parametrize("size", PANEL_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_dense_panels_under_each_kernel_set(rng, ref, kernels, size, activation):
    _check_dense_forward(rng, ref, size, activation, True, "panels")
    _check_dense_backward(rng, ref, size, activation, True, "panels")


FD_SIZES = [(5, 4, 3), (6, 18, 11)]


@pytest.mark.parametrize("path", ["portable", "blas"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size", FD_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_finite_differences(rng, ref, size, activation, use_bias, path):
    _skip_unless_path(path, size[2])
    _check_dense_finite_differences(rng, ref, size, activation, use_bias, path)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("size", FD_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backward_finite_differences_narrow(rng, ref, kernels, size, activation, use_bias):
    _check_dense_finite_differences(rng, ref, size, activation, use_bias, "narrow")


def _check_dense_finite_differences(rng, ref, size, activation, use_bias, path):
    """dL/dx, dL/dW, dL/db of L = sum(R * act(x.W + b)) vs central differences in float64."""
    n, n_in, n_out = size
    x, w, b = _dense_data(rng, n, n_in, n_out)
    r = rng.standard_normal((n, n_out)).astype(np.float32)
    # keep pre-activations away from relu's kink so that differences are well defined
    z = x.astype(np.float64) @ w + (b if use_bias else 0.0)
    assert np.abs(z).min() > 1e-4
    y = _engine.dense_forward(x, w, b if use_bias else None, activation, path=path)
    gx, gw, gb = _engine.dense_backward(x, w, y, r, activation, use_bias, path=path)

    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))

    def loss():
        zz = x64 @ w64 + (b64 if use_bias else 0.0)
        return float(np.sum(r * ref.ACT_FORWARD[activation](zz)))

    fx, fw, fb = ref.finite_difference(loss, [x64, w64, b64])
    np.testing.assert_allclose(gx, fx, rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(gw, fw, rtol=1e-2, atol=1e-4)
    if use_bias:
        np.testing.assert_allclose(gb, fb, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("size", [(64, 300, 200), (33, 13, 10), (5, 40, 16)],
                         ids=["wide", "article", "narrow-out"])
def test_dense_paths_agree(rng, size):
    """Every available path computes the same layer (to float32 rounding)."""
    import fastnn._blas
    x, w, b = _dense_data(rng, *size)
    gy = rng.standard_normal((size[0], size[2])).astype(np.float32)
    paths = ["portable", "panels"] + (["narrow"] if size[2] <= 16 else []) + \
        (["blas"] if fastnn._blas.available() else [])
    outs = {}
    for path in paths:
        y = _engine.dense_forward(x, w, b, "tanh", path=path)
        outs[path] = (y,) + _engine.dense_backward(x, w, y, gy, "tanh", True, path=path)
    for path in paths[1:]:
        for got, want in zip(outs[path], outs["portable"]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(37, 13, 10), (9, 16, 16), (3, 21, 5), (64, 8, 1)])
def test_narrow_kernel_sets_agree(rng, shape):
    """Every narrow kernel set the CPU has gives the same layer as the baseline (to
    rounding), including the block remainders (rows not a multiple of 8, inputs not a
    multiple of 8 or 4)."""
    n, n_in, n_out = shape
    x, w, b = _dense_data(rng, n, n_in, n_out)
    gy = rng.standard_normal((n, n_out)).astype(np.float32)
    res = {}
    try:
        for level in _engine.KERNEL_LEVELS:
            if _engine.select_kernels(level) != level:
                continue
            y = _engine.dense_forward(x, w, b, "relu", path="narrow")
            res[level] = (y,) + _engine.dense_backward(x, w, y, gy, "relu", True, path="narrow")
    finally:
        _engine.select_kernels(_engine.KERNELS)
    assert "baseline" in res
    for level, outs in res.items():
        for a, c in zip(outs, res["baseline"]):
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5, err_msg=level)


def test_use_blas_flag_is_the_blas_path(rng, blas):
    x, w, b = _dense_data(rng, 8, 20, 30)
    np.testing.assert_array_equal(_engine.dense_forward(x, w, b, "relu", True),
                                  _engine.dense_forward(x, w, b, "relu", path="blas"))


@pytest.mark.parametrize("path", ["auto", "narrow", "portable"])
def test_dense_empty_batch(path):
    x = np.zeros((0, 5), np.float32)
    w = np.ones((5, 3), np.float32)
    b = np.ones(3, np.float32)
    y = _engine.dense_forward(x, w, b, "relu", path=path)
    assert y.shape == (0, 3)
    gx, gw, gb = _engine.dense_backward(x, w, y, np.zeros((0, 3), np.float32), "relu", True,
                                        path=path)
    assert gx.shape == (0, 5)
    np.testing.assert_array_equal(gw, np.zeros((5, 3)))  # a sum over no rows
    np.testing.assert_array_equal(gb, np.zeros(3))


# ---- activations -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 4), (1000,)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_activation_forward(rng, ref, activation, shape):
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    x_before = x.copy()
    y = _engine.activation_forward(x, activation)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(x, x_before)  # not in place
    np.testing.assert_allclose(y, ref.ACT_FORWARD[activation](x.astype(np.float64)),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_activation_forward_saturates_without_nan(ref, activation):
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float32)
    with np.errstate(over="ignore"):
        expected = ref.ACT_FORWARD[activation](x.astype(np.float64))
    y = _engine.activation_forward(x, activation)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_activation_forward_propagates_nan(ref, activation):
    x = np.array([np.nan, -1.0, 0.5, np.nan, 2.0], np.float32)
    y = _engine.activation_forward(x, activation)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_allclose(y, ref.ACT_FORWARD[activation](x.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh"])
def test_activation_backward(rng, ref, activation, shape):
    z = (2 * rng.standard_normal(shape)).astype(np.float32)
    y = _engine.activation_forward(z, activation)
    gy = rng.standard_normal(shape).astype(np.float32)
    gz = _engine.activation_backward(y, gy, activation)
    expected = gy * ref.ACT_DERIVATIVE[activation](z.astype(np.float64))
    np.testing.assert_allclose(gz, expected, rtol=1e-5, atol=1e-6)

    # and vs central differences of sum(gy * act(z))
    z64 = z.astype(np.float64)
    (fd,) = ref.finite_difference(
        lambda: float(np.sum(gy * ref.ACT_FORWARD[activation](z64))), [z64])
    np.testing.assert_allclose(gz, fd, rtol=1e-2, atol=1e-4)


# ---- losses ------------------------------------------------------------------------------------

def _loss_inputs(rng, kind, n, m):
    pred = rng.standard_normal((n, m)).astype(np.float32)
    if kind == "sparse_softmax_crossentropy":
        target = rng.integers(0, m, size=n).astype(np.float32)
    else:
        target = rng.standard_normal((n, m)).astype(np.float32)
    return pred, target


LOSS_SHAPES = [(1, 1), (1, 3), (32, 1), (7, 5), (100, 10)]


@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["mse", "mae", "sparse_softmax_crossentropy"])
def test_loss_value_and_gradient(rng, ref, kind, shape):
    pred, target = _loss_inputs(rng, kind, *shape)
    value, grad = _engine.loss(kind, pred, target)
    ref_value, ref_grad = ref.LOSSES[kind](pred, target)
    assert grad.shape == pred.shape and grad.dtype == np.float32
    assert value == pytest.approx(ref_value, rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["mse", "mae", "sparse_softmax_crossentropy"])
def test_loss_gradient_finite_differences(rng, ref, kind):
    pred, target = _loss_inputs(rng, kind, 6, 4)
    if kind == "mae":  # stay away from |d| = 0, where MAE has no derivative
        d = pred - target
        pred[np.abs(d) < 1e-2] += 0.1
    _, grad = _engine.loss(kind, pred, target)
    p64 = pred.astype(np.float64)
    (fd,) = ref.finite_difference(lambda: ref.LOSSES[kind](p64, target)[0], [p64])
    np.testing.assert_allclose(grad, fd, rtol=1e-2, atol=1e-5)


def test_sparse_cce_is_stable_for_huge_logits(ref):
    pred = np.array([[1000.0, -1000.0, 0.0], [-500.0, 500.0, 499.0]], np.float32)
    target = np.array([1.0, 2.0], np.float32)
    value, grad = _engine.loss("sparse_softmax_crossentropy", pred, target)
    ref_value, ref_grad = ref.LOSSES["sparse_softmax_crossentropy"](pred, target)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx(ref_value, rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_mae_gradient_is_zero_where_prediction_is_exact():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    _, grad = _engine.loss("mae", pred, pred.copy())
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("shape", [(5,), (5, 1), (4, 3)])
def test_public_loss_functions(rng, ref, shape):
    from fastnn import losses
    y_true = rng.standard_normal(shape)
    y_pred = rng.standard_normal(shape)
    p2 = y_pred.reshape(shape[0], -1)
    t2 = y_true.reshape(p2.shape)
    # as Keras' functions: one value per sample (the mean over the last axis); a 1-D pair
    # is one sample of shape[0] values
    per_row = losses.mse(y_true, y_pred)
    if len(shape) == 1:
        assert np.ndim(per_row) == 0
    else:
        assert np.shape(per_row) == (shape[0],)
    assert np.mean(per_row) == pytest.approx(ref.LOSSES["mse"](p2, t2)[0], rel=1e-6)
    assert np.mean(losses.mean_absolute_error(y_true, y_pred)) == pytest.approx(
        ref.LOSSES["mae"](p2, t2)[0], rel=1e-6)
    assert losses.MeanSquaredError()(y_true, y_pred) == pytest.approx(
        ref.LOSSES["mse"](p2, t2)[0], rel=1e-6)


def test_public_sparse_cce(rng, ref):
    from fastnn import losses
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, size=6)
    want = ref.LOSSES["sparse_softmax_crossentropy"](logits, labels)[0]
    value = losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert value == pytest.approx(want, rel=1e-6)
    # Keras' default takes probabilities
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert losses.SparseCategoricalCrossentropy()(labels, probs) == pytest.approx(want, rel=1e-5)


# ---- shuffle -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 10, 1000])
def test_shuffle_is_a_permutation(n):
    perm = np.arange(n, dtype=np.int64)
    _engine.shuffle(perm, 12345)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_shuffle_is_seed_reproducible():
    a = np.arange(500, dtype=np.int64)
    b = np.arange(500, dtype=np.int64)
    sa = _engine.shuffle(a, 7)
    sb = _engine.shuffle(b, 7)
    np.testing.assert_array_equal(a, b)
    assert sa == sb and sa != 7  # the returned state advanced


def test_shuffle_differs_across_seeds_and_calls():
    a = np.arange(500, dtype=np.int64)
    b = np.arange(500, dtype=np.int64)
    _engine.shuffle(a, 1)
    _engine.shuffle(b, 2)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, np.arange(500))
    # chaining the returned state gives a new order each epoch
    p = np.arange(500, dtype=np.int64)
    state = _engine.shuffle(p, 3)
    first = p.copy()
    _engine.shuffle(p, state)
    assert not np.array_equal(p, first)


def test_shuffle_is_roughly_uniform():
    # each of the 3! orders of 3 items should come up about 1/6 of the time
    counts = {}
    state = 99
    for _ in range(6000):
        p = np.arange(3, dtype=np.int64)
        state = _engine.shuffle(p, state)
        counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    assert len(counts) == 6
    assert all(800 < c < 1200 for c in counts.values()), counts


# ---- error paths -----------------------------------------------------------------------------

def test_sgemm_rejects_float64():
    a = np.ones((3, 4))
    with pytest.raises(TypeError, match=r"a must be float32, got dtype float64 with shape \(3, 4\)"):
        _engine.sgemm(a, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"b must be float32"):
        _engine.sgemm(np.ones((3, 4), np.float32), np.ones((4, 2)))


def test_sgemm_rejects_non_contiguous():
    a = np.ones((4, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"a must be C-contiguous \(shape \(4, 3\)\)"):
        _engine.sgemm(a, np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"b must be C-contiguous"):
        _engine.sgemm(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32).T)


@pytest.mark.parametrize("trans_a,trans_b,a_shape,b_shape", [
    (False, False, (3, 4), (5, 2)), (True, False, (3, 4), (4, 2)),
    (False, True, (3, 4), (2, 5)), (True, True, (4, 3), (3, 5))])
def test_sgemm_rejects_mismatched_inner_sizes(trans_a, trans_b, a_shape, b_shape):
    a, b = np.ones(a_shape, np.float32), np.ones(b_shape, np.float32)
    with pytest.raises(ValueError, match=rf"inner sizes differ: a \({a_shape[0]}, {a_shape[1]}\)"
                                         rf".*b \({b_shape[0]}, {b_shape[1]}\)"):
        _engine.sgemm(a, b, trans_a, trans_b)


def test_sgemm_rejects_wrong_ndim_and_none():
    with pytest.raises(ValueError, match=r"a must be 2-D, got shape \(3,\)"):
        _engine.sgemm(np.ones(3, np.float32), np.ones((3, 1), np.float32))
    with pytest.raises(TypeError, match="a must be a float32 ndarray, got None"):
        _engine.sgemm(None, np.ones((3, 1), np.float32))


def test_dense_forward_errors():
    x, w, b = np.ones((4, 5), np.float32), np.ones((5, 3), np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"x \(4, 5\) and w \(6, 3\) do not chain"):
        _engine.dense_forward(x, np.ones((6, 3), np.float32), b)
    with pytest.raises(ValueError, match=r"b must have shape \(3,\), got \(4,\)"):
        _engine.dense_forward(x, w, np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"x must be float32, got dtype float64"):
        _engine.dense_forward(x.astype(np.float64), w, b)
    with pytest.raises(TypeError, match=r"b must be float32"):
        _engine.dense_forward(x, w, b.astype(np.float64))
    with pytest.raises(ValueError, match=r"w must be C-contiguous \(shape \(5, 3\)\)"):
        _engine.dense_forward(x, np.ones((3, 5), np.float32).T, b)
    with pytest.raises(ValueError, match=r"x must be 2-D, got shape \(20,\)"):
        _engine.dense_forward(np.ones(20, np.float32), w, b)
    with pytest.raises(ValueError, match=r"unknown activation 'crelu'; valid: "):
        _engine.dense_forward(x, w, b, "crelu")
    with pytest.raises(ValueError, match=r"path must be one of \('auto', 'panels', 'narrow', "
                                         r"'portable', 'blas'\), got 'fast'"):
        _engine.dense_forward(x, w, b, path="fast")
    w17 = np.ones((5, 17), np.float32)
    with pytest.raises(ValueError, match=r"the narrow path takes at most 16 units, got 17"):
        _engine.dense_forward(x, w17, None, path="narrow")


def test_dense_backward_errors():
    x, w = np.ones((4, 5), np.float32), np.ones((5, 3), np.float32)
    y = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"y must have shape \(4, 3\), got \(3, 4\)"):
        _engine.dense_backward(x, w, np.ones((3, 4), np.float32), y)
    with pytest.raises(ValueError, match=r"gy must have shape \(4, 3\), got \(4, 2\)"):
        _engine.dense_backward(x, w, y, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"gy must be float32, got dtype float64"):
        _engine.dense_backward(x, w, y, np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"gy must be C-contiguous"):
        _engine.dense_backward(x, w, y, np.ones((3, 4), np.float32).T)
    with pytest.raises(ValueError, match=r"x \(4, 5\) and w \(4, 3\) do not chain"):
        _engine.dense_backward(x, np.ones((4, 3), np.float32), y, y)
    with pytest.raises(ValueError, match=r"path must be one of .*got 'gpu'"):
        _engine.dense_backward(x, w, y, y, path="gpu")
    y17 = np.ones((4, 17), np.float32)
    with pytest.raises(ValueError, match=r"the narrow path takes at most 16 units, got 17"):
        _engine.dense_backward(x, np.ones((5, 17), np.float32), y17, y17, path="narrow")


def test_activation_errors():
    with pytest.raises(TypeError, match=r"x must be float32, got dtype float64 with shape \(3,\)"):
        _engine.activation_forward(np.ones(3), "relu")
    with pytest.raises(ValueError, match=r"x must be C-contiguous"):
        _engine.activation_forward(np.ones((3, 4), np.float32).T, "relu")
    with pytest.raises(ValueError, match=r"unknown activation 'crelu'"):
        _engine.activation_forward(np.ones(3, np.float32), "crelu")
    with pytest.raises(ValueError, match=r"gy must have shape \(3,\), got \(4,\)"):
        _engine.activation_backward(np.ones(3, np.float32), np.ones(4, np.float32), "relu")


def test_loss_errors():
    p = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; valid: "):
        _engine.loss("hinge", p, p)
    with pytest.raises(ValueError, match=r"target must have shape \(4, 3\), got \(4, 2\)"):
        _engine.loss("mse", p, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"target must be 1-D, got shape \(4, 3\)"):
        _engine.loss("sparse_softmax_crossentropy", p, p)
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\), got range \[0.0, 3.0\]"):
        _engine.loss("sparse_softmax_crossentropy", p, np.array([0, 1, 2, 3], np.float32))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
        _engine.loss("sparse_softmax_crossentropy", p, np.array([0, 1, 1.5, 2], np.float32))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
        _engine.loss("sparse_softmax_crossentropy", p, np.array([0, -1, 1, 2], np.float32))
    with pytest.raises(TypeError, match=r"pred must be float32, got dtype float64"):
        _engine.loss("mse", p.astype(np.float64), p)
    with pytest.raises(ValueError, match=r"pred must be C-contiguous"):
        _engine.loss("mse", np.zeros((3, 4), np.float32).T, p)
    with pytest.raises(ValueError, match=r"pred must not be empty, got shape \(0, 3\)"):
        _engine.loss("mse", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("perm", [np.arange(5, dtype=np.int32), np.arange(5.0),
                                  np.arange(10, dtype=np.int64)[::2],
                                  np.arange(6, dtype=np.int64).reshape(2, 3)],
                         ids=["int32", "float64", "strided", "2-D"])
def test_shuffle_rejects_bad_arrays(perm):
    with pytest.raises(TypeError, match="perm must be a contiguous 1-D int64 array"):
        _engine.shuffle(perm, 1)


def _byteswapped(a):
    """The same values as a non-native (byte-swapped) float32 array: dtype '>f4' on x86."""
    return a.astype(a.dtype.newbyteorder())


BYTESWAP_CASES = {
    "sgemm": lambda a: _engine.sgemm(_byteswapped(a), a.T.copy()),
    "dense_forward": lambda a: _engine.dense_forward(_byteswapped(a), np.ones((3, 2), np.float32)),
    "activation_forward": lambda a: _engine.activation_forward(_byteswapped(a), "tanh"),
    "loss": lambda a: _engine.loss("mse", _byteswapped(a), a),
    "optimizer_step": lambda a: _engine.OptimizerState("sgd", 6, learning_rate=1.0).step(
        np.zeros(6, np.float32), _byteswapped(a.ravel())),
}


@pytest.mark.parametrize("case", sorted(BYTESWAP_CASES))
def test_kernels_reject_byteswapped_float32(case):
    a = (np.arange(6, dtype=np.float32).reshape(2, 3) + 1) / 10
    with pytest.raises(TypeError, match=r"must be .*float32.*>f4"):
        BYTESWAP_CASES[case](a)


@pytest.mark.parametrize("path", ["narrow", "panels", "portable"])
def test_relu_keeps_nan_in_every_path(rng, kernels, path):
    """relu(NaN) is NaN as in NumPy/Keras, also where relu is fused into a kernel's stores."""
    x, w, b = _dense_data(rng, 11, 5, 7)
    x[3, 2] = np.nan
    y = _engine.dense_forward(x, w, b, "relu", path=path)
    assert np.isnan(y[3]).all()
    assert np.isfinite(np.delete(y, 3, axis=0)).all()
    ref = np.maximum(x[np.arange(11) != 3].astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(np.delete(y, 3, axis=0), ref, rtol=1e-5, atol=1e-5)
