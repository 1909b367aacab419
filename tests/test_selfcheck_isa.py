"""The self-check against real int8 kernels: under `qemu-x86_64-static -cpu Haswell` (onnxruntime's AVX2 u8s8
kernels, which add neighbouring products in 16 bits with saturation), a plain `quantize_static` int8 file of the
default bundle (no pair-safe step) is caught and the runtime falls back to fp32 with one line, while the
shipped pair-safe int8 file passes. Slow (minutes under emulation); needs qemu-user-static and
bundles/lite0-imagenet exported with probes (`imprint export --out bundles/lite0-imagenet --name lite0-imagenet`)."""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "lite0-imagenet"
OPEN_BOTH = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from imprinting.runtime.bundle import load_bundle
from imprinting.runtime.extractor import ExtractorOptions
out = {}
for name, path, kw in (("unsafe", sys.argv[1], {}), ("shipped", sys.argv[2], {"format": "onnx", "precision": "int8"})):
    ex = load_bundle(path).open_extractor(options=ExtractorOptions(check_cache="off"), **kw)
    out[name] = {"file": ex.entry.file, "mean": ex.self_check.mean_cosine, "passed": ex.self_check.passed}
    ex.close()
print(json.dumps(out))
"""


def write_unsafe_int8(fp32: Path, out: Path, spec, calib_count: int = 32) -> None:
    """The export's int8 ONNX recipe without its pair-safe step: plain onnxruntime quantize_static (QDQ,
    per-channel int8 weights, uint8 activations, min/max) on scikit-image sample photos preprocessed by
    `spec` (a PreprocessSpec)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from imprinting.export._onnx import _BatchReader, float_node_names
    from imprinting.export.calibration import default_image_sets
    from imprinting.runtime.preprocess import preprocess

    calib, _ = default_image_sets(calib_count, 1)
    x = preprocess(calib, spec, "NCHW")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_optimization=True, skip_symbolic_shape=False)
        quantize_static(str(pre), str(out), _BatchReader(x), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_node_names(pre, 3))


def _unsafe_bundle(directory: Path) -> Path:
    """A copy of the default bundle's ONNX files and probes, its int8 file replaced by an unsafe one."""
    from imprinting.runtime.bundle import file_sha256, load_bundle, write_manifest

    m = load_bundle(BUNDLE).manifest
    directory.mkdir()
    for name in ("extractor_fp32.onnx", "probes.npz"):
        shutil.copyfile(BUNDLE / name, directory / name)
    write_unsafe_int8(directory / "extractor_fp32.onnx", directory / "extractor_int8.onnx", m.preprocess)
    entries = tuple(dataclasses.replace(e, sha256=file_sha256(directory / e.file), latency_ms=None)
                    for e in m.extractors if e.format == "onnx")
    write_manifest(directory, dataclasses.replace(m, extractors=entries, rejected=()))
    return directory


@pytest.mark.slow
def test_an_unsafe_int8_file_is_caught_under_haswell_and_the_shipped_one_passes(tmp_path):
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if qemu is None or platform.machine() != "x86_64":
        pytest.skip("needs qemu-user-static on x86_64 (apt-get install qemu-user-static)")
    pytest.importorskip("torch")
    pytest.importorskip("skimage")
    if not (BUNDLE / "probes.npz").is_file():
        pytest.skip(f"needs {BUNDLE} exported with probes: imprint export --out {BUNDLE} --name lite0-imagenet")
    unsafe = _unsafe_bundle(tmp_path / "unsafe")
    res = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-c", OPEN_BOTH, str(unsafe), str(BUNDLE)],
                         capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    warnings = [line for line in res.stderr.splitlines() if line.startswith("WARNING imprinting")]
    assert out["unsafe"]["file"] == "extractor_fp32.onnx" and out["unsafe"]["passed"], (out, res.stderr[-3000:])
    assert len(warnings) == 1 and "skipping extractor_int8.onnx" in warnings[0], warnings
    assert out["shipped"]["file"] == "extractor_int8.onnx" and out["shipped"]["passed"], out
    print(json.dumps(out), warnings[0])
