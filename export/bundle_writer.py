"""Writing the parts of a model bundle that are not extractor files: base classes, probes and library versions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from imprinting.runtime.bundle import BASE_CLASSES_FILE, PRECISIONS, PROBES_FILE, ProbeSet, file_sha256
from imprinting.runtime.preprocess import PreprocessSpec, centre_crop_resized
from imprinting.runtime.probes import write_probes
from imprinting.runtime.store import StoreData, write_store

from .parity import ParityThresholds

log = logging.getLogger(__name__)


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


def write_probe_set(bundle_dir: Path, images: list[np.ndarray], reference: np.ndarray, count: int,
                    spec: PreprocessSpec, thresholds: ParityThresholds) -> ProbeSet | None:
    """Store the first `count` images (uint8 RGB (H, W, 3)) as the crops (N, S, S, 3) the model sees, with
    their PyTorch fp32 embeddings reference[:count] float32 (N, D), for the device's self-check (probes.npz);
    reference must be PyTorch's output for preprocess(images, spec). None (nothing written) for count 0."""
    if count == 0:
        return None
    crops = np.stack([centre_crop_resized(im, spec) for im in images[:count]])
    write_probes(bundle_dir / PROBES_FILE, crops, reference[: len(crops)])
    return ProbeSet(PROBES_FILE, len(crops), file_sha256(bundle_dir / PROBES_FILE),
                    {p: thresholds.cosine(p) for p in PRECISIONS})


def library_versions() -> dict[str, Any]:
    """Versions of the libraries that made the bundle (absent ones are left out)."""
    from imprinting.runtime.host import library_versions as versions

    return versions(("imprinting", "torch", "onnx", "onnxruntime", "onnxscript", "litert-torch", "ai-edge-quantizer",
                     "ai-edge-litert", "numpy", "opencv-python-headless", "opencv-python"))
