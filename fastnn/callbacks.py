"""Callbacks: the hooks fit(), evaluate() and predict() call while they run, as in Keras 3.

The engine trains in chunks of steps (about 0.1 s each) and returns to Python between
chunks. Batch hooks then see the last step of each chunk, unless some callback overrides a
batch hook: CallbackList.wants_train_batch_hooks (and its test/predict twins) tell the loop
to run one step per chunk, so that such a callback sees every batch.
"""
from __future__ import annotations

import csv
import numbers
import os
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TextIO, Union

import numpy as np

from fastnn._typing import Logs

if TYPE_CHECKING:
    from fastnn.models.model import Model


class Callback:
    """Base class of the callbacks: every hook does nothing by default.

    Subclasses override the hooks they need. fit, evaluate and predict call the hooks
    with `logs` dicts of floats ("loss", the metrics, "val_..."); ``self.model`` is the
    model being run and ``self.params`` holds {"verbose", "epochs", "steps"}. fastnn
    runs many steps per native call: a callback that overrides a batch hook makes fit
    stop after every step to call it, so epoch-level hooks are the cheap ones.

    Example::

        class PrintLoss(fastnn.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                print(epoch, logs["loss"])

        model.fit(x, y, epochs=5, callbacks=[PrintLoss()])
    """

    def __init__(self) -> None:
        self.model = None
        self.params = {}

    def set_model(self, model: Model) -> None:
        """Sets ``self.model`` (called by fit, evaluate and predict)."""
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        """Sets ``self.params``: {"verbose", "epochs", "steps"} of the running call."""
        self.params = params

    def on_train_begin(self, logs: Logs = None) -> None:
        """Called once at the start of fit, before the first epoch."""
        pass

    def on_train_end(self, logs: Logs = None) -> None:
        """Called once at the end of fit with the last epoch's logs."""
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        """Called at the start of epoch `epoch` (counted from 0) during fit."""
        pass

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        """Called at the end of epoch `epoch` (from 0) with its logs: "loss", the
        metrics, and "val_" entries when fit validates. Set
        ``self.model.stop_training = True`` to stop."""
        pass

    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Called before training batch `batch` (from 0 in each epoch)."""
        self.on_batch_begin(batch, logs=logs)  # the pre-2.0 Keras name, still honoured

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Called after training batch `batch` with the epoch's running logs."""
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Keras' older name of on_train_batch_begin, still called by it."""
        pass

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Keras' older name of on_train_batch_end, still called by it."""
        pass

    def on_test_begin(self, logs: Logs = None) -> None:
        """Called at the start of evaluate (and of fit's validation)."""
        pass

    def on_test_end(self, logs: Logs = None) -> None:
        """Called at the end of evaluate (and of fit's validation) with its logs."""
        pass

    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Called before each evaluation batch (overriding it makes evaluate run
        batch by batch)."""
        pass

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Called after each evaluation batch with the running logs."""
        pass

    def on_predict_begin(self, logs: Logs = None) -> None:
        """Called at the start of predict."""
        pass

    def on_predict_end(self, logs: Logs = None) -> None:
        """Called at the end of predict."""
        pass

    def on_predict_batch_begin(self, batch: int, logs: Logs = None) -> None:
        """Called before a predict batch."""
        pass

    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None:
        """Called after a predict batch; logs["outputs"] holds its outputs."""
        pass


class History(Callback):
    """Records the logs of every epoch; fit returns it.

    ``history.history`` maps each logged name ("loss", "val_loss", metrics, ...) to the
    list of its per-epoch values; ``history.epoch`` lists the epochs run (from 0).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history = {}
        self.epoch = []

    def __getstate__(self):  # pickles its logs, not the model
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _format_value(v):
    v = float(np.mean(v))  # a per-class metric (F1Score(average=None)) shows its mean, as Keras
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _format_eta(seconds):
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def _is_terminal(stream):
    """Whether '\\r' redraws the line in place: a terminal, or a Jupyter cell's output."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False
    return "ipykernel" in sys.modules and (stream is sys.stdout or stream is sys.stderr)


class ProgbarLogger(Callback):
    """Keras-style progress: 'Epoch 3/100', then on a terminal one line redrawn in place,

        ' 5/13 [=========>....................] - ETA: 3s - loss: 0.1234'

    ending as '13/13 [==============================] - 0s 85us/step - loss: 0.1234'.
    Elsewhere (a log file, a pipe, CI) only the final line of each epoch is written.
    verbose=2 writes one line per epoch: 'Epoch 3/100 - 12ms - loss: 0.1234'.
    The stream defaults to sys.stdout, looked up at each write.
    """

    width = 30       # characters inside the bar's brackets
    interval = 0.05  # seconds between two redraws of the running line (the final one always)

    def __init__(self, verbose: int = 1, stream: Optional[TextIO] = None) -> None:
        super().__init__()
        if verbose == "auto":
            verbose = 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
        self.verbose = verbose
        self._stream = stream
        self._in_fit = False
        self._start(None)

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    # -- the bar ------------------------------------------------------------------------
    def _start(self, steps):
        self._steps = steps
        self._t0 = time.perf_counter()
        self._last_draw = -np.inf
        self._drawn = 0  # width of the running line on screen; 0 when none is
        self._seen = 0   # steps reported so far, for when `steps` is unknown
        self._dynamic = self.verbose == 1 and _is_terminal(self.stream)

    def _write(self, text):
        stream = self.stream
        stream.write(text)
        stream.flush()

    def _count(self, done):
        if not self._steps:
            return f"{done:7d}/Unknown"
        return f"{done:{len(str(self._steps))}d}/{self._steps}"

    def _bar(self, done):
        if not self._steps:
            return ""
        filled = min(int(self.width * done / self._steps), self.width)
        if 0 < filled < self.width:
            body = "=" * (filled - 1) + ">" + "." * (self.width - filled)
        else:
            body = "=" * filled + "." * (self.width - filled)
        return f" [{body}]"

    def _update(self, done, logs):
        """The running line, redrawn at most every `interval` seconds (terminals only)."""
        if not self._dynamic:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self._count(done) + self._bar(done)
        if self._steps and done:
            per_step = (now - self._t0) / done
            line += f" - ETA: {_format_eta(per_step * max(self._steps - done, 0))}"
        line += _format_logs(logs)
        self._write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)

    def _finish(self, logs):
        """The epoch's (or evaluation's) last line: step count, time, per-step time, logs."""
        elapsed = time.perf_counter() - self._t0
        done = self._steps or self._seen
        line = f"{self._count(done)}{self._bar(done)} - {elapsed:.0f}s"
        if done:
            line += f" {_format_time(elapsed / done)}/step"
        line += _format_logs(logs)
        if self._dynamic:
            line = "\r" + line.ljust(self._drawn)
        self._drawn = 0
        self._write(line + "\n")

    # -- fit ------------------------------------------------------------------------------
    def on_train_begin(self, logs: Logs = None) -> None:
        self._in_fit = True

    def on_train_end(self, logs: Logs = None) -> None:
        self._in_fit = False

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self._start(self.params.get("steps"))
        if self.verbose == 1:
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._seen = batch + 1
        self._update(batch + 1, logs)

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if self.verbose == 1:
            self._finish(logs)
        elif self.verbose == 2:
            elapsed = time.perf_counter() - self._t0
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs')} - "
                        f"{_format_time(elapsed)}{_format_logs(logs)}\n")

    # -- evaluate and predict (silent during fit's validation) ----------------------------
    def _eval_begin(self):
        if not self._in_fit:
            self._start(self.params.get("steps"))

    def _eval_batch(self, batch, logs):
        if not self._in_fit:
            self._seen = batch + 1
            self._update(batch + 1, logs)

    def _eval_end(self, logs):
        if not self._in_fit and self.verbose:
            self._finish(logs)

    def on_test_begin(self, logs: Logs = None) -> None:
        self._eval_begin()

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._eval_batch(batch, logs)

    def on_test_end(self, logs: Logs = None) -> None:
        self._eval_end(logs)

    def on_predict_begin(self, logs: Logs = None) -> None:
        self._eval_begin()

    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._eval_batch(batch, None)  # predict's logs hold outputs, not numbers to show

    def on_predict_end(self, logs: Logs = None) -> None:
        self._eval_end(None)


def _format_logs(logs):
    return "".join(f" - {k}: {_format_value(v)}" for k, v in (logs or {}).items())


# Hooks that decide whether the loop must stop after every step rather than every chunk.
_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


class CallbackList(Callback):
    """The callbacks of one fit/evaluate/predict call, each hook called on each in order.

    add_history appends a History (or reuses the one passed) as `.history`; add_progbar
    appends a ProgbarLogger(verbose) (or reuses the one passed) as `.progbar`. Every
    callback gets `model` and params {"verbose", "epochs", "steps"}.
    """

    def __init__(self, callbacks: Optional[Sequence[Callback]] = None, add_history: bool = False,
                 add_progbar: bool = False, verbose: int = 1, model: Optional[Model] = None,
                 epochs: Optional[int] = None, steps: Optional[int] = None) -> None:
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastnn.callbacks.Callback instances. "
                                f"Received: {cb!r}")
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self.progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)),
                            None)
        if add_history and self.history is None:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and self.progbar is None:
            self.progbar = ProgbarLogger(verbose)
            self.callbacks.append(self.progbar)
        if model is not None:
            self.set_model(model)
        self.set_params({"verbose": verbose, "epochs": epochs, "steps": steps})

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def set_model(self, model: Model) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    # -- which batch hooks someone listens to -----------------------------------------------
    def _wants(self, kind):
        for cb in self.callbacks:
            for hook in _BATCH_HOOKS[kind]:
                if hook in getattr(cb, "__dict__", ()):  # set on the instance
                    return True
                impl = getattr(type(cb), hook)
                if not any(impl is getattr(quiet, hook)
                           for quiet in (Callback, History, ProgbarLogger, TerminateOnNaN)):
                    return True
        return False

    @property
    def wants_train_batch_hooks(self) -> bool:
        """True when a callback other than History/ProgbarLogger/TerminateOnNaN (which do
        with each chunk's last step) overrides a train batch hook (legacy on_batch_begin/end
        included) or sets one on the instance: fit then runs one step per chunk."""
        return self._wants("train")

    @property
    def wants_test_batch_hooks(self) -> bool:
        return self._wants("test")

    @property
    def wants_predict_batch_hooks(self) -> bool:
        return self._wants("predict")

    # -- dispatch -------------------------------------------------------------------------
    def _call(self, hook, *args, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs=logs)

    def on_train_begin(self, logs: Logs = None) -> None:
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs: Logs = None) -> None:
        self._call("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None:
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._call("on_train_batch_end", batch, logs=logs)

    def on_batch_begin(self, batch: int, logs: Logs = None) -> None:
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._call("on_batch_end", batch, logs=logs)

    def on_test_begin(self, logs: Logs = None) -> None:
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs: Logs = None) -> None:
        self._call("on_test_end", logs=logs)

    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None:
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_begin(self, logs: Logs = None) -> None:
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs: Logs = None) -> None:
        self._call("on_predict_end", logs=logs)

    def on_predict_batch_begin(self, batch: int, logs: Logs = None) -> None:
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None:
        self._call("on_predict_batch_end", batch, logs=logs)


def _monitor_mode(owner, monitor, mode):
    """'min' or 'max' for `monitor`: mode itself, or with "auto" (as Keras) 'max' for
    accuracies and AUCs ('acc'/'auc' in the name, 'val_' aside) and 'min' for the rest."""
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(f"{owner}: monitor must be the name of a logged value, such as "
                         f"'val_loss'. Received: monitor={monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max'. Received: "
                         f"mode={mode!r}")
    if mode == "auto":
        name = monitor[4:] if monitor.startswith("val_") else monitor
        mode = "max" if "acc" in name or "auc" in name else "min"
    return mode


def _monitored(owner, monitor, logs):
    """logs[monitor] as a float, or None with a warning (as Keras) when the logs lack it:
    e.g. 'val_loss' on an epoch that validation_freq skips."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(f"{owner} is conditioned on metric `{monitor}` which is not "
                      f"available. Available metrics are: {','.join(logs or {})}",
                      RuntimeWarning, stacklevel=3)
        return None
    return float(value)


def _check_int(owner, name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}. Received: "
                         f"{name}={value!r}")
    return int(value)


def _check_real(owner, name, value, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{owner}: {name} must be a finite number{bound}. Received: "
                         f"{name}={value!r}")
    return float(value)


def _check_save_freq(owner, save_freq):
    if save_freq == "epoch":
        return save_freq
    if isinstance(save_freq, bool) or not isinstance(save_freq, numbers.Integral) \
            or save_freq < 1:
        raise ValueError(f"{owner}: save_freq must be 'epoch' or a positive number of "
                         f"batches. Received: save_freq={save_freq!r}")
    return int(save_freq)


class _BatchCounter:
    """Counts training batches across the batch hooks (which, when fit runs several steps
    per call, may skip batch numbers) and says when `every` have passed."""

    def __init__(self, every: int) -> None:
        self.every, self.seen, self.last = every, 0, -1

    def passed(self, batch: int) -> bool:
        self.seen += batch + 1 if batch <= self.last else batch - self.last
        self.last = batch
        if self.seen >= self.every:
            self.seen = 0
            return True
        return False

    def new_epoch(self) -> None:
        self.last = -1


class _SavesEvery(Callback):
    """What ModelCheckpoint and BackupAndRestore share: they act at the end of every epoch
    (save_freq="epoch": _at_epoch_end) or every save_freq training batches (_at_batch;
    then the batch hook is set on the instance, so fit runs one step per call)."""

    def __init__(self, owner: str, save_freq: Union[str, int]) -> None:
        super().__init__()
        self.save_freq = _check_save_freq(owner, save_freq)
        self._epoch = 0
        if self.save_freq != "epoch":
            self._batches = _BatchCounter(self.save_freq)
            self.on_train_batch_end = self._on_batch

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self._epoch = epoch
        if self.save_freq != "epoch":
            self._batches.new_epoch()

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if self.save_freq == "epoch":
            self._at_epoch_end(epoch, logs or {})

    def _on_batch(self, batch, logs=None):
        if self._batches.passed(batch):
            self._at_batch(batch, logs or {})


class EarlyStopping(Callback):
    """Stops fit when `monitor` has stopped improving, as Keras 3 does: every monitored
    epoch counts one more in `wait`; an epoch that beats the best so far by more than
    min_delta resets it (with a `baseline`, only if it also beats the baseline) and never
    stops training; any other epoch stops training once `wait` reaches `patience`.

    mode "auto" maximises names holding "acc" or "auc" and minimises the rest. Epochs
    before `start_from_epoch` are ignored, as are epochs whose logs lack `monitor` (with
    a warning). restore_best_weights puts back, at the end of training, the weights of
    the best epoch (those of the first monitored epoch if none improved).
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: Optional[float] = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        self.mode = _monitor_mode("EarlyStopping", monitor, mode)
        self.monitor = monitor
        self.patience = _check_int("EarlyStopping", "patience", patience)
        self.verbose = verbose
        self.min_delta = abs(_check_real("EarlyStopping", "min_delta", min_delta))
        self.sign = 1.0 if self.mode == "min" else -1.0  # better = smaller sign * value
        self.baseline = None if baseline is None else \
            _check_real("EarlyStopping", "baseline", baseline)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _check_int("EarlyStopping", "start_from_epoch",
                                           start_from_epoch)
        self.on_train_begin()

    def on_train_begin(self, logs: Logs = None) -> None:
        self.best, self.wait, self.best_weights = self.sign * np.inf, 0, None
        self.best_epoch, self.stopped_epoch = 0, 0

    def _beats(self, value, reference):
        """value is better than reference by more than min_delta, in the monitored sense."""
        return self.sign * value < self.sign * reference - self.min_delta

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        value = _monitored("Early stopping", self.monitor, logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._beats(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._beats(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _print(f"Restoring model weights from the end of the best epoch: "
                       f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


def _print(message):
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


class ModelCheckpoint(_SavesEvery):
    """Saves the model (model.save) or its weights (model.save_weights) at the end of
    every epoch, or every `save_freq` training batches, as Keras 3's ModelCheckpoint.

    filepath may hold format fields filled from the epoch (1-based), the batch (1-based,
    batch-level saves only) and the logs: "ckpt-{epoch:02d}-{val_loss:.3f}.fnn". Any file
    name is accepted (fastnn writes its own format whatever the extension). With
    save_best_only, a save happens only when `monitor` beats the best value so far (or
    initial_value_threshold); without the monitored value it saves anyway, with a warning.
    Missing folders are created.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: Union[str, int] = "epoch",
                 initial_value_threshold: Optional[float] = None) -> None:
        super().__init__("ModelCheckpoint", save_freq)
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise TypeError(f"ModelCheckpoint: filepath must be a non-empty path. Received: "
                            f"filepath={filepath!r}")
        self.filepath = os.fspath(filepath)
        self.mode = _monitor_mode("ModelCheckpoint", monitor, mode)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.best = (np.inf if self.mode == "min" else -np.inf) \
            if initial_value_threshold is None else \
            _check_real("ModelCheckpoint", "initial_value_threshold", initial_value_threshold)

    def _at_epoch_end(self, epoch, logs):
        self._save(epoch, None, logs)

    def _at_batch(self, batch, logs):
        self._save(self._epoch, batch, logs)

    def _file_path(self, epoch, batch, logs):
        fields = dict(logs, epoch=epoch + 1)
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"ModelCheckpoint cannot fill filepath={self.filepath!r} "
                             f"({type(e).__name__}: {e}); its fields can be epoch"
                             f"{', batch' if batch is not None else ''} and the logged "
                             f"values {sorted(logs)}") from None

    def _improved(self, epoch, path, logs):
        """save_best_only: whether this is the best value so far (and remember it)."""
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          RuntimeWarning, stacklevel=4)
            return True
        current = float(current)
        better = current < self.best if self.mode == "min" else current > self.best
        if self.verbose:
            if better:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} "
                       f"to {current:.5f}, saving model to {path}")
            else:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                       f"{self.best:.5f}")
        if better:
            self.best = current
        return better

    def _save(self, epoch, batch, logs):
        path = self._file_path(epoch, batch, logs)
        if self.save_best_only:
            if not self._improved(epoch, path, logs):
                return
        elif self.verbose:
            _print(f"\nEpoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        if os.path.isdir(path):
            raise ValueError(f"ModelCheckpoint: filepath names a folder ({path!r}); give a "
                             "file name")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class ReduceLROnPlateau(Callback):
    """Multiplies the optimizer's learning rate by `factor` once `monitor` has not improved
    by more than min_delta for `patience` epochs, as Keras 3: never below min_lr, then
    `cooldown` epochs before counting again. The new rate is live: the next step uses it.
    Adds "learning_rate" (the rate of the epoch that ended) to the epoch's logs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:
        super().__init__()
        owner = "ReduceLROnPlateau"
        factor = _check_real(owner, "factor", factor, 0.0)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received: factor={factor!r}")
        self.mode = _monitor_mode(owner, monitor, mode)
        self.monitor, self.factor, self.verbose = monitor, factor, verbose
        self.patience = _check_int(owner, "patience", patience)
        self.min_delta = _check_real(owner, "min_delta", min_delta)
        self.cooldown = _check_int(owner, "cooldown", cooldown)
        self.min_lr = _check_real(owner, "min_lr", min_lr, 0.0)
        self.on_train_begin()

    def on_train_begin(self, logs: Logs = None) -> None:
        self.best = np.inf if self.mode == "min" else -np.inf
        self.wait = self.cooldown_counter = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _better(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = {} if logs is None else logs
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = _monitored("Learning rate reduction", self.monitor, logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.learning_rate)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    optimizer.learning_rate = new
                    if self.verbose:
                        _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                               f"rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of every epoch to
    schedule(epoch, lr) (epoch from 0, lr the current rate; a schedule taking one argument
    gets the epoch alone), as Keras 3. Adds "learning_rate" to the epoch's logs."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function "
                            f"schedule(epoch, lr). Received: schedule={schedule!r}")
        self.schedule, self.verbose = schedule, verbose
        self._with_lr = _takes_two(schedule)

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        optimizer = self.model.optimizer
        lr = self.schedule(epoch, float(optimizer.learning_rate)) if self._with_lr else \
            self.schedule(epoch)
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real) or \
                not np.isfinite(lr) or lr < 0:
            raise ValueError(f"The output of the `schedule` function should be a "
                             f"non-negative float. Got: {lr!r}")
        optimizer.learning_rate = float(lr)
        if self.verbose:
            _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                   f"{float(lr)}.")

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _takes_two(fn):
    """Whether fn can be called with two positional arguments (epoch, lr)."""
    import inspect
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read: try the two-argument form
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class TerminateOnNaN(Callback):
    """Stops training when a batch's loss is NaN or Inf (fastnn's engine already stops a
    fit there and warns; this callback adds Keras' message and model.stop_training, or,
    with raise_error=True, raises RuntimeError). It does not make fit stop after every
    step: the engine's chunk ends at the step that diverged."""

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch: int, logs: Logs = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss "
                                   f"value: {loss}. Terminating training immediately.")
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Writes one CSV row per epoch: "epoch" (from 0) and the logged values, columns in
    sorted order of the first epoch's logs ("NA" for a value an epoch lacks), as Keras 3.
    append=True continues an existing file (without a second header). Lines end in
    '\\n'."""

    def __init__(self, filename: str, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)) or not os.fspath(filename):
            raise TypeError(f"CSVLogger: filename must be a non-empty path. Received: "
                            f"filename={filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character. Received: "
                             f"separator={separator!r}")
        self.filename, self.sep, self.append = os.fspath(filename), separator, bool(append)
        self.keys = self.writer = self.csv_file = None

    def on_train_begin(self, logs: Logs = None) -> None:
        header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                header = not f.readline()
        self._close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="",
                             encoding="utf-8")
        self.keys, self.writer, self._header = None, None, header

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep, lineterminator="\n")
            if self._header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])
        self.csv_file.flush()

    def on_train_end(self, logs: Logs = None) -> None:
        self._close()

    def _close(self):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(v):
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if hasattr(v, "__iter__"):
        return "[" + ", ".join(map(str, v)) + "]"
    return v


_HOOK_NAMES = tuple(name for name in vars(Callback) if name.startswith("on_"))


class LambdaCallback(Callback):
    """A callback from functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...).
    Each is called with the hook's positional arguments and the logs, as Keras 3 calls
    them: on_epoch_begin/end(epoch, logs), on_train_begin/end(logs),
    on_train_batch_begin/end(batch, logs); any other hook (on_test_end=..., ...) by its
    name. A batch hook makes fit stop after every step, so that it sees each batch."""

    def __init__(self, on_epoch_begin: Optional[Callable[[int, Logs], Any]] = None,
                 on_epoch_end: Optional[Callable[[int, Logs], Any]] = None,
                 on_train_begin: Optional[Callable[[Logs], Any]] = None,
                 on_train_end: Optional[Callable[[Logs], Any]] = None,
                 on_train_batch_begin: Optional[Callable[[int, Logs], Any]] = None,
                 on_train_batch_end: Optional[Callable[[int, Logs], Any]] = None,
                 **kwargs: Any) -> None:
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for name, fn in hooks.items():
            if name not in _HOOK_NAMES:
                raise TypeError(f"LambdaCallback got an unknown hook {name!r}; the hooks are "
                                f"{list(_HOOK_NAMES)}")
            if fn is None:
                continue
            if not callable(fn):
                raise TypeError(f"LambdaCallback: {name} must be a function. Received: "
                                f"{name}={fn!r}")
            setattr(self, name, _positional(fn))


def _positional(fn):
    def hook(*args, logs=None):
        return fn(*args, logs)
    return hook


class BackupAndRestore(_SavesEvery):
    """Backs up the training state in `backup_dir` at the end of every epoch (or every
    `save_freq` batches) and, when a fit is started again after an interruption, restores
    it: the weights, the optimizer's slots and iterations, and the epoch to go on from, as
    Keras 3. After an epoch-end backup of a fit on arrays, the resumed fit also draws the
    same shuffles and dropout masks as the interrupted one would have, so it ends with the
    same weights as a fit that was never interrupted. A batch-level backup resumes at the
    start of its epoch (as Keras). The backup is one file, written atomically; at the end
    of a completed fit it is deleted (delete_checkpoint=True), with backup_dir if that is
    left empty. The model must be built before fit when there is a backup to restore."""

    FILE = "fastnn_backup.npz"

    def __init__(self, backup_dir: str, save_freq: Union[str, int] = "epoch",
                 delete_checkpoint: bool = True) -> None:
        if not isinstance(backup_dir, (str, os.PathLike)) or not os.fspath(backup_dir):
            raise ValueError(f"Empty `backup_dir` argument passed. Received: "
                             f"backup_dir={backup_dir!r}")
        super().__init__("BackupAndRestore", save_freq)
        self.backup_dir = os.fspath(backup_dir)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, self.FILE)

    def on_train_begin(self, logs: Logs = None) -> None:
        if not os.path.exists(self._path):
            return
        if not self.model.built or not self.model.weights:
            raise ValueError(f"To use the BackupAndRestore callback, your model must be built "
                             f"before you call fit(). Model '{self.model.name}' is not built: "
                             "give it an input shape, or call it on a batch of data first.")
        try:
            with np.load(self._path, allow_pickle=False) as f:
                state = {k: f[k] for k in f.files}
            n_weights, n_slots = int(state["n_weights"]), int(state["n_slots"])
            weights = [state[f"weight_{i}"] for i in range(n_weights)]
            slots = [state[f"slot_{i}"] for i in range(n_slots)]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"BackupAndRestore: {self._path!r} is not a readable backup "
                             f"({type(e).__name__}: {e})") from None
        self.model.set_weights(weights)
        if n_slots:
            opt = self.model._optimizer_state()
            if len(opt.slots) != n_slots or any(s.shape != (opt.size,) for s in slots):
                raise ValueError(f"BackupAndRestore: the backup in {self._path!r} was made "
                                 "with another optimizer or model")
            for own, saved in zip(opt.slots, slots):
                np.asarray(own)[:opt.size] = saved
            opt.iterations = int(state["iterations"])
            if "u_product" in state and hasattr(opt, "u_product"):
                opt.u_product = float(state["u_product"])
        resume = {"epoch": int(state["epoch"])}
        for key in ("perm", "shuffle_state", "dropout_state"):
            if key in state:
                resume[key] = state[key] if key == "perm" else int(state[key])
        self.model._resume = resume

    def _at_epoch_end(self, epoch, logs):
        self._save(epoch + 1, self.model._fit_snapshot())

    def _at_batch(self, batch, logs):
        self._save(self._epoch, {})  # mid-epoch: resumes at the start of this epoch

    def _save(self, epoch, streams):
        import io
        from fastnn import saving
        arrays = {"epoch": np.int64(epoch)}
        weights = self.model.get_weights()
        arrays["n_weights"] = np.int64(len(weights))
        arrays.update((f"weight_{i}", w) for i, w in enumerate(weights))
        opt = getattr(self.model, "_opt_state", None)
        slots = [] if opt is None else [np.asarray(s)[:opt.size] for s in opt.slots]
        arrays["n_slots"] = np.int64(len(slots))
        arrays.update((f"slot_{i}", s) for i, s in enumerate(slots))
        if opt is not None:
            arrays["iterations"] = np.int64(opt.iterations)
            if hasattr(opt, "u_product"):
                arrays["u_product"] = np.float64(opt.u_product)
        for key, value in streams.items():
            arrays[key] = np.asarray(value) if key == "perm" else np.uint64(value)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        os.makedirs(self.backup_dir, exist_ok=True)
        saving.write_bytes(self._path, buf.getvalue())

    def on_train_end(self, logs: Logs = None) -> None:
        if self.delete_checkpoint and os.path.exists(self._path):
            os.remove(self._path)
            try:
                os.rmdir(self.backup_dir)
            except OSError:  # not empty: other files are not ours to delete
                pass
