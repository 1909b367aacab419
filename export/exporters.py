"""`export_bundle`: turn a PyTorch extractor (and optional base classes) into a verified model bundle.

Each (format, precision) is one row of `FORMATS`; every file is checked against PyTorch fp32 on held-out
images through the runtime's own loader before it enters the manifest. A file that fails is left out and
recorded in the manifest's `rejected` list with its figure; the export fails only when no file passed, or
on any failure with `strict` (for release pipelines).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imprinting.runtime.bundle import MANIFEST, ExtractorEntry, Manifest, file_sha256, write_manifest
from imprinting.runtime.host import host_info
from imprinting.runtime.preprocess import PreprocessSpec, preprocess
from imprinting.runtime.shot_offsets import ShotOffsets

from .bundle_writer import BASE_CLASSES_FILE, library_versions, write_base_classes
from .calibration import default_image_sets
from .model import CosineClassifier, ImprintExtractor, state_fingerprint
from .parity import ParityReport, ParityThresholds, check_parity, measure_latency

log = logging.getLogger(__name__)

# (format, precision) -> (file name, input layout). Kept as data so the CLI lists and validates from it.
FORMATS: dict[tuple[str, str], tuple[str, str]] = {
    ("onnx", "fp32"): ("extractor_fp32.onnx", "NCHW"),
    ("onnx", "int8"): ("extractor_int8.onnx", "NCHW"),
    ("tflite", "fp32"): ("extractor_fp32.tflite", "NHWC"),
    ("tflite", "int8"): ("extractor_int8.tflite", "NHWC"),
}
FORMAT_NAMES = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
DEFAULT_SCALE = 10.0  # softmax temperature for a plain pretrained extractor, which has no learned s


class ParityError(RuntimeError):
    """An exported file does not reproduce the PyTorch model closely enough."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how to check it.

    calib_count: int8 calibration images (100-300). parity_count: held-out images for the parity check.
    calib_dir: a folder of the user's own photos for both (recommended; otherwise scikit-image's samples).
    float_prefix_convs: leading convolutions kept in float in int8 files (the stem and first block of
    Lite0 lose the most to int8: ONNX mean cosine 0.988 all-int8, 0.996 with 3 float convs).
    strict: any file that fails its parity check fails the export (default: it is left out and recorded).
    quantize_embedding: int8 files quantize the embedding layer too (else it stays fp32: D x 1280 x 4 bytes).
    latency_runs: if > 0, time each file single-threaded at batch 1 (median of this many runs).
    """

    formats: tuple[str, ...] = FORMAT_NAMES
    precisions: tuple[str, ...] = PRECISIONS
    calib_count: int = 200
    parity_count: int = 48
    calib_dir: str | None = None
    float_prefix_convs: int = 3
    quantize_embedding: bool = True
    strict: bool = False
    thresholds: ParityThresholds = ParityThresholds()
    preprocess: PreprocessSpec = PreprocessSpec()
    name: str = "imprinting-efficientnet_lite0"
    seed: int = 0
    latency_runs: int = 0

    def __post_init__(self) -> None:
        for value, known, what in ((self.formats, FORMAT_NAMES, "format"), (self.precisions, PRECISIONS, "precision")):
            if not value:
                raise ValueError(f"choose at least one {what} from {list(known)}")
            for v in value:
                if v not in known:
                    import difflib

                    near = difflib.get_close_matches(v, known, n=1)
                    hint = f"; did you mean {near[0]!r}?" if near else ""
                    raise ValueError(f"unknown {what} {v!r}; choose from {list(known)}{hint}")
        if "int8" in self.precisions and not 1 <= self.calib_count <= 10000:
            raise ValueError(f"calib_count must be in [1, 10000] (100-300 recommended), got {self.calib_count}")
        if self.parity_count < 1:
            raise ValueError(f"parity_count must be >= 1, got {self.parity_count}")
        if self.float_prefix_convs < 0:
            raise ValueError(f"float_prefix_convs must be >= 0, got {self.float_prefix_convs}")

    def jobs(self) -> list[tuple[str, str]]:
        return [(f, p) for f in self.formats for p in self.precisions]


@dataclass(frozen=True)
class FileReport:
    """One exported file: its size in bytes, parity, and batch-1 single-thread latency (ms) if measured."""

    file: str
    format: str
    precision: str
    size_bytes: int
    parity: ParityReport
    latency_ms: float | None = None


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest
    files: tuple[FileReport, ...] = field(default_factory=tuple)
    rejected: tuple[FileReport, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class BaseClasses:
    """Trained base classes: labels (K,), the classifier (unit rows via unit_weight()), counts (K,) and the
    shot-aware calibration chosen for them at training time (None: none)."""

    labels: tuple[str, ...]
    classifier: CosineClassifier
    counts: tuple[int, ...]
    shot_offsets: ShotOffsets | None = None


def _parity_advice(path: Path, rep: ParityReport, fmt: str, precision: str) -> str:
    """One line: which file failed, by how much, and what helps."""
    advice = ("export int8 ONNX from this version (pair-safe weights), or keep the fp32 file"
              if (fmt, precision) == ("onnx", "int8") else
              "pass --calib-dir with 100-300 photos like the ones you will recognize, or keep the fp32 file"
              if precision == "int8" else "report it: an fp32 file should match PyTorch")
    return f"{path.name} failed its parity check against PyTorch fp32: {rep.message} (on {host_info()['int8_kernels']}); next: {advice}."


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the bundle")
    if out.is_dir():
        ours = {MANIFEST, BASE_CLASSES_FILE, *(name for name, _ in FORMATS.values())}
        foreign = sorted(p.name for p in out.iterdir() if p.name not in ours)
        if foreign:
            raise ValueError(
                f"--out {out} holds files that are not part of a bundle ({', '.join(foreign[:3])}); "
                "choose a new or empty directory"
            )
        # Replace an older bundle wholesale: its manifest must not describe files that are about to change,
        # and files of formats not exported this time must not linger.
        for p in out.iterdir():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def export_bundle(
    model: ImprintExtractor,
    out_dir: str | os.PathLike[str],
    options: ExportOptions = ExportOptions(),
    base: BaseClasses | None = None,
    source: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `model` to `out_dir` in every requested format and precision, verify each file, then write
    the base classes (if any) and manifest.json. Raises ParityError if a file fails its check."""
    from ._onnx import export_onnx_fp32, quantize_onnx_int8
    from ._tflite import convert_tflite_fp32, quantize_tflite_int8

    step = progress or (lambda msg: log.info("%s", msg))
    if base is not None and tuple(base.classifier.weight.shape) != (len(base.labels), model.embedding_dim):
        raise ValueError(
            f"base classifier is {tuple(base.classifier.weight.shape)} but {len(base.labels)} labels and a "
            f"{model.embedding_dim}-d extractor need ({len(base.labels)}, {model.embedding_dim})"
        )
    if base is not None and len(base.counts) != len(base.labels):
        raise ValueError(f"{len(base.labels)} base labels but {len(base.counts)} counts")
    out = Path(out_dir)
    _prepare_out_dir(out)
    model = model.eval()
    spec = options.preprocess
    fingerprint = state_fingerprint(model)

    step("preparing calibration and parity images")
    calib_images, parity_images = default_image_sets(
        options.calib_count if "int8" in options.precisions else 1, options.parity_count, options.calib_dir, options.seed
    )
    parity_nchw = preprocess(parity_images, spec, "NCHW")
    with torch.no_grad():
        reference = torch.cat([model(torch.from_numpy(b)) for b in np.array_split(parity_nchw, max(1, len(parity_nchw) // 16))]).numpy()
    calib_nchw = preprocess(calib_images, spec, "NCHW") if "int8" in options.precisions else None
    base_w = base.classifier.unit_weight().detach().numpy() if base is not None else None

    reports: list[FileReport] = []
    rejected: list[FileReport] = []
    entries: list[ExtractorEntry] = []
    recipe: dict = {}
    with tempfile.TemporaryDirectory(prefix="imprint-export-") as tmp:
        for fmt in options.formats:
            fp32_name = FORMATS[(fmt, "fp32")][0]
            # int8 files are quantized from the fp32 file of the same format; keep it only if asked for.
            fp32_path = (out if "fp32" in options.precisions else Path(tmp)) / fp32_name
            step(f"{fmt} fp32: converting")
            if fmt == "onnx":
                export_onnx_fp32(model, fp32_path, spec.input_size)
            else:
                convert_tflite_fp32(model, fp32_path, spec.input_size)
            for precision in options.precisions:
                name, layout = FORMATS[(fmt, precision)]
                path = out / name
                inputs = parity_nchw if layout == "NCHW" else np.ascontiguousarray(parity_nchw.transpose(0, 2, 3, 1))
                if precision == "int8":
                    step(f"{fmt} int8: calibrating on {len(calib_nchw)} images and quantizing")
                    calib = calib_nchw if layout == "NCHW" else np.ascontiguousarray(calib_nchw.transpose(0, 2, 3, 1))
                    if fmt == "onnx":
                        rep8 = quantize_onnx_int8(fp32_path, path, calib, options.float_prefix_convs,
                                                  options.quantize_embedding)
                        recipe["onnx_int8"] = {"weights": "per-channel int8, pair-safe for u8s8 kernels",
                                               "rescaled_channels": rep8.rescaled_channels}
                    else:
                        quantize_tflite_int8(fp32_path, path, calib, options.float_prefix_convs, options.quantize_embedding)
                step(f"{fmt} {precision}: checking parity on {len(inputs)} held-out images")
                rep = check_parity(path, precision, inputs, reference, options.thresholds, base_w)
                if not rep.passed:
                    report = FileReport(name, fmt, precision, path.stat().st_size, rep)
                    if options.strict:
                        raise ParityError(_parity_advice(path, rep, fmt, precision) + " The file is left for inspection "
                                          "and no manifest was written.")
                    log.warning("%s", _parity_advice(path, rep, fmt, precision) + " It is left out of the bundle.")
                    path.unlink()
                    rejected.append(report)
                    continue
                latency = None
                if options.latency_runs > 0:
                    step(f"{fmt} {precision}: timing {options.latency_runs} runs")
                    latency = measure_latency(path, inputs[:1], runs=options.latency_runs)
                reports.append(FileReport(name, fmt, precision, path.stat().st_size, rep, latency))
                entries.append(
                    ExtractorEntry(
                        file=name, format=fmt, precision=precision, layout=layout, sha256=file_sha256(path),
                        normalized=True, parity_cosine=round(rep.mean_cosine, 6),
                        latency_ms=round(latency, 3) if latency is not None else None,
                    )
                )
    if not entries:
        raise ParityError(
            "every exported file failed its parity check against PyTorch fp32 ("
            + "; ".join(f"{r.file}: {r.parity.message}" for r in rejected)
            + "); no manifest was written. Next: "
            + ("pass --calib-dir with 100-300 photos like the ones you will recognize, or export fp32 too"
               if all(r.precision == "int8" for r in rejected) else
               "an fp32 file must reproduce PyTorch: check the model's export (run with -v for details)")
        )

    base_file, scale = None, DEFAULT_SCALE
    if base is not None:
        scale = float(base.classifier.scale.detach())
        base_file = write_base_classes(out, base.labels, base_w, np.asarray(base.counts), scale, fingerprint)
    manifest = Manifest(
        name=options.name,
        embedding_dim=model.embedding_dim,
        scale=scale,
        fingerprint=fingerprint,
        preprocess=spec,
        extractors=tuple(entries),
        base_classes=base_file,
        shot_offsets=base.shot_offsets if base is not None else None,
        calibration={
            "images": len(calib_images) if calib_nchw is not None else 0,
            "parity_images": len(parity_images),
            "source": str(options.calib_dir) if options.calib_dir else "scikit-image sample photos + random views",
            "method": "minmax",
            **recipe,
            "float_prefix_convs": options.float_prefix_convs,
            "quantize_embedding": options.quantize_embedding,
            "seed": options.seed,
        },
        source={"backbone": model.config.backbone, "embedding_dim": model.config.embedding_dim, **(source or {})},
        versions=library_versions(),
        host=host_info(),
        rejected=tuple(
            {"file": r.file, "format": r.format, "precision": r.precision, "parity_cosine": round(r.parity.mean_cosine, 6),
             "reason": r.parity.message} for r in rejected
        ),
    )
    write_manifest(out, manifest)
    step(f"wrote {out / MANIFEST}")
    return ExportResult(out, manifest, tuple(reports), tuple(rejected))
