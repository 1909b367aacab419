"""The model bundle: a directory holding `manifest.json`, extractor files, probes and (optionally) base classes.

The manifest's dataclasses and the file layout live in manifest.py (re-exported here); this module reads and
writes a bundle on disk and opens its extractor files, each checked on its probes first (selfcheck.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .manifest import (BASE_CLASSES_FILE, BUNDLE_FILES, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, EXTRACTOR_FILES,
                       FORMATS, MANIFEST, PRECISIONS, PROBES_FILE, ExtractorEntry, Manifest, ProbeSet)

if TYPE_CHECKING:
    import numpy as np

    from .extractor import Extractor, ExtractorOptions
    from .store import StoreData

__all__ = ["BASE_CLASSES_FILE", "BUNDLE_FILES", "BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "EXTRACTOR_FILES", "FORMATS",
           "MANIFEST", "PRECISIONS", "PROBES_FILE", "Bundle", "ExtractorEntry", "Manifest", "ProbeSet", "file_sha256",
           "load_bundle", "read_manifest", "verify_file", "write_manifest"]

_MAX_MANIFEST_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Parse and validate `bundle_dir/manifest.json`; a clear ValueError for anything wrong."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise ValueError(f"bundle {bundle_dir} is not a directory (export one with `imprint export`)")
    if not path.is_file():
        raise ValueError(f"bundle {bundle_dir} has no {MANIFEST}; is it an imprinting bundle?")
    try:
        if path.stat().st_size > _MAX_MANIFEST_BYTES:
            raise ValueError(f"bundle manifest {path} is {path.stat().st_size} bytes; a manifest is a few KB")
        d = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(f"bundle manifest {path} is corrupt: JSON nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"bundle manifest {path} is corrupt: {err}") from None
    if not isinstance(d, dict):
        raise ValueError(f"bundle manifest {path} is not a JSON object")
    return Manifest.from_dict(d)


def write_manifest(bundle_dir: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write `manifest.json` atomically (temp file, fsync, rename). Returns its path."""
    from .atomic import atomic_write_bytes

    path = Path(bundle_dir) / MANIFEST
    data = json.dumps(manifest.to_dict(), indent=2, sort_keys=False).encode("utf-8") + b"\n"
    atomic_write_bytes(path, data)
    return path


def verify_file(bundle_dir: str | os.PathLike[str], entry: ExtractorEntry) -> Path:
    """Path of an extractor file, checked against its sha256 in the manifest."""
    path = Path(bundle_dir) / entry.file
    if not path.is_file():
        raise ValueError(f"bundle {bundle_dir} lists {entry.file} but the file is missing")
    if entry.sha256:
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ValueError(
                f"extractor {path} is damaged or was replaced: sha256 {actual[:12]} differs from the "
                f"manifest's {entry.sha256[:12]}; re-export the bundle"
            )
    return path


@dataclass(frozen=True)
class Bundle:
    """A model bundle on disk: its directory and parsed manifest."""

    path: Path
    manifest: Manifest

    def open_extractor(
        self, format: str | None = None, precision: str | None = None, options: "ExtractorOptions | None" = None
    ) -> "Extractor":
        """Open the best file of `manifest.candidates(format, precision)` that passes its self-check on this
        host (selfcheck.py: probes run once per file, engine, provider and int8 kernel family, then cached).
        A file that fails is logged in one line and the next candidate opened; options.self_check="strict"
        makes it a ValueError. The extractor's `entry` attribute names the file it runs."""
        from .extractor import ExtractorOptions
        from .selfcheck import open_checked

        return open_checked(self, format, precision, options or ExtractorOptions())

    def load_entry(self, entry: ExtractorEntry, options: "ExtractorOptions") -> "Extractor":
        """Load one extractor file, checked against the manifest (sha256, embedding size, input layout)."""
        from .extractor import load_extractor

        ex = load_extractor(verify_file(self.path, entry), options, self.manifest.preprocess.input_size)
        if ex.embedding_dim != self.manifest.embedding_dim:
            ex.close()
            raise ValueError(
                f"bundle {self.path}: {entry.file} outputs {ex.embedding_dim}-d embeddings but the manifest "
                f"says {self.manifest.embedding_dim}; re-export the bundle"
            )
        if ex.input_size != self.manifest.preprocess.input_size or ex.layout != entry.layout:
            ex.close()
            raise ValueError(
                f"bundle {self.path}: {entry.file} takes {ex.layout} {ex.input_size}px input but the manifest "
                f"says {entry.layout} {self.manifest.preprocess.input_size}px; re-export the bundle"
            )
        return ex

    def probes(self) -> "tuple[np.ndarray, np.ndarray] | None":
        """(uint8 crops (N, S, S, 3), PyTorch fp32 embeddings float32 (N, D)) of the bundle's probes, checked
        against the manifest's sha256; None for a bundle made before probes existed."""
        from .probes import read_probes

        p = self.manifest.probes
        if p is None:
            return None
        path = self.path / p.file
        if p.sha256 and path.is_file() and file_sha256(path) != p.sha256:
            raise ValueError(f"probes {path} are damaged or were replaced (sha256 differs from the manifest's); "
                             "re-export the bundle")
        return read_probes(path, self.manifest.preprocess.input_size, self.manifest.embedding_dim)

    def base_classes(self) -> "StoreData | None":
        """The bundle's base classes, or None for a plain pretrained extractor."""
        from .store import read_store

        if not self.manifest.base_classes:
            return None
        return read_store(
            self.path / self.manifest.base_classes,
            expected_fingerprint=self.manifest.fingerprint,
            expected_dim=self.manifest.embedding_dim,
        )

    def base_exemplars(self) -> "tuple[tuple[str, ...], np.ndarray] | None":
        """(labels (M,), unit embeddings float32 (M, D)) of the base classes' exemplars, for refinement;
        None when the bundle carries none."""
        from .exemplars import read_exemplars

        base = self.base_classes()
        if base is None or not self.manifest.base_exemplars:
            return None
        emb, cls = read_exemplars(self.path / self.manifest.base_exemplars, len(base.labels), self.manifest.embedding_dim)
        return tuple(base.labels[int(c)] for c in cls), emb


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Open a bundle directory; ValueError with the reason if it is not a valid bundle."""
    path = Path(path)
    return Bundle(path, read_manifest(path))
