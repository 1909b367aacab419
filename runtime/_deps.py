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


SHOW_HINT = ("this OpenCV build has no windows (opencv-python-headless, which every extra installs); for a window "
             "run `make show` in the repository, or: pip uninstall -y opencv-python-headless && "
             "pip install 'imprinting[show]'")


def window_problem() -> str | None:
    """Why an OpenCV window cannot be opened here (None when it can): a headless OpenCV build, or no display."""
    import os
    import sys

    cv2 = require_cv2()
    gui = cv2.getBuildInformation().split("GUI:", 1)[-1].split("\n", 1)[0].strip()
    if gui.upper().startswith("NONE"):
        return SHOW_HINT
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to open a window on (DISPLAY is not set); run without --show, or from a desktop session"
    return None


# The modules that run each extractor format, any one of which will do (for `imprint info`: no import needed).
_ENGINE_MODULES = {"onnx": ("onnxruntime",), "tflite": ("ai_edge_litert", "tflite_runtime"), "rknn": ("rknnlite",)}


def engine_installed(format: str) -> bool:
    """Whether a module that runs `format` files is installed here (found, not imported)."""
    import sys
    from importlib.util import find_spec

    def found(name: str) -> bool:
        if name in sys.modules:  # imported already (or blocked: None)
            return sys.modules[name] is not None
        return find_spec(name) is not None

    return any(found(m) for m in _ENGINE_MODULES.get(format, ()))
