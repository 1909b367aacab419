"""The bundle's manifest (`manifest.json`) as dataclasses, and the bundle's file layout.

Format (version 1), documented in docs/formats.md:

    manifest.json
        format: "imprinting-bundle", format_version: 1
        name, embedding_dim, scale, fingerprint (the embedding space: shared by every file exported from
        the same trained weights), preprocess (PreprocessSpec), extractors (list of ExtractorEntry),
        base_classes (file name of a class store, or null), base_exemplars (file name of the base classes'
        exemplar embeddings for refinement, see exemplars.py, or null), shot_offsets (shot-aware calibration,
        {"1": 0.07, ...}, see shot_offsets.py; empty for none), calibration (int8 calibration notes),
        source, versions (free-form), host (the CPU the files were checked on: arch, features,
        int8_kernels), rejected (files that failed their parity check and were left out, with the figure),
        probes (optional, see ProbeSet and probes.py: inputs and PyTorch fp32 embeddings for the device's
        self-check; absent in bundles made before it existed)
    extractor_fp32.onnx, extractor_int8.onnx, extractor_fp32.tflite, extractor_int8.tflite
    base_classes.npz    (class-store format, see store.py)
    base_exemplars.npz  (see exemplars.py)
    probes.npz          (see probes.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exemplars import EXEMPLARS_FILE
from .manifest_fields import field_of as _field
from .manifest_fields import shot_offsets_of as _shot_offsets
from .preprocess import PreprocessSpec
from .shot_offsets import ShotOffsets

BUNDLE_FORMAT = "imprinting-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# The one list of extractor formats and precisions (the export, the CLIs and the manifest checks use it).
# FORMATS run on any CPU and `imprint export` writes them; NPU_FORMATS run on one vendor's NPU only and are
# added to a bundle by their own command (`imprint export-rknn`).
FORMATS = ("onnx", "tflite")
NPU_FORMATS = ("rknn",)
PRECISIONS = ("fp32", "int8")
# The bundle's file layout, owned here for the runtime and the export alike:
# (format, precision) -> (extractor file name, input layout).
EXTRACTOR_FILES: dict[tuple[str, str], tuple[str, str]] = {
    ("onnx", "fp32"): ("extractor_fp32.onnx", "NCHW"),
    ("onnx", "int8"): ("extractor_int8.onnx", "NCHW"),
    ("tflite", "fp32"): ("extractor_fp32.tflite", "NHWC"),
    ("tflite", "int8"): ("extractor_int8.tflite", "NHWC"),
}
NPU_FILES: dict[tuple[str, str], tuple[str, str]] = {
    ("rknn", "int8"): ("extractor_int8.rknn", "NCHW"),  # Rockchip RK3588/RK3566/...: see docs/npu.md
}
BASE_CLASSES_FILE = "base_classes.npz"
PROBES_FILE = "probes.npz"
BUNDLE_FILES = frozenset({MANIFEST, BASE_CLASSES_FILE, EXEMPLARS_FILE, PROBES_FILE,
                          *(name for name, _ in (*EXTRACTOR_FILES.values(), *NPU_FILES.values()))})
# The self-check's bar per precision when a bundle does not name one: the export's parity thresholds.
DEFAULT_PROBE_THRESHOLDS = {"fp32": 0.999, "int8": 0.99}


@dataclass(frozen=True)
class ExtractorEntry:
    """One extractor file of a bundle.

    `layout` is the input layout ("NCHW" or "NHWC"); `normalized` says whether the graph already
    L2-normalizes its output (the runtime normalizes in NumPy either way); `sha256` guards the file;
    `parity_cosine` is the mean cosine against PyTorch fp32 measured at export; `latency_ms` its batch-1
    single-thread latency on the manifest's host, when the export measured it; `target` the NPU an NPU
    file was built for (e.g. "rk3588"; None for CPU files).
    """

    file: str
    format: str
    precision: str
    layout: str = "NCHW"
    sha256: str = ""
    normalized: bool = True
    parity_cosine: float | None = None
    latency_ms: float | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS + NPU_FORMATS:
            raise ValueError(f"extractor format must be one of {list(FORMATS + NPU_FORMATS)}, got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"extractor precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"extractor layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        if Path(self.file).name != self.file:
            raise ValueError(f"extractor file must be a plain file name inside the bundle, got {self.file!r}")


@dataclass(frozen=True)
class ProbeSet:
    """The probes a bundle carries for the device's self-check: `file` (probes.npz: `count` uint8 crops at
    input size and their PyTorch fp32 embeddings), its `sha256`, and the minimum mean cosine per precision
    ({"fp32": 0.999, "int8": 0.99}) a file must reach on them."""

    file: str = PROBES_FILE
    count: int = 0
    sha256: str = ""
    thresholds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PROBE_THRESHOLDS))

    def __post_init__(self) -> None:
        if Path(self.file).name != self.file:
            raise ValueError(f"probes must be a plain file name inside the bundle, got {self.file!r}")
        if self.count < 1:
            raise ValueError(f"a probe set needs at least one probe, got count {self.count}")
        for precision, value in self.thresholds.items():
            if precision not in PRECISIONS or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"probe thresholds map {list(PRECISIONS)} to minimum mean cosines, got "
                                 f"{precision!r}: {value!r}")

    def threshold(self, precision: str) -> float:
        return float(self.thresholds.get(precision, DEFAULT_PROBE_THRESHOLDS[precision]))

    @classmethod
    def from_dict(cls, d: Any) -> "ProbeSet | None":
        if d is None:
            return None
        if not isinstance(d, dict):
            raise ValueError(f"bundle manifest: probes must be an object, got {type(d).__name__}")
        return cls(file=_field(d, "file", str), count=_field(d, "count", int), sha256=_field(d, "sha256", str, ""),
                   thresholds=dict(_field(d, "thresholds", dict, DEFAULT_PROBE_THRESHOLDS)))


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
    probes: ProbeSet | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.embedding_dim <= 65536:
            raise ValueError(f"embedding_dim must be in [1, 65536], got {self.embedding_dim}")
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

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": BUNDLE_FORMAT,
            "format_version": self.format_version,
            "name": self.name,
            "embedding_dim": self.embedding_dim,
            "scale": self.scale,
            "fingerprint": self.fingerprint,
            "preprocess": self.preprocess.to_dict(),
            # `target` only where set: CPU files' entries stay as older readers know them.
            "extractors": [{k: v for k, v in vars(e).items() if k != "target" or v is not None}
                           for e in self.extractors],
            "base_classes": self.base_classes,
            "base_exemplars": self.base_exemplars,
            "shot_offsets": self.shot_offsets.to_mapping() if self.shot_offsets else {},
            "calibration": self.calibration,
            "source": self.source,
            "versions": self.versions,
            "host": self.host,
            "rejected": list(self.rejected),
        }
        if self.probes is not None:  # absent, not null, so that older readers see the manifest they know
            d["probes"] = vars(self.probes).copy()
        return d

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
                probes=ProbeSet.from_dict(d.get("probes")),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"bundle manifest is missing or has a malformed field: {err}") from None

    def candidates(self, format: str | None = None, precision: str | None = None) -> tuple[ExtractorEntry, ...]:
        """The files matching format/precision (None: any), best first: NPU files first (they open only where
        their NPU runtime is installed, selfcheck.py skips them elsewhere); then the CPU files, fastest first
        when the export timed them all on a CPU with this machine's int8 kernels (see host.py), else int8
        before fp32, ONNX before TFLite. The runtime opens the first one that passes its self-check."""
        from .host import host_info

        matching = [e for e in self.extractors
                    if (format is None or e.format == format) and (precision is None or e.precision == precision)]
        if not matching:
            have = ", ".join(f"{e.format}/{e.precision}" for e in self.extractors)
            raise ValueError(f"bundle {self.name!r} has no {format or 'any'}/{precision or 'any'} extractor; it has: {have}")
        rank = {"int8": 0, "fp32": 1}
        npu = [e for e in matching if e.format in NPU_FORMATS]
        cpu = sorted((e for e in matching if e.format not in NPU_FORMATS),
                     key=lambda e: (rank[e.precision], e.format != "onnx"))
        if all(e.latency_ms is not None for e in cpu) and self.host.get("int8_kernels") == host_info()["int8_kernels"]:
            cpu.sort(key=lambda e: e.latency_ms)
        return tuple(npu + cpu)

    def select(self, format: str | None = None, precision: str | None = None) -> ExtractorEntry:
        """The extractor entry to run before any self-check: the first of candidates(format, precision)."""
        return self.candidates(format, precision)[0]


def _entry(e: Any) -> ExtractorEntry:
    if not isinstance(e, dict):
        raise ValueError(f"bundle manifest: each extractor must be an object, got {type(e).__name__}")
    unknown = sorted(set(e) - set(ExtractorEntry.__dataclass_fields__))
    if unknown:
        raise ValueError(f"bundle manifest: unknown extractor field(s) {unknown}; is the bundle from a newer imprinting?")
    for key in ("file", "format", "precision", "layout", "sha256"):
        if key in e and not isinstance(e[key], str):
            raise ValueError(f"bundle manifest: extractor field {key!r} must be a string")
    if e.get("target") is not None and not isinstance(e["target"], str):
        raise ValueError("bundle manifest: extractor field 'target' must be a string")
    for key in ("parity_cosine", "latency_ms"):
        if e.get(key) is not None and (isinstance(e[key], bool) or not isinstance(e[key], (int, float))):
            raise ValueError(f"bundle manifest: extractor field {key!r} must be a number")
    return ExtractorEntry(**e)
