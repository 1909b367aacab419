"""The class set: the one owner of what users taught (ARCHITECTURE.md, contract 8).

Per class it keeps the float32 *sum* of unit embeddings and a *count* (the paper's imprinted row is the
normalized sum, so adding shots later equals imprinting them all at once), and every shot it was taught as a
unit row with its id (the photo's content digest, or the content id of the row: invariants.content_id), so a
photo is never counted twice, an undo removes exactly what a teach added, and merges are idempotent
(merge.py). It also holds the settings (model fingerprint, scale, templates per class) and the refinement
fitted to exactly these classes. Every edit goes through these methods under one re-entrant lock and bumps
`version`, which readers (the scorer, refinement) compare to know their caches are current.
"""

from __future__ import annotations

import threading
import unicodedata
import dataclasses
from dataclasses import dataclass

import numpy as np

from .invariants import MAX_COUNT, check_settings, check_store_data, content_id
from .labels import validate_label
from .merge import merge_into
from .refine import Refinement
from .store import StoreData
from .unit import normalize_embeddings

_EPS = 1e-12


@dataclass(frozen=True)
class Learned:
    """What one learn did: the ids of the shots added, how many were repeats of shots the class holds (or of
    each other) and were skipped, and the class's shot count after it (0: the class does not exist)."""

    label: str
    added: tuple[str, ...]
    repeats: int
    shots: int


class ClassSet:
    """Classes of unit embeddings: sums float32 (K, D), counts int64 (K,), labels (K,), shots with ids."""

    def __init__(self, embedding_dim: int, scale: float, extractor_fingerprint: str, *,
                 templates_per_class: int = 1) -> None:
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be an integer >= 1, got {embedding_dim!r}")
        check_settings(float(scale), templates_per_class, "class set")
        self.dim, self.scale = embedding_dim, float(scale)
        self.fingerprint, self.templates_per_class = str(extractor_fingerprint), templates_per_class
        self.lock = threading.RLock()
        self.version = 0
        self._clear(64)

    def _clear(self, capacity: int) -> None:
        self._sums = np.zeros((capacity, self.dim), np.float32)
        self._inv_norms = np.zeros(capacity, np.float32)  # 1 / |sum|, kept with each edit (the scorer's rows)
        self._counts = np.zeros(capacity, np.int64)
        self._labels: list[str] = []
        self._index: dict[str, int] = {}
        self._shots: list[list[np.ndarray]] = []
        self._ids: list[list[str]] = []
        self._refinement: Refinement | None = None

    # ----- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    @property
    def labels(self) -> tuple[str, ...]:
        with self.lock:
            return tuple(self._labels)

    def count(self, label: str) -> int:
        """Shots behind a class (ValueError naming the classes if there is none)."""
        with self.lock:
            return int(self._counts[self.require(label)])

    def shots(self, label: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """The kept shots of a class, unit rows float32 (n, D), and their ids (n,)."""
        with self.lock:
            k = self.require(label)
            return np.asarray(self._shots[k], np.float32).reshape(-1, self.dim), tuple(self._ids[k])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[np.ndarray]]]:
        """Views of sums float32 (K, D), their inverse norms float32 (K,), counts int64 (K,) and the per-class
        shot lists, for readers holding the lock."""
        k = len(self._labels)
        return self._sums[:k], self._inv_norms[:k], self._counts[:k], self._shots

    @property
    def refinement(self) -> Refinement | None:
        """The refinement fitted to exactly these classes (refine.py), or None; any edit drops it."""
        return self._refinement

    def set_refinement(self, refinement: Refinement | None, version: int) -> bool:
        """Keep a refinement fitted at `version`; False (and nothing kept) if the classes changed since."""
        with self.lock:
            if version != self.version:
                return False
            if refinement is not None:
                refinement.check(len(self._labels), self.dim, "refinement")
            self._refinement = refinement
            self.version += 1
            return True

    def require(self, label: str) -> int:
        """The row of `label`; ValueError naming some classes if there is none."""
        k = self._index.get(label)
        if k is None and isinstance(label, str):  # as a user typed it: "Jay " is the class "Jay"
            k = self._index.get(unicodedata.normalize("NFC", label).strip())
        if k is None:
            near = ", ".join(repr(x) for x in self._labels[:10])
            raise ValueError(f"no class named {label!r}; classes: {near or '(none)'}"
                             f"{' ...' if len(self._labels) > 10 else ''}")
        return k

    # ----- edits ---------------------------------------------------------------------------------
    def learn(self, label: str, embeddings: np.ndarray, ids: tuple[str, ...] | list[str] | None = None) -> Learned:
        """Imprint `label` from embeddings (D,) or (n, D) (normalized here), or add them to it. ids: one per row
        (photo digests); default their content ids. A shot whose id the class holds, or that repeats one in this
        call, is skipped. Atomic: other threads see all of it or none."""
        label = validate_label(label)
        e = normalize_embeddings(embeddings, self.dim)
        ids = [content_id(r) for r in e] if ids is None else list(ids)
        if len(ids) != e.shape[0] or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
            raise ValueError(f"got {len(ids)} shot ids for {e.shape[0]} embeddings; each a string of 1-64 characters")
        with self.lock:
            k = self._index.get(label)
            known = set(self._ids[k]) if k is not None else set()
            keep = [j for j, i in enumerate(ids) if not (i in known or known.add(i))]
            if not keep:
                return Learned(label, (), len(ids), self.count(label) if k is not None else 0)
            if k is not None and self._counts[k] + len(keep) > MAX_COUNT:
                raise ValueError(f"class {label!r} would exceed {MAX_COUNT} shots")
            rows = e[keep] if len(keep) < e.shape[0] else e
            k = self._new_row(label) if k is None else k
            self._sums[k] += rows.sum(0) if rows.shape[0] > 1 else rows[0]
            self._counts[k] += rows.shape[0]
            self._shots[k].extend(rows)
            self._ids[k].extend(ids[j] for j in keep)
            self._changed(k)
            return Learned(label, tuple(ids[j] for j in keep), len(ids) - len(keep), int(self._counts[k]))

    def forget(self, label: str, ids: tuple[str, ...] | list[str]) -> int:
        """Remove the shots with these ids from `label` (an undo); a class left with nothing is removed.
        Returns how many were removed."""
        with self.lock:
            k = self.require(label)
            gone = set(ids)
            drop = [j for j, i in enumerate(self._ids[k]) if i in gone]
            if not drop:
                return 0
            if len(drop) >= self._counts[k]:
                self.remove(label)
                return len(drop)
            self._sums[k] -= np.sum([self._shots[k][j] for j in drop], axis=0, dtype=np.float32)
            self._counts[k] -= len(drop)
            for j in reversed(drop):
                del self._shots[k][j], self._ids[k][j]
            self._changed(k)
            return len(drop)

    def remove(self, label: str) -> None:
        """Delete a class; later classes move up one row. A refinement keeps its rows for the other classes."""
        with self.lock:
            k = self.require(label)
            n = len(self._labels)
            for a in (self._sums, self._inv_norms, self._counts):
                a[k : n - 1] = a[k + 1 : n]
                a[n - 1] = 0
            del self._labels[k], self._shots[k], self._ids[k]
            self._index = {lab: i for i, lab in enumerate(self._labels)}
            ref = self._refinement
            self._changed()
            if ref is not None and self._labels:
                self._refinement = dataclasses.replace(ref, rows=np.delete(ref.rows, k, axis=0))

    def rename(self, old: str, new: str) -> None:
        """Give a class a new label (which must not be taken); its shots and refinement stay."""
        new = validate_label(new)
        with self.lock:
            k = self.require(old)
            old = self._labels[k]
            if new == old:
                return
            if new in self._index:
                raise ValueError(f"cannot rename {old!r} to {new!r}: that label exists already")
            self._labels[k] = new
            del self._index[old]
            self._index[new] = k
            self.version += 1  # rows are unchanged: the refinement still fits

    def merge(self, incoming: StoreData, rename_conflicts: bool = False) -> list[str]:
        """Merge another store's classes in (merge.py: by shot identity, idempotent; the same model and settings
        or ValueError). Returns the labels added or grown; nothing changes when it adds nothing."""
        with self.lock:
            merged, changed = merge_into(self.to_store_data(), incoming, rename_conflicts)
            if changed:
                self.replace(merged)
            return changed

    def replace(self, data: StoreData) -> None:
        """Take the classes of `data` (checked: invariants.py, same model) in place of the current ones."""
        if (data.extractor_fingerprint, data.embedding_dim) != (self.fingerprint, self.dim):
            raise ValueError(f"cannot load classes of model {data.extractor_fingerprint[:12]} ({data.embedding_dim}-d) "
                             f"into a class set of {self.fingerprint[:12]} ({self.dim}-d)")
        check_store_data(data, "class store")
        with self.lock:
            k = len(data.labels)
            self._clear(max(64, 2 * k))
            self._sums[:k], self._counts[:k] = data.sums, data.counts
            for j in range(k):
                self._set_inv_norm(j)
            self._labels = list(data.labels)
            self._index = {lab: i for i, lab in enumerate(self._labels)}
            self._shots, self._ids = [[] for _ in range(k)], [[] for _ in range(k)]
            if data.shots is not None:
                for row, c, i in zip(data.shots, data.shot_class.tolist(), data.shot_ids):
                    self._shots[c].append(row)
                    self._ids[c].append(i)
            self.scale, self.templates_per_class = data.scale, data.templates_per_class
            self._changed()
            self._refinement = data.refinement

    # ----- state ---------------------------------------------------------------------------------
    def to_store_data(self) -> StoreData:
        """A snapshot in the class-store format (copies)."""
        with self.lock:
            k = len(self._labels)
            flat = [s for per in self._shots for s in per]
            return StoreData(
                labels=tuple(self._labels), sums=self._sums[:k].copy(), counts=self._counts[:k].copy(),
                scale=self.scale, extractor_fingerprint=self.fingerprint,
                templates_per_class=self.templates_per_class,
                shots=np.asarray(flat, np.float32).reshape(len(flat), self.dim),
                shot_class=np.repeat(np.arange(k), [len(p) for p in self._shots]).astype(np.int64),
                shot_ids=tuple(i for per in self._ids for i in per),
                refinement=self._refinement,
            )

    @classmethod
    def from_store_data(cls, data: StoreData, templates_per_class: int | None = None) -> "ClassSet":
        """A class set holding `data`'s classes; templates_per_class overrides the store's setting."""
        t = data.templates_per_class if templates_per_class is None else templates_per_class
        out = cls(data.embedding_dim, data.scale, data.extractor_fingerprint, templates_per_class=data.templates_per_class)
        out.replace(data)
        out.templates_per_class = t
        check_settings(out.scale, t, "class set")
        return out

    def _new_row(self, label: str) -> int:
        k = len(self._labels)
        if k == self._sums.shape[0]:  # doubling keeps adding a class amortized O(D)
            self._sums = np.concatenate([self._sums, np.zeros_like(self._sums)])
            self._inv_norms = np.concatenate([self._inv_norms, np.zeros_like(self._inv_norms)])
            self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
        self._labels.append(label)
        self._index[label] = k
        self._shots.append([])
        self._ids.append([])
        return k

    def _set_inv_norm(self, k: int) -> None:
        s = self._sums[k]  # row by row, in one formula: a reloaded or merged class scores exactly as taught
        self._inv_norms[k] = 1.0 / max(float(np.sqrt(s @ s)), _EPS)

    def _changed(self, k: int | None = None) -> None:
        if k is not None:
            self._set_inv_norm(k)
        self._refinement = None
        self.version += 1
