"""Shot-aware calibration: offsets by shot count in the manifest, applied by the classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imprinting.runtime import ClassSet, ImprintedClassifier, ShotOffsets, load_bundle
from imprinting.runtime.bundle import MANIFEST

from tiny import write_tiny_bundle


def test_offsets_interpolate_in_log_shots_and_clamp_at_the_ends():
    t = ShotOffsets.from_mapping({"1": 0.08, "4": 0.02, "20": 0.0})
    got = t(np.array([0, 1, 2, 4, 10, 20, 500]))
    np.testing.assert_allclose(got, [0.08, 0.08, 0.05, 0.02, 0.02 * (1 - np.log(2.5) / np.log(5)), 0.0, 0.0], atol=1e-6)
    assert ShotOffsets.from_mapping(t.to_mapping()) == t


@pytest.mark.parametrize("table, match", [
    ({}, "at least one"), ({"0": 0.1}, "strictly increasing"), ({"1": 2.0}, "within"),
    ({"one": 0.1}, "map shot counts"), ({"1": float("nan")}, "finite"),
])
def test_bad_tables_are_refused(table, match):
    with pytest.raises(ValueError, match=match):
        ShotOffsets.from_mapping(table)


def test_a_one_shot_class_beats_a_base_class_only_with_its_offset():
    base = np.array([1.0, 0.0, 0.0], np.float32)
    shot = np.array([0.0, 1.0, 0.0], np.float32)
    query = np.array([0.70, 0.66, 0.0], np.float32)  # a little closer to the base class
    table = ShotOffsets.from_mapping({"1": 0.08, "20": 0.0})
    plain = ImprintedClassifier(ClassSet(3, 10.0, "fp"))
    calibrated = ImprintedClassifier(ClassSet(3, 10.0, "fp"), shot_offsets=table)
    for clf in (plain, calibrated):
        # 30 photos of the same view: distinct shot ids, so each counts
        clf.classes.learn("base", np.repeat(base[None], 30, axis=0), ids=[f"base-{i}" for i in range(30)])
        clf.classes.learn("new", shot)
    assert plain.classify(query)[0].label == "base"
    top = calibrated.classify(query)[0]
    assert top.label == "new"
    cos = calibrated.cosines(query)[0]  # raw cosines stay raw
    assert top.score == pytest.approx(cos[1] + 0.08, abs=1e-6) and top.cosine == pytest.approx(cos[1], abs=1e-6)
    np.testing.assert_allclose(calibrated.scores(query)[0], cos + [0.0, 0.08], atol=1e-6)
    # More shots shrink the offset; the state survives a store round trip and removals.
    more = calibrated.classes.learn("new", np.repeat(shot[None], 19, axis=0), ids=[f"new-{i}" for i in range(19)])
    assert more.shots == 20
    assert calibrated.classify(query)[0].label == "base"
    restored = ImprintedClassifier(ClassSet.from_store_data(calibrated.classes.to_store_data()), shot_offsets=table)
    assert restored.classify(query)[0].label == "base"
    assert restored.classes.forget("new", more.added) == 19
    assert restored.classify(query)[0].label == "new"
    restored.classes.remove("base")
    assert restored.classify(query)[0].score == pytest.approx(cos[1] + 0.08, abs=1e-6)


def test_manifest_carries_offsets_and_rejects_broken_ones(tmp_path):
    d = write_tiny_bundle(tmp_path / "b")
    m = json.loads((d / MANIFEST).read_text())
    assert load_bundle(d).manifest.shot_offsets is None
    m["shot_offsets"] = {"1": 0.07, "5": 0.02}
    (d / MANIFEST).write_text(json.dumps(m))
    table = load_bundle(d).manifest.shot_offsets
    assert table == ShotOffsets((1, 5), (0.07, 0.02))
    assert load_bundle(d).manifest.to_dict()["shot_offsets"] == {"1": 0.07, "5": 0.02}
    m["shot_offsets"] = {"5": 0.02, "x": 1}
    (d / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="shot_offsets"):
        load_bundle(d)


def test_recognizer_takes_the_bundle_table_unless_turned_off(tmp_path):
    from imprinting.runtime import Recognizer, RecognizerOptions

    d = write_tiny_bundle(tmp_path / "b")
    m = json.loads((d / MANIFEST).read_text())
    m["shot_offsets"] = {"1": 0.05, "10": 0.0}
    (d / MANIFEST).write_text(json.dumps(m))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    with Recognizer.open(d, store=tmp_path / "s.npz") as r:
        r.learn("a", frames[:1])
        got = r.recognize(frames[0])
        assert got.label == "a" and got.score == pytest.approx(1.05, abs=1e-4)
        r.save()
    with Recognizer.open(d, store=tmp_path / "s.npz", options=RecognizerOptions(shot_calibration=False)) as r:
        assert r.recognize(frames[0]).score == pytest.approx(1.0, abs=1e-4)
