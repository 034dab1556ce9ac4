"""Metrics: every metric against a float64 NumPy reference written here from Keras 3's
definitions, over the whole data (they are functions of summed statistics, not means of
batch values): alone (update_state over several chunks, with sample weights), in the
engine (evaluate of a plan over several batches, weighted or not), and in fit's History
and evaluate (the pre-update outputs of each batch); names as Keras logs them; errors."""
import numpy as np
import pytest

import fastnn
from fastnn import _engine, losses, metrics, optimizers
from fastnn.layers import Dense

F64 = np.float64
EPS = 1e-7


# ---- float64 references ----------------------------------------------------------------------

def _wmean(values, w):
    w = np.ones(len(values)) if w is None else np.asarray(w, F64)
    return float(np.sum(w * values) / np.sum(w)) if np.sum(w) else 0.0


def _rank_ok(p, label, k):  # Keras' in_top_k: 1 + #{p_j > p_label} <= k
    return 1 + np.sum(p > p[np.arange(len(p)), label][:, None], axis=1) <= k


def per_sample(name, p, t, **kw):
    """Per-sample values of the mean-type metrics."""
    e = p - t
    if name == "mse":
        return np.mean(e * e, axis=1)
    if name == "mae":
        return np.mean(np.abs(e), axis=1)
    if name == "mape":
        return 100 * np.mean(np.abs(e) / np.maximum(np.abs(t), EPS), axis=1)
    if name == "msle":
        return np.mean((np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)) ** 2,
                       axis=1)
    if name == "logcosh":
        return np.mean(np.log(np.cosh(e)), axis=1)
    if name == "poisson":
        return np.mean(p - t * np.log(p + EPS), axis=1)
    if name == "kld":
        tc, pc = np.clip(t, EPS, 1), np.clip(p, EPS, 1)
        return np.sum(tc * np.log(tc / pc), axis=1)
    if name == "hinge":
        s = 2 * t - 1 if np.all((t == 0) | (t == 1)) else t
        return np.mean(np.maximum(1 - s * p, 0), axis=1)
    if name == "squared_hinge":
        s = 2 * t - 1 if np.all((t == 0) | (t == 1)) else t
        return np.mean(np.maximum(1 - s * p, 0) ** 2, axis=1)
    if name == "categorical_hinge":
        return np.maximum(np.max((1 - t) * p, axis=1) - np.sum(t * p, axis=1) + 1, 0)
    if name == "cosine_similarity":
        nt = np.maximum(np.linalg.norm(t, axis=1), EPS)
        return np.sum(t * p, axis=1) / nt / np.maximum(np.linalg.norm(p, axis=1), EPS)
    if name == "binary_accuracy":
        return np.mean((p > kw.get("threshold", 0.5)) == t, axis=1)
    if name == "categorical_accuracy":
        return (p.argmax(axis=1) == t.argmax(axis=1)) * 1.0
    if name == "sparse_categorical_accuracy":
        return (p.argmax(axis=1) == t[:, 0]) * 1.0
    if name == "top_k":
        return _rank_ok(p, t.argmax(axis=1), kw["k"]) * 1.0
    if name == "sparse_top_k":
        return _rank_ok(p, t[:, 0].astype(int), kw["k"]) * 1.0
    if name == "equality":
        return np.mean(p == t, axis=1)
    raise ValueError(name)


def ref_crossentropy(kind, p, t, smooth=0.0, from_logits=False):
    """Per-sample cross-entropies as Keras' metrics compute them: from probabilities (rows
    normalised for the categorical forms) clipped to [1e-7, 1 - 1e-7], or from logits."""
    if kind == "binary":
        q = 1 / (1 + np.exp(-p)) if from_logits else p
        q, s = np.clip(q, EPS, 1 - EPS), t * (1 - smooth) + smooth / 2
        return np.mean(-(s * np.log(q) + (1 - s) * np.log(1 - q)), axis=1)
    if kind == "sparse":
        t = np.eye(p.shape[1])[t[:, 0].astype(int)]
    q = _softmax(p) if from_logits else p / p.sum(axis=1, keepdims=True)
    s = t * (1 - smooth) + smooth / p.shape[1]
    return -np.sum(s * np.log(np.clip(q, EPS, 1 - EPS)), axis=1)


def ref_confusion(p, t, thresholds, w=None, class_id=None, top_k=None):
    """(tp, fp, tn, fn) per threshold: predictions > threshold, labels != 0, flattened."""
    w = np.ones(len(p)) if w is None else np.asarray(w, F64)
    p = p.copy()
    if top_k is not None:  # the rest set to -1e10 (Keras' _filter_top_k)
        order = np.argsort(-p, axis=1, kind="stable")[:, :top_k]
        keep = np.zeros_like(p, bool)
        np.put_along_axis(keep, order, True, axis=1)
        p = np.where(keep, p, -1e10)
    if class_id is not None:
        p, t = p[:, class_id:class_id + 1], t[:, class_id:class_id + 1]
    ww = np.broadcast_to(w[:, None], p.shape)
    out = []
    for thr in thresholds:
        pos, lab = p > np.float32(thr), t != 0
        out.append([np.sum(ww * (pos & lab)), np.sum(ww * (pos & ~lab)),
                    np.sum(ww * (~pos & ~lab)), np.sum(ww * (~pos & lab))])
    return np.array(out).T


def _div(a, b):
    return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)


def ref_auc(p, t, w=None, num_thresholds=200, curve="ROC", method="interpolation"):
    """Keras' AUC: a Riemann sum over confusion counts at num_thresholds thresholds."""
    thr = [0 - EPS] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + \
        [1 + EPS]
    tp, fp, tn, fn = ref_confusion(p, t, thr, w)
    if curve == "PR" and method == "interpolation":  # Davis & Goadrich, Keras' closed form
        dtp = tp[:-1] - tp[1:]
        pp = tp + fp
        slope = _div(dtp, np.maximum(pp[:-1] - pp[1:], 0))
        intercept = tp[1:] - slope * pp[1:]
        ratio = np.where((pp[:-1] > 0) & (pp[1:] > 0), _div(pp[:-1], np.maximum(pp[1:], 0)), 1)
        return float(np.sum(_div(slope * (dtp + intercept * np.log(ratio)),
                                 np.maximum(tp[1:] + fn[1:], 0))))
    recall = _div(tp, tp + fn)
    x, y = (_div(fp, fp + tn), recall) if curve == "ROC" else (recall, _div(tp, tp + fp))
    h = {"interpolation": (y[:-1] + y[1:]) / 2, "minoring": np.minimum(y[:-1], y[1:]),
         "majoring": np.maximum(y[:-1], y[1:])}[method]
    return float(np.sum((x[:-1] - x[1:]) * h))


def ref_r2(p, t, w=None, aggregation="uniform_average", num_regressors=0):
    w = np.ones(len(p)) if w is None else np.asarray(w, F64)
    wc = w[:, None]
    mean = np.sum(wc * t, axis=0) / np.sum(w)
    total = np.sum(wc * (t - mean) ** 2, axis=0)
    raw = 1 - np.sum(wc * (t - p) ** 2, axis=0) / total
    score = {"uniform_average": np.mean(raw), "variance_weighted_average":
             np.sum(total * raw) / np.sum(total), None: raw}[aggregation]
    n = np.sum(w != 0)
    if num_regressors:
        score = 1 - (1 - score) * (n - 1) / (n - num_regressors - 1)
    return score


def ref_fbeta(p, t, w=None, average=None, beta=1.0, threshold=None):
    w = np.ones(len(p)) if w is None else np.asarray(w, F64)
    if threshold is None:
        q = (p >= p.max(axis=1, keepdims=True)) & (np.abs(p) > 1e-9)
    else:
        q = p > threshold
    q, wc = q * 1.0, w[:, None]
    tp, fp = np.sum(wc * q * t, axis=0), np.sum(wc * q * (1 - t), axis=0)
    fn, support = np.sum(wc * (1 - q) * t, axis=0), np.sum(wc * t, axis=0)
    if average == "micro":
        tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    precision, recall = tp / (tp + fp + EPS), tp / (tp + fn + EPS)
    f = (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall + EPS)
    if average == "weighted":
        return np.sum(f * support / (np.sum(support) + EPS))
    return np.mean(f) if average else f


# ---- the metrics under test: (metric factory, kind of data, reference(p, t, w)) ------------

def _mean_ref(name, **kw):
    return lambda p, t, w: _wmean(per_sample(name, p, t, **kw), w)


def _conf_ref(which, thresholds=(0.5,), **kw):
    def f(p, t, w):
        v = ref_confusion(p, t, thresholds, w, **kw)[which]
        return v[0] if len(thresholds) == 1 else v
    return f


def _ratio_ref(other, thresholds=(0.5,), **kw):
    """tp / (tp + fp) (other=1: precision) or tp / (tp + fn) (other=3: recall)"""
    def f(p, t, w):
        counts = ref_confusion(p, t, thresholds, w, **kw)
        v = _div(counts[0], counts[0] + counts[other])
        return v[0] if len(thresholds) == 1 else v
    return f


def _precision_ref(thresholds=(0.5,), **kw):
    return _ratio_ref(1, thresholds, **kw)


def _recall_ref(thresholds=(0.5,), **kw):
    return _ratio_ref(3, thresholds, **kw)


CASES = {  # id: (factory, data kind, reference)
    "mse": (metrics.MeanSquaredError, "regression", _mean_ref("mse")),
    "mae": (metrics.MeanAbsoluteError, "regression", _mean_ref("mae")),
    "rmse": (metrics.RootMeanSquaredError, "regression",
             lambda p, t, w: np.sqrt(_mean_ref("mse")(p, t, w))),
    "mape": (metrics.MeanAbsolutePercentageError, "regression", _mean_ref("mape")),
    "msle": (metrics.MeanSquaredLogarithmicError, "positive", _mean_ref("msle")),
    "logcosh": (metrics.LogCoshError, "regression", _mean_ref("logcosh")),
    "kld": (metrics.KLDivergence, "distribution", _mean_ref("kld")),
    "poisson": (metrics.Poisson, "positive", _mean_ref("poisson")),
    "hinge": (metrics.Hinge, "binary", _mean_ref("hinge")),
    "squared_hinge": (metrics.SquaredHinge, "binary", _mean_ref("squared_hinge")),
    "categorical_hinge": (metrics.CategoricalHinge, "onehot", _mean_ref("categorical_hinge")),
    "cosine": (metrics.CosineSimilarity, "regression", _mean_ref("cosine_similarity")),
    "accuracy_equality": (metrics.Accuracy, "rounded", _mean_ref("equality")),
    "bce": (metrics.BinaryCrossentropy, "binary",
            lambda p, t, w: _wmean(ref_crossentropy("binary", p, t), w)),
    "bce_logits_smoothed": (lambda: metrics.BinaryCrossentropy(from_logits=True,
                                                               label_smoothing=0.2),
                            "multilabel", lambda p, t, w: _wmean(
                                ref_crossentropy("binary", p, t, 0.2, True), w)),
    "cce": (lambda: metrics.CategoricalCrossentropy(label_smoothing=0.1), "onehot",
            lambda p, t, w: _wmean(ref_crossentropy("categorical", p, t, 0.1), w)),
    "cce_logits": (lambda: metrics.CategoricalCrossentropy(from_logits=True), "onehot",
                   lambda p, t, w: _wmean(ref_crossentropy("categorical", p, t, 0, True), w)),
    "sparse_cce": (metrics.SparseCategoricalCrossentropy, "labels",
                   lambda p, t, w: _wmean(ref_crossentropy("sparse", p, t), w)),
    "binary_accuracy": (metrics.BinaryAccuracy, "binary", _mean_ref("binary_accuracy")),
    "binary_accuracy_0.7": (lambda: metrics.BinaryAccuracy(threshold=0.7), "binary",
                            _mean_ref("binary_accuracy", threshold=0.7)),
    "categorical_accuracy": (metrics.CategoricalAccuracy, "onehot",
                             _mean_ref("categorical_accuracy")),
    "sparse_categorical_accuracy": (metrics.SparseCategoricalAccuracy, "labels",
                                    _mean_ref("sparse_categorical_accuracy")),
    "top_k": (lambda: metrics.TopKCategoricalAccuracy(k=2), "onehot", _mean_ref("top_k", k=2)),
    "top_5": (metrics.TopKCategoricalAccuracy, "onehot", _mean_ref("top_k", k=5)),
    "sparse_top_k": (lambda: metrics.SparseTopKCategoricalAccuracy(k=2), "labels",
                     _mean_ref("sparse_top_k", k=2)),
    "r2": (metrics.R2Score, "regression", ref_r2),
    "r2_variance_weighted": (lambda: metrics.R2Score("variance_weighted_average"),
                             "regression", lambda p, t, w: ref_r2(p, t, w,
                                                                  "variance_weighted_average")),
    "r2_raw": (lambda: metrics.R2Score(None), "regression", lambda p, t, w: ref_r2(p, t, w, None)),
    "r2_adjusted": (lambda: metrics.R2Score(num_regressors=2), "regression",
                    lambda p, t, w: ref_r2(p, t, w, num_regressors=2)),
    "tp": (metrics.TruePositives, "binary", _conf_ref(0)),
    "fp": (lambda: metrics.FalsePositives(thresholds=[0.7, 0.2, 0.5]), "binary",
           _conf_ref(1, (0.7, 0.2, 0.5))),
    "tn": (metrics.TrueNegatives, "binary", _conf_ref(2)),
    "fn": (lambda: metrics.FalseNegatives(thresholds=0.3), "binary", _conf_ref(3, (0.3,))),
    "precision": (metrics.Precision, "binary", _precision_ref()),
    "precision_class": (lambda: metrics.Precision(class_id=2), "multilabel",
                        _precision_ref(class_id=2)),
    "precision_top_k": (lambda: metrics.Precision(top_k=2), "multilabel",
                        _precision_ref((-1e10,), top_k=2)),
    "recall": (lambda: metrics.Recall(thresholds=[0.3, 0.6]), "binary",
               _recall_ref((0.3, 0.6))),
    "recall_top_k_class": (lambda: metrics.Recall(top_k=1, class_id=0), "multilabel",
                           _recall_ref((-1e10,), top_k=1, class_id=0)),
    "auc": (metrics.AUC, "binary", ref_auc),
    "auc_pr": (lambda: metrics.AUC(curve="PR"), "binary",
               lambda p, t, w: ref_auc(p, t, w, curve="PR")),
    "auc_minoring": (lambda: metrics.AUC(num_thresholds=13, summation_method="minoring"),
                     "binary", lambda p, t, w: ref_auc(p, t, w, 13, method="minoring")),
    "auc_pr_majoring": (lambda: metrics.AUC(num_thresholds=50, curve="PR",
                                            summation_method="majoring"),
                        "binary", lambda p, t, w: ref_auc(p, t, w, 50, "PR", "majoring")),
    "f1": (metrics.F1Score, "onehot", ref_fbeta),
    "f1_macro_threshold": (lambda: metrics.F1Score("macro", threshold=0.3), "multilabel",
                           lambda p, t, w: ref_fbeta(p, t, w, "macro", threshold=0.3)),
    "f1_micro": (lambda: metrics.F1Score("micro"), "onehot",
                 lambda p, t, w: ref_fbeta(p, t, w, "micro")),
    "f1_weighted": (lambda: metrics.F1Score("weighted"), "onehot",
                    lambda p, t, w: ref_fbeta(p, t, w, "weighted")),
    "fbeta": (lambda: metrics.FBetaScore("macro", beta=2.0), "onehot",
              lambda p, t, w: ref_fbeta(p, t, w, "macro", 2.0)),
}


def data(kind, rng, n, m=4):
    """(predictions as a model would give them, targets) of each kind, float32-exact."""
    if kind in ("regression", "positive"):
        p = rng.standard_normal((n, m)) if kind == "regression" else rng.uniform(0.1, 3, (n, m))
        t = p + 0.7 * rng.standard_normal((n, m)) if kind == "regression" else \
            rng.uniform(0, 3, (n, m))
    elif kind == "distribution":
        p, t = _softmax(rng.standard_normal((n, m))), _softmax(2 * rng.standard_normal((n, m)))
    elif kind == "binary":
        p = rng.random((n, 1))
        t = ((p[:, 0] + 0.5 * rng.standard_normal(n)) > 0.5)[:, None] * 1.0
    elif kind == "rounded":
        p, t = rng.integers(0, 3, (n, m)) * 1.0, rng.integers(0, 3, (n, m)) * 1.0
    elif kind == "multilabel":
        p = rng.random((n, m))
        t = ((p + 0.4 * rng.standard_normal((n, m))) > 0.5) * 1.0
    else:  # onehot / labels: softmax outputs against classes
        p = _softmax(2 * rng.standard_normal((n, 6)))
        labels = (p + 0.2 * rng.standard_normal((n, 6))).argmax(axis=1)
        t = labels[:, None] * 1.0 if kind == "labels" else np.eye(6)[labels]
    return p.astype(np.float32).astype(F64), t.astype(np.float32).astype(F64)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_value(got, want, what=""):
    np.testing.assert_allclose(np.asarray(got, F64), np.asarray(want, F64), rtol=2e-5,
                               atol=2e-6, err_msg=what)


# ---- alone: update_state over chunks ------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_stateful_metric_over_chunks(case, rng):
    make, kind, ref = CASES[case]
    p, t = data(kind, rng, 45)
    w = rng.uniform(0, 2, len(p))
    w[3] = 0.0
    m = make()
    assert m.result() == 0.0  # nothing seen yet
    for rows in (slice(0, 7), slice(7, 30), slice(30, 45)):
        m.update_state(t[rows], p[rows])
    assert_value(m.result(), ref(p, t, None), "unweighted")
    m.reset_state()
    for rows in (slice(0, 20), slice(20, 45)):
        m.update_state(t[rows], p[rows], sample_weight=w[rows])
    assert_value(m.result(), ref(p, t, w.astype(np.float32)), "weighted")
    m.reset_state()
    assert_value(m(t, p), ref(p, t, None), "__call__")


# ---- in the engine: a plan's evaluate over batches, weighted or not ------------------------------

def engine_value(metric, p, t, batch, w=None, weighted=False):
    """The metric of predictions p (fed as the plan's input: a plan without ops) against
    t, evaluated in batches of `batch` rows, through the totals' slots as Model does."""
    width = p.shape[1]
    key, options = metric._engine(width, weighted)
    tw = t.shape[1]
    plan = _engine.Plan([(width, True)], [], [0], [],
                        [(0, "mae" if tw == width else "sparse_softmax_crossentropy", "linear",
                          tw, 1.0)],
                        [(0, key, options)], np.zeros(1, np.float32), np.zeros(1, np.float32),
                        np.zeros(1, np.float32), 16)
    sws = None if w is None else [np.ascontiguousarray(w, np.float32)]
    totals = plan.evaluate([np.ascontiguousarray(p, np.float32)],
                           [np.ascontiguousarray(t, np.float32)], batch, 0.1, sws)
    at, n = plan.metric_slots[0]
    assert n == _engine.metric_slots(key, width, options) and plan.totals_size == at + n
    return metric._result(totals[at:at + n], totals[0])


@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_accumulates_over_batches(case, rng):
    make, kind, ref = CASES[case]
    p, t = data(kind, rng, 37)
    metric = make()
    want = ref(p, t, None)
    for batch in (1, 5, 16):
        assert_value(engine_value(metric, p, t, batch), want, f"batch {batch}")
    w = rng.uniform(0, 2, len(p)).astype(np.float32)
    # compiled metrics ignore the weights (Keras' `metrics`), weighted ones use them
    assert_value(engine_value(metric, p, t, 5, w, weighted=False), want, "unweighted")
    assert_value(engine_value(metric, p, t, 5, w, weighted=True), ref(p, t, w), "weighted")


def test_auc_approximates_the_exact_roc_area(rng):
    p, t = data("binary", rng, 400)
    pos, neg = p[t[:, 0] == 1, 0], p[t[:, 0] == 0, 0]
    exact = np.mean(pos[:, None] > neg[None, :]) + 0.5 * np.mean(pos[:, None] == neg[None, :])
    m = metrics.AUC(num_thresholds=2000)
    m.update_state(t, p)
    assert m.result() == pytest.approx(exact, abs=2e-3)


def test_auc_from_logits_thresholds_the_logits(rng):
    p, t = data("binary", rng, 60)
    z = np.log(p / (1 - p))
    a, b = metrics.AUC(from_logits=True), metrics.AUC()
    a.update_state(t, z)
    b.update_state(t, 1 / (1 + np.exp(-z)))
    assert a.result() == pytest.approx(b.result(), abs=1e-9)
    assert_value(a.result(), ref_auc(p, t))


# ---- in fit and evaluate -------------------------------------------------------------------------

def _frozen_model(units, act, rng, k=5):
    """A one-Dense model trained at learning rate 0 (its outputs never change)."""
    model = fastnn.Sequential([Dense(units, input_shape=(k,), activation=act)])
    model.set_weights([rng.standard_normal((k, units)), 0.2 * rng.standard_normal(units)])
    return model


def test_history_and_evaluate_give_the_metrics_of_all_data(kernels, rng):
    """Binary and categorical models at learning rate 0: every epoch's History value and
    evaluate() equal the reference over all rows, whatever the batches."""
    x = rng.standard_normal((83, 5)).astype(np.float32)
    binary = _frozen_model(1, "sigmoid", rng)
    y = ((binary.predict(x)[:, 0] + 0.3 * rng.standard_normal(83)) > 0.5).astype(np.float32)
    names = ["accuracy", "binary_accuracy", "auc", "precision", "recall", "true_positives",
             "false_negatives", "f1_score", "mse", "root_mean_squared_error"]
    binary.compile(optimizer=optimizers.SGD(0.0), loss="binary_crossentropy",
                   metrics=["accuracy", "binary_accuracy", "auc",
                            metrics.Precision(name="precision"),
                            metrics.Recall(name="recall"),
                            metrics.TruePositives(name="true_positives"),
                            metrics.FalseNegatives(name="false_negatives"),
                            metrics.F1Score(threshold=0.5), "mse",
                            metrics.RootMeanSquaredError()])
    history = binary.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert list(history.history) == ["loss"] + names
    p, t = binary.predict(x).astype(F64), y[:, None].astype(F64)
    want = {"accuracy": _mean_ref("binary_accuracy")(p, t, None),
            "binary_accuracy": _mean_ref("binary_accuracy")(p, t, None),
            "auc": ref_auc(p, t), "precision": _precision_ref()(p, t, None),
            "recall": _recall_ref()(p, t, None), "true_positives": _conf_ref(0)(p, t, None),
            "false_negatives": _conf_ref(3)(p, t, None),
            "f1_score": ref_fbeta(p, t, threshold=0.5), "mse": _mean_ref("mse")(p, t, None),
            "root_mean_squared_error": np.sqrt(_mean_ref("mse")(p, t, None))}
    logs = binary.evaluate(x, y, return_dict=True)
    for name, value in want.items():
        for epoch in range(2):
            assert_value(history.history[name][epoch], value, f"{name} epoch {epoch}")
        assert_value(logs[name], value, f"evaluate {name}")

    categorical = _frozen_model(6, "softmax", rng)
    labels = (categorical.predict(x) + 0.3 * rng.random((83, 6))).argmax(axis=1)
    onehot = np.eye(6, dtype=np.float32)[labels]
    categorical.compile(optimizer=optimizers.SGD(0.0), loss="categorical_crossentropy",
                        metrics=["acc", "top_k_categorical_accuracy",
                                 metrics.TopKCategoricalAccuracy(k=2, name="top2"),
                                 metrics.F1Score("macro"), "mae", metrics.KLDivergence(),
                                 metrics.Precision(class_id=3, name="p3"),
                                 metrics.R2Score()])
    history = categorical.fit(x, onehot, batch_size=10, epochs=1, verbose=0)
    p, t = categorical.predict(x).astype(F64), onehot.astype(F64)
    want = {"acc": _mean_ref("categorical_accuracy")(p, t, None),
            "top_k_categorical_accuracy": _mean_ref("top_k", k=5)(p, t, None),
            "top2": _mean_ref("top_k", k=2)(p, t, None),
            "f1_score": ref_fbeta(p, t, average="macro"), "mae": _mean_ref("mae")(p, t, None),
            "kl_divergence": _mean_ref("kld")(p, t, None),
            "p3": _precision_ref(class_id=3)(p, t, None), "r2_score": ref_r2(p, t)}
    logs = categorical.evaluate(x, onehot, batch_size=7, return_dict=True)
    for name, value in want.items():
        assert_value(history.history[name][0], value, name)
        assert_value(logs[name], value, f"evaluate {name}")

    sparse = _frozen_model(6, "softmax", rng)
    sparse.compile(optimizer=optimizers.SGD(0.0), loss="sparse_categorical_crossentropy",
                   metrics=["accuracy", metrics.SparseTopKCategoricalAccuracy(k=3)])
    logs = sparse.evaluate(x, labels, return_dict=True)
    p = sparse.predict(x).astype(F64)
    assert_value(logs["accuracy"], _mean_ref("sparse_categorical_accuracy")(
        p, labels[:, None] * 1.0, None))
    assert_value(logs["sparse_top_k_categorical_accuracy"],
                 _mean_ref("sparse_top_k", k=3)(p, labels[:, None] * 1.0, None))


def test_threshold_metrics_compare_what_predict_returns(rng):
    """Under a softmax or sigmoid folded into the loss, the metrics see probabilities; a
    binary cross-entropy's logits are compared with logit(threshold) (the same decisions)."""
    x = rng.standard_normal((40, 5)).astype(np.float32)
    soft = _frozen_model(4, "softmax", rng)
    soft.compile(optimizer=optimizers.SGD(0.0), loss="categorical_crossentropy",
                 metrics=[metrics.BinaryAccuracy(threshold=0.3), metrics.AUC()])
    onehot = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]
    logs = soft.evaluate(x, onehot, return_dict=True)
    p = soft.predict(x).astype(F64)
    assert_value(logs["binary_accuracy"], _mean_ref("binary_accuracy", threshold=0.3)(
        p, onehot.astype(F64), None))
    assert_value(logs[[k for k in logs if k.startswith("auc")][0]], ref_auc(p, onehot))
    sig = _frozen_model(1, "sigmoid", rng)
    sig.compile(optimizer=optimizers.SGD(0.0), loss="binary_crossentropy",
                metrics=[metrics.BinaryAccuracy(threshold=0.7), "binary_crossentropy"])
    y = (rng.random((40, 1)) > 0.5).astype(np.float32)
    p = sig.predict(x).astype(F64)
    loss, accuracy, bce = sig.evaluate(x, y)
    assert_value(accuracy, np.mean((p > 0.7) == y))
    assert_value(bce, np.mean(ref_crossentropy("binary", p, y.astype(F64))))
    assert bce == pytest.approx(loss, rel=1e-5)  # the loss, from the logits
    logit = _frozen_model(1, None, rng)
    logit.compile(optimizer=optimizers.SGD(0.0),
                  loss=losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    z = logit.predict(x).astype(F64)
    assert_value(logit.evaluate(x, y)[1], np.mean((z > 0) == y))


def test_metrics_use_each_batch_pre_update_outputs(rng):
    """A linear model trained by SGD, shuffle off: each epoch's metrics are those of every
    batch's outputs before its step, summed over the epoch (a float64 replay)."""
    x = rng.standard_normal((50, 3))
    y = x @ rng.standard_normal((3, 2)) + 0.3 * rng.standard_normal((50, 2))
    model = fastnn.Sequential([Dense(2, input_shape=(3,))])
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse",
                  metrics=["mae", metrics.RootMeanSquaredError(), metrics.R2Score(),
                           metrics.CosineSimilarity()])
    w, b = [a.astype(F64) for a in model.get_weights()]
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    x32, y32 = x.astype(np.float32).astype(F64), y.astype(np.float32).astype(F64)
    for epoch in range(3):
        outputs = []
        for s in range(0, 50, 16):
            xb, yb = x32[s:s + 16], y32[s:s + 16]
            p = xb @ w + b
            outputs.append(p)
            g = 2 * (p - yb) / p.size
            w, b = w - 0.05 * xb.T @ g, b - 0.05 * g.sum(axis=0)
        p = np.concatenate(outputs)
        for name, want in [("loss", _mean_ref("mse")(p, y32, None)),
                           ("mae", _mean_ref("mae")(p, y32, None)),
                           ("root_mean_squared_error", np.sqrt(_mean_ref("mse")(p, y32, None))),
                           ("r2_score", ref_r2(p, y32)),
                           ("cosine_similarity", _mean_ref("cosine_similarity")(p, y32, None))]:
            np.testing.assert_allclose(history.history[name][epoch], want, rtol=1e-4,
                                       err_msg=f"{name} epoch {epoch}")


def test_log_names_follow_keras(rng):
    x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    model = fastnn.Sequential([Dense(2, input_shape=(3,))])
    auc = metrics.AUC()
    model.compile(loss="mse", metrics=["mae", "MAE", "mean_absolute_error", "mae",
                                       metrics.MeanAbsoluteError(name="mae"), auc, "AUC",
                                       metrics.R2Score(), "RootMeanSquaredError"])
    history = model.fit(x, y, epochs=1, verbose=0, validation_split=0.25)
    assert list(history.history) == [
        "loss", "mae", "MAE", "mean_absolute_error", "mae_1", "mae_2", auc.name, "AUC",
        "r2_score", "RootMeanSquaredError", "val_loss", "val_mae", "val_MAE",
        "val_mean_absolute_error", "val_mae_1", "val_mae_2", f"val_{auc.name}", "val_AUC",
        "val_r2_score", "val_RootMeanSquaredError"]
    assert model.metrics_names == list(history.history)[:10]
    assert auc.name.startswith("auc")
    a, b = metrics.Precision(), metrics.Precision()
    assert a.name != b.name and b.name.startswith("precision_")  # Keras' unique auto names


def test_metrics_of_several_outputs(rng):
    inp = fastnn.Input(shape=(3,))
    reg = Dense(2, name="reg")(inp)
    cls = Dense(4, activation="softmax", name="cls")(inp)
    model = fastnn.Model(inp, [reg, cls])
    model.compile(optimizer=optimizers.SGD(0.0),
                  loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  metrics={"reg": ["mae", metrics.R2Score()], "cls": ["accuracy", "accuracy"]})
    x = rng.standard_normal((30, 3)).astype(np.float32)
    yr, yc = rng.standard_normal((30, 2)), rng.integers(0, 4, 30)
    logs = model.evaluate(x, [yr, yc], return_dict=True)
    assert list(logs) == ["loss", "reg_loss", "cls_loss", "reg_mae", "reg_r2_score",
                          "cls_accuracy", "cls_accuracy_1"]
    pr, pc = [a.astype(F64) for a in model.predict(x)]
    assert_value(logs["reg_mae"], _mean_ref("mae")(pr, yr.astype(np.float32), None))
    assert_value(logs["reg_r2_score"], ref_r2(pr, yr.astype(np.float32)))
    assert_value(logs["cls_accuracy"], np.mean(pc.argmax(axis=1) == yc))


# ---- names, config and errors -----------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [
    ("mse", metrics.MeanSquaredError), ("root_mean_squared_error", metrics.RootMeanSquaredError),
    ("RootMeanSquaredError", metrics.RootMeanSquaredError),
    ("mape", metrics.MeanAbsolutePercentageError), ("r2_score", metrics.R2Score),
    ("auc", metrics.AUC), ("AUC", metrics.AUC), ("precision", metrics.Precision),
    ("recall", metrics.Recall), ("true_positives", metrics.TruePositives),
    ("true_negatives", metrics.TrueNegatives), ("false_positives", metrics.FalsePositives),
    ("false_negatives", metrics.FalseNegatives), ("f1_score", metrics.F1Score),
    ("F1Score", metrics.F1Score), ("binary_accuracy", metrics.BinaryAccuracy),
    ("categorical_accuracy", metrics.CategoricalAccuracy),
    ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
    ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
    ("binary_crossentropy", metrics.BinaryCrossentropy), ("bce", metrics.BinaryCrossentropy),
    ("categorical_crossentropy", metrics.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", metrics.SparseCategoricalCrossentropy)])
def test_get_by_name(name, cls):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == name


def test_defaults_and_config_round_trip():
    assert metrics.BinaryAccuracy().threshold == 0.5
    assert metrics.TopKCategoricalAccuracy().k == 5
    auc = metrics.AUC()
    assert (auc.num_thresholds, auc.curve, auc.summation_method) == (200, "ROC", "interpolation")
    assert metrics.F1Score().average is None and metrics.F1Score().threshold is None
    assert metrics.Precision().thresholds == [0.5]
    for m in (metrics.AUC(num_thresholds=10, curve="PR", name="a"),
              metrics.F1Score("macro", 0.4, name="f"), metrics.BinaryAccuracy(threshold=0.3),
              metrics.Precision(thresholds=[0.2, 0.6], class_id=1, name="p"),
              metrics.R2Score(None, 1), metrics.SparseTopKCategoricalAccuracy(k=3)):
        again = metrics.deserialize(metrics.serialize(m))
        assert type(again) is type(m) and again.get_config() == m.get_config()


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown metric: 'r2'. Valid names: \[.*'auc'.*"
                                         r"'mae'.*'r2_score'"):
        metrics.get("r2")
    model = fastnn.Sequential([Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"Unknown metric: 'aucc'"):
        model.compile(loss="mse", metrics=["aucc"])


@pytest.mark.parametrize("make,match", [
    (lambda: metrics.Precision(thresholds=1.5), r"Threshold values must be in \[0, 1\]"),
    (lambda: metrics.TruePositives(thresholds=[0.2, -0.1]), r"Received: \[-0.1\]"),
    (lambda: metrics.AUC(num_thresholds=1), r"`num_thresholds` must be an integer > 1. "
                                            r"Received: num_thresholds=1"),
    (lambda: metrics.AUC(curve="XY"), r'Invalid `curve` argument value "XY"'),
    (lambda: metrics.AUC(summation_method="avg"), r"summation_method"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), r"Received: k=0"),
    (lambda: metrics.F1Score(average="sum"), r"Received: average='sum'"),
    (lambda: metrics.F1Score(threshold=1), r"Received: threshold=1"),
    (lambda: metrics.FBetaScore(beta=0.0), r"Received: beta=0.0"),
    (lambda: metrics.R2Score("mean"), r"Received: class_aggregation='mean'"),
    (lambda: metrics.R2Score(num_regressors=-1), r"Received: num_regressors=-1"),
    (lambda: metrics.Recall(class_id=-2), r"Received: class_id=-2"),
    (lambda: metrics.BinaryAccuracy(threshold="a"), r"Received: threshold='a'"),
    (lambda: metrics.BinaryCrossentropy(label_smoothing=2), r"Received: label_smoothing=2"),
    (lambda: metrics.SparseCategoricalCrossentropy(ignore_class=1), r"ignore_class=1"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_uses_raise(rng):
    with pytest.raises(NotImplementedError, match="multi_label"):
        metrics.AUC(multi_label=True)
    m = metrics.MeanSquaredError()
    m.update_state(np.zeros((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"y_pred has 3 values per sample, earlier updates "
                                         r"had 2"):
        m.update_state(np.zeros((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not match 4"):
        metrics.AUC().update_state(np.zeros((4, 1)), np.ones((4, 1)), np.ones(3))
    with pytest.raises(ValueError, match=r"compares class indices"):
        metrics.SparseCategoricalAccuracy().update_state(np.eye(3), np.eye(3))
    model = fastnn.Sequential([Dense(3, input_shape=(2,), activation="softmax")])
    with pytest.raises(ValueError, match=r"metric 'r2_score' compares outputs with targets of "
                                         r"the same shape; with integer labels use 'accuracy'"):
        model.compile(loss="sparse_categorical_crossentropy", metrics=[metrics.R2Score()])
    with pytest.raises(ValueError, match=r"class_id=5 but the output has 3 classes"):
        model.compile(loss="categorical_crossentropy", metrics=[metrics.Precision(class_id=5)])
    with pytest.raises(ValueError, match=r"compares class indices"):
        model.compile(loss="categorical_crossentropy",
                      metrics=["sparse_categorical_accuracy"])
