"""The benchmark scripts run end to end on the tiny bundle (functional checks, never timing assertions)."""

from __future__ import annotations

import json
from importlib.util import find_spec
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("skimage")
pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]


def test_latency_suite_reports_every_configuration_and_keeps_going_after_a_failure(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    broken = dict(manifest["extractors"][0], file="broken.onnx", sha256="", precision="int8")
    (bundle / "broken.onnx").write_bytes(b"not a model")
    manifest["extractors"].append(broken)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "benchmarks/latency.py", str(bundle), "--threads", "1", "--runs", "5",
                          "--warmup", "1", "--no-torch", "--name", "t", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads((out / "latency-t.json").read_text())
    status = {r["name"]: r["status"] for r in data["results"]}
    expected = {"onnxruntime-fp32-t1": "ok", "onnxruntime-int8-t1": "failed"}
    if find_spec("openvino"):  # ONNX files also run through OpenVINO where it is installed
        expected.update({"openvino-fp32-t1": "ok", "openvino-int8-t1": "failed"})
        ov = next(r for r in data["results"] if r["name"] == "openvino-fp32-t1")
        assert ov["cosine_vs_fp32"] > 0.9999  # beside onnxruntime's, in the same run
    assert status == expected
    ok = next(r for r in data["results"] if r["status"] == "ok")
    assert ok["stages"]["extract"]["runs"] == 5 and ok["peak_rss_mb"] > 10 and ok["cold_start_s"] > 0
    assert data["macs"] > 0 and "cannot load ONNX extractor" in next(r["error"] for r in data["results"] if r["status"] == "failed")
    # The frame path against the extractor, for a 640x480 frame and one of the size cameras are asked for.
    assert ok["e2e_capture"]["median"] > ok["stages"]["extract"]["median"] and ok["stages"]["preprocess_capture"]["runs"] == 5
    assert "capture-size frame ms" in (out / "latency-t.md").read_text()
    assert (out / "latency-t.png").is_file() and "| onnxruntime-fp32-t1 |" in (out / "latency-t.md").read_text()
    cmp = subprocess.run([sys.executable, "benchmarks/latency.py", str(bundle), "--threads", "1", "--runs", "5",
                          "--warmup", "1", "--no-torch", "--name", "t2", "--out", str(out),
                          "--compare", str(out / "latency-t.json")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cmp.returncode == 0 and "| onnxruntime-fp32-t1 |" in cmp.stdout.split("Against")[1]


def test_classifier_speed_script_runs(tmp_path):
    res = subprocess.run([sys.executable, "benchmarks/classifier_speed.py", "--classes", "100", "--dims", "16",
                          "--out", str(tmp_path / "s.md")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "| 100 | 16 |" in (tmp_path / "s.md").read_text()




def test_unknown_level_trial_compares_the_store_level_with_the_test_photos_own(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import numpy as np
    from unknown_level import KEYS, report, trial

    from imprinting.runtime import UnknownPolicy

    rng = np.random.default_rng(0)
    classes, per, d = 40, 30, 48
    centres = rng.standard_normal((classes, d))
    emb = np.repeat(centres, per, axis=0) + 1.2 * rng.standard_normal((classes * per, d))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = np.repeat(np.arange(classes), per)
    is_train = np.tile(np.arange(per) < 15, classes)
    train, test = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    r = trial(emb, labels, train, test, np.arange(classes), 10, UnknownPolicy(min_cosine=0.3), seed=0)
    assert set(r) == set(KEYS)
    # Shots and test photos come from the same clusters: the level read off the shots is the test photos' own.
    assert abs(r["store level"] - r["test level"]) < 0.05 and 0.88 < r["kept at level"] <= 1.0
    one = trial(emb, labels, train, test, np.arange(classes), 1, UnknownPolicy(min_cosine=0.3), seed=0)
    assert np.isnan(one["store level"]) and np.isnan(one["pred kept"]) and not np.isnan(one["through"])
    table = report({1: [one], 10: [r]})
    assert table[2].startswith("| 1 | - |") and table[3].startswith("| 10 | ")
