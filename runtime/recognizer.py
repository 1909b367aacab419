"""The facade most users need: a bundle plus a class store.

    with Recognizer.open("bundle/", store="classes.npz") as r:
        r.learn("mug", ["mug1.jpg", "mug2.jpg"])
        print(r.recognize("photo.jpg").label)
        r.save()
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import Bundle, ExtractorEntry, Manifest, load_bundle
from .classifier import ImprintedClassifier
from .classset import ClassSet
from .embedder import Embedded, Embedder, item_name
from .images import ImageInput
from .labels import validate_label
from .preprocess import capture_size
from .recognizer_options import FrameAnswer, RecognizerOptions, bundle_unknown_policy
from .refine import RefineOptions, RefinePlan
from .refining import refine_classes, unrefine
from .results import Classification, LearnReport
from .store import StoreData, read_store, store_bytes, write_store
from .store_sync import save_merged
from .unknown_check import UnknownCheck, check_unknown

log = logging.getLogger(__name__)


class Recognizer:
    """The one owner of inference: image -> extractor input -> unit embedding -> scores -> answer.

    Image verbs live here (`learn`, `recognize`, `recognize_frame`, `explain`); class edits (rename, remove)
    on `class_set`, the one owner of what was taught; scoring reads it. Every front end (CLI, camera loop,
    HTTP API, demo, benchmarks) goes through these; the extractor and the scorer behind them are private.
    """

    def __init__(self, bundle: Bundle, store: str | os.PathLike[str] | None, options: RecognizerOptions) -> None:
        self._bundle = bundle
        self.options = options
        self.store_path = Path(store) if store is not None else None
        m = bundle.manifest
        self.unknown = options.unknown if options.unknown is not None else bundle_unknown_policy(m)
        if self.store_path is not None and self.store_path.exists():
            data = read_store(self.store_path, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
            self._classes = ClassSet.from_store_data(data, options.templates_per_class)
            log.info("loaded %d classes from %s", len(self._classes), self.store_path)
        else:
            self._classes = ClassSet(m.embedding_dim, m.scale, m.fingerprint,
                                     templates_per_class=options.templates_per_class or 1)
            base = bundle.base_classes()
            if base is not None:
                self._classes.merge(dataclasses.replace(base, templates_per_class=self._classes.templates_per_class))
        self._scorer = ImprintedClassifier(self._classes, self.unknown,
                                           m.shot_offsets if options.shot_calibration else None)
        # What the store held when read (or last saved): saves merge our changes since then with what other
        # writers saved meanwhile (store_sync.py).
        self._base = self._classes.to_store_data()
        self._embedder = Embedder(bundle, options)
        self._closed = False

    @classmethod
    def open(cls, bundle: str | os.PathLike[str], store: str | os.PathLike[str] | None = None,
             options: RecognizerOptions = RecognizerOptions()) -> "Recognizer":
        """Open a bundle directory and, if given, a class store (created on the first save)."""
        return cls(load_bundle(bundle), store, options)

    # ----- what it runs -------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest (preprocessing, scale, fingerprint, files)."""
        return self._bundle.manifest

    @property
    def extractor_file(self) -> ExtractorEntry:
        """The bundle file this Recognizer runs."""
        return self._embedder.entry

    @property
    def embedding_dim(self) -> int:
        return self._bundle.manifest.embedding_dim

    @property
    def class_set(self) -> ClassSet:
        """The classes: rename, remove, count and list them here (learn and merge through this Recognizer)."""
        return self._classes

    def capture_size(self) -> tuple[int, int]:
        """(width, height) of the smallest camera frame the model needs without a resize."""
        return capture_size(self._bundle.manifest.preprocess)

    # ----- images -------------------------------------------------------------------------------
    def embed(self, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB") -> np.ndarray:
        """Unit embeddings float32 (n, D) of images (paths, bytes or uint8 (H, W, 3) arrays in color_order)."""
        self._check_open()
        return self._embedder.embed([images] if _is_single(images) else list(images), color_order)

    def embed_each(self, images: Sequence[ImageInput], color_order: str = "RGB",
                   on_item: Callable[[], None] | None = None) -> Embedded:
        """Embed many images, reporting unreadable ones instead of raising (embedder.Embedded)."""
        self._check_open()
        return self._embedder.embed_each(list(images), color_order, on_item=on_item)

    def learn(self, label: str, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB",
              on_item: Callable[[], None] | None = None) -> LearnReport:
        """The one way to teach: imprint `label` from images, or add them as shots if it exists. A photo the
        class holds already (the same file bytes or pixels), or one given twice, is skipped; an unreadable one
        is reported, not raised. All shots are added in one step (one undo). on_item: called per image."""
        self._check_open()
        label = validate_label(label)
        items = [images] if _is_single(images) else list(images)
        if not items:
            raise ValueError("no images given")
        known = set(self._classes.shots(label)[1]) if label in self._classes else set()
        emb = self._embedder.embed_each(items, color_order, shots=True, skip=known, on_item=on_item)
        added: tuple[str, ...] = ()
        shots = self._classes.count(label) if label in self._classes else 0
        if emb.ok:
            learned = self._classes.learn(label, emb.embeddings, emb.digests)
            added, shots = learned.added, learned.shots
        raced = [i for i, d in zip(emb.ok, emb.digests) if d not in set(added)]  # taught meanwhile elsewhere
        return LearnReport(label, added, shots, tuple(item_name(items[i], i) for i in sorted(emb.repeats + raced)),
                           tuple((item_name(items[i], i), why) for i, why in emb.failed))

    def forget(self, label: str, ids: Sequence[str]) -> int:
        """Undo a learn: remove the shots with these ids (LearnReport.added) from `label`."""
        return self._classes.forget(label, ids)

    def recognize(self, image: ImageInput, top_k: int = 5, color_order: str = "RGB") -> Classification:
        """Classify one image."""
        return self._scorer.classify(self.embed(image, color_order), top_k)[0]

    def recognize_batch(self, images: Sequence[ImageInput], top_k: int = 5,
                        color_order: str = "RGB") -> list[Classification]:
        """Classify several images (ValueError for an unreadable one; embed_each + classify to skip them)."""
        return self._scorer.classify(self.embed(images, color_order), top_k)

    def recognize_frame(self, frame: np.ndarray, color_order: str = "BGR", top_k: int = 3) -> FrameAnswer:
        """One camera frame uint8 (H, W, 3) in its own colour order, timed by stage. ValueError for a frame the
        extractor turns into a zero or NaN embedding."""
        self._check_open()
        e, pre_s, ext_s = self._embedder.frame(frame, color_order)
        t = time.perf_counter()
        res = self._scorer.classify(e, top_k)[0] if len(self._classes) else None
        return FrameAnswer(e, res, pre_s, ext_s, time.perf_counter() - t)

    def explain(self, image: ImageInput, top_k: int = 3, shots: int = 3,
                color_order: str = "RGB") -> tuple[Classification, dict[str, list[tuple[int, float]]]]:
        """Why an image got its answer: the Classification, and for each of its top classes the nearest taught
        shots as (shot number, cosine), nearest first (none for classes that keep no shots)."""
        e = self.embed(image, color_order)
        res = self._scorer.classify(e, top_k)[0]
        return res, {c.label: self.nearest_shots(e[0], c.label, shots) for c in res.categories}

    # ----- embeddings ---------------------------------------------------------------------------
    def nearest_shots(self, embedding: np.ndarray, label: str, k: int = 3) -> list[tuple[int, float]]:
        """The k taught shots of `label` nearest to an embedding (D,): (shot number from 1, cosine)."""
        return self._scorer.nearest_shots(embedding, label, k)

    def classify(self, embeddings: np.ndarray, top_k: int = 5) -> list[Classification]:
        """Classify embeddings (D,) or (n, D) (normalized here); one Classification each."""
        return self._scorer.classify(embeddings, top_k)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores float32 (n, K) of embeddings (n, D) against every class in `labels` order (for evaluations)."""
        return self._scorer.scores(embeddings)

    def check_unknown(self, max_shots: int = 2000) -> UnknownCheck:
        """This recognizer's unknown policy on its own taught shots (unknown_check.py): right answers kept when a
        shot is held out, shots let through when their class is left out, and the evidence keeping 95%."""
        return check_unknown(self._classes, self.unknown, self._scorer.shot_offsets, max_shots)

    # ----- the classes --------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels in row order (base classes first)."""
        return self._classes.labels

    def shots(self, label: str) -> int:
        """Images behind a class (ValueError if there is no such class)."""
        return self._classes.count(label)

    def classes(self) -> list[tuple[str, int]]:
        """(label, shots) of every class, in row order, as one consistent snapshot."""
        with self._classes.lock:
            return [(lab, self._classes.count(lab)) for lab in self._classes.labels]

    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, label: object) -> bool:
        return label in self._classes

    def merge(self, incoming: StoreData | str | os.PathLike[str] | bytes, rename_conflicts: bool = False) -> list[str]:
        """Add the classes of another class store (a StoreData, a file or its bytes) taught with this model:
        by shot identity (merge.py), so a photo held already is not counted again. Returns the labels added or
        grown here."""
        m = self._bundle.manifest
        data = incoming if isinstance(incoming, StoreData) else read_store(
            incoming, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
        return self._classes.merge(data, rename_conflicts)

    def store_bytes(self) -> bytes:
        """The current classes as a class-store file's bytes (to send to another device)."""
        return store_bytes(self._classes.to_store_data())

    # ----- refinement ---------------------------------------------------------------------------
    def refine(self, options: RefineOptions = RefineOptions(),
               on_step: Callable[[int], None] | None = None) -> RefinePlan:
        """Refine after imprinting (refine.py) when the stored shots say it helps; `plan.why` says what
        happened. Teaching or merging a class drops the refinement; `unrefine` drops it by hand. Save to keep
        it. A bundle's base classes take part through the exemplars it carries (exemplars.py)."""
        self._check_open()
        exemplars = self._bundle.base_exemplars()
        plan = refine_classes(self._classes, options, self._scorer.shot_offsets, on_step, exemplars)
        if not plan.refined and plan.before is None and exemplars is None and self._bundle.manifest.base_classes:
            plan = dataclasses.replace(plan, why=f"{plan.why}; this bundle's base classes carry no exemplars (export "
                                                 "it from a checkpoint of this version's `imprint train`)")
        return plan

    def unrefine(self) -> bool:
        """Answer from the imprinted rows again; returns whether there was a refinement."""
        return unrefine(self._classes)

    @property
    def refined(self) -> bool:
        return self._classes.refinement is not None

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the class store atomically (to `path` or the store given at open). Saving to the store given
        at open merges: classes and shots other processes saved there since this Recognizer read it are kept
        and appear here too (store_sync.py)."""
        target = Path(path) if path is not None else self.store_path
        if target is None:
            raise ValueError("no store path: pass one to save() or to Recognizer.open(..., store=...)")
        if self.store_path is None or target.resolve() != self.store_path.resolve():
            write_store(target, self._classes.to_store_data())
            return target
        # Hold the classes still from snapshot to reload, so a class taught meanwhile cannot fall between.
        with self._classes.lock:
            ours = self._classes.to_store_data()
            merged = save_merged(target, self._base, ours)
            if merged is not ours:
                self._classes.replace(merged)
            self._base = merged
        return target

    def close(self) -> None:
        """Release the extractor. Idempotent; unsaved changes are not written."""
        if not self._closed:
            self._embedder.close()
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
