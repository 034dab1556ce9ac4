"""Callbacks see whole epochs: the engine runs each epoch in one native call,
so there are no per-batch hooks (on_epoch_* and on_train_* only)."""
import sys
import time

import numpy as np


class Callback:
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


class History(Callback):
    """Per-epoch logs: history.history["loss"], ["val_loss"], ...; history.epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


class ProgbarLogger(Callback):
    """Keras-style lines: 'Epoch 3/100', then '13/13 [=====] - 0s 85us/step - loss: ...'."""

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        if self.verbose == 1:
            self.stream.write(f"Epoch {epoch + 1}/{self.params['epochs']}\n")

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._t0
        steps = self.params["steps"]
        metrics = "".join(f" - {k}: {_format_value(v)}" for k, v in (logs or {}).items())
        if self.verbose == 1:
            bar = "[" + "=" * 30 + "]"
            line = (f"{steps}/{steps} {bar} - {elapsed:.0f}s "
                    f"{_format_time(elapsed / max(steps, 1))}/step{metrics}")
        else:
            line = (f"Epoch {epoch + 1}/{self.params['epochs']} - {_format_time(elapsed)}"
                    f"{metrics}")
        self.stream.write(line + "\n")
        self.stream.flush()


class EarlyStopping(Callback):
    """Stops when `monitor` has not improved by min_delta for `patience` epochs."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="min",
                 restore_best_weights=False):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'. Received: mode={mode!r}")
        self.monitor, self.patience = monitor, int(patience)
        self.min_delta = abs(float(min_delta))
        self.sign = 1.0 if mode == "min" else -1.0
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.best_weights, self.stopped_epoch = np.inf, 0, None, 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor not in (logs or {}):
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which the logs lack: "
                             f"{sorted(logs or {})}")
        value = self.sign * logs[self.monitor]
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.stopped_epoch = epoch
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch:
            self.model.set_weights(self.best_weights)
