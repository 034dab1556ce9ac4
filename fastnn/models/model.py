"""Model: the functional constructor Model(inputs, outputs) and the training
API shared with Sequential (compile, fit, evaluate, predict, weights, summary).

A model is a chain of layers over one flat float32 parameter buffer. compile()
picks the loss and optimizer; the first fit/evaluate/predict lowers the chain
into an _engine.Net (per batch size, cached) and fit() hands it whole epochs."""
import numbers
import warnings
import weakref

import numpy as np

from fastnn import _engine, callbacks as callbacks_module, losses, metrics as metrics_module
from fastnn import optimizers, utils
from fastnn.layers.core import InputLayer, KerasTensor
from fastnn.layers.dropout import Dropout
from fastnn.models import data, plan
from fastnn.models.summary import print_summary

# Rows per engine call in predict/evaluate: large enough to amortise the call,
# small enough that the activations stay in cache for narrow models.
_INFER_ROWS = 1024
# Dropout masks are drawn from fit's seed xor this, apart from its shuffles.
_DROPOUT_STREAM = 0xD1B54A32D192ED03


class Model:
    def __init__(self, inputs=None, outputs=None, name=None):
        self.name = name or utils.unique_name("model")
        self._reset_state()
        if inputs is None and outputs is None:
            return
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        if not isinstance(inputs, KerasTensor) or not isinstance(inputs._layer, InputLayer):
            raise TypeError("Model(inputs, outputs): inputs must be one tensor made by Input(). "
                            f"Received: inputs={inputs!r}")
        if not isinstance(outputs, KerasTensor):
            raise TypeError(f"Model(inputs, outputs): outputs must be a tensor made by calling "
                            f"layers on the inputs. Received: outputs={outputs!r}")
        chain, t = [], outputs
        while t is not inputs:
            if not t._inputs:
                raise ValueError(f"outputs {outputs!r} are not computed from inputs {inputs!r}")
            if len(t._inputs) != 1:
                raise NotImplementedError("fastnn 0.1 runs chains of single-input layers")
            chain.append(t._layer)
            t = t._inputs[0]
        self._input_layer = inputs._layer
        self._set_chain(list(reversed(chain)))

    # -- structure ----------------------------------------------------------------
    def _reset_state(self):
        self._input_layer = None
        self._chain = []          # the layers after the input, in order
        self.built = False
        self.optimizer = self.loss = None
        self._metrics = []        # (engine key, log name)
        self._params = self._grads = None
        self._offsets = {}
        self._nets = {}           # (max_batch, loss key, target width) -> _engine.Net
        self._predict_net = None  # the net behind the single-call predict path
        self._opt_state = None
        self.stop_training = False

    def _set_chain(self, chain):
        """Takes a fully built chain: moves its weights into one flat buffer."""
        for layer in chain:
            owner = layer._owner() if getattr(layer, "_owner", None) else None
            if owner is not None and owner is not self:
                raise ValueError(
                    f"Layer '{layer.name}' already belongs to model '{owner.name}'. A fastnn "
                    "model keeps all its weights in one buffer, so layers cannot be shared "
                    "between models; create a new layer (and copy weights with set_weights).")
        for layer in chain:
            layer._owner = weakref.ref(self)
        self._chain = chain
        self._params, self._offsets = plan.flatten_weights(chain)
        self._grads = np.zeros_like(self._params)
        self._nets, self._predict_net, self._opt_state = {}, None, None
        self.built = True

    @property
    def layers(self):
        return ([self._input_layer] if self._input_layer else []) + list(self._chain)

    def _summary_layers(self):
        return self.layers

    @property
    def input_shape(self):
        self._require_built("input_shape")
        return self._chain[0].input_shape if self._chain else self._input_layer.output_shape

    @property
    def output_shape(self):
        self._require_built("output_shape")
        return self._chain[-1].output_shape if self._chain else self._input_layer.output_shape

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"This model has not yet been built. Build the model first by "
                             f"calling fit() or predict() on data, or give the first layer an "
                             f"input_shape, before calling {what}.")
        if not self._chain:
            raise ValueError(f"Model '{self.name}' has no layers")

    def summary(self, line_length=None, positions=None, print_fn=None):
        self._require_built("summary()")
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    def count_params(self):
        self._require_built("count_params()")
        return int(self._params.size)

    # -- weights ----------------------------------------------------------------------
    @property
    def weights(self):
        return [w for layer in self._chain for w in layer.weights]

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

    # -- saving -------------------------------------------------------------------------
    def save(self, filepath):
        """Saves architecture, weights and compile settings (see fastnn.saving)."""
        from fastnn import saving
        saving.save_model(self, filepath)

    def save_weights(self, filepath):
        """Saves get_weights() as a pickle-free .npz (weight_0, weight_1, ...), under
        exactly the name given."""
        from fastnn import saving
        saving.write_npz(filepath, {f"weight_{i}": w for i, w in enumerate(self.get_weights())})

    def load_weights(self, filepath):
        """Loads weights written by save_weights (or save) into this model."""
        with np.load(filepath, allow_pickle=False) as archive:
            names = [k for k in archive.files if k.startswith("weight_")]
            self.set_weights([archive[f"weight_{i}"] for i in range(len(names))])

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='mse'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        names = [] if metrics is None else ([metrics] if isinstance(metrics, str) else metrics)
        self._metrics = [metrics_module.get(m) for m in names]
        if len(self._metrics) > _engine.MAX_METRICS:
            raise ValueError(f"at most {_engine.MAX_METRICS} metrics. Received: metrics={metrics!r}")
        if self.loss.sparse_labels:
            for key, name in self._metrics:
                if key != "accuracy":
                    raise ValueError(f"metric {name!r} compares outputs with targets of the "
                                     "same shape; with integer labels use 'accuracy'")
        self._nets, self._opt_state = {}, None
        if self.built:
            self._check_output_for_loss()

    def _check_output_for_loss(self):
        """A cross-entropy on probabilities (Keras' default, from_logits=False) needs the
        model to end in the activation it folds into the loss."""
        needs = None if self.loss.from_logits else self.loss.output_activation
        if needs is None:
            return
        last = getattr(self._chain[-1], "activation", "linear") if self._chain else "linear"
        if last != needs:
            raise ValueError(
                f"{self.loss.name} with from_logits=False (Keras' default) takes "
                f"probabilities, but the model ends in '{last}': it needs '{needs}' as its "
                f"last activation, or pass {type(self.loss).__name__}(from_logits=True) "
                "if the outputs are logits")

    def _require_compiled(self, what):
        if self.loss is None:
            raise RuntimeError(f"You must call compile() on the model before {what}.")

    # -- lowering -----------------------------------------------------------------------
    def _build_from_data(self, n_features):
        """Deferred build (Sequential without an input shape): nothing here."""
        raise ValueError("This model has not yet been built")

    def _net(self, max_batch, for_loss=True):
        """The compiled net for batches of up to max_batch rows: for_loss, one that computes
        the compiled loss (a cross-entropy on probabilities takes the last layer's
        pre-activation); otherwise one for predict, ending in the model's activation."""
        logits = for_loss and self.loss is not None and not self.loss.from_logits
        loss_key = self.loss.key if for_loss and self.loss is not None else "mse"
        sparse = for_loss and self.loss is not None and self.loss.sparse_labels
        target_width = 1 if sparse else self.output_shape[-1]
        key = (max_batch, loss_key, target_width, logits)
        net = self._nets.get(key)
        if net is None:
            if logits:
                self._check_output_for_loss()
            specs = plan.layer_specs(self._chain, self._offsets, max_batch, logits=logits)
            net = _engine.Net(specs, self._params, self._grads, loss=loss_key,
                              max_batch=max_batch, target_width=target_width)
            if for_loss and any(isinstance(layer, Dropout) and layer.rate > 0
                                for layer in self._chain):
                net.set_dropout_seed(utils.next_seed())  # train_on_batch: seeded masks too
            self._nets[key] = net
        return net

    def _prepare_x(self, x, name="x"):
        if not self.built:
            arr = data.as_matrix(x, name)
            self._build_from_data(arr.shape[1])
            return arr
        self._require_built(name)
        return data.as_matrix(x, name, self.input_shape[-1])

    def _prepare_y(self, y, name, n_rows):
        return data.as_targets(y, name, n_rows, self.output_shape[-1],
                               self.loss is not None and self.loss.sparse_labels)

    # -- predict --------------------------------------------------------------------------
    def predict(self, x, batch_size=None, verbose=0):
        """Outputs for x, as a new (n, units) float32 array."""
        net = self._predict_net
        if net is not None and batch_size is None:
            try:  # the latency path: a checked float32 C-contiguous array goes straight in
                return net.predict(x)
            except (TypeError, ValueError):
                pass  # anything else takes the converting path below, with its clear errors
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, numbers.Integral) or
                                       batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer. Received: "
                             f"batch_size={batch_size!r}")
        x = self._prepare_x(x)
        if self._predict_net is None:
            self._predict_net = self._net(_INFER_ROWS, for_loss=False)
        return self._predict_net.predict(x)

    __call__ = predict

    # -- evaluate -------------------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=None, verbose=0, return_dict=False):
        """The loss (and metrics) over (x, y): a float, or [loss, *metrics]."""
        self._require_compiled("evaluate()")
        batch_size = _check_batch_size(batch_size)
        x = self._prepare_x(x)
        y = self._prepare_y(y, "y", x.shape[0])
        logs = self._evaluate_arrays(x, y)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_arrays(self, x, y, prefix=""):
        net = self._net(_INFER_ROWS)
        keys = tuple(k for k, _ in self._metrics)
        loss_sum, msums, rows = net.evaluate(x, y, _INFER_ROWS, keys)
        return self._logs(loss_sum / rows, [s / rows for s in msums], prefix)

    def _logs(self, loss, metric_values, prefix=""):
        """{"loss": ..., "mae": ...} as Keras names them in History and the progress line."""
        logs = {prefix + "loss": loss}
        for (_, name), value in zip(self._metrics, metric_values):
            logs[prefix + name] = value
        return logs

    # -- one step ---------------------------------------------------------------------------
    def train_on_batch(self, x, y):
        """One optimizer step on (x, y) as a single batch: the loss (before the step), or
        [loss, *metrics]. The lean path for online training: no shuffle, no History."""
        self._require_compiled("train_on_batch()")
        x = self._prepare_x(x)
        y = self._prepare_y(y, "y", x.shape[0])
        n = x.shape[0]
        # nets are sized in powers of two so that varying batch sizes reuse a few
        net = self._net(1 << (n - 1).bit_length())
        if self._opt_state is None:
            self._opt_state = self.optimizer._make_state(self._params.size)
        loss_sum, msums, rows, diverged = net.train_epoch(
            x, y, self._opt_state, n, None, tuple(k for k, _ in self._metrics))
        if diverged:
            _warn_diverged(1)
        logs = self._logs(loss_sum / rows, [s / rows for s in msums])
        return logs["loss"] if len(logs) == 1 else list(logs.values())

    # -- fit ------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Trains for `epochs` epochs; returns a History. Each epoch is one native call."""
        self._require_compiled("fit()")
        batch_size = _check_batch_size(batch_size)
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer. Received: epochs={epochs!r}")
        if verbose == "auto":
            verbose = 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
        if not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
            raise ValueError(f"validation_split must be in [0, 1). Received: "
                             f"validation_split={validation_split!r}")
        x = self._prepare_x(x)
        y = self._prepare_y(y, "y", x.shape[0])
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            xv = self._prepare_x(validation_data[0], "validation_data x")
            val = (xv, self._prepare_y(validation_data[1], "validation_data y", xv.shape[0]))
        elif validation_split:
            # Keras holds out the last rows, before any shuffling.
            split = int(x.shape[0] * (1.0 - validation_split))
            if split == 0 or split == x.shape[0]:
                raise ValueError(f"validation_split={validation_split} leaves "
                                 f"{split} of {x.shape[0]} rows for training")
            val, x, y = (x[split:], y[split:]), x[:split], y[:split]

        n = x.shape[0]
        batch = min(batch_size, n)
        net = self._net(batch)
        if self._opt_state is None:
            self._opt_state = self.optimizer._make_state(self._params.size)
        keys = tuple(k for k, _ in self._metrics)
        perm = np.arange(n, dtype=np.int64)
        seed = utils.next_seed()
        net.set_dropout_seed(seed ^ _DROPOUT_STREAM)  # a stream apart from the shuffle's

        history = callbacks_module.History()
        cbs = [history] + list(callbacks or [])
        if verbose:
            cbs.append(callbacks_module.ProgbarLogger(verbose))
        params = {"epochs": epochs, "steps": -(-n // batch), "verbose": verbose}
        for cb in cbs:
            cb.set_model(self)
            cb.set_params(params)
        self.history = history
        self.stop_training = False
        for cb in cbs:
            cb.on_train_begin()
        if len(cbs) == 1 and val is None:
            # Nobody watches between epochs: all of them in one native call.
            losses_, metrics_, _ = net.train(x, y, self._opt_state, batch,
                                             max(epochs - initial_epoch, 0), perm, seed, shuffle,
                                             keys)
            if losses_:  # History's lists, filled at once (a call per epoch costs ~1 us)
                history.epoch = list(range(initial_epoch, initial_epoch + len(losses_)))
                history.history["loss"] = losses_
                for j, (_, name) in enumerate(self._metrics):
                    history.history[name] = [values[j] for values in metrics_]
            if len(losses_) < epochs - initial_epoch:
                _warn_diverged(initial_epoch + len(losses_))
            return history
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if shuffle:
                seed = _engine.shuffle(perm, seed)
            loss_sum, msums, rows, diverged = net.train_epoch(
                x, y, self._opt_state, batch, perm if shuffle else None, keys)
            logs = self._logs(loss_sum / rows, [s / rows for s in msums])
            if val is not None:
                logs.update(self._evaluate_arrays(*val, prefix="val_"))
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if diverged:
                _warn_diverged(epoch + 1)
                break
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return history


def _warn_diverged(epoch):
    warnings.warn(f"epoch {epoch}: the loss became NaN or Inf; training stopped "
                  "(try a smaller learning_rate)", RuntimeWarning, stacklevel=3)


def _check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer. Received: "
                         f"batch_size={batch_size!r}")
    return int(batch_size)
