"""The facade most users need: a bundle plus a class store.

    with Recognizer.open("bundle/", store="classes.npz") as r:
        r.learn("mug", ["mug1.jpg", "mug2.jpg"])
        print(r.recognize("photo.jpg").label)
        r.save()
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import Bundle, ExtractorEntry, Manifest, load_bundle
from .recognizer_options import FrameAnswer, RecognizerOptions, bundle_unknown_policy
from .classifier import ImprintedClassifier
from .images import ImageInput, load_image, load_image_digest
from .labels import validate_label
from .preprocess import preprocess
from .refine import RefineOptions, RefinePlan
from .results import Classification
from .store import StoreData, read_store, store_bytes, write_store
from .store_sync import combine, save_merged
from .unit import extractor_units

log = logging.getLogger(__name__)
class Recognizer:
    """The one owner of inference: image -> extractor input -> unit embedding -> scores -> answer.

    Every front end (CLI, camera loop, HTTP API, demo, benchmarks) goes through these methods; the
    extractor and the classifier behind them are private. Entry points: files, bytes or RGB arrays
    (`embed`, `learn`, `recognize`), camera frames in their own colour order (`recognize_frame`), and
    already-unit embeddings (`learn_embeddings`, `classify`, `scores`).
    """

    def __init__(self, bundle: Bundle, store: str | os.PathLike[str] | None, options: RecognizerOptions) -> None:
        self._bundle = bundle
        self.options = options
        self.store_path = Path(store) if store is not None else None
        m = bundle.manifest
        offsets = m.shot_offsets if options.shot_calibration else None
        self.unknown = options.unknown if options.unknown is not None else bundle_unknown_policy(m)
        if self.store_path is not None and self.store_path.exists():
            data = read_store(self.store_path, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
            self._classifier = ImprintedClassifier.from_store_data(
                data, templates_per_class=options.templates_per_class, unknown=self.unknown,
                shot_offsets=offsets, keep_shots=options.keep_shots,
            )
            log.info("loaded %d classes from %s", len(self._classifier), self.store_path)
            t = self._classifier.templates_per_class
            if t > 1 and data.shots is None and len(data.labels):
                log.warning("%s was saved without its shots (templates 1): its %d classes keep one template each "
                            "until they are taught again; new classes get up to %d", self.store_path, len(data.labels), t)
        else:
            self._classifier = ImprintedClassifier(
                m.embedding_dim, m.scale, m.fingerprint,
                templates_per_class=options.templates_per_class or 1, unknown=self.unknown,
                shot_offsets=offsets, keep_shots=options.keep_shots,
            )
            base = bundle.base_classes()
            if base is not None:
                self._classifier.extend(base)
        # What the store held when read (or last saved): saves merge our changes since then with what other
        # writers saved meanwhile (store_sync.py).
        self._base = self._classifier.to_store_data()
        self._entry = m.select(options.format, options.precision)
        self._extractor = bundle.open_extractor(options.format, options.precision, options.extractor)
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

    # ----- what it runs -------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest (preprocessing, scale, fingerprint, files)."""
        return self._bundle.manifest

    @property
    def extractor_file(self) -> ExtractorEntry:
        """The bundle file this Recognizer runs."""
        return self._entry

    @property
    def embedding_dim(self) -> int:
        return self._bundle.manifest.embedding_dim

    @property
    def templates_per_class(self) -> int:
        """Templates per class in effect (saved with the store)."""
        return self._classifier.templates_per_class

    # ----- embeddings -------------------------------------------------------------------------
    def embed(self, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB") -> np.ndarray:
        """Unit embeddings float32 (n, D) of images (paths, bytes or uint8 (H, W, 3) arrays in color_order)."""
        self._check_open()
        items = [images] if _is_single(images) else list(images)
        if not items:
            raise ValueError("no images given")
        spec, layout = self._bundle.manifest.preprocess, self._extractor.layout
        out = []
        bs = self.options.batch_size
        for i in range(0, len(items), bs):
            chunk = items[i : i + bs]
            if all(isinstance(x, np.ndarray) for x in chunk):
                # Frames keep their channel order; preprocess swaps BGR for free.
                x = preprocess(chunk, spec, layout, color_order)
            else:
                x = preprocess([load_image(x, color_order, spec.resize_size) for x in chunk], spec, layout)
            out.append(self._extractor.run(x))
        return extractor_units(np.concatenate(out))

    def embed_shots(self, images: Sequence[np.ndarray], color_order: str = "RGB",
                    embeddings: np.ndarray | None = None) -> np.ndarray:
        """Unit embeddings float32 (n, D) of uint8 images (H, W, 3) being taught: `embed`, or with
        options.mirror_shots the normalized mean of each image's and its mirror's embeddings. embeddings: the
        images' own unit embeddings when the caller has them already (a camera frame), so only the mirrors run."""
        e = self.embed(list(images), color_order) if embeddings is None else embeddings
        if not self.options.mirror_shots:
            return e
        return extractor_units(e + self.embed([im[:, ::-1] for im in images], color_order))

    # ----- teaching -----------------------------------------------------------------------------
    def learn(self, label: str, images: ImageInput | Sequence[ImageInput], color_order: str = "RGB") -> int:
        """Imprint `label` from images, or add them as shots if it exists. Returns the class's shot count.
        A photo already taught to `label` (the same file bytes or pixels) is skipped, not counted twice."""
        label = validate_label(label)
        items = [images] if _is_single(images) else list(images)
        known = set(self.known_digests(label))
        fresh, digests = [], []
        for x in items:
            image, digest = load_image_digest(x, color_order, self._bundle.manifest.preprocess.resize_size)
            if digest in known:
                log.info("skipped a photo taught to %r already", label)
                continue
            known.add(digest)
            fresh.append(image)
            digests.append(digest)
        if not fresh:
            return self.shots(label)
        return self._classifier.learn(label, self.embed_shots(fresh), unit=True, digests=digests)

    def learn_embeddings(self, label: str, embeddings: np.ndarray, *, unit: bool = False,
                         digests: Sequence[str] = ()) -> int:
        """Imprint `label` from embeddings (D,) or (n, D), or add them as shots; returns the class's shot count.
        They are checked and normalized here unless unit=True says they came from this Recognizer's embed
        (float32 unit rows), so no embedding is normalized twice. digests: the photos' content digests
        (images.load_image_digest), kept so that they are not taught twice."""
        return self._classifier.learn(label, embeddings, unit=unit, digests=digests)

    def known_digests(self, label: str) -> frozenset[str]:
        """Content digests of the photos taught to `label` (empty for a new label)."""
        return self._classifier.known_digests(label)

    def forget_embeddings(self, label: str, embeddings: np.ndarray, digests: Sequence[str] = ()) -> None:
        """Undo a learn_embeddings(label, embeddings, digests); a class left with no shots is removed."""
        self._classifier.forget_shots(label, embeddings, digests)

    def rename(self, old: str, new: str) -> None:
        """Give a class a new label (which must not be taken)."""
        self._classifier.rename(old, new)

    def remove(self, label: str) -> None:
        """Delete a class."""
        self._classifier.remove(label)

    def merge(self, incoming: StoreData | str | os.PathLike[str] | bytes, rename_conflicts: bool = False) -> tuple[str, ...]:
        """Add the classes of another class store (a StoreData, a file or its bytes) taught with this model on
        another device: the same label becomes one class with all the shots (exact: sums and counts add), or
        stays apart as "label (2)" with rename_conflicts. Returns the incoming classes' labels here."""
        m = self._bundle.manifest
        data = incoming if isinstance(incoming, StoreData) else read_store(
            incoming, expected_fingerprint=m.fingerprint, expected_dim=m.embedding_dim)
        with self._classifier.lock:
            ours = self._classifier.to_store_data()
            merged = combine([ours, data], rename_conflicts)
            self._classifier.replace_state(merged)
        return tuple(merged.labels[len(ours.labels):]) if rename_conflicts else tuple(data.labels)

    def store_bytes(self) -> bytes:
        """The current classes as a class-store file's bytes (to send to another device)."""
        return store_bytes(self._classifier.to_store_data())

    # ----- the classes --------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels in row order (base classes first)."""
        return self._classifier.labels

    def shots(self, label: str) -> int:
        """Images behind a class (ValueError if there is no such class)."""
        return self._classifier.count(label)

    def classes(self) -> list[tuple[str, int]]:
        """(label, shots) of every class, in row order, as one consistent snapshot."""
        with self._classifier.lock:
            return [(lab, self._classifier.count(lab)) for lab in self._classifier.labels]

    def __len__(self) -> int:
        return len(self._classifier)

    def __contains__(self, label: object) -> bool:
        return label in self._classifier

    # ----- recognition --------------------------------------------------------------------------
    def recognize(self, image: ImageInput, top_k: int = 5, color_order: str = "RGB") -> Classification:
        """Classify one image."""
        return self._classifier.classify(self.embed(image, color_order), top_k, unit=True)[0]

    def recognize_batch(
        self, images: Sequence[ImageInput], top_k: int = 5, color_order: str = "RGB"
    ) -> list[Classification]:
        """Classify several images."""
        return self._classifier.classify(self.embed(images, color_order), top_k, unit=True)

    def recognize_frame(self, frame: np.ndarray, color_order: str = "BGR", top_k: int = 3) -> FrameAnswer:
        """One camera frame uint8 (H, W, 3) in its own colour order, timed by stage. ValueError, as in embed,
        for a frame the extractor turns into a zero or NaN embedding."""
        self._check_open()
        t0 = time.perf_counter()
        x = preprocess(frame, self._bundle.manifest.preprocess, self._extractor.layout, color_order)
        t1 = time.perf_counter()
        e = extractor_units(self._extractor.run(x))[0]
        t2 = time.perf_counter()
        res = self._classifier.classify(e, top_k, unit=True)[0] if len(self._classifier) else None
        return FrameAnswer(e, res, t1 - t0, t2 - t1, time.perf_counter() - t2)

    def explain(self, image: ImageInput, top_k: int = 3, shots: int = 3,
                color_order: str = "RGB") -> tuple[Classification, dict[str, list[tuple[int, float]]]]:
        """Why an image got its answer: the Classification, and for each of its top classes the nearest taught
        shots as (shot number, cosine), nearest first (none for classes that keep no shots)."""
        e = self.embed(image, color_order)
        res = self._classifier.classify(e, top_k, unit=True)[0]
        return res, {c.label: self.nearest_shots(e[0], c.label, shots) for c in res.categories}

    def nearest_shots(self, embedding: np.ndarray, label: str, k: int = 3) -> list[tuple[int, float]]:
        """The k taught shots of `label` nearest to an embedding (D,): (shot number from 1, cosine)."""
        return self._classifier.nearest_shots(embedding, label, k)

    def classify(self, embeddings: np.ndarray, top_k: int = 5, *, unit: bool = False) -> list[Classification]:
        """Classify embeddings (D,) or (n, D); one Classification each (unit: as in learn_embeddings)."""
        return self._classifier.classify(embeddings, top_k, unit=unit)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores float32 (n, K) of embeddings (n, D) against every class in `labels` order (for evaluations)."""
        return self._classifier.scores(embeddings)

    # ----- refinement ---------------------------------------------------------------------------
    def refine(self, options: RefineOptions = RefineOptions(),
               on_step: Callable[[int], None] | None = None) -> RefinePlan:
        """Refine after imprinting (refine.py) when the stored shots say it helps; `plan.why` says what
        happened. Teaching, removing or merging a class drops the refinement; `unrefine` drops it by hand.
        Save to keep it. A bundle's base classes take part through the exemplars it carries (exemplars.py),
        read here and dropped afterwards."""
        self._check_open()
        exemplars = self._bundle.base_exemplars()
        plan = self._classifier.refine(options, on_step, exemplars)
        if not plan.refined and plan.before is None and exemplars is None and self._bundle.manifest.base_classes:
            plan = replace(plan, why=f"{plan.why}; this bundle's base classes carry no exemplars (export it from a "
                                     "checkpoint of this version's `imprint train`)")
        return plan

    def unrefine(self) -> bool:
        """Answer from the imprinted rows again; returns whether there was a refinement."""
        return self._classifier.unrefine()

    @property
    def refined(self) -> bool:
        return self._classifier.refined

    # ----- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the class store atomically (to `path` or the store given at open).

        Saving to the store given at open merges: classes and shots that other processes saved there since
        this Recognizer read it are kept and appear in this classifier too (see store_sync.py)."""
        target = Path(path) if path is not None else self.store_path
        if target is None:
            raise ValueError("no store path: pass one to save() or to Recognizer.open(..., store=...)")
        if self.store_path is None or target.resolve() != self.store_path.resolve():
            write_store(target, self._classifier.to_store_data())
            return target
        # Hold the classifier still from snapshot to reload, so a class taught by another thread meanwhile
        # cannot fall between the two.
        with self._classifier.lock:
            ours = self._classifier.to_store_data()
            merged = save_merged(target, self._base, ours)
            if merged is not ours:
                self._classifier.replace_state(merged)
            self._base = merged
        return target

    def close(self) -> None:
        """Release the extractor. Idempotent; unsaved changes are not written."""
        if not self._closed:
            self._extractor.close()
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
