"""Layer base class, symbolic tensors, Input and Dense.

A layer is Keras' shape: __init__ stores config, build(input_shape) creates weights
with add_weight, call(x) computes on arrays, compute_output_shape infers shapes,
get_config describes it. For the compiled engine each layer also says how it lowers
into ops (_lower): a new layer is its own file, with no edits in the planner."""
from __future__ import annotations

import contextlib
import numbers
import threading
import weakref
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from fastnn import _engine, activations, constraints, initializers, regularizers
from fastnn._typing import ArrayLike, Config, DTypeLike, InputShape, Shape
from fastnn.utils import to_snake_case, unique_name


_deferred = threading.local()
_deferred.active = False


@contextlib.contextmanager
def deferred_weights() -> Iterator[None]:
    """Layers built inside make zero-stride placeholders instead of weights: their shapes
    without their memory (fastnn.saving fills them after checking a file)."""
    before = getattr(_deferred, "active", False)
    _deferred.active = True
    try:
        yield
    finally:
        _deferred.active = before


# layer -> weak references to the outputs of its symbolic calls (layer.input/.output), kept
# outside the layers so that they copy and pickle as before
_CALLS = weakref.WeakKeyDictionary()


class KerasTensor:
    """A symbolic tensor: a shape (batch axis None), a dtype, and the layer call that
    made it (the layer and that call's input tensors).

    Input() returns one, and calling a layer on one returns another: they describe the
    graph a functional Model is built from and hold no values.
    """

    def __init__(self, shape: Shape, dtype: str = "float32", layer: Optional[Layer] = None,
                 inputs: Sequence[KerasTensor] = ()) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self._layer = layer           # the layer whose call produced this tensor
        self._inputs = tuple(inputs)  # that call's input tensors

    @property
    def name(self) -> Optional[str]:
        return self._layer.name if self._layer is not None else None

    # a + b, a - b, a * b: the merge layers, as Keras' symbolic tensors allow
    def __add__(self, other):
        from fastnn.layers.merge import Add
        return Add()([self, other])

    def __sub__(self, other):
        from fastnn.layers.merge import Subtract
        return Subtract()([self, other])

    def __mul__(self, other):
        from fastnn.layers.merge import Multiply
        return Multiply()([self, other])

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic: it has no value to test. Python control flow "
                        "on tensor values (if/while on a tensor) cannot be traced into a "
                        "graph of layers")

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


# a model's inputs or outputs: one tensor, a list, or a dict by name
Tensors = Union[KerasTensor, Sequence[KerasTensor], Mapping[str, KerasTensor]]


def _shape_tuple(shape, argname):
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{argname} must be a tuple of positive ints. Received: {argname}={shape!r}")
    if not shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
                            for d in shape):
        raise ValueError(f"{argname} must be a non-empty tuple of positive ints. "
                         f"Received: {argname}={shape!r}")
    return tuple(int(d) for d in shape)


def as_tensor_list(inputs: Any) -> tuple[list[Any], bool]:
    """(list of tensors, whether a list was given)."""
    if isinstance(inputs, (list, tuple)):
        return list(inputs), True
    return [inputs], False


class Layer:
    """The base class of all layers, with Keras' shape.

    A layer validates and stores its configuration in ``__init__``, creates its weights
    in ``build(input_shape)`` (on its first call), and computes its outputs in
    ``compute_output_shape`` (symbolically) and ``_lower`` (the engine ops it compiles
    to; the training loop never calls Python per step). ``call`` computes the outputs
    of arrays directly (``layer(x)`` on a NumPy batch), for the layers that define it.

    Weights are float32 arrays made by add_weight and kept as attributes of that name;
    once a model holds the layer they are views into the model's flat buffers
    (trainable parameters, or state for frozen weights).

    Args:
        name: default None gives the snake-case class name, numbered ("dense",
            "dense_1", ...).
        input_shape: default None; the shape of one sample (no batch axis), for the
            first layer of a Sequential model.
        trainable: default True; False freezes the layer's weights.
        dtype: None or "float32" (fastnn computes in float32 only).
        input_dim: default None; shorthand for ``input_shape=(input_dim,)``.

    Raises:
        TypeError: on an unknown keyword argument.
        ValueError: on an empty name or another dtype than float32.
    """

    def __init__(self, name: Optional[str] = None, input_shape: Optional[Sequence[int]] = None,
                 trainable: bool = True, dtype: DTypeLike = None, input_dim: Optional[int] = None,
                 **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: "
                            f"{sorted(kwargs)}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string. Received: name={name!r}")
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"fastnn layers compute in float32. Received: dtype={dtype!r}")
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self._weight_names = []          # attribute names, in creation order
        self._weight_trainable = {}      # name -> created trainable
        self._batch_input_shape = (
            None if input_shape is None else (None,) + _shape_tuple(input_shape, "input_shape"))

    # -- trainability -------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """Whether the optimizer updates the layer's weights (settable)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        from fastnn.models import weights
        self._trainable = bool(value)
        weights.bump_trainable()  # models re-read which weights train at their next run

    # -- weights ------------------------------------------------------------------
    def add_weight(self, name: str, shape: Sequence[int],
                   initializer: initializers.InitializerLike = "glorot_uniform",
                   trainable: bool = True) -> np.ndarray:
        """Creates a float32 weight, stores it as attribute `name` and returns it.

        Call it from ``build``. The weight joins the model's flat buffers when a model
        holding the layer is compiled into a plan.

        Args:
            name: the weight's name and the attribute holding it, e.g. "kernel".
            shape: the weight's shape, a tuple of ints.
            initializer: default "glorot_uniform"; a name or a fastnn.initializers
                instance or callable.
            trainable: default True; False makes a non-trainable weight (state such as
                BatchNormalization's moving mean).

        Returns:
            The new float32 array.

        Raises:
            ValueError: when the layer already has a weight of that name, or the
                initializer is unknown.
        """
        if name in self._weight_trainable:
            raise ValueError(f"Layer '{self.name}' already has a weight named {name!r}")
        init = initializers.get(initializer)
        if getattr(_deferred, "active", False):  # shape only: a loaded file is checked first
            value = np.broadcast_to(np.float32(0), tuple(int(d) for d in shape))
        else:
            value = np.array(init(tuple(shape)), dtype=np.float32, order="C")  # 0-d stays 0-d
        self._weight_names.append(name)
        self._weight_trainable[name] = bool(trainable)
        setattr(self, name, value)
        return value

    def _weight_entries(self):
        """(name, created trainable) of each weight, trainable ones first (Keras' order)."""
        names = [n for n in self._weight_names if getattr(self, n, None) is not None]
        return ([(n, True) for n in names if self._weight_trainable[n]] +
                [(n, False) for n in names if not self._weight_trainable[n]])

    @property
    def weights(self) -> list[np.ndarray]:
        """The layer's weights: trainable ones first, each group in creation order."""
        return [getattr(self, n) for n, _ in self._weight_entries()]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        if not self.trainable:
            return []
        return [getattr(self, n) for n, t in self._weight_entries() if t]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        if not self.trainable:
            return self.weights
        return [getattr(self, n) for n, t in self._weight_entries() if not t]

    def count_params(self) -> int:
        """Returns the number of values in the layer's weights (raises ValueError before build)."""
        if not self.built:
            raise ValueError(f"You tried to call count_params on layer '{self.name}', "
                             "but the layer isn't built.")
        return int(sum(w.size for w in self.weights))

    def get_weights(self) -> list[np.ndarray]:
        """Returns copies of the layer's weights (a list of float32 arrays)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights: Sequence[ArrayLike]) -> None:
        """Sets the layer's weights in place from a list of arrays, all or nothing.

        Args:
            weights: one array per weight, in get_weights' order and shapes.

        Raises:
            ValueError: on a wrong count or shape or a non-finite value (nothing is
                written then).
        """
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"Layer '{self.name}' expects {len(own)} weight arrays, "
                             f"got {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        for w, new in zip(own, arrays):  # all checked first: no half-written layer
            if new.shape != w.shape:
                raise ValueError(f"Layer '{self.name}': weight shape {w.shape} does not match "
                                 f"the given shape {new.shape}")
            check_weight_values(new, f"Layer '{self.name}': weights")
        for w, new in zip(own, arrays):
            w[...] = new  # in place: the arrays may be views into a model's buffer

    # -- structure --------------------------------------------------------------
    def build(self, input_shape: InputShape) -> None:
        """Creates the layer's weights for inputs of `input_shape`; called once, on the
        layer's first call.

        Subclasses create their weights with add_weight, then call ``super().build``,
        which records the input and output shapes and sets ``built``.

        Args:
            input_shape: the input's shape with the batch axis first (None), e.g.
                (None, 13); a list of shapes for a layer with several inputs.
        """
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        """Returns the output's shape for an input of `input_shape` (batch axis first).

        The base layer returns the input shape (element-wise layers).

        Args:
            input_shape: a shape tuple, or a list of them for several inputs.

        Returns:
            The output shape, a tuple.
        """
        return tuple(input_shape)

    def _build_once(self, input_shape):
        if not self.built:
            self.build(input_shape)
            return
        if not _same_feature_shapes(input_shape, self.input_shape):
            raise ValueError(f"Layer '{self.name}' expects input shape {self.input_shape}, "
                             f"got {input_shape}")

    def __call__(self, inputs: Union[KerasTensor, ArrayLike, Sequence[Any]]
                 ) -> Union[KerasTensor, np.ndarray]:
        tensors, is_list = as_tensor_list(inputs)
        if all(isinstance(t, KerasTensor) for t in tensors):
            shapes = [t.shape for t in tensors] if is_list else tensors[0].shape
            self._check_inputs(tensors, is_list)
            self._build_once(shapes)
            out = KerasTensor(self.compute_output_shape(shapes), layer=self, inputs=tensors)
            calls = [r for r in _CALLS.get(self, ()) if r() is not None]
            _CALLS[self] = calls + [weakref.ref(out)]  # calls of a dropped graph fall away
            return out
        if any(isinstance(t, KerasTensor) for t in tensors):
            raise TypeError(f"Layer '{self.name}' takes either symbolic tensors or arrays, "
                            "not a mix")
        arrays = []
        for t in tensors:
            arr = np.ascontiguousarray(t, dtype=np.float32)
            if arr.ndim < 2:
                raise ValueError(f"Layer '{self.name}' takes a batch (n, features), got shape "
                                 f"{arr.shape}")
            arrays.append(arr)
        shapes = [(None,) + a.shape[1:] for a in arrays]
        self._check_inputs(arrays, is_list)
        self._build_once(shapes if is_list else shapes[0])
        return self.call(arrays if is_list else arrays[0])

    def _check_inputs(self, inputs, is_list):
        """Single-input layers refuse a list (merges override this)."""
        if is_list and len(inputs) != 1:
            raise ValueError(f"Layer '{self.name}' ({type(self).__name__}) takes one input, "
                             f"got a list of {len(inputs)}")

    def call(self, x: Any) -> Any:
        """Computes the layer's output for a float32 array batch `x` (``layer(x)``).

        Used when the layer is called on arrays outside a model; inside a model the
        layer runs in the engine through the ops its ``_lower`` emits. Layers without an
        array path raise NotImplementedError.

        Args:
            x: a float32 array (n, ...), or a list of them for several inputs.

        Returns:
            A float32 array.
        """
        raise NotImplementedError(f"{type(self).__name__} has no call()")

    def _lower(self, ctx, inputs):
        """Emits this layer's ops into ctx (models/plan.py) given its input tensor ids;
        returns the output tensor id."""
        raise NotImplementedError(
            f"fastnn cannot compile layer '{self.name}' ({type(self).__name__}) yet")

    # -- config ------------------------------------------------------------------
    def get_config(self) -> Config:
        """Returns the layer's configuration: the constructor arguments as a JSON-able dict.

        ``type(layer).from_config(layer.get_config())`` makes an equal layer with fresh
        weights; fastnn.saving relies on it. Subclasses add their own arguments to the
        base dict (name, trainable, and input_shape when given).

        Returns:
            A dict.
        """
        config = {"name": self.name, "trainable": self.trainable}
        if self._batch_input_shape is not None:
            config["input_shape"] = self._batch_input_shape[1:]
        return config

    @classmethod
    def from_config(cls, config: Config) -> Layer:
        """Returns a new layer (fresh weights) from get_config()'s dict."""
        return cls(**config)

    # -- the tensors of its call (layers called once, as Keras) ---------------------------
    def _only_call(self, what):
        """The output tensor of the layer's one live symbolic call."""
        calls = [t for t in (r() for r in _CALLS.get(self, ())) if t is not None]
        if not calls:
            raise AttributeError(f"Layer '{self.name}' is not connected: it has not been "
                                 f"called on a symbolic tensor, so it has no {what}.")
        if len(calls) > 1:
            raise AttributeError(f"Layer '{self.name}' has been called {len(calls)} times, "
                                 f"hence the notion of \"layer {what}\" is ill-defined (each "
                                 f"call has its own); use the tensors the calls returned.")
        return calls[0]

    @property
    def input(self) -> Union[KerasTensor, list[KerasTensor]]:
        """The input tensor (a list for several) of the layer's only call."""
        ins = self._only_call("input")._inputs
        return ins[0] if len(ins) == 1 else list(ins)

    @property
    def output(self) -> Union[KerasTensor, list[KerasTensor]]:
        """The output tensor of the layer's only call."""
        return self._only_call("output")

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_weight_values(array: np.ndarray, what: str) -> None:
    """Raises unless `array` holds real numbers that float32 represents (finite and within
    its range: 1e39 would silently become Inf)."""
    if array.dtype.kind not in "fiub":
        raise ValueError(f"{what} must be real numbers, got dtype {array.dtype}")
    if array.size and array.dtype.kind == "f" and not (
            np.all(np.isfinite(array)) and np.max(np.abs(array)) <= _FLOAT32_MAX):
        raise ValueError(f"{what} must be finite and within float32's range (|w| <= "
                         f"{_FLOAT32_MAX:.4g}), got values in [{np.min(array)}, {np.max(array)}]")
    if array.size and array.dtype.kind in "iu" and np.max(np.abs(array)) > _FLOAT32_MAX:
        raise ValueError(f"{what} must be within float32's range")


def _same_feature_shapes(a, b):
    if isinstance(a, list) != isinstance(b, list):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(x[1:] == y[1:] for x, y in zip(a, b))
    return tuple(a)[1:] == tuple(b)[1:]


class InputLayer(Layer):
    """The layer behind Input(): it holds the model's input shape, no weights.

    Args:
        shape: the shape of one sample, without the batch axis, e.g. (13,).
        name: default None gives "input_1", "input_2", ...
    """

    def __init__(self, shape: Union[int, Sequence[int]], name: Optional[str] = None) -> None:
        # tf.keras 2.x numbers inputs from 1: input_1, input_2, ...
        super().__init__(name=name or unique_name("input", first=1), input_shape=shape)
        self.build(self._batch_input_shape)
        self._output = KerasTensor(self._batch_input_shape, layer=self)

    @property
    def input(self) -> KerasTensor:
        return self._output

    @property
    def output(self) -> KerasTensor:
        return self._output

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return self._batch_input_shape

    def get_config(self) -> Config:
        return {"name": self.name, "shape": self._batch_input_shape[1:]}


def Input(shape: Union[int, Sequence[int], None] = None, batch_size: Optional[int] = None,
          name: Optional[str] = None, dtype: DTypeLike = "float32") -> KerasTensor:
    """Returns a symbolic input tensor, the start of a functional model.

    Args:
        shape: required; the shape of one sample without the batch axis, e.g. (13,).
            Input(shape=(13,)) has shape (None, 13).
        batch_size: must stay None: fastnn models take any batch size.
        name: default None gives "input_1", "input_2", ...
        dtype: "float32" (the default and the only dtype fastnn computes in).

    Returns:
        A KerasTensor.

    Raises:
        ValueError: when `shape` is missing, or `batch_size` or `dtype` is given
            another value.

    Example::

        inputs = fastnn.Input(shape=(13,))
        outputs = fastnn.layers.Dense(1)(inputs)
        model = fastnn.Model(inputs, outputs)
    """
    if shape is None:
        raise ValueError("Input() needs a shape, e.g. Input(shape=(13,))")
    if batch_size is not None:
        raise ValueError("fastnn models take any batch size; Input(batch_size=...) is unsupported. "
                         f"Received: batch_size={batch_size!r}")
    if dtype not in ("float32", np.float32):
        raise ValueError(f"fastnn inputs are float32. Received: dtype={dtype!r}")
    return InputLayer(shape, name=name).output


class Dense(Layer):
    """The densely connected layer: ``y = activation(x . kernel + bias)``.

    The kernel has shape (input_dim, units). Unlike Keras, the input must be 2-D
    (batch, features): put a Flatten first for more axes. The activation is fused into
    the engine's dense kernel.

    Args:
        units: a positive int, the output's width.
        activation: default None (linear); a name ("relu", "sigmoid", "softmax", ...)
            or a fastnn.activations function.
        use_bias: default True; whether to add the bias vector.
        kernel_initializer: default "glorot_uniform".
        bias_initializer: default "zeros".
        kernel_regularizer: default None; e.g. "l2" or fastnn.regularizers.L2(1e-4):
            its penalty is added to the loss.
        bias_regularizer: default None; as kernel_regularizer, for the bias.
        activity_regularizer: default None; a penalty on the layer's output.
        kernel_constraint: default None; e.g. fastnn.constraints.MaxNorm(3): applied to
            the kernel after each optimizer step.
        bias_constraint: default None; as kernel_constraint, for the bias.
        **kwargs: the base Layer's arguments (name, input_shape, trainable, ...).

    Raises:
        ValueError: when `units` is not a positive integer (e.g. "Received: units=-3"),
            or an argument names nothing known.

    Example::

        layer = fastnn.layers.Dense(10, activation="relu", input_shape=(13,))
    """

    def __init__(self, units: int, activation: activations.ActivationLike = None,
                 use_bias: bool = True,
                 kernel_initializer: initializers.InitializerLike = "glorot_uniform",
                 bias_initializer: initializers.InitializerLike = "zeros",
                 kernel_regularizer: regularizers.RegularizerLike = None,
                 bias_regularizer: regularizers.RegularizerLike = None,
                 activity_regularizer: regularizers.RegularizerLike = None,
                 kernel_constraint: constraints.ConstraintLike = None,
                 bias_constraint: constraints.ConstraintLike = None, **kwargs: Any) -> None:
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
            raise ValueError("Received an invalid value for `units`, expected a positive "
                             f"integer. Received: units={units!r}")
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        # penalties join the loss, constraints project the weights after each update
        # (fastnn.regularizers, fastnn.constraints; run by the engine)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = None
        self.bias = None

    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError(f"Dense '{self.name}' takes 2-D input (batch, features), "
                             f"got shape {input_shape}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)
        super().build(input_shape)

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"Dense '{self.name}' expects {self.kernel.shape[0]} features, "
                             f"got shape {x.shape}")
        return _engine.dense_forward(x, self.kernel, self.bias, self.activation)

    def _lower(self, ctx, inputs):
        y = ctx.dense(self, inputs[0], self.units, self.activation, "kernel",
                      "bias" if self.use_bias else None)
        regularizers.lower(ctx, self, "kernel", self.kernel_regularizer)
        constraints.lower(ctx, self, "kernel", self.kernel_constraint)
        if self.use_bias:
            regularizers.lower(ctx, self, "bias", self.bias_regularizer)
            constraints.lower(ctx, self, "bias", self.bias_constraint)
        return regularizers.lower_activity(ctx, y, self.activity_regularizer)

    def get_config(self) -> Config:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer),
                "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": constraints.serialize(self.kernel_constraint),
                "bias_constraint": constraints.serialize(self.bias_constraint)}
