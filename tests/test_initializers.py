"""Initializers: Keras' definitions, checked by their bounds and moments on large draws."""
import numpy as np
import pytest

from fastnn import initializers, utils
from fastnn.layers import Dense

SHAPE = (300, 500)  # fan_in 300, fan_out 500: 150k draws


def _draw(name, seed=0):
    utils.set_random_seed(seed)
    w = initializers.get(name)(SHAPE)
    assert w.dtype == np.float32 and w.shape == SHAPE
    return w.astype(np.float64)


@pytest.mark.parametrize("name,limit", [("glorot_uniform", np.sqrt(6 / 800)),
                                        ("he_uniform", np.sqrt(6 / 300))])
def test_uniform_initializers(name, limit):
    w = _draw(name)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit  # the whole range is used
    assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.01)
    assert abs(w.mean()) < 0.01 * limit


@pytest.mark.parametrize("name,std", [("glorot_normal", np.sqrt(2 / 800)),
                                      ("he_normal", np.sqrt(2 / 300))])
def test_truncated_normal_initializers(name, std):
    w = _draw(name)
    # Keras scales the truncated draw so that its standard deviation is `std`, and cuts
    # it at two standard deviations of the untruncated normal
    assert w.std() == pytest.approx(std, rel=0.01)
    assert np.abs(w).max() <= 2 * std / 0.87962566103423978
    assert abs(w.mean()) < 0.01 * std


def test_constant_initializers():
    assert not _draw("zeros").any()
    assert (_draw("ones") == 1).all()


def test_seeded_draws_repeat_and_differ():
    np.testing.assert_array_equal(_draw("glorot_uniform", 1), _draw("glorot_uniform", 1))
    assert not np.array_equal(_draw("glorot_uniform", 1), _draw("glorot_uniform", 2))


def test_dense_takes_initializer_names_and_objects():
    utils.set_random_seed(0)
    layer = Dense(4, input_shape=(3,), kernel_initializer="ones",
                  bias_initializer=initializers.Ones())
    layer.build((None, 3))
    assert (layer.kernel == 1).all() and (layer.bias == 1).all()
    with pytest.raises(ValueError, match="Unknown initializer: 'orthogonal'"):
        Dense(4, kernel_initializer="orthogonal")


def test_keras_short_names_and_random_initializers():
    # tf.keras 2.x tutorials write kernel_initializer="normal" / "uniform"
    w = _draw("normal")
    assert abs(w.mean()) < 0.001 and w.std() == pytest.approx(0.05, rel=0.01)
    w = _draw("uniform")
    assert np.abs(w).max() <= 0.05 and w.std() == pytest.approx(0.05 / np.sqrt(3), rel=0.01)
    w = _draw("truncated_normal")
    assert np.abs(w).max() <= 0.1 and w.std() == pytest.approx(0.05 * 0.8796, rel=0.01)
    w = _draw("lecun_normal")
    assert w.std() == pytest.approx(np.sqrt(1 / 300), rel=0.01)
    w = _draw("lecun_uniform")
    assert np.abs(w).max() <= np.sqrt(3 / 300)
    utils.set_random_seed(0)
    custom = initializers.RandomNormal(mean=1.0, stddev=0.5)(SHAPE).astype(np.float64)
    assert custom.mean() == pytest.approx(1.0, abs=0.01) and custom.std() == pytest.approx(0.5, rel=0.01)


def test_article_model_with_normal_initializer_trains(housing):
    """The classic Keras Boston housing tutorial: Dense(13, kernel_initializer='normal')."""
    from fastnn import Sequential
    utils.set_random_seed(0)
    model = Sequential([Dense(13, input_dim=13, kernel_initializer="normal", activation="relu"),
                        Dense(1, kernel_initializer="normal")])
    model.compile(loss="mean_squared_error", optimizer="adam")
    model.fit(housing.x_train, housing.y_train, epochs=100, batch_size=5, verbose=0)
    baseline = np.mean((housing.y_test - housing.y_train.mean()) ** 2)
    assert model.evaluate(housing.x_test, housing.y_test) < 0.5 * baseline
