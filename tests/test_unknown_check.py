"""The unknown policy on a class set's own shots (runtime/unknown_check.py): every count checked against a
second path that rebuilds the class set without the shot's photo (or without its class) and asks the runtime's
classifier."""

import numpy as np
import pytest

from imprinting.runtime import ClassSet, ImprintedClassifier, ShotOffsets, StoreData, UnknownPolicy
from imprinting.runtime.unknown_check import (LEVEL_SHOTS, MIN_RIGHT_FOR_LEVEL, NEAR_DUPLICATE, check_unknown,
                                               near_duplicate_groups)

D = 32


def store(rng, shots=(4, 3, 2, 1, 5, 2), spread=1.5) -> ClassSet:
    c = ClassSet(D, 10.0, "t")
    for k, n in enumerate(shots):
        centre = rng.standard_normal(D)
        c.learn(f"c{k}", centre + spread * rng.standard_normal((n, D)))
    return c


def with_extras(rng) -> ClassSet:
    """store() plus a base class (30 images, no kept shots) that later got 2 shots, a base class that got none,
    and a class of 3 near-identical frames plus 2 other photos."""
    c = store(rng)
    base = rng.standard_normal((2, D))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    c.merge(StoreData(("base", "base2"), (base * 30).astype(np.float32), np.array([30, 30]), 10.0, "t"))
    c.learn("base", base[0] + 1.5 * rng.standard_normal((2, D)))
    frame = rng.standard_normal(D)
    c.learn("framed", np.concatenate([frame + 0.02 * rng.standard_normal((3, D)), frame + 1.5 * rng.standard_normal((2, D))]))
    return c


def photo_groups(rows: np.ndarray) -> list[set[int]]:
    """The near-duplicate groups by transitive closure of the adjacency matrix (squaring until it settles)."""
    reach = (rows @ rows.T >= NEAR_DUPLICATE).astype(np.int64)
    while True:
        nxt = ((reach @ reach) > 0).astype(np.int64)
        if (nxt == reach).all():
            break
        reach = nxt
    return [set(np.flatnonzero(reach[i]).tolist()) for i in range(len(rows))]


def by_rebuilding(classes: ClassSet, policy: UnknownPolicy, offsets: ShotOffsets | None):
    right = kept = strangers = through = held = 0
    for lab in classes.labels:
        rows, ids = classes.shots(lab)
        groups = photo_groups(rows)
        for i, x in enumerate(rows):
            if len({min(g) for g in groups}) >= 2:
                held += 1
                rebuilt = ClassSet.from_store_data(classes.to_store_data())
                rebuilt.forget(lab, [ids[j] for j in groups[i]])
                r = ImprintedClassifier(rebuilt, policy, offsets).classify(x, top_k=1)[0]
                if r.top.label == lab:
                    right += 1
                    kept += not r.unknown
            if len(classes) >= 2:
                strangers += 1
                rest = ClassSet.from_store_data(classes.to_store_data())
                rest.remove(lab)
                r = ImprintedClassifier(rest, policy, offsets).classify(x, top_k=1)[0]
                through += not r.unknown
    return held, right, kept, strangers, through


@pytest.mark.parametrize("policy", [
    UnknownPolicy(min_cosine=0.5),
    UnknownPolicy(min_cosine=0.3, min_margin=0.05),
    UnknownPolicy(min_cosine=0.4, min_evidence_by_shots=ShotOffsets((1, 2, 5), (0.5, 0.45, 0.4))),
    UnknownPolicy(min_evidence_by_shots=ShotOffsets((1, 5), (0.4, 0.3)), min_margin=0.03),
    UnknownPolicy(),
])
@pytest.mark.parametrize("offsets", [None, ShotOffsets((1, 5), (0.08, 0.0))])
def test_both_trials_match_asking_the_classifier_with_the_photo_or_its_class_left_out(policy, offsets):
    classes = with_extras(np.random.default_rng(0))
    chk = check_unknown(classes, policy, offsets)
    held, right, kept, strangers, through = by_rebuilding(classes, policy, offsets)
    assert (chk.held_out, chk.right, chk.strangers) == (held, right, strangers)
    assert 0 < right < held  # the spread makes some held-out shots land elsewhere: both branches are checked
    assert chk.kept == pytest.approx(kept / right)
    assert chk.let_through == pytest.approx(through / strangers)
    assert not chk.sampled and chk.classes == 9 and chk.ranks_otherwise == ""


def test_frames_of_one_teach_are_one_photo():
    rng = np.random.default_rng(6)
    c = ClassSet(D, 10.0, "t")
    for k in range(8):  # 8 classes, each 6 frames of one view: nothing to hold out
        c.learn(f"c{k}", rng.standard_normal(D) + 0.05 * rng.standard_normal((6, D)))
    chk = check_unknown(c, UnknownPolicy(min_cosine=0.5))
    assert (chk.held_out, chk.right, chk.kept, chk.keep95) == (0, 0, None, None) and chk.strangers == 48
    rows, _ = c.shots("c0")
    assert near_duplicate_groups(rows).tolist() == [0] * 6
    # Two teaches of different views: two photos of 3 frames each, each group held out whole.
    v = rng.standard_normal((2, D))
    c.learn("two", np.repeat(v, 3, axis=0) + 0.05 * rng.standard_normal((6, D)))
    assert near_duplicate_groups(c.shots("two")[0]).tolist() == [0, 0, 0, 1, 1, 1]
    assert check_unknown(c, UnknownPolicy()).held_out == 6


def test_the_keep95_level_is_the_highest_evidence_that_keeps_95_percent_of_right_answers():
    rng = np.random.default_rng(1)
    classes = store(rng, shots=(6,) * 10, spread=0.6)
    chk = check_unknown(classes, UnknownPolicy())
    assert chk.right >= MIN_RIGHT_FOR_LEVEL and chk.level_from == chk.right
    at = check_unknown(classes, UnknownPolicy(min_evidence_by_shots=ShotOffsets((1,), (chk.keep95,))))
    above = check_unknown(classes, UnknownPolicy(min_evidence_by_shots=ShotOffsets((1,), (chk.keep95 + 2e-4,))))
    assert at.kept >= 0.95 > above.kept
    assert at.let_through == pytest.approx(chk.let_through_at_keep95, abs=1e-9)
    assert round(chk.keep95, 4) == chk.keep95


def test_a_store_of_single_shots_has_no_right_answers_to_keep_and_one_class_no_strangers():
    c = store(np.random.default_rng(2), shots=(1, 1, 1))
    chk = check_unknown(c, UnknownPolicy(min_cosine=0.5))
    assert (chk.held_out, chk.right, chk.kept, chk.keep95) == (0, 0, None, None)
    assert chk.strangers == 3 and chk.let_through is not None
    one = store(np.random.default_rng(3), shots=(4,))
    chk = check_unknown(one, UnknownPolicy(min_cosine=0.5))
    assert (chk.strangers, chk.let_through, chk.let_through_at_keep95) == (0, None, None)
    assert chk.held_out == 4 and chk.right == 4  # the only class is always the top one
    empty = check_unknown(ClassSet(D, 10.0, "t"), UnknownPolicy())
    assert (empty.classes, empty.held_out, empty.strangers) == (0, 0, 0)


def test_few_right_answers_or_few_photos_state_no_level():
    c = store(np.random.default_rng(4), shots=(5, 5), spread=1.0)
    chk = check_unknown(c, UnknownPolicy())
    assert 0 < chk.right < MIN_RIGHT_FOR_LEVEL and chk.keep95 is None and chk.level_from == chk.right
    # Plenty of right answers, but from classes of fewer than LEVEL_SHOTS photos (their level runs high).
    c = store(np.random.default_rng(4), shots=(LEVEL_SHOTS - 1,) * 12, spread=1.0)
    chk = check_unknown(c, UnknownPolicy())
    assert chk.right >= MIN_RIGHT_FOR_LEVEL and chk.keep95 is None and chk.level_from == 0
    assert check_unknown(c, UnknownPolicy(), level_shots=2).keep95 is not None


def test_max_shots_asks_a_sample_and_says_so():
    classes = store(np.random.default_rng(5), shots=(5,) * 8)
    chk = check_unknown(classes, UnknownPolicy(min_cosine=0.5), max_shots=10)
    assert chk.sampled and chk.strangers == 10 and chk.held_out == 10
    assert check_unknown(classes, UnknownPolicy(), max_shots=40).sampled is False
    with pytest.raises(ValueError, match="max_shots"):
        check_unknown(classes, UnknownPolicy(), max_shots=0)


def test_a_refined_or_templated_store_says_the_runtime_ranks_it_otherwise():
    c = ClassSet(D, 10.0, "t", templates_per_class=3)
    c.learn("a", np.random.default_rng(7).standard_normal((4, D)))
    assert check_unknown(c, UnknownPolicy()).ranks_otherwise == "3 templates per class"
