"""The facade most users need: a bundle plus a class store.

    with Recognizer.open("bundle/", store="classes.npz") as r:
        r.learn("mug", ["mug1.jpg", "mug2.jpg"])
        print(r.recognize("photo.jpg").label)
        r.save()
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .bundle import Bundle, load_bundle
from .classifier import ImprintedClassifier, UnknownPolicy
from .extractor import ExtractorOptions
from .images import ImageInput, load_image
from .preprocess import preprocess
from .results import Classification
from .store import read_store, write_store
from .store_sync import save_merged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecognizerOptions:
    """format/precision pick the bundle's extractor file (None: int8 ONNX first); extractor says how to
    run it; templates_per_class > 1 enables several k-means templates per class; unknown sets when an
    answer is "unknown"; batch_size bounds the images run through the extractor at once;
    shot_calibration applies the bundle's shot offsets (if it has any) when classifying."""

    format: str | None = None
    precision: str | None = None
    extractor: ExtractorOptions = ExtractorOptions()
    templates_per_class: int = 1
    unknown: UnknownPolicy = UnknownPolicy()
    batch_size: int = 16
    shot_calibration: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.templates_per_class < 1:
            raise ValueError(f"templates_per_class must be >= 1, got {self.templates_per_class}")


class Recognizer:
    """Extractor + imprinted classifier + (optionally) a class-store file."""

    def __init__(self, bundle: Bundle, store: str | os.PathLike[str] | None, options: RecognizerOptions) -> None:
        self.bundle = bundle
        self.options = options
        self.store_path = Path(store) if store is not None else None
        m = bundle.manifest
        offsets = m.shot_offsets if options.shot_calibration else None
        if self.store_path is not None and self.store_path.exists():
            data = read_store(self.store_path, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
            self.classifier = ImprintedClassifier.from_store_data(
                data, templates_per_class=options.templates_per_class, unknown=options.unknown,
                shot_offsets=offsets,
            )
            log.info("loaded %d classes from %s", len(self.classifier), self.store_path)
        else:
            self.classifier = ImprintedClassifier(
                m.embedding_dim, m.scale, m.fingerprint,
                templates_per_class=options.templates_per_class, unknown=options.unknown,
                shot_offsets=offsets,
            )
            base = bundle.base_classes()
            if base is not None:
                self.classifier.extend(base)
        # What the store held when read (or last saved): saves merge our changes since then with what other
        # writers saved meanwhile (store_sync.py).
        self._base = self.classifier.to_store_data()
        self.extractor = bundle.open_extractor(options.format, options.precision, options.extractor)
        self._closed = False

    @classmethod
    def open(
        cls,
        bundle: str | os.PathLike[str],
        store: str | os.PathLike[str] | None = None,
        options: RecognizerOptions = RecognizerOptions(),
    ) -> "Recognizer":
        """Open a bundle directory and, if given, a class store (created on the first save)."""
        return cls(load_bundle(bundle), store, options)

    # ----- embeddings -------------------------------------------------------------------------
    def embed(self, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB") -> np.ndarray:
        """Unit embeddings float32 (n, D) of images (paths, bytes or uint8 (H, W, 3) arrays)."""
        self._check_open()
        items = [images] if _is_single(images) else list(images)
        if not items:
            raise ValueError("no images given")
        spec = self.bundle.manifest.preprocess
        out = []
        bs = self.options.batch_size
        for i in range(0, len(items), bs):
            chunk = items[i : i + bs]
            if all(isinstance(x, np.ndarray) for x in chunk):
                # Frames keep their channel order; preprocess swaps BGR for free.
                x = preprocess(chunk, spec, self.extractor.layout, color_order)
            else:
                x = preprocess([load_image(x, color_order) for x in chunk], spec, self.extractor.layout)
            out.append(self.extractor.run(x))
        raw = np.concatenate(out)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        if not np.isfinite(raw).all() or (norms < 1e-6).any():
            raise ValueError("the extractor returned a zero or NaN embedding for an image; is the model file damaged?")
        return raw / norms

    # ----- teaching and recognition -------------------------------------------------------------
    def learn(self, label: str, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB") -> int:
        """Imprint `label` from images, or add them as shots if it exists. Returns the class's shot count."""
        e = self.embed(images, color_order)
        self.classifier.learn(label, e)
        return self.classifier.count(label.strip())

    def recognize(self, image: ImageInput, top_k: int = 5, color_order: str = "RGB") -> Classification:
        """Classify one image."""
        return self.classifier.classify(self.embed(image, color_order), top_k)[0]

    def recognize_batch(
        self, images: Sequence[ImageInput], top_k: int = 5, color_order: str = "RGB"
    ) -> list[Classification]:
        """Classify several images."""
        return self.classifier.classify(self.embed(images, color_order), top_k)

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the class store atomically (to `path` or the store given at open).

        Saving to the store given at open merges: classes and shots that other processes saved there since
        this Recognizer read it are kept and appear in this classifier too (see store_sync.py)."""
        target = Path(path) if path is not None else self.store_path
        if target is None:
            raise ValueError("no store path: pass one to save() or to Recognizer.open(..., store=...)")
        if self.store_path is None or target.resolve() != self.store_path.resolve():
            write_store(target, self.classifier.to_store_data())
            return target
        # Hold the classifier still from snapshot to reload, so a class taught by another thread meanwhile
        # cannot fall between the two.
        with self.classifier.lock:
            ours = self.classifier.to_store_data()
            merged = save_merged(target, self._base, ours)
            if merged is not ours:
                self.classifier.replace_state(merged)
            self._base = merged
        return target

    def close(self) -> None:
        """Release the extractor. Idempotent; unsaved changes are not written."""
        if not self._closed:
            self.extractor.close()
            self._closed = True

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this Recognizer is closed")


def _is_single(images: object) -> bool:
    if isinstance(images, np.ndarray):
        return images.ndim == 3
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview))
