"""Export for edge runtimes: a model and its plan as ONNX (encoder + key/value-cached decoder)."""

from weightwise.export.api import FORMATS, ExportResult, check_export_out, export_onnx

__all__ = ["FORMATS", "ExportResult", "check_export_out", "export_onnx"]
