"""Weight initializers with Keras 3's names, arguments and definitions.

Random initializers take `seed`: with an integer seed an initializer draws the same values
at every call (Keras 3's rule), from its own generator; without one it draws from
fastnn.utils' generator, so that set_random_seed(n) fixes a whole model's weights.
By name (get): Keras' class names ("GlorotUniform", "Orthogonal", ...) and their
snake-case forms ("glorot_uniform", "orthogonal", ...), plus the aliases "normal",
"uniform", "one" and "zero"; serialize() gives a name, or {"class_name", "config"} when the
initializer carries arguments."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from fastnn import utils
from fastnn._typing import Config, DTypeLike


class Configurable:
    """Keras' config protocol for the small objects layers take (initializers,
    regularizers, constraints): get_config() holds the constructor's arguments."""

    def get_config(self) -> Config:
        return {}

    @classmethod
    def from_config(cls, config: Config) -> Any:
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def resolve(identifier: Any, what: str, by_name: Mapping[str, Callable[[], Any]],
            compiled: tuple[type, ...]) -> Any:
    """get() of regularizers and constraints: an instance of one of the `compiled` classes
    (or None) from None, an instance, a class, a name (by_name: name -> class or factory),
    or serialize_object()'s dict. Other objects (Python functions, subclasses with a
    __call__ of their own) raise TypeError: the engine runs the compiled classes' maths only."""
    obj = identifier
    if isinstance(identifier, type):
        obj = identifier() if issubclass(identifier, compiled) else identifier
    elif isinstance(identifier, str) and identifier in by_name:
        obj = by_name[identifier]()
    elif isinstance(identifier, dict) and set(identifier) <= {"class_name", "config"} and \
            isinstance(by_name.get(identifier.get("class_name")), type):
        try:
            obj = by_name[identifier["class_name"]].from_config(dict(identifier.get("config")
                                                                     or {}))
        except TypeError as e:
            raise ValueError(f"Invalid {what} config {identifier!r}: {e}") from None
    if obj is None or type(obj) in compiled:
        return obj
    if callable(obj):
        names = ", ".join(cls.__name__ for cls in compiled)
        raise TypeError(f"fastnn compiles the {what}s {names} only (a Python function or a "
                        f"subclass cannot run in the engine). Received: {identifier!r}")
    raise ValueError(f"Could not interpret {what} identifier: {identifier!r}. Valid names: "
                     f"{sorted(by_name)}")


def serialize_object(obj: Optional[Configurable]) -> Optional[Config]:
    """None, or {"class_name": ..., "config": ...} (resolve() takes it back)."""
    return None if obj is None else {"class_name": type(obj).__name__, "config": obj.get_config()}


class Initializer(Configurable):
    """Base class: __call__(shape, dtype) returns an array of that shape."""

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        raise NotImplementedError


def _real(value, name, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (positive and value <= 0):
        kind = "a positive number" if positive else "a finite number"
        raise ValueError(f"Argument `{name}` must be {kind}. Received: {name}={value!r}")
    return float(value)


class Zeros(Initializer):
    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every value `value` (a scalar)."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = _real(value, "value")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self) -> Config:
        return {"value": self.value}


class Identity(Initializer):
    """gain * the identity matrix (2-D shapes only; rectangular ones get ones on the
    main diagonal)."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = _real(gain, "gain")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        if len(shape) != 2:
            raise ValueError("Identity matrix initializer can only be used for 2D matrices. "
                             f"Received: shape={tuple(shape)} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self) -> Config:
        return {"gain": self.gain}


class RandomInitializer(Initializer):
    """An initializer that draws: seeded, the same values at every call; unseeded, from
    the package generator (fastnn.utils.set_random_seed)."""

    def __init__(self, seed: Optional[int] = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError("`seed` argument should be a non-negative integer or None. "
                             f"Received: seed={seed!r}")
        self.seed = None if seed is None else int(seed)

    def _rng(self):
        return utils.rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self) -> Config:
        return {"seed": self.seed}


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape, as Keras counts them (convolution kernels:
    the receptive field times the input and output depths)."""
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[:-2])
    return shape[-2] * field, shape[-1] * field


def _truncated_normal(rng, shape, sd, mean=0.0):
    """N(mean, sd), entries beyond two sd from the mean redrawn."""
    out = rng.normal(0.0, sd, size=shape)
    bad = np.abs(out) > 2 * sd
    while bad.any():
        out[bad] = rng.normal(0.0, sd, size=int(bad.sum()))
        bad = np.abs(out) > 2 * sd
    return out + mean


class VarianceScaling(RandomInitializer):
    """Variance scale / n, with n the fan-in, the fan-out or their mean (at least 1):
    uniform in +-sqrt(3 var), a normal truncated at two standard deviations (scaled by
    1 / .8796 so that the truncated draw keeps the variance), or an untruncated normal."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: Optional[int] = None) -> None:
        scale = _real(scale, "scale")
        if scale <= 0.0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode!r}. Please use one of "
                             "['fan_avg', 'fan_in', 'fan_out']")
        dist = distribution.lower() if isinstance(distribution, str) else distribution
        dist = "truncated_normal" if dist == "normal" else dist
        if dist not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(f"Invalid `distribution` argument: {distribution!r}. Please use "
                             "one of ['truncated_normal', 'uniform', 'untruncated_normal']")
        super().__init__(seed)
        self.scale, self.mode, self.distribution = scale, mode, dist

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, size=shape).astype(dtype)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), size=shape).astype(dtype)
        return _truncated_normal(rng, shape, math.sqrt(variance) / 0.87962566103423978).astype(dtype)

    def get_config(self) -> Config:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


class _Preset(VarianceScaling):
    """A named VarianceScaling (Glorot, He, LeCun): only the seed is an argument."""
    preset = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed: Optional[int] = None) -> None:
        super().__init__(*self.preset, seed=seed)

    def get_config(self) -> Config:
        return {"seed": self.seed}


class GlorotUniform(_Preset):
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out))."""
    preset = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    preset = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_Preset):
    preset = (2.0, "fan_in", "truncated_normal")


class HeUniform(_Preset):
    preset = (2.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    preset = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    preset = (1.0, "fan_in", "uniform")


class RandomNormal(RandomInitializer):
    """N(mean, stddev); Keras' defaults mean=0, stddev=0.05 ("normal")."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = _real(mean, "mean"), _real(stddev, "stddev")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self) -> Config:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class RandomUniform(RandomInitializer):
    """U(minval, maxval); Keras' defaults -0.05, 0.05 ("uniform")."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.minval, self.maxval = _real(minval, "minval"), _real(maxval, "maxval")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self) -> Config:
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class TruncatedNormal(RandomInitializer):
    """N(mean, stddev) redrawn beyond two standard deviations from the mean."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05,
                 seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.mean, self.stddev = _real(mean, "mean"), _real(stddev, "stddev")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        return _truncated_normal(self._rng(), shape, self.stddev, self.mean).astype(dtype)

    def get_config(self) -> Config:
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class Orthogonal(RandomInitializer):
    """gain * an orthogonal matrix: Q of the QR decomposition of a standard normal draw,
    signs fixed by R's diagonal; orthogonal rows when there are fewer rows than columns,
    else orthogonal columns. Shapes of more than two axes are (prod(shape[:-1]),
    shape[-1]) matrices, reshaped."""

    def __init__(self, gain: float = 1.0, seed: Optional[int] = None) -> None:
        super().__init__(seed)
        self.gain = _real(gain, "gain")

    def __call__(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
        if len(shape) < 2:
            raise ValueError("The tensor to initialize must be at least two-dimensional. "
                             f"Received: shape={tuple(shape)} of rank {len(shape)}.")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().normal(0.0, 1.0, size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self) -> Config:
        return {"gain": self.gain, **super().get_config()}


_CLASSES = (Zeros, Ones, Constant, Identity, GlorotUniform, GlorotNormal, HeNormal,
            HeUniform, LecunNormal, LecunUniform, RandomNormal, RandomUniform,
            TruncatedNormal, VarianceScaling, Orthogonal)
_BY_NAME = {utils.to_snake_case(cls.__name__): cls for cls in _CLASSES}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _CLASSES}
# Keras' aliases ("normal", "uniform": tf.keras 2.x's short names, as tutorials write them)
_ALIASES = {"normal": "random_normal", "uniform": "random_uniform", "one": "ones",
            "zero": "zeros", "orthogonal_initializer": "orthogonal",
            "identity_initializer": "identity"}


# what layers' `*_initializer=` arguments take: a name, an instance, serialize()'s dict
InitializerLike = Union[str, Initializer, Config]


def get(identifier: InitializerLike) -> Initializer:
    """An Initializer from an instance, a name, or serialize()'s {"class_name", "config"}."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict) and set(identifier) <= {"class_name", "config"}:
        cls = _BY_CLASS_NAME.get(identifier.get("class_name"))
        config = identifier.get("config") or {}
        if cls is not None and isinstance(config, dict):
            try:
                return cls.from_config(config)
            except TypeError as e:
                raise ValueError(f"Invalid config for initializer "
                                 f"{identifier['class_name']}: {config!r} ({e})") from None
    if isinstance(identifier, str):
        if identifier in _BY_CLASS_NAME:
            return _BY_CLASS_NAME[identifier]()
        name = _ALIASES.get(identifier.lower(), identifier.lower())
        if name in _BY_NAME:
            return _BY_NAME[name]()
    raise ValueError(f"Unknown initializer: {identifier!r}. "
                     f"Valid names: {sorted(_BY_NAME) + sorted(_ALIASES)}")


def name_of(init: Initializer) -> str:
    """The snake-case name of an initializer's class (its arguments are not kept: see
    serialize)."""
    for name, cls in _BY_NAME.items():
        if type(init) is cls:
            return name
    raise ValueError(f"initializer {init!r} has no registered name")


def serialize(init: Initializer) -> Union[str, Config]:
    """A JSON-able description get() turns back into an equal initializer: the name when
    the initializer has its class's defaults, else {"class_name": ..., "config": ...}."""
    config = init.get_config()
    if config == type(init)().get_config():
        return name_of(init)
    return {"class_name": type(init).__name__, "config": config}
