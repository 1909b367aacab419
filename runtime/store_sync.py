"""Several writers, one class store: saves that merge instead of overwriting, and edits under the store's lock.

The camera loop, `imprint learn` and a second `Recognizer` may all save the same file. A plain save is "last
writer wins": whatever the others saved since this writer read the file is lost. `save_merged` takes an
inter-process lock, reads what is on disk now (`theirs`) and writes `theirs + (ours - base)` shot by shot
(merge.three_way), where `base` is what this writer read (or last saved) and `ours` what it holds now. So
classes taught elsewhere survive, a class removed here stays removed unless someone else added shots to it
meanwhile (those stay), and two writers adding the same photo count it once.

A store path that is a symbolic link is read, locked and replaced where it points, so writers that use the
real path and writers that use the link exclude each other and the link stays a link. The lock is an flock
on the real file's folder (which cannot vanish under a writer as a lock file can: deleting `.NAME.lock`
during a save lost an update before), and on `.NAME.lock` beside it for writers of earlier versions.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .classset import ClassSet
from .merge import combine, from_records, records, three_way
from .store import StoreData, read_store, write_store

log = logging.getLogger(__name__)

__all__ = ["combine", "editing", "real_path", "save_merged", "store_lock", "subset"]


def real_path(path: str | os.PathLike[str]) -> Path:
    """Where a store path points (symbolic links followed); its folder must exist."""
    p = Path(os.path.realpath(path))
    if not p.parent.is_dir():
        raise ValueError(f"cannot save {path}: directory {Path(path).parent} does not exist")
    return p


@contextlib.contextmanager
def store_lock(path: Path, blocking: bool = True) -> Iterator[None]:
    """Hold an exclusive inter-process lock for the store at `path` (POSIX; elsewhere a no-op). blocking=False:
    ValueError at once if another writer holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: saves stay atomic, merging is best effort
        yield
        return
    # The store's folder is locked first: it cannot be deleted under a writer the way a lock file can. The
    # lock file beside the store is still taken, for writers of earlier versions that lock only that.
    fds = [os.open(path.parent, os.O_RDONLY)]
    _flock(fds[0], blocking, path)  # closes the fd when it raises
    try:
        fds.append(_lock_file(path.parent / f".{path.name}.lock", blocking))
        yield
    finally:
        for fd in reversed(fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _flock(fd: int, blocking: bool, path: Path) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"class store {path} is being saved by another writer; try again") from None


def _lock_file(lock: Path, blocking: bool) -> int:
    """An fd holding the lock file's lock; a file deleted or replaced while we waited is locked anew."""
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        _flock(fd, blocking, lock)
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                return fd
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def save_merged(path: str | os.PathLike[str], base: StoreData | None, ours: StoreData) -> StoreData:
    """Merge `ours` (read as `base`) with what is on disk now and write the result atomically, under the
    store's lock. Returns what was written, the next save's base."""
    path = real_path(path)
    with store_lock(path):
        theirs = read_store(path) if path.exists() else None
        if theirs is not None and (theirs.extractor_fingerprint, theirs.embedding_dim) != (
                ours.extractor_fingerprint, ours.embedding_dim):
            raise ValueError(f"the store on disk was replaced by one for another model "
                             f"({theirs.extractor_fingerprint[:12]}, {theirs.embedding_dim}-d); not merging into it: "
                             "save to another file")
        if theirs is None or (base is not None and _same(base, theirs)):
            merged = ours  # nobody else wrote: ours as it is (with its refinement, if any)
        else:
            merged = three_way(base, ours, theirs)
            if base is not None:
                added = sorted(set(theirs.labels) - set(base.labels))
                if added:
                    log.info("merged classes saved meanwhile by another writer: %s", added[:10])
        write_store(path, merged)
    return merged


@contextlib.contextmanager
def editing(path: str | os.PathLike[str], create_like: StoreData | None = None) -> Iterator[ClassSet]:
    """Edit a store file in place: read under its lock, yield its ClassSet, write it back if it changed (still
    under the lock, so no other writer's save falls in between). A missing file is an error unless
    create_like gives the model and settings of a new, empty one."""
    path = real_path(path)
    with store_lock(path):
        if path.exists():
            classes = ClassSet.from_store_data(read_store(path))
        elif create_like is not None:
            classes = ClassSet(create_like.embedding_dim, create_like.scale, create_like.extractor_fingerprint,
                               templates_per_class=create_like.templates_per_class)
        else:
            raise ValueError(f"class store {path} does not exist; teach classes first (imprint learn)")
        version = classes.version
        yield classes
        if classes.version != version or not path.exists():
            write_store(path, classes.to_store_data())


def _same(a: StoreData, b: StoreData) -> bool:
    """The same classes, sums, counts and shots, exactly."""
    def eq(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        return x is y if x is None or y is None else bool(np.array_equal(x, y))

    return (a.labels == b.labels and a.extractor_fingerprint == b.extractor_fingerprint and eq(a.sums, b.sums)
            and eq(a.counts, b.counts) and eq(a.shots, b.shots) and eq(a.shot_class, b.shot_class)
            and a.shot_ids == b.shot_ids)


def subset(data: StoreData, labels: list[str]) -> StoreData:
    """The classes `labels` of a store (with their shots), e.g. to send some classes to another device."""
    missing = [lab for lab in labels if lab not in data.labels]
    if missing:
        raise ValueError(f"no class named {missing[0]!r} in the store; classes: {', '.join(data.labels[:10])}")
    by_label = {r.label: r for r in records(data)}
    return from_records([by_label[lab] for lab in dict.fromkeys(labels)], data, data.shots is not None)
