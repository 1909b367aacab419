"""`export_bundle`: turn a PyTorch extractor (and optional base classes) into a verified model bundle.

Each (format, precision) is one row of `FORMATS` (`export_options`). The export runs the steps that
`export_steps(options)` lists: the images, then per format a conversion and per file its quantization,
parity check and timing, then the manifest; a progress bar counts the same list. Every file is checked
against PyTorch fp32 on held-out images through the runtime's own loader before it enters the manifest.
A file that fails is left out and recorded in the manifest's `rejected` list with its figure; the export
fails only when no file passed, or on any failure with `strict` (for release pipelines).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imprinting.quiet import quietly
from imprinting.runtime.bundle import BUNDLE_FILES, MANIFEST, ExtractorEntry, Manifest, file_sha256, write_manifest
from imprinting.runtime.exemplars import EXEMPLARS_FILE, write_exemplars
from imprinting.runtime.host import host_info
from imprinting.runtime.preprocess import preprocess

from .bundle_writer import library_versions, write_base_classes, write_probe_set
from .calibration import default_image_sets
from .export_options import DEFAULT_SCALE, FORMATS, BaseClasses, ExportOptions, ExportResult, FileReport, ParityError
from .model import ImprintExtractor, state_fingerprint
from .parity import ParityReport, check_parity, measure_latency
from .unknown_threshold import threshold_for

# The options and results live in export_options; callers take them from here with export_bundle.
__all__ = ["BaseClasses", "ExportOptions", "ExportResult", "ExportStep", "FileReport", "ParityError", "export_bundle",
           "export_steps"]

log = logging.getLogger(__name__)


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
        foreign = sorted(p.name for p in out.iterdir() if p.name not in BUNDLE_FILES)
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


# The steps that make and check one file, by precision: an int8 file is quantized from its format's fp32
# file, which every format converts first (kept in the bundle only when fp32 is asked for). Timing runs
# when options.latency_runs > 0 and is skipped for a file that failed its check.
_FILE_STEPS: dict[str, tuple[str, ...]] = {"fp32": ("check", "time"), "int8": ("quantize", "check", "time")}


@dataclass(frozen=True)
class ExportStep:
    """One step of an export: `action` ("images", "unknown", "convert", "quantize", "check", "time", "manifest") on the
    file of (format, precision); export_bundle reports each through progress() as it starts it."""

    action: str
    format: str = ""
    precision: str = ""


def export_steps(options: ExportOptions) -> tuple[ExportStep, ...]:
    """Every step export_bundle runs for `options`, in order (the CLI's progress bar counts them)."""
    steps = [ExportStep("images"), ExportStep("unknown")]
    for fmt in options.formats:
        steps.append(ExportStep("convert", fmt, "fp32"))
        for precision in options.precisions:
            steps += [ExportStep(action, fmt, precision) for action in _FILE_STEPS[precision]
                      if action != "time" or options.latency_runs > 0]
    return (*steps, ExportStep("manifest"))


# Each format's converters, imported on use (each pulls in heavy dependencies): the fp32 file from
# PyTorch, and the int8 file from that fp32 file and calibration inputs, which returns the quantization
# recipe for the manifest (or None). A new format is a row here and in FORMATS.
def _onnx_fp32(model: ImprintExtractor, path: Path, input_size: int) -> None:
    from ._onnx import export_onnx_fp32

    export_onnx_fp32(model, path, input_size)


def _onnx_int8(fp32_path: Path, path: Path, calib: np.ndarray, options: ExportOptions) -> dict | None:
    from ._onnx import quantize_onnx_int8

    rep = quantize_onnx_int8(fp32_path, path, calib, options.float_prefix_convs, options.quantize_embedding)
    return {"weights": "per-channel int8, pair-safe for u8s8 kernels", "rescaled_channels": rep.rescaled_channels}


def _tflite_fp32(model: ImprintExtractor, path: Path, input_size: int) -> None:
    from ._tflite import convert_tflite_fp32

    quietly(lambda: convert_tflite_fp32(model, path, input_size))  # absl/oneDNN notices on fd 2 (-v shows them)


def _tflite_int8(fp32_path: Path, path: Path, calib: np.ndarray, options: ExportOptions) -> dict | None:
    from ._tflite import quantize_tflite_int8

    quietly(lambda: quantize_tflite_int8(fp32_path, path, calib, options.float_prefix_convs, options.quantize_embedding))
    return None


_CONVERTERS = {"onnx": (_onnx_fp32, _onnx_int8), "tflite": (_tflite_fp32, _tflite_int8)}


def _in_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """NCHW inputs (N, 3, S, S) in a file's layout."""
    return x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


class _Export:
    """One export in progress: what its steps share and what they produce. Each step is the method named by
    its action and reports itself through `say` before it starts."""

    def __init__(self, model: ImprintExtractor, out: Path, tmp: Path, options: ExportOptions,
                 base: BaseClasses | None, source: dict | None, say: Callable[[str], None]) -> None:
        self.model, self.out, self.tmp, self.options, self.base, self.source, self.say = (
            model, out, tmp, options, base, source, say)
        self.passed: dict[tuple[str, str], FileReport] = {}
        self.rejected: list[FileReport] = []
        self.recipe: dict = {}

    def _path(self, fmt: str, precision: str) -> Path:
        # An int8-only export still needs the fp32 file to quantize from: it goes to the temporary directory.
        shipped = precision in self.options.precisions
        return (self.out if shipped else self.tmp) / FORMATS[(fmt, precision)][0]

    def images(self, _: ExportStep) -> None:
        opt = self.options
        self.say("preparing calibration and parity images")
        int8 = "int8" in opt.precisions
        self.calib_images, self.parity_images = default_image_sets(opt.calib_count if int8 else 1, opt.parity_count,
                                                                   opt.calib_dir, opt.seed)
        self.parity_nchw = preprocess(self.parity_images, opt.preprocess, "NCHW")
        with torch.no_grad():
            chunks = np.array_split(self.parity_nchw, max(1, len(self.parity_nchw) // 16))
            self.reference = torch.cat([self.model(torch.from_numpy(b)) for b in chunks]).numpy()
        self.calib_nchw = preprocess(self.calib_images, opt.preprocess, "NCHW") if int8 else None
        self.base_w = self.base.classifier.unit_weight().detach().numpy() if self.base is not None else None

    def unknown(self, _: ExportStep) -> None:
        self.say("choosing the unknown threshold")
        opt = self.options
        try:
            self.threshold = threshold_for(self.model, opt.preprocess, opt.calib_dir, opt.unknown_false_accept, opt.seed)
        except ValueError as err:  # too few photos in --calib-dir: the runtime's fallback threshold applies
            log.warning("no unknown threshold for this bundle (%s); the runtime's default applies", err)
            self.threshold = None

    def convert(self, step: ExportStep) -> None:
        self.say(f"{step.format} fp32: converting")
        convert = _CONVERTERS[step.format][0]
        convert(self.model, self._path(step.format, "fp32"), self.options.preprocess.input_size)

    def quantize(self, step: ExportStep) -> None:
        self.say(f"{step.format} int8: calibrating on {len(self.calib_nchw)} images and quantizing")
        calib = _in_layout(self.calib_nchw, FORMATS[(step.format, "int8")][1])
        quantize = _CONVERTERS[step.format][1]
        recipe = quantize(self._path(step.format, "fp32"), self._path(step.format, "int8"), calib, self.options)
        if recipe is not None:
            self.recipe[f"{step.format}_int8"] = recipe

    def check(self, step: ExportStep) -> None:
        fmt, precision = step.format, step.precision
        name, layout = FORMATS[(fmt, precision)]
        path, inputs = self.out / name, _in_layout(self.parity_nchw, layout)
        self.say(f"{fmt} {precision}: checking parity on {len(inputs)} held-out images")
        rep = check_parity(path, precision, inputs, self.reference, self.options.thresholds, self.base_w)
        report = FileReport(name, fmt, precision, path.stat().st_size, rep)
        if rep.passed:
            self.passed[(fmt, precision)] = report
            return
        if self.options.strict:
            raise ParityError(_parity_advice(path, rep, fmt, precision) + " The file is left for inspection "
                              "and no manifest was written.")
        log.warning("%s", _parity_advice(path, rep, fmt, precision) + " It is left out of the bundle.")
        path.unlink()
        self.rejected.append(report)

    def time(self, step: ExportStep) -> None:
        key = (step.format, step.precision)
        if key not in self.passed:  # rejected: nothing to time
            return
        runs = self.options.latency_runs
        self.say(f"{step.format} {step.precision}: timing {runs} runs")
        name, layout = FORMATS[key]
        latency = measure_latency(self.out / name, _in_layout(self.parity_nchw, layout)[:1], runs=runs)
        self.passed[key] = replace(self.passed[key], latency_ms=latency)

    def manifest(self, _: ExportStep) -> ExportResult:
        if not self.passed:
            raise _all_rejected(self.rejected)
        files = tuple(self.passed[job] for job in self.options.jobs() if job in self.passed)
        manifest = _manifest(self, files)
        write_manifest(self.out, manifest)
        self.say(f"wrote {self.out / MANIFEST}")
        return ExportResult(self.out, manifest, files, tuple(self.rejected))


def _all_rejected(rejected: list[FileReport]) -> ParityError:
    return ParityError(
        "every exported file failed its parity check against PyTorch fp32 ("
        + "; ".join(f"{r.file}: {r.parity.message}" for r in rejected)
        + "); no manifest was written. Next: "
        + ("pass --calib-dir with 100-300 photos like the ones you will recognize, or export fp32 too"
           if all(r.precision == "int8" for r in rejected) else
           "an fp32 file must reproduce PyTorch: check the model's export (run with -v for details)")
    )


def _manifest(run: _Export, files: tuple[FileReport, ...]) -> Manifest:
    """The manifest of the files that passed, writing the base classes (if any) beside them."""
    model, options, base = run.model, run.options, run.base
    fingerprint = state_fingerprint(model)
    base_file, exemplars_file, scale = None, None, DEFAULT_SCALE
    if base is not None:
        scale = float(base.classifier.scale.detach())
        base_file = write_base_classes(run.out, base.labels, run.base_w, np.asarray(base.counts), scale, fingerprint)
        if base.exemplars is not None:
            write_exemplars(run.out / EXEMPLARS_FILE, *base.exemplars)
            exemplars_file = EXEMPLARS_FILE
    entries = tuple(
        ExtractorEntry(file=f.file, format=f.format, precision=f.precision, layout=FORMATS[(f.format, f.precision)][1],
                       sha256=file_sha256(run.out / f.file), normalized=True,
                       parity_cosine=round(f.parity.mean_cosine, 6),
                       latency_ms=round(f.latency_ms, 3) if f.latency_ms is not None else None)
        for f in files
    )
    return Manifest(
        name=options.name,
        embedding_dim=model.embedding_dim,
        scale=scale,
        fingerprint=fingerprint,
        preprocess=options.preprocess,
        extractors=entries,
        base_classes=base_file,
        base_exemplars=exemplars_file,
        shot_offsets=base.shot_offsets if base is not None else None,
        calibration={
            "images": len(run.calib_images) if run.calib_nchw is not None else 0,
            "parity_images": len(run.parity_images),
            "source": str(options.calib_dir) if options.calib_dir else "scikit-image sample photos + random views",
            "method": "minmax",
            **run.recipe,
            "float_prefix_convs": options.float_prefix_convs,
            "quantize_embedding": options.quantize_embedding,
            "seed": options.seed,
            **(run.threshold.to_manifest() if run.threshold is not None else {}),
        },
        source={"backbone": model.config.backbone, "embedding_dim": model.config.embedding_dim, **(run.source or {})},
        versions=library_versions(),
        host=host_info(),
        rejected=tuple(
            {"file": r.file, "format": r.format, "precision": r.precision, "parity_cosine": round(r.parity.mean_cosine, 6),
             "reason": r.parity.message} for r in run.rejected
        ),
        probes=write_probe_set(run.out, run.parity_images, run.reference, options.probe_count, options.preprocess,
                               options.thresholds),
    )


def export_bundle(
    model: ImprintExtractor,
    out_dir: str | os.PathLike[str],
    options: ExportOptions = ExportOptions(),
    base: BaseClasses | None = None,
    source: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `model` to `out_dir` in every requested format and precision, verify each file, then write
    the base classes (if any) and manifest.json: the steps of `export_steps(options)`, each reported through
    progress(message). Raises ParityError if a file fails its check (strict) or every file does."""
    if base is not None and tuple(base.classifier.weight.shape) != (len(base.labels), model.embedding_dim):
        raise ValueError(
            f"base classifier is {tuple(base.classifier.weight.shape)} but {len(base.labels)} labels and a "
            f"{model.embedding_dim}-d extractor need ({len(base.labels)}, {model.embedding_dim})"
        )
    if base is not None and len(base.counts) != len(base.labels):
        raise ValueError(f"{len(base.labels)} base labels but {len(base.counts)} counts")
    out = Path(out_dir)
    _prepare_out_dir(out)
    steps, say = export_steps(options), progress or (lambda msg: log.info("%s", msg))
    with tempfile.TemporaryDirectory(prefix="imprint-export-") as tmp:
        run = _Export(model.eval(), out, Path(tmp), options, base, source, say)
        for step in steps[:-1]:
            getattr(run, step.action)(step)
        return run.manifest(steps[-1])
