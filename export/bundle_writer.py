"""Writing the parts of a model bundle that are not extractor files: base classes and the manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from imprinting.runtime.store import StoreData, write_store

log = logging.getLogger(__name__)

BASE_CLASSES_FILE = "base_classes.npz"


def write_base_classes(
    bundle_dir: Path, labels: tuple[str, ...], unit_weight: np.ndarray, counts: np.ndarray, scale: float, fingerprint: str
) -> str:
    """Store the trained base classes in the class-store format; returns the file name.

    unit_weight float32 (K, D) unit rows, counts int (K,) training images per class. A base class is stored
    as if imprinted from its n_c training images: sums = n_c * w_c, counts = n_c, so that shots a user adds
    later move the template by the same running-mean rule as for novel classes.
    """
    counts = np.asarray(counts, np.int64)
    if (counts < 1).any():
        raise ValueError("every base class needs a training-image count >= 1")
    data = StoreData(
        labels=tuple(labels),
        sums=(unit_weight.astype(np.float32) * counts[:, None].astype(np.float32)),
        counts=counts,
        scale=float(scale),
        extractor_fingerprint=fingerprint,
    )
    write_store(bundle_dir / BASE_CLASSES_FILE, data)
    return BASE_CLASSES_FILE


def library_versions() -> dict[str, Any]:
    """Versions of the libraries that made the bundle (absent ones are left out)."""
    from imprinting.runtime.host import library_versions as versions

    return versions(("imprinting", "torch", "onnx", "onnxruntime", "onnxscript", "litert-torch", "ai-edge-quantizer",
                     "ai-edge-litert", "numpy", "opencv-python-headless", "opencv-python"))
