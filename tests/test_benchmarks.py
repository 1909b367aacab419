"""The benchmark scripts run end to end on the tiny bundle (functional checks, never timing assertions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    assert status == {"onnxruntime-fp32-t1": "ok", "onnxruntime-int8-t1": "failed"}
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


def test_row_refinement_lowers_the_training_loss_and_its_check_can_decline():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from refine_rows import RefineOptions, held_out_score, plan_refinement, refine_rows

    rng = np.random.default_rng(0)
    k, n, d = 6, 8, 16
    centres = rng.standard_normal((k, d))
    x = centres.repeat(n, 0) + 0.8 * rng.standard_normal((k * n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = np.arange(k).repeat(n)
    sums = np.stack([x[y == c].sum(0) for c in range(k)]).astype(np.float32)
    rows = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    new = refine_rows(rows, np.arange(k) >= 2, x, y, 10.0, RefineOptions(steps=100, lr=0.01, decay=0.0))
    assert held_out_score(new, x, y, 10.0)[1] < held_out_score(rows, x, y, 10.0)[1]  # training loss falls
    np.testing.assert_allclose(new[:2], rows[:2])  # fixed rows stay
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 1.0, rtol=1e-5)
    plan = plan_refinement(sums, np.zeros(k, bool), x, y, 10.0, options=RefineOptions(steps=100, lr=0.01))
    assert plan.before is not None and plan.after is not None and "held-out" in plan.why
    few = plan_refinement(sums, np.zeros(k, bool), x[::n], y[::n], 10.0)  # one shot per class
    assert not few.refined.any() and "nothing to refine" in few.why
