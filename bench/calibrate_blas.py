"""Finds the size where a dense layer should move from fastnn's panel kernels to
the BLAS: times forward + backward of one layer both ways over a grid
of (batch, in, out) and prints each point's multiply-adds and speed ratio.
fastnn.models.plan.BLAS_MIN_MACS is set from this table (the smallest size from
which the BLAS wins everywhere). Run: python bench/calibrate_blas.py"""
import timeit

import numpy as np

from fastnn import _blas, _engine


def layer_time(x, w, b, dy, path):
    y = _engine.dense_forward(x, w, b, "relu", path=path)

    def step():
        _engine.dense_forward(x, w, b, "relu", path=path)
        _engine.dense_backward(x, w, y, dy, "relu", path=path)

    number = max(1, int(2e7 / (x.shape[0] * x.shape[1] * w.shape[1])))
    return min(timeit.repeat(step, number=number, repeat=5)) / number


def main():
    if not _blas.available():
        raise SystemExit("no BLAS found: every size uses the portable GEMM")
    rng = np.random.default_rng(0)
    print(f"{'batch':>6} {'in':>5} {'out':>5} {'MACs':>10} {'panels us':>12} {'blas us':>9} {'blas speed-up':>14}")
    for batch in (1, 8, 32, 128):
        for n_in, n_out in ((13, 32), (32, 32), (64, 64), (128, 128), (256, 256), (512, 512)):
            x = rng.standard_normal((batch, n_in), dtype=np.float32)
            w = rng.standard_normal((n_in, n_out), dtype=np.float32)
            b = np.zeros(n_out, np.float32)
            dy = rng.standard_normal((batch, n_out), dtype=np.float32)
            tp, tb = layer_time(x, w, b, dy, "panels"), layer_time(x, w, b, dy, "blas")
            print(f"{batch:>6} {n_in:>5} {n_out:>5} {batch * n_in * n_out:>10} "
                  f"{tp * 1e6:>12.1f} {tb * 1e6:>9.1f} {tp / tb:>14.2f}")


if __name__ == "__main__":
    main()
