"""fastnn's thread pool (csrc/pool.c) and the data-parallel engine (csrc/parallel.c).

The pool: many short regions, tasks run exactly once, errors inside a region, fork after
the pool started. The engine: a step split between threads computes the gradient of the
whole batch (against the serial step and a float64 reference), a thread count gives
bit-identical weights on every run, plans that cannot split (batch statistics, loss
terms) give the same results at any thread count, and a model serves several Python
threads at once."""
import os
import signal
import sys
import threading

import numpy as np
import pytest

import fastnn
from fastnn import Sequential, _engine
from fastnn.layers import BatchNormalization, Dense, Dropout, Input
from fastnn.models import Model


@pytest.fixture
def split():
    """Two threads, and every step and predict split between them (threshold 0)."""
    threads, flop = fastnn.get_num_threads(), _engine.parallel_min_flop(0.0)
    fastnn.set_num_threads(2)
    yield
    _engine.parallel_min_flop(flop)
    fastnn.set_num_threads(threads)


@pytest.fixture
def restore_threads():
    threads, flop = fastnn.get_num_threads(), _engine.parallel_min_flop()
    yield
    _engine.parallel_min_flop(flop)
    fastnn.set_num_threads(threads)


# ---- the pool ----------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("tasks", [1, 2, 5, 64, 100])
def test_every_task_runs_once_per_region(restore_threads, threads, tasks):
    fastnn.set_num_threads(threads)
    counts, codes = _engine.pool_probe(tasks, 2000)
    np.testing.assert_array_equal(counts, np.full(tasks, 2000))
    assert not codes.any()


def test_many_short_regions(restore_threads):
    fastnn.set_num_threads(2)
    counts, codes = _engine.pool_probe(2, 200_000)
    assert counts.tolist() == [200_000, 200_000] and not codes.any()


@pytest.mark.parametrize("threads", [1, 2])
def test_an_error_inside_a_region_is_the_lowest_failing_task(restore_threads, threads):
    fastnn.set_num_threads(threads)
    counts, codes = _engine.pool_probe(6, 500, fail_from=2)
    assert set(codes.tolist()) == {102}  # task 2's code, whichever thread ran what
    np.testing.assert_array_equal(counts, np.full(6, 500))  # the other tasks still ran
    counts, codes = _engine.pool_probe(6, 10)  # and the pool goes on
    assert not codes.any() and counts.tolist() == [10] * 6


def test_regions_with_real_work(restore_threads):
    fastnn.set_num_threads(2)
    counts, _ = _engine.pool_probe(2, 200, work=20_000)
    assert counts.tolist() == [200, 200]


@pytest.mark.parametrize("n", [0, -1, 65, 1.5, True, "2"])
def test_set_num_threads_checks_its_argument(n):
    with pytest.raises(ValueError, match=r"n must be an integer in \[1, 64\]"):
        fastnn.set_num_threads(n)


def test_default_threads_are_the_usable_cpus():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _engine.cpu_count() == usable
    assert 1 <= fastnn.get_num_threads() <= 64


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_after_the_pool_started(restore_threads):
    """The child has none of the parent's workers: its first region makes its own."""
    fastnn.set_num_threads(2)
    _engine.pool_probe(2, 100, work=1000)  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # the child: must not hang, must compute
        code = 1
        try:
            signal.alarm(20)
            counts, codes = _engine.pool_probe(2, 1000, work=100)
            model = _mlp(seed=3)
            x, y = _data(64, 8, 1)
            _engine.parallel_min_flop(0.0)
            fastnn.set_num_threads(2)
            model.fit(x, y, batch_size=32, epochs=2, verbose=0)
            ok = counts.tolist() == [1000, 1000] and np.isfinite(model.predict(x)).all()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


# ---- the data-parallel engine ----------------------------------------------------------
def _data(n, width, out, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, width), dtype=np.float32),
            rng.standard_normal((n, out), dtype=np.float32))


def _mlp(seed=0, width=8, hidden=(24, 40), out=1, dropout=0.0, optimizer="sgd",
         loss="mse", **compile_kw):
    fastnn.utils.set_random_seed(seed)
    layers = [Input(shape=(width,))]
    for h in hidden:
        layers.append(Dense(h, activation="relu"))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(out))
    model = Sequential(layers)
    model.compile(loss=loss, optimizer=optimizer, **compile_kw)
    return model


def _train(threads, split_all=True, **kw):
    """Weights after 3 epochs of the model from _mlp(**kw) at `threads` threads."""
    fit_kw = {k: kw.pop(k) for k in ("sample_weight",) if k in kw}
    n = kw.pop("rows", 96)
    model = _mlp(**kw)
    x, y = _data(n, model.inputs[0].shape[-1], model.outputs[0].shape[-1])
    _engine.parallel_min_flop(0.0 if split_all else 4e5)
    fastnn.set_num_threads(threads)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=True, **fit_kw)
    return model.get_weights(), history.history["loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "nadam"])
def test_two_threads_twice_give_bit_identical_weights(restore_threads, kernels, optimizer):
    a, la = _train(2, optimizer=optimizer, dropout=0.25)
    b, lb = _train(2, optimizer=optimizer, dropout=0.25)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert la == lb


def test_one_thread_twice_gives_bit_identical_weights(restore_threads, kernels):
    a, _ = _train(1, optimizer="adam")
    b, _ = _train(1, optimizer="adam")
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_split_step_matches_the_whole_one(restore_threads, kernels, optimizer, dropout):
    """The same batches, the same dropout masks (drawn by batch row), the gradient of the
    whole batch: only the order of the sums differs."""
    serial, ls = _train(1, optimizer=optimizer, dropout=dropout)
    par, lp = _train(2, optimizer=optimizer, dropout=dropout)
    for ws, wp in zip(serial, par):
        np.testing.assert_allclose(wp, ws, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(lp, ls, rtol=1e-4)


def test_odd_batches_and_a_last_small_batch(restore_threads):
    """Batches that do not split evenly, and a last batch of one row (whole)."""
    serial, _ = _train(1, rows=97, optimizer="adam")
    par, _ = _train(3, rows=97, optimizer="adam")
    for ws, wp in zip(serial, par):
        np.testing.assert_allclose(wp, ws, rtol=2e-4, atol=2e-5)


def test_a_split_step_against_float64(split):
    """One SGD step on 32 rows split between two threads, against a float64 reference."""
    model = _mlp(seed=5, hidden=(20,), optimizer=fastnn.optimizers.SGD(learning_rate=0.1))
    x, y = _data(32, 8, 1, seed=9)
    w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
    h = np.maximum(x @ w1 + b1, 0)
    p = h @ w2 + b2
    dp = 2 * (p - y) / len(x)
    dh = dp @ w2.T * (h > 0)
    want = [w1 - 0.1 * x.T @ dh, b1 - 0.1 * dh.sum(0), w2 - 0.1 * h.T @ dp,
            b2 - 0.1 * dp.sum(0)]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for got, w in zip(model.get_weights(), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_weighted_losses_two_heads_and_metrics_split(restore_threads):
    """Sample weights (the batch's divisor), two heads and metrics, 1 vs 2 threads."""
    def run(threads):
        _engine.parallel_min_flop(0.0)
        fastnn.set_num_threads(threads)
        fastnn.utils.set_random_seed(2)
        inp = Input(shape=(6,))
        h = Dense(16, activation="relu")(inp)
        a = Dense(1, name="a")(h)
        b = Dense(3, activation="softmax", name="b")(h)
        model = Model(inp, [a, b])
        model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"],
                      metrics=[["mae"], ["accuracy"]], loss_weights=[1.0, 0.5])
        rng = np.random.default_rng(4)
        x = rng.standard_normal((70, 6), dtype=np.float32)
        ya = rng.standard_normal((70, 1), dtype=np.float32)
        yb = rng.integers(0, 3, 70)
        sw = rng.random(70).astype(np.float32)
        hist = model.fit(x, [ya, yb], sample_weight=sw, batch_size=16, epochs=2, verbose=0)
        return model.get_weights(), hist.history
    ws, hs = run(1)
    wp, hp = run(2)
    for a, b in zip(ws, wp):
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-5)
    assert hs.keys() == hp.keys()
    for key in hs:
        np.testing.assert_allclose(hp[key], hs[key], rtol=1e-4, atol=1e-6)


def test_batch_statistics_keep_the_step_whole(restore_threads):
    """BatchNormalization mixes a batch's rows: its steps are not split, so any thread
    count gives the very same weights."""
    def run(threads):
        _engine.parallel_min_flop(0.0)
        fastnn.set_num_threads(threads)
        fastnn.utils.set_random_seed(1)
        model = Sequential([Input(shape=(8,)), Dense(32, activation="relu"),
                            BatchNormalization(), Dense(1)])
        model.compile(loss="mse", optimizer="adam")
        x, y = _data(64, 8, 1)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return model.get_weights()
    for a, b in zip(run(1), run(2)):
        np.testing.assert_array_equal(a, b)


def test_split_predict_is_row_for_row_the_same(split):
    """A row's outputs do not depend on which thread ran it (small layers: the same
    kernels either way)."""
    model = _mlp(seed=7, width=12, hidden=(30, 20), out=3)
    x, _ = _data(2000, 12, 1)
    par = model.predict(x)
    fastnn.set_num_threads(1)
    np.testing.assert_array_equal(model.predict(x), par)
    out = np.empty_like(par)
    fastnn.set_num_threads(2)
    assert model.predict(x, out=out) is out
    np.testing.assert_array_equal(out, par)


def test_a_model_used_from_several_python_threads(restore_threads):
    """Concurrent predicts and fits on one model and on several: each predict sees whole
    weights, results equal the single-threaded ones, nothing deadlocks."""
    _engine.parallel_min_flop(0.0)
    fastnn.set_num_threads(2)
    shared = _mlp(seed=11, hidden=(64, 64))
    x, y = _data(512, 8, 1, seed=12)
    want = shared.predict(x)
    others = [_mlp(seed=20 + i, hidden=(32,)) for i in range(2)]
    errors = []

    def predictor():
        try:
            for _ in range(30):
                np.testing.assert_array_equal(shared.predict(x), want)
                np.testing.assert_array_equal(shared.predict(x[:1]), want[:1])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def trainer(model):
        try:
            model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
            assert np.isfinite(model.predict(x)).all()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=predictor) for _ in range(3)]
    threads += [threading.Thread(target=trainer, args=(m,)) for m in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    # a model trained while others ran equals the same training done alone (in order:
    # shuffling draws from the one global seed stream, whichever fit asks first)
    alone = _mlp(seed=20, hidden=(32,))
    alone.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    for a, b in zip(alone.get_weights(), others[0].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_changing_the_thread_count_between_fits(restore_threads):
    model = _mlp(seed=4, optimizer="adam")
    x, y = _data(128, 8, 1)
    _engine.parallel_min_flop(0.0)
    for threads in (2, 1, 3, 2):
        fastnn.set_num_threads(threads)
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_predict_out_checks_its_argument():
    model = _mlp()
    x, _ = _data(5, 8, 1)
    with pytest.raises(ValueError, match=r"out must have shape \(5, 1\)"):
        model.predict(x, out=np.empty((4, 1), np.float32))
    with pytest.raises(ValueError, match="out must be a writeable C-contiguous float32"):
        model.predict(x, out=np.empty((5, 1), np.float64))
    with pytest.raises(ValueError, match="cannot be combined"):
        model.predict(x, out=np.empty((5, 1), np.float32), batch_size=2)


def test_model_call_and_predict_on_batch_take_the_fast_path():
    model = _mlp(seed=8)
    x, _ = _data(3, 8, 1)
    want = model.predict(x)
    np.testing.assert_array_equal(model(x), want)
    np.testing.assert_array_equal(model.predict_on_batch(x), want)
    np.testing.assert_array_equal(model(x.astype(np.float64)), want)  # converted path


@pytest.mark.parametrize("env, want", [({"FASTNN_NUM_THREADS": "1", "OMP_NUM_THREADS": "3"}, 1),
                                       ({"OMP_NUM_THREADS": "3"}, 3),
                                       ({"FASTNN_NUM_THREADS": "999"}, 64),
                                       ({"OMP_NUM_THREADS": "two"}, None)])
def test_the_default_comes_from_the_environment(env, want):
    import subprocess
    clean = {k: v for k, v in os.environ.items()
             if k not in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", "import fastnn; print(fastnn.get_num_threads())"],
                         env={**clean, **env}, capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == (want if want is not None else min(_engine.cpu_count(), 64))


def test_split_evaluate_matches_the_whole_one(restore_threads):
    """evaluate's batches split between threads: the same loss and metrics (weighted)."""
    fastnn.utils.set_random_seed(6)
    model = Sequential([Input(shape=(8,)), Dense(32, activation="relu"),
                        BatchNormalization(), Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    rng = np.random.default_rng(2)
    x = rng.standard_normal((301, 8), dtype=np.float32)
    y = rng.integers(0, 3, 301)
    sw = rng.random(301).astype(np.float32)
    _engine.parallel_min_flop(0.0)
    results = {}
    for threads in (1, 2):
        fastnn.set_num_threads(threads)
        results[threads] = model.evaluate(x, y, sample_weight=sw, batch_size=64,
                                          return_dict=True)
    assert results[1].keys() == results[2].keys()
    for key in results[1]:
        np.testing.assert_allclose(results[2][key], results[1][key], rtol=1e-5)
