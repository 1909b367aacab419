"""Several writers, one class store: saves that merge instead of overwriting.

The camera loop, `imprint learn` and a second `Recognizer` may all save the same file. A plain save is
"last writer wins": whatever the others saved since this writer read the file is lost. Because a class is a
sum and a count, the changes of two writers combine exactly. `save_merged` takes an inter-process lock
(fcntl on `.NAME.lock` beside the store), reads what is on disk now (`theirs`), and writes, per label,

    theirs + (ours - base)          (sums and counts; a missing label counts as zero)

where `base` is the store this writer read (or last saved) and `ours` is what it holds now. A label whose
merged count falls to zero or below is dropped. So classes taught elsewhere survive, a class removed here
stays removed unless someone else added shots to it meanwhile (those shots are kept), and two writers adding
shots to one label both count. Stored shots (several templates per class) merge the same way, by content.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .store import StoreData, read_store, write_store

log = logging.getLogger(__name__)


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock for the store at `path` (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:  # Windows: saves stay atomic, merging is best effort
        yield
        return
    lock = path.parent / f".{path.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _by_label(d: StoreData | None) -> dict[str, tuple[np.ndarray, int, list[bytes]]]:
    if d is None:
        return {}
    shots: dict[int, list[bytes]] = {}
    if d.shots is not None:
        for s, c in zip(np.asarray(d.shots, np.float32), d.shot_class):
            shots.setdefault(int(c), []).append(s.tobytes())
    return {lab: (np.asarray(d.sums[k], np.float64), int(d.counts[k]), shots.get(k, [])) for k, lab in enumerate(d.labels)}


def merge_stores(base: StoreData | None, ours: StoreData, theirs: StoreData | None) -> StoreData:
    """theirs + (ours - base) per label; see the module docstring. All three must share the embedding space."""
    if theirs is None or (base is not None and _same(base, theirs)):
        return ours  # nobody else wrote: ours as it is (with its refinement, if any)
    if (theirs.extractor_fingerprint, theirs.embedding_dim) != (ours.extractor_fingerprint, ours.embedding_dim):
        raise ValueError(
            f"the store on disk was replaced by one for another model ({theirs.extractor_fingerprint[:12]}, "
            f"{theirs.embedding_dim}-d); not merging into it: save to another file"
        )
    b, o, t = _by_label(base), _by_label(ours), _by_label(theirs)
    digests = {}
    zero = (np.zeros(ours.embedding_dim), 0, [])
    labels = list(theirs.labels) + [lab for lab in ours.labels if lab not in t]
    out_labels, sums, counts, shots, shot_class = [], [], [], [], []
    for lab in labels:
        ts, tc, tsh = t.get(lab, zero)
        os_, oc, osh = o.get(lab, zero)
        bs, bc, bsh = b.get(lab, zero)
        count = tc + oc - bc
        if count <= 0:
            continue
        merged_shots = [s for s in tsh if s not in bsh or s in osh] + [s for s in osh if s not in bsh and s not in tsh]
        out_labels.append(lab)
        bd, od, td = (set(d.digests.get(lab, ())) if d is not None else set() for d in (base, ours, theirs))
        if bd or od or td:
            digests[lab] = tuple(sorted((td | od) - (bd - od)))  # what ours dropped since base (an undo) goes
        sums.append(ts + os_ - bs)
        counts.append(count)
        shots += merged_shots
        shot_class += [len(out_labels) - 1] * len(merged_shots)
    keep_shots = any(d is not None and d.shots is not None for d in (base, ours, theirs))
    dim = ours.embedding_dim
    return StoreData(
        labels=tuple(out_labels),
        sums=np.asarray(sums, np.float32).reshape(len(out_labels), dim),
        counts=np.asarray(counts, np.int64),
        scale=ours.scale,
        extractor_fingerprint=ours.extractor_fingerprint,
        templates_per_class=ours.templates_per_class,
        shots=np.frombuffer(b"".join(shots), np.float32).reshape(-1, dim).copy() if keep_shots else None,
        shot_class=np.asarray(shot_class, np.int64) if keep_shots else None,
        digests=digests,
    )


def _same(a: StoreData, b: StoreData) -> bool:
    """The same classes, sums, counts, shots and digests, exactly."""
    def eq(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        return (x is None) == (y is None) and (x is None or np.array_equal(x, y))

    return (a.labels == b.labels and a.extractor_fingerprint == b.extractor_fingerprint and eq(a.sums, b.sums)
            and eq(a.counts, b.counts) and eq(a.shots, b.shots) and eq(a.shot_class, b.shot_class)
            and a.digests == b.digests)


def save_merged(path: str | os.PathLike[str], base: StoreData | None, ours: StoreData) -> StoreData:
    """Merge `ours` (read as `base`) with what is on disk now and write the result atomically, under the
    store's lock. Returns what was written, the next save's base."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot save {path}: directory {path.parent} does not exist")
    with store_lock(path):
        theirs = read_store(path) if path.exists() else None
        merged = merge_stores(base, ours, theirs)
        if theirs is not None and base is not None and merged is not ours:
            added = sorted(set(theirs.labels) - set(base.labels))
            if added:
                log.info("merged classes saved meanwhile by another writer: %s", added[:10])
        write_store(path, merged)
    return merged


def combine(stores: list[StoreData], rename_conflicts: bool = False) -> StoreData:
    """One store holding every class of `stores` (taught on different devices, say).

    The same label in several stores is one class whose sums, counts and shots add up: exactly the class
    taught with all those shots on one device. With rename_conflicts it stays separate instead, as
    "label (2)", "label (3)", ... All stores must come from the same model (fingerprint and dimension)."""
    if not stores:
        raise ValueError("nothing to merge: give at least one class store")
    first = stores[0]
    for s in stores[1:]:
        if (s.extractor_fingerprint, s.embedding_dim) != (first.extractor_fingerprint, first.embedding_dim):
            raise ValueError(
                f"cannot merge stores of different models: {first.extractor_fingerprint[:12]} "
                f"({first.embedding_dim}-d) and {s.extractor_fingerprint[:12]} ({s.embedding_dim}-d)"
            )
    out: StoreData | None = None
    for s in stores:
        if out is not None and rename_conflicts:
            s = _renamed(s, set(out.labels))
        out = s if out is None else merge_stores(None, s, out)
    return out


def _renamed(s: StoreData, taken: set[str]) -> StoreData:
    labels = []
    for lab in s.labels:
        new, k = lab, 2
        while new in taken or new in labels:
            new, k = f"{lab} ({k})", k + 1
        labels.append(new)
    renamed = dict(zip(s.labels, labels))
    return StoreData(tuple(labels), s.sums, s.counts, s.scale, s.extractor_fingerprint, s.templates_per_class,
                     s.shots, s.shot_class, {renamed[k]: v for k, v in s.digests.items()})


def subset(data: StoreData, labels: list[str]) -> StoreData:
    """The classes `labels` of a store (with their shots), e.g. to send one class to another device."""
    missing = [lab for lab in labels if lab not in data.labels]
    if missing:
        raise ValueError(f"no class named {missing[0]!r} in the store; classes: {', '.join(data.labels[:10])}")
    idx = [data.labels.index(lab) for lab in labels]
    shots = shot_class = None
    if data.shots is not None:
        keep = np.isin(data.shot_class, idx)
        remap = {old: new for new, old in enumerate(idx)}
        shots = data.shots[keep]
        shot_class = np.asarray([remap[int(c)] for c in data.shot_class[keep]], np.int64)
    return StoreData(tuple(labels), data.sums[idx], data.counts[idx], data.scale, data.extractor_fingerprint,
                     data.templates_per_class, shots, shot_class,
                     {k: v for k, v in data.digests.items() if k in labels})
