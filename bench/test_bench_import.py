"""W6: `import numpy, fastnn` against `import numpy` in fresh interpreters.

Each round starts an interpreter; the timed figure therefore includes start-up, the same for
every variant, so the difference between the groups' medians is fastnn's import cost.
extra_info["import_seconds"] holds the import alone, measured inside the child."""
import pytest

from fastnn import benchmarks


@pytest.mark.benchmark(group="W6: import in a fresh interpreter (includes start-up)")
def test_w6_import(benchmark, impl):
    case = benchmarks.case("W6", impl)
    case.fn(*case.args)  # fills the bytecode cache
    inside = []
    benchmark.pedantic(lambda: inside.append(case.fn(*case.args)),
                       rounds=3 if impl == "torch" else 7, iterations=1)
    inside.sort()
    benchmark.extra_info["modules"] = case.info["modules"]
    benchmark.extra_info["import_seconds"] = inside[len(inside) // 2]
