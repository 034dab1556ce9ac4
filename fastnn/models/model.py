"""Model: a graph of layer calls from Input tensors to outputs (the functional API, a
subclassed model traced once, or Sequential's chain), and the training API shared by all
(compile, fit, evaluate, predict, weights, summary).

The first fit/evaluate/predict lowers the graph into an _engine.Plan over the model's
flat weight buffers (models/plan.py, models/weights.py); plans are cached per purpose
and batch size. fit hands the engine chunks of steps sized by time (~0.1 s): Python
gets control back often enough for the progress bar, batch callbacks and Ctrl-C, while
a small model still runs thousands of steps per call."""
from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from fastnn import _engine, callbacks as callbacks_module, losses, metrics as metrics_module
from fastnn import optimizers, utils
from fastnn._typing import (ArrayLike, Batches, Config, FileLike, InputShape, Inputs, PathLike,
                            Shape)
from fastnn.layers.core import (Input, InputLayer, KerasTensor, Layer, Tensors, as_tensor_list,
                               check_weight_values)
from fastnn.models import batches, data, plan as planner, weights as weights_module
from fastnn.models.graph import Graph
from fastnn.models.summary import print_summary

# Rows per engine call in predict/evaluate: large enough to amortise the call,
# small enough that the activations stay in cache for narrow models.
_INFER_ROWS = 1024
# Seconds of work per native call: Python regains control this often (progress,
# callbacks, Ctrl-C) while the call's overhead stays far below 1% of it.
_CHUNK_SECONDS = 0.1
_NO_LIMIT = 1 << 62
_MAX_EPOCHS = (1 << 31) - 1  # the engine counts epochs in a C int
# Dropout masks are drawn from fit's seed xor this, apart from its shuffles.
_DROPOUT_STREAM = 0xD1B54A32D192ED03
# what compile() sets, restored when it raises
_COMPILE_STATE = ("optimizer", "loss", "_loss_arg", "_metrics_arg", "_weighted_metrics_arg",
                  "_loss_weights_arg", "_compiled_for", "_opt_state", "_losses", "_metrics",
                  "_log_names_cache")


class Model(Layer):
    """A model: the layers called between its Input tensors and its outputs.

    A model groups layers into a graph that trains and predicts as one object; the
    first fit, evaluate or predict compiles that graph into a plan the C engine runs
    (whole epochs per native call when nothing watches between them). There are three
    ways to build one, as in Keras:

    1. Functional API: call layers on Input tensors, then ``Model(inputs, outputs)``.
    2. Subclassing: derive from Model, create layers in ``__init__`` and compose them in
       ``call(inputs)``. The call is traced once on symbolic inputs into the same kind
       of graph (so ``call`` must be built from layers; it does not run per step).
    3. ``Sequential``: a plain stack of single-input layers (see fastnn.Sequential).

    A model is also a layer: calling it on a tensor inside another model inlines its
    graph there (models with one output).

    Args:
        inputs: an Input tensor, or a list (or dict) of them. Required with `outputs`
            for a functional model; leave both None when subclassing.
        outputs: the tensor (or list of tensors) computed from `inputs`.
        name: the model's name; default None gives "model", "model_1", ...
        trainable: keyword only, default True; False freezes every layer of the model.

    Raises:
        ValueError: when only one of `inputs` and `outputs` is given.
        TypeError: on an unknown keyword argument.

    Example::

        inputs = fastnn.Input(shape=(13,))
        x = fastnn.layers.Dense(10, activation="relu")(inputs)
        outputs = fastnn.layers.Dense(1)(x)
        model = fastnn.Model(inputs, outputs)
        model.compile(optimizer="rmsprop", loss="mse")
        model.fit(x_train, y_train, epochs=10, batch_size=32)

        class TwoLayers(fastnn.Model):
            def __init__(self):
                super().__init__()
                self.hidden = fastnn.layers.Dense(10, activation="relu")
                self.out = fastnn.layers.Dense(1)

            def call(self, inputs):
                return self.out(self.hidden(inputs))
    """

    def __init__(self, inputs: Optional[Tensors] = None, outputs: Optional[Tensors] = None,
                 name: Optional[str] = None, **kwargs: Any) -> None:
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
        self._predict_plan = None   # the plan behind predict's latency path
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
    def layers(self) -> list[Layer]:
        """The model's layers in graph order (the InputLayers of a functional model too)."""
        if self._graph is None:
            return []
        return list(self._graph.layers)

    def _summary_layers(self):
        return self.layers

    @property
    def inputs(self) -> Optional[list[KerasTensor]]:
        return list(self._graph.inputs) if self._graph else None

    @property
    def outputs(self) -> Optional[list[KerasTensor]]:
        return list(self._graph.outputs) if self._graph else None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self._graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self._graph.outputs]

    @property
    def input(self) -> Union[KerasTensor, list[KerasTensor]]:
        """The model's input tensor (a list when built on a list), as Keras' model.input."""
        if self._graph is None:
            raise AttributeError(f"Model '{self.name}' is not built yet: it has no input")
        return list(self._graph.inputs) if self._list_inputs else self._graph.inputs[0]

    @property
    def output(self) -> Union[KerasTensor, list[KerasTensor]]:
        """The model's output tensor (a list when built on a list)."""
        if self._graph is None:
            raise AttributeError(f"Model '{self.name}' is not built yet: it has no output")
        return list(self._graph.outputs) if self._list_outputs else self._graph.outputs[0]

    def get_layer(self, name: Optional[str] = None, index: Optional[int] = None) -> Layer:
        """Returns one of the model's layers, by name or by position.

        Args:
            name: the layer's name (a str); default None.
            index: the layer's position in ``model.layers`` (negative counts from the
                end); default None. Give exactly one of `name` and `index`.

        Returns:
            The Layer.

        Raises:
            ValueError: when both or neither are given, the index is out of range, or no
                layer has that name (the message lists the existing names).
        """
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

    def summary(self, line_length: Optional[int] = None,
                positions: Optional[Sequence[float]] = None,
                print_fn: Optional[Callable[..., Any]] = None) -> None:
        """Prints a table of the layers: name (type), output shape, parameter count.

        Functional models with merges also list each layer's inputs ("Connected to");
        the footer gives the total, trainable and non-trainable parameter counts.

        Args:
            line_length: width of the table in characters, an int in [20, 1000];
                default None gives 65 for a chain of layers, 98 otherwise.
            positions: where the columns end, as fractions of `line_length` (all <= 1)
                or as absolute character positions; default None (Keras' layout).
            print_fn: called with each line instead of ``print``; default None.

        Raises:
            ValueError: when the model is not built yet, or `line_length` is invalid.
        """
        self._require_built("summary()")
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    def count_params(self) -> int:
        """Returns the number of values in all the model's weights (trainable or not)."""
        self._require_built("count_params()")
        return int(sum(w.size for w in self.weights))

    # -- config (models/config.py) -------------------------------------------------------
    def get_config(self) -> Config:
        """The architecture as a JSON-able dict (no weights), as Keras' get_config."""
        from fastnn.models import config
        return config.get_config(self)

    @classmethod
    def from_config(cls, config: Config) -> Model:
        """A new model (fresh weights) from get_config()'s dict."""
        from fastnn.models import config as config_module
        return config_module.from_config(cls, config)

    def to_json(self, **kwargs: Any) -> str:
        """get_config() as JSON text, for fastnn.models.model_from_json."""
        from fastnn.models import config
        return config.to_json(self, **kwargs)

    # -- as a layer inside another model -------------------------------------------
    def _check_inputs(self, inputs, is_list):
        """Checked in _build_once, once a model that waits for its input shape is built."""

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """As Keras: sets the flag of the model and of every layer in it."""
        Layer.trainable.fset(self, value)
        for layer in self.layers:
            layer.trainable = value

    def build(self, input_shape: InputShape) -> None:
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

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return self._graph.outputs[0].shape

    def _lower(self, ctx, inputs):
        return ctx.graph(self._graph, inputs)[0]

    def __call__(self, inputs: Union[Tensors, Inputs]) -> Any:
        plan = self._predict_plan
        if plan is not None and type(inputs) is np.ndarray:  # model(x): predict's fast path
            try:
                return plan.predict(inputs)
            except (TypeError, ValueError):
                pass
        tensors, _ = as_tensor_list(inputs)
        if all(isinstance(t, KerasTensor) for t in tensors):
            return Layer.__call__(self, inputs)
        return self.predict(inputs)

    # -- subclassed models ----------------------------------------------------------
    def call(self, inputs: Any) -> Any:
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

    def build_from_shapes(self, input_shape: InputShape) -> None:
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
    def weights(self) -> list[np.ndarray]:
        return [getattr(layer, name) for layer, name, _ in self._weight_entries()]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [getattr(layer, name) for layer, name, t in self._weight_entries() if t]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        return [getattr(layer, name) for layer, name, t in self._weight_entries() if not t]

    def get_weights(self) -> list[np.ndarray]:
        """Returns copies of the model's weights as a list of float32 NumPy arrays.

        The order is that of ``model.weights``: layer by layer in graph order, each
        layer's weights in creation order (Dense: kernel, then bias). Changing the
        returned arrays does not change the model; use set_weights for that.

        Returns:
            A list of new float32 arrays.
        """
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Sets all the model's weights from a list of arrays, all or nothing.

        Args:
            weights: a list of arrays in get_weights' order, one per weight, each of
                that weight's shape. Values are copied (converted to float32).

        Raises:
            ValueError: on a wrong count or shape, or a non-finite value; every array is
                checked before any is written, so a failed call leaves the model as is.
        """
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Model '{self.name}' expects {len(own)} weight arrays "
                             f"({[w.shape for w in own]}), got {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for i, (w, new) in enumerate(zip(own, arrays)):
            if new.shape != w.shape:
                raise ValueError(f"weight {i}: expected shape {w.shape}, got {new.shape}")
            check_weight_values(new, f"weight {i}")
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
    def save(self, filepath: FileLike) -> None:
        """Saves the whole model to one file: architecture, weights, compile settings.

        The file is fastnn's own format (safe to load: no pickled code, versioned and
        checksummed; see fastnn.saving), also holding the optimizer's state so that a
        reloaded model resumes training where it stopped. Reload it with
        ``fastnn.models.load_model(filepath)``. Unlike Keras, the name is used exactly as
        given (no ".keras" extension is required or added).

        Args:
            filepath: a path (str or os.PathLike) or a writable binary file object.

        Example::

            model.save("housing.fnn")
            again = fastnn.models.load_model("housing.fnn")
        """
        from fastnn import saving
        saving.save_model(self, filepath)

    def save_weights(self, filepath: FileLike) -> None:
        """Saves the model's weights alone (get_weights' arrays) to a fastnn file.

        Args:
            filepath: a path (str or os.PathLike), used under exactly the name given, or
                a writable binary file object.
        """
        from fastnn import saving
        saving.save_weights(self, filepath)

    def load_weights(self, filepath: FileLike) -> None:
        """Loads weights into this model from a file, all or nothing.

        Reads files written by save_weights or save (of a model with the same weight
        shapes), and also Keras' ``.weights.h5`` and legacy ``.h5`` files (through
        fastnn.export.keras_in).

        Args:
            filepath: a path (str or os.PathLike) or a readable binary file object.

        Raises:
            ValueError: when the file's weights do not match this model's in count or
                shape, or the file is not a valid weights file; the model is unchanged.
        """
        from fastnn import saving
        from fastnn.export import keras_in
        if keras_in.is_keras_file(filepath):
            return keras_in.load_weights(self, filepath)
        saving.load_weights(self, filepath)

    def __reduce__(self):
        """pickle, copy and deepcopy go through the file format: a copy is an independent
        model (weights, compile settings and optimizer state), and a pickle holds no code
        beyond fastnn's own loader. A subclassed model comes back as the functional Model
        of its traced graph."""
        from fastnn import saving
        return (saving.loads, (saving.dumps(self),))

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer: Union[str, optimizers.Optimizer, Config] = "rmsprop",
                loss: Union[losses.LossLike, Sequence[losses.LossLike],
                            Mapping[str, losses.LossLike], None] = None,
                metrics: Union[Sequence[Any], Mapping[str, Any], None] = None,
                loss_weights: Union[Sequence[float], Mapping[str, float], None] = None,
                weighted_metrics: Union[Sequence[Any], Mapping[str, Any], None] = None
                ) -> None:
        """Configures the model for training: optimizer, loss and metrics.

        Args:
            optimizer: an optimizer name ("rmsprop", "adam", "sgd", ...: default
                arguments) or a fastnn.optimizers instance; default "rmsprop".
            loss: required (unlike Keras, fastnn has no model without a loss): a name
                ("mse", "binary_crossentropy", ...), a fastnn.losses instance or
                function; for several outputs one loss for all, a list per output, or a
                dict keyed by output name.
            metrics: default None; a list of metric names ("mae", "accuracy", ...) or
                fastnn.metrics instances, or for several outputs a list of such lists or
                a dict keyed by output name. They run in the engine, and are logged
                under their names (with "<output>_" in front for several outputs).
            loss_weights: default None (all 1); a list or dict of floats weighting
                each output's loss in the total loss.
            weighted_metrics: default None; metrics as `metrics`, computed with the
                sample_weight / class_weight given to fit or evaluate.

        Raises:
            ValueError: on a missing or unknown loss, metric or optimizer, or a metric
                that cannot apply to the output; a failed compile leaves the model as it
                was.

        Example::

            model.compile(optimizer=fastnn.optimizers.Adam(learning_rate=1e-3),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        """
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='mse'")
        saved = {k: self.__dict__.get(k) for k in _COMPILE_STATE}
        try:  # a compile that raises leaves the model as it was
            self.optimizer = optimizers.get(optimizer)
            self.loss = loss if isinstance(loss, (dict, list, tuple)) else losses.get(loss)
            self._loss_arg, self._metrics_arg = loss, metrics
            self._weighted_metrics_arg = weighted_metrics
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
    def compiled(self) -> bool:
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
        for t, spec in zip(self._graph.outputs, self._losses):
            if spec is not None and not spec[0].from_logits and spec[0].output_activation:
                _check_final_activation(t, spec[0])
            if spec is not None and spec[0].reduction not in _engine.REDUCTIONS:
                raise ValueError(f"compile(): the loss of output '{t.name}' has reduction="
                                 f"{spec[0].reduction!r}; a training loss must reduce to a "
                                 f"number: {sorted(_engine.REDUCTIONS)}")
        heads = [n for n, s in zip(names, self._losses) if s is not None]
        log_names = ["loss"] + ([f"{n}_loss" for n in heads] if len(heads) > 1 else [])
        # metrics (Keras: `metrics` ignore sample weights, `weighted_metrics` use them),
        # each with its slots in the engine's totals after rows, loss and head losses
        compiled, logs, slot, seen = [], [], 2 + len(heads), {}
        for weighted, what in ((False, "metrics"), (True, "weighted_metrics")):
            arg = self.__dict__.get("_weighted_metrics_arg") if weighted else self._metrics_arg
            for j, ms in enumerate(self._metrics_per_output(arg, what)):
                for m in ms:
                    metric = metrics_module.get(m)
                    key, options, n_slots = self._compile_metric(j, metric, m, weighted)
                    name = f"{names[j]}_{metric.name}" if len(names) > 1 else metric.name
                    if name in seen and weighted:
                        name = f"{names[j]}_weighted_{metric.name}" if len(names) > 1 \
                            else f"weighted_{metric.name}"
                    if name in seen:  # Keras numbers repeated names: mae, mae_1, ...
                        seen[name] += 1
                        name = f"{name}_{seen[name] - 1}"
                    seen.setdefault(name, 1)
                    compiled.append((j, (key, options), name))
                    logs.append((name, metric, slot, n_slots))
                    slot += n_slots
        self._metrics, self._metric_logs = compiled, logs
        self._log_names_cache = log_names + [name for _, _, name in compiled]
        self._compiled_for = self._graph

    def _metrics_per_output(self, arg, what):
        """compile(metrics=...) as a list of metrics per output: one list for all, a list
        per output, or a dict by output name."""
        names = self.output_names
        if arg is None:
            return [[] for _ in names]
        if isinstance(arg, dict):
            return [list(m) if isinstance(m, (list, tuple)) else ([] if m is None else [m])
                    for m in self._per_output(arg, what, [])]
        if not isinstance(arg, (list, tuple)):
            return [[arg] for _ in names]
        if len(names) > 1 and arg and all(isinstance(m, (list, tuple)) for m in arg):
            if len(arg) != len(names):
                raise ValueError(f"compile({what}=...) has {len(arg)} lists for "
                                 f"{len(names)} outputs {names}")
            return [list(m) for m in arg]
        return [list(arg) for _ in names]

    def _compile_metric(self, j, metric, given, weighted):
        """(engine key, options, slots) of a metric on output j, checked against its loss."""
        name = self.output_names[j]
        spec = self._losses[j]
        if spec is None:
            raise ValueError(f"metric {given!r} on output '{name}', which has no loss")
        width = self._graph.outputs[j].shape[-1]
        target_width = 1 if spec[0].sparse_labels else width
        try:
            metric._check_output(width, target_width)
        except ValueError as e:
            if spec[0].sparse_labels:
                raise ValueError(f"metric {metric.name!r} compares outputs with targets of the "
                                 "same shape; with integer labels use 'accuracy' (or "
                                 "'sparse_categorical_accuracy', 'sparse_top_k_categorical_"
                                 "accuracy')") from e
            raise
        key, options = metric._engine(width, weighted)
        return key, options, _engine.metric_slots(key, width, options)

    @property
    def metrics_names(self) -> list[str]:
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
            return [data.as_matrix(x, name, ins[0].shape[1:])]
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
                                 t.shape[1:]) for a, t in zip(x, ins)]
        n = {a.shape[0] for a in arrays}
        if len(n) > 1:
            raise ValueError(f"{name}: all inputs need the same number of rows, got shapes "
                             f"{[a.shape for a in arrays]}")
        return arrays

    def _prepare_targets(self, y, name, n_rows):
        """y as a list of checked float32 targets, one per output with a loss."""
        outs = self._graph.outputs
        if len(outs) == 1 and isinstance(y, np.ndarray) and self._losses[0] is not None:
            return [data.as_targets(y, name, n_rows, _target_shape(outs[0]),
                                    self._losses[0][0].sparse_labels)]
        names = self.output_names
        if isinstance(y, dict):
            y = self._by_output_name(y, name)
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
            targets.append(data.as_targets(t, label, n_rows, _target_shape(outs[j]),
                                           spec[0].sparse_labels))
        return targets

    def _by_output_name(self, d, what):
        """A dict keyed by output name as a list per output (None where absent)."""
        names = self.output_names
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"{what} names unknown outputs {unknown}; the outputs are {names}")
        return [d.get(n) for n in names]

    def _prepare_sample_weights(self, sample_weight, class_weight, ys, name, n_rows):
        """Keras' sample_weight (one (n,) array for every output, or a list or dict with
        one per output) and class_weight (a dict class -> weight, one output: each row
        weighted by its target's class, the argmax of one-hot targets) as one checked
        float32 (n,) array or None per loss head (ys: the checked targets); None when no
        head is weighted, so that unweighted runs take the unweighted kernels."""
        if class_weight is not None:
            if sample_weight is not None:
                raise ValueError("You cannot `class_weight` and `sample_weight` at the same "
                                 "time.")
            if len(self._graph.outputs) != 1:
                raise ValueError("`class_weight` is only supported for Models with a single "
                                 "output.")
            if not isinstance(class_weight, dict):
                raise ValueError(f"`class_weight` must be a dict mapping class indices to "
                                 f"weights. Received: class_weight={class_weight!r}")
            table = {}
            for key, value in class_weight.items():
                try:
                    index = int(key)
                except (TypeError, ValueError):
                    index = None
                if index is None or index != key:
                    raise ValueError(f"`class_weight` must be a dictionary with integer keys "
                                     f"representing class indices. Received an invalid key: "
                                     f"{key!r}")
                if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                        or not np.isfinite(value) or value < 0:
                    raise ValueError(f"class_weight values must be finite non-negative "
                                     f"numbers. Received: class_weight[{key!r}]={value!r}")
                table[index] = float(value)
            y = ys[0]
            classes = np.argmax(y, axis=1) if y.shape[1] > 1 else np.round(y[:, 0])
            sample_weight = np.ones(n_rows, np.float32)
            for index, value in table.items():
                sample_weight[classes == index] = value
            return [sample_weight]
        if sample_weight is None:
            return None
        names, specs = self.output_names, self._losses
        if isinstance(sample_weight, dict):
            per_output = self._by_output_name(sample_weight, "sample_weight")
        elif len(names) > 1 and isinstance(sample_weight, (list, tuple)) and \
                all(w is None or np.ndim(w) >= 1 for w in sample_weight):
            if len(sample_weight) != len(names):
                raise ValueError(f"You should provide one `sample_weight` array per output: "
                                 f"the model has {len(names)} outputs {names}, got "
                                 f"{len(sample_weight)} arrays")
            per_output = list(sample_weight)
        else:  # one array for every output
            per_output = [sample_weight] * len(names)
        weights = []
        for j, (w, spec) in enumerate(zip(per_output, specs)):
            if spec is None:
                continue
            label = name if len(names) == 1 else f"{name}[{names[j]}]"
            weights.append(None if w is None else _as_sample_weights(w, label, n_rows))
        return weights if any(w is not None for w in weights) else None

    # -- predict --------------------------------------------------------------------------
    def predict(self, x: Union[Inputs, Batches], batch_size: Optional[int] = None,
                verbose: Union[int, str] = 0,
                callbacks: Optional[Sequence[callbacks_module.Callback]] = None,
                steps: Optional[int] = None, out: Optional[np.ndarray] = None
                ) -> Union[np.ndarray, list[np.ndarray]]:
        """Returns the model's outputs for the inputs `x`.

        Runs the forward pass in the engine in blocks of rows (dropout and noise layers
        are off). A single call on a float32 C-contiguous array takes a cached fast path.

        Args:
            x: the inputs: an array of shape (n, *input_shape) (converted to float32),
                a list of arrays or a dict keyed by input name for several inputs, or
                batches from Python (a generator, an iterable or a PyDataset yielding x,
                (x,) or (x, y) tuples).
            batch_size: default None. The engine always works in blocks of up to 1024
                rows; with `steps`, only the first steps * batch_size rows are predicted.
            verbose: accepted for Keras compatibility; predict prints no progress.
            callbacks: default None; a list of Callbacks whose on_predict_* hooks run.
            steps: default None (all); the number of batches to predict.
            out: default None. For a one-input, one-output model: a C-contiguous float32
                array of shape (n, *output_shape) to write the outputs into instead of
                allocating them (a server's loop can reuse one buffer).

        Returns:
            A new float32 array of shape (n, *output_shape), or a list of them for a
            model with several outputs; `out` when given.

        Raises:
            ValueError: when x does not match the model's inputs (shape, count, finite
                numbers) or an argument is invalid.

        Example::

            y_pred = model.predict(x_test)
        """
        plan = self._predict_plan  # (a method call on it beats a stored bound method)
        if out is not None:
            return self._predict_into(x, out, batch_size, callbacks, steps)
        if plan is not None and batch_size is None and callbacks is None and steps is None:
            try:  # the latency path: a checked float32 C-contiguous array goes straight in
                return plan.predict(x)
            except (TypeError, ValueError):
                pass  # anything else (or a stale plan) takes the converting path below
        if batch_size is not None:
            _check_batch_size(batch_size)
        steps = _check_steps("steps", steps)
        if batches.is_source(x):
            return self._predict_batches(x, steps, callbacks)
        xs = self._prepare_inputs(x)
        if steps is not None and batch_size is not None:  # Keras: the first `steps` batches
            # (a helper, not a comprehension here: its closure cells would cost every call)
            xs = _rows_of(xs, slice(0, steps * batch_size))
        plan = self._plan(_INFER_ROWS, "predict")
        cbs = None
        if callbacks:
            cbs = callbacks_module.CallbackList(callbacks, model=self, verbose=0,
                                                steps=-(-xs[0].shape[0] // _INFER_ROWS))
            cbs.on_predict_begin()
        if len(xs) == 1 and len(self._graph.outputs) == 1:
            if len(self._graph.outputs[0].shape) == 2:  # rows as the engine returns them
                self._predict_plan = plan
            outs = [plan.predict(xs[0])]
        else:
            outs = plan.predict_many(xs, _CHUNK_SECONDS)
        outs = self._output_shapes(outs)
        if cbs is not None:
            cbs.on_predict_batch_end(cbs.params["steps"] - 1, {"outputs": outs})
            cbs.on_predict_end()
        return outs[0] if len(outs) == 1 else outs

    def _output_shapes(self, outs):
        """The engine's rows reshaped to outputs of more than two axes, e.g. (n, 4, 3)."""
        return [o if len(t.shape) == 2 else o.reshape((o.shape[0],) + tuple(t.shape[1:]))
                for o, t in zip(outs, self._graph.outputs)]

    def _predict_into(self, x, out, batch_size, callbacks, steps):
        """predict(x, out=out): the engine writes the rows into the caller's array."""
        if len(self._graph.inputs) != 1 or len(self._graph.outputs) != 1:
            raise ValueError("out= takes a model with one input and one output; this one "
                             f"has {len(self._graph.inputs)} and {len(self._graph.outputs)}")
        if batch_size is not None or callbacks is not None or steps is not None:
            raise ValueError("out= cannot be combined with batch_size, callbacks or steps")
        shape = tuple(self._graph.outputs[0].shape[1:])
        if (not isinstance(out, np.ndarray) or out.dtype != np.float32
                or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError("out must be a writeable C-contiguous float32 array, got "
                             f"{type(out).__name__} {getattr(out, 'dtype', '')}".rstrip())
        xs = self._prepare_inputs(x)
        n = xs[0].shape[0]
        if out.shape != (n,) + shape:
            raise ValueError(f"out must have shape {(n,) + shape} for {n} rows, got "
                             f"{out.shape}")
        plan = self._plan(_INFER_ROWS, "predict")
        plan.predict_into(xs[0], out.reshape(n, -1))
        return out

    def predict_on_batch(self, x: Inputs) -> Union[np.ndarray, list[np.ndarray]]:
        """Returns the outputs for one batch `x`: the same as ``predict(x)``, on its fast
        path when x is a float32 C-contiguous array.

        Args:
            x: the inputs (an array, or a list or dict of arrays for several inputs).

        Returns:
            A float32 array, or a list of them for several outputs.
        """
        plan = self._predict_plan
        if plan is not None:
            try:
                return plan.predict(x)
            except (TypeError, ValueError):
                pass
        return self.predict(x)

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, x: Union[Inputs, Batches, None] = None, y: Optional[Inputs] = None,
                 batch_size: Optional[int] = None, verbose: Union[int, str] = 0,
                 return_dict: bool = False,
                 callbacks: Optional[Sequence[callbacks_module.Callback]] = None,
                 steps: Optional[int] = None, sample_weight: Optional[Inputs] = None
                 ) -> Union[float, list[float], dict[str, float]]:
        """Returns the loss and metrics of the model on the data (x, y).

        Runs in the engine over the whole set (no weights change; dropout is off).

        Args:
            x: the inputs: an array, a list or dict of arrays, or batches from Python
                yielding (x, y) or (x, y, sample_weight) (then `y` stays None).
            y: the targets: an array, or a list or dict of arrays per output.
            batch_size: default None (32); with `steps` or batch callbacks, the rows of
                each batch.
            verbose: accepted for Keras compatibility; evaluate prints no progress.
            return_dict: default False; True returns a dict {name: value}.
            callbacks: default None; a list of Callbacks whose on_test_* hooks run.
            steps: default None (all); the number of batches to evaluate.
            sample_weight: default None; per-sample weights as fit's, applied to the
                loss and to the weighted_metrics.

        Returns:
            The loss as a float when there are no metrics, else the list
            [loss, *metrics] in ``model.metrics_names`` order (or a dict, see
            `return_dict`).

        Raises:
            RuntimeError: when the model is not compiled.
            ValueError: when x or y do not match the model, or an argument is invalid.

        Example::

            loss, mae = model.evaluate(x_test, y_test)
        """
        self._require_compiled("evaluate()")
        batch = _check_batch_size(batch_size)
        steps = _check_steps("steps", steps)
        if batches.is_source(x):
            return self._evaluate_batches(x, y, batch_size, steps, callbacks, return_dict)
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, "y", n)
        sws = self._prepare_sample_weights(sample_weight, None, ys, "y", n)
        if steps is not None and batch_size is not None:  # Keras: the first `steps` batches
            xs, ys = [a[:steps * batch] for a in xs], [a[:steps * batch] for a in ys]
            sws = _rows_of(sws, slice(0, steps * batch))
        if callbacks:
            logs = self._evaluate_with_callbacks(xs, ys, batch, callbacks, sws)
        else:
            logs = self._evaluate_arrays(xs, ys, sws=sws)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_with_callbacks(self, xs, ys, batch, callbacks, sws=None):
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
                                        _INFER_ROWS, _CHUNK_SECONDS, _rows_of(sws, rows))
                cbs.on_test_batch_end(step, self._logs(totals))
        else:
            totals += plan.evaluate(xs, ys, _INFER_ROWS, _CHUNK_SECONDS, sws)
            cbs.on_test_batch_end(steps - 1, self._logs(totals))
        logs = self._logs(totals)
        cbs.on_test_end(logs)
        return logs

    def test_on_batch(self, x: Inputs, y: Optional[Inputs] = None,
                      sample_weight: Optional[Inputs] = None, return_dict: bool = False
                      ) -> Union[float, list[float], dict[str, float]]:
        """Returns the loss and metrics on one batch (x, y), without training.

        Args:
            x: the inputs (an array, or a list or dict of arrays).
            y: the targets (an array, or a list or dict of arrays per output).
            sample_weight: default None; per-sample weights as fit's.
            return_dict: default False; True returns a dict {name: value}.

        Returns:
            The loss (a float) or [loss, *metrics], or a dict, as evaluate.
        """
        return self.evaluate(x, y, batch_size=None, return_dict=return_dict,
                             sample_weight=sample_weight)

    def _evaluate_arrays(self, xs, ys, sws=None, prefix=""):
        totals = self._plan(_INFER_ROWS, "loss").evaluate(xs, ys, _INFER_ROWS, _CHUNK_SECONDS,
                                                          sws)
        return self._logs(totals, prefix)

    def _logs(self, totals, prefix=""):
        """{"loss": ..., "mae": ...} (several outputs: also "<output>_loss" and
        "<output>_<metric>") from engine totals [rows, loss, head losses, metric slots]:
        the losses are sums of rows x batch loss, each metric's value a function of its
        summed slots."""
        totals = totals.tolist()
        rows = max(totals[0], 1.0)
        metric_logs = getattr(self, "_metric_logs", ())
        n_losses = len(self._log_names_cache) - len(metric_logs)
        logs = {prefix + k: v / rows for k, v in
                zip(self._log_names_cache[:n_losses],
                    totals[1:2] + (totals[2:1 + n_losses] if n_losses > 1 else []))}
        for name, metric, at, n in metric_logs:
            logs[prefix + name] = metric._result(totals[at:at + n], totals[0])
        return logs

    def _history_of(self, rows):
        """History.history from the totals rows of whole epochs (lists), per column at
        once: a dict per epoch costs more than a small model's steps."""
        metric_logs = getattr(self, "_metric_logs", ())
        n_losses = len(self._log_names_cache) - len(metric_logs)
        cols = [1] + (list(range(2, 1 + n_losses)) if n_losses > 1 else [])
        history = {k: [r[c] / r[0] for r in rows]
                   for k, c in zip(self._log_names_cache[:n_losses], cols)}
        for name, metric, at, n in metric_logs:
            history[name] = [metric._result(r[at:at + n], r[0]) for r in rows]
        return history

    # -- one step ---------------------------------------------------------------------------
    def train_on_batch(self, x: Inputs, y: Optional[Inputs] = None,
                       sample_weight: Optional[Inputs] = None,
                       class_weight: Optional[Mapping[int, float]] = None,
                       return_dict: bool = False) -> Union[float, list[float], dict[str, float]]:
        """Runs one optimizer step on (x, y) taken as a single batch.

        The lean path for online training: no shuffling, no History, no callbacks.

        Args:
            x: the inputs (an array, or a list or dict of arrays).
            y: the targets (an array, or a list or dict of arrays per output).
            sample_weight: default None; per-sample weights as fit's.
            class_weight: default None; {class index: weight} as fit's.
            return_dict: default False; True returns a dict {name: value}.

        Returns:
            The loss computed before the step (a float), or [loss, *metrics], or a dict.

        Raises:
            RuntimeError: when the model is not compiled.
            ValueError: when x or y do not match the model.
        """
        self._require_compiled("train_on_batch()")
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        n = xs[0].shape[0]
        ys = self._prepare_targets(y, "y", n)
        sws = None if sample_weight is None and class_weight is None else \
            self._prepare_sample_weights(sample_weight, class_weight, ys, "y", n)
        # plans are sized in powers of two so that varying batch sizes reuse a few
        plan = self._plan(1 << (n - 1).bit_length(), "loss")
        run = _engine.Run(plan, xs, ys, n, 1, False, 0, 1, sws)
        status = plan.train(run, self._optimizer_state(), 1, 0.0, False)
        if status == "diverged":
            _warn_diverged(1)
        logs = self._logs(run.totals[0])
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x: Union[Inputs, Batches, None] = None, y: Optional[Inputs] = None,
            batch_size: Optional[int] = None, epochs: int = 1, verbose: Union[int, str] = "auto",
            callbacks: Optional[Sequence[callbacks_module.Callback]] = None,
            validation_split: float = 0.0,
            validation_data: Union[tuple[Any, ...], Batches, None] = None, shuffle: bool = True,
            class_weight: Optional[Mapping[int, float]] = None,
            sample_weight: Optional[Inputs] = None, initial_epoch: int = 0,
            steps_per_epoch: Optional[int] = None, validation_steps: Optional[int] = None,
            validation_batch_size: Optional[int] = None,
            validation_freq: Union[int, Sequence[int]] = 1) -> callbacks_module.History:
        """Trains the model for a number of epochs on (x, y).

        With arrays, the engine runs whole epochs (shuffle, forward, loss, backward,
        optimizer step) in native code and hands control back to Python about every
        0.1 s, or at each batch when a callback asks for batch hooks. Training stops
        with a RuntimeWarning if the loss or the weights become NaN or Inf.

        Args:
            x: the inputs: an array of shape (n, *input_shape) (converted to float32),
                a list or dict of arrays for several inputs, or batches from Python (a
                generator, an iterable or a PyDataset yielding (x, y) or
                (x, y, sample_weight); then `y` stays None).
            y: the targets: an array (n, ...) (integer labels for the sparse losses), or
                a list or dict keyed by output name for several outputs.
            batch_size: rows per optimizer step; default None (32). The last batch of an
                epoch may be smaller.
            epochs: default 1; the index of the last epoch: training runs epochs
                `initial_epoch` to `epochs` - 1.
            verbose: "auto" (default, same as 1), 0 silent, 1 a progress bar, 2 one
                line per epoch.
            callbacks: default None; a list of fastnn.callbacks.Callback.
            validation_split: default 0.0; a fraction in [0, 1) of the rows held out
                for validation: the last rows of x and y, taken before shuffling.
            validation_data: default None; (x_val, y_val) or
                (x_val, y_val, sample_weight_val), or batches; evaluated after each
                epoch and logged as "val_loss", "val_<metric>". Overrides
                `validation_split`.
            shuffle: default True; reshuffle the rows before each epoch.
            class_weight: default None; {class index: weight} multiplying the loss of
                each sample by the weight of its class (one output).
            sample_weight: default None; per-sample weights of the loss: one (n,)
                array, or a list or dict with one per output. As Keras, a batch's loss is
                sum_i w_i loss_i / rows, and only `weighted_metrics` use the weights.
            initial_epoch: default 0; the epoch to start at (to resume a training).
            steps_per_epoch: default None (one pass over x); batches per epoch. Without
                `batch_size` it sets the batch size to ceil(n / steps_per_epoch).
            validation_steps: default None (all); batches of validation data used.
            validation_batch_size: default None; checked for Keras compatibility,
                but validation on arrays always runs in the engine's blocks of up to
                1024 rows (the result does not depend on the block size).
            validation_freq: default 1; validate every `validation_freq` epochs, or
                after the epochs (counted from 1) listed in a list.

        Returns:
            A fastnn.callbacks.History: ``history.history`` maps each logged name
            ("loss", metrics, "val_loss", ...) to its per-epoch values.

        Raises:
            RuntimeError: when the model is not compiled.
            ValueError: when x or y do not match the model, or an argument is invalid
                (the message names the argument and echoes its value).

        Example::

            model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
            history = model.fit(x_train, y_train, batch_size=32, epochs=100,
                                validation_split=0.2, verbose=0)
            history.history["val_loss"][-1]
        """
        self._require_compiled("fit()")
        batch_given = batch_size is not None
        batch_size = _check_batch_size(batch_size)
        for arg, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if type(value) is not int and (isinstance(value, bool) or  # noqa: E721 (fast path)
                                           not isinstance(value, numbers.Integral)) \
                    or not 0 <= value < _MAX_EPOCHS:
                raise ValueError(f"{arg} must be an integer in [0, {_MAX_EPOCHS}). Received: "
                                 f"{arg}={value!r}")
        if verbose == "auto":
            verbose = 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
        if type(validation_split) is not float and not isinstance(validation_split, numbers.Real) \
                or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1). Received: "
                             f"validation_split={validation_split!r}")
        # (the options checked only when given: a small model's fit call is ~12 us)
        if steps_per_epoch is not None:
            steps_per_epoch = _check_steps("steps_per_epoch", steps_per_epoch)
        if validation_steps is not None:
            validation_steps = _check_steps("validation_steps", validation_steps)
        if validation_batch_size is not None:
            _check_batch_size(validation_batch_size, "validation_batch_size")
        if type(validation_freq) is not int or validation_freq != 1:
            _check_validation_freq(validation_freq)
        from_batches = not isinstance(x, np.ndarray) and batches.is_source(x)
        if from_batches and (sample_weight is not None or class_weight is not None):
            raise ValueError("sample_weight and class_weight take arrays: when x is batches, "
                             "give batches of (x, y, sample_weight)")
        if from_batches:
            return self._fit_source(x, y, batch_size if batch_given else None, epochs,
                                    verbose, callbacks, validation_split, validation_data,
                                    shuffle, initial_epoch, steps_per_epoch, validation_steps,
                                    validation_freq)
        xs = self._prepare_inputs(x)
        self._resolve_compile()
        ys = self._prepare_targets(y, "y", xs[0].shape[0])
        sws = self._prepare_sample_weights(sample_weight, class_weight, ys, "y", xs[0].shape[0])
        val = self._validation(validation_data, validation_steps)
        if val is None and validation_split:
            # Keras holds out the last rows, before any shuffling.
            n = xs[0].shape[0]
            split = int(n * (1.0 - validation_split))
            if split == 0 or split == n:
                raise ValueError(f"validation_split={validation_split} leaves "
                                 f"{split} of {n} rows for training")
            held_out, kept = slice(split, None), slice(0, split)
            val = (_rows_of(xs, held_out), _rows_of(ys, held_out), _rows_of(sws, held_out))
            xs, ys, sws = _rows_of(xs, kept), _rows_of(ys, kept), _rows_of(sws, kept)

        n = xs[0].shape[0]
        if steps_per_epoch is not None:  # Keras: sets the batch size, else cuts the passes
            if not batch_given:
                batch_size = -(-n // steps_per_epoch)
            elif steps_per_epoch != -(-n // batch_size):
                if sws is not None:
                    raise ValueError("sample_weight and class_weight need steps_per_epoch to "
                                     "cover whole passes over x (or leave batch_size unset)")
                return self._fit_source(batches.ArraySource(xs, ys, batch_size, shuffle), None,
                                        None, epochs, verbose, callbacks, 0.0, val, shuffle,
                                        initial_epoch, steps_per_epoch, None, validation_freq)
        batch = min(batch_size, n)
        plan = self._plan(batch, "loss")
        opt = self._optimizer_state()
        seed = utils.next_seed()
        plan.set_dropout_seed(seed ^ _DROPOUT_STREAM)  # a stream apart from the shuffle's
        todo = max(epochs - initial_epoch, 0)
        run = _engine.Run(plan, xs, ys, batch, todo, bool(shuffle), seed, min(max(todo, 1), 256),
                          sws)
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
        resumed = self._resumed_run(plan, xs, ys, batch, epochs, shuffle, sws)  # BackupAndRestore
        if resumed is not None:
            initial_epoch, run = resumed
        self._active_fit = (plan, run)
        logs = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            logs, diverged = self._fit_epoch(plan, run, opt, cbs, steps)
            if val is not None and not diverged and _validates(epoch, validation_freq):
                logs.update(self._validate(val))
            cbs.on_epoch_end(epoch, logs)
            if diverged:
                _warn_diverged(epoch + 1, run.step)
                break
            if self.stop_training:
                break
        self._active_fit = None
        cbs.on_train_end(logs)
        return history

    def _fit_quietly(self, plan, run, opt, history, initial_epoch):
        """Nobody watches between epochs: whole epochs per call, History filled at the end."""
        rows, status = [], "paused"
        while status not in ("done", "diverged"):
            status = plan.train(run, opt, _NO_LIMIT, _CHUNK_SECONDS, False)
            rows += run.take_totals().tolist()
        if status == "diverged":
            if run.step:  # the epoch it stopped in
                rows.append(run.current().tolist())
                _warn_diverged(initial_epoch + run.epoch + 1, run.step)
            else:  # found after the last step of an epoch
                _warn_diverged(initial_epoch + run.epoch, run.steps_per_epoch)
        history.epoch = list(range(initial_epoch, initial_epoch + len(rows)))
        if rows:
            history.history = self._history_of(rows)

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

    # -- resuming a fit (callbacks.BackupAndRestore) ----------------------------------------
    def _fit_snapshot(self):
        """The running fit's random streams after the epoch that just ended: the shuffle's
        order and state (fits on arrays) and the dropout state."""
        active = getattr(self, "_active_fit", None)
        if active is None:
            return {}
        plan, run = active
        return {"perm": run.perm.copy(), "shuffle_state": run.shuffle_state,
                "dropout_state": plan.dropout_state}

    def _resumed_run(self, plan, xs, ys, batch, epochs, shuffle, sws=None):
        """(initial epoch, a Run that goes on where the backup left off) when a
        BackupAndRestore restored one in on_train_begin, else None."""
        resume = self.__dict__.pop("_resume", None)
        if resume is None:
            return None
        first = min(resume["epoch"], epochs)
        todo = epochs - first
        run = _engine.Run(plan, xs, ys, batch, todo, bool(shuffle),
                          resume.get("shuffle_state", utils.next_seed()), min(max(todo, 1), 256),
                          sws)
        perm = resume.get("perm")
        if perm is not None and perm.shape == run.perm.shape:
            run.perm[...] = perm
        if "dropout_state" in resume:
            plan.set_dropout_seed(resume["dropout_state"])
        return first, run

    # -- batches from Python (models/batches.py) -------------------------------------------
    def _fit_source(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                    validation_data, shuffle, initial_epoch, steps, validation_steps,
                    validation_freq):
        """fit() over batches that Python hands over one at a time (a generator, an
        iterable, a PyDataset, or arrays cut into epochs that are not whole passes): one
        engine call per batch, Keras' epoch semantics (batches.Epochs)."""
        if isinstance(x, batches.ArraySource):
            src, val = x, validation_data  # checked arrays and validation, from fit
        else:
            kind = type(x).__name__
            for arg, value in (("y", y), ("batch_size", batch_size),
                               ("validation_split", validation_split or None)):
                if value is not None:
                    raise ValueError(f"When x is a {kind} (batches), `{arg}` should not be "
                                     f"passed: the batches hold the targets and set their "
                                     f"size. Received: {arg}={value!r}")
            src = batches.source(x, shuffle)
            if isinstance(src, batches.PyDatasetSource) and src.num_batches is None \
                    and steps is None:
                raise ValueError(f"x ({kind}) is endless (num_batches is None): pass "
                                 "steps_per_epoch")
            val = self._validation(validation_data, validation_steps)
        epochs_iter = batches.Epochs(src, steps)
        cbs = callbacks_module.CallbackList(callbacks, add_history=True,
                                            add_progbar=verbose != 0, verbose=verbose,
                                            model=self, epochs=epochs,
                                            steps=epochs_iter.num_batches)
        history = self.history = cbs.history
        self.stop_training = False
        fit = {"plan": None, "seed": utils.next_seed(), "prepared": src.prepared}
        cbs.on_train_begin()
        resume = self.__dict__.pop("_resume", None)  # BackupAndRestore: weights are back
        if resume is not None:
            initial_epoch = min(resume["epoch"], epochs)
        logs = {}
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            totals, diverged, step = None, False, -1
            with contextlib.closing(epochs_iter.epoch()) as epoch_batches:
                for step, batch in epoch_batches:
                    cbs.on_train_batch_begin(step)
                    row, diverged = self._train_source_batch(fit, batch)
                    totals = row if totals is None else totals + row
                    logs = self._logs(totals)
                    cbs.on_train_batch_end(step, logs)
                    if diverged or self.stop_training:
                        break
            if totals is None:
                warnings.warn(f"epoch {epoch + 1}: x gave no batch (a generator is spent "
                              "after one pass: pass steps_per_epoch, or give an iterable or "
                              "a PyDataset); training stopped", RuntimeWarning, stacklevel=3)
                break
            cbs.params["steps"] = cbs.params["steps"] or epochs_iter.num_batches
            if val is not None and not diverged and _validates(epoch, validation_freq):
                logs.update(self._validate(val))
            cbs.on_epoch_end(epoch, logs)
            if diverged:
                _warn_diverged(epoch + 1, step)
                break
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _train_source_batch(self, fit, batch):
        """One optimizer step on one batch: (its totals row, whether the loss diverged).
        Batches share the plan of the first one's size (a larger batch gets a plan of
        the next power of two), so that a fit on Python batches runs the same kernels as
        the engine's own epochs."""
        if fit["prepared"]:
            xs, ys, sw = batch
        else:
            x, y, sw = batches.unpack(batch)
            if y is None:
                raise ValueError("fit() on batches needs targets: each batch must be (x, y) "
                                 "or (x, y, sample_weight); got a batch of inputs alone")
            xs = self._prepare_inputs(x)
            self._resolve_compile()
            ys = self._prepare_targets(y, "y", xs[0].shape[0])
        n = xs[0].shape[0]
        sws = None if sw is None else \
            self._prepare_sample_weights(sw, None, ys, "sample_weight", n)
        plan = fit["plan"]
        if plan is None or n > plan.max_batch:
            plan = self._plan(n if plan is None else 1 << (n - 1).bit_length(), "loss")
            plan.set_dropout_seed(fit["seed"] ^ _DROPOUT_STREAM)
            fit["plan"] = plan
        run = _engine.Run(plan, xs, ys, n, 1, False, 0, 1, sws)
        status = plan.train(run, self._optimizer_state(), 1, 0.0, False)
        return run.totals[0].copy(), status == "diverged"

    def _validation(self, validation_data, validation_steps):
        """fit's validation data, checked: batches.Epochs over batches, or the arrays
        (x, y, sample weights or None), or None."""
        if validation_data is None:
            return None
        if batches.is_source(validation_data):
            return batches.Epochs(batches.source(validation_data), validation_steps)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, "
                             "y_val, val_sample_weight), or batches")
        xv = self._prepare_inputs(validation_data[0], "validation_data x")
        self._resolve_compile()
        yv = self._prepare_targets(validation_data[1], "validation_data y", xv[0].shape[0])
        return xv, yv, self._prepare_sample_weights(
            validation_data[2] if len(validation_data) == 3 else None, None, yv,
            "validation_data y", xv[0].shape[0])

    def _validate(self, val):
        """The val_ logs of one validation during fit."""
        if isinstance(val, batches.Epochs):
            return self._evaluate_source(val, None, "val_", "validation_data")
        return self._evaluate_arrays(*val, prefix="val_")

    def _evaluate_source(self, epochs_iter, cbs, prefix="", what="x"):
        """Loss and metrics over one epoch of batches (the test hooks see every batch).
        Validation that gets no batch warns and logs nothing."""
        totals = None
        with contextlib.closing(epochs_iter.epoch()) as epoch_batches:
            for step, batch in epoch_batches:
                if cbs is not None:
                    cbs.on_test_batch_begin(step)
                x, y, sw = batches.unpack(batch)
                if y is None:
                    raise ValueError(f"evaluating on batches needs targets: each batch of "
                                     f"{what} must be (x, y); got inputs alone")
                xs = self._prepare_inputs(x, what)
                self._resolve_compile()
                ys = self._prepare_targets(y, f"{what} y", xs[0].shape[0])
                sws = None if sw is None else self._prepare_sample_weights(
                    sw, None, ys, f"{what} sample_weight", xs[0].shape[0])
                row = self._plan(_INFER_ROWS, "loss").evaluate(xs, ys, _INFER_ROWS,
                                                              _CHUNK_SECONDS, sws)
                totals = row if totals is None else totals + row
                if cbs is not None:
                    cbs.on_test_batch_end(step, self._logs(totals))
        if totals is None:
            if prefix:
                warnings.warn(f"{what} gave no batch: no validation this epoch (a generator "
                              "is spent after one pass: pass validation_steps, or give an "
                              "iterable or a PyDataset)", RuntimeWarning, stacklevel=4)
                return {}
            raise ValueError(f"{what} gave no batch to evaluate")
        return self._logs(totals, prefix)

    def _evaluate_batches(self, x, y, batch_size, steps, callbacks, return_dict):
        """evaluate() on batches from Python."""
        for arg, value in (("y", y), ("batch_size", batch_size)):
            if value is not None:
                raise ValueError(f"When x is a {type(x).__name__} (batches), `{arg}` should "
                                 f"not be passed: the batches hold the targets and set their "
                                 f"size. Received: {arg}={value!r}")
        epochs_iter = batches.Epochs(batches.source(x), steps)
        cbs = callbacks_module.CallbackList(callbacks, model=self, verbose=0,
                                            steps=epochs_iter.num_batches)
        cbs.on_test_begin()
        logs = self._evaluate_source(epochs_iter, cbs)
        cbs.on_test_end(logs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _predict_batches(self, x, steps, callbacks):
        """predict() on batches from Python."""
        cbs = callbacks_module.CallbackList(callbacks, model=self, verbose=0, steps=steps)
        cbs.on_predict_begin()
        outs = self._output_shapes(self._predict_source(x, steps, cbs))
        cbs.on_predict_end()
        return outs[0] if len(outs) == 1 else outs

    def _predict_source(self, x, steps, cbs):
        """predict() over batches of inputs ((x,), (x, y) or x alone each)."""
        epochs_iter = batches.Epochs(batches.source(x), steps)
        outs = []
        with contextlib.closing(epochs_iter.epoch()) as epoch_batches:
            for step, batch in epoch_batches:
                if cbs is not None:
                    cbs.on_predict_batch_begin(step)
                xs = self._prepare_inputs(batches.unpack(batch)[0])
                got = self._plan(_INFER_ROWS, "predict").predict_many(xs, _CHUNK_SECONDS)
                outs.append(got)
                if cbs is not None:
                    cbs.on_predict_batch_end(step, {"outputs": got})
        if not outs:
            raise ValueError("x gave no batch to predict")
        return [np.concatenate(parts) for parts in zip(*outs)]

    # -- export ---------------------------------------------------------------------------
    def export_c(self, filepath: PathLike, name: Optional[str] = None) -> tuple[str, str]:
        """Writes the model's forward pass as self-contained C99 source.

        Args:
            filepath: the file to write, ending in ".c"; its .h header is written
                beside it.
            name: default None (the file's stem); the prefix of every public C symbol.

        Returns:
            The paths of the two files written (see fastnn.export.c).
        """
        from fastnn.export.c import export_c
        return export_c(self, filepath, name=name)

    def to_onnx(self, path: Optional[PathLike] = None, opset: int = 17) -> Any:
        """The forward pass as an ONNX ModelProto, saved to `path` when given (see
        fastnn.export.onnx; needs `pip install onnx`)."""
        from fastnn.export.onnx import to_onnx
        return to_onnx(self, path, opset=opset)


def _target_shape(t):
    """What as_targets checks targets against: the width, or the feature shape of an
    output of more than two axes (its targets come as (n, 4, 3) and go in as rows)."""
    return t.shape[-1] if len(t.shape) == 2 else tuple(t.shape[1:])


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


def _rows_of(arrays, rows):
    """Rows `rows` of each array of a list (None entries, or a None list, stay None)."""
    return None if arrays is None else [None if a is None else a[rows] for a in arrays]


def _as_sample_weights(w, name, n_rows):
    """One output's sample weights as a checked float32 (n,) array: (n,) or (n, 1), real,
    finite and non-negative."""
    arr = np.asarray(w)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight {name} must hold real numbers, got dtype {arr.dtype} "
                        f"with shape {arr.shape}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.reshape(-1)
    if arr.shape != (n_rows,):
        raise ValueError(f"sample_weight for {name} must have shape ({n_rows},) (one weight per "
                         f"sample), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)) or (n_rows and arr.min() < 0):
        raise ValueError(f"sample_weight for {name} must be finite and non-negative, got "
                         f"values in [{arr.min()}, {arr.max()}]")
    return arr


def _is_array_list(x):
    """True if x is a list of arrays (several inputs) rather than one nested list of rows."""
    return all(isinstance(a, np.ndarray) for a in x)


def _warn_diverged(epoch, step=None):
    where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
    warnings.warn(f"{where}: the loss or the weights became NaN or Inf; training stopped "
                  "(try a smaller learning_rate, or clipnorm)", RuntimeWarning, stacklevel=3)


def _check_batch_size(batch_size, name="batch_size"):
    if batch_size is None:
        return 32
    if type(batch_size) is int and batch_size > 0:
        return batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: "
                         f"{name}={batch_size!r}")
    return int(batch_size)


def _check_steps(name, steps):
    """steps_per_epoch / validation_steps / steps: None or a positive integer."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps <= 0:
        raise ValueError(f"{name} must be a positive integer or None. Received: "
                         f"{name}={steps!r}")
    return int(steps)


def _check_validation_freq(freq):
    """Keras' validation_freq: validate every `freq` epochs, or after the epochs (1-based)
    in a list."""
    if type(freq) is int and freq > 0:  # the common case, kept cheap
        return
    if isinstance(freq, numbers.Integral) and not isinstance(freq, bool) and freq > 0:
        return
    if isinstance(freq, (list, tuple, set, range)) and freq and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool) and e > 0 for e in freq):
        return
    raise ValueError(f"validation_freq must be a positive integer or a list of epoch numbers "
                     f"(from 1). Received: validation_freq={freq!r}")


def _validates(epoch, freq):
    """Whether fit validates after `epoch` (from 0) for validation_freq `freq`."""
    if isinstance(freq, numbers.Integral):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq

