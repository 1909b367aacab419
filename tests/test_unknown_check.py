"""The unknown policy on a class set's own shots (runtime/unknown_check.py): every count checked against a
second path that rebuilds the class set without the shot (or its class) and asks the runtime's classifier."""

import numpy as np
import pytest

from imprinting.runtime import ClassSet, ImprintedClassifier, ShotOffsets, UnknownPolicy
from imprinting.runtime.unknown_check import LEVEL_SHOTS, MIN_RIGHT_FOR_LEVEL, check_unknown

D = 32


def store(rng, shots=(4, 3, 2, 1, 5, 2), spread=1.5) -> ClassSet:
    c = ClassSet(D, 10.0, "t")
    for k, n in enumerate(shots):
        centre = rng.standard_normal(D)
        c.learn(f"c{k}", centre + spread * rng.standard_normal((n, D)))
    return c


def rebuilt(classes: ClassSet, skip_label: str, skip_row: int | None) -> ClassSet:
    """The class set without one shot (skip_row) or without the whole class (skip_row None)."""
    out = ClassSet(D, classes.scale, "t")
    for lab in classes.labels:
        rows, _ = classes.shots(lab)
        if lab == skip_label:
            if skip_row is None or len(rows) == 1:
                continue
            rows = np.delete(rows, skip_row, axis=0)
        out.learn(lab, rows)
    return out


def by_rebuilding(classes: ClassSet, policy: UnknownPolicy, offsets: ShotOffsets | None):
    right = kept = strangers = through = held = 0
    for lab in classes.labels:
        rows, _ = classes.shots(lab)
        for i, x in enumerate(rows):
            if len(rows) >= 2:
                held += 1
                r = ImprintedClassifier(rebuilt(classes, lab, i), policy, offsets).classify(x, top_k=1)[0]
                if r.top.label == lab:
                    right += 1
                    kept += not r.unknown
            if len(classes) >= 2:
                strangers += 1
                r = ImprintedClassifier(rebuilt(classes, lab, None), policy, offsets).classify(x, top_k=1)[0]
                through += not r.unknown
    return held, right, kept, strangers, through


@pytest.mark.parametrize("policy", [
    UnknownPolicy(min_cosine=0.5),
    UnknownPolicy(min_cosine=0.3, min_margin=0.05),
    UnknownPolicy(min_cosine=0.4, min_evidence_by_shots=ShotOffsets((1, 2, 5), (0.5, 0.45, 0.4))),
    UnknownPolicy(),
])
@pytest.mark.parametrize("offsets", [None, ShotOffsets((1, 5), (0.08, 0.0))])
def test_both_trials_match_asking_the_classifier_with_the_shot_or_its_class_left_out(policy, offsets):
    classes = store(np.random.default_rng(0))
    chk = check_unknown(classes, policy, offsets)
    held, right, kept, strangers, through = by_rebuilding(classes, policy, offsets)
    assert (chk.held_out, chk.right, chk.strangers) == (held, right, strangers)
    assert 0 < right < held  # the spread makes some held-out shots land elsewhere: both branches are checked
    assert chk.kept == pytest.approx(kept / right)
    assert chk.let_through == pytest.approx(through / strangers)
    assert not chk.sampled and chk.classes == 6


def test_the_keep95_level_is_the_evidence_that_keeps_95_percent_of_right_answers():
    rng = np.random.default_rng(1)
    classes = store(rng, shots=(6,) * 10, spread=0.6)
    chk = check_unknown(classes, UnknownPolicy())
    assert chk.right >= MIN_RIGHT_FOR_LEVEL
    # A policy at that level (one evidence value for every shot count) keeps at least 95% of them, and a level
    # just above it keeps fewer (it is a held-out right answer's own evidence).
    at = check_unknown(classes, UnknownPolicy(min_evidence_by_shots=ShotOffsets((1,), (chk.keep95,))))
    above = check_unknown(classes, UnknownPolicy(min_evidence_by_shots=ShotOffsets((1,), (chk.keep95 + 1e-6,))))
    assert at.kept >= 0.95 and above.kept < at.kept
    assert at.let_through == pytest.approx(chk.let_through_at_keep95, abs=1e-9)


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


def test_few_right_answers_or_few_shots_state_no_level():
    c = store(np.random.default_rng(4), shots=(5, 5), spread=0.3)
    chk = check_unknown(c, UnknownPolicy())
    assert 0 < chk.right < MIN_RIGHT_FOR_LEVEL and chk.keep95 is None and chk.level_from == chk.right
    # Plenty of right answers, but from classes of fewer than LEVEL_SHOTS shots (their level runs high).
    c = store(np.random.default_rng(4), shots=(LEVEL_SHOTS - 1,) * 12, spread=0.3)
    chk = check_unknown(c, UnknownPolicy())
    assert chk.right >= MIN_RIGHT_FOR_LEVEL and chk.keep95 is None and chk.level_from == 0
    c.learn("c0", np.random.default_rng(5).standard_normal((1, D)) * 0.1 + c.shots("c0")[0].mean(0))
    chk = check_unknown(c, UnknownPolicy())
    assert chk.level_from == LEVEL_SHOTS and chk.keep95 is None  # one class of 5 shots: 5 right answers


def test_max_shots_asks_a_sample_and_says_so():
    classes = store(np.random.default_rng(5), shots=(5,) * 8)
    chk = check_unknown(classes, UnknownPolicy(min_cosine=0.5), max_shots=10)
    assert chk.sampled and chk.strangers == 10 and chk.held_out == 10
    assert check_unknown(classes, UnknownPolicy(), max_shots=40).sampled is False
    with pytest.raises(ValueError, match="max_shots"):
        check_unknown(classes, UnknownPolicy(), max_shots=0)
