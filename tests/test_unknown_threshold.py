"""The export-time unknown policy: per shot count, a quantile of never-taught top-1 evidence at the stated
false-accept rate, lowered where needed to keep the stated share of right answers."""

import json

import numpy as np
import pytest

from imprinting.export.unknown_threshold import ThresholdOptions, choose_threshold, threshold_images
from imprinting.runtime import ClassSet, ImprintedClassifier, ShotOffsets, UnknownPolicy
from imprinting.runtime.recognizer_options import evidence_table


def clusters(rng, sources=12, views=12, d=64, spread=0.3):
    centres = rng.standard_normal((sources, d))
    e = np.repeat(centres, views, axis=0) + spread * rng.standard_normal((sources * views, d))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(sources), views)


def test_threshold_keeps_the_stated_share_of_never_taught_images_and_most_taught_ones():
    rng = np.random.default_rng(0)
    e, g = clusters(rng)
    t = choose_threshold(e, g, ThresholdOptions(false_accept=0.05, trials=30, shots=(1,)))
    # Recompute the false-accept rate on fresh splits, independently of the function's own bookkeeping.
    fa, n = 0, 0
    for trial in range(30):
        order = np.random.default_rng(100 + trial).permutation(12)
        taught, rest = order[:6], order[6:]
        w = np.stack([e[g == s][0] for s in taught])
        top = (e[np.isin(g, rest)] @ w.T).max(1)
        fa += int((top >= t.min_cosine).sum())
        n += top.size
    assert 0.0 < fa / n < 0.12
    p = t.points[0]
    assert t.accept > 0.9 and p.sources == 12 and p.negatives > 0 and p.bound == "false_accept"


def test_a_stricter_false_accept_rate_raises_the_threshold_and_costs_accepts():
    e, g = clusters(np.random.default_rng(1), spread=0.9)
    ts = [choose_threshold(e, g, ThresholdOptions(false_accept=f, accept=0.5, shots=(1,))) for f in (0.2, 0.05, 0.01)]
    assert ts[0].min_cosine < ts[1].min_cosine < ts[2].min_cosine
    assert ts[0].accept >= ts[1].accept >= ts[2].accept and ts[0].accept > ts[2].accept


def test_every_shot_count_keeps_the_stated_share_of_right_answers():
    # Sources that overlap a lot: the false-accept target alone would throw most right answers away.
    e, g = clusters(np.random.default_rng(3), spread=1.6)
    t = choose_threshold(e, g, ThresholdOptions(false_accept=0.05, accept=0.95))
    assert [p.shots for p in t.points] == [1, 2, 5, 10]
    for p in t.points:
        assert p.accept >= 0.95 and p.bound == "accept" and p.false_accept > 0.05
    m = t.to_manifest()
    assert m["unknown_min_cosine"] == t.points[0].min_cosine
    assert evidence_table(json.loads(json.dumps(m["unknown_min_evidence_by_shots"]))) == t.table
    assert set(m["unknown_rates_by_shots"]["5"]) >= {"false_accept", "accept"}


def test_shot_counts_the_sources_cannot_support_are_left_out():
    e, g = clusters(np.random.default_rng(4), views=6)
    t = choose_threshold(e, g)
    assert [p.shots for p in t.points] == [1, 2, 5]


def test_too_few_sources_is_a_clear_error():
    rng = np.random.default_rng(2)
    e, g = clusters(rng, sources=3)
    with pytest.raises(ValueError, match="at least 4 sources"):
        choose_threshold(e, g)
    with pytest.raises(ValueError, match="false_accept"):
        ThresholdOptions(false_accept=0.7)
    with pytest.raises(ValueError, match="accept"):
        ThresholdOptions(accept=1.0)


def test_class_folders_are_sources(tmp_path):
    import cv2

    rng = np.random.default_rng(5)
    for c in range(4):
        (tmp_path / f"c{c}").mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / f"c{c}" / f"{i}.png"), rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
    images, groups = threshold_images(tmp_path)
    assert len(images) == 12 and sorted(np.bincount(groups)) == [3, 3, 3, 3]
    (tmp_path / "loose.png").write_bytes((tmp_path / "c0" / "0.png").read_bytes())
    images, groups = threshold_images(tmp_path / "c0")  # a flat folder: each photo a source with its views
    assert len(images) == 3 * 12 and len(set(groups.tolist())) == 3


def test_the_evidence_table_decides_by_the_top_class_shot_count():
    """A class of 4 identical shots has evidence = cosine; 4 spread shots raise the bar by n / |S|."""
    d = 8
    classes = ClassSet(d, 10.0, "t")
    a = np.eye(d, dtype=np.float32)
    classes.learn("one", a[:1])
    spread = np.stack([a[1] + a[2], a[1] - a[2], a[1] + a[3], a[1] - a[3]]) / np.sqrt(2)
    classes.learn("four", spread)
    table = ShotOffsets((1, 4), (0.5, 0.5))
    clf = ImprintedClassifier(classes, UnknownPolicy(min_cosine=0.5, min_evidence_by_shots=table))
    q = a[1] * 0.6 + a[4] * 0.8  # cosine 0.6 to "four" (its row is a[1]), evidence 0.6 * |S| / 4 = 0.42
    r = clf.classify(q)[0]
    assert r.top.label == "four" and r.top.cosine == pytest.approx(0.6, abs=1e-6) and r.unknown
    assert not ImprintedClassifier(classes, UnknownPolicy(min_cosine=0.5)).classify(q)[0].unknown
    q1 = a[0] * 0.6 + a[4] * 0.8  # cosine 0.6 to the one-shot class: evidence 0.6 >= 0.5
    assert not clf.classify(q1)[0].unknown and clf.classify(q1)[0].label == "one"


@pytest.mark.parametrize("value", [None, {}, [0.4], {"1": True}, {"0": 0.4}, {"01": 0.4}, {"1": 1.5}, {"1": "0.4"},
                                   {"1.5": 0.4}, {"x": 0.4}, {"1": float("nan")}])
def test_a_malformed_table_is_ignored(value):
    assert evidence_table(value) is None


def test_a_loose_policy_says_why_and_what_to_do(tmp_path, caplog):
    from imprinting.export.unknown_threshold import warn_if_loose

    e, g = clusters(np.random.default_rng(3), spread=1.6)
    t = choose_threshold(e, g)
    (tmp_path / "a.png").write_bytes(b"")  # a flat folder: photos of one thing would be counted as strangers
    with caplog.at_level("WARNING"):
        warn_if_loose(t, tmp_path)
    assert "lets" in caplog.text and "subfolder of its own" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_if_loose(t, None)
    assert "barely tells these classes apart" in caplog.text


def test_cached_bars_are_the_policy_bars_and_follow_teaching_and_policy_changes():
    from imprinting.runtime.ranking import class_bars

    rng = np.random.default_rng(7)
    classes = ClassSet(16, 10.0, "t")
    for k, n in enumerate((1, 3, 7, 30)):
        classes.learn(f"c{k}", rng.standard_normal((n, 16)).astype(np.float32))
    policy = UnknownPolicy(min_cosine=0.3, min_evidence_by_shots=ShotOffsets((1, 2, 10), (0.2, 0.3, 0.35)))
    _, inv, counts, _ = classes.arrays()
    bars = class_bars(policy, counts, inv)
    assert bars.tolist() == [policy.cosine_threshold(int(n), v) for n, v in zip(counts, inv)]
    clf = ImprintedClassifier(classes, policy)
    q = rng.standard_normal((50, 16)).astype(np.float32)
    before = [r.unknown for r in clf.classify(q, top_k=1)]
    fresh = [r.unknown for r in ImprintedClassifier(classes, policy).classify(q, top_k=1)]
    assert before == fresh
    classes.learn("c0", rng.standard_normal((20, 16)).astype(np.float32))  # c0's bar moves with its count
    assert [r.unknown for r in clf.classify(q, top_k=1)] == \
        [r.unknown for r in ImprintedClassifier(classes, policy).classify(q, top_k=1)]
    clf.unknown = UnknownPolicy(min_cosine=0.99)
    assert all(r.unknown for r in clf.classify(q, top_k=1))


def test_a_flat_calib_dir_leaves_the_unknown_policy_to_the_sample_photos(tmp_path, caplog):
    """Photos of one thing in a flat folder would count as strangers of each other: the policy comes from the
    sample photos, the export says so and what to do, and the manifest names where it was measured."""
    torch = pytest.importorskip("torch")
    import cv2

    from imprinting.export.unknown_threshold import threshold_for
    from imprinting.runtime.preprocess import PreprocessSpec

    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 4, 4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten()).eval()
    spec = PreprocessSpec(input_size=32, resize_size=36)
    with caplog.at_level("WARNING"):
        flat = threshold_for(model, spec, tmp_path, 0.05)
    assert "has no class subfolders" in caplog.text and "subfolder of its own" in caplog.text
    samples = threshold_for(model, spec, None, 0.05)
    assert flat.points == samples.points and flat.to_manifest()["unknown_source"].startswith("scikit-image")
