"""fit() as a person at a terminal sees it: the progress line moves within an epoch, Ctrl-C
stops training at once with the model intact, and batch callbacks see every batch.

The first two run a child Python (the fastnn these tests import) under a pseudo-terminal or
a pipe, so they need POSIX."""
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn
from fastnn.callbacks import Callback
from fastnn.layers import Dense

posix_only = pytest.mark.skipif(os.name != "posix" or sys.platform == "emscripten",
                                reason="needs POSIX pseudo-terminals and signals")


def _child(code, **kwargs):
    """A child Python running `code`, importing the same fastnn as these tests."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.pop("COLUMNS", None)
    # cwd=root: sys.path[0] of `python -c` is the working directory, so it finds the same
    # package whatever directory the tests run from
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=root,
                            **kwargs)


def _read_until(fd, deadline, stop=lambda data: False):
    """Bytes read from fd until EOF (or EIO: a pty whose child has gone), `stop(data)`,
    or the deadline."""
    data = b""
    while not stop(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO on Linux once the pty's other end is closed
            break
        if not chunk:
            break
        data += chunk
    return data


# ---- (a) the progress line moves on a terminal ----------------------------------------------

# The epoch is sized in the child to about 0.7 s, from a timed run of the same model, so
# that the line is redrawn several times whatever the machine's speed. (The model is wider
# than a toy one so that the data stays small: a 32-64-1 net trains 200k rows in ~0.05 s.)
_PROGRESS_CHILD = """
    import time
    import numpy as np
    import fastnn
    from fastnn.layers import Dense

    def make():
        model = fastnn.Sequential([Dense(256, input_shape=(32,), activation="relu"),
                                   Dense(256, activation="relu"), Dense(1)])
        model.compile(loss="mse", optimizer="sgd")
        return model

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8192, 32), dtype=np.float32)
    y = rng.standard_normal((8192, 1), dtype=np.float32)
    calibrate = make()
    calibrate.fit(x, y, batch_size=32, epochs=1, verbose=0)  # warm-up
    t = time.perf_counter()
    calibrate.fit(x, y, batch_size=32, epochs=1, verbose=0)
    rows = int(min(max(8192 * 0.7 / (time.perf_counter() - t), 8192), 500_000))
    x = rng.standard_normal((rows, 32), dtype=np.float32)
    y = rng.standard_normal((rows, 1), dtype=np.float32)
    make().fit(x, y, batch_size=32, epochs=1, verbose=1)
    print("steps", -(-rows // 32))
"""


@posix_only
def test_progress_line_moves_within_an_epoch_on_a_terminal():
    import pty

    master, slave = pty.openpty()
    try:
        proc = _child(_PROGRESS_CHILD, stdin=slave, stdout=slave, stderr=slave,
                      close_fds=True)
        os.close(slave)
        slave = None
        try:
            data = _read_until(master, time.monotonic() + 60)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    # the terminal turns "\n" into "\r\n"
    out = data.decode("utf-8", "replace").replace("\r\n", "\n")
    assert proc.returncode == 0, out
    steps = int(re.search(r"^steps (\d+)$", out, re.M).group(1))
    assert out.startswith("Epoch 1/1\n"), out
    draws = [int(m.group(1)) for m in re.finditer(r"\r\s*(\d+)/%d \[" % steps, out)]
    assert draws and draws[-1] == steps, out
    running = draws[:-1]
    assert running == sorted(running), out
    # at least two redraws of the running line, at distinct steps, before the final N/N
    assert len({s for s in running if s < steps}) >= 2, out
    etas = re.findall(r"\r\s*\d+/%d \[[=>.]+\] - ETA: \d[\d:]*s? - loss: " % steps, out)
    assert len(etas) == len(running), out
    assert re.search(r"\r%d/%d \[=+\] - \d+s \d+(us|ms|s)/step - loss: [0-9.e+-]+ *\n"
                     % (steps, steps), out), out


# ---- (b) Ctrl-C stops training promptly -------------------------------------------------------

_SIGINT_CHILD = """
    import signal
    import sys
    import numpy as np
    import fastnn
    from fastnn.layers import Dense

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 8), dtype=np.float32)  # 10**6 epochs: minutes of work
    y = (x[:, :1] * 0.5).astype(np.float32)
    model = fastnn.Sequential([Dense(16, input_shape=(8,), activation="relu"), Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    print("started", flush=True)
    try:
        model.fit(x, y, batch_size=32, epochs=10**6, verbose=0)
        print("fit returned", flush=True)
    except KeyboardInterrupt:
        p = model.predict(x[:16])
        ok = p.shape == (16, 1) and bool(np.all(np.isfinite(p)))
        print("interrupted ok" if ok else "interrupted, bad predictions", flush=True)
"""


@posix_only
def test_ctrl_c_interrupts_fit_within_a_second():
    proc = _child(_SIGINT_CHILD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    fd = proc.stdout.fileno()
    try:
        out = _read_until(fd, time.monotonic() + 30, lambda d: b"started\n" in d)
        assert b"started\n" in out, out.decode(errors="replace")
        time.sleep(0.3)
        assert proc.poll() is None, out.decode(errors="replace")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out += _read_until(fd, sent + 5)
        try:
            proc.wait(timeout=max(sent + 5 - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    text = out.decode(errors="replace")
    assert "interrupted ok" in text, text
    assert proc.returncode == 0, text
    assert took < 1.0, f"fit took {took:.2f} s to stop after SIGINT"


# ---- (c) batch callbacks see every batch -----------------------------------------------------

def _model():
    fastnn.utils.set_random_seed(3)
    model = fastnn.Sequential([Dense(8, input_shape=(4,), activation="relu"), Dense(1)])
    model.compile(loss="mse", optimizer="sgd", metrics=["mae"])
    return model


def _data(n=100):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True).astype(np.float32)


def test_batch_callback_sees_every_batch_in_order():
    seen = []

    class Batches(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(("epoch", epoch))

        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            assert set(logs) >= {"loss", "mae"} and np.isfinite(logs["loss"])
            seen.append(("end", batch))

    x, y = _data(100)
    _model().fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Batches()])
    steps = 7  # ceil(100 / 16)
    per_epoch = [e for b in range(steps) for e in (("begin", b), ("end", b))]
    assert seen == [e for epoch in range(3) for e in [("epoch", epoch)] + per_epoch]


def test_legacy_on_batch_end_sees_every_batch():
    seen = []

    class Legacy(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append((batch, "loss" in logs))

    x, y = _data(50)
    _model().fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[Legacy()])
    assert seen == [(b, True) for b in range(5)] * 2


def test_batch_logs_are_running_means_ending_at_the_epoch_logs():
    last = {}

    class Last(Callback):
        def on_train_batch_end(self, batch, logs=None):
            last[batch] = dict(logs)

    x, y = _data(64)
    hist = _model().fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False,
                        callbacks=[Last()])
    assert sorted(last) == [0, 1, 2, 3]
    assert last[3]["loss"] == pytest.approx(hist.history["loss"][0], rel=1e-5)
    assert last[3]["mae"] == pytest.approx(hist.history["mae"][0], rel=1e-5)


def test_epoch_only_callback_works():
    seen = []

    class Epochs(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    x, y = _data(100)
    hist = _model().fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[Epochs()])
    assert seen == [(e, ["loss", "mae"]) for e in range(3)]
    assert hist.epoch == [0, 1, 2]


def test_progress_off_a_terminal_is_one_line_per_epoch(capsys):
    x, y = _data(2000)
    _model().fit(x, y, batch_size=8, epochs=3, verbose=1)
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert re.fullmatch(r"250/250 \[={30}\] - \d+s \d+(us|ms|s)/step - loss: \S+ - "
                            r"mae: \S+", line), line
