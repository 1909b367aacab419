"""The low-shot protocol's arithmetic on synthetic clustered embeddings (no dataset needed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")  # imprinting.export's package needs the training side installed

from imprinting.export import lowshot  # noqa: E402


def clusters(num_classes: int, per_class: int, dim: int = 32, spread: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = lowshot.unit_rows(rng.normal(size=(num_classes, dim)))
    labels = np.repeat(np.arange(num_classes), per_class)
    emb = lowshot.unit_rows(centres[labels] + spread * rng.normal(size=(len(labels), dim)) / np.sqrt(dim) * 4)
    return emb, labels


def test_imprinting_beats_random_rows_and_averaging_beats_one_shot():
    emb, labels = clusters(20, 30)
    train = np.arange(len(labels)) % 30 < 20
    test = ~train
    novel_mask = labels[test] >= 10
    base_rows = lowshot.class_means(emb[train], labels[train], np.arange(10))
    one = lowshot.class_means(emb[train & (np.arange(len(labels)) % 30 == 0)], labels[train & (np.arange(len(labels)) % 30 == 0)], np.arange(10, 20))
    many = lowshot.class_means(emb[train], labels[train], np.arange(10, 20))
    rand = lowshot.xavier_rows(10, emb.shape[1], 0)
    acc = {name: lowshot.score(lowshot.predict(emb[test], np.concatenate([base_rows, rows]), num_base=10), labels[test], novel_mask)
           for name, rows in (("rand", rand), ("one", one), ("many", many))}
    assert acc["rand"].novel < 10 < acc["one"].novel <= acc["many"].novel
    assert acc["many"].all > 80


def test_nearest_shot_and_templates_equal_imprinting_for_one_shot():
    emb, labels = clusters(6, 10, seed=1)
    base_rows = lowshot.class_means(emb, labels, np.arange(3))
    shots = np.array([30, 40, 50])  # one shot each of classes 3, 4, 5
    rows = np.concatenate([base_rows, emb[shots]])
    p1 = lowshot.predict(emb, rows, num_base=3)
    p2 = lowshot.predict_nearest_shot(emb, base_rows, emb[shots], labels[shots], 6)
    p3 = lowshot.predict_templates(emb, base_rows, emb[shots], labels[shots], 6, k=3)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(p1, p3)


def test_novel_offset_shifts_predictions_towards_novel_rows():
    emb, labels = clusters(4, 5, seed=2)
    rows = lowshot.class_means(emb, labels, np.arange(4))
    assert (lowshot.predict(emb, rows, novel_offset=5.0, num_base=2) >= 2).all()
    off = lowshot.choose_novel_offset(*clusters(20, 30, seed=3), n=1, seeds=1)
    assert 0.0 <= off <= 0.3
