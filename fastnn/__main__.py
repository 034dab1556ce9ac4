"""Command line: ``fastnn demo``, ``fastnn bench [--quick]`` and
``fastnn export model.fastnn [--c DIR] [--name NAME] [--onnx FILE]`` (the console script
that ``pip install`` creates), or the same as ``python -m fastnn ...``."""
import argparse
import json
import os
import platform
import sys
import time


def _standardised_housing():
    import numpy as np
    from fastnn.datasets import boston_housing
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data()
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    f32 = np.float32
    return (((x_train - mean) / std).astype(f32), y_train.astype(f32),
            ((x_test - mean) / std).astype(f32), y_test.astype(f32))


def _article_model():
    import fastnn
    from fastnn.layers import Dense
    return fastnn.Sequential([Dense(10, input_shape=(13,), activation="relu"),
                              Dense(10, activation="relu"), Dense(1)])


def _digits_demo(args):
    """A small MLP classifier on the bundled digits: summary, progress, test accuracy and
    the confusion counts."""
    import numpy as np
    import fastnn
    from fastnn.datasets import digits
    from fastnn.layers import Dense, Normalization

    epochs = args.epochs or 30
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    print(f"Digits: {len(x_train)} training images, {len(x_test)} test images, 8x8 pixels "
          "(counts 0..16, standardised by a Normalization layer adapted on the training "
          "images)")
    fastnn.utils.set_random_seed(0)
    normalization = Normalization(input_shape=(64,))
    normalization.adapt(x_train)
    model = fastnn.Sequential([normalization, Dense(64, activation="relu"),
                               Dense(10, activation="softmax")])
    model.summary()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    print(f"fit: {epochs} epochs, batch 32, validation_split=0.1")
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1,
              verbose=args.verbose)
    loss, accuracy = model.evaluate(x_test, y_test)
    predicted = model.predict(x_test).argmax(axis=1)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y_test, predicted), 1)
    print(f"\ntest: loss {loss:.4f}  accuracy {accuracy:.4f} "
          f"({int(np.trace(confusion))}/{len(y_test)} right)")
    print("confusion counts (rows: the true digit, columns: the predicted one):")
    print("     " + "".join(f"{d:5d}" for d in range(10)))
    for d in range(10):
        print(f"  {d}: " + "".join(f"{c:5d}" for c in confusion[d]))
    return 0


def demo(args):
    import numpy as np
    import fastnn
    from fastnn._baseline import NumpyMLP

    fastnn.backend.clear_session()  # the summary's names as in a fresh process
    if args.task == "digits":
        return _digits_demo(args)
    from fastnn.datasets import boston_housing
    from fastnn.layers import Dense, Normalization

    epochs, batch = args.epochs or 100, 32
    (x_raw, y_raw), (x_raw_test, y_raw_test) = boston_housing.load_data()
    print(f"Boston housing: {len(x_raw)} training rows, {len(x_raw_test)} test rows, "
          f"{x_raw.shape[1]} features (standardised in the model by a Normalization layer "
          "adapted on the training rows)")

    fastnn.utils.set_random_seed(0)
    normalization = Normalization(input_shape=(13,))
    normalization.adapt(x_raw)
    model = fastnn.Sequential([normalization, Dense(10, activation="relu"),
                               Dense(10, activation="relu"), Dense(1)])
    model.summary()
    model.compile(loss="mse", optimizer="rmsprop", metrics=["mae"])
    print(f"fit: {epochs} epochs, batch {batch}, validation_split=0.2")
    model.fit(x_raw, y_raw, epochs=epochs, batch_size=batch, validation_split=0.2,
              verbose=args.verbose)
    train_mse, train_mae = model.evaluate(x_raw, y_raw)
    test_mse, test_mae = model.evaluate(x_raw_test, y_raw_test)
    print(f"\nfastnn  train: MSE {train_mse:8.3f}  MAE {train_mae:6.3f}")
    print(f"fastnn  test:  MSE {test_mse:8.3f}  MAE {test_mae:6.3f}")

    # Timing: the article's model (no Normalization layer: the NumPy twin has none, so both
    # take the standardised rows) and its twin, same initial weights, all 404 rows, silent.
    x_train, y_train, x_test, y_test = _standardised_housing()
    fastnn.utils.set_random_seed(0)
    timed = _article_model()
    initial = np.concatenate([w.ravel() for w in timed.get_weights()])
    timed.compile(loss="mse", optimizer="rmsprop", metrics=["mae"])
    twin = NumpyMLP([13, 10, 10, 1], ["relu", "relu", "linear"], loss="mse",
                    optimizer="rmsprop")
    twin.set_flat_params(initial)

    t0 = time.perf_counter()
    timed.fit(x_train, y_train, epochs=epochs, batch_size=batch, verbose=0)
    t_fastnn = time.perf_counter() - t0
    t0 = time.perf_counter()
    twin.fit(x_train, y_train, epochs, batch_size=batch)
    t_numpy = time.perf_counter() - t0

    fast_mse = timed.evaluate(x_test, y_test)[0]
    pred = twin.predict(x_test).ravel()
    numpy_mse = float(np.mean((pred - y_test) ** 2))
    print(f"\n{epochs}-epoch fit on all {len(x_train)} training rows, same initial weights "
          f"(verbose=0):")
    print(f"  fastnn      {t_fastnn * 1e3:9.1f} ms   test MSE {fast_mse:8.3f}")
    print(f"  NumPy       {t_numpy * 1e3:9.1f} ms   test MSE {numpy_mse:8.3f}")
    print(f"  fastnn is {t_numpy / t_fastnn:.1f}x faster than the careful NumPy baseline")
    return 0


def _fmt(value, unit):
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:+.3f}" if abs(value) < 1 else f"{value:+.2f}"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _table(results, with_torch):
    head = ["workload", "measure", "fastnn", "NumPy", "ratio", "target", "met?"]
    if with_torch:
        head.insert(4, "torch")
    lines = []
    for r in results:
        for row in r["rows"]:
            numpy_value = row["numpy"]
            numpy_text = (f"{numpy_value:.3f}" if row["unit"] == "s" else
                          _fmt(numpy_value, row["unit"]))
            cells = [row["workload"], row["measure"], _fmt(row["fastnn"], row["unit"]),
                     numpy_text, "-" if row["ratio"] is None else f"{row['ratio']:.2f}x",
                     row["target"] or "-",
                     "-" if row["met"] is None else ("yes" if row["met"] else "NO")]
            if with_torch:
                cells.insert(4, _fmt(row["torch"], row["unit"]))
            lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    numeric = {2, 3, 4, 5} if with_torch else {2, 3, 4}

    def fmt(cells):
        return " | ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                          for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), "-+-".join("-" * w for w in widths)]
    out += [fmt(c) for c in lines]
    return "\n".join(out)


def _cpu_busy(seconds=0.3):
    """Cores' worth of CPU the rest of the machine used over `seconds` (Linux; else None).
    Other work on a 2-core machine (a build, a test run) can slow the BLAS several-fold."""
    def sample():
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + (values[4] if len(values) > 4 else 0)
    try:
        own0, (total0, idle0) = os.times(), sample()
        time.sleep(seconds)
        own1, (total1, idle1) = os.times(), sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    busy = (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)
    # Minus this process's own CPU (e.g. BLAS threads spin-waiting after the last GEMM).
    own = (own1.user + own1.system - own0.user - own0.system) / seconds
    return max(busy - own, 0.0)


def _warn_if_busy(when):
    busy = _cpu_busy()
    if busy is not None and busy > 0.2:
        print(f"warning: {busy:.1f} CPU cores were busy with other work {when}; "
              "the timings are unreliable, rerun on an idle machine", flush=True)
        return True
    return False


def bench(args):
    import numpy as np
    from fastnn import _blas, benchmarks

    quick = True if args.quick else None  # None: FASTNN_BENCH_QUICK decides
    quick = benchmarks.is_quick(quick)
    with_torch = benchmarks.have_torch()
    only = None
    if args.only:
        only = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in only if w not in benchmarks.WORKLOADS]
        if unknown:
            print(f"unknown workload(s) {unknown}; valid: {list(benchmarks.WORKLOADS)}",
                  file=sys.stderr)
            return 2
    torch_text = "torch " + benchmarks._torch().__version__ if with_torch else \
        "torch not installed"
    print(f"fastnn bench{' --quick' if quick else ''}: Python {platform.python_version()}, "
          f"NumPy {np.__version__}, {os.cpu_count()} CPUs, "
          f"BLAS for large layers: {'yes' if _blas.available() else 'no'}, {torch_text}")
    print("ratio = fastnn speed / NumPy baseline speed (>1: fastnn faster); "
          "timings are medians\n", flush=True)
    _warn_if_busy("before the run")
    t0 = time.perf_counter()

    def progress(name):
        print(f"  running {name} ...", file=sys.stderr, flush=True)
    results = benchmarks.run_all(quick=quick, only=only, progress=progress)
    _warn_if_busy("at the end of the run")
    print(_table(results, with_torch))
    notes = list(dict.fromkeys(f"{row['workload']}: {row['note']}" for r in results
                               for row in r["rows"] if row["note"]))
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    print(f"\n{len(results)} workloads in {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"quick": quick, "numpy": np.__version__, "results": results}, f,
                      indent=1, default=float)
        print(f"results written to {args.json}")
    return 0


def export(args):
    from fastnn.export import c, to_onnx
    from fastnn.models import load_model

    if args.c is None and args.onnx is None:
        print("python -m fastnn export: say what to write: --c DIR (C99 source) and/or "
              "--onnx FILE", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, compile=False)
        if args.c is not None:
            name = c.default_name(args.model) if args.name is None else c.check_name(args.name)
            os.makedirs(args.c, exist_ok=True)
            paths = c.export_c(model, os.path.join(args.c, name + ".c"), name=name)
            print(f"wrote {paths[0]} and {paths[1]}")
        if args.onnx is not None:
            to_onnx(model, args.onnx)
            print(f"wrote {args.onnx}")
    except (ValueError, OSError, ImportError) as e:
        print(f"python -m fastnn export: error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """The command line: ``fastnn ...`` (the console script) or ``python -m fastnn ...``.
    Returns the exit status."""
    import fastnn
    command = os.path.basename(sys.argv[0] or "")
    prog = "python -m fastnn" if command in ("", "__main__.py", "-c") else "fastnn"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="fastnn: Keras-shaped neural networks for the CPU with a compiled C core.")
    parser.add_argument("--version", action="version", version=f"fastnn {fastnn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    p = sub.add_parser("demo", help="train the article's Boston housing model, compare with "
                                    "NumPy (or, with --task digits, a digits classifier)",
                       description="Trains the 13->10->10->1 model on Boston housing with "
                                   "fastnn, then times the same training in plain NumPy. "
                                   "--task digits trains a small MLP on the bundled 8x8 "
                                   "digits and prints its test accuracy and confusion counts.")
    p.add_argument("--task", choices=("housing", "digits"), default="housing",
                   help="housing (default): regression, timed against NumPy; digits: "
                        "classification")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: 100 for housing, 30 for digits)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="fit's verbosity: 1 (default) prints Keras' 'Epoch n/N' line and a "
                        "progress bar per epoch, 2 one line per epoch, 0 none")
    p.set_defaults(func=demo)
    p = sub.add_parser("bench", help="run the benchmark workloads against NumPy (and torch)",
                       description="Runs the workloads of fastnn.benchmarks and prints "
                                   "fastnn | NumPy | ratio | target for each.")
    p.add_argument("--quick", action="store_true",
                   help="small synthetic data and fewer repeats (also FASTNN_BENCH_QUICK=1)")
    p.add_argument("--only", metavar="W1,W3,...",
                   help="comma-separated workloads to run (W1 W2 W3 W4 W5 W6 L512 W7 W8 "
                        "LOAD THREADS)")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    p.set_defaults(func=bench)
    p = sub.add_parser("export", help="write a saved model's forward pass as C99 source",
                       description="Reads a model saved with model.save() and writes "
                                   "DIR/NAME.c and DIR/NAME.h (see Model.export_c).")
    p.add_argument("model", help="the saved model file")
    p.add_argument("--c", metavar="DIR", help="write C99 source into this folder")
    p.add_argument("--onnx", metavar="FILE", help="write an ONNX model (needs the onnx "
                                                  "package)")
    p.add_argument("--name", help="C name prefixing the symbols and files (default: the "
                                  "model file's name)")
    p.set_defaults(func=export)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
