"""Embedding: integer indices to rows of a trained matrix, as Keras 3's Embedding.

The input holds indices as numbers (an Input(shape=(k,)) fed integer arrays; fit and
predict convert them to float32 once, exact up to 2^24): each of a row's k indices picks
a row of `embeddings` (input_dim x output_dim), and the output, of symbolic shape
(None, k, output_dim), is those k rows side by side: the engine's tensor is k * output_dim
wide (a Flatten after it changes nothing in the engine). Training scatter-adds into the
rows of the matrix's gradient (repeated indices sum); the indices get no gradient.
fit/evaluate/predict reject indices outside [0, input_dim) in a model input that feeds an
Embedding with a ValueError; inside the engine (csrc/ops/embedding.c) an index is clamped
into range, so that nothing reads outside the matrix."""
from __future__ import annotations

import numbers
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from fastnn import constraints, initializers, regularizers
from fastnn._typing import ArrayLike, Config, InputShape, Shape
from fastnn.layers.core import Layer
from fastnn.layers.normalization import _Values

# float32 holds every integer up to 2^24 exactly: larger vocabularies would alias
MAX_INPUT_DIM = 1 << 24


def _positive(value, name, limit=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0 or \
            (limit is not None and value > limit):
        bound = f" at most {limit}" if limit is not None else ""
        raise ValueError(f"Received an invalid value for `{name}`, expected a positive "
                         f"integer{bound}. Received: {name}={value!r}")
    return int(value)


class Embedding(Layer):
    """Turns integer indices into rows of a trained matrix (input_dim, output_dim).

    An input of shape (None, k) holding indices (given as integer or float arrays)
    gives an output of shape (None, k, output_dim). fit, evaluate and predict reject
    indices outside [0, input_dim) with a ValueError.

    Args:
        input_dim: a positive int (at most 2**24), the vocabulary size.
        output_dim: a positive int, the size of each embedding vector.
        embeddings_initializer: default "uniform".
        embeddings_regularizer: default None; a penalty on the matrix.
        embeddings_constraint: default None; applied after each update.
        mask_zero: must stay False (fastnn has no masks).
        weights: default None; an initial (input_dim, output_dim) matrix.
        lora_rank: must stay None (not supported).
        activity_regularizer: default None; a penalty on the output.
        **kwargs: the base Layer's arguments (the deprecated `input_length` is ignored
            with a warning).

    Raises:
        ValueError: on invalid sizes or weights, or mask_zero / lora_rank.
    """

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: initializers.InitializerLike = "uniform",
                 embeddings_regularizer: regularizers.RegularizerLike = None,
                 embeddings_constraint: constraints.ConstraintLike = None,
                 mask_zero: bool = False, weights: Optional[Sequence[ArrayLike]] = None,
                 lora_rank: Optional[int] = None,
                 activity_regularizer: regularizers.RegularizerLike = None,
                 **kwargs: Any) -> None:
        if kwargs.pop("input_length", None) is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.",
                          stacklevel=2)
        if mask_zero:
            raise ValueError("Embedding(mask_zero=True) is not supported: fastnn has no masks "
                             "(index 0 would be embedded like any other). Received: "
                             f"mask_zero={mask_zero!r}")
        if lora_rank is not None:
            raise ValueError(f"Embedding(lora_rank=...) is not supported. Received: "
                             f"lora_rank={lora_rank!r}")
        super().__init__(**kwargs)
        self.input_dim = _positive(input_dim, "input_dim", MAX_INPUT_DIM)
        self.output_dim = _positive(output_dim, "output_dim")
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.mask_zero = False
        self.embeddings = None
        if weights is not None:
            if isinstance(weights, list) and len(weights) == 1:
                weights = weights[0]
            values = np.asarray(weights)
            if values.shape != (self.input_dim, self.output_dim) or \
                    values.dtype.kind not in "fiub" or not np.all(np.isfinite(values)):
                raise ValueError(f"weights must be a finite ({self.input_dim}, "
                                 f"{self.output_dim}) matrix. Received: weights of shape "
                                 f"{values.shape}")
            self._make_embeddings(_Values(values))

    def _make_embeddings(self, initializer):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), initializer)

    def build(self, input_shape: InputShape) -> None:
        if isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError(f"Embedding '{self.name}' takes 2-D input (batch, indices). "
                             f"Received: input_shape={input_shape}")
        if self.embeddings is None:
            self._make_embeddings(self.embeddings_initializer)
        super().build(input_shape)

    def _build_once(self, input_shape):
        """Called again, on any number of indices (its weights do not depend on it)."""
        if not self.built:
            self.build(input_shape)
        elif isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError(f"Embedding '{self.name}' takes 2-D input (batch, indices). "
                             f"Received: input_shape={input_shape}")

    def compute_output_shape(self, input_shape: InputShape) -> Shape:
        return tuple(input_shape) + (self.output_dim,)

    def call(self, x: np.ndarray) -> np.ndarray:
        idx = np.asarray(x)
        if idx.size and (idx.min() < 0 or idx.max() >= self.input_dim):
            raise ValueError(f"Embedding '{self.name}' takes indices in [0, {self.input_dim}). "
                             f"Received values in [{idx.min()}, {idx.max()}]")
        return self.embeddings[idx.astype(np.int64)]

    def _lower(self, ctx, inputs):
        trainable, offset = ctx.weight(self, "embeddings")
        (x,) = inputs
        ctx.index_limits[x] = min(ctx.index_limits.get(x, self.input_dim), self.input_dim)
        regularizers.lower(ctx, self, "embeddings", self.embeddings_regularizer)
        constraints.lower(ctx, self, "embeddings", self.embeddings_constraint)
        y = ctx.op("embedding", inputs, ctx.width(x) * self.output_dim, trainable=trainable,
                   w_off=offset, iparam=[self.input_dim, self.output_dim])
        return regularizers.lower_activity(ctx, y, self.activity_regularizer)

    def get_config(self) -> Config:
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "activity_regularizer": regularizers.serialize(self.activity_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": False}
