"""W7 and W8: mid-size models trained with Adam, the workloads fastnn splits between its
threads (the tabular 32->256->128->64->1 MLP at batch 256, the digits classifier
64->128->64->10 at batch 32). LOAD and THREADS need a busy process and several thread
counts: `python -m fastnn bench --only W7,W8,LOAD,THREADS` runs those."""
import numpy as np
import pytest

from fastnn import benchmarks


@pytest.mark.benchmark(group="W7: tabular 32-256-128-64-1, MSE, Adam, batch 256, 1 epoch")
def test_w7_train_epoch(run_case, impl):
    run_case(benchmarks.case("W7", impl), rounds=5 if benchmarks.is_quick() else 3)


@pytest.mark.benchmark(group="W8: digits 64-128-64-10, softmax, sparse CE, Adam, batch 32, "
                             "1 epoch")
def test_w8_train_epoch(run_case, impl):
    run_case(benchmarks.case("W8", impl), rounds=10)


def test_numpy_adam_baseline_trains_as_fastnn():
    """The NumPy baseline races fastnn on the same maths: Keras' Adam, from the same
    weights, gives the same weights after a few steps (not timed)."""
    model = benchmarks.mlp_model((8, 16, 1), ("relu", "linear"), "mse", "adam")
    net = benchmarks.numpy_twin(model, (8, 16, 1), ("relu", "linear"), optimizer="adam")
    x, y = benchmarks.tabular(64)
    x = np.ascontiguousarray(x[:, :8])
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    net.fit(x, y, 3, batch_size=16, shuffle=False)
    np.testing.assert_allclose(net.params, benchmarks.flat_weights(model), rtol=0, atol=1e-5)
    assert net.iterations == 12
