"""pytest-benchmark suite: each fastnn case next to its NumPy baseline (and torch when it
imports), grouped per workload. The workloads live in fastnn.benchmarks, shared with
`python -m fastnn bench`.

Run: pytest bench/ --benchmark-only   (quick sizes for W2/W4 unless FASTNN_BENCH_QUICK=0)

No timing assertions here: the figures are for reading, the targets are checked by the CLI.
"""
import os

import pytest

# The synthetic W2/W4 data set shrinks to 6000 rows so the suite stays fast; set
# FASTNN_BENCH_QUICK=0 to benchmark the full 60000 rows.
os.environ.setdefault("FASTNN_BENCH_QUICK", "1")

from fastnn import benchmarks  # noqa: E402  (after the environment default)


def pytest_report_header(config):
    import numpy as np
    from fastnn import _blas
    return (f"fastnn benchmarks: quick={benchmarks.is_quick()} "
            f"(W2/W4 rows: {benchmarks.w2_rows()}), NumPy {np.__version__}, "
            f"BLAS: {'yes' if _blas.available() else 'no'}, "
            f"torch: {'yes' if benchmarks.have_torch() else 'not installed (skipped)'}")


def _skip_unavailable(name):
    if name == "torch" and not benchmarks.have_torch():
        pytest.skip("PyTorch is not installed")
    if name == "fastnn-blas":
        from fastnn import _blas
        if not _blas.available():
            pytest.skip("no BLAS sgemm found (fastnn._blas.available() is False)")


@pytest.fixture(params=["fastnn", "numpy", "torch"])
def impl(request):
    """fastnn, its NumPy baseline, and torch (skipped when not installed)."""
    _skip_unavailable(request.param)
    return request.param


@pytest.fixture
def skip_unavailable():
    return _skip_unavailable


@pytest.fixture
def run_case(benchmark):
    """run_case(case, rounds=None): benchmarks case.fn(*case.args) after its warm-up.

    rounds=None lets pytest-benchmark calibrate (cheap calls); a number runs exactly that
    many single-call rounds (calls of a second or more). A training case with a reset (back
    to its initial weights and optimizer state) runs single-call rounds with the reset,
    untimed, before each (10 rounds unless told). Rates derived from the median (GFLOP/s,
    GB/s, samples/s, us per step) go to extra_info."""
    def run(case, rounds=None):
        if case.warmup is not None:
            case.warmup()
        if case.reset is not None:
            result = benchmark.pedantic(case.fn, args=case.args, setup=case.reset,
                                        rounds=rounds or 10, iterations=1,
                                        warmup_rounds=0 if case.warmup else 1)
        elif rounds is None:
            result = benchmark(case.fn, *case.args)
        else:
            result = benchmark.pedantic(case.fn, args=case.args, rounds=rounds, iterations=1,
                                        warmup_rounds=0 if case.warmup else 1)
        stats = getattr(benchmark, "stats", None)
        median = getattr(getattr(stats, "stats", None), "median", None)
        info = dict(case.info)
        if median:
            if "flop" in info:
                info["gflops"] = info["flop"] / median / 1e9
            if "bytes" in info:
                info["gb_per_s"] = info["bytes"] / median / 1e9
            if "rows" in info:
                info["samples_per_s"] = info["rows"] / median
            if "steps" in info:
                info["us_per_step"] = median / info["steps"] * 1e6
        benchmark.extra_info.update(info)
        return result
    return run
