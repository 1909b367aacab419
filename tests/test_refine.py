"""Refinement after imprinting (runtime/refine.py): its gradients, its decision, and how a store keeps it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from imprinting.runtime import ClassSet, ImprintedClassifier, Recognizer, read_store, write_store
from imprinting.runtime.refine import RefineOptions, fit, loss_and_grads, plan_refinement
from imprinting.runtime.refining import refine_classes, unrefine


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _anisotropic(k: int, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes whose means differ in a few dimensions while large noise shared by all classes fills others:
    the imprinted mean is not the best cosine template, and a map that damps the noise helps."""
    rng = np.random.default_rng(seed)
    means = np.zeros((k, d), np.float32)
    means[:, :8] = np.random.default_rng(99).standard_normal((k, 8))
    scale = np.ones(d, np.float32) * 0.3
    scale[8:24] = 2.5
    y = np.repeat(np.arange(k), n)
    x = means[y] + rng.standard_normal((k * n, d)).astype(np.float32) * scale
    return _unit(x), y


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    d, r, k, n = 12, 3, 5, 20
    x = _unit(rng.standard_normal((n, d)))
    y = rng.integers(0, k, n)
    params = [rng.standard_normal((d, r)) * 0.3, rng.standard_normal((d, r)) * 0.3, rng.standard_normal((k, d))]
    alpha, off = rng.random((n, 1)), rng.random(k) * 0.1
    _, grads = loss_and_grads(*params, x, y, alpha, off, 7.0)
    for p, g in zip(params, grads):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            p[idx] += 1e-6
            a = loss_and_grads(*params, x, y, alpha, off, 7.0)[0]
            p[idx] -= 2e-6
            b = loss_and_grads(*params, x, y, alpha, off, 7.0)[0]
            p[idx] += 1e-6
            num[idx] = (a - b) / 2e-6
        np.testing.assert_allclose(g, num, atol=1e-6)


def test_training_on_several_cores_gives_the_same_refinement_as_on_one():
    x, y = _anisotropic(8, 80, 48, seed=6)  # 640 shots: two chunks of 320
    rows = np.zeros((8, 48), np.float32)
    np.add.at(rows, y, x)
    one = fit(x, y, _unit(rows), 10.0, options=RefineOptions(rank=4, steps=10, threads=1))
    two = fit(x, y, _unit(rows), 10.0, options=RefineOptions(rank=4, steps=10, threads=2))
    for a, b in zip((one[0].u, one[0].v, one[1]), (two[0].u, two[0].v, two[1])):
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(one[1] - _unit(rows)).max() > 1e-3  # it trained at all
    with pytest.raises(ValueError, match="threads must be in"):
        RefineOptions(threads=-1)


def test_refining_declines_without_enough_shots_and_helps_where_imprinting_is_not_the_best_template():
    x, y = _anisotropic(10, 12, 64, seed=1)
    sums = np.zeros((10, 64), np.float32)
    np.add.at(sums, y, x)
    few = plan_refinement(sums, x, y, 10.0, options=RefineOptions(min_shots=13))
    assert not few.refined and "fewer than 13" in few.why and few.before is None
    plan = plan_refinement(sums, x, y, 10.0, options=RefineOptions(rank=8, lr=3e-3, steps=50))
    assert plan.refined, plan.why
    assert plan.after[0] >= plan.before[0]
    # On fresh samples of the same classes the refined answers beat the imprinted ones.
    t, ty = _anisotropic(10, 100, 64, seed=2)
    imprinted = ((t @ _unit(sums).T).argmax(1) == ty).mean()
    refined = (plan.refinement.cosines(t).argmax(1) == ty).mean()
    assert refined > imprinted + 0.05, (imprinted, refined)
    # Calibrated cosines stay on the imprinted rows' scale (the unknown threshold keeps its meaning).
    assert abs(np.median(plan.refinement.cosines(t).max(1)) - np.median((t @ _unit(sums).T).max(1))) < 0.1


def test_a_refinement_that_helps_is_trained_again_on_every_shot_and_one_that_does_not_is_declined():
    x, y = _anisotropic(10, 12, 64, seed=1)
    sums = np.zeros((10, 64), np.float32)
    np.add.at(sums, y, x)
    opt = RefineOptions(rank=8, lr=3e-3, steps=50)
    plan = plan_refinement(sums, x, y, 10.0, options=opt)
    assert plan.refined and plan.after[1] < plan.before[1]
    emap, rows = fit(x, y, _unit(sums), 10.0, options=opt)  # the same training on all shots
    np.testing.assert_allclose(plan.refinement.rows, rows, atol=1e-5)
    np.testing.assert_allclose(plan.refinement.map.u, emap.u, atol=1e-5)
    # Training with far too large steps (lr 0.5) on classes the imprinted rows already separate leaves the
    # held-out loss above the imprinted rows': the check declines.
    rng = np.random.default_rng(0)
    means = _unit(rng.standard_normal((4, 32)))
    yy = np.repeat(np.arange(4), 10)
    xx = _unit(means[yy] + 0.01 * rng.standard_normal((40, 32)).astype(np.float32))
    s2 = np.zeros((4, 32), np.float32)
    np.add.at(s2, yy, xx)
    worse = plan_refinement(s2, xx, yy, 10.0, options=RefineOptions(rank=4, lr=0.5, steps=20))
    assert not worse.refined and worse.after[1] >= worse.before[1] and worse.why.startswith("declined: on 4 held-out")


def test_a_refinement_is_saved_answers_until_a_class_changes_and_can_be_undone(tmp_path):
    x, y = _anisotropic(6, 12, 32, seed=3)
    classes = ClassSet(32, 10.0, "fp")
    clf = ImprintedClassifier(classes)
    with pytest.raises(ValueError, match="no classes yet"):
        refine_classes(ClassSet(32, 10.0, "fp"))
    for c in range(6):
        classes.learn(f"c{c}", x[y == c])
    plan = refine_classes(classes, RefineOptions(rank=4, lr=3e-3, steps=50, check=False))
    assert plan.refined and classes.refinement is not None
    t, _ = _anisotropic(6, 20, 32, seed=4)
    before = clf.scores(t)
    write_store(tmp_path / "s.npz", classes.to_store_data())
    again = ImprintedClassifier(ClassSet.from_store_data(read_store(tmp_path / "s.npz")))
    assert again.classes.refinement is not None
    np.testing.assert_allclose(again.scores(t), before, atol=1e-6)
    # A rename keeps it (the rows are unchanged); a remove keeps it for the other classes.
    again.classes.rename("c5", "five")
    assert again.classes.refinement is not None
    np.testing.assert_allclose(again.scores(t), before, atol=1e-6)
    again.classes.remove("c5" if "c5" in again.classes else "five")
    assert again.classes.refinement is not None
    np.testing.assert_allclose(again.scores(t), before[:, :5], atol=1e-6)
    again.classes.learn("c0", t[:1])  # any change to the classes drops it: the imprinted sums answer again
    assert again.classes.refinement is None
    assert unrefine(classes) and classes.refinement is None and not unrefine(classes)
    sums, inv_norms, _, _ = classes.arrays()
    np.testing.assert_allclose(clf.scores(t), _unit(t) @ (sums * inv_norms[:, None]).T, atol=1e-6)
    # A store whose refinement lost an array is refused with the reason.
    with zipfile.ZipFile(tmp_path / "s.npz") as z, zipfile.ZipFile(tmp_path / "bad.npz", "w") as out:
        for info in z.infolist():
            if info.filename != "refine_cos.npy":
                out.writestr(info, z.read(info))
    with pytest.raises(ValueError, match="must come together"):
        read_store(tmp_path / "bad.npz")


def test_a_refinement_of_classes_that_changed_while_it_trained_is_not_kept():
    x, y = _anisotropic(4, 12, 32, seed=5)
    classes = ClassSet(32, 10.0, "fp")
    for c in range(4):
        classes.learn(f"c{c}", x[y == c])
    taught = []

    def teach(step: int) -> None:  # another thread teaching meanwhile, as the camera does
        if not taught:
            taught.append(classes.learn("c0", _anisotropic(1, 1, 32, seed=8)[0]))

    plan = refine_classes(classes, RefineOptions(rank=4, steps=5, check=False), on_step=teach)
    assert taught and not plan.refined and "changed while refining" in plan.why
    assert classes.refinement is None and classes.count("c0") == 13


def test_imprint_refine_command_refines_saves_and_undoes(tiny_bundle, tmp_path):
    store = tmp_path / "classes.npz"
    rng = np.random.default_rng(5)
    with Recognizer.open(tiny_bundle, store) as r:
        d = r.manifest.embedding_dim
        centres = _unit(rng.standard_normal((3, d)))
        for c in range(3):
            r.class_set.learn(f"c{c}", centres[c] + 0.6 * rng.standard_normal((12, d)).astype(np.float32))
        r.save()

    def imprint(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "imprinting.cli", "refine", str(tiny_bundle), "--store", str(store),
                               *args], capture_output=True, text=True, timeout=120)

    res = imprint("--no-check")
    assert res.returncode == 0 and "refined 3 classes" in res.stdout, res.stderr
    assert read_store(store).refinement is not None
    res = imprint("--undo")
    assert res.returncode == 0 and "dropped the refinement" in res.stdout
    assert read_store(store).refinement is None
    missing = subprocess.run([sys.executable, "-m", "imprinting.cli", "refine", str(tiny_bundle), "--store",
                              str(tmp_path / "none.npz")], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no such class store" in missing.stderr


def test_a_refinement_without_the_check_reports_cosines_a_cosine_can_have():
    x, y = _anisotropic(5, 12, 48, seed=3)
    sums = np.stack([x[y == c].sum(0) for c in range(5)])
    plan = plan_refinement(sums, x, y, 10.0, None, RefineOptions(check=False))
    assert plan.refined and plan.refinement.cos_scale == 1.0  # only the mean is matched on training shots
    new, _ = _anisotropic(5, 40, 48, seed=4)  # photos it was not trained on
    cos = plan.refinement.cosines(new)
    assert cos.min() > -1.2 and cos.max() < 1.2, (cos.min(), cos.max())


def test_a_refinement_at_the_edge_of_its_calibration_range_saves_and_loads(tmp_path):
    from dataclasses import replace

    x, y = _anisotropic(3, 12, 16, seed=5)
    classes = ClassSet(16, 10.0, "fp")
    for c in range(3):
        classes.learn(f"c{c}", x[y == c])
    plan = refine_classes(classes, RefineOptions(check=False, steps=2))
    assert plan.refined
    for a in (0.01, 100.0):  # the clamp's ends: float32 in the file rounds them a hair outside
        edge = replace(classes.to_store_data(), refinement=replace(plan.refinement, cos_scale=a))
        write_store(tmp_path / "s.npz", edge)
        assert read_store(tmp_path / "s.npz").refinement.cos_scale == pytest.approx(a)
