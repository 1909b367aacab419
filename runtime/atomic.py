"""Atomic file replacement: a crash at any point leaves either the old or the new file, never a mix.

Temp file in the same directory, fsync, rename, fsync of the directory; temp files that killed writers left
behind are cleaned up by later saves.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it


# A save takes milliseconds; a temp file this old was left by a writer that was killed mid-save.
_STALE_TEMP_S = 600


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files of earlier saves of `name` that a killed writer left (they fill an SD card)."""
    now = time.time()
    for p in directory.glob(f".{name}.*.tmp"):
        try:
            if now - p.stat().st_mtime > _STALE_TEMP_S:
                p.unlink()
        except OSError:
            pass  # another process removed it, or it is not ours to remove


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any point leaves either the old or the new file."""
    atomic_write(Path(path), lambda f: f.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `path` with what `write(f)` writes to a binary file object, atomically."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"cannot save {path}: directory {directory} does not exist")
    _remove_stale_temps(directory, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would (or the old file's).
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Never leave a half-written temp file behind; the target is untouched until os.replace.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems cannot open directories; the rename is still atomic
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
