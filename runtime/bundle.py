"""The model bundle: a directory holding `manifest.json`, extractor files and (optionally) base classes.

Format (version 1), documented in docs/formats.md:

    manifest.json
        format: "imprinting-bundle", format_version: 1
        name, embedding_dim, scale, fingerprint (the embedding space: shared by every file exported from
        the same trained weights), preprocess (PreprocessSpec), extractors (list of ExtractorEntry),
        base_classes (file name of a class store, or null), base_exemplars (file name of the base classes'
        exemplar embeddings for refinement, see exemplars.py, or null), shot_offsets (shot-aware calibration,
        {"1": 0.07, ...}, see shot_offsets.py; empty for none), calibration (int8 calibration notes),
        source, versions (free-form), host (the CPU the files were checked on: arch, features,
        int8_kernels), rejected (files that failed their parity check and were left out, with the figure)
    extractor_fp32.onnx, extractor_int8.onnx, extractor_fp32.tflite, extractor_int8.tflite, ...
    base_classes.npz    (class-store format, see store.py)
    base_exemplars.npz  (see exemplars.py)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .preprocess import PreprocessSpec
from .manifest_fields import field_of as _field
from .manifest_fields import shot_offsets_of as _shot_offsets
from .shot_offsets import ShotOffsets

if TYPE_CHECKING:
    import numpy as np

    from .extractor import Extractor, ExtractorOptions
    from .store import StoreData

BUNDLE_FORMAT = "imprinting-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 20
# The one list of extractor formats and precisions (the export, the CLIs and the manifest checks use it).
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class ExtractorEntry:
    """One extractor file of a bundle.

    `layout` is the input layout ("NCHW" or "NHWC"); `normalized` says whether the graph already
    L2-normalizes its output (the runtime normalizes in NumPy either way); `sha256` guards the file;
    `parity_cosine` is the mean cosine against PyTorch fp32 measured at export; `latency_ms` its batch-1
    single-thread latency on the manifest's host, when the export measured it.
    """

    file: str
    format: str
    precision: str
    layout: str = "NCHW"
    sha256: str = ""
    normalized: bool = True
    parity_cosine: float | None = None
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"extractor format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"extractor precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"extractor layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if Path(self.file).name != self.file:
            raise ValueError(f"extractor file must be a plain file name inside the bundle, got {self.file!r}")


@dataclass(frozen=True)
class Manifest:
    """The parsed `manifest.json` of a bundle."""

    name: str
    embedding_dim: int
    scale: float
    fingerprint: str
    preprocess: PreprocessSpec
    extractors: tuple[ExtractorEntry, ...]
    base_classes: str | None = None
    base_exemplars: str | None = None
    shot_offsets: ShotOffsets | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    rejected: tuple[dict[str, Any], ...] = ()
    format_version: int = BUNDLE_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {self.embedding_dim}")
        if not 0 < self.scale <= 1000:
            raise ValueError(f"scale must be in (0, 1000] (a softmax temperature; Lite0 learns about 10), got {self.scale}")
        if not self.fingerprint:
            raise ValueError("fingerprint must be a non-empty string")
        if not self.extractors:
            raise ValueError("a bundle needs at least one extractor file")
        if self.base_classes is not None and Path(self.base_classes).name != self.base_classes:
            raise ValueError(f"base_classes must be a plain file name inside the bundle, got {self.base_classes!r}")
        if self.base_exemplars is not None and (self.base_classes is None
                                                or Path(self.base_exemplars).name != self.base_exemplars):
            raise ValueError(f"base_exemplars must be a plain file name inside the bundle, beside base_classes, got "
                             f"{self.base_exemplars!r}")
        if not 1 <= self.embedding_dim <= 65536:
            raise ValueError(f"embedding_dim must be in [1, 65536], got {self.embedding_dim}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "name": self.name,
            "embedding_dim": self.embedding_dim,
            "scale": self.scale,
            "fingerprint": self.fingerprint,
            "preprocess": self.preprocess.to_dict(),
            "extractors": [vars(e).copy() for e in self.extractors],
            "base_classes": self.base_classes,
            "base_exemplars": self.base_exemplars,
            "shot_offsets": self.shot_offsets.to_mapping() if self.shot_offsets else {},
            "calibration": self.calibration,
            "source": self.source,
            "versions": self.versions,
            "host": self.host,
            "rejected": list(self.rejected),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        if d.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"not an imprinting bundle manifest (format is {d.get('format')!r})")
        version = d.get("format_version")
        if version != BUNDLE_FORMAT_VERSION:
            raise ValueError(
                f"bundle format version {version} is not supported by this runtime "
                f"(it reads version {BUNDLE_FORMAT_VERSION}); upgrade imprinting or re-export the bundle"
            )
        try:
            return cls(
                name=_field(d, "name", str),
                embedding_dim=_field(d, "embedding_dim", int),
                scale=float(_field(d, "scale", (int, float))),
                fingerprint=_field(d, "fingerprint", str),
                preprocess=PreprocessSpec.from_dict(_field(d, "preprocess", dict)),
                extractors=tuple(_entry(e) for e in _field(d, "extractors", list)),
                base_classes=_field(d, "base_classes", str, None),
                base_exemplars=_field(d, "base_exemplars", str, None),
                shot_offsets=_shot_offsets(d.get("shot_offsets")),
                calibration=_field(d, "calibration", dict, {}),
                source=_field(d, "source", dict, {}),
                versions=_field(d, "versions", dict, {}),
                host=_field(d, "host", dict, {}),
                rejected=tuple(_field(d, "rejected", list, [])),
                format_version=version,
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"bundle manifest is missing or has a malformed field: {err}") from None

    def select(self, format: str | None = None, precision: str | None = None) -> ExtractorEntry:
        """The extractor entry to run. Unless asked: the fastest file when the export timed them on a CPU with
        this machine's int8 kernels (see host.py), else int8 before fp32, ONNX before TFLite."""
        from .host import host_info

        order = {"int8": 0, "fp32": 1}
        candidates = [
            e
            for e in self.extractors
            if (format is None or e.format == format) and (precision is None or e.precision == precision)
        ]
        if not candidates:
            have = ", ".join(f"{e.format}/{e.precision}" for e in self.extractors)
            raise ValueError(f"bundle {self.name!r} has no {format or 'any'}/{precision or 'any'} extractor; it has: {have}")
        timed = [e for e in candidates if e.latency_ms is not None]
        if len(timed) == len(candidates) and self.host.get("int8_kernels") == host_info()["int8_kernels"]:
            return min(timed, key=lambda e: e.latency_ms)
        return min(candidates, key=lambda e: (order[e.precision], e.format != "onnx"))


def _entry(e: Any) -> "ExtractorEntry":
    if not isinstance(e, dict):
        raise ValueError(f"bundle manifest: each extractor must be an object, got {type(e).__name__}")
    for key in ("file", "format", "precision", "layout", "sha256"):
        if key in e and not isinstance(e[key], str):
            raise ValueError(f"bundle manifest: extractor field {key!r} must be a string")
    for key in ("parity_cosine", "latency_ms"):
        if e.get(key) is not None and (isinstance(e[key], bool) or not isinstance(e[key], (int, float))):
            raise ValueError(f"bundle manifest: extractor field {key!r} must be a number")
    return ExtractorEntry(**e)


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
        """Load the chosen extractor file (int8 ONNX first by default), checked against the manifest."""
        from .extractor import ExtractorOptions, load_extractor

        entry = self.manifest.select(format, precision)
        ex = load_extractor(verify_file(self.path, entry), options or ExtractorOptions())
        if ex.embedding_dim != self.manifest.embedding_dim:
            raise ValueError(
                f"bundle {self.path}: {entry.file} outputs {ex.embedding_dim}-d embeddings but the manifest "
                f"says {self.manifest.embedding_dim}; re-export the bundle"
            )
        if ex.input_size != self.manifest.preprocess.input_size or ex.layout != entry.layout:
            raise ValueError(
                f"bundle {self.path}: {entry.file} takes {ex.layout} {ex.input_size}px input but the manifest "
                f"says {entry.layout} {self.manifest.preprocess.input_size}px; re-export the bundle"
            )
        return ex

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
