"""Lambda: wraps a Python function of tensors, as Keras' Lambda does, where the function
can be expressed with fastnn's own layers and tensor operations (a + b, a - b, a * b,
merges, activations, any fastnn layer): the function is traced once on the symbolic
inputs, and the layers it calls become part of the model's graph. Anything else (NumPy
or TensorFlow functions, Python arithmetic with constants, control flow on values)
cannot run in the compiled engine and raises a ValueError saying so."""
from __future__ import annotations

from typing import Any, Callable, Optional, Union

from fastnn._typing import Config, Shape
from fastnn.layers.core import KerasTensor, Layer, as_tensor_list


class Lambda(Layer):
    """Lambda(function): `function(inputs)` built from fastnn layers and tensor operations.

    Args:
        function: a callable taking the input tensor (or the list of input tensors) and
            returning a tensor made from them by fastnn layers.
        output_shape, mask, arguments: accepted for Keras compatibility; `arguments`
            (a dict) is passed to the function as keyword arguments.

    Calling it on symbolic tensors traces the function there; the Lambda itself adds no
    op (its layers are the model's). On arrays it runs the traced layers eagerly.
    """

    def __init__(self, function: Callable[..., Any], output_shape: Optional[Shape] = None,
                 mask: Any = None, arguments: Optional[dict[str, Any]] = None,
                 **kwargs: Any) -> None:
        if not callable(function):
            raise TypeError(f"Lambda needs a callable. Received: function={function!r}")
        if mask is not None:
            raise ValueError("Lambda(mask=...) is not supported: fastnn has no masking. "
                             f"Received: mask={mask!r}")
        super().__init__(**kwargs)
        self.function = function
        self.arguments = dict(arguments or {})

    def __call__(self, inputs: Union[KerasTensor, Any]) -> KerasTensor:
        tensors, is_list = as_tensor_list(inputs)
        if not all(isinstance(t, KerasTensor) for t in tensors):
            raise ValueError(f"Lambda '{self.name}' runs inside a model: call it on tensors "
                             "made by Input() (then call the model on arrays)")
        try:
            out = self.function(inputs, **self.arguments)
        except Exception as e:
            raise ValueError(self._cannot(f"it raised {type(e).__name__}: {e}")) from e
        if not isinstance(out, KerasTensor) or not _made_from(out, tensors):
            raise ValueError(self._cannot(f"it returned {out!r}, not a tensor computed from "
                                          "its inputs by fastnn layers"))
        return out

    def _cannot(self, what):
        return (f"Lambda '{self.name}' cannot be compiled: {what}. fastnn runs a Lambda by "
                "tracing its function once on symbolic tensors, so the function may only "
                "use fastnn layers and tensor operations (a + b, a - b, a * b); NumPy or "
                "TensorFlow calls, constants and control flow on values cannot run in the "
                "engine: write them as layers")

    def get_config(self) -> Config:
        raise ValueError(f"Lambda '{self.name}' holds Python code, which fastnn files never "
                         "store; models using it save the layers its function called")


def _made_from(out, inputs):
    """True if `out` is one of `inputs` or computed from them (a walk back through the
    layer calls)."""
    targets = {id(t) for t in inputs}
    stack, seen = [out], set()
    while stack:
        t = stack.pop()
        if id(t) in targets:
            return True
        if id(t) in seen:
            continue
        seen.add(id(t))
        stack.extend(t._inputs)
    return False
