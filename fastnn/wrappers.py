"""scikit-learn estimators around fastnn models: FastNNRegressor and FastNNClassifier.

They follow scikit-learn's estimator rules (``__init__`` only stores its arguments; ``fit``
validates, sets attributes ending in ``_`` and returns self), so they work in pipelines,
``clone``, ``cross_val_score`` and ``GridSearchCV`` (also with process-based ``n_jobs``:
fastnn models pickle). scikit-learn is needed here only: ``import fastnn`` does not
import it.

    from fastnn.wrappers import FastNNRegressor
    reg = FastNNRegressor(hidden_layer_sizes=(32,), epochs=200, random_state=0)
    reg.fit(X_train, y_train).score(X_test, y_test)
"""
from __future__ import annotations

import copy
import inspect
import numbers
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnn.wrappers needs scikit-learn: `pip install scikit-learn`") from exc

from fastnn import callbacks as callbacks_module, losses, optimizers, utils
from fastnn._typing import ArrayLike
from fastnn.layers import Dense, Input
from fastnn.models import Model, Sequential, clone_model

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sk_validate_data = None

__all__ = ["FastNNRegressor", "FastNNClassifier"]

# Checks of sklearn.utils.estimator_checks that no mini-batch network can pass, with why
# (tests/test_wrappers.py xfails them; scikit-learn < 1.6 reads them from _more_tags).
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data":
        "mini-batch training weights the loss as sum(w_i * loss_i) / batch rows (Keras' "
        "sum_over_batch_size): repeated rows change the rows per batch and the batches per "
        "epoch, so the fits differ (only by float32 rounding when Adam's scale invariance "
        "and a single batch hide it)",
}


def _validate_data(estimator, X, y="no_validation", reset=True, **kwargs):
    if _sk_validate_data is not None:
        return _sk_validate_data(estimator, X, y=y, reset=reset, **kwargs)
    if isinstance(y, str) and y == "no_validation":  # pragma: no cover - older sklearn
        return estimator._validate_data(X, reset=reset, **kwargs)
    return estimator._validate_data(X, y, reset=reset, **kwargs)  # pragma: no cover


def _seed_from(random_state):
    """The fastnn seed for a random_state: None (no seeding), a non-negative int, or a
    numpy RandomState / Generator (one draw from it)."""
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) \
            and random_state >= 0:
        return int(random_state)
    raise ValueError("random_state must be None, a non-negative integer or a numpy "
                     f"RandomState. Received: random_state={random_state!r}")


def _hidden_sizes(value):
    sizes = (value,) if isinstance(value, numbers.Integral) else value
    try:
        sizes = tuple(sizes)
    except TypeError:
        sizes = None
    if sizes is None or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                                and s > 0 for s in sizes):
        raise ValueError("hidden_layer_sizes must be a tuple of positive integers. "
                         f"Received: hidden_layer_sizes={value!r}")
    return tuple(int(s) for s in sizes)


class _FastNNEstimator(BaseEstimator):
    """What the regressor and the classifier share: parameters, model building, fitting."""

    _loss_default = None  # set by the subclasses

    def __init__(self, model: Optional[Callable[..., Model]] = None,
                 hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu",
                 optimizer: Union[str, optimizers.Optimizer] = "adam",
                 learning_rate: Optional[float] = 0.001, loss: Optional[losses.LossLike] = None,
                 metrics: Optional[Sequence[Any]] = None, batch_size: int = 32, epochs: int = 100,
                 validation_split: float = 0.0, shuffle: bool = True, verbose: int = 0,
                 random_state: Optional[int] = None,
                 callbacks: Optional[Sequence[callbacks_module.Callback]] = None) -> None:
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.loss = loss
        self.metrics = metrics
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.verbose = verbose
        self.random_state = random_state
        self.callbacks = callbacks

    # -- building -------------------------------------------------------------------------
    def _builder_kwargs(self, units):
        """What a `model=` function may take, by name (subclasses add their own)."""
        return {"n_features_in": self.n_features_in_,
                "hidden_layer_sizes": self.hidden_layer_sizes, "activation": self.activation}

    def _make_optimizer(self):
        opt = self.optimizer
        if isinstance(opt, optimizers.Optimizer):
            return copy.deepcopy(opt)  # its own settings; never train the parameter itself
        if isinstance(opt, type) and issubclass(opt, optimizers.Optimizer):
            return opt(learning_rate=self.learning_rate)
        if not isinstance(opt, str):
            raise TypeError("optimizer must be a name, an Optimizer class or instance. "
                            f"Received: optimizer={opt!r}")
        opt = optimizers.get(opt)
        opt.learning_rate = self.learning_rate
        return opt

    def _build_model(self, units, final_activation):
        if self.model is None:
            sizes = _hidden_sizes(self.hidden_layer_sizes)
            layers = [Input(shape=(self.n_features_in_,))]
            layers += [Dense(s, activation=self.activation) for s in sizes]
            layers.append(Dense(units, activation=final_activation))
            model = Sequential(layers)
        elif isinstance(self.model, Model):
            model = clone_model(self.model)  # the same architecture, fresh weights
        elif callable(self.model):
            offered = self._builder_kwargs(units)
            params = inspect.signature(self.model).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                names = {p.name for p in params
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
                offered = {k: v for k, v in offered.items() if k in names}
            model = self.model(**offered)
            if not isinstance(model, Model):
                raise TypeError("model must return a fastnn Model. Received: "
                                f"model() returned {model!r}")
        else:
            raise TypeError("model must be None, a fastnn Model or a function returning "
                            f"one. Received: model={self.model!r}")
        if not model.compiled:
            model.compile(optimizer=self._make_optimizer(),
                          loss=self._loss_default if self.loss is None else self.loss,
                          metrics=self.metrics)
        return model

    # -- fitting --------------------------------------------------------------------------
    def _fit_model(self, X, y, sample_weight, epochs):
        history = self.model_.fit(X, y, batch_size=self.batch_size, epochs=epochs,
                                  verbose=self.verbose, callbacks=self.callbacks,
                                  validation_split=self.validation_split,
                                  shuffle=self.shuffle, sample_weight=sample_weight)
        logs = {k: list(v) for k, v in history.history.items()}
        if getattr(self, "history_", None) is None:
            self.history_ = logs
        else:  # partial_fit: the epochs follow each other
            for k, v in logs.items():
                self.history_.setdefault(k, []).extend(v)
        self.n_iter_ = len(self.history_.get("loss", []))

    def _check_X(self, X, reset):
        return _validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])

    def _fit(self, X, y, sample_weight, epochs, first, classes=None):
        """Validates X, y and sample_weight; (re)builds the model when `first`; trains."""
        multi = self._multi_output
        X, y = _validate_data(self, X, y, reset=first, dtype=[np.float32, np.float64],
                              multi_output=multi, y_numeric=multi)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        y = self._encode_targets(y, sample_weight, first, classes)
        if first:
            seed = _seed_from(self.random_state)
            if seed is not None:
                utils.set_random_seed(seed)
            self.history_ = None
            self.model_ = self._build_model(*self._output_layer())
        self._fit_model(X, self._targets_for_model(y), sample_weight, epochs)
        return self

    def fit(self, X: ArrayLike, y: ArrayLike,
            sample_weight: Optional[ArrayLike] = None) -> _FastNNEstimator:
        """Builds a new model (seeded by random_state) and trains it for `epochs` epochs.
        sample_weight: one weight per row of X (weights the loss, as fastnn's fit)."""
        return self._fit(X, y, sample_weight, self.epochs, first=True)

    def _predict_raw(self, X):
        check_is_fitted(self, "model_")
        X = self._check_X(X, reset=False)
        return np.asarray(self.model_.predict(X), dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"_xfail_checks": dict(EXPECTED_FAILED_CHECKS)}


class FastNNRegressor(RegressorMixin, _FastNNEstimator):
    """A fastnn network as a scikit-learn regressor.

    Parameters
    ----------
    model : None, a fastnn Model, or a function returning one (compiled or not). A
        function is called with those of n_features_in, n_outputs, hidden_layer_sizes
        and activation that it takes by name (all of them if it takes **kwargs). A model
        the function compiled keeps its optimizer, loss and metrics. A Model instance is
        cloned (same architecture, fresh weights) at each fit.
    hidden_layer_sizes, activation : the default model (model=None): Dense layers of
        these widths and activation, then a linear Dense(n_outputs).
    optimizer : a name ("adam", "rmsprop", "sgd", ...) or Optimizer class, built with
        learning_rate; or an Optimizer instance (copied, with its own learning rate).
    loss : default "mse". metrics : as compile()'s.
    batch_size, epochs, validation_split, shuffle, verbose, callbacks : as Model.fit's.
    random_state : None, or an int (or RandomState) that seeds
        fastnn.utils.set_random_seed before the model is built: the same value gives the
        same fit.

    Attributes: model_, history_ (the fit's History.history), n_iter_ (epochs run),
    n_features_in_, n_outputs_.
    """

    _loss_default = "mse"
    _multi_output = True

    def _output_layer(self):
        return self.n_outputs_, None

    def _builder_kwargs(self, units):
        return {**super()._builder_kwargs(units), "n_outputs": units}

    def _encode_targets(self, y, sample_weight, first, classes=None):
        y = np.asarray(y, dtype=np.float32)
        if first:
            self._y_ndim = y.ndim
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        elif (1 if y.ndim == 1 else y.shape[1]) != self.n_outputs_:
            raise ValueError(f"y has {1 if y.ndim == 1 else y.shape[1]} outputs, but the "
                             f"model was fitted with {self.n_outputs_}")
        return y

    def _targets_for_model(self, y):
        return y

    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    sample_weight: Optional[ArrayLike] = None) -> FastNNRegressor:
        """One epoch over (X, y); the first call builds the model (as fit)."""
        return self._fit(X, y, sample_weight, 1, first=not hasattr(self, "model_"))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The model's outputs as float64: (n,) for a 1-D y at fit, else (n, n_outputs)."""
        out = self._predict_raw(X)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {**super()._more_tags(), "multioutput": True}


class FastNNClassifier(ClassifierMixin, _FastNNEstimator):
    """A fastnn network as a scikit-learn classifier (labels of any kind: LabelEncoder).

    Parameters as FastNNRegressor's, except: the default model ends in
    Dense(n_classes, "softmax") (two units for a binary task) and the default loss is
    "sparse_categorical_crossentropy"; a `model=` function may also take n_classes. A
    model compiled with a sparse loss gets class indices, with a one-unit output 0/1
    labels (binary cross-entropy on a sigmoid), otherwise one-hot rows.

    Attributes: model_, history_, n_iter_, n_features_in_, classes_, n_outputs_ (1).
    """

    _loss_default = "sparse_categorical_crossentropy"
    _multi_output = False

    def _output_layer(self):
        return len(self.classes_), "softmax"

    def _builder_kwargs(self, units):
        return {**super()._builder_kwargs(units), "n_classes": units}

    def _encode_targets(self, y, sample_weight, first, classes=None):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self._encoder = LabelEncoder().fit(y if classes is None else classes)
            self.classes_ = self._encoder.classes_
            self.n_outputs_ = 1
            present = np.unique(y if sample_weight is None else y[sample_weight > 0])
            if len(self.classes_) < 2 or (classes is None and len(present) < 2):
                raise ValueError("a classifier needs samples of at least 2 classes (with "
                                 f"positive sample_weight); got {len(present)} class: "
                                 f"{present!r}")
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ValueError(f"y has labels {unseen!r} not in classes {self.classes_!r}")
        return y

    def _targets_for_model(self, y):
        codes = self._encoder.transform(y)
        loss = self.model_.loss
        if isinstance(loss, losses.Loss) and "Sparse" in type(loss).__name__:
            return codes.astype(np.float32)
        width = self.model_.outputs[0].shape[-1]
        if width == 1:
            return codes.astype(np.float32)
        return np.eye(width, dtype=np.float32)[codes]

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: Optional[ArrayLike] = None,
                    sample_weight: Optional[ArrayLike] = None) -> FastNNClassifier:
        """One epoch over (X, y); the first call builds the model for `classes` (all the
        labels there will be; default: those in y)."""
        first = not hasattr(self, "model_")
        return self._fit(X, y, sample_weight, 1, first, classes if first else None)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, (n, n_classes) float64, columns in the order of classes_."""
        p = self._predict_raw(X)
        if p.shape[1] == 1:  # a one-unit sigmoid model: P(classes_[1])
            p = np.hstack([1.0 - p, p])
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it checks that the model is fitted
        return self.classes_[np.argmax(proba, axis=1)]
