"""Quiet by default: third-party warnings and chatter go to the log (shown with -v), not the terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

# Loggers of the export's libraries that print notes no user can act on (torch.onnx's skipped torchvision
# ops, torchao's missing CUDA kernels, absl's converter statistics).
_NOISY = ("torch", "torchao", "absl", "tensorflow", "jax", "litert_torch", "ai_edge_quantizer", "onnxscript")

# Lines native libraries write straight to file descriptor 2, which no logging setting reaches: LiteRT's
# delegate notice (at every interpreter), and the absl/oneDNN notes printed when the TFLite converter loads.
_NATIVE_NOTICES = (
    "INFO: Created TensorFlow Lite XNNPACK delegate",
    "WARNING: All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
)


def quiet_third_parties() -> None:
    """Route warnings to the log at a level -v shows, and silence the noisy libraries' loggers; call it before
    they are imported (the `imprint` command does, unless -v)."""
    # TensorFlow's C++ info lines, read when the converter loads; 1 is oneDNN's default anyway, set so that
    # TensorFlow does not announce it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    # torch's own loggers reset their levels whenever a library calls torch._logging.set_logs (the converters
    # do); its environment setting survives that: errors only.
    os.environ.setdefault("TORCH_LOGS", "-all")
    # LiteRT-Torch prints a progress tree on stdout during every TFLite conversion (read at each step).
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    # OpenCV's "[ WARN:0@0.01] ... can't open camera by index" lines: read when cv2 loads; set it directly too
    # if it has loaded already.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and os.environ["OPENCV_LOG_LEVEL"] == "ERROR":
        with contextlib.suppress(AttributeError):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    # torch gives some of its own loggers explicit levels (torch.onnx, torch.utils._pytree): set every existing
    # logger under a noisy package, not only the package's.
    for name in [*_NOISY, *logging.root.manager.loggerDict]:
        if name.split(".")[0] in _NOISY:
            logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def native_notices_quiet() -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block, then pass on every line but the known
    native notices (`_NATIVE_NOTICES`). Nothing is held when imprinting logs at INFO (`imprint -v`), or where
    descriptor 2 cannot be duplicated; other lines written meanwhile (by any thread) are delayed, never lost."""
    if logging.getLogger("imprinting").isEnabledFor(logging.INFO):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(n in line for n in _NATIVE_NOTICES))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def quietly(call: Callable[[], T]) -> T:
    """call() with the native notices it prints held back (`native_notices_quiet`)."""
    with native_notices_quiet():
        return call()
