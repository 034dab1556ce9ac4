"""boston_housing.load_data(): shapes, dtypes, determinism, Keras' split, and errors."""
from importlib.resources import files

import numpy as np
import pytest

from fastnn.datasets import boston_housing


def _bundled_csv():
    """The bundled CSV read independently: header, 13 features, MEDV last."""
    path = files("fastnn.datasets") / "data" / "boston_housing.csv"
    with path.open("r", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
        rows = np.array([[float(v) for v in line.split(",")] for line in f if line.strip()])
    return header, rows


def test_shapes_and_dtypes():
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data()
    assert x_train.shape == (404, 13) and y_train.shape == (404,)
    assert x_test.shape == (102, 13) and y_test.shape == (102,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.float64
        assert a.flags.c_contiguous and a.flags.owndata


def test_deterministic():
    first = boston_housing.load_data()
    second = boston_housing.load_data()
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)


def test_split_is_a_permutation_of_the_csv():
    header, rows = _bundled_csv()
    assert len(header) == 14 and header[-1] == "MEDV" and rows.shape == (506, 14)
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data()
    split = np.vstack([np.column_stack([x_train, y_train]), np.column_stack([x_test, y_test])])
    np.testing.assert_array_equal(np.unique(split, axis=0), np.unique(rows, axis=0))
    # Keras' recipe: RandomState(113).shuffle of the row indices, then the first 80% train
    idx = np.arange(506)
    np.random.RandomState(113).shuffle(idx)
    np.testing.assert_array_equal(x_train, rows[idx[:404], :13])
    np.testing.assert_array_equal(y_test, rows[idx[404:], 13])


def test_other_seed_and_split():
    (x_train, _), (x_test, _) = boston_housing.load_data(test_split=0.5, seed=1)
    assert x_train.shape == (253, 13) and x_test.shape == (253, 13)
    (x_default, _), _ = boston_housing.load_data()
    (x_seed1, _), _ = boston_housing.load_data(seed=1)
    assert not np.array_equal(x_default, x_seed1)
    (x_all, y_all), (x_none, y_none) = boston_housing.load_data(test_split=0.0)
    assert x_all.shape == (506, 13) and x_none.shape == (0, 13) and y_none.shape == (0,)


def test_standardised_test_split_matches_keras_article(housing, keras_data_dir):
    path = keras_data_dir / "article_inputs.npy"
    if not path.exists():
        pytest.skip(f"{path} not found")
    expected = np.load(path)
    assert expected.shape == housing.x_test.shape
    np.testing.assert_allclose(housing.x_test, expected, rtol=1e-6, atol=1e-6)


def test_standardisation_fixture(housing):
    np.testing.assert_allclose(housing.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(housing.x_train.std(axis=0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("test_split", [1.0, -0.1, 1.5])
def test_bad_test_split(test_split):
    with pytest.raises(ValueError, match=rf"`test_split` must be between 0 and 1. "
                                         rf"Received: test_split={test_split}"):
        boston_housing.load_data(test_split=test_split)


def test_custom_csv_path(tmp_path):
    _, rows = _bundled_csv()
    path = tmp_path / "small.csv"
    lines = ["h" + ",h" * 13] + [",".join(repr(float(v)) for v in r) for r in rows[:10]]
    path.write_text("\n".join(lines) + "\n")
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data(path=str(path), test_split=0.3)
    assert x_train.shape == (7, 13) and x_test.shape == (3, 13)
    got = np.vstack([np.column_stack([x_train, y_train]), np.column_stack([x_test, y_test])])
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(rows[:10], axis=0))


def test_csv_with_wrong_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=r"Expected 14 columns \(13 features \+ MEDV\) in the "
                                         r"housing CSV; got 3"):
        boston_housing.load_data(path=str(path))
