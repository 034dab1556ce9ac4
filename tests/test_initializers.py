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
    with pytest.raises(ValueError, match="Unknown initializer: 'orthonormal'"):
        Dense(4, kernel_initializer="orthonormal")


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


# ---- Keras 3's additions: seeds, orthogonal, constant, identity, variance_scaling ---------

SEEDED = ["GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
          "LecunUniform", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling",
          "Orthogonal"]


@pytest.mark.parametrize("name", SEEDED)
def test_a_seeded_initializer_repeats_itself(name):
    """Keras 3: an initializer with an integer seed gives the same values at every call;
    another seed, other values; an unseeded one follows set_random_seed."""
    cls = getattr(initializers, name)
    a, b = cls(seed=7)((30, 20)), cls(seed=7)((30, 20))
    np.testing.assert_array_equal(a, b)
    init = cls(seed=7)
    np.testing.assert_array_equal(init((30, 20)), init((30, 20)))
    assert not np.array_equal(a, cls(seed=8)((30, 20)))
    utils.set_random_seed(3)
    first = cls()((30, 20))
    utils.set_random_seed(3)
    np.testing.assert_array_equal(first, cls()((30, 20)))
    assert cls(seed=7).get_config()["seed"] == 7
    with pytest.raises(ValueError, match="Received: seed=-1"):
        cls(seed=-1)


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (5, 4, 6), (8, 8)])
def test_orthogonal(shape):
    w = initializers.get("orthogonal")(shape).astype(np.float64)
    m = w.reshape(-1, shape[-1])
    small = min(m.shape)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)
    w2 = initializers.Orthogonal(gain=2.5, seed=1)(shape).astype(np.float64).reshape(m.shape)
    gram2 = w2.T @ w2 if m.shape[0] >= m.shape[1] else w2 @ w2.T
    np.testing.assert_allclose(gram2, 6.25 * np.eye(small), atol=1e-4)
    with pytest.raises(ValueError, match="at least two-dimensional"):
        initializers.Orthogonal()((5,))


def test_constant_identity_and_names():
    assert (initializers.Constant(2.5)((3, 4)) == 2.5).all()
    assert not initializers.get("constant")((2, 2)).any()  # Keras' default value=0.0
    np.testing.assert_array_equal(initializers.Identity(gain=3.0)((3, 5)), 3.0 * np.eye(3, 5))
    np.testing.assert_array_equal(initializers.get("identity")((4, 4)), np.eye(4))
    with pytest.raises(ValueError, match="2D matrices"):
        initializers.Identity()((4,))
    for name, cls in (("Orthogonal", initializers.Orthogonal),
                      ("Constant", initializers.Constant), ("Ones", initializers.Ones),
                      ("Identity", initializers.Identity), ("Zeros", initializers.Zeros),
                      ("VarianceScaling", initializers.VarianceScaling),
                      ("variance_scaling", initializers.VarianceScaling),
                      ("one", initializers.Ones), ("zero", initializers.Zeros),
                      ("GlorotUniform", initializers.GlorotUniform)):
        assert type(initializers.get(name)) is cls, name


@pytest.mark.parametrize("mode,distribution", [
    ("fan_in", "truncated_normal"), ("fan_out", "untruncated_normal"), ("fan_avg", "uniform"),
    ("fan_out", "normal")])
def test_variance_scaling(mode, distribution):
    init = initializers.VarianceScaling(scale=3.0, mode=mode, distribution=distribution, seed=0)
    w = init(SHAPE).astype(np.float64)
    n = {"fan_in": 300, "fan_out": 500, "fan_avg": 400}[mode]
    assert w.std() == pytest.approx(np.sqrt(3.0 / n), rel=0.01)
    assert abs(w.mean()) < 0.01 * np.sqrt(3.0 / n)
    if distribution == "uniform":
        assert np.abs(w).max() <= np.sqrt(9.0 / n)
    elif distribution != "untruncated_normal":  # "normal" is Keras' truncated normal
        assert np.abs(w).max() <= 2 * np.sqrt(3.0 / n) / 0.87962566103423978
    else:
        assert np.abs(w).max() > 2.5 * np.sqrt(3.0 / n)  # the tails are there
    for arg, value in (("scale", -1.0), ("mode", "fan_mid"), ("distribution", "cauchy")):
        with pytest.raises(ValueError, match=f"{arg}"):
            initializers.VarianceScaling(**{arg: value})


def test_serialize_round_trips_through_layer_configs():
    for init in (initializers.RandomNormal(mean=1.0, stddev=0.5, seed=3),
                 initializers.Constant(0.25), initializers.Orthogonal(gain=2.0),
                 initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=1),
                 initializers.HeNormal(seed=5), initializers.GlorotUniform()):
        config = initializers.serialize(init)
        again = initializers.get(config)
        assert type(again) is type(init) and again.get_config() == init.get_config()
    assert initializers.serialize(initializers.GlorotUniform()) == "glorot_uniform"
    layer = Dense(3, kernel_initializer=initializers.RandomUniform(-1.0, 1.0, seed=2),
                  bias_initializer=initializers.Constant(0.5))
    again = Dense.from_config(layer.get_config())
    again.build((None, 4))
    layer.build((None, 4))
    np.testing.assert_array_equal(again.kernel, layer.kernel)  # the same seed
    assert (again.bias == 0.5).all()
