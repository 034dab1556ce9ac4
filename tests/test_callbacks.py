"""Callbacks: CallbackList dispatch and batch-hook detection, the ProgbarLogger's lines
on terminals and elsewhere (under a fake clock), EarlyStopping on a stub model driven epoch
by epoch (Keras 3's rules); then the callbacks that act on a model (ModelCheckpoint,
ReduceLROnPlateau, LearningRateScheduler, TerminateOnNaN, CSVLogger, LambdaCallback,
BackupAndRestore), on stubs where the rule is the point and in real fits."""
import io
import re

import numpy as np
import pytest

from fastnn import callbacks
from fastnn.callbacks import Callback, CallbackList, EarlyStopping, History, ProgbarLogger

# every hook with the positional arguments fit/evaluate/predict give it
HOOKS = {
    "on_train_begin": (), "on_train_end": (),
    "on_epoch_begin": (3,), "on_epoch_end": (3,),
    "on_train_batch_begin": (5,), "on_train_batch_end": (5,),
    "on_batch_begin": (5,), "on_batch_end": (5,),
    "on_test_begin": (), "on_test_end": (),
    "on_test_batch_begin": (2,), "on_test_batch_end": (2,),
    "on_predict_begin": (), "on_predict_end": (),
    "on_predict_batch_begin": (1,), "on_predict_batch_end": (1,),
}


class Recorder(Callback):
    """Records every hook call as (name, hook, args, logs) into a shared list."""

    def __init__(self, name, calls):
        super().__init__()
        self.name, self.calls = name, calls


for _hook in HOOKS:
    def _method(self, *args, logs=None, _hook=_hook):
        self.calls.append((self.name, _hook, args, logs))
    setattr(Recorder, _hook, _method)


# ---- CallbackList ---------------------------------------------------------------------

@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_reaches_every_callback_in_order(hook):
    calls = []
    cbs = CallbackList([Recorder("a", calls), Recorder("b", calls)])
    logs = {"loss": 0.5}
    getattr(cbs, hook)(*HOOKS[hook], logs=logs)
    assert calls == [("a", hook, HOOKS[hook], logs), ("b", hook, HOOKS[hook], logs)]


def test_logs_default_to_an_empty_dict():
    calls = []
    CallbackList([Recorder("a", calls)]).on_epoch_end(0)
    assert calls == [("a", "on_epoch_end", (0,), {})]


def test_base_train_batch_hooks_call_the_legacy_ones():
    seen = []

    class Legacy(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch, logs))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs))

    cbs = CallbackList([Legacy()])
    cbs.on_train_batch_begin(0)
    cbs.on_train_batch_end(0, logs={"loss": 1.0})
    assert seen == [("begin", 0, {}), ("end", 0, {"loss": 1.0})]


def test_model_and_params_reach_every_callback():
    model = object()
    user = Callback()
    cbs = CallbackList([user], add_history=True, add_progbar=True, verbose=2, model=model,
                       epochs=5, steps=7)
    assert [type(cb) for cb in cbs.callbacks] == [Callback, History, ProgbarLogger]
    for cb in cbs.callbacks:
        assert cb.model is model
        assert cb.params == {"verbose": 2, "epochs": 5, "steps": 7}
    assert cbs.history is cbs.callbacks[1] and cbs.progbar is cbs.callbacks[2]
    assert cbs.progbar.verbose == 2


def test_callbacks_passed_in_are_reused_not_doubled():
    history, progbar = History(), ProgbarLogger(verbose=2)
    cbs = CallbackList([progbar, history], add_history=True, add_progbar=True, verbose=1)
    assert cbs.callbacks == [progbar, history]
    assert cbs.history is history and cbs.progbar is progbar


def test_nothing_added_unless_asked():
    cbs = CallbackList()
    assert cbs.callbacks == [] and cbs.history is None and cbs.progbar is None
    assert CallbackList(add_history=True).callbacks[0] is not CallbackList(
        add_history=True).callbacks[0]


def test_callbacks_must_be_callbacks():
    with pytest.raises(TypeError, match=r"Callback instances\. Received: 'loss'"):
        CallbackList(["loss"])


WANTS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


def _wants(cbs):
    return {kind: getattr(cbs, f"wants_{kind}_batch_hooks") for kind in WANTS}


@pytest.mark.parametrize("kind,hook", [(k, h) for k, hooks in WANTS.items() for h in hooks])
def test_overriding_a_batch_hook_is_detected(kind, hook):
    cls = type("Watcher", (Callback,), {hook: lambda self, batch, logs=None: None})
    expected = {k: k == kind for k in WANTS}
    assert _wants(CallbackList([cls()], add_history=True, add_progbar=True)) == expected
    # a hook set on the instance counts too
    cb = Callback()
    setattr(cb, hook, lambda batch, logs=None: None)
    assert _wants(CallbackList([cb])) == expected


def test_epoch_hooks_history_and_progbar_want_no_batch_hooks():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

        def on_test_end(self, logs=None):
            pass

    class QuietProgbar(ProgbarLogger):
        pass

    cbs = CallbackList([EpochOnly(), QuietProgbar()], add_history=True, add_progbar=True)
    assert _wants(cbs) == {"train": False, "test": False, "predict": False}
    assert _wants(CallbackList()) == {"train": False, "test": False, "predict": False}


def test_a_progbar_subclass_overriding_a_batch_hook_is_detected():
    class Chatty(ProgbarLogger):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)

    assert _wants(CallbackList([Chatty()])) == {"train": True, "test": False, "predict": False}


def test_history_records_epochs_and_logs():
    cbs = CallbackList(add_history=True)
    cbs.on_train_begin()
    for epoch in range(3):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 2.0})
    assert cbs.history.epoch == [0, 1, 2]
    assert cbs.history.history == {"loss": [1.0, 0.5, 1 / 3], "val_loss": [2.0] * 3}


# ---- ProgbarLogger ----------------------------------------------------------------------

class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class FakeTime:
    """Stands for the `time` module inside fastnn.callbacks: a clock moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(callbacks, "time", fake)
    return fake


def _run_epochs(cbs, clock, epochs, steps, dt, logs_at=lambda step: {"loss": 1.0 / step}):
    """Drives the hooks as fit does, one step per batch call, `dt` seconds a step."""
    cbs.on_train_begin()
    for epoch in range(epochs):
        cbs.on_epoch_begin(epoch)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            clock.now += dt
            cbs.on_train_batch_end(step, logs_at(step + 1))
        cbs.on_epoch_end(epoch, {"loss": 0.25, "val_loss": 0.5})
    cbs.on_train_end()


def _progbar(stream, verbose=1, epochs=2, steps=100):
    return CallbackList([ProgbarLogger(verbose, stream=stream)], epochs=epochs, steps=steps,
                        verbose=verbose)


def test_terminal_line_is_redrawn_in_place_within_an_epoch(clock):
    stream = FakeTTY()
    _run_epochs(_progbar(stream), clock, epochs=2, steps=100, dt=0.01)
    out = stream.getvalue()
    epochs = out.split("Epoch ")[1:]
    assert [e.split("\n", 1)[0] for e in epochs] == ["1/2", "2/2"]
    for text in epochs:
        body = text.split("\n", 1)[1]
        assert body.endswith("\n") and body.count("\n") == 1  # one finished line
        draws = body[:-1].split("\r")[1:]
        running, final = draws[:-1], draws[-1]
        # 1 s of steps redrawn at most every 0.05 s: about 20 redraws, none of them final
        assert 15 <= len(running) <= 21
        steps = [int(re.match(r"\s*(\d+)/100 \[", d).group(1)) for d in running]
        assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] < 100
        for d, step in zip(running, steps):
            # 0.01 s a step: the ETA is the steps left times 0.01 s
            eta = int((100 - step) * 0.01)
            assert f" - ETA: {eta}s - loss: {1.0 / step:.4f}" in d
        assert re.fullmatch(r"100/100 \[={30}\] - 1s 10ms/step - loss: 0\.2500 - val_loss: "
                            r"0\.5000 *", final)
        # a shorter line blanks out what remains of a longer one
        assert all(len(d) >= len(running[0]) for d in running[1:] + [final])


def test_terminal_bar_grows_with_the_steps(clock):
    stream = FakeTTY()
    cbs = _progbar(stream, steps=10)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    clock.now += 1.0
    cbs.on_train_batch_end(4, {"loss": 1.0})
    line = stream.getvalue().split("\r")[-1]
    assert line.startswith(" 5/10 [" + "=" * 14 + ">" + "." * 15 + "] - ETA: 1s - loss: ")


def test_other_streams_get_one_line_per_epoch(clock):
    stream = io.StringIO()
    _run_epochs(_progbar(stream, epochs=3), clock, epochs=3, steps=100, dt=0.01)
    out = stream.getvalue()
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert line == ("100/100 [==============================] - 1s 10ms/step - loss: 0.2500"
                        " - val_loss: 0.5000")


def test_verbose_2_writes_one_line_per_epoch(clock):
    for stream in (io.StringIO(), FakeTTY()):
        _run_epochs(_progbar(stream, verbose=2), clock, epochs=2, steps=100, dt=0.02)
        assert stream.getvalue() == ("Epoch 1/2 - 2s - loss: 0.2500 - val_loss: 0.5000\n"
                                     "Epoch 2/2 - 2s - loss: 0.2500 - val_loss: 0.5000\n")


def test_time_per_step_units_and_small_values(clock):
    stream = io.StringIO()
    cbs = _progbar(stream, epochs=1, steps=4)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    clock.now += 4 * 85e-6
    cbs.on_epoch_end(0, {"loss": 2.5e-5, "mae": 0.0})
    assert stream.getvalue().splitlines()[1] == \
        "4/4 [==============================] - 0s 85us/step - loss: 2.5000e-05 - mae: 0.0000"


def test_verbose_0_writes_nothing(clock):
    for stream in (io.StringIO(), FakeTTY()):
        _run_epochs(_progbar(stream, verbose=0), clock, epochs=2, steps=10, dt=0.1)
        assert stream.getvalue() == ""


def test_default_stream_is_stdout_at_call_time(clock, capsys):
    cbs = CallbackList(add_progbar=True, verbose=1, epochs=1, steps=3)
    _run_epochs(cbs, clock, epochs=1, steps=3, dt=0.1)
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 1/1", "3/3 [==============================] - 0s 100ms/step - loss: 0.2500 - "
        "val_loss: 0.5000"]


def test_evaluate_progress_shows_alone_but_not_inside_fit(clock):
    stream = FakeTTY()
    cbs = _progbar(stream, steps=20)
    cbs.on_test_begin()
    for step in range(20):
        clock.now += 0.01
        cbs.on_test_batch_end(step, {"loss": 0.5})
    cbs.on_test_end({"loss": 0.5})
    out = stream.getvalue()
    assert out.count("\r") == 5 and out.endswith("\n") and "Epoch" not in out
    assert re.search(r"\r20/20 \[={30}\] - 0s 10ms/step - loss: 0\.5000 *\n$", out)

    stream = FakeTTY()
    cbs = _progbar(stream, steps=20)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    before = stream.getvalue()
    cbs.on_test_begin()  # validation inside fit
    for step in range(20):
        clock.now += 0.01
        cbs.on_test_batch_end(step, {"loss": 0.5})
    cbs.on_test_end({"loss": 0.5})
    assert stream.getvalue() == before


def test_predict_progress_ignores_the_outputs_in_its_logs(clock):
    stream = io.StringIO()
    cbs = _progbar(stream, steps=2)
    cbs.on_predict_begin()
    cbs.on_predict_batch_end(0, {"outputs": np.zeros((4, 1))})
    cbs.on_predict_batch_end(1, {"outputs": np.zeros((4, 1))})
    cbs.on_predict_end()
    assert stream.getvalue() == "2/2 [==============================] - 0s 0us/step\n"


def test_unknown_step_count(clock):
    stream = io.StringIO()
    cbs = _progbar(stream, epochs=1, steps=None)
    _run_epochs(cbs, clock, epochs=1, steps=4, dt=0.5)
    assert stream.getvalue().splitlines()[1] == \
        "      4/Unknown - 2s 500ms/step - loss: 0.2500 - val_loss: 0.5000"


def test_progbar_verbose():
    assert ProgbarLogger(verbose="auto").verbose == 1
    with pytest.raises(ValueError, match=r"Received: verbose=3"):
        ProgbarLogger(verbose=3)


# ---- EarlyStopping ----------------------------------------------------------------------

class StubModel:
    """Weights are the index of the epoch that produced them."""

    def __init__(self):
        self.weights = [np.array(-1.0)]
        self.stop_training = False

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]


def _drive(stop, values, monitor=None, model=None):
    """Runs epochs whose monitored value is values[epoch] until stop_training; returns the
    number of epochs run and the model."""
    model = model or StubModel()
    cbs = CallbackList([stop], model=model, epochs=len(values))
    cbs.on_train_begin()
    run = 0
    for epoch, value in enumerate(values):
        cbs.on_epoch_begin(epoch)
        model.weights = [np.array(float(epoch))]
        cbs.on_epoch_end(epoch, {monitor or stop.monitor: value, "other": 0.0})
        run += 1
        if model.stop_training:
            break
    cbs.on_train_end()
    return run, model


def _reference_epochs(values, patience, min_delta=0.0, sign=1.0, baseline=None, start=0):
    """Epochs run under Keras 3's rule, written from its documentation and code: every
    monitored epoch adds one to `wait`; an epoch better than the best so far by more than
    min_delta becomes the best, resets `wait` if it also beats the baseline, and never
    stops training; any other epoch stops it once wait >= patience."""
    best, wait = np.inf, 0
    for epoch, v in enumerate(values):
        if epoch < start:
            continue
        v = sign * v
        wait += 1
        if v < best - min_delta:
            best = v
            if baseline is None or v < sign * baseline - min_delta:
                wait = 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1
    return len(values)


@pytest.mark.parametrize("patience", [0, 1, 2, 4])
@pytest.mark.parametrize("min_delta", [0.0, 0.05])
def test_early_stopping_patience_and_min_delta(patience, min_delta):
    rng = np.random.default_rng(patience)
    for _ in range(20):
        values = list(1.0 + rng.standard_normal(30).cumsum() * 0.05)
        stop = EarlyStopping(monitor="loss", patience=patience, min_delta=min_delta)
        run, model = _drive(stop, values)
        assert run == _reference_epochs(values, patience, min_delta)
        assert model.stop_training == (run < len(values))
        if model.stop_training:
            assert stop.stopped_epoch == run - 1


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience_as_keras(patience):
    # Keras 3's own case: the best is epoch 2, then nothing improves on it
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    stop = EarlyStopping(monitor="loss", patience=patience)
    _drive(stop, losses)
    assert stop.stopped_epoch == max(patience, 1) + 2


def test_early_stopping_counts_from_the_first_epoch():
    # nothing improves: epoch 0 sets the best, epochs 1..patience run out the patience
    run, _ = _drive(EarlyStopping(monitor="loss", patience=2), [1.0] * 10)
    assert run == 3


@pytest.mark.parametrize("monitor,mode,sign", [
    ("accuracy", "auto", -1.0), ("val_accuracy", "auto", -1.0), ("val_acc", "auto", -1.0),
    ("auc", "auto", -1.0), ("val_auc", "auto", -1.0), ("val_loss", "auto", 1.0),
    ("mae", "auto", 1.0), ("loss", "max", -1.0), ("val_accuracy", "min", 1.0)])
def test_early_stopping_mode(monitor, mode, sign):
    values = [0.5, 0.6, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4]
    stop = EarlyStopping(monitor=monitor, mode=mode, patience=1)
    assert stop.mode == ("min" if sign > 0 else "max")
    assert _drive(stop, values)[0] == _reference_epochs(values, 1, sign=sign)
    assert stop.best == (0.7 if sign < 0 else 0.5)


def test_early_stopping_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: mode='maximum'"):
        EarlyStopping(mode="maximum")
    with pytest.raises(ValueError, match=r"Received: patience=-1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match=r"Received: start_from_epoch=1.5"):
        EarlyStopping(start_from_epoch=1.5)


def test_early_stopping_start_from_epoch():
    values = [5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 1.0, 1.0, 1.0]
    assert _drive(EarlyStopping(monitor="loss", patience=1), values)[0] == 2
    stop = EarlyStopping(monitor="loss", patience=1, start_from_epoch=4)
    run, _ = _drive(stop, values)
    assert run == _reference_epochs(values, 1, start=4) == 7
    assert stop.best == 1.0 and stop.best_epoch == 5


def test_early_stopping_baseline():
    # improving every epoch never stops, even without ever beating the baseline (Keras 3)
    values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    stop = EarlyStopping(monitor="loss", patience=2, baseline=0.3)
    assert _drive(stop, values)[0] == _reference_epochs(values, 2, baseline=0.3) == 6
    # Keras 3's case: no epoch beats 0.5, so the improving epochs count too: 5 epochs run
    values = [0.9, 0.8, 0.7, 0.71, 0.72, 0.73]
    stop = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5,
                         restore_best_weights=True)
    run, model = _drive(stop, values)
    assert run == _reference_epochs(values, 5, baseline=0.5) == 5
    assert model.get_weights()[0] == 2.0
    # beats 0.75 from epoch 2 on: the wait restarts
    values = [0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6]
    stop = EarlyStopping(monitor="loss", patience=2, baseline=0.75)
    assert _drive(stop, values)[0] == _reference_epochs(values, 2, baseline=0.75) == 5
    # a baseline to exceed, in max mode
    values = [0.5, 0.6, 0.7, 0.8, 0.6, 0.6]
    stop = EarlyStopping(monitor="val_accuracy", patience=1, baseline=0.65)
    assert _drive(stop, values)[0] == _reference_epochs(values, 1, sign=-1.0,
                                                       baseline=0.65) == 5


def test_early_stopping_restores_the_best_weights():
    values = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    run, model = _drive(stop, values)
    assert run == 4 and stop.best_epoch == 1
    assert model.get_weights()[0] == 1.0  # the weights after epoch 1
    # without restore_best_weights the last weights stay
    run, model = _drive(EarlyStopping(monitor="val_loss", patience=2), values)
    assert model.get_weights()[0] == 3.0


def test_early_stopping_restores_even_when_training_runs_out():
    values = [1.0, 0.5, 0.7]
    stop = EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    run, model = _drive(stop, values)
    assert run == 3 and not model.stop_training
    assert model.get_weights()[0] == 1.0


def test_early_stopping_restores_the_first_monitored_epoch():
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True,
                         baseline=0.1)
    run, model = _drive(stop, [1.0, 2.0, 3.0])
    assert run == 2 and model.get_weights()[0] == 0.0


def test_early_stopping_is_reusable():
    values = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    first = _drive(stop, values)[0]
    assert _drive(stop, values)[0] == first == 3
    assert stop.best == 0.5 and stop.best_epoch == 1


def test_early_stopping_verbose(capsys):
    stop = EarlyStopping(monitor="loss", patience=1, verbose=1, restore_best_weights=True)
    _drive(stop, [1.0, 0.5, 0.7, 0.8, 0.9])
    assert capsys.readouterr().out == ("Epoch 3: early stopping\n"
                                       "Restoring model weights from the end of the best "
                                       "epoch: 2.\n")
    _drive(EarlyStopping(monitor="loss", patience=1), [1.0, 0.5, 0.7, 0.8, 0.9])
    assert capsys.readouterr().out == ""


def test_early_stopping_missing_monitor_warns_and_skips_the_epoch():
    stop = EarlyStopping(patience=0)
    with pytest.warns(RuntimeWarning, match=r"`val_loss` which is not available. Available "
                                            r"metrics are: loss,other"):
        run, model = _drive(stop, [1.0, 2.0, 3.0], monitor="loss")
    assert run == 3 and not model.stop_training and stop.wait == 0


# ---- callbacks in real fits --------------------------------------------------------------

import csv  # noqa: E402
import os  # noqa: E402

import fastnn  # noqa: E402
from fastnn.callbacks import (BackupAndRestore, CSVLogger, LambdaCallback,  # noqa: E402
                              LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau,
                              TerminateOnNaN)
from fastnn.layers import Dense, Dropout  # noqa: E402


def _data(n=40, seed=0):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 3)).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)


def _model(seed=0, optimizer="sgd", dropout=False):
    fastnn.utils.set_random_seed(seed)
    layers = [Dense(6, activation="relu", input_shape=(3,))] + \
        ([Dropout(0.25)] if dropout else []) + [Dense(1)]
    model = fastnn.Sequential(layers)
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def _same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


class SavingStub(StubModel):
    def __init__(self):
        super().__init__()
        self.saved = []

    def save(self, path):
        self.saved.append(("model", os.path.basename(path)))

    def save_weights(self, path):
        self.saved.append(("weights", os.path.basename(path)))


def _epochs(callback, logs_per_epoch, model=None):
    model = model or SavingStub()
    cbs = CallbackList([callback], model=model)
    cbs.on_train_begin()
    for epoch, logs in enumerate(logs_per_epoch):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, logs)
    cbs.on_train_end()
    return model


def test_checkpoint_file_names_hold_the_epoch_and_the_logs(tmp_path):
    model, (x, y) = _model(), _data()
    cp = ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{loss:.4f}.fnn"), monitor="loss")
    hist = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[cp])
    names = [f"ck-{e + 1:02d}-{v:.4f}.fnn" for e, v in enumerate(hist.history["loss"])]
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    last = fastnn.models.load_model(tmp_path / names[-1])
    assert _same_weights(last, model)


def test_checkpoint_save_best_only_on_a_stub(capsys):
    cp = ModelCheckpoint("best-{epoch}.fnn", save_best_only=True, verbose=1)
    model = _epochs(cp, [{"val_loss": v} for v in (1.0, 0.8, 0.9, 0.7, 0.7)])
    assert model.saved == [("model", "best-1.fnn"), ("model", "best-2.fnn"),
                           ("model", "best-4.fnn")]
    out = capsys.readouterr().out
    assert "Epoch 2: val_loss improved from 1.00000 to 0.80000, saving model to best-2.fnn" \
        in out and "Epoch 3: val_loss did not improve from 0.80000" in out
    cp = ModelCheckpoint("w.fnn", monitor="val_accuracy", save_best_only=True,
                         save_weights_only=True)
    model = _epochs(cp, [{"val_accuracy": v} for v in (0.5, 0.4, 0.6)])
    assert model.saved == [("weights", "w.fnn")] * 2 and cp.best == 0.6
    cp = ModelCheckpoint("t.fnn", save_best_only=True, initial_value_threshold=0.75)
    assert _epochs(cp, [{"val_loss": v} for v in (1.0, 0.8, 0.7)]).saved == \
        [("model", "t.fnn")]
    with pytest.warns(RuntimeWarning, match="Can save best model only with val_loss"):
        model = _epochs(ModelCheckpoint("m.fnn", save_best_only=True), [{"loss": 1.0}])
    assert model.saved == [("model", "m.fnn")]


def test_checkpoint_best_only_keeps_the_best_model(tmp_path):
    model, (x, y) = _model(optimizer=fastnn.optimizers.SGD(0.05)), _data(64)
    path = tmp_path / "sub" / "best.fnn"  # the folder is created
    cp = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    hist = model.fit(x, y, epochs=8, batch_size=8, validation_split=0.25, verbose=0,
                     callbacks=[cp])
    best = fastnn.models.load_model(path)
    np.testing.assert_allclose(best.evaluate(x[48:], y[48:])[0], min(hist.history["val_loss"]),
                               rtol=1e-6)
    assert cp.best == min(hist.history["val_loss"])


def test_checkpoint_weights_every_n_batches(tmp_path):
    model, (x, y) = _model(), _data(40)
    cp = ModelCheckpoint(str(tmp_path / "{epoch}-{batch}.w"), save_weights_only=True,
                         save_freq=4)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0, callbacks=[cp])
    # 10 batches an epoch; the count goes on across epochs, as Keras counts it
    assert sorted(os.listdir(tmp_path)) == sorted(["1-4.w", "1-8.w", "2-2.w", "2-6.w",
                                                    "2-10.w"])
    twin = _model(seed=9)
    twin.load_weights(tmp_path / "2-10.w")
    assert _same_weights(twin, model)


def test_checkpoint_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: save_freq=0"):
        ModelCheckpoint("a.fnn", save_freq=0)
    with pytest.raises(ValueError, match=r"Received: mode='best'"):
        ModelCheckpoint("a.fnn", mode="best")
    with pytest.raises(TypeError, match=r"Received: filepath=3"):
        ModelCheckpoint(3)
    cp = ModelCheckpoint("{epoch}-{val_acc:.2f}.fnn")
    with pytest.raises(ValueError, match=r"cannot fill filepath='\{epoch\}-\{val_acc:.2f\}"
                                         r".fnn' \(KeyError: 'val_acc'\)"):
        _epochs(cp, [{"loss": 1.0}])


class OptimizerStub(StubModel):
    def __init__(self, learning_rate):
        super().__init__()
        self.optimizer = fastnn.optimizers.SGD(learning_rate)


def _plateau(callback, values, lr):
    """(the learning rate logged for each epoch, the rate after each epoch)."""
    model, logged, after = OptimizerStub(lr), [], []
    for epoch, v in enumerate(values):
        logs = {callback.monitor: v}
        _epochs_one = CallbackList([callback], model=model)
        if epoch == 0:
            _epochs_one.on_train_begin()
        _epochs_one.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        after.append(model.optimizer.learning_rate)
    return logged, after


def test_reduce_lr_on_plateau_patience_cooldown_and_min_lr():
    values = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    logged, after = _plateau(ReduceLROnPlateau(factor=0.5, patience=2), values, 0.1)
    assert after == [0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]
    assert logged == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
    _, after = _plateau(ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2), [1.0] * 6, 1.0)
    assert after == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    _, after = _plateau(ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05), [1.0] * 5,
                        1.0)
    assert after == [1.0, 0.1, 0.05, 0.05, 0.05]
    # min_delta: 0.99995 is no improvement on 1.0 by more than 1e-4
    _, after = _plateau(ReduceLROnPlateau(factor=0.5, patience=1), [1.0, 0.99995], 1.0)
    assert after == [1.0, 0.5]
    _, after = _plateau(ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1),
                        [0.5, 0.6, 0.55], 1.0)  # accuracy is maximised
    assert after == [1.0, 1.0, 0.5]


def test_reduce_lr_on_plateau_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"does not support a factor >= 1.0. Received: "
                                         r"factor=1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match=r"Received: patience=-2"):
        ReduceLROnPlateau(patience=-2)
    with pytest.raises(ValueError, match=r"Received: min_lr=-1"):
        ReduceLROnPlateau(min_lr=-1)


def test_reduce_lr_on_plateau_in_a_fit_sets_the_rate_of_the_next_steps():
    x, y = _data(32)
    model = _model(optimizer=fastnn.optimizers.SGD(0.01))
    # nothing improves by 1e9 after the first epoch: the rate halves after every epoch
    reduce = ReduceLROnPlateau(monitor="loss", min_delta=1e9, factor=0.5, patience=1)
    hist = model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[reduce])
    rates = [0.01, 0.01, 0.005, 0.0025]
    assert hist.history["learning_rate"] == rates
    assert model.optimizer.learning_rate == 0.00125
    # the same rates from a scheduler give the same weights: each took effect at once
    twin = _model(optimizer=fastnn.optimizers.SGD(0.01))
    twin.fit(x, y, epochs=4, batch_size=8, verbose=0,
             callbacks=[LearningRateScheduler(lambda epoch, lr: rates[epoch])])
    assert _same_weights(model, twin)
    plain = _model(optimizer=fastnn.optimizers.SGD(0.01))
    hist = plain.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[History()])
    assert not _same_weights(model, plain) and "learning_rate" not in hist.history


def test_learning_rate_scheduler_values():
    x, y = np.arange(100, dtype=np.float32).reshape(5, 20) / 100, np.zeros((5, 10), np.float32)
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential([Dense(10, input_shape=(20,))])
    model.compile(fastnn.optimizers.SGD(), loss="mse")
    assert round(model.optimizer.learning_rate, 5) == 0.01

    def schedule(epoch, lr):  # Keras' documented example
        return lr if epoch < 10 else lr * np.exp(-0.1)
    hist = model.fit(x, y, epochs=15, verbose=0, callbacks=[LearningRateScheduler(schedule)])
    assert round(model.optimizer.learning_rate, 5) == 0.00607
    expected = [0.01] * 10 + [0.01 * np.exp(-0.1 * k) for k in range(1, 6)]
    np.testing.assert_allclose(hist.history["learning_rate"], expected, rtol=1e-12)
    # a schedule of the epoch alone
    hist = model.fit(x, y, epochs=3, verbose=0,
                     callbacks=[LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))])
    assert hist.history["learning_rate"] == [0.1, 0.05, 0.1 / 3]


def test_learning_rate_scheduler_takes_effect_from_its_epoch():
    x, y = _data(32)
    model = _model()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
        LearningRateScheduler(lambda epoch, lr: 0.01 if epoch == 0 else 0.0)])
    once = _model()
    once.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert _same_weights(model, once)


def test_learning_rate_scheduler_rejects_bad_schedules():
    x, y = _data(8)
    with pytest.raises(TypeError, match="Received: schedule=0.1"):
        LearningRateScheduler(0.1)
    for bad in ("0.1", -1.0, float("nan")):
        with pytest.raises(ValueError, match="The output of the `schedule` function"):
            _model().fit(x, y, verbose=0,
                         callbacks=[LearningRateScheduler(lambda epoch, lr, b=bad: b)])


def test_terminate_on_nan(capsys):
    x, y = np.full((16, 3), 1e30, np.float32), np.zeros(16, np.float32)
    model = _model()
    with pytest.warns(RuntimeWarning, match="NaN or Inf"):
        hist = model.fit(x, y, epochs=5, batch_size=4, verbose=0, callbacks=[TerminateOnNaN()])
    assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out
    assert model.stop_training and hist.epoch == [0]
    assert not np.isfinite(hist.history["loss"][0])
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        _model().fit(x, y, epochs=5, batch_size=4, verbose=0,
                     callbacks=[TerminateOnNaN(raise_error=True)])
    # it reads the chunk's last step: fit need not stop after every step for it
    assert not CallbackList([TerminateOnNaN()]).wants_train_batch_hooks


def test_csv_logger_rows_and_append(tmp_path):
    x, y = _data(40)
    path = tmp_path / "log.csv"
    model = _model()
    hist = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0,
                     callbacks=[CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1, 2]
    for j, key in enumerate(rows[0][1:], 1):
        assert [float(r[j]) for r in rows[1:]] == hist.history[key]
    model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 6 and rows.count(rows[0]) == 1 and [r[0] for r in rows[4:]] == ["0", "1"]
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    assert open(path).read().splitlines()[0] == "epoch;loss;mae"
    with pytest.raises(ValueError, match=r"Received: separator=';;'"):
        CSVLogger(path, separator=";;")


def test_lambda_callback_calls_positionally():
    x, y = _data(20)
    seen, batches = [], []
    cb = LambdaCallback(on_train_begin=lambda logs: seen.append("begin"),
                        on_epoch_end=lambda e, l: seen.append((e, sorted(l))),
                        on_train_batch_end=lambda b, l: batches.append((b, "loss" in l)),
                        on_train_end=lambda logs: seen.append("end"))
    _model().fit(x, y, epochs=2, batch_size=5, verbose=0, callbacks=[cb])
    assert seen == ["begin", (0, ["loss", "mae"]), (1, ["loss", "mae"]), "end"]
    assert batches == [(b, True) for b in range(4)] * 2  # a batch hook sees every batch
    assert not CallbackList([LambdaCallback(on_epoch_end=print)]).wants_train_batch_hooks
    tested = []
    _model().evaluate(x, y, callbacks=[LambdaCallback(on_test_end=tested.append)])
    assert sorted(tested[0]) == ["loss", "mae"]
    with pytest.raises(TypeError, match="unknown hook 'on_epoch_finish'"):
        LambdaCallback(on_epoch_finish=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function"):
        LambdaCallback(on_epoch_end=3)


class Interrupt(Callback):
    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise KeyboardInterrupt

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "nadam"])
def test_backup_and_restore_resumes_to_the_same_weights(tmp_path, optimizer):
    x, y = _data(50)
    straight = _model(optimizer=optimizer, dropout=True)
    straight.fit(x, y, epochs=6, batch_size=8, verbose=0)
    model = _model(optimizer=optimizer, dropout=True)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=6, batch_size=8, verbose=0,
                  callbacks=[BackupAndRestore(tmp_path / "b"), Interrupt(3)])
    assert os.listdir(tmp_path / "b") == [BackupAndRestore.FILE]
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # the state drifts meanwhile
    hist = model.fit(x, y, epochs=6, batch_size=8, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path / "b")])
    assert hist.epoch == [3, 4, 5]
    assert _same_weights(model, straight)
    assert model.optimizer.iterations == straight.optimizer.iterations == 6 * 7
    assert not os.path.exists(tmp_path / "b")  # deleted at the end of the completed fit


def test_backup_and_restore_every_n_batches_resumes_at_the_epoch_start(tmp_path):
    x, y = _data(40)
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, batch_size=4, verbose=0,
                  callbacks=[BackupAndRestore(tmp_path, save_freq=5, delete_checkpoint=False),
                             Interrupt(2, batch=7)])
    hist = model.fit(x, y, epochs=4, batch_size=4, verbose=0,
                     callbacks=[BackupAndRestore(tmp_path, save_freq=5,
                                                 delete_checkpoint=False)])
    assert hist.epoch == [2, 3]
    assert os.listdir(tmp_path) == [BackupAndRestore.FILE]  # kept


def test_backup_and_restore_checks(tmp_path):
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        BackupAndRestore("")
    with pytest.raises(ValueError, match=r"Received: save_freq='batch'"):
        BackupAndRestore(tmp_path, save_freq="batch")
    x, y = _data(16)
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path),
                                                        Interrupt(1)])
    other = fastnn.Sequential([Dense(2, input_shape=(3,)), Dense(1)])
    other.compile(loss="mse")
    with pytest.raises(ValueError, match=r"weight 0: expected shape \(3, 2\)"):  # another model
        other.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
    unbuilt = fastnn.Sequential([Dense(6, activation="relu"), Dense(1)])
    unbuilt.compile(loss="mse")
    with pytest.raises(ValueError, match="your model must be built before you call fit"):
        unbuilt.fit(iter([(x, y)]), epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path)])
