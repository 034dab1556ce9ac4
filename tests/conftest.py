"""Shared fixtures and the independent NumPy (float64) references the tests compare against.

The references here are written from the maths (Keras' definitions), not from
fastnn's code: a dense layer is y = act(x . W + b) with W of shape (in, out);
MSE/MAE are means over every element; sparse softmax cross-entropy is the mean
over rows of logsumexp(z) - z[label].
"""
import types
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.datasets import boston_housing

REPO_ROOT = Path(__file__).resolve().parent.parent

# ---- activations --------------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACT_FORWARD = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,  # over the last axis: no elementwise derivative below
}

# derivative with respect to the pre-activation z, as a function of z
ACT_DERIVATIVE = {
    "linear": lambda z: np.ones_like(z),
    "relu": lambda z: (z > 0).astype(z.dtype),
    "sigmoid": lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)),
    "tanh": lambda z: 1.0 - np.tanh(z) ** 2,
}

ACTIVATIONS = sorted(ACT_DERIVATIVE)  # the elementwise ones

# ---- losses (value and dL/dpred) ------------------------------------------------------


def loss_mse(pred, target):
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    d = pred - target
    return float(np.mean(d * d)), 2.0 * d / d.size


def loss_mae(pred, target):
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    d = pred - target
    return float(np.mean(np.abs(d))), np.sign(d) / d.size


def loss_sparse_cce(logits, labels):
    z = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    n = z.shape[0]
    zmax = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
    value = float(np.mean(lse[:, 0] - z[np.arange(n), labels]))
    grad = np.exp(z - lse)
    grad[np.arange(n), labels] -= 1.0
    return value, grad / n


def loss_cce(logits, targets):
    """-sum_j t_j log softmax(z)_j, mean over rows; gradient w.r.t. the logits."""
    z, t = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    zmax = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
    value = float(np.mean(np.sum(t * (lse - z), axis=1)))
    grad = np.exp(z - lse) * t.sum(axis=1, keepdims=True) - t
    return value, grad / z.shape[0]


def loss_bce(logits, targets):
    """Keras' binary cross-entropy of sigmoid(z) against t, mean over all elements."""
    z = np.asarray(logits, np.float64)
    t = np.asarray(targets, np.float64).reshape(z.shape)
    p = _sigmoid(z)
    value = float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))
    return value, (p - t) / z.size


LOSSES = {"mse": loss_mse, "mae": loss_mae, "sparse_softmax_crossentropy": loss_sparse_cce,
          "softmax_crossentropy": loss_cce, "sigmoid_crossentropy": loss_bce}

# ---- a chain of dense layers -------------------------------------------------------------


def mlp_forward(weights, activations, x, use_bias=None):
    """Returns (pre-activations, outputs) per layer, in float64.

    weights: [W0, b0, W1, b1, ...] (biases omitted for layers with use_bias False)."""
    use_bias = use_bias or [True] * len(activations)
    h = np.asarray(x, np.float64)
    zs, hs, i = [], [h], 0
    for act, ub in zip(activations, use_bias):
        w = np.asarray(weights[i], np.float64)
        i += 1
        z = h @ w
        if ub:
            z = z + np.asarray(weights[i], np.float64)
            i += 1
        h = ACT_FORWARD[act](z)
        zs.append(z)
        hs.append(h)
    return zs, hs


def mlp_predict(weights, activations, x, use_bias=None):
    return mlp_forward(weights, activations, x, use_bias)[1][-1]


def _targets(loss, y, pred):
    if loss in ("mse", "mae"):
        return np.asarray(y, np.float64).reshape(pred.shape)
    return y  # class labels


def _param_index(use_bias):
    """(kernel index, bias index or None) of each layer in the weights list."""
    idx, i = [], 0
    for ub in use_bias:
        idx.append((i, i + 1 if ub else None))
        i += 2 if ub else 1
    return idx


def mlp_loss_and_grads(weights, activations, x, y, loss="mse", use_bias=None):
    """Loss and gradients (same order and shapes as `weights`) by backpropagation in float64."""
    use_bias = use_bias or [True] * len(activations)
    zs, hs = mlp_forward(weights, activations, x, use_bias)
    value, g = LOSSES[loss](hs[-1], _targets(loss, y, hs[-1]))
    grads = [None] * len(weights)
    for layer, (wi, bi) in reversed(list(enumerate(_param_index(use_bias)))):
        dz = g * ACT_DERIVATIVE[activations[layer]](zs[layer])
        grads[wi] = hs[layer].T @ dz
        if bi is not None:
            grads[bi] = dz.sum(axis=0)
        g = dz @ np.asarray(weights[wi], np.float64).T
    return value, grads


def mlp_loss(weights, activations, x, y, loss="mse", use_bias=None):
    pred = mlp_predict(weights, activations, x, use_bias)
    return LOSSES[loss](pred, _targets(loss, y, pred))[0]


def finite_difference(f, arrays, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of every
    float64 array in `arrays` (perturbed in place and restored)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + eps
            up = f()
            a[idx] = old - eps
            down = f()
            a[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


# ---- optimizers (Keras' formulas, float64) ---------------------------------------------------


class RefOptimizer:
    """One parameter vector's optimizer, in float64, following Keras' update rules."""

    def __init__(self, kind, learning_rate, rho=0.9, momentum=0.0, epsilon=1e-7, beta_1=0.9,
                 beta_2=0.999):
        self.kind, self.lr, self.rho, self.momentum = kind, learning_rate, rho, momentum
        self.eps, self.b1, self.b2 = epsilon, beta_1, beta_2
        self.t = 0
        self.s1 = self.s2 = None

    def step(self, w, g):
        w = np.asarray(w, np.float64)
        g = np.asarray(g, np.float64)
        if self.s1 is None:
            self.s1, self.s2 = np.zeros_like(w), np.zeros_like(w)
        self.t += 1
        if self.kind == "sgd":
            if self.momentum:
                self.s1 = self.momentum * self.s1 - self.lr * g
                return w + self.s1
            return w - self.lr * g
        if self.kind == "rmsprop":
            self.s1 = self.rho * self.s1 + (1 - self.rho) * g * g
            return w - self.lr * g / np.sqrt(self.s1 + self.eps)  # epsilon inside the root
        if self.kind == "adam":
            self.s1 = self.b1 * self.s1 + (1 - self.b1) * g
            self.s2 = self.b2 * self.s2 + (1 - self.b2) * g * g
            lr_t = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
            return w - lr_t * self.s1 / (np.sqrt(self.s2) + self.eps)
        raise ValueError(self.kind)


def flatten(arrays):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def unflatten(flat, like):
    out, at = [], 0
    for a in like:
        out.append(np.asarray(flat[at:at + a.size]).reshape(a.shape))
        at += a.size
    return out


def train_reference(weights, activations, x, y, optimizer, batch_size, epochs, loss="mse"):
    """Minibatch training in float64 with rows taken in order (shuffle=False)."""
    w = [np.asarray(a, np.float64).copy() for a in weights]
    n = x.shape[0]
    for _ in range(epochs):
        for s in range(0, n, batch_size):
            _, grads = mlp_loss_and_grads(w, activations, x[s:s + batch_size],
                                          y[s:s + batch_size], loss)
            w = unflatten(optimizer.step(flatten(w), flatten(grads)), w)
    return w


REF = types.SimpleNamespace(
    ACT_FORWARD=ACT_FORWARD, ACT_DERIVATIVE=ACT_DERIVATIVE, ACTIVATIONS=ACTIVATIONS,
    LOSSES=LOSSES, mlp_forward=mlp_forward, mlp_predict=mlp_predict,
    mlp_loss_and_grads=mlp_loss_and_grads, mlp_loss=mlp_loss,
    finite_difference=finite_difference, Optimizer=RefOptimizer, flatten=flatten,
    unflatten=unflatten, train_reference=train_reference)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def ref():
    """The NumPy float64 reference implementations above."""
    return REF


@pytest.fixture
def rng():
    """A seeded NumPy Generator, fresh for every test."""
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def housing():
    """The Keras Boston-housing split with x standardised by the training mean/std (ddof=0).

    float32 arrays: x_train (404, 13), y_train (404,), x_test (102, 13), y_test (102,)."""
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data()
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    return types.SimpleNamespace(
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train.astype(np.float32),
        x_test=((x_test - mean) / std).astype(np.float32),
        y_test=y_test.astype(np.float32))


@pytest.fixture
def blas():
    """Registers NumPy's OpenBLAS with the C core; skips the test when none is found."""
    if not fastnn._blas.available():
        pytest.skip("no CBLAS sgemm found in NumPy's libraries")
    return True


@pytest.fixture(params=["avx512", "avx2", "baseline"])
def kernels(request):
    """Runs the test under each set of narrow-layer kernels (AVX-512F, AVX2+FMA,
    baseline), then restores the set picked at import."""
    from fastnn import _engine
    original = _engine.KERNELS
    got = _engine.select_kernels(request.param)
    if got != request.param:
        _engine.select_kernels(original)
        pytest.skip(f"this CPU lacks {request.param}")
    yield got
    _engine.select_kernels(original)


@pytest.fixture
def article_model():
    """A factory for the article's 13-10-10-1 model (seeded)."""
    from fastnn.layers import Dense

    def make(seed=0):
        fastnn.utils.set_random_seed(seed)
        return fastnn.Sequential([Dense(10, input_shape=(13,), activation="relu"),
                                  Dense(10, activation="relu"), Dense(1)])
    return make


ARTICLE_ACTS = ["relu", "relu", "linear"]


@pytest.fixture
def article_acts():
    return list(ARTICLE_ACTS)


def shared_data_dir():
    """`shared/data/keras` beside the clone (CI) or the dev machine's /work/shared."""
    for base in (REPO_ROOT.parent / "shared", Path("/work/shared")):
        d = base / "data" / "keras"
        if d.is_dir():
            return d
    return None


@pytest.fixture
def keras_data_dir():
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared/data/keras not found beside the repository")
    return d
