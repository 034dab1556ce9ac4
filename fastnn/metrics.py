"""Metrics computed by the engine alongside the loss, by name as Keras logs them."""

# user-facing name -> (engine key, name in History / progress line)
_BY_NAME = {
    "mse": ("mse", "mse"), "mean_squared_error": ("mse", "mean_squared_error"),
    "mae": ("mae", "mae"), "mean_absolute_error": ("mae", "mean_absolute_error"),
    "accuracy": ("accuracy", "accuracy"), "acc": ("accuracy", "acc"),
    "sparse_categorical_accuracy": ("accuracy", "sparse_categorical_accuracy"),
    "categorical_accuracy": ("accuracy", "categorical_accuracy"),
    "binary_accuracy": ("accuracy", "binary_accuracy"),
}


def get(identifier):
    """(engine key, log name) of a metric given by name."""
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    raise ValueError(f"Unknown metric: {identifier!r}. Valid names: {sorted(_BY_NAME)}")
