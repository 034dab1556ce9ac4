"""W5: the RMSprop update of 10M parameters, against np.copyto's bandwidth."""
import pytest

from fastnn import benchmarks


@pytest.mark.benchmark(group="W5: RMSprop, 10M float32 params (copyto: 100 MB, the bandwidth reference)")
@pytest.mark.parametrize("variant", ["fastnn", "numpy", "copyto", "torch"])
def test_w5_rmsprop_10m(run_case, skip_unavailable, variant):
    skip_unavailable(variant)
    run_case(benchmarks.case("W5", variant))
