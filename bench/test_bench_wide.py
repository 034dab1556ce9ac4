"""W2, W4 and the 0.1 layer workload: 512-wide layers (GEMM-bound)."""
import pytest

from fastnn import benchmarks


@pytest.mark.benchmark(group="W2: 784-512-512-10 MLP, 1 epoch, batch 128, softmax CE, RMSprop")
def test_w2_train_epoch(run_case, impl):
    run_case(benchmarks.case("W2", impl), rounds=3 if benchmarks.is_quick() else 1)


@pytest.mark.benchmark(group="W4: predict, 784-512-512-10 MLP (NumPy: batches of 1024)")
def test_w4_predict(run_case, impl):
    run_case(benchmarks.case("W4", impl), rounds=5 if benchmarks.is_quick() else 2)


@pytest.mark.benchmark(group="L512: one 512->512 Dense+ReLU fwd+bwd, batch 128")
@pytest.mark.parametrize("variant", ["fastnn-blas", "fastnn-portable", "numpy", "torch"])
def test_dense_512_forward_backward(run_case, skip_unavailable, variant):
    skip_unavailable(variant)
    run_case(benchmarks.case("L512", variant))
