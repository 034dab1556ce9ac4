"""Batches that come from Python: fit, evaluate and predict on a generator, an iterable of
batches or a fastnn.utils.PyDataset (and on arrays when steps_per_epoch asks for epochs
that are not whole passes), with Keras 3's epoch semantics (its EpochIterator):

- without steps, an epoch is one pass: a new iterator every epoch (a one-shot generator
  is spent after the first; an epoch that gets no batch ends training with a warning);
- with steps, the iterator carries on from epoch to epoch, `steps` batches each; when a
  pass of known length ends, the next epoch starts a new pass; when the data run out
  within an epoch, that epoch ends early with a warning.

A batch is (x,), (x, y) or (x, y, sample_weight) (a list counts as a tuple), or x
alone (an array or a dict of inputs). Arrays never go through here unless asked: their
epochs run inside the engine (models/model.py)."""
from __future__ import annotations

import collections
import itertools
import warnings
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from fastnn import utils


def is_source(x: Any) -> bool:
    """True if x is given as batches (a PyDataset, a generator, an iterator, or another
    iterable that is not an array, a list, a tuple or a dict)."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)):
        return False
    if _is_pydataset(x):
        return True
    if any(hasattr(x, a) for a in ("__array__", "__array_interface__", "__array_struct__")):
        return False  # an array-like (a DataFrame, a tensor): rows, not batches
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def _is_pydataset(x):
    """A fastnn PyDataset, or an object shaped like one (keras.utils.PyDataset's)."""
    if isinstance(x, utils.PyDataset):
        return True
    if any(c.__name__ in ("PyDataset", "Sequence") for c in type(x).__mro__[1:]):
        return True
    return all(hasattr(x, a) for a in ("__getitem__", "__len__", "on_epoch_end")) and \
        not hasattr(x, "__iter__")


def source(x: Any, shuffle: bool = False) -> Union[IterableSource, PyDatasetSource]:
    """The batch source behind x (see is_source)."""
    if _is_pydataset(x):
        return PyDatasetSource(x, shuffle)
    return IterableSource(x)


def unpack(batch: Any) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) of one batch, the missing parts None."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"A batch must be (x,), (x, y) or (x, y, sample_weight): a tuple of "
                         f"1 to 3 items. Received a tuple of {len(batch)}: "
                         f"{str(batch)[:100]}")
    return batch + (None,) * (3 - len(batch))


class IterableSource:
    """A generator, an iterator or an iterable of batches."""
    prepared = False

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = data
        self.one_shot = hasattr(data, "__next__") or iter(data) is data
        self.num_batches = None
        if not self.one_shot and hasattr(data, "__len__"):
            self.num_batches = len(data)

    def iterator(self) -> Iterator[Any]:
        return iter(self.data)

    def on_epoch_begin(self) -> None:
        pass

    def on_epoch_end(self) -> None:
        pass


class PyDatasetSource:
    """A PyDataset: batches by index, in a new seeded order per pass when shuffling,
    prepared ahead on threads when it asks for workers."""
    prepared = False

    def __init__(self, dataset: Any, shuffle: bool) -> None:
        self.dataset, self.shuffle = dataset, bool(shuffle)
        n = dataset.num_batches if hasattr(type(dataset), "num_batches") else len(dataset)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer))
                              or n < 0):
            raise ValueError(f"{type(dataset).__name__}: the number of batches must be an "
                             f"integer >= 0 (or None when endless). Received: {n!r}")
        self.num_batches = None if n is None else int(n)
        self.workers = int(getattr(dataset, "workers", 1) or 1)
        self.queue = int(getattr(dataset, "max_queue_size", 10) or 10)

    def _indices(self):
        if self.num_batches is None:
            return itertools.count()
        if self.shuffle:
            return iter(utils.rng().permutation(self.num_batches).tolist())
        return iter(range(self.num_batches))

    def iterator(self) -> Iterator[Any]:
        if self.workers > 1:
            return self._prefetched(self._indices())
        return (self.dataset[i] for i in self._indices())

    def _prefetched(self, indices):
        """dataset[i] in order, up to `queue` of them computing ahead on the threads."""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(self.workers) as pool:
            pending = collections.deque(pool.submit(self.dataset.__getitem__, i)
                                        for i in itertools.islice(indices, self.queue))
            while pending:
                done = pending.popleft()
                for i in itertools.islice(indices, 1):
                    pending.append(pool.submit(self.dataset.__getitem__, i))
                yield done.result()

    def on_epoch_begin(self) -> None:
        if hasattr(self.dataset, "on_epoch_begin"):
            self.dataset.on_epoch_begin()

    def on_epoch_end(self) -> None:
        self.dataset.on_epoch_end()


class ArraySource:
    """Checked arrays (one per input, one per loss head) served as batches of batch_size
    rows, reshuffled with the package generator at the start of every pass; the batches
    are ready for the engine (prepared)."""
    prepared = True

    def __init__(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], batch_size: int,
                 shuffle: bool) -> None:
        self.xs, self.ys, self.batch, self.shuffle = xs, ys, batch_size, bool(shuffle)
        self.n = xs[0].shape[0]
        self.num_batches = -(-self.n // batch_size)

    def iterator(self) -> Iterator[Any]:
        order = utils.rng().permutation(self.n) if self.shuffle else None
        for start in range(0, self.n, self.batch):
            rows = slice(start, start + self.batch) if order is None else \
                order[start:start + self.batch]
            yield [a[rows] for a in self.xs], [a[rows] for a in self.ys], None

    def on_epoch_begin(self) -> None:
        pass

    def on_epoch_end(self) -> None:
        pass


def _ran_out():
    warnings.warn("Your input ran out of data; interrupting the epoch. Make sure that your "
                  "dataset or generator can generate at least `steps_per_epoch * epochs` "
                  "batches.", RuntimeWarning, stacklevel=4)


class Epochs:
    """Keras' epoch semantics over a source (module docstring): epoch() yields
    (step, batch) for one epoch. `num_batches`: steps, or the source's length, or the
    length learnt from the first complete pass (None until then)."""

    def __init__(self, src: Union[IterableSource, PyDatasetSource, ArraySource],
                 steps: Optional[int] = None) -> None:
        self.src, self.steps = src, steps
        self._iterator, self._seen = None, 0
        self._learnt = None

    @property
    def num_batches(self) -> Optional[int]:
        return self.steps or self.src.num_batches or self._learnt

    def epoch(self) -> Iterator[Any]:
        src = self.src
        src.on_epoch_begin()
        try:
            if self.steps is None:
                step = -1
                for step, batch in enumerate(src.iterator()):
                    yield step, batch
                if step >= 0 and src.num_batches is None and not src.one_shot:
                    self._learnt = step + 1
                return
            known = src.num_batches
            for step in range(self.steps):
                if self._iterator is None:
                    self._iterator, self._seen = iter(src.iterator()), 0
                if known is not None and self._seen >= known:
                    _ran_out()
                    break
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    self._iterator = None
                    _ran_out()
                    break
                self._seen += 1
                yield step, batch
            if known is not None and self._seen >= known:
                self._iterator = None  # the pass is over: the next epoch starts another
        finally:
            src.on_epoch_end()
