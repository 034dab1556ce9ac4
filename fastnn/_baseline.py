"""Careful plain-NumPy implementations of fastnn's maths: the speed baseline for the
benchmarks and for ``python -m fastnn demo``.

Written the way a careful NumPy user would: float32 throughout, ``out=`` on every matmul and
ufunc, buffers preallocated per batch size, and one flat parameter vector updated by a single
fused-as-NumPy-allows RMSprop (or Adam) pass. It is meant to be a fair opponent, not a
strawman.
"""
import time

import numpy as np

__all__ = ["NumpyMLP", "NumpyDense", "dense_forward_backward", "sgemm_gflops",
           "rmsprop_update", "adam_update"]

_F32 = np.float32
_ACTIVATIONS = ("relu", "linear", "tanh", "sigmoid")
_LOSSES = ("mse", "softmax_crossentropy")
_OPTIMIZERS = ("rmsprop", "adam", "sgd")


def _activate(z, kind):
    """Apply the activation to ``z`` in place."""
    if kind == "relu":
        np.maximum(z, 0, out=z)
    elif kind == "tanh":
        np.tanh(z, out=z)
    elif kind == "sigmoid":
        # sigmoid(z) = 0.5 * tanh(z / 2) + 0.5: no exp overflow, no temporaries.
        z *= _F32(0.5)
        np.tanh(z, out=z)
        z *= _F32(0.5)
        z += _F32(0.5)


def _activation_grad(d, a, kind, tmp, mask):
    """d *= f'(z), expressed through the activation output ``a`` (in place)."""
    if kind == "relu":
        np.greater(a, 0, out=mask)
        np.multiply(d, mask, out=d)
    elif kind == "tanh":
        np.multiply(a, a, out=tmp)
        np.subtract(1, tmp, out=tmp)
        d *= tmp
    elif kind == "sigmoid":
        np.subtract(1, a, out=tmp)
        tmp *= a
        d *= tmp


class NumpyMLP:
    """Dense MLP (Y = X @ W + b per layer) trained with MSE or softmax cross-entropy.

    Parameters live in one contiguous float32 vector ``params`` laid out as Keras'
    ``get_weights()`` order flattened: [W0, b0, W1, b1, ...]; ``weights`` holds (W, b) views.
    Optimizer: "rmsprop" (Keras form, epsilon inside the root), "adam" (Keras form: the
    bias corrections folded into the step size, epsilon outside the root) or "sgd".
    """

    def __init__(self, sizes, activations, seed=0, loss="mse", optimizer="rmsprop",
                 learning_rate=None, rho=0.9, epsilon=1e-7, beta_1=0.9, beta_2=0.999):
        if len(activations) != len(sizes) - 1:
            raise ValueError(f"need {len(sizes) - 1} activations, got {len(activations)}")
        for a in activations:
            if a not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; expected one of {_ACTIVATIONS}")
        if loss not in _LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {_LOSSES}")
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {_OPTIMIZERS}")
        self.sizes = [int(s) for s in sizes]
        self.activations = list(activations)
        self.loss, self.optimizer = loss, optimizer
        if learning_rate is None:
            learning_rate = 0.01 if optimizer == "sgd" else 0.001
        # Hyper-parameters as float32 scalars: a numpy float64 scalar would promote the update.
        self.lr, self.rho = _F32(learning_rate), _F32(rho)
        self.eps = _F32(epsilon)
        self.beta_1, self.beta_2 = _F32(beta_1), _F32(beta_2)
        self.iterations = 0

        n = sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))
        self.params = np.zeros(n, _F32)
        self.grads = np.zeros(n, _F32)
        self._v = np.zeros(n, _F32)    # RMSprop velocity / Adam's second moment
        self._m = np.zeros(n if optimizer == "adam" else 0, _F32)  # Adam's first moment
        self._tmp = np.empty(n, _F32)  # scratch for the update
        self.weights, self._gviews = self._views(self.params), self._views(self.grads)
        rng = np.random.default_rng(seed)
        for (W, _), (fan_in, fan_out) in zip(self.weights, zip(self.sizes[:-1], self.sizes[1:])):
            limit = np.sqrt(6.0 / (fan_in + fan_out))  # glorot_uniform; biases stay zero
            W[...] = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        self._buffers = {}

    def _views(self, flat):
        views, off = [], 0
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            W = flat[off:off + i * o].reshape(i, o)
            off += i * o
            views.append((W, flat[off:off + o]))
            off += o
        return views

    def reset_optimizer(self):
        """Optimizer state back to its start: zero slots, iteration 0."""
        self._v[...] = 0
        self._m[...] = 0
        self.iterations = 0

    def set_flat_params(self, flat):
        flat = np.asarray(flat).ravel()
        if flat.size != self.params.size:
            raise ValueError(f"expected {self.params.size} parameters, got {flat.size}")
        np.copyto(self.params, flat, casting="same_kind")

    def _buf(self, n):
        """Per-batch-size buffers: layer outputs, their gradients, and scratch."""
        b = self._buffers.get(n)
        if b is None:
            if len(self._buffers) >= 8:  # predict on many sizes must not grow without bound
                self._buffers.clear()
            outs = self.sizes[1:]
            b = dict(a=[np.empty((n, o), _F32) for o in outs],
                     d=[np.empty((n, o), _F32) for o in outs],
                     tmp=[np.empty((n, o), _F32) for o in outs],
                     mask=[np.empty((n, o), np.bool_) for o in outs],
                     col=np.empty((n, 1), _F32), col2=np.empty((n, 1), _F32),
                     rows=np.arange(n))
            self._buffers[n] = b
        return b

    def _forward(self, x, b):
        a_prev = x
        for (W, bias), kind, a in zip(self.weights, self.activations, b["a"]):
            np.matmul(a_prev, W, out=a)
            a += bias
            _activate(a, kind)
            a_prev = a
        return a_prev

    def predict(self, x):
        x = np.ascontiguousarray(x, dtype=_F32)
        return self._forward(x, self._buf(x.shape[0])).copy()  # buffers are reused

    def _loss_grad(self, p, y, b):
        """Loss value; writes dLoss/dp into b['d'][-1]."""
        d = b["d"][-1]
        if self.loss == "mse":
            np.subtract(p, y.reshape(p.shape), out=d)
            flat = d.reshape(-1)
            loss = float(np.dot(flat, flat)) / d.size
            d *= _F32(2.0 / d.size)
            return loss
        # Softmax cross-entropy from logits, stable: shift by the row max.
        n, rows, m, s = p.shape[0], b["rows"][:p.shape[0]], b["col"], b["col2"]
        np.max(p, axis=1, keepdims=True, out=m)
        np.subtract(p, m, out=d)
        picked = d[rows, y]                      # shifted logit of the true class
        np.exp(d, out=d)
        np.sum(d, axis=1, keepdims=True, out=s)
        loss = (float(np.log(s, out=m).sum()) - float(picked.sum())) / n
        d /= s                                   # softmax
        d[rows, y] -= 1
        d *= _F32(1.0 / n)
        return loss

    def train_step(self, xb, yb):
        xb = np.ascontiguousarray(xb, dtype=_F32)
        yb = (np.asarray(yb, np.intp).reshape(-1) if self.loss == "softmax_crossentropy"
              else np.asarray(yb, _F32))
        b = self._buf(xb.shape[0])
        loss = self._loss_grad(self._forward(xb, b), yb, b)
        for i in range(len(self.weights) - 1, -1, -1):
            d = b["d"][i]
            _activation_grad(d, b["a"][i], self.activations[i], b["tmp"][i], b["mask"][i])
            a_prev = b["a"][i - 1] if i else xb
            dW, db = self._gviews[i]
            np.matmul(a_prev.T, d, out=dW)
            np.sum(d, axis=0, out=db)
            if i:
                np.matmul(d, self.weights[i][0].T, out=b["d"][i - 1])
        self._update()
        return loss

    def _update(self):
        self.iterations += 1
        if self.optimizer == "rmsprop":
            rmsprop_update(self.params, self.grads, self._v, self._tmp, self.lr, self.rho,
                           self.eps)
        elif self.optimizer == "adam":
            adam_update(self.params, self.grads, self._m, self._v, self._tmp, self.lr,
                        self.beta_1, self.beta_2, self.eps, self.iterations)
        else:
            self.grads *= self.lr
            self.params -= self.grads

    def fit(self, x, y, epochs, batch_size=32, shuffle=True, seed=0):
        """Train; returns per-epoch losses (batch losses weighted by batch length)."""
        x = np.ascontiguousarray(x, dtype=_F32)  # convert once, not per step
        if self.loss == "softmax_crossentropy":
            y = np.ascontiguousarray(np.asarray(y).reshape(-1), dtype=np.intp)
        else:
            y = np.ascontiguousarray(y, dtype=_F32).reshape(len(x), -1)
        n = len(x)
        rng = np.random.default_rng(seed)  # one generator: a new permutation each epoch
        xbuf, ybuf, history = {}, {}, []
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else None
            total = 0.0
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if order is None:
                    xb, yb = x[start:stop], y[start:stop]
                else:
                    idx, k = order[start:stop], stop - start
                    if k not in xbuf:  # at most two sizes: full and last batch
                        xbuf[k] = np.empty((k,) + x.shape[1:], x.dtype)
                        ybuf[k] = np.empty((k,) + y.shape[1:], y.dtype)
                    xb = np.take(x, idx, axis=0, out=xbuf[k])
                    yb = np.take(y, idx, axis=0, out=ybuf[k])
                total += self.train_step(xb, yb) * (stop - start)
            history.append(total / n)
        return history


def rmsprop_update(w, g, v, t, lr, rho, eps):
    """Keras' RMSprop in careful NumPy, in place with out= everywhere and float32 scalars,
    one scratch buffer t, g untouched: v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v+eps)."""
    lr, rho, eps = _F32(lr), _F32(rho), _F32(eps)
    np.multiply(g, g, out=t)
    t *= _F32(1) - rho
    v *= rho
    v += t
    np.add(v, eps, out=t)
    np.sqrt(t, out=t)
    np.divide(g, t, out=t)
    t *= lr
    w -= t


def adam_update(w, g, m, v, t, lr, beta_1, beta_2, eps, step):
    """Keras' Adam in careful NumPy (in place, out= everywhere, float32 scalars, one scratch
    buffer t, g untouched), for update number `step` (1 for the first):
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; alpha = lr*sqrt(1-b2^step)/(1-b1^step);
    w -= alpha*m/(sqrt(v)+eps)."""
    b1, b2 = float(beta_1), float(beta_2)
    alpha = _F32(float(lr) * np.sqrt(1.0 - b2 ** step) / (1.0 - b1 ** step))
    np.multiply(g, _F32(1.0 - b1), out=t)
    m *= _F32(b1)
    m += t
    np.multiply(g, g, out=t)
    t *= _F32(1.0 - b2)
    v *= _F32(b2)
    v += t
    np.sqrt(v, out=t)
    t += _F32(eps)
    np.divide(m, t, out=t)
    t *= alpha
    w -= t


class NumpyDense:
    """One Dense+ReLU layer's forward and backward with preallocated outputs."""

    def __init__(self, batch, n_in, n_out, W=None, b=None, seed=0):
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (n_in + n_out))
        self.W = (rng.uniform(-limit, limit, (n_in, n_out)).astype(_F32) if W is None
                  else np.ascontiguousarray(W, dtype=_F32))
        self.b = np.zeros(n_out, _F32) if b is None else np.ascontiguousarray(b, dtype=_F32)
        self.y = np.empty((batch, n_out), _F32)
        self.dz = np.empty((batch, n_out), _F32)
        self.mask = np.empty((batch, n_out), np.bool_)
        self.dx = np.empty((batch, n_in), _F32)
        self.dW = np.empty((n_in, n_out), _F32)
        self.db = np.empty(n_out, _F32)

    def step(self, x, dy):
        """Forward y = relu(x @ W + b), then backward from dy: returns (y, dx, dW, db)."""
        np.matmul(x, self.W, out=self.y)
        self.y += self.b
        np.maximum(self.y, 0, out=self.y)
        np.greater(self.y, 0, out=self.mask)
        np.multiply(dy, self.mask, out=self.dz)  # dz kept apart so the caller's dy survives
        np.matmul(x.T, self.dz, out=self.dW)
        np.sum(self.dz, axis=0, out=self.db)
        np.matmul(self.dz, self.W.T, out=self.dx)
        return self.y, self.dx, self.dW, self.db


def dense_forward_backward(x, W, b, dy):
    """One-shot Dense+ReLU forward/backward; returns (y, dx, dW, db).
    For timing loops, build a NumpyDense once and call .step() (no allocations)."""
    layer = NumpyDense(x.shape[0], W.shape[0], W.shape[1], W=W, b=b)
    return layer.step(np.ascontiguousarray(x, dtype=_F32), np.asarray(dy, dtype=_F32))


def sgemm_gflops(n=1024, repeats=5):
    """NumPy float32 matmul rate at n x n x n (the best of `repeats`), in GFLOP/s.

    The best, not the median: NumPy's two-thread OpenBLAS has slow spells of its own on
    these machines (a median of ten came out anywhere from 105 to 198 GFLOP/s between runs
    minutes apart), and the reference is meant as the rate the cores can reach."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=_F32)
    b = rng.standard_normal((n, n), dtype=_F32)
    c = np.empty((n, n), _F32)
    np.matmul(a, b, out=c)  # warm up: thread pool start, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / float(np.min(times)) / 1e9
