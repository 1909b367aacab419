"""End to end: the browser demo (android_demo/web) in Debian's chromium driven by playwright-core.

A fake camera plays a y4m video of two synthetic objects; the node script (android_demo/web/test/e2e.mjs)
teaches both through the page's "Add class" button, checks the live predictions, persistence, rename/delete,
export and import, the page's embeddings of the golden frames, the golden shot-offsets case (the bundle's
shot_offsets applied by js/classstore.js in node and by the page), the golden merge cases (merges by shot identity:
ClassStore.combine in node, every case, and the page's "Merge .npz", twice) and the default unknown policy case (the bundle's threshold or the fallback,
and "unknown" in the probabilities, in node and in the page; the shot-aware table in node). This file then checks those embeddings against Python onnxruntime and reads
the exported and the merged stores with the Python runtime. test/classstore.test.mjs (node alone) unit-tests the class
store: merges, shot ids and hostile stores. Skips with the reason when
chromium, node or the npm packages are absent (scripts/install_android_check_deps.sh installs them).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "android_demo" / "web"
CHROMIUM = "/usr/bin/chromium"

sys.path.insert(0, str(Path(__file__).parent))
from tiny import pattern_image  # noqa: E402


def write_y4m(path: Path, fps: int = 10, seconds_per_object: float = 2.0) -> Path:
    """320x240 I420 video: object A (red stripes) then object B (blue checkerboard), each with a corner
    marker (bright for A, dark for B) outside the centre crop, and per-frame jitter and noise."""
    w, h, n = 320, 240, int(fps * seconds_per_object)
    frames = []
    for seg, kind in enumerate((0, 2)):
        for i in range(n):
            img = np.full((h, w, 3), 110, np.uint8)
            img[:, 40:280] = pattern_image(kind, i % 5, size=240)
            img[4:28, 4:28] = 240 if seg == 0 else 15
            frames.append(img)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for img in frames:
            r, g, b = (img[..., c].astype(np.float32) for c in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = (-0.168736 * r - 0.331264 * g + 0.5 * b + 128).reshape(h // 2, 2, w // 2, 2).mean((1, 3))
            v = (0.5 * r - 0.418688 * g - 0.081312 * b + 128).reshape(h // 2, 2, w // 2, 2).mean((1, 3))
            f.write(b"FRAME\n")
            for p in (y, u, v):
                f.write(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    for tool, how in ((CHROMIUM, "apt-get install chromium"), ("node", "apt-get install nodejs")):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not found ({how}, or run scripts/install_android_check_deps.sh)")
    if not (WEB / "node_modules" / "playwright-core").is_dir() or not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("npm packages missing: run `npm ci` in android_demo/web (scripts/install_android_check_deps.sh does)")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    golden = tmp_path_factory.mktemp("golden")
    subprocess.run([sys.executable, str(ROOT / "android_demo/tools/make_golden.py"), str(golden)], check=True,
                   capture_output=True, timeout=120)
    out = tmp_path_factory.mktemp("web_out")
    video = write_y4m(out / "camera.y4m")
    p = subprocess.run(["node", "test/e2e.mjs", "--golden", str(golden), "--video", str(video), "--out", str(out),
                        "--chromium", CHROMIUM], cwd=WEB, capture_output=True, text=True, timeout=150)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, f"browser end-to-end test failed:\n{p.stdout}\n{p.stderr}"
    return golden, out, p.stdout


def test_all_browser_checks_pass(e2e: tuple[Path, Path, str]) -> None:
    m = re.search(r"^web-e2e: (\d+) passed, (\d+) failed$", e2e[2], re.M)
    assert m and int(m.group(2)) == 0 and int(m.group(1)) == 16, e2e[2]


def test_browser_embeddings_match_python_onnxruntime(e2e: tuple[Path, Path, str]) -> None:
    from imprinting.runtime import load_bundle, preprocess

    golden, out, _ = e2e
    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    bundle = load_bundle(meta["bundle"])
    ex = bundle.open_extractor("onnx")
    web = json.loads((out / "web_embeddings.json").read_text())
    exact = [f for f in meta["frames"] if not f["resampled"]][0]
    rgb = np.frombuffer((golden / f"frame_{exact['name']}.rgb").read_bytes(), np.uint8).reshape(exact["height"], exact["width"], 3)
    want = ex.run(preprocess(rgb, bundle.manifest.preprocess, ex.layout))[0]
    # Raw, unnormalized outputs of the same graph on the same float32 input: only kernel order differs.
    np.testing.assert_allclose(np.asarray(web[exact["name"]], np.float32), want, atol=1e-5, rtol=1e-5)


def _scorer(data):
    from imprinting.runtime import ClassSet, ImprintedClassifier

    return ImprintedClassifier(ClassSet.from_store_data(data))


def test_classstore_unit_tests_pass_in_node() -> None:
    """test/classstore.test.mjs: merges by shot identity, shot ids, hostile stores (node alone, no browser)."""
    if not shutil.which("node"):
        pytest.skip("node not found (apt-get install nodejs, or run scripts/install_android_check_deps.sh)")
    p = subprocess.run(["node", "test/classstore.test.mjs"], cwd=WEB, capture_output=True, text=True, timeout=60)
    m = re.search(r"^web-unit: (\d+) passed, (\d+) failed$", p.stdout, re.M)
    assert p.returncode == 0 and m and int(m.group(2)) == 0 and int(m.group(1)) == 11, p.stdout + p.stderr


def test_python_reads_the_exported_store(e2e: tuple[Path, Path, str]) -> None:
    from imprinting.runtime import read_store
    from imprinting.runtime.invariants import content_id

    golden, out, _ = e2e
    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    for name in ("web_store.npz", "web_download.npz"):
        data = read_store(out / name, expected_fingerprint=meta["fingerprint"], expected_dim=meta["embedding_dim"])
        assert data.labels == ("stripes", "checks")
        np.testing.assert_array_equal(data.counts, [5, 5])
        # The page keeps every shot (5 distinct frames per class), without photo ids: content ids here.
        np.testing.assert_array_equal(data.shot_class, [0] * 5 + [1] * 5)
        assert data.shot_ids == tuple(content_id(r) for r in data.shots) and len(set(data.shot_ids)) == 10
        # Different objects taught from the camera must give clearly different class weights.
        w = data.sums / np.linalg.norm(data.sums, axis=1, keepdims=True)
        assert float(w[0] @ w[1]) < 0.95 and len(_scorer(data).classes) == 2


def test_screenshot_was_taken(e2e: tuple[Path, Path, str]) -> None:
    png = (e2e[1] / "screenshot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


MERGE_CASES = ["merged", "merged_renamed", "merged_self", "merged_twice", "merged_renamed_twice", "merged_roundtrip"]


@pytest.mark.parametrize("key", MERGE_CASES)
def test_python_reads_the_stores_merged_in_javascript(e2e: tuple[Path, Path, str], key: str) -> None:
    """js/classstore.js's ClassStore.combine of the golden stores is Python's combine, bit for bit (sums, counts,
    shots and their ids)."""
    from imprinting.runtime import read_store

    golden, out, _ = e2e
    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in meta["merge"]["cases"]] == MERGE_CASES
    case = {c["name"]: c for c in meta["merge"]["cases"]}[key]
    got = read_store(out / f"web_{key}.npz", expected_fingerprint=meta["fingerprint"], expected_dim=meta["embedding_dim"])
    want = read_store(golden / case["store"])
    assert got.labels == want.labels == tuple(case["labels"])
    assert (got.scale, got.templates_per_class, got.shot_ids) == (want.scale, want.templates_per_class, want.shot_ids)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.sums.tobytes() == want.sums.tobytes() and got.shots.tobytes() == want.shots.tobytes()
    np.testing.assert_array_equal(got.shot_class, want.shot_class)
    assert [c.top.label for c in _scorer(got).classify(np.load(golden / "queries.npy"))] == [p["labels"][0] for p in case["predictions"]]
