"""Weight initializers with Keras' definitions, drawing from fastnn.utils' seeded generator."""
import numpy as np

from fastnn import utils


class Initializer:
    def __call__(self, shape, dtype=np.float32):
        raise NotImplementedError

    def get_config(self):
        return {}


class Zeros(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    def __call__(self, shape, dtype=np.float32):
        return np.ones(shape, dtype=dtype)


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


class VarianceScaling(Initializer):
    """Keras' family behind glorot_*, he_* and lecun_*: variance scale / n, with n the
    fan-in or the mean of fan-in and fan-out; drawn uniform in +-sqrt(3 var), or from a
    normal truncated at two standard deviations (scaled up by 1/.8796 so that the
    truncated draw keeps the intended variance)."""

    scale, mode, distribution = 1.0, "fan_in", "truncated_normal"

    def __call__(self, shape, dtype=np.float32):
        fan_in, fan_out = _fans(shape)
        variance = self.scale / (fan_in if self.mode == "fan_in" else (fan_in + fan_out) / 2)
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return utils.rng().uniform(-limit, limit, size=shape).astype(dtype)
        return _truncated_normal(shape, np.sqrt(variance) / 0.87962566103423978).astype(dtype)


class GlorotUniform(VarianceScaling):
    """U(-l, l) with l = sqrt(6 / (fan_in + fan_out))."""
    scale, mode, distribution = 1.0, "fan_avg", "uniform"


class GlorotNormal(VarianceScaling):
    scale, mode, distribution = 1.0, "fan_avg", "truncated_normal"


class HeNormal(VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "truncated_normal"


class HeUniform(VarianceScaling):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


class LecunNormal(VarianceScaling):
    scale, mode, distribution = 1.0, "fan_in", "truncated_normal"


class LecunUniform(VarianceScaling):
    scale, mode, distribution = 1.0, "fan_in", "uniform"


class RandomNormal(Initializer):
    """N(mean, stddev); tf.keras' defaults mean=0, stddev=0.05 ("normal")."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=np.float32):
        return utils.rng().normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    """U(minval, maxval); tf.keras' defaults -0.05, 0.05 ("uniform")."""

    def __init__(self, minval=-0.05, maxval=0.05):
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype=np.float32):
        return utils.rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class TruncatedNormal(Initializer):
    """N(mean, stddev) redrawn beyond two standard deviations."""

    def __init__(self, mean=0.0, stddev=0.05):
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=np.float32):
        return (_truncated_normal(shape, self.stddev) + self.mean).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


def _truncated_normal(shape, sd):
    """N(0, sd), entries beyond two sd redrawn."""
    out = utils.rng().normal(0.0, sd, size=shape)
    bad = np.abs(out) > 2 * sd
    while bad.any():
        out[bad] = utils.rng().normal(0.0, sd, size=int(bad.sum()))
        bad = np.abs(out) > 2 * sd
    return out


_BY_NAME = {"zeros": Zeros, "ones": Ones, "glorot_uniform": GlorotUniform,
            "glorot_normal": GlorotNormal, "he_normal": HeNormal, "he_uniform": HeUniform,
            "random_normal": RandomNormal, "random_uniform": RandomUniform,
            "truncated_normal": TruncatedNormal, "lecun_normal": LecunNormal,
            "lecun_uniform": LecunUniform}
# tf.keras 2.x's short names, as older tutorials write them
_ALIASES = {"normal": "random_normal", "uniform": "random_uniform"}


def get(identifier):
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier.lower(), identifier.lower())
        if name in _BY_NAME:
            return _BY_NAME[name]()
    raise ValueError(f"Unknown initializer: {identifier!r}. "
                     f"Valid names: {sorted(_BY_NAME) + sorted(_ALIASES)}")


def name_of(init):
    for name, cls in _BY_NAME.items():
        if type(init) is cls:
            return name
    raise ValueError(f"initializer {init!r} has no registered name")
