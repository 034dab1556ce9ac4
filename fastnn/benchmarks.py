"""The benchmark workloads of ``python -m fastnn bench`` and of ``bench/`` (pytest-benchmark).

Each workload is built as *cases*: one per implementation ("fastnn", "numpy" -- the careful
NumPy baseline of :mod:`fastnn._baseline` -- and "torch" when PyTorch imports), made by
:func:`case`. A case is a callable plus its arguments, set up once (data, model, buffers) so
that timing it times only the work. The CLI times cases with :func:`time_case` (median of
several repeats); pytest-benchmark times the same cases.

Workloads (DESIGN.md, "Where the time goes"):

=====  ==================================================================================
W1a    one RMSprop training step of the article model (13->10->10->1 relu, MSE, batch 32)
       on the standardised Boston housing training split: fastnn times a 1-epoch ``fit``
       of exactly 32 rows (one step plus fit's Python overhead), NumPy its ``train_step``
W1b    the article model's 100-epoch ``fit`` on the 404 training rows (1300 steps)
W2     one epoch of a 784->512->512->10 relu MLP, softmax cross-entropy, RMSprop, batch
       128 on synthetic data (60000 rows; 6000 in quick mode), in GFLOP/s
W3     single-sample ``predict`` latency of the article model
W4     ``predict`` throughput of the W2 model on the synthetic rows (NumPy: batches of 1024)
W5     RMSprop update of 10M parameters, in GB/s (20 bytes per parameter), against
       ``np.copyto`` bandwidth on 100 MB (counted as 2x the size) and a careful NumPy update
W6     ``import fastnn`` time over ``import numpy``, measured inside fresh interpreters
L512   forward+backward of one 512->512 Dense+ReLU layer at batch 128 (the 0.1 workload)
W7     one epoch of a tabular 32->256->128->64->1 relu MLP, MSE, Adam, batch 256 on
       200000 synthetic rows (20000 in quick mode), in GFLOP/s and as a fraction of NumPy's
       SGEMM rate; with the spread of five runs
W8     one epoch of the digits classifier 64->128->64->10 (relu, softmax), sparse
       categorical cross-entropy, Adam, batch 32, on the 1797 digits tiled 10x (quick: 2x);
       GFLOP/s, fraction of SGEMM and spread as W7
LOAD   the W7 fit beside one busy competing process against alone: time loaded / alone
       (fastnn; the NumPy baseline for context), runs interleaved
THREADS  the fastnn time at 1 thread against N threads (N = the CPUs usable, at least 2)
       for W1b, W8, W7, W2 and W4; and a crossover sweep (32->h->h->1, Adam, batch 32 and
       128): time per step at 1 thread, N threads always split, N threads as the default
       threshold decides (fastnn._engine.parallel_min_flop)
=====  ==================================================================================

Ratios are speed-ups: baseline time / fastnn time (or fastnn rate / baseline rate), so a
ratio above 1 means fastnn is faster. Quick mode (``quick=True`` or FASTNN_BENCH_QUICK=1)
shrinks the synthetic data set and the repeat counts, never the models.
"""
import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections import namedtuple

import numpy as np

from fastnn._baseline import rmsprop_update

__all__ = ["Case", "case", "time_case", "time_cases", "sample_cases", "have_torch",
           "implementations", "is_quick", "housing", "synthetic", "tabular", "digits",
           "busy_competitor", "WORKLOADS", "run_all", "run_workload"]

_F32 = np.float32

# ---- sizes ---------------------------------------------------------------------------
W1_SIZES, W1_ACTS = (13, 10, 10, 1), ("relu", "relu", "linear")
W1_BATCH, W1_EPOCHS = 32, 100
W2_SIZES, W2_ACTS = (784, 512, 512, 10), ("relu", "relu", "linear")
W2_BATCH, W2_ROWS, W2_ROWS_QUICK = 128, 60000, 6000
W4_BATCH = 1024                     # NumPy's forward batch in W4
PREDICT_BLOCK = 1024                # fastnn's predict runs blocks of up to 1024 rows
W5_PARAMS = 10_000_000
COPY_FLOATS = 25_000_000            # 100 MB of float32 for the np.copyto reference
L_BATCH, L_WIDTH = 128, 512
SGEMM_N = 1024
W7_SIZES, W7_ACTS = (32, 256, 128, 64, 1), ("relu", "relu", "relu", "linear")
W7_BATCH, W7_ROWS, W7_ROWS_QUICK = 256, 200_000, 20_000
W8_SIZES, W8_ACTS = (64, 128, 64, 10), ("relu", "relu", "linear")  # NumPy/torch: logits
W8_BATCH, W8_TILES, W8_TILES_QUICK = 32, 10, 2     # 1797 digits x 10 = 17970 rows
SPREAD_RUNS = 5                     # W7/W8: the runs whose spread is reported
LOAD_RUNS, LOAD_RUNS_QUICK = 3, 2   # LOAD: runs alone and loaded, each
LOAD_NUMPY_ROWS = 50_000            # LOAD's NumPy context: a quarter of W7 (loaded, its
                                    # 2-thread OpenBLAS ran 3-40x slower than alone here)
XOVER_WIDTHS, XOVER_BATCHES = (16, 32, 64, 128, 256), (32, 128)
XOVER_IN = 32                       # crossover MLP: 32 -> h -> h -> 1
XOVER_FLOP, XOVER_FLOP_QUICK = 1e9, 2.5e8  # work per timed fit, so each takes ~10-40 ms
XOVER_STEPS = (32, 4096)            # ... within these step counts

# ---- targets (fastnn 1.0 goals; "0.1" is the first release's) ----------------------
TARGET_W1_FIT_RATIO = 50.0
TARGET_W1_FIT_RATIO_01 = 10.0
TARGET_W1_STEP_US = 3.0
TARGET_W2_SGEMM_FRACTION = 0.75
TARGET_W3_US = 1.0
TARGET_W4_RATIO = 1.0
TARGET_W5_COPY_FRACTION = 0.80
TARGET_W6_SECONDS = 0.03
TARGET_L512_RATIO = 1.0
TARGET_W7_SGEMM_FRACTION = 0.85
TARGET_W8_SGEMM_FRACTION = 0.70
TARGET_SPREAD = 0.10                # every one of the five runs within +-10% of their median
TARGET_LOAD_RATIO = 2.2             # loaded / alone (the fair share on 2 cores is 2x)
TARGET_W1_THREADS_RATIO = 0.9       # the article fit stays on one thread: no slower at N
TARGET_XOVER_MISS = 1.1             # default threshold within 10% of the faster option


def is_quick(quick=None):
    """quick if asked, else from FASTNN_BENCH_QUICK (anything but '', '0', 'false', 'no')."""
    if quick is not None:
        return bool(quick)
    return os.environ.get("FASTNN_BENCH_QUICK", "").strip().lower() not in ("", "0", "false",
                                                                            "no")


@functools.lru_cache(maxsize=None)
def _torch():
    try:
        import torch
    except Exception:  # not installed, or a broken install: no torch rows
        return None
    return torch


def have_torch():
    return _torch() is not None


def implementations():
    """The implementations every workload has: fastnn, numpy, and torch when importable."""
    return ("fastnn", "numpy", "torch") if have_torch() else ("fastnn", "numpy")


# ---- data ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def housing():
    """Boston housing, standardised with the training split's mean and std, as float32.

    Returns (x_train (404, 13), y_train (404,), x_test (102, 13), y_test (102,)).
    The arrays are shared: do not modify them."""
    from fastnn.datasets import boston_housing
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data()
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    arrays = ((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)
    out = tuple(np.ascontiguousarray(a, dtype=_F32) for a in arrays)
    for a in out:
        a.flags.writeable = False
    return out


_synthetic_cache = {}


def synthetic(rows):
    """Random float32 (rows, 784) inputs in [0, 1) and int64 labels 0..9 (seeded; cached,
    one size at a time so that the 188 MB full set is not kept twice)."""
    if rows not in _synthetic_cache:
        _synthetic_cache.clear()
        rng = np.random.default_rng(1)
        x = rng.random((rows, W2_SIZES[0]), dtype=_F32)
        y = rng.integers(0, W2_SIZES[-1], size=rows, dtype=np.int64)
        x.flags.writeable = y.flags.writeable = False
        _synthetic_cache[rows] = (x, y)
    return _synthetic_cache[rows]


def w2_rows(quick=None):
    return W2_ROWS_QUICK if is_quick(quick) else W2_ROWS


def w7_rows(quick=None):
    return W7_ROWS_QUICK if is_quick(quick) else W7_ROWS


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=2)
def tabular(rows):
    """A seeded synthetic regression set: float32 (rows, 32) standard-normal inputs and a
    float32 (rows,) target, a smooth nonlinear function of them plus noise, of unit scale.
    The arrays are shared: do not modify them. (Cached: making them calls NumPy's BLAS,
    whose OpenBLAS threads then spin ~0.15 s, taking a core from whatever runs next.)"""
    rng = np.random.default_rng(7)
    n_in = W7_SIZES[0]
    x = rng.standard_normal((rows, n_in), dtype=_F32)
    a = rng.standard_normal((n_in, 8)) / np.sqrt(n_in)
    b = rng.standard_normal(8) / np.sqrt(8)
    y = np.tanh(x @ a) @ b + 0.1 * rng.standard_normal(rows)
    y = ((y - y.mean()) / y.std()).astype(_F32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


@functools.lru_cache(maxsize=None)
def digits(tiles):
    """All 1797 bundled 8x8 digits (train and test splits), scaled to [0, 1], as float32
    (1797 * tiles, 64) and int64 labels, the set repeated `tiles` times. Shared: read only."""
    from fastnn.datasets import digits as source
    (x_train, y_train), (x_test, y_test) = source.load_data()
    x = np.concatenate([x_train, x_test]).astype(_F32) / _F32(16)
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    x, y = np.tile(x, (tiles, 1)), np.tile(y, tiles)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def w8_tiles(quick=None):
    return W8_TILES_QUICK if is_quick(quick) else W8_TILES


def steps_per_epoch(rows, batch):
    return -(-rows // batch)


def n_weights(sizes):
    return sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))


# ---- models ---------------------------------------------------------------------------
def article_model(seed=0, compile=True):
    """The article's model, Sequential([Dense(10, relu), Dense(10, relu), Dense(1)]),
    compiled with MSE and RMSprop defaults; weights from fastnn.utils.set_random_seed(seed)."""
    import fastnn
    from fastnn.layers import Dense
    fastnn.utils.set_random_seed(seed)
    model = fastnn.Sequential([Dense(10, input_shape=(13,), activation="relu"),
                               Dense(10, activation="relu"), Dense(1)])
    if compile:
        model.compile(loss="mse", optimizer="rmsprop")
    return model


def wide_model(seed=0):
    """784->512->512->10 relu MLP, logits out, sparse softmax cross-entropy, RMSprop."""
    import fastnn
    from fastnn.layers import Dense
    fastnn.utils.set_random_seed(seed)
    model = fastnn.Sequential([Dense(512, input_shape=(784,), activation="relu"),
                               Dense(512, activation="relu"), Dense(10)])
    model.compile(loss=fastnn.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="rmsprop")
    return model


def mlp_model(sizes, activations, loss, optimizer, seed=0):
    """A Sequential of Dense layers `sizes[0] -> ... -> sizes[-1]` (weights from
    fastnn.utils.set_random_seed(seed)), compiled with `loss` and `optimizer`."""
    import fastnn
    from fastnn.layers import Dense
    fastnn.utils.set_random_seed(seed)
    layers = [Dense(sizes[1], input_shape=(sizes[0],), activation=activations[0])]
    layers += [Dense(units, activation=act) for units, act in zip(sizes[2:], activations[1:])]
    model = fastnn.Sequential(layers)
    model.compile(loss=loss, optimizer=optimizer)
    return model


def tabular_model(seed=0):
    """W7's 32->256->128->64->1 relu MLP, linear out, MSE, Adam (Keras defaults)."""
    return mlp_model(W7_SIZES, W7_ACTS, "mse", "adam", seed)


def digits_model(seed=0):
    """W8's 64->128->64->10 relu MLP, softmax out, sparse categorical cross-entropy, Adam."""
    return mlp_model(W8_SIZES, W8_ACTS[:-1] + ("softmax",), "sparse_categorical_crossentropy",
                     "adam", seed)


def flat_weights(model):
    """The model's weights as one flat float32 vector, in NumpyMLP's layout."""
    return np.concatenate([w.ravel() for w in model.get_weights()])


def numpy_twin(model, sizes, activations, loss="mse", optimizer="rmsprop"):
    """A NumpyMLP with the same architecture and initial weights as the fastnn model."""
    from fastnn._baseline import NumpyMLP
    net = NumpyMLP(sizes, activations, loss=loss, optimizer=optimizer)
    net.set_flat_params(flat_weights(model))
    return net


def torch_twin(model, sizes):
    """A torch.nn.Sequential of Linear/ReLU with the fastnn model's initial weights."""
    torch = _torch()
    weights = model.get_weights()
    modules = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(fan_in, fan_out)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[2 * i].T)))
            lin.bias.copy_(torch.from_numpy(weights[2 * i + 1]))
        modules.append(lin)
        if i < len(sizes) - 2:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


def _torch_trainer(net, loss, optimizer="rmsprop"):
    """(step(xb, yb), fit(x, y, epochs, batch)) for a torch net with RMSprop or Adam at
    Keras' hyper-parameters (torch's RMSprop adds epsilon outside the root; its Adam adds it
    to sqrt(v) / sqrt(1 - b2^t), where Keras adds it to sqrt(v))."""
    torch = _torch()
    if optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    else:
        opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.MSELoss() if loss == "mse" else torch.nn.CrossEntropyLoss()

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        value = loss_fn(net(xb), yb)
        value.backward()
        opt.step()

    def fit(x, y, epochs, batch):
        n = x.shape[0]
        for _ in range(epochs):
            perm = torch.randperm(n)
            for start in range(0, n, batch):
                idx = perm[start:start + batch]
                step(x[idx], y[idx])

    step.optimizer = opt
    return step, fit


def numpy_predict_batched(net, x, batch, out):
    """NumpyMLP forward over x in batches of `batch` rows, into the preallocated out."""
    n = x.shape[0]
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        np.copyto(out[start:stop], net._forward(x[start:stop], net._buf(stop - start)))
    return out


def import_seconds(modules="numpy", repeats=1):
    """Seconds `import <modules>` takes inside a fresh interpreter (start-up excluded);
    the median over `repeats` interpreters."""
    import fastnn
    code = ("import time; t0 = time.perf_counter(); import " + modules +
            "; print(repr(time.perf_counter() - t0))")
    env = dict(os.environ)
    # The child must import the fastnn this process imported, whatever its cwd.
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Time imports as an installed package runs them: from cached bytecode. The cache goes
    # to a private directory (not into the source tree), even if the caller's environment
    # says PYTHONDONTWRITEBYTECODE; the first run fills it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "fastnn-bench-pycache")
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, cwd=tempfile.gettempdir(), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"`import {modules}` failed in a subprocess:\n{out.stderr}")
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


# ---- cases -------------------------------------------------------------------------------
class Case(namedtuple("Case", "fn args warmup info reset", defaults=(None,))):
    """fn(*args) is the timed work; warmup() (or None: one call of fn) runs once before
    timing; info holds what the figures need (rows, flop counts, ...); reset() (or None),
    run untimed before every timed repeat, puts a training case back to its initial
    weights and optimizer state, so that every repeat times the same work."""

    def __call__(self):
        return self.fn(*self.args)


def _case(fn, *args, warmup=None, reset=None, **info):
    return Case(fn, args, warmup, info, reset)


# Why training cases reset: trained on and on (W2's random labels in particular), RMSprop's
# velocity of units whose gradient stopped decays geometrically into float32 subnormals, and
# arithmetic on subnormals is ~100x slower on x86: the same epoch then takes 2-6x longer
# for fastnn and NumPy alike, and the figures depend on how long the process has trained.

def _fastnn_reset(model):
    """Restores the model's current weights and a zero optimizer state."""
    initial = model.get_weights()

    def reset():
        model.set_weights(initial)
        state = getattr(model, "_opt_state", None)
        if state is not None and hasattr(state, "reset"):  # in place: no re-planning
            state.reset()
        else:
            model.compile(loss=model.loss, optimizer=type(model.optimizer)())
    return reset


def _numpy_reset(net):
    initial = net.params.copy()

    def reset():
        net.set_flat_params(initial)
        net.reset_optimizer()
    return reset


def _torch_reset(net, opt):
    torch = _torch()
    initial = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def reset():
        with torch.no_grad():
            net.load_state_dict(initial)
        opt.state.clear()
    return reset


def _w1_step(impl, quick):
    x_train, y_train = housing()[:2]
    xb, yb = x_train[:W1_BATCH].copy(), y_train[:W1_BATCH].copy()
    model = article_model()
    if impl == "fastnn":
        return _case(functools.partial(model.fit, xb, yb, epochs=1, batch_size=W1_BATCH,
                                       verbose=0, shuffle=False))
    if impl == "numpy":
        net = numpy_twin(model, W1_SIZES, W1_ACTS)
        return _case(net.train_step, xb, yb.reshape(-1, 1))
    if impl == "torch":
        torch = _torch()
        step, _ = _torch_trainer(torch_twin(model, W1_SIZES), "mse")
        return _case(step, torch.from_numpy(xb), torch.from_numpy(yb.reshape(-1, 1)))
    raise ValueError(f"W1a has no implementation {impl!r}")


def _w1_fit(impl, quick):
    x_train, y_train = housing()[:2]
    model = article_model()
    steps = W1_EPOCHS * steps_per_epoch(x_train.shape[0], W1_BATCH)
    if impl == "fastnn":
        return _case(functools.partial(model.fit, x_train, y_train, epochs=W1_EPOCHS,
                                       batch_size=W1_BATCH, verbose=0),
                     reset=_fastnn_reset(model), steps=steps)
    if impl == "numpy":
        net = numpy_twin(model, W1_SIZES, W1_ACTS)
        return _case(functools.partial(net.fit, x_train, y_train, W1_EPOCHS,
                                       batch_size=W1_BATCH), reset=_numpy_reset(net),
                     steps=steps)
    if impl == "torch":
        torch = _torch()
        net = torch_twin(model, W1_SIZES)
        step, fit = _torch_trainer(net, "mse")
        # copies: the shared housing arrays are read-only, which torch warns about
        return _case(fit, torch.from_numpy(x_train.copy()),
                     torch.from_numpy(y_train.reshape(-1, 1).copy()),
                     W1_EPOCHS, W1_BATCH, reset=_torch_reset(net, step.optimizer),
                     steps=steps)
    raise ValueError(f"W1b has no implementation {impl!r}")


def _epoch_case(impl, workload, model, sizes, activations, loss, optimizer, x, y, batch):
    """The case of one training epoch over (x, y) at `batch` for `impl`: the fastnn model,
    or its NumPy or torch twin (same initial weights). loss: "mse" or "cce" (softmax
    cross-entropy; the twins take logits). The warm-up (4 batches) builds plans and buffers
    for the batch size without a full epoch."""
    rows = x.shape[0]
    warm = slice(0, 4 * batch)
    flop = 6.0 * n_weights(sizes) * rows
    if impl == "fastnn":
        fit = functools.partial(model.fit, x, y, epochs=1, batch_size=batch, verbose=0)
        warmup = functools.partial(model.fit, x[warm], y[warm], epochs=1, batch_size=batch,
                                   verbose=0)
        return _case(fit, warmup=warmup, reset=_fastnn_reset(model), rows=rows, flop=flop)
    if impl == "numpy":
        net = numpy_twin(model, sizes, activations, optimizer=optimizer,
                         loss="mse" if loss == "mse" else "softmax_crossentropy")
        fit = functools.partial(net.fit, x, y, 1, batch_size=batch)
        warmup = functools.partial(net.fit, x[warm], y[warm], 1, batch_size=batch)
        return _case(fit, warmup=warmup, reset=_numpy_reset(net), rows=rows, flop=flop)
    if impl == "torch":
        torch = _torch()
        net = torch_twin(model, sizes)
        step, fit = _torch_trainer(net, loss, optimizer)
        yt = y.reshape(-1, 1) if loss == "mse" else y
        xt, yt = torch.from_numpy(x.copy()), torch.from_numpy(yt.copy())
        return _case(fit, xt, yt, 1, batch,
                     warmup=functools.partial(fit, xt[warm], yt[warm], 1, batch),
                     reset=_torch_reset(net, step.optimizer), rows=rows, flop=flop)
    raise ValueError(f"{workload} has no implementation {impl!r}")


def _w2_train(impl, quick):
    x, y = synthetic(w2_rows(quick))
    return _epoch_case(impl, "W2", wide_model(), W2_SIZES, W2_ACTS, "cce", "rmsprop", x, y,
                       W2_BATCH)


def _w7_train(impl, quick, rows=None):
    """W7's epoch; `rows` (default: the W7 size) takes the first rows of its data."""
    x, y = tabular(w7_rows(quick))
    if rows is not None:
        x, y = x[:rows], y[:rows]
    return _epoch_case(impl, "W7", tabular_model(), W7_SIZES, W7_ACTS, "mse", "adam", x, y,
                       W7_BATCH)


def _w8_train(impl, quick):
    x, y = digits(w8_tiles(quick))
    return _epoch_case(impl, "W8", digits_model(), W8_SIZES, W8_ACTS, "cce", "adam", x, y,
                       W8_BATCH)


def _w3_predict1(impl, quick):
    x_test = housing()[2]
    x1 = x_test[:1].copy()  # (1, 13) float32, C-contiguous, writable
    model = article_model()
    if impl == "fastnn":
        model.predict(x1)  # the first call builds the predict plan
        return _case(model.predict, x1)
    if impl == "numpy":
        net = numpy_twin(model, W1_SIZES, W1_ACTS)
        return _case(net.predict, x1)
    if impl == "torch":
        torch = _torch()
        net = torch_twin(model, W1_SIZES).eval()

        def predict(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        return _case(predict, x1)
    raise ValueError(f"W3 has no implementation {impl!r}")


def _w4_predict(impl, quick):
    rows = w2_rows(quick)
    x, _ = synthetic(rows)
    model = wide_model()
    warm = x[:2 * W4_BATCH]
    if impl == "fastnn":
        return _case(model.predict, x, warmup=functools.partial(model.predict, warm),
                     rows=rows)
    if impl == "numpy":
        net = numpy_twin(model, W2_SIZES, W2_ACTS, loss="softmax_crossentropy")
        out = np.empty((rows, W2_SIZES[-1]), _F32)
        return _case(numpy_predict_batched, net, x, W4_BATCH, out,
                     warmup=functools.partial(numpy_predict_batched, net, warm, W4_BATCH,
                                              out[:warm.shape[0]]), rows=rows)
    if impl == "torch":
        torch = _torch()
        net = torch_twin(model, W2_SIZES).eval()
        xt = torch.from_numpy(x.copy())
        out = torch.empty((rows, W2_SIZES[-1]))

        def predict(xt, out):
            with torch.no_grad():
                for start in range(0, xt.shape[0], W4_BATCH):
                    out[start:start + W4_BATCH] = net(xt[start:start + W4_BATCH])
            return out
        return _case(predict, xt, out, warmup=functools.partial(predict, xt[:2 * W4_BATCH],
                                                                out[:2 * W4_BATCH]),
                     rows=rows)
    raise ValueError(f"W4 has no implementation {impl!r}")


def _w5_arrays(n):
    rng = np.random.default_rng(5)
    w = rng.standard_normal(n, dtype=_F32)
    g = rng.standard_normal(n, dtype=_F32) * _F32(0.01)
    return w, g


def _w5_rmsprop(impl, quick):
    n = W5_PARAMS
    if impl == "copyto":  # the bandwidth reference: 100 MB copied, counted twice
        src = np.random.default_rng(6).random(COPY_FLOATS, dtype=_F32)
        dst = np.empty_like(src)
        return _case(np.copyto, dst, src, bytes=2 * src.nbytes)
    w, g = _w5_arrays(n)
    counted = 5 * 4 * n  # read w, g, v; write w, v
    if impl == "fastnn":
        from fastnn import _engine
        state = _engine.OptimizerState("rmsprop", n, learning_rate=1e-3)
        return _case(state.step, w, g, bytes=counted)
    if impl == "numpy":
        v, t = np.zeros(n, _F32), np.empty(n, _F32)
        return _case(functools.partial(rmsprop_update, lr=1e-3, rho=0.9, eps=1e-7), w, g, v, t,
                     bytes=counted)
    if impl == "torch":
        torch = _torch()
        p = torch.nn.Parameter(torch.from_numpy(w))
        p.grad = torch.from_numpy(g)
        opt = torch.optim.RMSprop([p], lr=1e-3, alpha=0.9, eps=1e-7)
        return _case(opt.step, bytes=counted)
    raise ValueError(f"W5 has no implementation {impl!r}")


_W6_IMPORTS = {"fastnn": "numpy, fastnn", "numpy": "numpy", "torch": "numpy, torch"}


def _w6_import(impl, quick):
    if impl not in _W6_IMPORTS:
        raise ValueError(f"W6 has no implementation {impl!r}")
    modules = _W6_IMPORTS[impl]
    return _case(import_seconds, modules, modules=modules)


def _l512(impl, quick):
    rng = np.random.default_rng(512)
    x = rng.standard_normal((L_BATCH, L_WIDTH), dtype=_F32)
    dy = rng.standard_normal((L_BATCH, L_WIDTH), dtype=_F32)
    from fastnn._baseline import NumpyDense
    layer = NumpyDense(L_BATCH, L_WIDTH, L_WIDTH, seed=0)
    layer.b[...] = rng.standard_normal(L_WIDTH, dtype=_F32) * _F32(0.1)
    w, b = layer.W, layer.b
    flop = 3 * 2.0 * L_BATCH * L_WIDTH * L_WIDTH
    if impl in ("fastnn", "fastnn-blas", "fastnn-portable"):
        from fastnn import _blas, _engine
        use_blas = impl != "fastnn-portable"
        if use_blas and not _blas.available():
            raise RuntimeError("no BLAS sgemm registered (fastnn._blas.available() is False)")

        def step(x, w, b, dy):
            y = _engine.dense_forward(x, w, b, "relu", use_blas=use_blas)
            return (y,) + _engine.dense_backward(x, w, y, dy, "relu", True, use_blas=use_blas)
        return _case(step, x, w, b, dy, flop=flop)
    if impl == "numpy":
        return _case(layer.step, x, dy, flop=flop)
    if impl == "torch":
        torch = _torch()
        xt = torch.from_numpy(x).requires_grad_(True)
        wt = torch.from_numpy(w.copy()).requires_grad_(True)
        bt = torch.from_numpy(b.copy()).requires_grad_(True)
        dyt = torch.from_numpy(dy)

        def step(xt, wt, bt, dyt):
            y = torch.relu(torch.addmm(bt, xt, wt))
            return torch.autograd.grad(y, (xt, wt, bt), dyt)
        return _case(step, xt, wt, bt, dyt, flop=flop)
    raise ValueError(f"L512 has no implementation {impl!r}")


_BUILDERS = {"W1a": _w1_step, "W1b": _w1_fit, "W2": _w2_train, "W3": _w3_predict1,
             "W4": _w4_predict, "W5": _w5_rmsprop, "W6": _w6_import, "L512": _l512,
             "W7": _w7_train, "W8": _w8_train}


def case(workload, impl, quick=None):
    """The ready-to-time Case of `workload` ("W1a", "W1b", "W2", "W3", "W4", "W5", "W6",
    "L512", "W7", "W8") for `impl` ("fastnn", "numpy", "torch"; W5 also "copyto"; L512
    also "fastnn-blas" and "fastnn-portable")."""
    if workload not in _BUILDERS:
        raise ValueError(f"unknown workload {workload!r}; valid: {sorted(_BUILDERS)}")
    if impl == "torch" and not have_torch():
        raise RuntimeError("PyTorch is not importable")
    return _BUILDERS[workload](impl, quick)


# ---- timing ----------------------------------------------------------------------------
def _timer(c):
    names = [f"a{i}" for i in range(len(c.args))]
    return timeit.Timer(f"f({', '.join(names)})", globals={"f": c.fn, **dict(zip(names, c.args))})


def _timed_run(c, timer, number):
    if c.reset is not None:
        c.reset()
    return timer.timeit(number)


def _warm_and_calibrate(c, timer, number, min_time):
    if c.warmup is not None:
        c.warmup()
    else:
        c.fn(*c.args)
    if number is not None:
        return number
    number = 1
    while True:
        t = _timed_run(c, timer, number)
        if t >= min_time or number >= 1 << 24:
            return number
        number = max(number * 2, int(number * min_time / max(t, 1e-9) * 1.1))


def time_case(c, repeat=7, number=None, min_time=0.1):
    """Median seconds per call of c.fn(*c.args) over `repeat` timeit repeats of `number`
    calls (number chosen so that one repeat takes >= min_time when None). Runs the warm-up
    (or one call) first, and c.reset() (untimed) before each repeat. The loop is timeit's,
    with the arguments bound as globals, so a sub-microsecond call is not swamped by the
    timer."""
    return time_cases({"case": c}, repeat, number, min_time)["case"]


def time_cases(cases, repeat=7, number=None, min_time=0.1):
    """time_case for several cases ({name: Case}) with their repeats interleaved
    (round-robin), so that a burst of machine noise hits every implementation alike.
    Returns {name: median seconds per call}."""
    return _medians(sample_cases(cases, repeat, number, min_time))


def sample_cases(cases, repeat=7, number=None, min_time=0.1, pause=0.0):
    """As time_cases, but returns every repeat: {name: [seconds per call, ...]}.

    pause: seconds of idling before each timed repeat. The epoch workloads take 0.2 s:
    after a call into NumPy's OpenBLAS its threads spin ~0.15 s before they sleep, and
    spinning they take a core from whichever implementation is timed next (fastnn's two
    threads ran W7 up to 20% slower right after a NumPy repeat)."""
    timers = {k: _timer(c) for k, c in cases.items()}
    numbers = {k: _warm_and_calibrate(c, timers[k], number, min_time) for k, c in cases.items()}
    samples = {k: [] for k in cases}
    for _ in range(repeat):
        for k, timer in timers.items():
            if pause > 0:
                time.sleep(pause)
            samples[k].append(_timed_run(cases[k], timer, numbers[k]) / numbers[k])
    return samples


def _medians(samples):
    return {k: statistics.median(v) for k, v in samples.items()}


def spread(samples):
    """How far the runs stray from their median: max |t / median - 1| (0.1: every run
    within +-10% of the median)."""
    med = statistics.median(samples)
    return max(abs(t / med - 1.0) for t in samples) if med > 0 else 0.0


def _timed(workload, quick, impls=None, **kw):
    """{impl: median seconds per call} for the workload's implementations, interleaved.
    See _sampled."""
    return _medians(_sampled(workload, quick, impls, **kw))


def _sampled(workload, quick, impls=None, **kw):
    """{impl: [seconds per call of each repeat]} for the workload's implementations,
    interleaved.

    torch, optional, is timed after the others, and a failure there (an old or odd torch
    build) only drops its figure, with a message on stderr."""
    impls = implementations() if impls is None else tuple(impls)
    main = [impl for impl in impls if impl != "torch"]
    samples = sample_cases({impl: case(workload, impl, quick) for impl in main}, **kw)
    if "torch" in impls:
        try:
            samples.update(sample_cases({"torch": case(workload, "torch", quick)}, **kw))
        except Exception as e:  # noqa: BLE001 - optional column: report and go on
            print(f"fastnn.benchmarks: {workload} torch case failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
    return samples


# ---- workloads: figures and table rows --------------------------------------------------
def _row(workload, measure, unit, fastnn, numpy, ratio=None, target=None, met=None,
         torch=None, note=""):
    return {"workload": workload, "measure": measure, "unit": unit, "fastnn": fastnn,
            "numpy": numpy, "torch": torch, "ratio": ratio, "target": target, "met": met,
            "note": note}


def _flop_text(flop):
    """3.3e6 -> '3.3 MFLOP', 1.57e5 -> '157 kFLOP' (short, for table labels)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if flop >= scale or scale == 1.0:
            v = flop / scale
            return f"{v:.1f} {prefix}FLOP" if v < 10 else f"{v:.0f} {prefix}FLOP"


def _speedup(baseline_seconds, seconds):
    return baseline_seconds / seconds if seconds > 0 else float("inf")


def run_w1(quick=None):
    """W1: the article model. (a) one training step; (b) the 100-epoch fit."""
    quick = is_quick(quick)
    rep = 5 if quick else 7
    step = _timed("W1a", quick, repeat=rep, min_time=0.05 if quick else 0.1)
    fit = _timed("W1b", quick, repeat=3 if quick else 7, number=1)
    steps = W1_EPOCHS * steps_per_epoch(housing()[0].shape[0], W1_BATCH)
    per_step = {k: v / steps for k, v in fit.items()}
    fit_ratio = _speedup(fit["numpy"], fit["fastnn"])
    t = fit.get("torch")
    rows = [
        _row("W1a", "train step, batch 32 (us)", "us", step["fastnn"] * 1e6,
             step["numpy"] * 1e6, _speedup(step["numpy"], step["fastnn"]),
             torch=step["torch"] * 1e6 if "torch" in step else None,
             note="fastnn: 1-epoch fit of 32 rows (includes fit's Python overhead)"),
        _row("W1a", "step within 100-ep fit (us)", "us", per_step["fastnn"] * 1e6,
             per_step["numpy"] * 1e6, _speedup(per_step["numpy"], per_step["fastnn"]),
             f"<= {TARGET_W1_STEP_US:g} us", per_step["fastnn"] * 1e6 <= TARGET_W1_STEP_US,
             torch=t / steps * 1e6 if t else None, note=f"fit time / {steps} steps"),
        _row("W1b", "fit 100 epochs (ms)", "ms", fit["fastnn"] * 1e3, fit["numpy"] * 1e3,
             fit_ratio, f">= {TARGET_W1_FIT_RATIO:g}x", fit_ratio >= TARGET_W1_FIT_RATIO,
             torch=t * 1e3 if t else None),
        _row("W1b", "fit 100 epochs, 0.1 target", "ms", fit["fastnn"] * 1e3,
             fit["numpy"] * 1e3, fit_ratio, f">= {TARGET_W1_FIT_RATIO_01:g}x",
             fit_ratio >= TARGET_W1_FIT_RATIO_01, torch=t * 1e3 if t else None),
    ]
    return {"workload": "W1", "title": "article model 13-10-10-1, RMSprop, batch 32",
            "step_seconds": step, "fit_seconds": fit, "per_step_seconds": per_step,
            "steps": steps, "ratio": fit_ratio,
            "target": f"fit >= {TARGET_W1_FIT_RATIO:g}x and <= {TARGET_W1_STEP_US:g} us/step",
            "met": rows[1]["met"] and rows[2]["met"], "rows": rows}


def _run_epoch(workload, title, quick, rows_n, sizes, target, repeat, spread_target=None):
    """An epoch workload's figures: GFLOP/s of each implementation (6 x weights x rows per
    epoch), fastnn's rate as a fraction of NumPy's SGEMM rate measured right after (target:
    that fraction), and, with spread_target, the spread of the `repeat` runs."""
    from fastnn._baseline import sgemm_gflops
    flop = 6.0 * n_weights(sizes) * rows_n
    samples = _sampled(workload, quick, repeat=repeat, number=1, pause=0.2)
    secs = _medians(samples)
    sgemm = sgemm_gflops(SGEMM_N, repeats=15)
    gflops = {k: flop / v / 1e9 for k, v in secs.items()}
    ratio = gflops["fastnn"] / gflops["numpy"]
    frac = gflops["fastnn"] / sgemm
    met = frac >= target
    rows = [
        _row(workload, f"train 1 epoch, {rows_n} rows (GFLOP/s)", "GFLOP/s",
             gflops["fastnn"], gflops["numpy"], ratio, torch=gflops.get("torch")),
        _row(workload, f"GFLOP/s vs NumPy SGEMM n={SGEMM_N}", "GFLOP/s", gflops["fastnn"],
             sgemm, frac, f">= {target:.2f}x", met, torch=gflops.get("torch"),
             note="NumPy column: np.matmul n=1024 rate"),
    ]
    result = {"workload": workload, "title": title, "rows_trained": rows_n, "flop": flop,
              "seconds": secs, "samples": samples, "gflops": gflops, "sgemm_gflops": sgemm,
              "ratio": ratio, "sgemm_fraction": frac,
              "target": f">= {target:.0%} of NumPy SGEMM", "rows": rows}
    if spread_target is not None:
        spreads = {k: spread(v) for k, v in samples.items()}
        steady = spreads["fastnn"] <= spread_target
        rows.append(_row(workload, f"spread of {repeat} runs (%)", "%",
                         spreads["fastnn"] * 100, spreads["numpy"] * 100, None,
                         f"<= +-{spread_target:.0%}", steady,
                         torch=spreads["torch"] * 100 if "torch" in spreads else None,
                         note="spread: max |t/median - 1| over the runs, in %"))
        result.update(spreads=spreads, target=result["target"] +
                      f", runs within +-{spread_target:.0%}")
        met = met and steady
    result["met"] = met
    return result


def run_w2(quick=None):
    """W2: one epoch of the wide MLP, in GFLOP/s, against NumPy and NumPy's SGEMM rate."""
    quick = is_quick(quick)
    return _run_epoch("W2", "784-512-512-10 MLP, softmax CE, RMSprop, batch 128", quick,
                      w2_rows(quick), W2_SIZES, TARGET_W2_SGEMM_FRACTION, repeat=3)


def run_w7(quick=None):
    """W7: one epoch of the tabular MLP (Adam, batch 256): GFLOP/s, fraction of NumPy's
    SGEMM rate, and the spread of five runs."""
    quick = is_quick(quick)
    return _run_epoch("W7", "tabular 32-256-128-64-1 MLP, MSE, Adam, batch 256", quick,
                      w7_rows(quick), W7_SIZES, TARGET_W7_SGEMM_FRACTION, SPREAD_RUNS,
                      TARGET_SPREAD)


def run_w8(quick=None):
    """W8: one epoch of the digits classifier (Adam, batch 32): GFLOP/s, fraction of
    NumPy's SGEMM rate, and the spread of five runs."""
    quick = is_quick(quick)
    return _run_epoch("W8", "digits 64-128-64-10 MLP, softmax, sparse CE, Adam, batch 32",
                      quick, digits(w8_tiles(quick))[0].shape[0], W8_SIZES,
                      TARGET_W8_SGEMM_FRACTION, SPREAD_RUNS, TARGET_SPREAD)


def run_w3(quick=None):
    """W3: single-sample predict latency of the article model (median per call)."""
    quick = is_quick(quick)
    number = 2000 if quick else 20000
    secs = _timed("W3", quick, repeat=7, number=number)
    us = {k: v * 1e6 for k, v in secs.items()}
    ratio = _speedup(secs["numpy"], secs["fastnn"])
    met = us["fastnn"] <= TARGET_W3_US
    rows = [_row("W3", "predict 1 row (us)", "us", us["fastnn"], us["numpy"], ratio,
                 f"<= {TARGET_W3_US:g} us", met, torch=us.get("torch"))]
    return {"workload": "W3", "title": "single-sample predict, article model",
            "calls_per_repeat": number, "seconds": secs, "ratio": ratio,
            "target": f"<= {TARGET_W3_US:g} us", "met": met, "rows": rows}


def run_w4(quick=None):
    """W4: predict throughput of the wide MLP (NumPy: forward in batches of 1024)."""
    quick = is_quick(quick)
    n = w2_rows(quick)
    secs = _timed("W4", quick, repeat=3 if quick else 5, number=1)
    rate = {k: n / v for k, v in secs.items()}
    ratio = rate["fastnn"] / rate["numpy"]
    met = ratio >= TARGET_W4_RATIO
    rows = [_row("W4", f"predict {n} rows (k samples/s)", "ksamples/s", rate["fastnn"] / 1e3,
                 rate["numpy"] / 1e3, ratio, f">= {TARGET_W4_RATIO:g}x", met,
                 torch=rate["torch"] / 1e3 if "torch" in rate else None)]
    return {"workload": "W4", "title": "predict, 784-512-512-10 MLP", "rows_predicted": n,
            "seconds": secs, "samples_per_second": rate, "ratio": ratio,
            "target": ">= NumPy", "met": met, "rows": rows}


def run_w5(quick=None):
    """W5: RMSprop over 10M parameters in GB/s, against np.copyto and a NumPy update."""
    quick = is_quick(quick)
    impls = implementations() + ("copyto",)
    kw = dict(repeat=5 if quick else 7, min_time=0.05 if quick else 0.1)
    secs = _timed("W5", quick, impls, **kw)  # ~600 MB of arrays at once
    counted = {impl: (2 * COPY_FLOATS * 4 if impl == "copyto" else 20 * W5_PARAMS)
               for impl in impls}
    gbs = {k: counted[k] / v / 1e9 for k, v in secs.items()}
    frac = gbs["fastnn"] / gbs["copyto"]
    ratio = gbs["fastnn"] / gbs["numpy"]
    met = frac >= TARGET_W5_COPY_FRACTION
    rows = [
        _row("W5", "RMSprop 10M params (GB/s)", "GB/s", gbs["fastnn"], gbs["numpy"], ratio,
             torch=gbs.get("torch"), note="20 bytes counted per parameter"),
        _row("W5", "RMSprop GB/s vs np.copyto 100MB", "GB/s", gbs["fastnn"], gbs["copyto"],
             frac, f">= {TARGET_W5_COPY_FRACTION:.2f}x", met, torch=gbs.get("torch"),
             note="NumPy column: np.copyto, counted as 2x size"),
    ]
    return {"workload": "W5", "title": "RMSprop update, 10M parameters", "seconds": secs,
            "gb_per_second": gbs, "copy_fraction": frac, "ratio": ratio,
            "target": f">= {TARGET_W5_COPY_FRACTION:.0%} of np.copyto", "met": met,
            "rows": rows}


def run_w6(quick=None):
    """W6: `import fastnn` over `import numpy`, timed inside fresh interpreters."""
    quick = is_quick(quick)
    runs = 5 if quick else 11
    impls = []
    for impl in implementations():  # warm the OS file cache and the .pyc files
        try:
            import_seconds(_W6_IMPORTS[impl])
            impls.append(impl)
        except RuntimeError as e:
            if impl != "torch":
                raise
            print(f"fastnn.benchmarks: W6 torch: {e}", file=sys.stderr)
    samples = {impl: [] for impl in impls}
    for i in range(runs):  # interleaved, so that drift hits every variant alike
        for impl in impls:
            if impl != "torch" or i < 3:  # torch takes seconds to import: 3 runs
                samples[impl].append(import_seconds(_W6_IMPORTS[impl]))
    med = {k: statistics.median(v) for k, v in samples.items()}
    extra = med["fastnn"] - med["numpy"]
    torch_extra = med["torch"] - med["numpy"] if "torch" in med else None
    met = extra <= TARGET_W6_SECONDS
    rows = [_row("W6", "import time over numpy (s)", "s", extra, med["numpy"], None,
                 f"<= {TARGET_W6_SECONDS:g} s", met, torch=torch_extra,
                 note="NumPy column: `import numpy` itself")]
    return {"workload": "W6", "title": "import fastnn", "median_seconds": med,
            "samples": samples, "extra_seconds": extra, "ratio": None,
            "target": f"<= {TARGET_W6_SECONDS:g} s over numpy", "met": met, "rows": rows}


def run_l512(quick=None):
    """0.1 workload: forward+backward of one 512->512 Dense+ReLU at batch 128."""
    from fastnn import _blas
    quick = is_quick(quick)
    kw = dict(repeat=5 if quick else 7, min_time=0.05 if quick else 0.1)
    impls = (["fastnn-blas"] if _blas.available() else []) + ["fastnn-portable", "numpy"]
    if have_torch():
        impls.append("torch")
    secs = _timed("L512", quick, impls, **kw)
    flop = 3 * 2.0 * L_BATCH * L_WIDTH * L_WIDTH
    rows = []
    for impl, label in (("fastnn-blas", "BLAS"), ("fastnn-portable", "no BLAS")):
        if impl not in secs:
            continue
        ratio = _speedup(secs["numpy"], secs[impl])
        is_target = impl == "fastnn-blas"
        rows.append(_row("L512", f"512x512 dense fwd+bwd, {label} (us)", "us",
                         secs[impl] * 1e6, secs["numpy"] * 1e6, ratio,
                         f">= {TARGET_L512_RATIO:g}x" if is_target else None,
                         ratio >= TARGET_L512_RATIO if is_target else None,
                         torch=secs["torch"] * 1e6 if "torch" in secs else None))
    main = rows[0]
    return {"workload": "L512", "title": "one 512->512 Dense+ReLU, fwd+bwd, batch 128",
            "seconds": secs, "gflops": {k: flop / v / 1e9 for k, v in secs.items()},
            "blas": "fastnn-blas" in secs, "ratio": main["ratio"],
            "target": "no slower than NumPy (BLAS path)", "met": main["met"], "rows": rows}


# A competitor that only burns a core: no memory traffic, no system calls. It says when it
# runs, so that no timed run starts before it does.
_BUSY_LOOP = "import sys\nsys.stdout.write('busy\\n')\nsys.stdout.flush()\nwhile True:\n    pass\n"


@contextlib.contextmanager
def busy_competitor():
    """A separate process spinning on one core while the with-block runs; it is killed on
    the way out, whatever happens inside."""
    proc = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline().strip() != b"busy":
            raise RuntimeError(f"the busy competitor did not start (exit code {proc.poll()})")
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def run_load(quick=None):
    """LOAD: the W7 fit beside one busy competing process against alone (fastnn, and the
    NumPy baseline for context): median seconds of a few runs each, alone and loaded
    interleaved (the order alternating), a fresh competitor for every loaded run."""
    quick = is_quick(quick)
    runs = LOAD_RUNS_QUICK if quick else LOAD_RUNS
    impls = ("fastnn", "numpy")
    n_rows = {"fastnn": w7_rows(quick), "numpy": min(w7_rows(quick), LOAD_NUMPY_ROWS)}
    cases = {impl: _w7_train(impl, quick, n_rows[impl]) for impl in impls}
    timers = {impl: _timer(c) for impl, c in cases.items()}
    for impl, c in cases.items():
        _warm_and_calibrate(c, timers[impl], 1, 0.0)
    samples = {(impl, loaded): [] for impl in impls for loaded in (False, True)}
    for i in range(runs):
        for impl, c in cases.items():
            for loaded in ((False, True) if i % 2 == 0 else (True, False)):
                with busy_competitor() if loaded else contextlib.nullcontext():
                    samples[impl, loaded].append(_timed_run(c, timers[impl], 1))
    alone = {impl: statistics.median(samples[impl, False]) for impl in impls}
    loaded = {impl: statistics.median(samples[impl, True]) for impl in impls}
    slowdown = {impl: loaded[impl] / alone[impl] for impl in impls}
    met = slowdown["fastnn"] <= TARGET_LOAD_RATIO
    # per 10k rows: fastnn and NumPy fit different row counts
    alone_ms = {impl: alone[impl] * 1e7 / n_rows[impl] for impl in impls}
    loaded_ms = {impl: loaded[impl] * 1e7 / n_rows[impl] for impl in impls}
    rows = [
        _row("LOAD", "W7 fit alone (ms per 10k rows)", "ms", alone_ms["fastnn"],
             alone_ms["numpy"], _speedup(alone_ms["numpy"], alone_ms["fastnn"])),
        _row("LOAD", "W7 fit, 1 busy process (ms per 10k rows)", "ms", loaded_ms["fastnn"],
             loaded_ms["numpy"], _speedup(loaded_ms["numpy"], loaded_ms["fastnn"]),
             note=f"fastnn fits the {n_rows['fastnn']} rows of W7, NumPy the first "
                  f"{n_rows['numpy']}; busy process: a Python `while True: pass` loop, "
                  "started before and killed after each loaded run"),
        _row("LOAD", "W7 fit loaded / alone (x)", "x", slowdown["fastnn"], slowdown["numpy"],
             None, f"<= {TARGET_LOAD_RATIO:g}x", met),
    ]
    return {"workload": "LOAD", "title": "W7 fit beside one busy competing process",
            "runs": runs, "rows_fitted": n_rows, "alone_seconds": alone,
            "loaded_seconds": loaded,
            "samples": {f"{impl}-{'loaded' if ld else 'alone'}": v
                        for (impl, ld), v in samples.items()},
            "slowdown": slowdown, "ratio": slowdown["fastnn"],
            "target": f"loaded <= {TARGET_LOAD_RATIO:g}x alone", "met": met, "rows": rows}


# ---- THREADS: 1 thread against N, and where splitting a step pays ---------------------
def _many_threads():
    from fastnn import _engine
    return max(2, min(_engine.cpu_count(), _engine.MAX_THREADS))


def _with_threads(c, threads, min_flop):
    """The case c run with `threads` threads and split threshold `min_flop`, set before
    every call (and warm-up): a plan sizes its per-thread copies at its first call under a
    thread count, and every step reads the threshold. Cheap: two stores."""
    import fastnn
    from fastnn import _engine

    def settle():
        _engine.parallel_min_flop(min_flop)
        fastnn.set_num_threads(threads)

    def fn(*args):
        settle()
        return c.fn(*args)

    def warmup():
        settle()
        return c.fn(*c.args) if c.warmup is None else c.warmup()
    return c._replace(fn=fn, warmup=warmup)


@contextlib.contextmanager
def _restoring_threads():
    """Puts back the thread count and split threshold found, whatever happens inside."""
    import fastnn
    from fastnn import _engine
    threads, min_flop = fastnn.get_num_threads(), _engine.parallel_min_flop()
    try:
        yield threads, min_flop
    finally:
        _engine.parallel_min_flop(min_flop)
        fastnn.set_num_threads(threads)


# (workload, label, FLOP per step or call that the split threshold sees, repeats full/quick)
def _scaling_workloads(quick):
    w1 = 6.0 * n_weights(W1_SIZES) * W1_BATCH
    return (("W1b", "article fit 100 ep", w1, (7, 5)),
            ("W8", f"W8 epoch {digits(w8_tiles(quick))[0].shape[0]} rows",
             6.0 * n_weights(W8_SIZES) * W8_BATCH, (5, 3)),
            ("W7", f"W7 epoch {w7_rows(quick)} rows", 6.0 * n_weights(W7_SIZES) * W7_BATCH,
             (3, 3)),
            ("W2", f"W2 epoch {w2_rows(quick)} rows", 6.0 * n_weights(W2_SIZES) * W2_BATCH,
             (3, 3)),
            ("W4", f"W4 predict {w2_rows(quick)} rows",
             2.0 * n_weights(W2_SIZES) * PREDICT_BLOCK, (5, 3)))


def xover_model(width, seed=0):
    """The crossover sweep's 32->width->width->1 relu MLP, MSE, Adam."""
    return mlp_model((XOVER_IN, width, width, 1), ("relu", "relu", "linear"), "mse", "adam",
                     seed)


def _xover_case(width, batch, quick):
    """One epoch of xover_model(width) at `batch`, over as many rows as make ~XOVER_FLOP.
    info: steps, and the model (its training plan counts the FLOP the threshold sees)."""
    flop_step = 6.0 * n_weights((XOVER_IN, width, width, 1)) * batch
    budget = XOVER_FLOP_QUICK if quick else XOVER_FLOP
    steps = int(min(max(budget / flop_step, XOVER_STEPS[0]), XOVER_STEPS[1]))
    x, y = tabular(W7_ROWS)
    x, y = x[:steps * batch], y[:steps * batch]
    model = xover_model(width)
    fit = functools.partial(model.fit, x, y, epochs=1, batch_size=batch, verbose=0)
    return _case(fit, reset=_fastnn_reset(model), steps=steps, model=model)


def _step_flop(model, batch, sizes):
    """The FLOP of one training step at `batch` as the engine counts them to decide a
    split (3 x batch x the plan's forward FLOP per row), from the model's training plan;
    6 x weights x batch if that plan is not found."""
    plan = getattr(model, "_plans", {}).get(("loss", batch))
    row_flop = getattr(plan, "row_flop", None)
    return 3.0 * batch * row_flop if row_flop else 6.0 * n_weights(sizes) * batch


def _default_splits(model, batch, threads, min_flop):
    """What the engine's rule picks for a training step of `batch` rows of this model at
    `threads` threads and threshold min_flop (its training plan says)."""
    import fastnn
    from fastnn import _engine
    plan = getattr(model, "_plans", {}).get(("loss", batch))
    if plan is None:
        return False
    found = fastnn.get_num_threads(), _engine.parallel_min_flop(min_flop)
    fastnn.set_num_threads(threads)
    try:
        return plan.splits(batch)
    finally:
        _engine.parallel_min_flop(found[1])
        fastnn.set_num_threads(found[0])


def run_threads(quick=None):
    """THREADS: fastnn at 1 thread against N threads (N = the CPUs usable, at least 2) on
    W1b, W8, W7, W2 and W4; then the crossover sweep: per (width, batch) the time per step
    at 1 thread, at N threads with every step split (threshold 0) and at N threads with
    the threshold found (the default: fastnn._engine.parallel_min_flop()). The thread
    count and threshold found are restored."""
    quick = is_quick(quick)
    many = _many_threads()
    rows, scaling, sweep = [], [], []
    with _restoring_threads() as (_, min_flop):
        for workload, label, flop, repeats in _scaling_workloads(quick):
            secs = time_cases({n: _with_threads(case(workload, "fastnn", quick), n, min_flop)
                               for n in (1, many)},
                              repeat=repeats[1] if quick else repeats[0], number=1)
            speedup = _speedup(secs[1], secs[many])
            is_w1 = workload == "W1b"
            scaling.append({"workload": workload, "flop_per_step": flop, "seconds": secs,
                            "speedup": speedup})
            rows.append(_row("THREADS", f"{label}, {_flop_text(flop)}/step (ms)", "ms",
                             secs[many] * 1e3, secs[1] * 1e3, speedup,
                             f">= {TARGET_W1_THREADS_RATIO:g}x" if is_w1 else None,
                             speedup >= TARGET_W1_THREADS_RATIO if is_w1 else None,
                             note=f"NumPy column: fastnn at 1 thread; fastnn column: at "
                                  f"{many} threads; ratio: the speed-up; FLOP/step: per "
                                  f"training step (W4: per {PREDICT_BLOCK}-row predict "
                                  f"block); work is split from {_flop_text(min_flop)}"
                                  if not rows else ""))
        for batch in XOVER_BATCHES:
            for width in XOVER_WIDTHS:
                variants = {"1": (1, min_flop), "split": (many, 0.0),
                            "default": (many, min_flop)}
                cases = {k: _with_threads(_xover_case(width, batch, quick), n, f)
                         for k, (n, f) in variants.items()}
                secs = time_cases(cases, repeat=3 if quick else 5, number=1)
                steps = cases["1"].info["steps"]
                flop_step = _step_flop(cases["1"].info["model"], batch,
                                       (XOVER_IN, width, width, 1))
                picks = "split" if _default_splits(cases["default"].info["model"], batch,
                                                   many, min_flop) else "1 thr"
                us = {k: v / steps * 1e6 for k, v in secs.items()}
                best = min(us["1"], us["split"])
                miss = us["default"] / best
                met = miss <= TARGET_XOVER_MISS
                sweep.append({"width": width, "batch": batch, "steps": steps,
                              "flop_per_step": flop_step, "default_picks": picks,
                              "us_per_step": us, "miss": miss})
                rows.append(_row("THREADS", f"step h={width} b={batch} {_flop_text(flop_step)}"
                                 f" ->{picks}; split {us['split']:.1f} (us)",
                                 "us", us["default"],
                                 us["1"], _speedup(us["1"], us["default"]),
                                 f"<= {TARGET_XOVER_MISS:g}x best", met,
                                 note="step h=..: 32-h-h-1 MLP, Adam, FLOP per step as the "
                                      "engine counts them, ->: what the threshold picks; "
                                      f"NumPy column: 1 thread; fastnn: {many} threads, "
                                      f"default threshold; split: {many} threads, every "
                                      "step split; target: fastnn within 10% of the faster "
                                      "of the two"
                                 if width == XOVER_WIDTHS[0] and batch == XOVER_BATCHES[0]
                                 else ""))
    w1 = scaling[0]
    xover_met = all(r["miss"] <= TARGET_XOVER_MISS for r in sweep)
    return {"workload": "THREADS", "title": f"1 thread against {many}", "threads": many,
            "min_flop": min_flop, "scaling": scaling, "crossover": sweep,
            "ratio": w1["speedup"],
            "target": f"W1b >= {TARGET_W1_THREADS_RATIO:g}x; default threshold within "
                      f"{TARGET_XOVER_MISS - 1:.0%} of the faster option",
            "met": w1["speedup"] >= TARGET_W1_THREADS_RATIO and xover_met, "rows": rows}


WORKLOADS = {"W1": run_w1, "W2": run_w2, "W3": run_w3, "W4": run_w4, "W5": run_w5,
             "W6": run_w6, "L512": run_l512, "W7": run_w7, "W8": run_w8, "LOAD": run_load,
             "THREADS": run_threads}


def run_workload(name, quick=None):
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; valid: {list(WORKLOADS)}")
    return WORKLOADS[name](quick)


def run_all(quick=None, only=None, progress=None):
    """Runs the workloads (all, or the names in `only`) in order; returns their dicts.
    progress(name) is called before each one."""
    results = []
    for name in (only or WORKLOADS):
        if progress is not None:
            progress(name)
        t0 = time.perf_counter()
        result = run_workload(name, quick)
        result["wall_seconds"] = time.perf_counter() - t0
        results.append(result)
    return results
