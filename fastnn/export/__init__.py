"""Models out of fastnn: export_c writes a model's forward pass as self-contained C99
(fastnn.export.c)."""
from fastnn.export.c import export_c
from fastnn.export.onnx import to_onnx

__all__ = ["export_c", "to_onnx"]
