"""The imprinted cosine classifier over a NumPy weight matrix (the paper's Sec. 4).

Per class it keeps the float32 *sum* of unit embeddings and a *count*; the weight row is the normalized
sum, so adding shots later equals imprinting all of them at once. logits = scale * W @ e. Base classes
from a bundle and imprinted classes live in the same matrix. Rows are preallocated with amortized
doubling, so adding a class never copies the whole matrix. All public methods hold one lock, so a
camera thread can classify while another thread teaches.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Callable, Sequence
import numpy as np

from .ranking import UnknownPolicy, rank
from .results import Classification
from .shot_offsets import ShotOffsets
from .labels import validate_label
from .refine import RefineOptions, RefinePlan, Refinement, plan_refinement
from .store import StoreData
from .templates import class_templates
from .unit import normalize_embeddings

_EPS = 1e-12


class ImprintedClassifier:
    """Cosine classifier with imprinting: sums float32 (K, D), counts int64 (K,), labels (K,).

    templates_per_class > 1 keeps every shot and imprints up to that many k-means centres per class
    (prediction takes the max over a class's templates); 1 is the paper's single averaged template.
    keep_shots keeps every shot with one template too (for nearest_shots, which explains an answer).
    shot_offsets (from a bundle trained with base classes) adds a per-class offset by shot count to the
    cosines that classify ranks, so 1-shot classes can compete with base classes averaged over many images.
    """

    def __init__(
        self,
        embedding_dim: int,
        scale: float,
        extractor_fingerprint: str,
        *,
        templates_per_class: int = 1,
        unknown: UnknownPolicy = UnknownPolicy(),
        shot_offsets: ShotOffsets | None = None,
        capacity: int = 64,
        keep_shots: bool = False,
    ) -> None:
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if templates_per_class < 1:
            raise ValueError(f"templates_per_class must be >= 1, got {templates_per_class}")
        self.dim = int(embedding_dim)
        self.scale = float(scale)
        self.fingerprint = str(extractor_fingerprint)
        self.templates_per_class = int(templates_per_class)
        self.unknown = unknown
        self.shot_offsets = shot_offsets
        self._lock = threading.RLock()
        capacity = max(int(capacity), 1)
        # Only the sums and their inverse norms are kept (K x D x 4 bytes): cosine = (sums @ e) / |sums|.
        self._sums = np.zeros((capacity, self.dim), np.float32)
        self._inv_norms = np.zeros(capacity, np.float32)
        self._counts = np.zeros(capacity, np.int64)
        self._offsets = np.zeros(capacity, np.float32)  # shot_offsets(counts), kept per row
        self._labels: list[str] = []
        self._index: dict[str, int] = {}
        # Shots are kept only when several templates are wanted (k-means needs them).
        self._shots: list[list[np.ndarray]] | None = [] if templates_per_class > 1 or keep_shots else None
        self._template_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._digests: dict[str, set[str]] = {}  # label -> content digests of the photos taught
        self._refinement: Refinement | None = None  # refine.py; dropped by any change to the classes

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every method holds; hold it to make several calls one atomic step."""
        return self._lock

    # ----- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    @property
    def labels(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._labels)

    def count(self, label: str) -> int:
        """Number of shots behind a class."""
        with self._lock:
            return int(self._counts[self._require(label)])

    @property
    def weights(self) -> np.ndarray:
        """A copy of the unit weight rows, float32 (K, D)."""
        with self._lock:
            k = len(self._labels)
            return self._sums[:k] * self._inv_norms[:k, None]

    # ----- teaching ----------------------------------------------------------------------------
    def imprint(self, label: str, embeddings: np.ndarray) -> None:
        """Create class `label` from embeddings (D,) or (n, D): its weight is the normalized mean."""
        label = validate_label(label)
        e = normalize_embeddings(embeddings, self.dim)
        with self._lock:
            if label in self._index:
                raise ValueError(f"class {label!r} exists already; use add_shots to add examples to it")
            self._new_class(label, e)

    def add_shots(self, label: str, embeddings: np.ndarray) -> None:
        """Add examples to an existing class; exactly equal to having imprinted all shots at once."""
        e = normalize_embeddings(embeddings, self.dim)
        with self._lock:
            self._add(self._require(label), e)

    def learn(self, label: str, embeddings: np.ndarray, *, unit: bool = False,
              digests: Sequence[str] = ()) -> int:
        """Imprint a new class or add shots to an existing one; returns the class's shot count.

        unit=True: the caller (the Recognizer) passes unit rows float32 (n, D) it normalized itself, so they
        are not normalized twice. digests: one content digest per row (the photo behind it); a row whose
        photo the class holds already, or that repeats one in this call, is skipped, in the same atomic step
        as the learn, so concurrent teaches of one photo add it once."""
        label = validate_label(label)
        e = self._unit_rows(embeddings) if unit else normalize_embeddings(embeddings, self.dim)
        if digests and len(digests) != e.shape[0]:
            raise ValueError(f"got {len(digests)} digests for {e.shape[0]} embeddings")
        with self._lock:
            if digests:
                known = self._digests.setdefault(label, set())
                keep = []
                for i, d in enumerate(digests):
                    if d not in known:
                        known.add(d)
                        keep.append(i)
                if not keep:
                    return int(self._counts[self._index[label]]) if label in self._index else 0
                if len(keep) < e.shape[0]:
                    e = e[keep]
            k = self._index.get(label)
            if k is None:
                self._new_class(label, e)
                k = len(self._labels) - 1
            else:
                self._add(k, e)
            return int(self._counts[k])

    def _new_class(self, label: str, e: np.ndarray) -> None:
        k = len(self._labels)
        if k == self._sums.shape[0]:
            self._grow()
        self._sums[k] = e.sum(0) if e.shape[0] > 1 else e[0]
        self._counts[k] = e.shape[0]
        self._labels.append(label)
        self._index[label] = k
        if self._shots is not None:
            self._shots.append(list(e))
        self._refresh(k)

    def _add(self, k: int, e: np.ndarray) -> None:
        self._sums[k] += e.sum(0) if e.shape[0] > 1 else e[0]
        self._counts[k] += e.shape[0]
        if self._shots is not None:
            self._shots[k].extend(e)
        self._refresh(k)

    def _unit_rows(self, e: np.ndarray) -> np.ndarray:
        if e.ndim == 1:
            e = e[None, :]
        if e.ndim != 2 or e.shape[1] != self.dim or e.dtype != np.float32 or not e.shape[0]:
            raise ValueError(f"expected unit embeddings float32 (n, {self.dim}), got {e.dtype} {e.shape}")
        return e

    def known_digests(self, label: str) -> frozenset[str]:
        """Content digests of the photos taught into `label` (empty for an unknown label)."""
        with self._lock:
            return frozenset(self._digests.get(label, ()))

    def forget_shots(self, label: str, embeddings: np.ndarray, digests: Sequence[str] = ()) -> None:
        """Undo the latest add_shots/imprint of `label` with these embeddings (and photo digests); a class
        left with no shots is removed."""
        e = normalize_embeddings(embeddings, self.dim)
        with self._lock:
            k = self._require(label)
            self._digests.get(label, set()).difference_update(digests)
            if e.shape[0] >= self._counts[k]:
                self.remove(label)
                return
            self._sums[k] -= e.sum(0)
            self._counts[k] -= e.shape[0]
            if self._shots is not None:
                del self._shots[k][len(self._shots[k]) - e.shape[0] :]
            self._refresh(k)

    def remove(self, label: str) -> None:
        """Delete a class; later classes move up one row."""
        with self._lock:
            k = self._require(label)
            n = len(self._labels)
            for a in (self._sums, self._inv_norms, self._counts, self._offsets):
                a[k : n - 1] = a[k + 1 : n]
                a[n - 1] = 0
            del self._labels[k]
            self._digests.pop(label, None)
            if self._shots is not None:
                del self._shots[k]
            self._index = {lab: i for i, lab in enumerate(self._labels)}
            self._template_cache = None
            self._refinement = None

    def rename(self, old: str, new: str) -> None:
        """Give a class a new label (which must not be taken)."""
        new = validate_label(new)
        with self._lock:
            k = self._require(old)
            if new == old:
                return
            if new in self._index:
                raise ValueError(f"cannot rename {old!r} to {new!r}: that label exists already")
            self._labels[k] = new
            del self._index[old]
            self._index[new] = k
            if old in self._digests:
                self._digests[new] = self._digests.pop(old)

    # ----- refinement (refine.py) ----------------------------------------------------------------
    @property
    def refined(self) -> bool:
        """Whether answers come from a refinement rather than the imprinted rows."""
        return self._refinement is not None

    def refine(self, options: RefineOptions = RefineOptions(), on_step: Callable[[int], None] | None = None,
               exemplars: tuple[Sequence[str], np.ndarray] | None = None) -> RefinePlan:
        """Fine-tune a map of the embeddings and the rows on the stored shots, if the held-out check says it
        helps (refine.plan_refinement); answers then come from it until a class changes or `unrefine`.
        Needs the shots (keep_shots, the Recognizer's default). exemplars: (labels (M,), unit embeddings
        (M, D)) that count as shots of those classes for refining only (a bundle's base classes, which keep no
        shots); labels no longer present are skipped. The training runs outside the lock, so classifying
        goes on meanwhile; a class changed meanwhile makes it decline."""
        with self._lock:
            if self._shots is None:
                raise ValueError("refining needs the stored shots: open with keep_shots=True (the default)")
            if not self._labels:
                raise ValueError("the classifier has no classes yet: imprint some first")
            data = self.to_store_data()
            offsets = self._offsets[: len(data.labels)].copy() if self.shot_offsets is not None else None
        shots = data.shots if data.shots is not None else np.zeros((0, self.dim), np.float32)
        shot_class = data.shot_class if data.shot_class is not None else np.zeros(0, np.int64)
        if exemplars is not None:
            labels, emb = exemplars
            if emb.shape != (len(labels), self.dim):
                raise ValueError(f"exemplars of shape {emb.shape} for {len(labels)} labels do not fit {self.dim}-d classes")
            index = {lab: i for i, lab in enumerate(data.labels)}
            found = [(j, index[lab]) for j, lab in enumerate(labels) if lab in index]
            rows, classes = (np.array(v, np.int64) for v in zip(*found)) if found else (np.zeros(0, np.int64),) * 2
            shots = np.concatenate([shots, np.asarray(emb, np.float32)[rows]])
            shot_class = np.concatenate([shot_class, classes])
        plan = plan_refinement(data.sums, shots, shot_class, self.scale, offsets, options, on_step)
        if plan.refinement is None:
            if plan.before is None:  # too few shots: say which classes
                have = np.bincount(shot_class, minlength=len(data.labels))
                few = [f"{data.labels[c]!r} ({have[c]})" for c in np.flatnonzero(have < options.min_shots)[:5]]
                plan = replace(plan, why=f"{plan.why}: {', '.join(few)}{' ...' if len(few) == 5 else ''}")
            return plan
        with self._lock:
            k = len(self._labels)
            if (tuple(self._labels) != data.labels or not np.array_equal(self._counts[:k], data.counts)
                    or not np.array_equal(self._sums[:k], data.sums)):
                return replace(plan, refinement=None, why="declined: the classes changed while refining; run it again")
            self._refinement = plan.refinement
        return plan

    def unrefine(self) -> bool:
        """Answer from the imprinted rows again; returns whether there was a refinement."""
        with self._lock:
            had, self._refinement = self._refinement is not None, None
            return had

    # ----- prediction --------------------------------------------------------------------------
    def cosines(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine of each embedding to each class, float32 (n, K) (max over templates if several),
        without shot offsets."""
        e = normalize_embeddings(embeddings, self.dim)
        with self._lock:
            return self._cosines(e)

    def nearest_shots(self, embedding: np.ndarray, label: str, k: int = 3) -> list[tuple[int, float]]:
        """The k stored shots of `label` nearest to one embedding (D,): (shot number from 1, cosine), nearest
        first; empty when the class keeps no shots (a base class, or a store saved without them)."""
        e = normalize_embeddings(embedding, self.dim)[0]
        with self._lock:
            c = self._require(label)
            if self._shots is None or not self._shots[c]:
                return []
            cos = np.asarray(self._shots[c]) @ e
        order = np.argsort(cos)[::-1][:k]
        return [(int(i) + 1, float(cos[i])) for i in order]

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The scores that classify ranks, float32 (n, K): cosines plus the shot offsets when the
        classifier has them. The batch entry point for evaluations: argmax(axis=1) is the top-1 class index
        in `labels` order."""
        e = normalize_embeddings(embeddings, self.dim)
        with self._lock:
            return self._scores(self._cosines(e))

    def classify(self, embeddings: np.ndarray, top_k: int = 5, *, unit: bool = False) -> list[Classification]:
        """Top-k classes for each embedding of (D,) or (n, D); one Classification per embedding.
        unit=True: unit rows float32 the caller normalized itself (see learn)."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        e = self._unit_rows(embeddings) if unit else normalize_embeddings(embeddings, self.dim)
        with self._lock:
            k = len(self._labels)
            if not k:
                raise ValueError("the classifier has no classes yet: imprint one first")
            cos = self._cosines(e)
            counts = self._counts[:k]
            if self.shot_offsets is None:
                return [rank(c, c, self._labels, counts, self.scale, top_k, self.unknown) for c in cos]
            scores = self._scores(cos)
            return [rank(s, c, self._labels, counts, self.scale, top_k, self.unknown) for s, c in zip(scores, cos)]

    def _scores(self, cos: np.ndarray) -> np.ndarray:
        if self.shot_offsets is None:
            return cos
        return cos + self._offsets[: len(self._labels)]

    def _cosines(self, e: np.ndarray) -> np.ndarray:
        k = len(self._labels)
        if self._refinement is not None:
            return self._refinement.cosines(e)
        if self.templates_per_class == 1 or self._shots is None:
            if e.shape[0] == 1:
                # One embedding (the camera's case): a matrix-vector product, scaled in place.
                cos = (self._sums[:k] @ e[0])[None, :]
            else:
                cos = e @ self._sums[:k].T
            cos *= self._inv_norms[:k]
            return cos
        if self._template_cache is None:
            self._template_cache = class_templates(self._shots, self._sums[:k], self._inv_norms[:k],
                                                   self._counts[:k], self.templates_per_class)
        templates, starts = self._template_cache
        return np.maximum.reduceat(e @ templates.T, starts, axis=1)

    # ----- state -------------------------------------------------------------------------------
    def to_store_data(self) -> StoreData:
        """A snapshot of the state in the class-store format."""
        with self._lock:
            k = len(self._labels)
            shots = shot_class = None
            if self._shots is not None:
                flat = [s for per in self._shots for s in per]
                shots = np.asarray(flat, np.float32).reshape(len(flat), self.dim)
                shot_class = np.repeat(np.arange(k), [len(per) for per in self._shots]).astype(np.int64)
            return StoreData(
                labels=tuple(self._labels),
                sums=self._sums[:k].copy(),
                counts=self._counts[:k].copy(),
                scale=self.scale,
                extractor_fingerprint=self.fingerprint,
                templates_per_class=self.templates_per_class,
                shots=shots,
                shot_class=shot_class,
                digests={lab: tuple(sorted(d)) for lab, d in self._digests.items() if d},
                refinement=self._refinement,
            )

    @classmethod
    def from_store_data(
        cls,
        data: StoreData,
        *,
        templates_per_class: int | None = None,
        unknown: UnknownPolicy = UnknownPolicy(),
        shot_offsets: ShotOffsets | None = None,
        keep_shots: bool = False,
    ) -> "ImprintedClassifier":
        """Rebuild a classifier from a store; templates_per_class defaults to the store's."""
        t = data.templates_per_class if templates_per_class is None else templates_per_class
        k = len(data.labels)
        clf = cls(data.embedding_dim, data.scale, data.extractor_fingerprint, templates_per_class=t,
                  unknown=unknown, shot_offsets=shot_offsets, capacity=max(64, 2 * k), keep_shots=keep_shots)
        clf._sums[:k] = data.sums
        clf._counts[:k] = data.counts
        clf._labels = list(data.labels)
        clf._index = {lab: i for i, lab in enumerate(data.labels)}
        clf._digests = {lab: set(d) for lab, d in data.digests.items()}
        if clf._shots is not None:
            clf._shots = [[] for _ in range(k)]
            if data.shots is not None:
                for s, c in zip(data.shots.astype(np.float32), data.shot_class):
                    clf._shots[int(c)].append(s)
        clf._inv_norms[:k] = 1.0 / np.maximum(np.linalg.norm(clf._sums[:k], axis=1), _EPS)
        if shot_offsets is not None:
            clf._offsets[:k] = shot_offsets(clf._counts[:k])
        clf._refinement = data.refinement
        return clf

    def replace_state(self, data: StoreData) -> None:
        """Take the classes of `data` in place of the current ones (after a merged save), keeping this
        object's options; holders of this classifier see the new classes."""
        if data.embedding_dim != self.dim:
            raise ValueError(f"cannot load {data.embedding_dim}-d classes into a {self.dim}-d classifier")
        fresh = ImprintedClassifier.from_store_data(data, templates_per_class=self.templates_per_class,
                                                    unknown=self.unknown, shot_offsets=self.shot_offsets,
                                                    keep_shots=self._shots is not None)
        with self._lock:
            for name in ("_sums", "_inv_norms", "_counts", "_offsets", "_labels", "_index", "_shots", "_digests",
                         "_refinement"):
                setattr(self, name, getattr(fresh, name))
            self._template_cache = None

    def extend(self, other: StoreData) -> None:
        """Add every class of another store (e.g. a bundle's base classes); labels must be new."""
        if other.embedding_dim != self.dim:
            raise ValueError(f"cannot merge {other.embedding_dim}-d classes into a {self.dim}-d classifier")
        with self._lock:
            clash = sorted(set(other.labels) & set(self._index))
            if clash:
                raise ValueError(f"cannot merge: labels exist already: {clash[:5]}")
            for label, s, c in zip(other.labels, other.sums, other.counts):
                k = len(self._labels)
                if k == self._sums.shape[0]:
                    self._grow()
                self._sums[k], self._counts[k] = s, c
                self._labels.append(label)
                self._index[label] = k
                if self._shots is not None:
                    self._shots.append([])
                self._refresh(k)

    # ----- internals ---------------------------------------------------------------------------
    def _require(self, label: str) -> int:
        k = self._index.get(label)
        if k is None:
            near = ", ".join(repr(x) for x in self._labels[:10])
            raise ValueError(f"no class named {label!r}; classes: {near}{' ...' if len(self._labels) > 10 else ''}")
        return k

    def _grow(self) -> None:
        # Doubling keeps the cost of adding a class amortized O(D).
        cap = self._sums.shape[0] * 2
        for name in ("_sums", "_inv_norms", "_counts", "_offsets"):
            old = getattr(self, name)
            # Rows past the class count are never read, so the new matrix need not be zeroed first (that would
            # touch every page of it once more).
            new = np.empty((cap, *old.shape[1:]), old.dtype)
            new[: old.shape[0]] = old
            if old.ndim == 1:
                new[old.shape[0]:] = 0  # the small per-class arrays stay zeroed; it costs nothing
            setattr(self, name, new)

    def _refresh(self, k: int) -> None:
        s = self._sums[k]
        self._inv_norms[k] = 1.0 / max(float(np.sqrt(s @ s)), _EPS)  # as from_store_data: a reload is exact
        if self.shot_offsets is not None:
            self._offsets[k] = self.shot_offsets(self._counts[k : k + 1])[0]
        self._template_cache = None
        self._refinement = None
