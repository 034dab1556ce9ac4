"""Callbacks without the engine: CallbackList dispatch and batch-hook detection, the
ProgbarLogger's lines on terminals and elsewhere (under a fake clock), EarlyStopping on a
stub model driven epoch by epoch."""
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
    """Epochs run, from the rule: stop once more than `patience` monitored epochs in a row
    brought no improvement on the best so far (and on the baseline, if any) by min_delta."""
    best, wait = None, 0
    for epoch, v in enumerate(values):
        if epoch < start:
            continue
        v = sign * v
        better = best is None or v < best - min_delta
        if better:
            best = v
        if better and (baseline is None or v < sign * baseline - min_delta):
            wait = 0
        else:
            wait += 1
        if wait > patience:
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


def test_early_stopping_counts_from_the_first_epoch():
    # nothing improves: epoch 0 sets the best, epochs 1..patience+1 run out the patience
    run, _ = _drive(EarlyStopping(monitor="loss", patience=2), [1.0] * 10)
    assert run == 4


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


def test_early_stopping_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match=r"Received: mode='maximum'"):
        EarlyStopping(mode="maximum")


def test_early_stopping_start_from_epoch():
    values = [5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 1.0, 1.0, 1.0]
    assert _drive(EarlyStopping(monitor="loss", patience=1), values)[0] == 3
    stop = EarlyStopping(monitor="loss", patience=1, start_from_epoch=4)
    run, _ = _drive(stop, values)
    assert run == _reference_epochs(values, 1, start=4) == 8
    assert stop.best == 1.0 and stop.best_epoch == 5


def test_early_stopping_baseline():
    values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # never beats 0.3: stops once the patience runs out, improving or not
    stop = EarlyStopping(monitor="loss", patience=2, baseline=0.3)
    assert _drive(stop, values)[0] == _reference_epochs(values, 2, baseline=0.3) == 3
    # beats 0.75 from epoch 2 on: the wait restarts
    values = [0.9, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6]
    stop = EarlyStopping(monitor="loss", patience=2, baseline=0.75)
    assert _drive(stop, values)[0] == _reference_epochs(values, 2, baseline=0.75) == 6
    # a baseline to exceed, in max mode
    values = [0.5, 0.6, 0.7, 0.8]
    stop = EarlyStopping(monitor="val_accuracy", patience=0, baseline=0.65)
    assert _drive(stop, values)[0] == _reference_epochs(values, 0, sign=-1.0,
                                                       baseline=0.65) == 1


def test_early_stopping_restores_the_best_weights():
    values = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    run, model = _drive(stop, values)
    assert run == 5 and stop.best_epoch == 1
    assert model.get_weights()[0] == 1.0  # the weights after epoch 1
    # without restore_best_weights the last weights stay
    run, model = _drive(EarlyStopping(monitor="val_loss", patience=2), values)
    assert model.get_weights()[0] == 4.0


def test_early_stopping_restores_even_when_training_runs_out():
    values = [1.0, 0.5, 0.7]
    stop = EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    run, model = _drive(stop, values)
    assert run == 3 and not model.stop_training
    assert model.get_weights()[0] == 1.0


def test_early_stopping_is_reusable():
    values = [1.0, 0.5, 0.7, 0.8, 0.9, 1.0]
    stop = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    first = _drive(stop, values)[0]
    assert _drive(stop, values)[0] == first == 4
    assert stop.best == 0.5 and stop.best_epoch == 1


def test_early_stopping_verbose(capsys):
    stop = EarlyStopping(monitor="loss", patience=1, verbose=1, restore_best_weights=True)
    _drive(stop, [1.0, 0.5, 0.7, 0.8, 0.9])
    assert capsys.readouterr().out == ("Epoch 4: early stopping\n"
                                       "Restoring model weights from the end of the best "
                                       "epoch: 2.\n")
    _drive(EarlyStopping(monitor="loss", patience=1), [1.0, 0.5, 0.7, 0.8, 0.9])
    assert capsys.readouterr().out == ""


def test_early_stopping_missing_monitor():
    with pytest.raises(ValueError, match=r"monitors 'val_loss', which the logs lack: "
                                         r"\['loss', 'other'\]"):
        _drive(EarlyStopping(), [1.0], monitor="loss")
