"""python -m fastnn demo: the digits classifier reaches 95% test accuracy and prints its
summary, progress and confusion counts; the housing demo still runs."""
import re

import numpy as np

from fastnn import __main__ as cli
from fastnn.datasets import digits


def _run(capsys, *argv):
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().out


def test_digits_demo_reaches_95_percent(capsys):
    out = _run(capsys, "demo", "--task", "digits", "--verbose", "2")
    assert 'Model: "sequential' in out and "Trainable params: 4,810" in out
    assert "normalization (Normalization" in out  # the inputs standardised in the model
    epochs = re.findall(r"^Epoch (\d+)/30 - .* - loss: [\d.]+ - accuracy: [\d.]+ - "
                        r"val_loss: [\d.]+ - val_accuracy: [\d.]+$", out, re.M)
    assert [int(e) for e in epochs] == list(range(1, 31))
    accuracy, right = re.search(r"test: loss [\d.]+  accuracy ([\d.]+) \((\d+)/360 right\)",
                                out).groups()
    assert float(accuracy) >= 0.95 and abs(int(right) / 360 - float(accuracy)) < 1e-4
    # the 10x10 confusion counts: rows are the true digits of the test split
    rows = re.findall(r"^  (\d): ((?:\s+\d+){10})$", out, re.M)
    assert [int(d) for d, _ in rows] == list(range(10))
    confusion = np.array([[int(v) for v in counts.split()] for _, counts in rows])
    _, (_, y_test) = digits.load_data()
    np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(y_test, minlength=10))
    assert np.trace(confusion) == int(right)


def test_housing_demo_runs(capsys):
    out = _run(capsys, "demo", "--epochs", "2", "--verbose", "0")
    assert "Boston housing: 404 training rows" in out and "fastnn  test:  MSE" in out
    assert "normalization (Normalization" in out


def test_demo_arguments(capsys):
    import pytest
    with pytest.raises(SystemExit):
        cli.main(["demo", "--task", "mnist"])
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])
    assert "--task" in capsys.readouterr().err
