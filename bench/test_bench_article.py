"""W1 and W3: the article's 13->10->10->1 model on Boston housing (overhead-bound)."""
import pytest

from fastnn import benchmarks


@pytest.mark.benchmark(group="W1a: one training step, batch 32 (fastnn: 1-epoch fit of 32 rows)")
def test_w1_train_step(run_case, impl):
    run_case(benchmarks.case("W1a", impl))


@pytest.mark.benchmark(group="W1b: 100-epoch fit, 404 rows, batch 32 (1300 steps)")
def test_w1_fit_100_epochs(run_case, impl):
    run_case(benchmarks.case("W1b", impl), rounds=15)


@pytest.mark.benchmark(group="W3: predict one row (1, 13) float32")
def test_w3_predict_one_row(run_case, impl):
    run_case(benchmarks.case("W3", impl))
