"""Lazy imports of optional backends, each failing with the extra to install."""

from __future__ import annotations

from types import ModuleType


def _missing(what: str, extra: str, err: ImportError) -> ImportError:
    return ImportError(f"{what} is not installed; install it with: pip install 'imprinting[{extra}]' ({err})")


def require_cv2() -> ModuleType:
    """OpenCV, used to decode and resize images."""
    try:
        import cv2
    except ImportError as err:
        raise _missing("OpenCV (cv2), needed to decode and resize images,", "onnx", err) from None
    return cv2


def require_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError as err:
        raise _missing("onnxruntime", "onnx", err) from None
    return onnxruntime


def require_litert() -> ModuleType:
    """The TFLite interpreter module of ai-edge-litert (tflite-runtime as a fallback)."""
    try:
        from ai_edge_litert import interpreter
    except ImportError as err:
        try:
            import tflite_runtime.interpreter as interpreter  # older devices; see docs/formats.md
        except ImportError:
            raise _missing("ai-edge-litert", "tflite", err) from None
    return interpreter
