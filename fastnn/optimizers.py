"""Optimizers: hyper-parameters and the layout of their state. The update
itself is one fused pass over the flat parameter buffer (csrc/optimizers.c).

RMSprop follows Keras: v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + epsilon),
epsilon inside the root (PyTorch adds it outside: sqrt(v) + eps)."""
import numbers

from fastnn import _engine


class Optimizer:
    kind = None

    def __init__(self, learning_rate):
        _positive("learning_rate", learning_rate)
        self.learning_rate = float(learning_rate)
        self._state = None

    def _make_state(self, n_params):
        """Fresh slots for n_params parameters (called by Model.compile)."""
        self._state = _engine.OptimizerState(self.kind, n_params, **self._hyper())
        return self._state

    @property
    def iterations(self):
        return 0 if self._state is None else self._state.iterations

    def _hyper(self):
        return {"learning_rate": self.learning_rate}

    def get_config(self):
        return {"name": type(self).__name__, **self._hyper()}


class SGD(Optimizer):
    """w -= lr*g; with momentum (Keras): v = momentum*v - lr*g; w += v."""
    kind = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0):
        super().__init__(learning_rate)
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)

    def _hyper(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum}


class RMSprop(Optimizer):
    kind = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False):
        super().__init__(learning_rate)
        if not isinstance(rho, numbers.Real) or not 0 <= rho < 1:
            raise ValueError(f"rho must be in [0, 1). Received: rho={rho!r}")
        if momentum != 0.0 or centered:
            raise ValueError("RMSprop supports momentum=0.0 and centered=False only. "
                             f"Received: momentum={momentum!r}, centered={centered!r}")
        _positive("epsilon", epsilon)
        self.rho, self.epsilon = float(rho), float(epsilon)
        self.momentum, self.centered = 0.0, False

    def _hyper(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    """Keras' Adam: lr_t = lr*sqrt(1-b2^t)/(1-b1^t); w -= lr_t*m/(sqrt(v) + epsilon)."""
    kind = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for name, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not isinstance(b, numbers.Real) or not 0 <= b < 1:
                raise ValueError(f"{name} must be in [0, 1). Received: {name}={b!r}")
        _positive("epsilon", epsilon)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _hyper(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1,
                "beta_2": self.beta_2, "epsilon": self.epsilon}


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number. Received: {name}={value!r}")


_BY_NAME = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier):
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"Unknown optimizer: {identifier!r}. Valid names: {sorted(_BY_NAME)}")
