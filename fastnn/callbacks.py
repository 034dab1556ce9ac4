"""Callbacks: the hooks fit(), evaluate() and predict() call while they run, as in Keras 3.

The engine trains in chunks of steps (about 0.1 s each) and returns to Python between
chunks. Batch hooks then see the last step of each chunk, unless some callback overrides a
batch hook: CallbackList.wants_train_batch_hooks (and its test/predict twins) tell the loop
to run one step per chunk, so that such a callback sees every batch.
"""
import sys
import time

import numpy as np


class Callback:
    """Base class: every hook does nothing. Subclasses override the hooks they need."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # the pre-2.0 Keras name, still honoured

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Per-epoch logs: history.history["loss"], ["val_loss"], ...; history.epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def __getstate__(self):  # pickles its logs, not the model
        state = dict(self.__dict__)
        state["model"] = None
        return state

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _format_value(v):
    v = float(v)
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

    def __init__(self, verbose=1, stream=None):
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
    def stream(self):
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
    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start(self.params.get("steps"))
        if self.verbose == 1:
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs')}\n")

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
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

    def on_test_begin(self, logs=None):
        self._eval_begin()

    def on_test_batch_end(self, batch, logs=None):
        self._eval_batch(batch, logs)

    def on_test_end(self, logs=None):
        self._eval_end(logs)

    def on_predict_begin(self, logs=None):
        self._eval_begin()

    def on_predict_batch_end(self, batch, logs=None):
        self._eval_batch(batch, None)  # predict's logs hold outputs, not numbers to show

    def on_predict_end(self, logs=None):
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

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, verbose=1,
                 model=None, epochs=None, steps=None):
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

    def append(self, callback):
        self.callbacks.append(callback)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
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
                           for quiet in (Callback, History, ProgbarLogger)):
                    return True
        return False

    @property
    def wants_train_batch_hooks(self):
        """True when a callback other than History/ProgbarLogger overrides a train batch
        hook (legacy on_batch_begin/end included): fit then runs one step per chunk."""
        return self._wants("train")

    @property
    def wants_test_batch_hooks(self):
        return self._wants("test")

    @property
    def wants_predict_batch_hooks(self):
        return self._wants("predict")

    # -- dispatch -------------------------------------------------------------------------
    def _call(self, hook, *args, logs=None):
        logs = {} if logs is None else logs
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs=logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs=logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs=logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs=logs)


class EarlyStopping(Callback):
    """Stops fit when `monitor` has not improved by min_delta for more than `patience`
    epochs in a row (the first epoch only sets the best value).

    mode "auto" maximises names holding "acc" or "auc" and minimises the rest. With a
    `baseline`, an epoch counts as an improvement only if it also beats the baseline.
    Epochs before `start_from_epoch` are ignored. restore_best_weights puts back, at the
    end of training, the weights of the best epoch seen.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
        if mode == "auto":
            name = monitor[4:] if monitor.startswith("val_") else monitor
            mode = "max" if "acc" in name or "auc" in name else "min"
        self.monitor, self.mode = monitor, mode
        self.patience, self.verbose = int(patience), verbose
        self.min_delta = abs(float(min_delta))
        self.sign = 1.0 if mode == "min" else -1.0  # better = smaller sign * value
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = int(start_from_epoch)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights = self.sign * np.inf, 0, None
        self.best_epoch, self.stopped_epoch, self._last_epoch = None, 0, None
        self._stopped = False

    def _beats(self, value, reference):
        """value is better than reference by more than min_delta, in the monitored sense."""
        return self.sign * value < self.sign * reference - self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the logs lack: "
                             f"{sorted(logs or {})}")
        self._last_epoch = epoch
        if epoch < self.start_from_epoch:
            return
        value = float(logs[self.monitor])
        new_best = self._beats(value, self.best)  # the first monitored epoch always is
        if new_best:
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        improved = new_best and (self.baseline is None or
                                 self._beats(value, float(self.baseline)))
        self.wait = 0 if improved else self.wait + 1
        if self.wait > self.patience:
            self.stopped_epoch, self._stopped = epoch, True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._stopped and self.verbose:
            sys.stdout.write(f"Epoch {self.stopped_epoch + 1}: early stopping\n")
        if self.restore_best_weights and self.best_weights is not None \
                and self.best_epoch != self._last_epoch:
            if self.verbose:
                sys.stdout.write(f"Restoring model weights from the end of the best epoch: "
                                 f"{self.best_epoch + 1}.\n")
            self.model.set_weights(self.best_weights)
