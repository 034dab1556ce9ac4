"""fastnn.set_num_threads / get_num_threads: the threads fastnn computes with.

fastnn runs on its own thread pool (csrc/pool.c): a training step large enough splits
its batch between the threads, a large predict its rows; small work stays on the calling
thread. The BLAS that NumPy loaded serves only the layers of plans that cannot split
(batch statistics, loss terms from regularizers); it gets the same thread count, so that
fastnn never runs more threads than it was given."""
from fastnn import _blas, _engine


def set_num_threads(n: int) -> None:
    """Sets the threads fastnn computes with, the calling thread included.

    Args:
        n: 1 to 64. The default is the number of CPUs this process may run on
            (``os.sched_getaffinity`` where the system has it). 1 keeps every call on the
            calling thread; a Dask worker or a server process sharing the machine should
            get its share of the cores.

    Raises:
        ValueError: if n is not an integer in [1, 64].

    A given thread count gives bit-identical results on every run; different counts split
    the sums of a batch differently and may differ in the last bits."""
    limit = _engine.MAX_THREADS
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= limit:
        raise ValueError(f"n must be an integer in [1, {limit}]. Received: n={n!r}")
    _engine.set_num_threads(n)
    _blas.set_num_threads(n)


def get_num_threads() -> int:
    """The threads fastnn computes with (see set_num_threads)."""
    return _engine.get_num_threads()
