"""Quiet by default: third-party warnings and chatter go to the log (shown with -v), not the terminal."""

from __future__ import annotations

import logging
import os

# Loggers of the export's libraries that print notes no user can act on (torch.onnx's skipped torchvision
# ops, torchao's missing CUDA kernels, absl's converter statistics).
_NOISY = ("torch", "torchao", "absl", "tensorflow", "jax", "litert_torch", "ai_edge_quantizer", "onnxscript")


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
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    # torch gives some of its own loggers explicit levels (torch.onnx, torch.utils._pytree): set every existing
    # logger under a noisy package, not only the package's.
    for name in [*_NOISY, *logging.root.manager.loggerDict]:
        if name.split(".")[0] in _NOISY:
            logging.getLogger(name).setLevel(logging.ERROR)
