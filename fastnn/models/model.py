"""Model: a graph of layer calls from Input tensors to outputs (the functional API, a
subclassed model traced once, or Sequential's chain), and the training API shared by all
(compile, fit, evaluate, predict, weights, summary).

The first fit/evaluate/predict lowers the graph into an _engine.Plan over the model's
flat weight buffers (models/plan.py, models/weights.py); plans are cached per purpose
and batch size. fit hands the engine chunks of steps sized by time (~0.1 s): Python
gets control back often enough for the progress bar, batch callbacks and Ctrl-C, while
a small model still runs thousands of steps per call."""
import numbers
import warnings

import numpy as np

from fastnn import _engine, callbacks as callbacks_module, losses, metrics as metrics_module
from fastnn import optimizers, utils
from fastnn.layers.core import Input, InputLayer, KerasTensor, Layer, as_tensor_list
from fastnn.models import data, plan as planner, weights as weights_module
from fastnn.models.graph import Graph
from fastnn.models.summary import print_summary

# Rows per engine call in predict/evaluate: large enough to amortise the call,
# small enough that the activations stay in cache for narrow models.
_INFER_ROWS = 1024
# Seconds of work per native call: Python regains control this often (progress,
# callbacks, Ctrl-C) while the call's overhead stays far below 1% of it.
_CHUNK_SECONDS = 0.1
_NO_LIMIT = 1 << 62
# Dropout masks are drawn from fit's seed xor this, apart from its shuffles.
_DROPOUT_STREAM = 0xD1B54A32D192ED03
# what compile() sets, restored when it raises
_COMPILE_STATE = ("optimizer", "loss", "_loss_arg", "_metrics_arg", "_loss_weights_arg",
                  "_compiled_for", "_opt_state", "_losses", "_metrics", "_log_names_cache")


class Model(Layer):
    """Model(inputs, outputs): the layers called between Input tensors and outputs.
    Subclass it and define call(inputs) to compose layers in Python; the call is traced
    once with symbolic inputs into the same graph. A model is a layer: calling it on a
    tensor inside another model inlines its graph there (one output)."""

    def __init__(self, inputs=None, outputs=None, name=None, **kwargs):
        trainable = kwargs.pop("trainable", True)
        if kwargs:
            raise TypeError(f"Model() got unexpected keyword arguments: {sorted(kwargs)}")
        super().__init__(name=name or utils.unique_name("model"), trainable=trainable)
        self._graph = None
        self.optimizer = self.loss = None
        self._losses = []          # per output: (Loss, weight)
        self._metrics = []         # (output index, engine key, log name)
        self._store = None
        self._store_key = None
        self._log_names_cache = ["loss"]
        self._plans = {}
        self._predict_plan = None
        self._opt_state = None
        self._opt_layout = None
        self.stop_training = False
        self.history = None
        if inputs is None and outputs is None:
            return
        if inputs is None or outputs is None:
            raise ValueError("Model(inputs, outputs) needs both. Received: "
                             f"inputs={inputs!r}, outputs={outputs!r}")
        self._set_graph(inputs, outputs)

    # -- structure ----------------------------------------------------------------
    def _set_graph(self, inputs, outputs):
        ins, self._list_inputs = as_tensor_list(inputs)
        outs, self._list_outputs = as_tensor_list(outputs)
        self._graph = Graph(ins, outs, self.name)
        self._invalidate()
        self.built = True
        shapes = [t.shape for t in ins]
        self.input_shape = shapes if self._list_inputs and len(ins) > 1 else shapes[0]
        oshapes = [t.shape for t in outs]
        self.output_shape = oshapes if len(outs) > 1 else oshapes[0]

    def _invalidate(self):
        self._plans, self._predict_plan = {}, None

    @property
    def layers(self):
        if self._graph is None:
            return []
        return list(self._graph.layers)

    def _summary_layers(self):
        return self.layers

    @property
    def inputs(self):
        return list(self._graph.inputs) if self._graph else None

    @property
    def outputs(self):
        return list(self._graph.outputs) if self._graph else None

    @property
    def input_names(self):
        return [t.name for t in self._graph.inputs]

    @property
    def output_names(self):
        return [t.name for t in self._graph.outputs]

    def get_layer(self, name=None, index=None):
        """A layer by name or by index in model.layers, as Keras."""
        if (name is None) == (index is None):
            raise ValueError("Provide exactly one of name= or index=. Received: "
                             f"name={name!r}, index={index!r}")
        layers = self.layers
        if index is not None:
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only "
                                 f"has {len(layers)} layers.")
            return layers[index]
        for layer in layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: "
                         f"{[layer.name for layer in layers]}.")

    def _require_built(self, what):
        if self._graph is None:
            raise ValueError(f"This model has not yet been built. Build the model first by "
                             f"calling fit() or predict() on data, or give the first layer an "
                             f"input_shape, before calling {what}.")

    def summary(self, line_length=None, positions=None, print_fn=None):
        self._require_built("summary()")
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    def count_params(self):
        self._require_built("count_params()")
        return int(sum(w.size for w in self.weights))

    # -- as a layer inside another model -------------------------------------------
    def _check_inputs(self, inputs, is_list):
        """Checked in _build_once, once a model that waits for its input shape is built."""

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """As Keras: sets the flag of the model and of every layer in it."""
        Layer.trainable.fset(self, value)
        for layer in self.layers:
            layer.trainable = value

    def build(self, input_shape):
        if self._graph is None:  # a subclassed model: trace call() for these shapes
            self._trace(input_shape)
        self.built = True

    def _build_once(self, input_shape):
        if self._graph is None:
            self.build(input_shape)
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != len(self._graph.inputs):
            raise ValueError(f"Model '{self.name}' takes {len(self._graph.inputs)} inputs, got "
                             f"{len(shapes)}")
        if len(self._graph.outputs) != 1:
            raise ValueError(f"Model '{self.name}' has {len(self._graph.outputs)} outputs; "
                             "fastnn nests models of one output only")
        want = [t.shape for t in self._graph.inputs]
        if [tuple(s)[1:] for s in shapes] != [s[1:] for s in want]:
            raise ValueError(f"Model '{self.name}' expects inputs of shape {want}, got "
                             f"{list(shapes)}")

    def compute_output_shape(self, input_shape):
        return self._graph.outputs[0].shape

    def _lower(self, ctx, inputs):
        return ctx.graph(self._graph, inputs)[0]

    def __call__(self, inputs):
        tensors, _ = as_tensor_list(inputs)
        if all(isinstance(t, KerasTensor) for t in tensors):
            return Layer.__call__(self, inputs)
        return self.predict(inputs)

    # -- subclassed models ----------------------------------------------------------
    def call(self, inputs):
        raise NotImplementedError(f"Model '{self.name}' has no graph: create it with "
                                  "Model(inputs, outputs), or subclass Model and define call()")

    def _trace(self, input_shape):
        """Runs call() once on symbolic inputs: the layers it calls become the graph."""
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        ins = [Input(shape=tuple(s)[1:]) for s in shapes]
        arg = ins if isinstance(input_shape, list) else ins[0]
        try:
            outs = self.call(arg)
        except NotImplementedError:
            raise
        except Exception as e:
            raise ValueError(
                f"Could not trace {type(self).__name__}.call() on symbolic inputs of shape "
                f"{[t.shape for t in ins]}: {type(e).__name__}: {e}. fastnn traces call() "
                "once into a graph of layers: Python control flow that depends on data values, "
                "and NumPy functions applied to the tensors, cannot be traced (use layers)."
            ) from e
        self._set_graph(arg, outs)

    def build_from_shapes(self, input_shape):
        self.build(input_shape)

    # -- weights --------------------------------------------------------------------------
    def _weight_layers(self):
        """(layer, effective trainable) for every layer holding weights, each once, nested
        models expanded (a frozen model freezes its layers)."""
        out, seen = [], set()

        def walk(model, trainable):
            for layer in model.layers:
                if isinstance(layer, Model):
                    walk(layer, trainable and layer.trainable)
                elif id(layer) not in seen:
                    seen.add(id(layer))
                    out.append((layer, trainable and layer.trainable))
        if self._graph is not None:
            walk(self, self.trainable)
        return out

    def _weight_entries(self):
        if self._graph is None:
            return []
        return [(layer, name, t and trainable) for layer, trainable in self._weight_layers()
                for name, t in layer._weight_entries()]

    @property
    def weights(self):
        return [getattr(layer, name) for layer, name, _ in self._weight_entries()]

    @property
    def trainable_weights(self):
        return [getattr(layer, name) for layer, name, t in self._weight_entries() if t]

    @property
    def non_trainable_weights(self):
        return [getattr(layer, name) for layer, name, t in self._weight_entries() if not t]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Model '{self.name}' expects {len(own)} weight arrays "
                             f"({[w.shape for w in own]}), got {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for i, (w, new) in enumerate(zip(own, arrays)):
            if new.shape != w.shape:
                raise ValueError(f"weight {i}: expected shape {w.shape}, got {new.shape}")
            if new.dtype.kind not in "fiub" or not np.all(np.isfinite(new)):
                raise ValueError(f"weight {i} must be finite real numbers (dtype {new.dtype})")
        for w, new in zip(own, arrays):  # all checked first: no half-written model
            w[...] = new

    def _weights_store(self):
        """The model's buffers, re-homing the weights if they moved or trainability changed.
        Checked by walking the layers only when some weights moved or some layer's
        trainable flag changed since the last check (the key below)."""
        key = (weights_module.generation, weights_module.trainable_version, id(self._graph))
        if self._store is not None and self._store_key == key:
            return self._store
        entries = self._weight_entries()
        if self._store is None or not self._store.holds(entries):
            self._store = weights_module.Store(entries)
            self._invalidate()
        self._store_key = (weights_module.generation, weights_module.trainable_version,
                           id(self._graph))
        return self._store

    # -- saving -------------------------------------------------------------------------
    def save(self, filepath):
        """Saves architecture, weights and compile settings (see fastnn.saving)."""
        from fastnn import saving
        saving.save_model(self, filepath)

    def save_weights(self, filepath):
        """Saves get_weights() alone (a fastnn file, see fastnn.saving), to a path under
        exactly the name given or to a binary file object."""
        from fastnn import saving
        saving.save_weights(self, filepath)

    def load_weights(self, filepath):
        """Loads weights written by save_weights (or save) into this model: all or nothing."""
        from fastnn import saving
        saving.load_weights(self, filepath)

    def __reduce__(self):
        """pickle, copy and deepcopy go through the file format: a copy is an independent
        model (weights, compile settings and optimizer state), and a pickle holds no code
        beyond fastnn's own loader. A subclassed model comes back as the functional Model
        of its traced graph."""
        from fastnn import saving
        return (saving.loads, (saving.dumps(self),))

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='mse'")
        saved = {k: self.__dict__.get(k) for k in _COMPILE_STATE}
        try:  # a compile that raises leaves the model as it was
            self.optimizer = optimizers.get(optimizer)
            self.loss = loss if isinstance(loss, (dict, list, tuple)) else losses.get(loss)
            self._loss_arg, self._metrics_arg = loss, metrics
            self._loss_weights_arg = loss_weights
            self._compiled_for = None
            self._opt_state = None
            if self._graph is not None:
                self._resolve_compile()
        except BaseException:
            self.__dict__.update(saved)
            raise
        self._invalidate()

    @property
    def compiled(self):
        return self.optimizer is not None

    def _per_output(self, value, what, default=None):
        """A compile argument as a list per output: one value for all, a list, or a dict
        keyed by output name."""
        names = self.output_names
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"compile({what}=...) names unknown outputs {unknown}; the "
                                 f"outputs are {names}")
            return [value.get(n, default) for n in names]
        if isinstance(value, (list, tuple)) and what != "metrics":
            if len(value) != len(names):
                raise ValueError(f"compile({what}=...) has {len(value)} entries for "
                                 f"{len(names)} outputs {names}")
            return list(value)
        return [value] * len(names)

    def _resolve_compile(self):
        """Per output: the Loss and its weight, and the engine metrics with log names."""
        if self._compiled_for is self._graph:
            return
        names = self.output_names
        loss_list = self._per_output(self._loss_arg, "loss")
        weights = self._per_output(self._loss_weights_arg, "loss_weights", 1.0)
        self._losses = []
        for name, loss, w in zip(names, loss_list, weights):
            w = 1.0 if w is None else w
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not np.isfinite(w):
                raise ValueError(f"loss_weights must be finite numbers. Received: {w!r} for "
                                 f"output '{name}'")
            self._losses.append(None if loss is None else (losses.get(loss), float(w)))
        if all(spec is None for spec in self._losses):
            raise ValueError("compile() needs a loss for at least one output")
        metric_arg = self._metrics_arg
        if metric_arg is None:
            per_output = [[] for _ in names]
        elif isinstance(metric_arg, dict):
            per_output = [list(m) if isinstance(m, (list, tuple)) else ([] if m is None else [m])
                          for m in self._per_output(metric_arg, "metrics", [])]
        elif isinstance(metric_arg, str):
            per_output = [[metric_arg] for _ in names]
        elif len(names) > 1 and metric_arg and all(isinstance(m, (list, tuple))
                                                   for m in metric_arg):
            if len(metric_arg) != len(names):
                raise ValueError(f"compile(metrics=...) has {len(metric_arg)} lists for "
                                 f"{len(names)} outputs {names}")
            per_output = [list(m) for m in metric_arg]
        else:
            per_output = [list(metric_arg) for _ in names]
        self._metrics = []
        multi = len(names) > 1
        for j, (name, ms) in enumerate(zip(names, per_output)):
            for m in ms:
                key, log_name = metrics_module.get(m)
                spec = self._losses[j]
                if spec is None:
                    raise ValueError(f"metric {m!r} on output '{name}', which has no loss")
                if spec[0].sparse_labels and key != "accuracy":
                    raise ValueError(f"metric {log_name!r} compares outputs with targets of the "
                                     "same shape; with integer labels use 'accuracy'")
                self._metrics.append((j, key, f"{name}_{log_name}" if multi else log_name))
        for t, spec in zip(self._graph.outputs, self._losses):
            if spec is not None and not spec[0].from_logits and spec[0].output_activation:
                _check_final_activation(t, spec[0])
        names = ["loss"]
        if len([s for s in self._losses if s is not None]) > 1:
            names += [f"{n}_loss" for n, s in zip(self.output_names, self._losses) if s]
        self._log_names_cache = names + [name for _, _, name in self._metrics]
        self._compiled_for = self._graph

    @property
    def metrics_names(self):
        return list(self._log_names_cache)

    def _require_compiled(self, what):
        if self.optimizer is None:
            raise RuntimeError(f"You must call compile() on the model before {what}.")

    # -- plans ----------------------------------------------------------------------------
    def _plan(self, max_batch, purpose):
        """The cached plan for batches of up to max_batch rows: "predict" returns the
        outputs; "loss" computes the compiled losses and metrics (training, evaluate)."""
        store = self._weights_store()
        key = (purpose, max_batch)
        plan = self._plans.get(key)
        if plan is None:
            if purpose == "predict":
                plan = planner.build(self, store, max_batch)
            else:
                self._resolve_compile()
                plan = planner.build(self, store, max_batch, heads=self._losses,
                                     metrics=[(j, key_) for j, key_, _ in self._metrics],
                                     predict=False)
                plan.set_dropout_seed(utils.next_seed())  # train_on_batch: seeded masks too
            store.plans.add(plan)
            self._plans[key] = plan
        return plan

    def _optimizer_state(self):
        store = self._weights_store()
        if self._opt_state is None or self._opt_layout != store.layout:
            self._opt_state = self.optimizer._make_state(list(store.variables))
            self._opt_layout = store.layout
        return self._opt_state

    # -- data -------------------------------------------------------------------------------
    def _ensure_graph(self, x):
        """Builds a model that waits for data (a subclassed model, a Sequential without
        an input shape) from the shapes of x."""
        if self._graph is not None:
            return
        arrays = x if isinstance(x, (list, tuple)) else [x]
        shapes = []
        for a in arrays:
            arr = np.asarray(a)
            if arr.ndim != 2:
                raise ValueError(f"x must be 2-D (samples, features), got shape {arr.shape}")
            shapes.append((None,) + arr.shape[1:])
        self._build_from_shapes(shapes if isinstance(x, (list, tuple)) else shapes[0])

    def _build_from_shapes(self, input_shape):
        self.build(input_shape)

    def _prepare_inputs(self, x, name="x"):
        """x as a list of checked float32 arrays, one per model input (x may be one
        array, a list, or a dict keyed by input name)."""
        self._ensure_graph(x)
        ins = self._graph.inputs
        if len(ins) == 1 and isinstance(x, np.ndarray):  # the common case, kept short
            return [data.as_matrix(x, name, ins[0].shape[-1])]
        if isinstance(x, dict):
            missing = [t.name for t in ins if t.name not in x]
            if missing:
                raise ValueError(f"{name} lacks inputs {missing}; the model's inputs are "
                                 f"{[t.name for t in ins]}")
            x = [x[t.name] for t in ins]
        elif not isinstance(x, (list, tuple)) or (len(ins) == 1 and not _is_array_list(x)):
            x = [x]
        if len(x) != len(ins):
            raise ValueError(f"{name}: the model has {len(ins)} inputs "
                             f"{[t.name for t in ins]}, got {len(x)} arrays")
        arrays = [data.as_matrix(a, name if len(ins) == 1 else f"{name}[{t.name}]",
                                 t.shape[-1]) for a, t in zip(x, ins)]
        n = {a.shape[0] for a in arrays}
        if len(n) > 1:
            raise ValueError(f"{name}: all inputs need the same number of rows, got shapes "
                             f"{[a.shape for a in arrays]}")
        return arrays

    def _prepare_targets(self, y, name, n_rows):
        """y as a list of checked float32 targets, one per output with a loss."""
        outs = self._graph.outputs
        if len(outs) == 1 and isinstance(y, np.ndarray) and self._losses[0] is not None:
            return [data.as_targets(y, name, n_rows, outs[0].shape[-1],
                                    self._losses[0][0].sparse_labels)]
        names = self.output_names
        if isinstance(y, dict):
            unknown = sorted(set(y) - set(names))
            if unknown:
                raise ValueError(f"{name} names unknown outputs {unknown}; the outputs are "
                                 f"{names}")
            y = [y.get(n) for n in names]
        elif len(outs) == 1 or not isinstance(y, (list, tuple)):
            y = [y]
        if len(y) != len(outs):
            raise ValueError(f"{name}: the model has {len(outs)} outputs {names}, got "
                             f"{len(y)} target arrays")
        targets = []
        for j, (t, spec) in enumerate(zip(y, self._losses)):
            if spec is None:
                continue
            label = name if len(outs) == 1 else f"{name}[{names[j]}]"
            targets.append(data.as_targets(t, label, n_rows, outs[j].shape[-1],
                                           spec[0].sparse_labels))
        return targets

    # -- predict --------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose=0, callbacks=None):
        """Outputs for x: a new (n, units) float32 array, or a list for several outputs."""
        if self._predict_plan is not None and batch_size is None and callbacks is None:
            try:  # the latency path: a checked float32 C-contiguous array goes straight in
                return self._predict_plan.predict(x)
            except (TypeError, ValueError):
                pass  # anything else (or a stale plan) takes the converting path below
        if batch_size is not None:
            _check_batch_size(batch_size)
        xs = self._prepare_inputs(x)
        plan = self._plan(_INFER_ROWS, "predict")
        cbs = None
        if callbacks:
            cbs = callbacks_module.CallbackList(callbacks, model=self, verbose=0,
                                                steps=-(-xs[0].shape[0] // _INFER_ROWS))
            cbs.on_predict_begin()
        if len(xs) == 1 and len(self._graph.outputs) == 1:
            self._predict_plan = plan
            outs = [plan.predict(xs[0], _CHUNK_SECONDS)]
        else:
            outs = plan.predict_many(xs, _CHUNK_SECONDS)
        if cbs is not None:
            cbs.on_predict_batch_end(cbs.params["steps"] - 1, {"outputs": outs})
            cbs.on_predict_end()
        return outs[0] if len(outs) == 1 else outs

    def predict_on_batch(self, x):
        return self.predict(x)

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, return_dict=False,
                 callbacks=None):
        """The loss (and metrics) over (x, y): a float, or [loss, *metrics]."""
        self._require_compiled("evaluate()")
        batch = _check_batch_size(batch_size)
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, "y", n)
        if callbacks:
            logs = self._evaluate_with_callbacks(xs, ys, batch, callbacks)
        else:
            logs = self._evaluate_arrays(xs, ys)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_with_callbacks(self, xs, ys, batch, callbacks):
        """evaluate() with on_test_* hooks: a batch at a time when a callback overrides a
        test-batch hook, else the whole set at once."""
        n = xs[0].shape[0]
        steps = -(-n // batch)
        cbs = callbacks_module.CallbackList(callbacks, model=self, verbose=0, steps=steps)
        cbs.on_test_begin()
        plan = self._plan(_INFER_ROWS, "loss")
        totals = np.zeros(plan.totals_size)
        if cbs.wants_test_batch_hooks:
            for step in range(steps):
                cbs.on_test_batch_begin(step)
                rows = slice(step * batch, (step + 1) * batch)
                totals += plan.evaluate([a[rows] for a in xs], [a[rows] for a in ys],
                                        _INFER_ROWS, _CHUNK_SECONDS)
                cbs.on_test_batch_end(step, self._logs(totals))
        else:
            totals += plan.evaluate(xs, ys, _INFER_ROWS, _CHUNK_SECONDS)
            cbs.on_test_batch_end(steps - 1, self._logs(totals))
        logs = self._logs(totals)
        cbs.on_test_end(logs)
        return logs

    def test_on_batch(self, x, y, return_dict=False):
        return self.evaluate(x, y, batch_size=None, return_dict=return_dict)

    def _evaluate_arrays(self, xs, ys, prefix=""):
        totals = self._plan(_INFER_ROWS, "loss").evaluate(xs, ys, _INFER_ROWS, _CHUNK_SECONDS)
        return self._logs(totals, prefix)

    def _logs(self, totals, prefix=""):
        """{"loss": ..., "mae": ...} (several outputs: also "<output>_loss" and
        "<output>_<metric>") from engine totals [rows, loss, head losses, metrics]."""
        totals = totals.tolist()
        rows = max(totals[0], 1.0)
        names = self._log_names_cache
        n_heads = len(totals) - 2 - len(self._metrics)
        values = totals[1:2] + (totals[2:2 + n_heads] if n_heads > 1 else []) + \
            totals[2 + n_heads:]
        return {prefix + k: v / rows for k, v in zip(names, values)}

    # -- one step ---------------------------------------------------------------------------
    def train_on_batch(self, x, y, return_dict=False):
        """One optimizer step on (x, y) as a single batch: the loss (before the step), or
        [loss, *metrics]. The lean path for online training: no shuffle, no History."""
        self._require_compiled("train_on_batch()")
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, "y", n)
        # plans are sized in powers of two so that varying batch sizes reuse a few
        plan = self._plan(1 << (n - 1).bit_length(), "loss")
        run = _engine.Run(plan, xs, ys, n, 1, False, 0, 1)
        status = plan.train(run, self._optimizer_state(), 1, 0.0, False)
        if status == "diverged":
            _warn_diverged(1)
        logs = self._logs(run.totals[0])
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Trains for `epochs` epochs; returns a History."""
        self._require_compiled("fit()")
        batch_size = _check_batch_size(batch_size)
        for arg, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if type(value) is not int and (isinstance(value, bool) or  # noqa: E721 (fast path)
                                           not isinstance(value, numbers.Integral)) or value < 0:
                raise ValueError(f"{arg} must be a non-negative integer. Received: "
                                 f"{arg}={value!r}")
        if verbose == "auto":
            verbose = 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
        if type(validation_split) is not float and not isinstance(validation_split, numbers.Real) \
                or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1). Received: "
                             f"validation_split={validation_split!r}")
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        ys = self._prepare_targets(y, "y", xs[0].shape[0])
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            xv = self._prepare_inputs(validation_data[0], "validation_data x")
            val = (xv, self._prepare_targets(validation_data[1], "validation_data y",
                                             xv[0].shape[0]))
        elif validation_split:
            # Keras holds out the last rows, before any shuffling.
            n = xs[0].shape[0]
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"validation_split={validation_split} leaves "
                                 f"{split} of {n} rows for training")
            val = ([a[split:] for a in xs], [a[split:] for a in ys])
            xs, ys = [a[:split] for a in xs], [a[:split] for a in ys]

        n = xs[0].shape[0]
        batch = min(batch_size, n)
        plan = self._plan(batch, "loss")
        opt = self._optimizer_state()
        seed = utils.next_seed()
        plan.set_dropout_seed(seed ^ _DROPOUT_STREAM)  # a stream apart from the shuffle's
        todo = max(epochs - initial_epoch, 0)
        run = _engine.Run(plan, xs, ys, batch, todo, bool(shuffle), seed, min(max(todo, 1), 256))
        self.stop_training = False
        if not callbacks and not verbose and val is None:
            history = self.history = callbacks_module.History()
            history.model = self
            self._fit_quietly(plan, run, opt, history, initial_epoch)
            return history
        steps = run.steps_per_epoch
        cbs = callbacks_module.CallbackList(callbacks, add_history=True,
                                            add_progbar=verbose != 0, verbose=verbose,
                                            model=self, epochs=epochs, steps=steps)
        history = self.history = cbs.history
        cbs.on_train_begin()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            logs, diverged = self._fit_epoch(plan, run, opt, cbs, steps)
            if val is not None and not diverged:
                logs.update(self._evaluate_arrays(*val, prefix="val_"))
            cbs.on_epoch_end(epoch, logs)
            if diverged:
                _warn_diverged(epoch + 1)
                break
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _fit_quietly(self, plan, run, opt, history, initial_epoch):
        """Nobody watches between epochs: whole epochs per call, History filled at the end."""
        rows, status = [], "paused"
        while status not in ("done", "diverged"):
            status = plan.train(run, opt, _NO_LIMIT, _CHUNK_SECONDS, False)
            rows += run.take_totals().tolist()
        if status == "diverged":
            rows.append(run.current().tolist())
            _warn_diverged(initial_epoch + len(rows))
        history.epoch = list(range(initial_epoch, initial_epoch + len(rows)))
        if rows:  # per column at once: a dict per epoch costs more than its steps
            n_heads = len(rows[0]) - 2 - len(self._metrics)
            cols = [1] + (list(range(2, 2 + n_heads)) if n_heads > 1 else []) + \
                list(range(2 + n_heads, len(rows[0])))
            history.history = {k: [r[c] / r[0] for r in rows]
                               for k, c in zip(self._log_names_cache, cols)}

    def _fit_epoch(self, plan, run, opt, cbs, steps):
        """One epoch in chunks; the batch hooks see each chunk's last step (every step
        when a callback asks for batches). Returns (the epoch's logs, diverged)."""
        per_step = cbs.wants_train_batch_hooks
        while True:
            if per_step:
                cbs.on_train_batch_begin(run.step)
            status = plan.train(run, opt, 1 if per_step else _NO_LIMIT, _CHUNK_SECONDS, True)
            if status in ("epoch_end", "done"):
                logs = self._logs(run.take_totals()[-1])
                cbs.on_train_batch_end(steps - 1, logs)
                return logs, False
            logs = self._logs(run.current())
            cbs.on_train_batch_end(run.step - 1 if status == "paused" else run.step, logs)
            if status == "diverged":
                return logs, True


def _final_activation(t):
    """The activation a tensor ends in: its layer's (a nested model's output's)."""
    layer = t._layer
    if isinstance(layer, Model) and layer._graph is not None:
        return _final_activation(layer._graph.outputs[0])
    return getattr(layer, "activation", "linear")


def _check_final_activation(t, loss):
    """A cross-entropy on probabilities (Keras' default, from_logits=False) needs the
    output to end in the activation it folds into the loss."""
    last = _final_activation(t)
    if last != loss.output_activation:
        raise ValueError(
            f"{loss.name} with from_logits=False (Keras' default) takes probabilities, but "
            f"output '{t.name}' ends in '{last}': it needs '{loss.output_activation}' as its "
            f"last activation, or pass {type(loss).__name__}(from_logits=True) if the outputs "
            "are logits")


def _is_array_list(x):
    """True if x is a list of arrays (several inputs) rather than one nested list of rows."""
    return all(isinstance(a, np.ndarray) for a in x)


def _warn_diverged(epoch):
    warnings.warn(f"epoch {epoch}: the loss became NaN or Inf; training stopped "
                  "(try a smaller learning_rate)", RuntimeWarning, stacklevel=3)


def _check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if type(batch_size) is int and batch_size > 0:
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer. Received: "
                         f"batch_size={batch_size!r}")
    return int(batch_size)
