"""`imprint export-rknn`: the manifest gets the `.rknn` file only when it reaches the bar on the probes, and a
failure changes nothing in the bundle. The toolkit itself is faked here (it lives in a 1.5 GB environment of
its own); the slow test at the end builds and simulates a real file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")  # the training side (imprinting.export)

from _selfcheck_helpers import write_probed_bundle  # noqa: E402

import imprinting.export.rknn_export as rknn_export  # noqa: E402
from imprinting.export.rknn_export import RknnOptions, export_rknn  # noqa: E402
from imprinting.runtime.bundle import file_sha256, load_bundle, read_manifest  # noqa: E402


def _fake_simulate(noise: float, fail: bool = False):
    """A simulate() that writes a file and returns the fp32 file's outputs plus `noise`, as the toolkit would."""
    def simulate(bundle_dir, inputs, options, out, say=print):
        from imprinting.runtime.extractor import load_extractor

        Path(out).write_bytes(b"RKNN fake")
        if fail:
            raise ValueError("rknn-toolkit2 failed (exit 1):\nE build: unsupported op")
        y = load_extractor(Path(bundle_dir) / "extractor_fp32.onnx").run(inputs)
        rng = np.random.default_rng(0)
        return y + noise * np.abs(y).max() * rng.normal(size=y.shape), {"calibration_inputs": 3, "bytes": 9}
    return simulate


def _snapshot(d: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted(d.iterdir())}


def test_a_file_that_reaches_the_bar_is_added_with_its_target_and_figures(tmp_path, monkeypatch):
    d = write_probed_bundle(tmp_path / "b")
    monkeypatch.setattr(rknn_export, "simulate", _fake_simulate(0.0))
    r = export_rknn(d, RknnOptions(target="rk3566"))
    assert r.file == "extractor_int8.rknn" and r.mean_cosine > 0.9999 and r.threshold == 0.99
    m = read_manifest(d)
    entry = m.extractors[-1]
    assert (entry.format, entry.precision, entry.target, entry.layout) == ("rknn", "int8", "rk3566", "NCHW")
    assert entry.sha256 == file_sha256(d / entry.file) and entry.parity_cosine > 0.9999
    assert m.calibration["rknn_int8"]["target"] == "rk3566"
    export_rknn(d, RknnOptions(target="rk3588"))  # again: the entry is replaced, not doubled
    assert [e.target for e in read_manifest(d).extractors if e.format == "rknn"] == ["rk3588"]
    assert not [p for p in os.listdir(d) if p.endswith(".tmp")]


@pytest.mark.parametrize("noise, fail", [(0.5, False), (0.0, True)])
def test_a_file_below_the_bar_or_a_failed_build_leaves_the_bundle_as_it_was(tmp_path, monkeypatch, noise, fail):
    d = write_probed_bundle(tmp_path / "b")
    before = _snapshot(d)
    monkeypatch.setattr(rknn_export, "simulate", _fake_simulate(noise, fail))
    if fail:
        with pytest.raises(ValueError, match="unsupported op"):
            export_rknn(d)
    else:
        r = export_rknn(d)
        assert r.file is None and r.mean_cosine < r.threshold
    assert _snapshot(d) == before  # no .rknn file, no temporary file, the manifest unchanged


def test_options_and_bundles_it_cannot_use_are_refused(tmp_path, tiny_bundle):
    with pytest.raises(ValueError, match="--target must be one of"):
        RknnOptions(target="rk9999")
    with pytest.raises(ValueError, match="calib_count"):
        RknnOptions(calib_count=0)
    with pytest.raises(ValueError, match="carries no probes"):
        export_rknn(tiny_bundle)
    d = write_probed_bundle(tmp_path / "b")
    m = read_manifest(d)
    from imprinting.runtime.bundle import write_manifest

    write_manifest(d, type(m)(**{**vars(m), "extractors": m.extractors[:1]}))  # the int8 file only
    with pytest.raises(ValueError, match="no fp32 ONNX file to convert"):
        rknn_export.simulate(d, np.zeros((1, 3, 32, 32), np.float32), RknnOptions(), tmp_path / "x.rknn")


@pytest.mark.slow
def test_rknn_toolkit_builds_a_file_that_passes_its_probes_in_the_simulator(tmp_path):
    """Creates the tool environment (a minute or two and 1.5 GB the first time; IMPRINT_RKNN_ENV reuses one)
    and converts the shipped Lite0 bundle: the simulator's mean cosine to PyTorch fp32 must reach 0.99."""
    src = Path(__file__).resolve().parents[1] / "bundles" / "lite0-imagenet"
    if not (src / "manifest.json").is_file():
        pytest.skip("bundles/lite0-imagenet is not exported here (make demo exports it)")
    d = tmp_path / "bundle"
    shutil.copytree(src, d)
    r = export_rknn(d, RknnOptions(calib_count=20))
    assert r.file == "extractor_int8.rknn" and r.mean_cosine >= 0.99, r
    assert load_bundle(d).manifest.candidates()[0].file == "extractor_int8.rknn"


def test_the_tool_environment_is_complete_only_when_every_install_succeeded(tmp_path, monkeypatch):
    import imprinting.export.rknn_env as rknn_env

    ran: list[list[str]] = []

    def fake_run(cmd):
        ran.append(cmd)
        if "--no-deps" in cmd and fail:
            raise ValueError("creating the RKNN tool environment failed at `pip install ...`: no such wheel")

    monkeypatch.setattr(rknn_env, "_run", fake_run)
    env = tmp_path / "env"
    fail = True
    with pytest.raises(ValueError, match="no such wheel"):
        rknn_env.ensure_tool_env(env)
    assert not (env / rknn_env._DONE).exists()  # an interrupted or failed creation is not reused
    fail = False
    assert rknn_env.ensure_tool_env(env) == env / "bin" / "python" and (env / rknn_env._DONE).is_file()
    assert any("numpy==1.26.4" in c for c in ran[-2]) and rknn_env.TOOLKIT in ran[-1]
    n = len(ran)
    rknn_env.ensure_tool_env(env)  # complete: nothing runs again
    assert len(ran) == n
    monkeypatch.setattr(rknn_env, "PINS", (*rknn_env.PINS[:-1], "setuptools==1.0"))  # another tested set
    rknn_env.ensure_tool_env(env)
    assert len(ran) == n + 3  # made anew: venv, pins, toolkit
