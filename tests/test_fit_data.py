"""fit / evaluate / predict on batches from Python (generators, iterables, PyDataset) and
the data options steps_per_epoch, validation_steps, validation_freq, against the same
training on arrays: with shuffle=False and the same batches, a fit on batches ends with
bit-identical weights and logs."""
import warnings

import numpy as np
import pytest

import fastnn
from fastnn.callbacks import BackupAndRestore, Callback, LambdaCallback
from fastnn.layers import Concatenate, Dense, Input
from fastnn.utils import PyDataset, Sequence


def _data(n=100, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 5)).astype(np.float32)
    return x, (np.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3]).astype(np.float32)


def _model(seed=0, optimizer="rmsprop", built=True):
    fastnn.utils.set_random_seed(seed)
    first = Dense(8, activation="relu", input_shape=(5,)) if built else \
        Dense(8, activation="relu")
    model = fastnn.Sequential([first, Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def _batches(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def _assert_same(a, b):
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(p, q)


class Batches(PyDataset):
    def __init__(self, x, y, size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.size = x, y, size
        self.visited, self.events = [], []

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        self.visited.append(i)
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]

    def on_epoch_begin(self):
        self.events.append("begin")

    def on_epoch_end(self):
        self.events.append("end")


class Endless(PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    @property
    def num_batches(self):
        return None

    def __getitem__(self, i):
        k = i % 4
        return self.x[k * 25:(k + 1) * 25], self.y[k * 25:(k + 1) * 25]


def test_generator_fit_matches_array_fit(kernels):
    x, y = _data()
    a = _model()
    ha = a.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    b = _model()

    def gen():
        while True:
            yield from _batches(x, y, 32)
    hb = b.fit(gen(), epochs=3, steps_per_epoch=4, verbose=0)
    _assert_same(a, b)
    assert ha.history == hb.history and hb.epoch == [0, 1, 2]
    assert a.optimizer.iterations == b.optimizer.iterations == 12


def test_pydataset_and_iterable_fits_match_array_fit():
    x, y = _data()
    a = _model()
    ha = a.fit(x, y, batch_size=25, epochs=2, shuffle=False, verbose=0,
               validation_data=(x[:30], y[:30]))
    ds = Batches(x, y, 25)
    b = _model()
    hb = b.fit(ds, epochs=2, shuffle=False, verbose=0, validation_data=(x[:30], y[:30]))
    _assert_same(a, b)
    assert ha.history == hb.history
    assert ds.visited == [0, 1, 2, 3] * 2 and ds.events == ["begin", "end"] * 2

    class Reiterable:  # an iterable (not an iterator): a new pass every epoch
        def __iter__(self):
            return iter(_batches(x, y, 25))
    c = _model()
    c.fit(Reiterable(), epochs=2, verbose=0, validation_data=(x[:30], y[:30]))
    _assert_same(a, c)


def test_pydataset_shuffle_is_seeded_and_covers_every_batch():
    x, y = _data()
    orders = []
    for _ in range(2):
        ds = Batches(x, y, 10)
        _model().fit(ds, epochs=3, verbose=0)  # shuffle=True (fit's default)
        orders.append(list(ds.visited))
    assert orders[0] == orders[1]  # the same seed, the same orders
    epochs = [orders[0][i:i + 10] for i in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_pydataset_workers_keep_the_order():
    x, y = _data()
    a, b = _model(), _model()
    a.fit(Batches(x, y, 10), epochs=2, shuffle=False, verbose=0)
    b.fit(Batches(x, y, 10, workers=3, max_queue_size=4), epochs=2, shuffle=False, verbose=0)
    _assert_same(a, b)
    assert Sequence is PyDataset

    class NoSuper(Sequence):  # skips super().__init__(): Keras' defaults
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return x[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10]
    c = _model()
    c.fit(NoSuper(), epochs=2, shuffle=False, verbose=0)
    _assert_same(a, c)
    assert NoSuper().workers == 1 and NoSuper().max_queue_size == 10
    with pytest.raises(ValueError, match="Received: workers=-1"):
        Batches(x, y, 10, workers=-1)


def test_batches_of_several_inputs_and_unbuilt_models():
    r = np.random.default_rng(1)
    xa, xb = r.standard_normal((60, 3)).astype(np.float32), r.standard_normal((60, 2))
    y = r.standard_normal((60, 1)).astype(np.float32)

    def make():
        fastnn.utils.set_random_seed(3)
        a, b = Input((3,), name="a"), Input((2,), name="b")
        out = Dense(1)(Concatenate()([Dense(4, activation="tanh")(a), b]))
        model = fastnn.Model([a, b], out)
        model.compile(optimizer="adam", loss="mse")
        return model
    ref, lists, dicts = make(), make(), make()
    ref.fit([xa, xb], y, batch_size=20, epochs=2, shuffle=False, verbose=0)
    lists.fit(iter([((xa[i:i + 20], xb[i:i + 20]), y[i:i + 20]) for i in (0, 20, 40)] * 2),
              epochs=2, steps_per_epoch=3, verbose=0)
    dicts.fit(iter([({"a": xa[i:i + 20], "b": xb[i:i + 20]}, y[i:i + 20])
                    for i in (0, 20, 40)] * 2), epochs=2, steps_per_epoch=3, verbose=0)
    _assert_same(ref, lists)
    _assert_same(ref, dicts)
    # a Sequential that waits for its input shape is built by the first batch
    x, y = _data()
    unbuilt = _model(built=False)
    unbuilt.fit(iter(_batches(x, y, 50)), verbose=0)
    assert unbuilt.built and unbuilt.count_params() == 5 * 8 + 8 + 9


def test_steps_per_epoch_carries_the_generator_on():
    x, y = _data()
    drawn = []

    def gen():
        for i, batch in enumerate(_batches(x, y, 10)):
            drawn.append(i)
            yield batch
    hist = _model().fit(gen(), epochs=3, steps_per_epoch=3, verbose=0)
    assert drawn == list(range(9)) and hist.epoch == [0, 1, 2]


def test_running_out_of_data_ends_the_epoch_then_training():
    x, y = _data()
    with pytest.warns(RuntimeWarning) as record:
        hist = _model().fit(iter(_batches(x, y, 20)), epochs=4, steps_per_epoch=3, verbose=0)
    messages = [str(w.message) for w in record]
    assert any("ran out of data" in m for m in messages)
    assert any("epoch 3: x gave no batch" in m for m in messages)
    assert hist.epoch == [0, 1]  # 3 batches, then the last 2, then none
    # a generator without steps_per_epoch is spent after one pass
    with pytest.warns(RuntimeWarning, match="epoch 2: x gave no batch"):
        hist = _model().fit(iter(_batches(x, y, 20)), epochs=3, verbose=0)
    assert hist.epoch == [0]


def test_progress_learns_the_epoch_length_of_a_generator():
    x, y = _data()
    steps = []
    cb = LambdaCallback(on_epoch_end=lambda e, logs: steps.append(cb.params["steps"]))

    def gen():
        while True:
            yield from _batches(x, y, 25)
    _model().fit(gen(), epochs=2, steps_per_epoch=4, verbose=0, callbacks=[cb])
    assert steps == [4, 4]
    batches = []

    class Twice:
        def __iter__(self):
            return iter(_batches(x, y, 25))
    cb = LambdaCallback(on_epoch_end=lambda e, logs: steps.append(cb.params["steps"]),
                        on_train_batch_end=lambda b, logs: batches.append(b))
    _model().fit(Twice(), epochs=2, verbose=0, callbacks=[cb])
    assert steps[2:] == [4, 4] and batches == [0, 1, 2, 3] * 2


def test_endless_pydataset_needs_steps():
    x, y = _data()
    with pytest.raises(ValueError, match="endless .* pass steps_per_epoch"):
        _model().fit(Endless(x, y), epochs=2, verbose=0)
    ref = _model()
    ref.fit(x, y, batch_size=25, epochs=2, shuffle=False, verbose=0)
    endless = _model()
    endless.fit(Endless(x, y), epochs=2, steps_per_epoch=4, verbose=0)
    _assert_same(ref, endless)


def test_array_steps_per_epoch():
    x, y = _data()
    # without batch_size, steps_per_epoch sets it: ceil(100 / 4) = 25
    a = _model()  # each fit draws its shuffle seed right after its model's weights
    a.fit(x, y, batch_size=25, epochs=2, verbose=0)
    b = _model()
    b.fit(x, y, steps_per_epoch=4, epochs=2, verbose=0)
    _assert_same(a, b)
    # with both, epochs are `steps` batches of a pass, the pass cut at its end (Keras 3)
    c = _model()
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        hist = c.fit(x, y, batch_size=10, steps_per_epoch=4, epochs=3, shuffle=False,
                     verbose=0)
    ref = _model()
    seen = []
    ref.fit(iter(_batches(x, y, 10)), epochs=1, steps_per_epoch=10, verbose=0,
            callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    _assert_same(c, ref)
    assert hist.epoch == [0, 1, 2] and c.optimizer.iterations == 10


def test_validation_freq_for_arrays_and_batches():
    x, y = _data()
    for fit_x, kwargs in ((x, {"y": y, "batch_size": 25}),
                          (Batches(x, y, 25), {})):
        keys = []
        cb = LambdaCallback(on_epoch_end=lambda e, logs: keys.append("val_loss" in logs))
        _model().fit(fit_x, epochs=6, verbose=0, validation_data=(x[:20], y[:20]),
                     validation_freq=2, callbacks=[cb], **kwargs)
        assert keys == [False, True] * 3
        keys.clear()
        hist = _model().fit(fit_x, epochs=5, verbose=0, validation_data=(x[:20], y[:20]),
                            validation_freq=[1, 4], callbacks=[cb], **kwargs)
        assert keys == [True, False, False, True, False]
        assert len(hist.history["val_loss"]) == 2
    for bad in (0, 1.5, [], [0], "2"):
        with pytest.raises(ValueError, match="validation_freq must be"):
            _model().fit(x, y, verbose=0, validation_data=(x, y), validation_freq=bad)


def test_validation_on_batches_with_validation_steps():
    x, y = _data()
    xv, yv = _data(40, seed=5)
    model = _model()
    logs = []
    cb = LambdaCallback(on_epoch_end=lambda e, l: logs.append(
        (l["val_loss"], model.evaluate(xv[:20], yv[:20]))))

    def val():
        while True:
            yield from _batches(xv, yv, 10)
    model.fit(x, y, epochs=2, verbose=0, validation_data=val(), validation_steps=2,
              callbacks=[cb])
    # epoch 1 validates on the first two batches, epoch 2 on the next two (Keras carries
    # the iterator on): check the first against evaluate
    np.testing.assert_allclose(logs[0][0], logs[0][1][0], rtol=1e-6)
    # a spent validation generator warns and logs nothing
    with pytest.warns(RuntimeWarning, match="validation_data gave no batch"):
        hist = _model().fit(x, y, epochs=2, verbose=0,
                            validation_data=iter(_batches(xv, yv, 10)))
    assert len(hist.history["val_loss"]) == 1
    # a PyDataset validates on all its batches every epoch
    hist = _model().fit(x, y, epochs=2, verbose=0, validation_data=Batches(xv, yv, 10))
    assert len(hist.history["val_loss"]) == 2


def test_evaluate_and_predict_on_batches():
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=2, verbose=0)
    want = model.evaluate(x, y)
    np.testing.assert_allclose(model.evaluate(iter(_batches(x, y, 30))), want, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(Batches(x, y, 30)), want, rtol=1e-6)
    logs = model.evaluate(Batches(x, y, 30), steps=2, return_dict=True)
    np.testing.assert_allclose(list(logs.values()), model.evaluate(x[:60], y[:60]), rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=30, steps=2),
                               model.evaluate(x[:60], y[:60]), rtol=1e-6)
    pred = model.predict(x)
    np.testing.assert_allclose(model.predict(iter([x[:40], x[40:]])), pred, rtol=1e-6)
    np.testing.assert_allclose(model.predict(Batches(x, y, 30)), pred, rtol=1e-6)
    np.testing.assert_allclose(model.predict(iter([(x[:40],), (x[40:],)]), steps=1),
                               pred[:40], rtol=1e-6)
    np.testing.assert_allclose(model.predict(x, batch_size=30, steps=2), pred[:60], rtol=1e-6)
    tested = []

    class Hooks(Callback):
        def on_test_batch_end(self, batch, logs=None):
            tested.append(batch)

        def on_predict_batch_end(self, batch, logs=None):
            tested.append(("p", batch, logs["outputs"][0].shape))
    model.evaluate(Batches(x, y, 30), callbacks=[Hooks()])
    model.predict(Batches(x, y, 50), callbacks=[Hooks()])
    assert tested == [0, 1, 2, 3, ("p", 0, (50, 1)), ("p", 1, (50, 1))]


def test_batches_with_sample_weights_match_array_fit():
    x, y = _data()
    w = np.random.default_rng(4).random(100).astype(np.float32) * 2
    a = _model()
    ha = a.fit(x, y, sample_weight=w, batch_size=20, epochs=2, shuffle=False, verbose=0)
    b = _model()
    hb = b.fit(iter([(x[i:i + 20], y[i:i + 20], w[i:i + 20]) for i in range(0, 100, 20)] * 2),
               epochs=2, steps_per_epoch=5, verbose=0)
    _assert_same(a, b)
    assert ha.history == hb.history
    batches = [(x[i:i + 25], y[i:i + 25], w[i:i + 25]) for i in range(0, 100, 25)]
    np.testing.assert_allclose(b.evaluate(iter(batches)), b.evaluate(x, y, sample_weight=w),
                               rtol=1e-6)
    hist = b.fit(x, y, epochs=1, verbose=0, validation_data=iter(batches))
    np.testing.assert_allclose(hist.history["val_loss"][0],
                               b.evaluate(x, y, sample_weight=w)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="sample_weight"):
        b.fit(iter([(x, y, w[:10])]), verbose=0)


def test_backup_and_restore_on_batches(tmp_path):
    x, y = _data()

    class Stop(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(Batches(x, y, 25), epochs=4, shuffle=False, verbose=0,
                  callbacks=[BackupAndRestore(tmp_path), Stop()])
    hist = model.fit(Batches(x, y, 25), epochs=4, shuffle=False, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path)])
    assert hist.epoch == [2, 3]
    straight = _model()
    straight.fit(Batches(x, y, 25), epochs=4, shuffle=False, verbose=0)
    _assert_same(model, straight)


def test_bad_batches_and_arguments():
    x, y = _data()
    model = _model()
    with pytest.raises(ValueError, match=r"`y` should not be passed.*Received: y=array"):
        model.fit(iter(_batches(x, y, 10)), y, verbose=0)
    with pytest.raises(ValueError, match=r"`batch_size` should not be passed.*Received: "
                                         r"batch_size=16"):
        model.fit(Batches(x, y, 10), batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_split` should not be passed"):
        model.fit(Batches(x, y, 10), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"`y` should not be passed"):
        model.evaluate(Batches(x, y, 10), y)
    with pytest.raises(ValueError, match="needs targets"):
        model.fit(iter([x[:10]]), verbose=0)
    with pytest.raises(ValueError, match="a tuple of 1 to 3 items"):
        model.fit(iter([(x, y, None, None)]), verbose=0)
    with pytest.raises(ValueError, match="must have 5 features per row|shape"):
        model.fit(iter([(x[:, :3], y)]), verbose=0)
    with pytest.raises(ValueError, match="x gave no batch to evaluate"):
        model.evaluate(iter([]))
    with pytest.raises(ValueError, match="x gave no batch to predict"):
        model.predict(iter([]))
    for name in ("steps_per_epoch", "validation_steps"):
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match=rf"Received: {name}={bad!r}"):
                model.fit(x, y, verbose=0, **{name: bad})
    with pytest.raises(ValueError, match=r"Received: steps=0"):
        model.evaluate(x, y, steps=0)
    with pytest.raises(ValueError, match=r"Received: validation_batch_size=0"):
        model.fit(x, y, verbose=0, validation_batch_size=0)


def test_array_fit_stays_on_the_engine_path():
    # arrays are not turned into Python batches (no per-step Python) unless
    # steps_per_epoch asks for epochs that are not whole passes
    x, y = _data()
    steps = []

    class Count(Callback):
        def on_epoch_end(self, epoch, logs=None):
            steps.append(self.model.optimizer.iterations)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(x, y, batch_size=10, epochs=2, steps_per_epoch=10, verbose=0,
                     callbacks=[Count()])
    assert steps == [10, 20]
