"""`imprint export-rknn`: add an int8 `.rknn` file for a Rockchip NPU to an exported bundle.

rknn-toolkit2 (in its own tool environment, rknn_env.py) converts the bundle's fp32 ONNX file with its own int8
quantization, calibrated on the same kind of images as the bundle's int8 files (--calib-dir or the sample
photos and random views), then runs the bundle's probes through its simulator: the file is added to the
manifest only when their mean cosine to PyTorch fp32 reaches the bundle's int8 bar (0.99 unless the bundle
says otherwise). The board runs it with rknn-toolkit-lite2 (runtime/_rknn.py), through the same self-check.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from imprinting.runtime.atomic import atomic_write_bytes
from imprinting.runtime.bundle import ExtractorEntry, file_sha256, load_bundle, verify_file, write_manifest
from imprinting.runtime.manifest import NPU_FILES
from imprinting.runtime.preprocess import normalize, preprocess

from .calibration import default_image_sets
from .rknn_env import TOOLKIT, ensure_tool_env, run_tool

log = logging.getLogger(__name__)

# SoCs rknn-toolkit2 2.5.0 builds for (its target_platform names).
TARGETS = ("rk3588", "rk3576", "rk3566", "rk3568", "rk3562")


@dataclass(frozen=True)
class RknnOptions:
    """target: the SoC; calib_count: calibration images (the bundle's int8 files use 200); calib_dir: a folder
    of the user's photos for them (None: the sample photos and random views); tool_env: where the tool
    environment lives (None: rknn_env.default_tool_env())."""

    target: str = "rk3588"
    calib_count: int = 100
    calib_dir: str | None = None
    seed: int = 0
    tool_env: str | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not 1 <= self.calib_count <= 1000:
            raise ValueError(f"calib_count must be in [1, 1000], got {self.calib_count}")


@dataclass(frozen=True)
class RknnResult:
    """The file written (None when it missed the bar), its probe cosines to PyTorch fp32, and the toolkit's
    report (sizes, seconds)."""

    file: str | None
    mean_cosine: float
    min_cosine: float
    threshold: float
    report: dict


def simulate(bundle_dir: str | os.PathLike[str], inputs_nchw: np.ndarray, options: RknnOptions,
             out: Path, say: Callable[[str], None] = log.info) -> tuple[np.ndarray, dict]:
    """Build the `.rknn` file at `out` from the bundle's fp32 ONNX file and run float32 (M, 3, S, S) inputs
    through the simulator: (raw outputs float32 (M, D), the toolkit's report)."""
    bundle = load_bundle(bundle_dir)
    fp32 = [e for e in bundle.manifest.extractors if (e.format, e.precision) == ("onnx", "fp32")]
    if not fp32:
        raise ValueError(f"bundle {bundle.path} has no fp32 ONNX file to convert; export it with --formats onnx "
                         "--precisions fp32,int8")
    onnx_path = verify_file(bundle.path, fp32[0])
    import onnxruntime as ort

    input_name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    spec = bundle.manifest.preprocess
    images, _ = default_image_sets(options.calib_count, 1, options.calib_dir, options.seed)
    python = ensure_tool_env(Path(options.tool_env) if options.tool_env else None, say)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/calib.npy", preprocess(images, spec, "NCHW"))
        np.save(f"{tmp}/inputs.npy", np.ascontiguousarray(inputs_nchw, np.float32))
        say(f"rknn-toolkit2: int8 build for {options.target} on {len(images)} calibration images, then the simulator")
        report = run_tool(python, ["--onnx", str(onnx_path), "--out", str(out), "--target", options.target,
                                   "--input", input_name, "--calib", f"{tmp}/calib.npy", "--inputs",
                                   f"{tmp}/inputs.npy", "--outputs", f"{tmp}/out.npy"])
        outputs = np.load(f"{tmp}/out.npy", allow_pickle=False)
    return outputs, report


def export_rknn(bundle_dir: str | os.PathLike[str], options: RknnOptions = RknnOptions(),
                say: Callable[[str], None] = log.info) -> RknnResult:
    """Build, check on the probes and (when it passes) add `extractor_int8.rknn` to the bundle's manifest,
    replacing an older one. Nothing in the bundle changes when the file misses the bar or anything fails."""
    bundle = load_bundle(bundle_dir)
    probes = bundle.probes()
    if probes is None:
        raise ValueError(f"bundle {bundle.path} carries no probes to check the .rknn file on; re-export it")
    crops, reference = probes
    name, layout = NPU_FILES[("rknn", "int8")]
    threshold = bundle.manifest.probes.threshold("int8")
    with tempfile.TemporaryDirectory() as tmp:  # built outside the bundle: a killed build leaves nothing in it
        out, report = simulate(bundle.path, normalize(crops, bundle.manifest.preprocess, "NCHW"), options,
                               Path(tmp) / name, say)
        cos = _cosines(out, reference)
        result = RknnResult(None, float(cos.mean()), float(cos.min()), threshold, report)
        if result.mean_cosine < threshold:
            return result
        atomic_write_bytes(bundle.path / name, (Path(tmp) / name).read_bytes())
    m = bundle.manifest
    entry = ExtractorEntry(file=name, format="rknn", precision="int8", layout=layout,
                           sha256=file_sha256(bundle.path / name), parity_cosine=round(result.mean_cosine, 6),
                           target=options.target)
    recipe = {"toolkit": TOOLKIT, "target": options.target, "images": report["calibration_inputs"],
              "source": options.calib_dir or "scikit-image sample photos + random views", "seed": options.seed}
    write_manifest(bundle.path, replace(m, extractors=(*[e for e in m.extractors if e.file != name], entry),
                                        calibration={**m.calibration, "rknn_int8": recipe}))
    return replace(result, file=name)


def _cosines(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a = out / np.linalg.norm(out, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return (a * b).sum(1)
