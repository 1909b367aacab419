"""The Android demo's plain-Java core (android_demo/imprint-core) against the Python runtime.

Builds golden vectors with android_demo/tools/make_golden.py, compiles imprint-core with javac for Java 8 and
runs its JUnit tests (android_demo/tools/check_core.sh), then reads the class stores that Java wrote with the
Python runtime's read_store. Skips with the reason when the JDK or JUnit is absent
(scripts/install_android_check_deps.sh installs them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "android_demo" / "tools"


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    out = tmp_path_factory.mktemp("golden")
    subprocess.run([sys.executable, str(TOOLS / "make_golden.py"), str(out)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def java_run(golden: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("java_out")
    p = subprocess.run(["bash", str(TOOLS / "check_core.sh"), str(golden), str(out)],
                       capture_output=True, text=True, timeout=300)
    text = p.stdout + p.stderr
    if p.returncode == 77:
        pytest.skip(text.strip().splitlines()[-1])
    print(text)
    assert p.returncode == 0, f"imprint-core JUnit run failed:\n{text}"
    return out, text


def test_junit_passes(java_run: tuple[Path, str]) -> None:
    m = re.search(r"imprint-core: (\d+) passed, (\d+) failed, (\d+) skipped", java_run[1])
    assert m, java_run[1]
    passed, failed, skipped = map(int, m.groups())
    # Every test must run: a skipped golden test would mean the vectors never reached Java.
    assert (failed, skipped) == (0, 0) and passed >= 15, java_run[1]


def _stored_uncompressed(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


def test_python_reads_java_imprinted_store(golden: Path, java_run: tuple[Path, str]) -> None:
    from imprinting.runtime import read_store
    from imprinting.runtime.invariants import content_id

    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    path = java_run[0] / "java_imprinted.npz"
    _stored_uncompressed(path)
    got = read_store(path, expected_fingerprint=meta["fingerprint"], expected_dim=meta["embedding_dim"])
    want = read_store(golden / "store.npz")
    assert got.labels == want.labels and got.scale == want.scale
    assert got.sums.dtype == np.float32 and got.counts.dtype == np.int64
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_allclose(got.sums, want.sums, atol=2e-6, rtol=0)
    # Java keeps every shot it is taught; taught without photo ids, they are null in the file and Python gives
    # each its content id on reading.
    np.testing.assert_allclose(got.shots, want.shots, atol=2e-7, rtol=0)
    np.testing.assert_array_equal(got.shot_class, want.shot_class)
    assert got.shot_ids == tuple(content_id(r) for r in got.shots)
    assert json.loads(np.load(path)["meta"].tobytes())["shot_ids"] == [None] * 9


def _scorer(data):
    from imprinting.runtime import ClassSet, ImprintedClassifier

    return ImprintedClassifier(ClassSet.from_store_data(data))


def test_python_reads_java_edited_store(golden: Path, java_run: tuple[Path, str]) -> None:
    from imprinting.runtime import read_store

    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    got = read_store(java_run[0] / "java_edited.npz")
    assert list(got.labels) == meta["edited_labels"]  # a renamed non-ASCII label survives
    queries = np.load(golden / "queries.npy")
    for c, want in zip(_scorer(got).classify(queries, top_k=3), meta["predictions_edited"]):
        assert [x.label for x in c.categories] == want["labels"]
        np.testing.assert_allclose([x.score for x in c.categories], want["cosines"], atol=1e-6)


def test_python_reads_java_store_with_shots(golden: Path, java_run: tuple[Path, str]) -> None:
    from imprinting.runtime import read_store

    got = read_store(java_run[0] / "java_shots.npz")
    want = read_store(golden / "store_shots.npz")
    assert got.labels == ("green", "blue") and got.templates_per_class == 2
    np.testing.assert_array_equal(got.shot_class, [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(got.counts, [3, 4])
    # The ids Java read travel with their shots; the shot it taught has none in the file (a content id here).
    assert got.shot_ids[:6] == tuple(i for i, c in zip(want.shot_ids, want.shot_class) if c != 0)
    _scorer(got).classify(got.shots[:1])


MERGE_CASES = ["merged", "merged_renamed", "merged_self", "merged_twice", "merged_renamed_twice", "merged_roundtrip"]


@pytest.mark.parametrize("key", MERGE_CASES)
def test_python_reads_java_merged_store(golden: Path, java_run: tuple[Path, str], key: str) -> None:
    """A store merged by Java (ClassStore.combine) is Python's combine of the same stores, bit for bit (sums, counts,
    shots and their ids), and classifies the same."""
    from imprinting.runtime import read_store

    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    case = {c["name"]: c for c in meta["merge"]["cases"]}[key]
    got = read_store(java_run[0] / f"java_{key}.npz", expected_fingerprint=meta["fingerprint"],
                     expected_dim=meta["embedding_dim"])
    want = read_store(golden / case["store"])
    assert got.labels == want.labels == tuple(case["labels"])
    assert (got.scale, got.templates_per_class, got.shot_ids) == (want.scale, want.templates_per_class, want.shot_ids)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.sums.tobytes() == want.sums.tobytes()  # exact, not merely close
    assert got.shots.tobytes() == want.shots.tobytes()
    np.testing.assert_array_equal(got.shot_class, want.shot_class)
    for c, w in zip(_scorer(got).classify(np.load(golden / "queries.npy"), top_k=3), case["predictions"]):
        assert [x.label for x in c.categories] == w["labels"]
        np.testing.assert_allclose([x.score for x in c.categories], w["cosines"], atol=1e-6)


def test_every_golden_merge_case_is_checked(golden: Path) -> None:
    meta = json.loads((golden / "golden.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in meta["merge"]["cases"]] == MERGE_CASES
