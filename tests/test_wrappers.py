"""fastnn.wrappers: scikit-learn's estimator checks, pipelines, model selection (with
process-based joblib, so pickling), the default MLP and `model=` builders, seeding."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn import layers, utils  # noqa: E402
from fastnn.datasets import boston_housing, digits  # noqa: E402
from fastnn.wrappers import EXPECTED_FAILED_CHECKS, FastNNClassifier, FastNNRegressor  # noqa: E402

# small and quick, yet trained enough for the checks' score thresholds
_CHECKED = [FastNNRegressor(hidden_layer_sizes=(8,), epochs=10, learning_rate=0.01),
            FastNNClassifier(hidden_layer_sizes=(8,), epochs=10, learning_rate=0.01)]


def _checks(estimators):
    try:  # scikit-learn >= 1.6: the xfails are given here (older ones read _more_tags)
        return parametrize_with_checks(estimators,
                                       expected_failed_checks=lambda e: EXPECTED_FAILED_CHECKS)
    except TypeError:  # pragma: no cover - scikit-learn < 1.6
        return parametrize_with_checks(estimators)


@_checks(_CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def housing():
    return boston_housing.load_data()


@pytest.fixture(scope="module")
def digit_data():
    return digits.load_data()


def _r2(y, pred):
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    return 1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def _fastnn_root():
    """The folder holding the fastnn these tests import: a child `python -c` started there
    imports the same one (a checkout's root holds an unbuilt fastnn when it is installed)."""
    import os

    import fastnn
    return os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))


def test_import_fastnn_does_not_import_sklearn():
    code = "import sys, fastnn; assert 'sklearn' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_fastnn_root())


def test_missing_sklearn_names_pip_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastnn.wrappers\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=_fastnn_root()).stdout
    assert "pip install scikit-learn" in out


def test_pipeline_learns_housing(housing):
    (x, y), (xt, yt) = housing
    pipe = make_pipeline(StandardScaler(), FastNNRegressor(hidden_layer_sizes=(32, 32),
                                                           learning_rate=0.01, epochs=100,
                                                           random_state=0))
    pipe.fit(x, y)
    pred = pipe.predict(xt)
    assert pred.shape == yt.shape and pred.dtype == np.float64
    assert pipe.score(xt, yt) == pytest.approx(_r2(yt, pred), rel=1e-9)
    assert pipe.score(xt, yt) > 0.6
    reg = pipe[-1]
    assert reg.n_features_in_ == 13 and reg.n_outputs_ == 1 and reg.n_iter_ == 100
    assert len(reg.history_["loss"]) == 100
    assert reg.history_["loss"][-1] < reg.history_["loss"][0]


def test_cross_val_score(housing):
    (x, y), _ = housing
    pipe = make_pipeline(StandardScaler(), FastNNRegressor(hidden_layer_sizes=(16,),
                                                           learning_rate=0.01, epochs=40,
                                                           random_state=1))
    scores = cross_val_score(pipe, x, y, cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    assert scores.mean() > 0.5


def test_grid_search_in_processes_pickles_models(housing):
    (x, y), (xt, yt) = housing
    pipe = make_pipeline(StandardScaler(), FastNNRegressor(hidden_layer_sizes=(16,),
                                                           epochs=30, random_state=0))
    grid = GridSearchCV(pipe, {"fastnnregressor__learning_rate": [1e-4, 1e-2]}, cv=2,
                        n_jobs=2)  # loky: estimators and fitted models cross processes
    grid.fit(x, y)
    assert len(grid.cv_results_["params"]) == 2
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    # 30 epochs at 1e-4 barely move the weights: the larger rate wins
    assert grid.best_params_ == {"fastnnregressor__learning_rate": 1e-2}
    assert grid.score(xt, yt) == pytest.approx(_r2(yt, grid.predict(xt)), rel=1e-9)


def test_classifier_on_digits(digit_data):
    (x, y), (xt, yt) = digit_data
    clf = make_pipeline(StandardScaler(), FastNNClassifier(hidden_layer_sizes=(64,),
                                                           epochs=30, random_state=0))
    clf.fit(x, y)
    est = clf[-1]
    np.testing.assert_array_equal(est.classes_, np.arange(10))
    proba = clf.predict_proba(xt)
    assert proba.shape == (360, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(xt), np.argmax(proba, axis=1))
    assert clf.score(xt, yt) == np.mean(clf.predict(xt) == yt)
    assert clf.score(xt, yt) > 0.9


def test_classifier_string_labels_and_pickle(digit_data):
    (x, y), (xt, yt) = digit_data
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"], dtype=object)
    clf = FastNNClassifier(hidden_layer_sizes=(32,), epochs=15, random_state=3)
    clf.fit(x / 16.0, names[y])
    assert list(clf.classes_) == sorted(names)
    pred = clf.predict(xt / 16.0)
    assert set(pred) <= set(names)
    assert np.mean(pred == names[yt]) > 0.85
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(xt / 16.0), clf.predict_proba(xt / 16.0))


def test_model_builder_gets_the_widths_it_asks_for(digit_data):
    (x, y), (xt, yt) = digit_data
    calls = []

    def build(n_features_in, n_classes):
        calls.append((n_features_in, n_classes))
        inp = layers.Input(shape=(n_features_in,))
        h = layers.Dense(32, activation="tanh")(inp)
        return fastnn.Model(inp, layers.Dense(n_classes, activation="softmax")(h))

    clf = FastNNClassifier(model=build, epochs=15, learning_rate=0.01, random_state=0)
    clf.fit(x / 16.0, y)
    assert calls == [(64, 10)]
    assert clf.model_.layers[1].units == 32 and clf.model_.optimizer.learning_rate == 0.01
    assert clf.score(xt / 16.0, yt) > 0.85

    seen = {}

    def build_any(**kwargs):  # **kwargs: it gets everything the wrapper offers
        seen.update(kwargs)
        return fastnn.Sequential([layers.Input(shape=(kwargs["n_features_in"],)),
                                  layers.Dense(kwargs["n_outputs"])])

    reg = FastNNRegressor(model=build_any, hidden_layer_sizes=(5,), epochs=2)
    reg.fit(x, np.c_[y, 2.0 * y])
    assert seen == {"n_features_in": 64, "n_outputs": 2, "hidden_layer_sizes": (5,),
                    "activation": "relu"}
    assert reg.predict(xt).shape == (360, 2)


def test_compiled_model_keeps_its_loss_with_encoded_targets(digit_data):
    (x, y), (xt, yt) = digit_data
    x, xt = x / 16.0, xt / 16.0

    def one_hot_model(n_features_in, n_classes):
        model = fastnn.Sequential([layers.Input(shape=(n_features_in,)),
                                   layers.Dense(n_classes, activation="softmax")])
        model.compile(optimizer=fastnn.optimizers.Adam(0.01), loss="categorical_crossentropy")
        return model

    clf = FastNNClassifier(model=one_hot_model, epochs=10, random_state=0).fit(x, y)
    assert type(clf.model_.loss).__name__ == "CategoricalCrossentropy"
    assert clf.score(xt, yt) > 0.85

    def sigmoid_model(n_features_in):
        model = fastnn.Sequential([layers.Input(shape=(n_features_in,)),
                                   layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=fastnn.optimizers.Adam(0.01), loss="binary_crossentropy")
        return model

    labels = np.where(y >= 5, "high", "low")
    clf = FastNNClassifier(model=sigmoid_model, epochs=20, random_state=0).fit(x, labels)
    proba = clf.predict_proba(xt)
    p1 = clf.model_.predict(xt).astype(np.float64)[:, 0]  # P(classes_[1]) = P("low")
    np.testing.assert_allclose(proba, np.c_[1.0 - p1, p1], rtol=1e-6, atol=1e-7)
    assert np.mean(clf.predict(xt) == np.where(yt >= 5, "high", "low")) > 0.8


def test_model_instance_is_cloned_not_trained(housing):
    (x, y), _ = housing
    template = fastnn.Sequential([layers.Input(shape=(13,)), layers.Dense(4, activation="relu"),
                                  layers.Dense(1)])
    before = [w.copy() for w in template.get_weights()]
    reg = FastNNRegressor(model=template, epochs=3, random_state=0).fit(x, y)
    assert reg.model_ is not template and len(reg.model_.layers) == len(template.layers)
    for a, b in zip(before, template.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_random_state_reproduces_the_fit(housing):
    (x, y), (xt, _) = housing
    x, xt = x / x.max(axis=0), xt / x.max(axis=0)

    def fit(seed):
        return FastNNRegressor(hidden_layer_sizes=(16,), epochs=10, random_state=seed).fit(x, y)

    a, b, c = fit(7), fit(7), fit(8)
    np.testing.assert_array_equal(a.predict(xt), b.predict(xt))
    assert a.history_ == b.history_
    assert not np.array_equal(a.predict(xt), c.predict(xt))
    rs = np.random.RandomState(5)  # a RandomState gives one draw, as scikit-learn's own
    d = FastNNRegressor(hidden_layer_sizes=(16,), epochs=10, random_state=rs).fit(x, y)
    assert np.all(np.isfinite(d.predict(xt)))


def test_fit_is_the_fastnn_fit_it_wraps(housing):
    """Same seed, model and settings: the wrapper's fit (with sample_weight, validation
    split and metrics) is bit-identical to fastnn's own."""
    (x, y), (xt, _) = housing
    mu, sd = x.mean(axis=0), x.std(axis=0)
    x, xt = (x - mu) / sd, (xt - mu) / sd
    w = np.linspace(0.5, 2.0, len(y))
    reg = FastNNRegressor(hidden_layer_sizes=(10, 10), optimizer="rmsprop",
                          learning_rate=0.002, metrics=["mae"], batch_size=16, epochs=5,
                          validation_split=0.25, random_state=11)
    reg.fit(x, y, sample_weight=w)

    utils.set_random_seed(11)
    model = fastnn.Sequential([layers.Input(shape=(13,)), layers.Dense(10, activation="relu"),
                               layers.Dense(10, activation="relu"), layers.Dense(1)])
    model.compile(optimizer=fastnn.optimizers.RMSprop(0.002), loss="mse", metrics=["mae"])
    hist = model.fit(x, y, batch_size=16, epochs=5, validation_split=0.25, sample_weight=w,
                     verbose=0)
    assert reg.history_ == hist.history
    assert set(reg.history_) == {"loss", "mae", "val_loss", "val_mae"}
    np.testing.assert_array_equal(reg.predict(xt), model.predict(xt)[:, 0])


def test_optimizer_forms_and_parameters_untouched(housing):
    (x, y), _ = housing
    opt = fastnn.optimizers.SGD(learning_rate=1e-4, momentum=0.5)
    reg = FastNNRegressor(hidden_layer_sizes=(4,), optimizer=opt, learning_rate=0.5,
                          epochs=2).fit(x / 100.0, y)
    assert reg.optimizer is opt and reg.model_.optimizer is not opt  # a copy trains
    assert reg.model_.optimizer.learning_rate == pytest.approx(1e-4)  # the instance's own
    assert opt.iterations == 0
    reg = FastNNRegressor(hidden_layer_sizes=(4,), optimizer=fastnn.optimizers.Adagrad,
                          learning_rate=0.03, epochs=1).fit(x, y)
    assert type(reg.model_.optimizer).__name__ == "Adagrad"
    assert reg.model_.optimizer.learning_rate == pytest.approx(0.03)
    clone(reg)  # get_params/set_params round trip
    assert reg.set_params(epochs=3).get_params()["epochs"] == 3


def test_callbacks_and_n_iter(housing):
    (x, y), _ = housing
    stop = fastnn.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    reg = FastNNRegressor(hidden_layer_sizes=(4,), epochs=50, callbacks=[stop],
                          random_state=0).fit(x, y)
    # Keras' rule: the first epoch sets the best value, the second fails to improve on it
    assert reg.n_iter_ == len(reg.history_["loss"]) == 2


def test_partial_fit_continues(digit_data):
    (x, y), (xt, yt) = digit_data
    x, xt = x / 16.0, xt / 16.0
    clf = FastNNClassifier(hidden_layer_sizes=(32,), learning_rate=0.01, random_state=0)
    clf.partial_fit(x[:300], y[:300], classes=np.arange(10))
    model = clf.model_
    for start in range(300, len(x), 300):
        clf.partial_fit(x[start:start + 300], y[start:start + 300])
    assert clf.model_ is model and clf.n_iter_ == 5 and len(clf.history_["loss"]) == 5
    assert clf.score(xt, yt) > 0.8
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(x[:5], y[:5] + 20)
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(x[:5, :10], y[:5])

    reg = FastNNRegressor(hidden_layer_sizes=(8,), random_state=0)
    reg.partial_fit(x, y.astype(float)).partial_fit(x, y.astype(float))
    assert reg.n_iter_ == 2 and reg.predict(xt).shape == (360,)


@pytest.mark.parametrize("params, match", [
    ({"hidden_layer_sizes": (8, -3)}, r"hidden_layer_sizes=\(8, -3\)"),
    ({"hidden_layer_sizes": "big"}, r"hidden_layer_sizes='big'"),
    ({"random_state": -1}, r"random_state=-1"),
    ({"optimizer": "nope"}, r"nope"),
    ({"loss": "nope"}, r"nope"),
    ({"epochs": -2}, r"epochs=-2"),
])
def test_bad_parameters_raise_value_error_at_fit(params, match):
    est = FastNNRegressor(**params)  # __init__ stores, fit checks
    with pytest.raises(ValueError, match=match):
        est.fit(np.ones((4, 2)), np.ones(4))


@pytest.mark.parametrize("params", [{"model": "dense"}, {"model": lambda: "not a model"},
                                    {"optimizer": 3}])
def test_bad_model_or_optimizer_types_raise_type_error(params):
    with pytest.raises(TypeError, match="Received"):
        FastNNRegressor(**params).fit(np.ones((4, 2)), np.ones(4))


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="1 class"):
        FastNNClassifier().fit(np.ones((4, 2)), ["a"] * 4)
