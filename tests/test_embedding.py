"""Embedding: lookups against NumPy indexing, gradients (repeated indices sum, a layer
used twice sums its calls) against central differences of a float64 reference under
every kernel set, index checks at the boundary, frozen weights, config and save/load."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn import Model, Sequential, utils
from fastnn.layers import (Dense, Embedding, Flatten, Input, LayerNormalization,
                           concatenate)
from test_normalization import check_gradients, layer_norm_ref, mse, sgd_gradients

F64 = np.float64


@pytest.fixture
def indices(rng):
    """12 rows of 4 indices below 6, with repeats inside rows and across them; index 5
    never appears."""
    x = rng.integers(0, 5, size=(12, 4))
    x[0] = [1, 1, 1, 2]
    return x


def _lookup_model(input_dim=6, output_dim=3, k=4, **kwargs):
    utils.set_random_seed(2)
    emb = Embedding(input_dim, output_dim, **kwargs)
    return Sequential([Input(shape=(k,)), emb, Flatten()]), emb


def test_lookup_matches_indexing(indices):
    model, emb = _lookup_model()
    assert emb.output_shape == (None, 4, 3) and model.output_shape == (None, 12)
    want = emb.embeddings[indices].reshape(len(indices), -1)
    np.testing.assert_array_equal(model.predict(indices), want)
    np.testing.assert_array_equal(model.predict(indices.astype(np.float32)), want)
    np.testing.assert_array_equal(model.predict(indices[:1]), want[:1])  # the latency path
    np.testing.assert_array_equal(emb(indices), emb.embeddings[indices])  # eager, 3-D
    # Keras casts float indices to int: 2.7 is row 2
    np.testing.assert_array_equal(model.predict(np.full((1, 4), 2.7))[0],
                                  np.tile(emb.embeddings[2], 4))


def test_default_initializer_is_keras_uniform(indices):
    _, emb = _lookup_model(input_dim=400, output_dim=50)
    assert np.abs(emb.embeddings).max() <= 0.05
    assert emb.embeddings.std() == pytest.approx(0.05 / np.sqrt(3), rel=0.05)


def test_gradients_sum_over_repeated_indices(kernels, ref, indices, rng):
    y = rng.standard_normal((12, 2)).astype(np.float32)
    model, emb = _lookup_model()
    model.add(Dense(2, activation="tanh"))

    def total(w):
        return mse(np.tanh(w[0][indices].reshape(12, -1) @ w[1] + w[2]), y)
    start = check_gradients(ref, model, indices, y, total)
    # the scatter-add by hand: each use of a row adds its output gradient
    e, k, b = start
    h = e[indices].reshape(12, -1)
    dz = 2 * (np.tanh(h @ k + b) - y) / y.size * (1 - np.tanh(h @ k + b) ** 2)
    dh = (dz @ k.T).reshape(12, 4, 3)
    want = np.zeros_like(e)
    np.add.at(want, indices, dh)
    model.set_weights([w.astype(np.float32) for w in start])  # the same step again
    _, (got, _, _) = sgd_gradients(model, indices, y)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)
    assert not got[5].any()  # an index no row uses gets no gradient


def test_a_layer_used_twice_sums_its_gradients(kernels, ref, rng):
    a = rng.integers(0, 7, size=(10, 2))
    b = rng.integers(0, 7, size=(10, 3))
    y = rng.standard_normal((10, 1)).astype(np.float32)
    utils.set_random_seed(4)
    shared = Embedding(7, 2, embeddings_initializer="random_normal")
    ia, ib = Input(shape=(2,)), Input(shape=(3,))
    joined = concatenate([Flatten()(shared(ia)), Flatten()(shared(ib))])
    model = Model([ia, ib], Dense(1)(joined))

    def total(w):
        h = np.concatenate([w[0][a].reshape(10, -1), w[0][b].reshape(10, -1)], axis=1)
        return mse(h @ w[1] + w[2], y)
    check_gradients(ref, model, [a, b], y, total)


def test_embedding_then_layer_normalization(ref, rng, indices):
    """The (None, 4, 3) output is 4 groups of 3 for the layers after it."""
    y = rng.standard_normal((12, 1)).astype(np.float32)
    model, _ = _lookup_model(embeddings_initializer="random_normal")
    model.pop()  # Flatten
    model.add(LayerNormalization(epsilon=1e-3))
    model.add(Flatten())
    model.add(Dense(1))

    def total(w):
        h = layer_norm_ref(w[0][indices].reshape(12, -1), 3, w[1], w[2], 1e-3)
        return mse(h @ w[3] + w[4], y)
    check_gradients(ref, model, indices, y, total)


def test_out_of_range_indices_raise(indices):
    model, _ = _lookup_model()
    model.add(Dense(1))
    model.compile("sgd", "mse")
    y = np.zeros((12, 1))
    for row, value in ((0, 6), (3, -1)):
        bad = indices.copy()
        bad[0, row % 4], bad[row, 1] = value, value
        for call in (lambda: model.predict(bad), lambda: model.predict(bad[:1]),
                     lambda: model.fit(bad, y, verbose=0), lambda: model.evaluate(bad, y),
                     lambda: model.train_on_batch(bad, y)):
            with pytest.raises(ValueError, match=r"Embedding of input_dim=6.*\[0, 6\)"):
                call()
    with pytest.raises(ValueError, match="indices in \\[0, 6\\)"):
        Embedding(6, 2)(np.array([[6]]))


def test_frozen_embedding_stays(indices):
    model, emb = _lookup_model(trainable=False)
    model.add(Dense(1))
    before = emb.embeddings.copy()
    model.compile("adam", "mse")
    model.fit(indices, np.ones((12, 1)), epochs=3, verbose=0)
    np.testing.assert_array_equal(emb.embeddings, before)
    assert model.count_params() == 18 + 13 and len(model.trainable_weights) == 2


def test_config_save_and_load(indices, tmp_path):
    model, emb = _lookup_model(embeddings_initializer=fastnn.initializers.RandomNormal(
        stddev=0.3, seed=4), embeddings_regularizer="l2", embeddings_constraint="unit_norm",
        activity_regularizer=fastnn.regularizers.L1(0.001), name="words")
    model.add(Dense(1))
    model.compile("adam", "mse")
    model.fit(indices, np.ones((12, 1)), epochs=2, verbose=0)
    model.save(tmp_path / "e.keras")
    loaded = fastnn.models.load_model(tmp_path / "e.keras")
    assert loaded.get_layer("words").get_config() == emb.get_config()
    np.testing.assert_array_equal(loaded.predict(indices), model.predict(indices))
    assert loaded.evaluate(indices, np.ones((12, 1))) == \
        pytest.approx(model.evaluate(indices, np.ones((12, 1))), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mask_zero"):
        Embedding(5, 2, mask_zero=True)
    for arg, value in (("input_dim", 0), ("output_dim", -3), ("input_dim", 2.5),
                       ("input_dim", (1 << 24) + 1)):
        kwargs = {"input_dim": 5, "output_dim": 2, arg: value}
        with pytest.raises(ValueError, match=f"Received: {arg}={value!r}"):
            Embedding(**kwargs)
    with pytest.raises(ValueError, match="lora_rank"):
        Embedding(5, 2, lora_rank=4)
    with pytest.raises(ValueError, match="2-D input"):
        Sequential([Input(shape=(12,)), fastnn.layers.Reshape((3, 4)), Embedding(5, 2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Embedding(5, 2, input_length=3)
    assert "input_length" in str(caught[0].message)


def test_given_weights(indices):
    table = np.arange(18, dtype=np.float32).reshape(6, 3)
    model, emb = _lookup_model(weights=[table])
    np.testing.assert_array_equal(model.predict(indices), table[indices].reshape(12, -1))
    with pytest.raises(ValueError, match=r"finite \(6, 3\)"):
        Embedding(6, 3, weights=np.zeros((3, 6)))
