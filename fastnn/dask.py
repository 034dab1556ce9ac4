"""fastnn on Dask: predict over chunked arrays, search hyper-parameters on a cluster, train
on data that does not fit one chunk. Dask does the distributing; fastnn models travel to
the workers by pickle (through the fastnn file format, models/model.py's __reduce__).

    import fastnn.dask
    y = fastnn.dask.predict(model, x)                 # x: a dask array, rows in chunks
    fits = fastnn.dask.fit_many(build, [{"units": 8}, {"units": 32}], x, y,
                                client=client, seed=0, epochs=50, verbose=0)
    fastnn.dask.fit_chunks(model, x, y, epochs=5, batch_size=32)

Cores: a fastnn fit or predict runs on the calling thread, and only large layers call the
BLAS, NumPy's OpenBLAS, whose pool would start one thread per core in every worker
process. Give each task its share of the cores, blas_threads(n_workers,
threads_per_worker): register `ThreadLimit(share)` as a worker plugin (it sets the pool
with fastnn.set_num_threads in every worker, at any time) and pass
`env=worker_env(n_workers, threads_per_worker)` to LocalCluster or Nanny (the thread
variables, for what the workers load or start later). distributed's Nanny already sets
the variables to 1 before it spawns a worker (its `distributed.nanny.pre-spawn-environ`).

Needs `pip install fastnn[dask]` (dask and distributed); `import fastnn` never imports it.
"""
from __future__ import annotations

import collections
import hashlib
import numbers
import os
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnn.dask needs dask: `pip install fastnn[dask]`") from exc

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - dask without distributed: no plugin base
    WorkerPlugin = object

from fastnn import callbacks as callbacks_module, saving, utils
from fastnn._typing import Inputs
from fastnn.models.model import Model

__all__ = ["predict", "fit_many", "fit_chunks", "Fitted", "worker_env", "blas_threads",
           "ThreadLimit"]

_THREAD_VARS = ("FASTNN_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS")


# ---- predict over a chunked array ---------------------------------------------------------

def _whole_rows(x, name):
    """x as a dask array chunked along rows only (every other axis one block)."""
    if hasattr(x, "to_dask_array"):  # a dask DataFrame or Series
        x = x.to_dask_array(lengths=True)
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask array (or a dask DataFrame). Received: "
                        f"{name} of type {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a row axis. Received: {name} of shape ()")
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError(f"{name} has rows chunks of unknown sizes: call "
                         f"{name}.compute_chunk_sizes() first")
    if x.ndim > 1 and any(len(c) > 1 for c in x.chunks[1:]):
        x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    return x


def _predict_block(model, *blocks):
    """One row block of every input -> the model's outputs side by side, (rows, total)."""
    n = blocks[0].shape[0]
    widths = [int(np.prod(t.shape[1:])) for t in model.outputs]
    if n == 0:
        return np.empty((0, sum(widths)), np.float32)
    outs = model.predict(list(blocks) if len(blocks) > 1 else blocks[0])
    if len(widths) == 1:
        return outs.reshape(n, widths[0])
    return np.concatenate([o.reshape(n, w) for o, w in zip(outs, widths)], axis=1)


def _model_in_graph(model):
    """The model as one graph key (the graph holds it, hence pickles it, once)."""
    digest = hashlib.sha256(saving.dumps(model)).hexdigest()[:16]
    return dask.delayed(model, name=f"fastnn-model-{digest}")


def predict(model: Model, x: Any) -> Any:
    """The model's outputs for a dask array x (one per input for several inputs), lazily:
    one model.predict per block of rows (a blockwise map, as map_blocks; columns are
    rechunked into one block). Returns a float32 dask array of shape (rows, *output
    shape) with x's row chunks; for a model of several outputs, a list of them, in the
    model's output order (computed together, e.g. dask.compute(*outs), each block is
    predicted once)."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastnn Model. Received: model of type "
                        f"{type(model).__name__}")
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    xs = [_whole_rows(a, "x") for a in xs]
    model._require_built("fastnn.dask.predict()")
    if len(xs) != len(model.inputs):
        raise ValueError(f"model takes {len(model.inputs)} inputs. Received: {len(xs)} "
                         f"dask arrays in x")
    rows = xs[0].chunks[0]
    for a in xs[1:]:
        if a.shape[0] != xs[0].shape[0]:
            raise ValueError(f"the inputs must have the same number of rows. Received: "
                             f"x shapes {[b.shape for b in xs]}")
    xs = [a if a.chunks[0] == rows else a.rechunk({0: rows}) for a in xs]
    widths = [int(np.prod(t.shape[1:])) for t in model.outputs]
    # each input's axes get letters of their own: only the rows ("i") are matched
    args, letter = [], iter("abcdefghjklmnopqrstuvwxyABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for a in xs:
        args += [a, "i" + "".join(next(letter) for _ in range(a.ndim - 1))]
    both = da.blockwise(_predict_block, "iz", _model_in_graph(model), None, *args,
                        new_axes={"z": sum(widths)}, concatenate=True, dtype=np.float32,
                        meta=np.empty((0, 0), np.float32))
    outs, start = [], 0
    for t, w in zip(model.outputs, widths):
        part = both[:, start:start + w] if len(widths) > 1 else both
        start += w
        shape = tuple(t.shape[1:])
        outs.append(part if len(shape) == 1 else part.reshape((part.shape[0],) + shape))
    return outs[0] if len(outs) == 1 else outs


# ---- a hyper-parameter search -------------------------------------------------------------

Fitted = collections.namedtuple("Fitted", ["model", "history", "config"])
Fitted.__doc__ = """One configuration fitted by fit_many: the fitted model, its
History.history dict ({"loss": [...], ...}) and the configuration it was built from."""

# fastnn's random state (set_random_seed, the auto names) is per process: tasks that share
# a worker process take turns, so that a seeded task gives what it gives alone.
_task_lock = threading.Lock()


def _fit_one(build_fn, config, x, y, seed, fit_kwargs):
    with _task_lock:
        if seed is not None:
            utils.set_random_seed(seed)
        model = build_fn(**config)
        if not isinstance(model, Model):
            raise TypeError(f"build_fn must return a compiled fastnn Model. Received: "
                            f"{type(model).__name__} for config={config!r}")
        if not model.compiled:
            raise ValueError(f"build_fn must return a compiled model (call compile() in "
                             f"it). Received: an uncompiled model for config={config!r}")
        history = model.fit(x, y, **fit_kwargs)
    return Fitted(model, dict(history.history), dict(config))


def fit_many(build_fn: Callable[..., Model], configs: Sequence[Mapping[str, Any]], x: Inputs,
             y: Inputs, client: Any = None, *, seed: Optional[int] = None,
             timeout: Optional[float] = None, **fit_kwargs: Any) -> list[Fitted]:
    """Fits one model per configuration, in parallel on Dask; returns a list of Fitted
    (model, history, config) in the order of `configs`.

    Each task calls `build_fn(**config)` (it returns a compiled model), then
    `model.fit(x, y, **fit_kwargs)`. With `seed`, each task first calls
    `fastnn.utils.set_random_seed(seed)`, so a task gives bit-identical weights to the
    same three calls made locally. x and y (NumPy arrays, or lists/dicts of them) go to
    the cluster once: scattered by `client` when given (then `timeout` bounds the wait,
    in seconds), else held once in the graph run by dask's current scheduler (a
    distributed Client made earlier becomes that scheduler)."""
    if not callable(build_fn):
        raise TypeError(f"build_fn must be callable, returning a compiled model. Received: "
                        f"build_fn={build_fn!r}")
    configs = list(configs)
    for config in configs:
        if not isinstance(config, dict):
            raise TypeError(f"each config must be a dict of build_fn's arguments. Received: "
                            f"{config!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None. Received: seed={seed!r}")
    if client is None:
        data = dask.delayed((x, y), traverse=False)
        tasks = [dask.delayed(_fit_one, pure=False)(build_fn, config, data[0], data[1], seed,
                                                    fit_kwargs) for config in configs]
        return list(dask.compute(*tasks))
    import distributed
    xf, yf = client.scatter([x, y], hash=False)
    futures = [client.submit(_fit_one, build_fn, config, xf, yf, seed, fit_kwargs, pure=False)
               for config in configs]
    distributed.wait(futures, timeout=timeout)
    return client.gather(futures)


# ---- training on chunks -------------------------------------------------------------------

class _ChunkBatches:
    """Batches of batch_size rows streamed from the chunks of (x, y): one chunk computed at
    a time (the next one computing meanwhile), rows left at a chunk's end carried into the
    next chunk's first batch, so that without shuffling the batches are those of
    fit(x, y, batch_size, shuffle=False) on the whole arrays. A pass per iteration: fit
    makes each epoch a pass over all chunks. Shuffling visits the chunks in a seeded
    order and shuffles the rows within each."""

    def __init__(self, x, y, batch_size, shuffle):
        self.x, self.y, self.batch, self.shuffle = x, y, batch_size, shuffle
        self.n = x.shape[0]

    def __len__(self):
        return -(-self.n // self.batch)

    def _chunk(self, c):
        xc, yc = dask.compute(self.x.blocks[c], self.y.blocks[c])
        return np.asarray(xc), np.asarray(yc)

    def __iter__(self):
        from concurrent.futures import ThreadPoolExecutor
        chunks = len(self.x.chunks[0])
        order = utils.rng().permutation(chunks).tolist() if self.shuffle else range(chunks)
        order = [c for c in order if self.x.chunks[0][c] > 0]
        carry_x = carry_y = None
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._chunk, order[0]) if order else None
            for k in range(len(order)):
                xc, yc = pending.result()
                if k + 1 < len(order):
                    pending = pool.submit(self._chunk, order[k + 1])
                if self.shuffle:
                    rows = utils.rng().permutation(xc.shape[0])
                    xc, yc = xc[rows], yc[rows]
                if carry_x is not None:
                    xc, yc = np.concatenate([carry_x, xc]), np.concatenate([carry_y, yc])
                full = xc.shape[0] - xc.shape[0] % self.batch
                for start in range(0, full, self.batch):
                    yield xc[start:start + self.batch], yc[start:start + self.batch]
                carry_x, carry_y = xc[full:], yc[full:]
        if carry_x is not None and carry_x.shape[0]:
            yield carry_x, carry_y


def fit_chunks(model: Model, x: Any, y: Any, epochs: int = 1, batch_size: int = 32,
               shuffle: bool = True, **fit_kwargs: Any) -> callbacks_module.History:
    """Trains a compiled model on dask arrays (or a dask DataFrame and Series) that need
    not fit in memory: fastnn's own fit runs on the batches of the chunks, computed one
    chunk at a time (the next one computing while the model trains on the current one).
    An epoch is one pass over all the chunks. Without shuffling, the batches are those of
    `model.fit(x, y, batch_size=batch_size, shuffle=False)` on the whole arrays, so the
    two fits end bit-identical; with shuffle=True the chunks come in a seeded order
    (fastnn.utils.set_random_seed) and rows are shuffled within each chunk. Other
    keyword arguments go to model.fit (verbose, callbacks, validation_data, ...).
    Returns the History."""
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastnn Model. Received: model of type "
                        f"{type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: "
                         f"batch_size={batch_size!r}")
    for arg in ("x", "y", "batch_size", "shuffle", "steps_per_epoch", "validation_split",
                "sample_weight", "class_weight"):
        if arg in fit_kwargs:
            raise ValueError(f"fit_chunks() streams the chunks in whole passes: `{arg}` is not "
                             f"supported. Received: {arg}={fit_kwargs[arg]!r}")
    x, y = _whole_rows(x, "x"), _whole_rows(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of rows. Received: x shape "
                         f"{x.shape}, y shape {y.shape}")
    if y.chunks[0] != x.chunks[0]:
        y = y.rechunk({0: x.chunks[0]})
    return model.fit(_ChunkBatches(x, y, int(batch_size), bool(shuffle)), epochs=epochs,
                     **fit_kwargs)


# ---- threads ------------------------------------------------------------------------------

def blas_threads(n_workers: int, threads_per_worker: int = 1, cores: Optional[int] = None) -> int:
    """BLAS threads per task so that n_workers x threads_per_worker tasks running at once
    use the cores (default: os.cpu_count()) without oversubscribing them: at least 1."""
    for arg, value in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    cores = (os.cpu_count() or 1) if cores is None else cores
    return max(1, int(cores) // (n_workers * threads_per_worker))


def worker_env(n_workers: int, threads_per_worker: int = 1,
               cores: Optional[int] = None) -> dict[str, str]:
    """The environment for worker processes (LocalCluster(env=...), Nanny(env=...)):
    FASTNN_NUM_THREADS, OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS set to
    blas_threads(n_workers, threads_per_worker, cores). A worker sets them when it starts,
    which bounds the libraries it loads and the processes it starts afterwards; a BLAS
    already loaded keeps its pool: ThreadLimit sets that one."""
    n = str(blas_threads(n_workers, threads_per_worker, cores))
    return {var: n for var in _THREAD_VARS}


class ThreadLimit(WorkerPlugin):
    """A worker plugin bounding fastnn's and the BLAS's threads in each worker it joins:
    `client.register_plugin(ThreadLimit(threads))` calls fastnn.set_num_threads(threads)
    in every worker (present and future) and sets the thread variables of worker_env for
    the processes they start."""
    name = "fastnn-thread-limit"

    def __init__(self, threads: int = 1) -> None:
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) \
                or threads < 1:
            raise ValueError(f"threads must be a positive integer. Received: threads={threads!r}")
        self.threads = int(threads)

    def setup(self, worker: Any = None) -> None:
        import fastnn
        for var in _THREAD_VARS:
            os.environ[var] = str(self.threads)
        fastnn.set_num_threads(min(self.threads, 64))
