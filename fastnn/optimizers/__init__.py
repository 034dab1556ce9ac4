"""Optimizers, as Keras 3 defines them: hyper-parameters and validation here, the update in
C (csrc/optimizers.c: a table of kinds, each a number of slots and one fused kernel).

Live settings: every hyper-parameter (learning_rate, momentum, clipnorm, ...) is a property
that writes through to the C state, so a change takes effect at the next step, also in
the middle of a fit() that runs whole epochs in one native call. `iterations` counts the
steps done; learning-rate schedules (fastnn.optimizers.schedules) are evaluated in C at
each step from it, step t using schedule(t) with t counted from 0.

Shared by every kind, in Keras' order: clip the gradients (clipnorm per weight array,
clipvalue per value, global_clipnorm over all), decay the weights (weight_decay:
w -= w * weight_decay * lr), then the kind's rule. RMSprop, Adagrad: epsilon inside the
root (sqrt(v + eps)), as Keras; PyTorch adds it outside.

The model hands over its weight layout with `optimizer._make_state(variables)`, variables
being (name, offset, size) per trainable weight array of the flat parameter buffer
(clipnorm and exclude_from_weight_decay work per array).
"""
from __future__ import annotations

import numbers
import re
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from fastnn import _engine
from fastnn._typing import Config
from fastnn.optimizers import schedules

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adamax", "Nadam",
           "get", "serialize", "deserialize", "schedules"]


# ---- argument checks: each names the argument and echoes it, as Keras does ---------------

def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_number(value):
    """A real number the C state can hold: finite and within float32's range (inf or 1e39
    would turn every weight into NaN or Inf at the first step)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and
            abs(float(value)) <= _FLOAT32_MAX)


def _positive(name, value):
    if not _is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")
    return _plain(value)


def _unit_open(name, value):
    """In [0, 1): a decay rate whose powers must not reach 1 (bias corrections divide
    by 1 - beta^t)."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")
    return _plain(value)


def _unit_closed(name, value):
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1]. Received: {name}={value!r}")
    return _plain(value)


def _non_negative(name, value):
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number. Received: {name}={value!r}")
    return _plain(value)


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
    return bool(value)


def _optional(check):
    def optional(name, value):
        return None if value is None else check(name, value)
    return optional


class _Setting:
    """A hyper-parameter: checked on every assignment, kept as given (get_config returns
    it) and written to the C state when there is one, for the next step to use."""

    def __init__(self, check: Callable[[str, Any], Any]) -> None:
        self.check = check

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else obj._settings[self.name]

    def __set__(self, obj, value):
        value = self.check(self.name, value)
        obj._before_set(self.name, value)
        obj._settings[self.name] = value
        if obj._state is not None:
            setattr(obj._state, self.name, value)


_CLIPS = ("clipnorm", "clipvalue", "global_clipnorm")

# Keras arguments fastnn accepts at their default values only (so that Keras configs load)
_KERAS_ONLY = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
               "loss_scale_factor": None, "gradient_accumulation_steps": None}


class Optimizer:
    """The base class of the optimizers: the arguments every optimizer takes.

    It holds the learning rate (a float or a schedule), the step count `iterations`,
    gradient clipping, weight decay and the config; the update itself runs in C, in one
    fused pass over the model's flat parameter buffer. Hyper-parameters can be assigned
    between calls to fit and take effect at the next step.

    Args:
        learning_rate: a non-negative float or a schedule of
            fastnn.optimizers.schedules (evaluated in C; a Python callable cannot be).
        weight_decay: default None; decoupled weight decay as Keras':
            w -= w * weight_decay * lr before each update.
        clipnorm: default None; clips each weight's gradient to this L2 norm.
        clipvalue: default None; clips each gradient value to [-clipvalue, clipvalue].
        global_clipnorm: default None; clips all gradients together to this global
            L2 norm. At most one of the three clips may be set.
        name: default None (the class's default name, e.g. "adam").
        **kwargs: Keras' use_ema, ema_momentum, ema_overwrite_frequency,
            loss_scale_factor and gradient_accumulation_steps are accepted at their
            defaults only; the obsolete `decay` is ignored with a warning.

    Raises:
        ValueError: on an invalid or unsupported argument (named and echoed).
    """

    _kind = None           # the kind's name in csrc/optimizers.c's table
    _default_name = None
    _own_settings = ()     # the subclass's hyper-parameters, in get_config order

    weight_decay = _Setting(_optional(_non_negative))
    clipnorm = _Setting(_optional(_positive))
    clipvalue = _Setting(_optional(_positive))
    global_clipnorm = _Setting(_optional(_positive))

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule],
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs: Any) -> None:
        self._state = None
        self._settings = {}
        self._iterations = 0
        self._exclude_names = frozenset()
        self._exclude_pattern = None
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        for key, default in _KERAS_ONLY.items():
            value = kwargs.pop(key, default)
            if value != default:
                raise ValueError(f"fastnn does not support {key}. Received: {key}={value!r}")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(self._clip_message(clipnorm, clipvalue, global_clipnorm))
        self.name = self._default_name if name is None else name
        self._learning_rate = self._check_learning_rate(learning_rate)
        self.weight_decay = weight_decay
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm

    # -- settings -------------------------------------------------------------------------
    @staticmethod
    def _clip_message(clipnorm, clipvalue, global_clipnorm):
        return ("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}")

    def _before_set(self, name, value):
        """Cross-argument checks before a setting changes."""
        if name in _CLIPS and value is not None:
            clips = {c: self._settings.get(c) for c in _CLIPS}
            clips[name] = value
            if sum(v is not None for v in clips.values()) > 1:
                raise ValueError(self._clip_message(**clips))

    @staticmethod
    def _check_learning_rate(value):
        if isinstance(value, schedules.LearningRateSchedule):
            value._spec()  # raises for a schedule the engine cannot evaluate
            return value
        if not _is_number(value) or not value >= 0:
            raise ValueError("learning_rate must be a finite non-negative number or a schedule "
                             "from fastnn.optimizers.schedules. Received: "
                             f"learning_rate={value!r}")
        return _plain(value)

    @property
    def learning_rate(self) -> Union[float, np.float32]:
        """The learning rate of the next step: the float set, or the schedule's value at
        `iterations` (np.float32). Assigning a float or a schedule takes effect at the
        next step."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: Union[float, schedules.LearningRateSchedule]) -> None:
        if (isinstance(self._learning_rate, schedules.LearningRateSchedule)
                and not isinstance(value, schedules.LearningRateSchedule)):
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as "
                            "its `learning_rate` constructor argument, hence its learning rate "
                            "is not settable. If you need the learning rate to be settable, "
                            "you should instantiate the optimizer with a float "
                            "`learning_rate` argument.")
        self._learning_rate = self._check_learning_rate(value)
        if self._state is not None:
            self._write_learning_rate(self._state)

    def _write_learning_rate(self, state):
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            state.set_schedule(self._learning_rate._spec())
        else:
            state.learning_rate = self._learning_rate
            state.set_schedule(None)

    @property
    def iterations(self) -> int:
        """Steps done so far (settable: schedules and bias corrections read it)."""
        return self._iterations if self._state is None else int(self._state.iterations)

    @iterations.setter
    def iterations(self, value: int) -> None:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
            raise ValueError(f"iterations must be an integer >= 0. Received: iterations={value!r}")
        self._iterations = int(value)
        if self._state is not None:
            self._state.iterations = int(value)

    # -- weight decay -----------------------------------------------------------------------
    def exclude_from_weight_decay(self, var_list: Optional[Sequence[Any]] = None,
                                  var_names: Optional[Sequence[str]] = None) -> None:
        """Exempts variables from weight decay: those in var_list (variable names such as
        'dense_1/kernel', or objects with such a .path or .name), and those whose name
        contains any string of var_names (e.g. var_names=['bias']). Keras excludes nothing
        by default. Unlike Keras, also allowed after the state exists (takes effect at
        the next step)."""
        names = set()
        for v in var_list or ():
            if isinstance(v, str):
                names.add(v)
            elif isinstance(getattr(v, "path", None), str):
                names.add(v.path)
            elif isinstance(getattr(v, "name", None), str):
                names.add(v.name)
            else:
                raise TypeError("var_list takes variable names (such as 'dense_1/kernel') or "
                                f"objects with a .path or .name. Received: {v!r}")
        self._exclude_names = frozenset(names)
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None
        if self._state is not None:
            self._state.set_decay_mask(self._decay_mask(self._state.variables))

    def _use_weight_decay(self, name):
        if name in self._exclude_names:
            return False
        return self._exclude_pattern is None or self._exclude_pattern.search(name) is None

    def _decay_mask(self, variables):
        return [self._use_weight_decay(name) for name, _, _ in variables]

    # -- the C state ------------------------------------------------------------------------
    def _make_state(self, variables):
        """Creates the C state for `variables`, a list of (name, offset, size) per trainable
        weight array in the flat float32 parameter buffer (in offset order, contiguous from
        0), or an int n (one array "all"): fresh slots, `iterations` carried on. Stores it
        as self._state (the engine takes &state.opt) and returns it."""
        lr = self._learning_rate
        state = _engine.OptimizerState(
            self._kind, variables,
            learning_rate=0.0 if isinstance(lr, schedules.LearningRateSchedule) else lr,
            **self._settings)
        self._write_learning_rate(state)
        state.iterations = self.iterations
        state.set_decay_mask(self._decay_mask(state.variables))
        self._state = state
        return state

    # -- config -------------------------------------------------------------------------------
    def get_config(self) -> Config:
        """Keras 3's optimizer config: JSON-able, a schedule serialized in place."""
        lr = self._learning_rate
        config = {"name": self.name,
                  "learning_rate": (schedules.serialize(lr)
                                    if isinstance(lr, schedules.LearningRateSchedule) else lr),
                  "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                  "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                  **_KERAS_ONLY}
        config.update((k, self._settings[k]) for k in self._own_settings)
        return config

    @classmethod
    def from_config(cls, config: Config) -> Optimizer:
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    """Gradient descent, with optional (Nesterov) momentum.

    w -= lr*g. With momentum (Keras): v = momentum*v - lr*g; w += v; with nesterov:
    w += momentum*v - lr*g (v the new velocity).

    Args:
        learning_rate: default 0.01; a float or a schedule.
        momentum: default 0.0; a float in [0, 1].
        nesterov: default False; use Nesterov momentum.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "sgd", "SGD"
    _own_settings = ("momentum", "nesterov")
    momentum = _Setting(_unit_closed)
    nesterov = _Setting(_flag)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.01,
                 momentum: float = 0.0, nesterov: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.momentum, self.nesterov = momentum, nesterov


class RMSprop(Optimizer):
    """RMSprop: divides the gradient by a running root mean square of recent gradients.

    v = rho*v + (1-rho)*g^2; step = lr*g/sqrt(v + epsilon). centered: a = rho*a +
    (1-rho)*g and the root is of v - a^2 + epsilon. momentum > 0: m = momentum*m + step;
    w -= m; otherwise w -= step. As in Keras, epsilon is inside the square root
    (PyTorch's RMSprop adds it outside: sqrt(v) + eps).

    Args:
        learning_rate: default 0.001; a float or a schedule.
        rho: default 0.9; the decay of the mean square.
        momentum: default 0.0; a float in [0, 1].
        epsilon: default 1e-7; added to v inside the root.
        centered: default False; divide by the estimated variance instead.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "rmsprop", "rmsprop"
    _own_settings = ("rho", "momentum", "epsilon", "centered")
    rho = _Setting(_unit_open)
    momentum = _Setting(_unit_closed)
    epsilon = _Setting(_positive)
    centered = _Setting(_flag)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.001,
                 rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7,
                 centered: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered


class Adam(Optimizer):
    """Adam: adaptive moment estimation (Kingma & Ba).

    m += (1-beta_1)(g - m); v += (1-beta_2)(g^2 - v); w -= alpha*m/(sqrt(v) + epsilon)
    with alpha = lr*sqrt(1 - beta_2^t)/(1 - beta_1^t) at step t = iterations + 1. amsgrad:
    the root is of the largest v so far.

    Args:
        learning_rate: default 0.001; a float or a schedule.
        beta_1: default 0.9; the decay of the first moment, in [0, 1).
        beta_2: default 0.999; the decay of the second moment, in [0, 1).
        epsilon: default 1e-7; added to the root.
        amsgrad: default False; use the AMSGrad variant.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "adam", "adam"
    _own_settings = ("beta_1", "beta_2", "epsilon", "amsgrad")
    beta_1 = _Setting(_unit_open)
    beta_2 = _Setting(_unit_open)
    epsilon = _Setting(_positive)
    amsgrad = _Setting(_flag)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad


def _required_weight_decay(name, value):
    if value is None:
        raise ValueError(f"Argument `{name}` must be a float. Received: {name}=None")
    return _non_negative(name, value)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w -= w*weight_decay*lr before
    each Adam step, for every variable not excluded by exclude_from_weight_decay().

    Args:
        learning_rate: default 0.001; a float or a schedule.
        weight_decay: default 0.004; the decay factor (required, not None).
        beta_1, beta_2, epsilon, amsgrad: as Adam's (defaults 0.9, 0.999, 1e-7, False).
        **kwargs: the common arguments of Optimizer (clipnorm, name, ...).
    """
    _default_name = "adamw"
    weight_decay = _Setting(_required_weight_decay)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.001,
                 weight_decay: Optional[float] = 0.004, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs: Any) -> None:
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    """Adagrad: per-parameter learning rates scaled by the sum of past squared gradients.

    acc += g^2 (acc starting at initial_accumulator_value); w -= lr*g/sqrt(acc + epsilon).

    Args:
        learning_rate: default 0.001; a float or a schedule.
        initial_accumulator_value: default 0.1; a non-negative float.
        epsilon: default 1e-7; added to acc inside the root.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "adagrad", "adagrad"
    _own_settings = ("initial_accumulator_value", "epsilon")
    initial_accumulator_value = _Setting(_non_negative)
    epsilon = _Setting(_positive)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.001,
                 initial_accumulator_value: float = 0.1, epsilon: float = 1e-7,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon


class _TwoMoments(Optimizer):
    """The settings of Adamax and Nadam: two moment decay rates and an epsilon."""
    _own_settings = ("beta_1", "beta_2", "epsilon")
    beta_1 = _Setting(_unit_open)
    beta_2 = _Setting(_unit_open)
    epsilon = _Setting(_positive)

    def __init__(self, learning_rate: Union[float, schedules.LearningRateSchedule] = 0.001,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon


class Adamax(_TwoMoments):
    """Adamax: Adam's variant with the infinity norm.

    m += (1-beta_1)(g - m); u = max(beta_2*u, |g|); w -= lr/(1 - beta_1^t) * m/(u + epsilon).

    Args:
        learning_rate: default 0.001; a float or a schedule.
        beta_1: default 0.9; in [0, 1).
        beta_2: default 0.999; in [0, 1).
        epsilon: default 1e-7.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "adamax", "adamax"


class Nadam(_TwoMoments):
    """Adam with Nesterov momentum (Dozat), in Keras' form: momentum schedule u_t = beta_1 *
    (1 - 0.5*0.96^t), P_t = u_1...u_t; m_hat = u_{t+1}*m/(1 - P_t*u_{t+1}) + (1 - u_t)*g/
    (1 - P_t); w -= lr*m_hat/(sqrt(v/(1 - beta_2^t)) + epsilon).

    Args:
        learning_rate: default 0.001; a float or a schedule.
        beta_1: default 0.9; in [0, 1).
        beta_2: default 0.999; in [0, 1).
        epsilon: default 1e-7.
        **kwargs: the common arguments of Optimizer (weight_decay, clipnorm, ...).
    """
    _kind, _default_name = "nadam", "nadam"


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad,
            "adamax": Adamax, "nadam": Nadam}
_BY_CLASS = {cls.__name__: cls for cls in _BY_NAME.values()}
_MODULES = (None, "fastnn.optimizers", "keras.optimizers")


def get(identifier: Union[str, Optimizer, Config]) -> Optimizer:
    """An optimizer from an instance (returned as is), a name ('adam', 'SGD', ...: default
    arguments) or a config dict (as serialize() returns)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Unknown optimizer: {identifier!r}. Valid names: {sorted(_BY_NAME)}")


def serialize(optimizer: Optimizer) -> Config:
    """The JSON-able description of an optimizer, in Keras 3's layout:
    {"module", "class_name", "config", "registered_name"}."""
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"Expected an Optimizer. Received: optimizer={optimizer!r}")
    return {"module": "fastnn.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config: Config) -> Optimizer:
    """The optimizer that serialize() (or Keras 3) described, with fresh state. Also reads
    fastnn 0.1's compile config ({"name": "RMSprop", "learning_rate": ...})."""
    if not isinstance(config, dict):
        raise ValueError(f"Expected a dict. Received: config={config!r}")
    if "class_name" not in config and config.get("name") in _BY_CLASS:  # fastnn 0.1
        config = {"class_name": config["name"],
                  "config": {k: v for k, v in config.items() if k != "name"}}
    name = config.get("class_name")
    cls = _BY_CLASS.get(name) or (_BY_NAME.get(name.lower()) if isinstance(name, str) else None)
    if cls is None or config.get("module") not in _MODULES or "config" not in config:
        raise ValueError(f"Unknown optimizer: {name!r}. Valid names: {sorted(_BY_CLASS)}")
    return cls.from_config(config["config"])
