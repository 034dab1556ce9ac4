"""Model configs, as Keras 3 has them: model.get_config() / Model.from_config(config) (and
Sequential's), model.to_json() / fastnn.models.model_from_json(json_string).

The config is the architecture a fastnn file holds (fastnn.saving: a Sequential's input
and stack of layers; any other model's inputs, layers, graph nodes and outputs), JSON-able
and without weights: from_config builds the same model with fresh weights."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastnn import saving
from fastnn._typing import Config

if TYPE_CHECKING:
    from fastnn.models.model import Model

JSON_MODULE = "fastnn.models"


def _kind(model):
    from fastnn.models.sequential import Sequential
    return "Sequential" if isinstance(model, Sequential) else "Model"


def get_config(model: Model) -> Config:
    """The model's architecture as a JSON-able dict (a subclassed model: its traced
    graph, which from_config rebuilds as a functional Model)."""
    if model._graph is None and _kind(model) == "Model":
        raise ValueError(f"Model '{model.name}' is not built yet: call it on data (fit, "
                         "predict) or build(input_shape) before get_config()")
    return saving._architecture(model)


def from_config(cls, config: Config) -> Model:
    """A new model (fresh weights) from get_config()'s dict; cls is the class from_config
    was called on (Sequential, or Model for either kind)."""
    from fastnn.models.sequential import Sequential
    if not isinstance(config, dict):
        raise TypeError(f"from_config takes the dict get_config() returns. Received: "
                        f"config={config!r:.100}")
    sequential = issubclass(cls, Sequential) or ("input" in config and "nodes" not in config)
    try:
        return saving._rebuild("Sequential" if sequential else "Model", config)
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"not a fastnn {'Sequential' if sequential else 'Model'} config: "
                         f"{type(e).__name__}: {e}") from None


def to_json(model: Model, **kwargs: Any) -> str:
    """The model's config as a JSON string ({"class_name", "config", "module"}, Keras'
    layout); kwargs go to json.dumps (indent=2, ...)."""
    return json.dumps({"class_name": _kind(model), "config": get_config(model),
                       "module": JSON_MODULE}, **kwargs)


def model_from_json(json_string: str) -> Model:
    """The model (fresh weights) that to_json() described."""
    from fastnn.models import Model, Sequential
    try:
        spec = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model_from_json takes the JSON text to_json() returns: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(spec, dict) or spec.get("class_name") not in ("Sequential", "Model") \
            or spec.get("module") != JSON_MODULE or not isinstance(spec.get("config"), dict):
        raise ValueError(f"not a fastnn model JSON (from model.to_json()): "
                         f"{str(json_string)[:100]!r}")
    cls = Sequential if spec["class_name"] == "Sequential" else Model
    return cls.from_config(spec["config"])
