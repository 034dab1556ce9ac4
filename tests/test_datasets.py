"""boston_housing.load_data() and digits.load_data(): shapes, dtypes, determinism, the
split, and errors."""
import gzip
from importlib.resources import files

import numpy as np
import pytest

from fastnn.datasets import boston_housing, digits


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


# ---- digits -------------------------------------------------------------------------------

def _digits_csv():
    """The bundled gzip CSV read independently: 64 pixel columns, the digit last."""
    with (files("fastnn.datasets") / "data" / "digits.csv.gz").open("rb") as raw:
        text = gzip.decompress(raw.read()).decode("ascii")
    return np.array([[int(v) for v in line.split(",")] for line in text.splitlines() if line])


def test_digits_shapes_dtypes_and_values():
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1437, 64) and y_train.shape == (1437,)
    assert x_test.shape == (360, 64) and y_test.shape == (360,)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.flags.c_contiguous and x.flags.owndata and y.flags.owndata
        assert x.min() == 0 and x.max() == 16 and np.array_equal(x, np.round(x))
        assert set(np.unique(y)) == set(range(10))
    # every class is well represented in both parts (the shuffle mixes the file's order)
    assert np.bincount(y_test, minlength=10).min() >= 25


def test_digits_split_is_a_permutation_of_the_csv():
    rows = _digits_csv()
    assert rows.shape == (1797, 65) and set(rows[:, 64]) == set(range(10))
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    idx = np.arange(1797)
    np.random.RandomState(113).shuffle(idx)
    np.testing.assert_array_equal(x_train, rows[idx[:1437], :64])
    np.testing.assert_array_equal(y_train, rows[idx[:1437], 64])
    np.testing.assert_array_equal(x_test, rows[idx[1437:], :64])
    np.testing.assert_array_equal(y_test, rows[idx[1437:], 64])


def test_digits_deterministic_other_seed_and_split():
    first, second = digits.load_data(), digits.load_data()
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)
    (x_half, _), (x_rest, _) = digits.load_data(test_split=0.5, seed=7)
    assert x_half.shape == (898, 64) and x_rest.shape == (899, 64)
    assert not np.array_equal(digits.load_data(seed=7)[0][0], first[0][0])
    (x_all, _), (x_none, y_none) = digits.load_data(test_split=0.0)
    assert x_all.shape == (1797, 64) and x_none.shape == (0, 64) and y_none.shape == (0,)


@pytest.mark.parametrize("test_split", [-0.1, 1.0, "0.2", None])
def test_digits_bad_test_split(test_split):
    with pytest.raises(ValueError, match=rf"Received: test_split={test_split!r}"):
        digits.load_data(test_split=test_split)


def test_digits_custom_paths(tmp_path):
    rows = _digits_csv()[:20]
    text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    plain, packed = tmp_path / "d.csv", tmp_path / "d.csv.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode("ascii")))
    for path in (plain, packed):
        (x, y), (xt, yt) = digits.load_data(path=path, test_split=0.25)
        assert x.shape == (15, 64) and xt.shape == (5, 64)
        np.testing.assert_array_equal(np.unique(np.column_stack([np.vstack([x, xt]),
                                                                 np.concatenate([y, yt])]),
                                                axis=0), np.unique(rows, axis=0))
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(ValueError, match="Expected 65 columns"):
        digits.load_data(path=bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(",".join(["0"] * 64 + ["12"]) + "\n")
    with pytest.raises(ValueError, match="digits 0..9"):
        digits.load_data(path=wrong)
