"""Learning-rate schedules, as Keras 3 defines them (keras.optimizers.schedules).

A schedule maps the optimizer's step count t to a learning rate. t is `iterations` before
the step, so the first step uses lr(0), as in Keras. Passed as an optimizer's
`learning_rate`, a schedule is evaluated in C at every step (csrc/optimizers.c,
fnn_schedule_value), also inside fit()'s one native call; calling it from Python,
`schedule(t)`, runs that same C code, so the two always agree. Values come as float32,
the precision the update uses. Arguments are checked as Keras checks them, and numbers
must be numbers (Keras would fail later, inside the formula).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Union

import numpy as np

from fastnn import _engine
from fastnn._typing import ArrayLike, Config
from fastnn.initializers import Configurable

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "serialize", "deserialize"]


class LearningRateSchedule(Configurable):
    """The base of fastnn's schedules. fastnn evaluates schedules in C, so an optimizer
    takes only the classes below (a Python callable cannot run inside the native loop).
    from_config and repr come from the config protocol the initializers share."""

    def __call__(self, step: ArrayLike) -> Union[np.float32, np.ndarray]:
        """The learning rate at `step` (a count, or an array of counts): np.float32."""
        values = _engine.schedule_values(self._spec(), step)
        return values[()] if values.ndim == 0 else values

    def _spec(self):
        """The schedule as the C struct takes it: {"kind": ..., field: value}."""
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' cannot "
                                  "be evaluated by fastnn's engine")

    def get_config(self) -> Config:
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must "
                                  "override `get_config()` in order to be serializable.")

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


def _number(name, value):
    """A real number (not a bool), as a plain Python int or float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    return value.item() if isinstance(value, np.generic) else value


def _decay_steps(value, name="decay_steps"):
    value = _number(name, value)
    if value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


class _RateDecay(LearningRateSchedule):
    """A decay by `decay_rate` every `decay_steps` steps (the two schedules below differ
    only in their formula, evaluated in C: csrc/optimizers.c)."""
    kind = None

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: Optional[str] = None) -> None:
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(decay_steps)
        self.decay_rate = _number("decay_rate", decay_rate)
        self.staircase = _flag("staircase", staircase)
        self.name = type(self).__name__ if name is None else name

    def _spec(self):
        return {"kind": self.kind, "initial": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_RateDecay):
    """lr(t) = initial_learning_rate * decay_rate ^ (t / decay_steps); with staircase,
    t / decay_steps is floored, so the rate drops every decay_steps steps."""
    kind = "exponential"


class PiecewiseConstantDecay(LearningRateSchedule):
    """lr(t) = values[0] for t <= boundaries[0], values[i] for boundaries[i-1] < t <=
    boundaries[i], values[-1] for t > boundaries[-1]. Boundaries are step counts (Keras
    casts them to the step's integer type: a fraction is truncated)."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float],
                 name: Optional[str] = "PiecewiseConstant") -> None:
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}.")
        self.boundaries = [_number("boundaries", b) for b in boundaries]
        self.values = [_number("values", v) for v in values]
        self.name = name

    def _spec(self):
        return {"kind": "piecewise", "boundaries": [math.trunc(b) for b in self.boundaries],
                "values": self.values}

    def get_config(self) -> Config:
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """lr(t) = (initial_learning_rate - end_learning_rate) * (1 - t / d) ^ power +
    end_learning_rate, where d = decay_steps and t is held at d afterwards; with cycle,
    d is instead the first multiple of decay_steps at or above t (decay_steps at t = 0)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: Optional[str] = "PolynomialDecay") -> None:
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(decay_steps)
        self.end_learning_rate = _number("end_learning_rate", end_learning_rate)
        self.power = _number("power", power)
        self.cycle = _flag("cycle", cycle)
        self.name = name

    def _spec(self):
        return {"kind": "polynomial", "initial": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle}

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(_RateDecay):
    """lr(t) = initial_learning_rate / (1 + decay_rate * t / decay_steps); with staircase,
    t / decay_steps is floored."""
    kind = "inverse_time"


class CosineDecay(LearningRateSchedule):
    """Cosine decay with an optional linear warmup (Loshchilov & Hutter; Goyal et al.).

    Without warmup_target: lr(t) = initial * ((1 - alpha) * c + alpha) with
    c = 0.5 * (1 + cos(pi * min(t, decay_steps) / decay_steps)). With it, the rate first
    rises linearly from initial_learning_rate to warmup_target over warmup_steps, then
    decays the same way from warmup_target over the next decay_steps. The arguments keep
    Keras' order (name before warmup_target)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 name: Optional[str] = "CosineDecay", warmup_target: Optional[float] = None,
                 warmup_steps: int = 0) -> None:
        self.initial_learning_rate = _number("initial_learning_rate", initial_learning_rate)
        self.decay_steps = _decay_steps(decay_steps)
        self.alpha = _number("alpha", alpha)
        self.name = name
        self.warmup_target = (None if warmup_target is None
                              else _number("warmup_target", warmup_target))
        self.warmup_steps = _number("warmup_steps", warmup_steps)

    def _spec(self):
        return {"kind": "cosine", "initial": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}

    def get_config(self) -> Config:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_CLASSES = {c.__name__: c for c in (ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay,
                                    InverseTimeDecay, CosineDecay)}
_MODULES = (None, "fastnn.optimizers.schedules", "keras.optimizers.schedules")


def serialize(schedule: LearningRateSchedule) -> Config:
    """The JSON-able description of a schedule, in Keras 3's layout."""
    if not isinstance(schedule, LearningRateSchedule):
        raise ValueError(f"Expected a LearningRateSchedule. Received: schedule={schedule!r}")
    return {"module": "fastnn.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: Config) -> LearningRateSchedule:
    """The schedule that serialize() (or Keras 3) described."""
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise ValueError("Expected a dict with 'class_name' and 'config' (as serialize() "
                         f"returns). Received: config={config!r}")
    if config.get("module") not in _MODULES or config["class_name"] not in _CLASSES:
        raise ValueError(f"Unknown learning rate schedule: {config['class_name']!r}. "
                         f"Valid names: {sorted(_CLASSES)}")
    return _CLASSES[config["class_name"]].from_config(dict(config["config"]))
