"""Random sequences of every class-set operation against a simple reference model, checking the invariants
after every step (Hypothesis stateful testing). The reference: label -> {shot id: unit vector}; the class
set must hold exactly those classes and shots, with sums equal to their sums, after any sequence of learn,
forget (undo), rename, remove, merge, export + import, refine, save and reload."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from imprinting.runtime import ClassSet
from imprinting.runtime.invariants import check_store_data
from imprinting.runtime.refine import RefineOptions
from imprinting.runtime.refining import refine_classes, unrefine
from imprinting.runtime.store import read_store, store_bytes
from imprinting.runtime.store_sync import subset

D = 6
_rng = np.random.default_rng(7)
POOL = _rng.standard_normal((16, D)).astype(np.float32)
POOL /= np.linalg.norm(POOL, axis=1, keepdims=True)
IDS = [f"photo{i:02d}" for i in range(len(POOL))]
LABELS = ["jay", "wren", "tit", "Blue jay", "é"]
STEPS = {"n": 0}

labels = st.sampled_from(LABELS)
shot_sets = st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4)


class ClassSetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cs = ClassSet(D, 10.0, "fp")
        self.ref: dict[str, dict[str, np.ndarray]] = {}
        self.history: list[tuple[str, tuple[str, ...]]] = []

    @rule(label=labels, shots=shot_sets)
    def learn(self, label, shots):
        learned = self.cs.learn(label, POOL[shots], ids=[IDS[i] for i in shots])
        cls = self.ref.setdefault(label, {})
        new = [IDS[i] for i in dict.fromkeys(shots) if IDS[i] not in cls]
        assert list(learned.added) == new
        for i in shots:
            cls.setdefault(IDS[i], POOL[i])
        if new:
            self.history.append((label, learned.added))

    @precondition(lambda self: self.history)
    @rule()
    def undo(self):
        label, ids = self.history.pop()
        if label not in self.ref:
            return
        self.cs.forget(label, ids)
        for i in ids:
            self.ref[label].pop(i, None)
        if not self.ref[label]:
            del self.ref[label]

    @precondition(lambda self: self.ref)
    @rule(data=st.data(), new=labels)
    def rename(self, data, new):
        old = data.draw(st.sampled_from(sorted(self.ref)))
        if new in self.ref and new != old:
            return
        refined = self.cs.refinement
        self.cs.rename(old, new)
        self.ref = {(new if k == old else k): v for k, v in self.ref.items()}
        self.history = [((new if lab == old else lab), ids) for lab, ids in self.history]
        assert self.cs.refinement is refined  # a rename keeps the refinement

    @precondition(lambda self: self.ref)
    @rule(data=st.data())
    def remove(self, data):
        label = data.draw(st.sampled_from(sorted(self.ref)))
        self.cs.remove(label)
        del self.ref[label]

    @rule(label=labels, shots=shot_sets, rename=st.booleans())
    def merge_another_device(self, label, shots, rename):
        other = ClassSet(D, 10.0, "fp")
        other.learn(label, POOL[shots], ids=[IDS[i] for i in shots])
        before = self.cs.to_store_data()
        changed = self.cs.merge(other.to_store_data(), rename_conflicts=rename)
        fresh = {IDS[i]: POOL[i] for i in shots}
        namesakes = [label]  # label, "label (2)", ... up to the first that does not exist
        while rename and f"{label} ({len(namesakes) + 1})" in self.ref:
            namesakes.append(f"{label} ({len(namesakes) + 1})")
        held = any(n in self.ref and set(fresh) <= set(self.ref[n]) for n in namesakes)
        if label in self.ref and not held:
            target = next(n for n in (f"{label} ({k})" for k in range(2, 99)) if n not in self.ref) if rename else label
            self.ref.setdefault(target, {}).update(fresh)
            assert changed == [target]
        elif label not in self.ref:
            self.ref[label] = fresh
            assert changed == [label]
        else:
            assert changed == [] and self.cs.to_store_data().sums.tobytes() == before.sums.tobytes()

    @rule()
    def merge_with_itself(self):
        before = self.cs.to_store_data()
        assert self.cs.merge(before) == []
        after = self.cs.to_store_data()
        assert after.sums.tobytes() == before.sums.tobytes() and after.counts.tobytes() == before.counts.tobytes()

    @precondition(lambda self: self.ref)
    @rule(data=st.data())
    def export_then_import(self, data):
        label = data.draw(st.sampled_from(sorted(self.ref)))
        part = read_store(store_bytes(subset(self.cs.to_store_data(), [label])))
        before = self.cs.to_store_data()
        assert self.cs.merge(part) == []  # export -> import is the identity
        assert self.cs.to_store_data().sums.tobytes() == before.sums.tobytes()

    @rule()
    def save_and_reload(self):
        again = ClassSet.from_store_data(read_store(store_bytes(self.cs.to_store_data())))
        assert again.to_store_data().sums.tobytes() == self.cs.to_store_data().sums.tobytes()
        self.cs = again

    @precondition(lambda self: len(self.ref) >= 2)
    @rule()
    def refine(self):
        plan = refine_classes(self.cs, RefineOptions(rank=2, steps=2, min_shots=2, check=False, threads=1))
        few = min(len(v) for v in self.ref.values()) < 2
        assert plan.refined != few and (self.cs.refinement is not None) == plan.refined
        unrefine(self.cs) if plan.refined and len(self.history) % 2 else None

    @invariant()
    def matches_the_reference(self):
        STEPS["n"] += 1
        data = self.cs.to_store_data()
        check_store_data(data, "after a step")
        assert data.labels == tuple(self.ref) or set(data.labels) == set(self.ref)
        for k, label in enumerate(data.labels):
            shots = self.ref[label]
            assert data.counts[k] == len(shots)
            assert set(np.array(data.shot_ids)[data.shot_class == k]) == set(shots)
            np.testing.assert_allclose(data.sums[k], np.sum(list(shots.values()), axis=0), atol=1e-5)


def test_random_sequences_of_class_edits_keep_every_invariant():
    STEPS["n"] = 0
    run_state_machine_as_test(ClassSetMachine, settings=settings(
        max_examples=60, stateful_step_count=50, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck)))
    assert STEPS["n"] >= 2000, f"only {STEPS['n']} steps ran"
