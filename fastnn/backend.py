"""Session state, as keras.backend / keras.utils hold it."""
from __future__ import annotations

from fastnn import utils

__all__ = ["clear_session"]


def clear_session(free_memory: bool = True) -> None:
    """Resets the automatic names, as Keras 3 does: the next Dense is 'dense' again, the
    next model 'sequential' or 'model', the next input 'input_1'. Existing layers and
    models keep their names and weights; the random seed is untouched. free_memory is
    accepted as Keras has it (fastnn keeps no backend state to free)."""
    utils._name_counts.clear()
