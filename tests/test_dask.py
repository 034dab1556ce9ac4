"""fastnn on Dask (fastnn/dask.py): predict over chunked arrays, a hyper-parameter search
on a cluster, chunk-streamed training, and the workers' thread limits. The references
are fastnn's own local calls on the whole NumPy arrays (fastnn's engine maths is tested
elsewhere against float64 NumPy): what is checked here is that distributing changes
nothing. One LocalCluster of two worker processes, on loopback, serves the module."""
import copy
import os

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import fastnn  # noqa: E402
import fastnn.dask as fd  # noqa: E402
from fastnn import Input, Model, Sequential  # noqa: E402
from fastnn.layers import Dense, concatenate  # noqa: E402

TIMEOUT = 60  # seconds: every wait on the cluster is bounded
N_WORKERS = 2
BLAS_THREADS = fd.blas_threads(N_WORKERS, 1)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=None,
                                       env=fd.worker_env(N_WORKERS, 1))
    c = distributed.Client(cluster, timeout=TIMEOUT)
    c.register_plugin(fd.ThreadLimit(BLAS_THREADS))
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def data():
    g = np.random.default_rng(7)
    x = g.normal(size=(230, 6)).astype(np.float32)
    y = (x @ g.normal(size=(6, 1)) + 0.1 * g.normal(size=(230, 1))).astype(np.float32)
    return x, y


def build_mlp(units, activation="relu", learning_rate=0.01):
    """The search's build_fn (module level: workers import it by name)."""
    model = Sequential([Dense(units, input_shape=(6,), activation=activation), Dense(1)])
    model.compile(loss="mse", optimizer=fastnn.optimizers.RMSprop(learning_rate))
    return model


def build_uncompiled(units):
    return Sequential([Dense(units, input_shape=(6,)), Dense(1)])


def test_predict_over_chunks_equals_model_predict(client, data):
    x, _ = data
    fastnn.utils.set_random_seed(0)
    model = build_mlp(5)
    xd = da.from_array(x, chunks=(37, 4))  # columns split too: rechunked into one block
    pred = fd.predict(model, xd)
    assert pred.dtype == np.float32 and pred.shape == (230, 1)
    assert pred.chunks[0] == xd.chunks[0] and len(pred.chunks[1]) == 1
    got = client.compute(pred).result(timeout=TIMEOUT)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, model.predict(x))


def test_predict_several_inputs_and_outputs(client, data):
    x, _ = data
    xb = np.random.default_rng(1).normal(size=(230, 3))
    fastnn.utils.set_random_seed(1)
    a, b = Input(shape=(6,)), Input(shape=(3,))
    h = Dense(4, activation="tanh")(a)
    model = Model([a, b], [Dense(2)(h), Dense(3)(concatenate([h, b]))])
    outs = fd.predict(model, [da.from_array(x, chunks=50), da.from_array(xb, chunks=(80, 2))])
    assert isinstance(outs, list) and [o.shape for o in outs] == [(230, 2), (230, 3)]
    got = [f.result(timeout=TIMEOUT) for f in client.compute(outs)]
    for g, e in zip(got, model.predict([x, xb])):
        np.testing.assert_array_equal(g, e)


def test_predict_output_of_more_axes(client, data):
    x, _ = data
    model = Sequential([Dense(6, input_shape=(6,)), fastnn.layers.Reshape((3, 2))])
    pred = fd.predict(model, da.from_array(x, chunks=100))
    assert pred.shape == (230, 3, 2)
    np.testing.assert_array_equal(client.compute(pred).result(timeout=TIMEOUT),
                                  model.predict(x))


def test_fit_many_equals_local_fits(client, data):
    x, y = data
    configs = [{"units": 4}, {"units": 8, "activation": "tanh"},
               {"units": 16, "learning_rate": 0.003}]
    fit = {"epochs": 5, "batch_size": 16, "verbose": 0}
    fits = fd.fit_many(build_mlp, configs, x, y, client=client, seed=3, timeout=TIMEOUT, **fit)
    assert len(fits) == 3
    for f, config in zip(fits, configs):
        assert isinstance(f, fd.Fitted) and f.config == config
        fastnn.utils.set_random_seed(3)  # what each task does, here
        local = build_mlp(**config)
        history = local.fit(x, y, **fit)
        assert f.history == history.history and len(f.history["loss"]) == 5
        assert f.history["loss"][-1] < f.history["loss"][0]
        np.testing.assert_array_equal(f.model.predict(x), local.predict(x))


def test_fit_many_without_client_runs_on_dasks_scheduler(data):
    x, y = data
    with dask.config.set(scheduler="sync"):
        fits = fd.fit_many(build_mlp, [{"units": 3}, {"units": 5}], x, y, seed=4, epochs=2,
                           verbose=0)
    fastnn.utils.set_random_seed(4)
    local = build_mlp(5)
    local.fit(x, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(fits[1].model.predict(x), local.predict(x))
    assert fits[0].model.layers[0].units == 3


def test_fit_chunks_equals_local_fit_without_shuffle(client, data):
    x, y = data
    fastnn.utils.set_random_seed(5)
    model = build_mlp(8)
    local = copy.deepcopy(model)
    xd = da.from_array(x, chunks=(47, 6))  # chunks are not multiples of the batch size
    yd = da.from_array(y, chunks=60)       # nor aligned with x's
    history = fd.fit_chunks(model, xd, yd, epochs=4, batch_size=10, shuffle=False, verbose=0)
    expected = local.fit(x, y, epochs=4, batch_size=10, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history == expected.history
    for w, v in zip(model.get_weights(), local.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_fit_chunks_shuffled_is_seeded_and_sees_every_row(client, data):
    x, y = data
    xd, yd = da.from_array(x, chunks=40), da.from_array(y, chunks=40)
    batches = fd._ChunkBatches(xd, yd, 16, True)
    fastnn.utils.set_random_seed(6)
    first = [b[0] for b in batches]
    assert len(first) == len(batches) == 15
    seen = np.concatenate(first)
    np.testing.assert_array_equal(np.sort(seen, axis=0), np.sort(x, axis=0))
    assert not np.array_equal(seen, x)
    results = []
    for _ in range(2):
        fastnn.utils.set_random_seed(6)
        model = build_mlp(4)
        h = fd.fit_chunks(model, xd, yd, epochs=3, batch_size=16, verbose=0)
        results.append((h.history["loss"], model.get_weights()))
    assert results[0][0] == results[1][0] and results[0][0][-1] < results[0][0][0]


def test_fit_chunks_from_a_dask_dataframe(data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    x, y = data
    frame = dd.from_pandas(pd.DataFrame(x), npartitions=3)
    target = dd.from_pandas(pd.Series(y[:, 0]), npartitions=3)
    fastnn.utils.set_random_seed(8)
    model = build_mlp(4)
    local = copy.deepcopy(model)
    with dask.config.set(scheduler="sync"):
        h = fd.fit_chunks(model, frame, target, epochs=2, batch_size=32, shuffle=False,
                          verbose=0)
    assert h.history == local.fit(x, y[:, 0], epochs=2, batch_size=32, shuffle=False,
                                  verbose=0).history


def _blas_state():
    """(thread variables, OpenBLAS threads) in this process."""
    import ctypes  # noqa: F401 - the library handle below is a ctypes.CDLL
    import fastnn._blas
    threads = None
    if fastnn._blas.available():
        for symbol in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                       "openblas_get_num_threads64_", "openblas_get_num_threads"):
            fn = getattr(fastnn._blas._state["lib"], symbol, None)
            if fn is not None:
                threads = fn()
                break
    import fastnn
    return ({v: os.environ.get(v) for v in fd._THREAD_VARS}, threads,
            fastnn.get_num_threads())


def test_workers_blas_threads_are_their_share(client):
    assert BLAS_THREADS == max(1, (os.cpu_count() or 1) // 2)
    states = client.run(_blas_state)
    assert len(states) == N_WORKERS
    for env, threads, own in states.values():
        assert env == {v: str(BLAS_THREADS) for v in fd._THREAD_VARS}
        if threads is not None:
            assert threads == BLAS_THREADS
        assert own == BLAS_THREADS  # fastnn's pool: its share too


def test_thread_limit_plugin_sets_the_pool_at_run_time(client):
    client.register_plugin(fd.ThreadLimit(2), name="fastnn-two-threads")
    try:
        for env, threads, own in client.run(_blas_state).values():
            assert env["OPENBLAS_NUM_THREADS"] == "2" and env["FASTNN_NUM_THREADS"] == "2"
            assert threads in (None, 2) and own == 2
    finally:
        client.register_plugin(fd.ThreadLimit(BLAS_THREADS), name="fastnn-two-threads")
    for env, threads, own in client.run(_blas_state).values():
        assert env["OPENBLAS_NUM_THREADS"] == str(BLAS_THREADS)
        assert threads in (None, BLAS_THREADS) and own == BLAS_THREADS


def test_thread_shares():
    assert fd.blas_threads(2, 1, cores=8) == 4
    assert fd.blas_threads(3, 2, cores=8) == 1
    assert fd.blas_threads(16, 1, cores=8) == 1
    assert fd.worker_env(1, 2, cores=8) == {"FASTNN_NUM_THREADS": "4",
                                            "OPENBLAS_NUM_THREADS": "4",
                                            "OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}


def test_bad_input(data):
    x, y = data
    model = build_mlp(2)
    xd = da.from_array(x, chunks=50)
    with pytest.raises(TypeError, match="dask array"):
        fd.predict(model, x)
    with pytest.raises(TypeError, match="fastnn Model"):
        fd.predict("model", xd)
    with pytest.raises(ValueError, match="2 dask arrays"):
        fd.predict(model, [xd, xd])
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        fd.predict(model, xd[xd[:, 0] > 0])
    with pytest.raises(TypeError, match="config"):
        fd.fit_many(build_mlp, [4], x, y)
    with pytest.raises(ValueError, match="seed=-1"):
        fd.fit_many(build_mlp, [{"units": 2}], x, y, seed=-1)
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="uncompiled"):
        fd.fit_many(build_uncompiled, [{"units": 2}], x, y)
    with pytest.raises(ValueError, match="batch_size=0"):
        fd.fit_chunks(model, xd, da.from_array(y, chunks=50), batch_size=0)
    with pytest.raises(ValueError, match="same number of rows"):
        fd.fit_chunks(model, xd, da.from_array(y[:100], chunks=50))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        fd.fit_chunks(model, xd, da.from_array(y, chunks=50), steps_per_epoch=2)
    with pytest.raises(ValueError, match="n_workers=0"):
        fd.worker_env(0)
    with pytest.raises(ValueError, match="threads=0"):
        fd.ThreadLimit(0)
