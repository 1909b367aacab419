"""Several writers on one class store lose nothing: merges are exact (sums and counts), and concurrent
processes that each teach and save all keep their classes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np

from imprinting.runtime import ClassSet, ImprintedClassifier, Recognizer
from imprinting.runtime.store import read_store, write_store
from imprinting.runtime.merge import three_way as merge_stores
from imprinting.runtime.store_sync import save_merged

D = 8


def _clf(classes: dict[str, np.ndarray]) -> ClassSet:
    clf = ClassSet(D, 10.0, "fp")
    for label, e in classes.items():
        clf.learn(label, e)
    return clf


def _e(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def test_two_writers_from_one_base_merge_exactly(tmp_path):
    path = tmp_path / "s.npz"
    base_clf = _clf({"cat": _e(0, 2), "dog": _e(1)})
    write_store(path, base_clf.to_store_data())
    base = read_store(path)
    a = ClassSet.from_store_data(base)
    a.learn("cat", _e(2))
    a.learn("mug", _e(3))
    a.remove("dog")
    b = ClassSet.from_store_data(base)
    b.learn("cat", _e(4, 3))
    b.learn("book", _e(5))
    save_merged(path, base, a.to_store_data())
    merged = read_store(path)
    save_merged(path, base, b.to_store_data())  # b saved later, from the same old base
    final = read_store(path)
    assert set(merged.labels) == {"cat", "mug"}
    assert set(final.labels) == {"cat", "mug", "book"}  # dog stays removed: b never changed it
    # cat taught from every shot of both writers: exactly the class one writer would have made.
    whole = _clf({"cat": np.concatenate([_e(0, 2), _e(2), _e(4, 3)])}).to_store_data()
    k = final.labels.index("cat")
    assert final.counts[k] == 6
    np.testing.assert_allclose(final.sums[k], whole.sums[0], rtol=1e-5, atol=1e-6)


def test_shots_added_elsewhere_to_a_class_removed_here_are_kept():
    base = _clf({"cat": _e(0)}).to_store_data()
    theirs_clf = ClassSet.from_store_data(base)
    theirs_clf.learn("cat", _e(1))
    ours = ClassSet(D, 10.0, "fp").to_store_data()  # we removed cat
    out = merge_stores(base, ours, theirs_clf.to_store_data())
    assert out.labels == ("cat",) and out.counts.tolist() == [1]
    np.testing.assert_allclose(out.sums[0], _clf({"x": _e(1)}).to_store_data().sums[0], atol=1e-6)


def test_a_store_of_another_model_on_disk_is_not_merged_into(tmp_path):
    import pytest

    base = _clf({"cat": _e(0)}).to_store_data()
    other = ClassSet(D, 10.0, "another-model")
    other.learn("x", _e(1))
    write_store(tmp_path / "s.npz", other.to_store_data())
    with pytest.raises(ValueError, match="replaced by one for another model"):
        save_merged(tmp_path / "s.npz", base, base)
    with pytest.raises(ValueError, match="different models"):
        merge_stores(base, base, other.to_store_data())
    assert read_store(tmp_path / "s.npz").labels == ("x",)


def _teach_and_save(bundle: str, store: str, image: str, worker: int, rounds: int) -> None:
    for i in range(rounds):
        with Recognizer.open(bundle, store) as r:
            r.learn(f"w{worker}-{i}", image)
            r.save()


def test_processes_teaching_one_store_at_once_lose_no_class(tiny_bundle, image_files, tmp_path):
    store = tmp_path / "shared.npz"
    image = str(image_files["red"][0])
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_teach_and_save, args=(str(tiny_bundle), str(store), image, w, 6)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    labels = set(read_store(store).labels)
    assert labels == {f"w{w}-{i}" for w in range(4) for i in range(6)}, sorted(labels)
    assert not list(Path(tmp_path).glob(".shared.npz.*.tmp"))


def test_a_recognizer_sees_classes_saved_by_another_after_its_own_save(tiny_bundle, image_files, tmp_path):
    store = tmp_path / "s.npz"
    with Recognizer.open(tiny_bundle, store) as a, Recognizer.open(tiny_bundle, store) as b:
        a.learn("red", image_files["red"][:2])
        a.save()
        b.learn("blue", image_files["blue"][:1])
        b.save()
        assert set(b.labels) == {"red", "blue"}
        a.save()  # nothing new from a: the file keeps both
    assert set(read_store(store).labels) == {"red", "blue"}


def test_stores_taught_on_two_devices_merge_into_the_store_taught_with_all_shots(tmp_path):
    import pytest

    from imprinting.runtime.merge import combine
    from imprinting.runtime.store_sync import subset

    shots = {"cat": _e(10, 4), "dog": _e(11, 3), "mug": _e(12, 2)}
    one = _clf(shots).to_store_data()
    a = _clf({"cat": shots["cat"][:2], "dog": shots["dog"]}).to_store_data()
    b = _clf({"cat": shots["cat"][2:], "mug": shots["mug"]}).to_store_data()
    merged = combine([a, b])
    assert sorted(merged.labels) == ["cat", "dog", "mug"]
    for lab in one.labels:
        i, j = one.labels.index(lab), merged.labels.index(lab)
        assert merged.counts[j] == one.counts[i]
        np.testing.assert_allclose(merged.sums[j], one.sums[i], rtol=1e-5, atol=1e-6)
    q = _e(13, 20)
    c1, c2 = (ImprintedClassifier(ClassSet.from_store_data(d)) for d in (one, merged))
    assert [r.top.label for r in c1.classify(q)] == [r.top.label for r in c2.classify(q)]
    kept = combine([a, b], rename_conflicts=True)
    assert sorted(kept.labels) == ["cat", "cat (2)", "dog", "mug"]
    assert subset(merged, ["mug"]).labels == ("mug",)
    other = ClassSet(D, 10.0, "another-model")
    other.learn("x", _e(1))
    with pytest.raises(ValueError, match="different models"):
        combine([a, other.to_store_data()])


def test_classes_merge_export_import_from_the_cli(tmp_path, capsys):
    from imprinting.cli import main

    write_store(tmp_path / "a.npz", _clf({"cat": _e(0, 2), "dog": _e(1)}).to_store_data())
    write_store(tmp_path / "b.npz", _clf({"cat": _e(2), "mug": _e(3)}).to_store_data())
    assert main(["classes", "merge", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", str(tmp_path / "c.npz")]) == 0
    c = read_store(tmp_path / "c.npz")
    assert dict(zip(c.labels, c.counts.tolist())) == {"cat": 3, "dog": 1, "mug": 1}
    assert main(["classes", "export", "--store", str(tmp_path / "b.npz"), "--label", "mug", "--out", str(tmp_path / "m.npz")]) == 0
    assert main(["classes", "import", "--store", str(tmp_path / "a.npz"), str(tmp_path / "m.npz")]) == 0
    assert dict(zip(*(lambda s: (s.labels, s.counts.tolist()))(read_store(tmp_path / "a.npz")))) == {"cat": 2, "dog": 1, "mug": 1}
    from imprinting.runtime.store import StoreData

    write_store(tmp_path / "x.npz", StoreData(("z",), np.full((1, D), 0.25, np.float32), np.ones(1, np.int64), 10.0, "other"))
    assert main(["classes", "merge", str(tmp_path / "a.npz"), str(tmp_path / "x.npz"), "--out", str(tmp_path / "y.npz")]) == 1
    assert "different models" in capsys.readouterr().err


_LOOPING_WRITER = r"""
import sys
import numpy as np
from imprinting.runtime import ClassSet
from imprinting.runtime.store import read_store
from imprinting.runtime.store_sync import save_merged
from pathlib import Path
path, tag = Path(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(abs(hash(tag)) % 2**32)
for i in range(10**6):
    base = read_store(path) if path.exists() else None
    clf = ClassSet.from_store_data(base) if base else ClassSet(8, 10.0, "fp")
    clf.learn(f"{tag}-{i}", rng.standard_normal(8).astype(np.float32))
    save_merged(path, base, clf.to_store_data())
    print(f"{tag}-{i}", flush=True)
"""


def test_writers_killed_at_random_moments_lose_no_saved_class_and_leave_no_stuck_lock(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "s.npz"
    saved: set[str] = set()
    rnd = random.Random(0)
    for k in range(8):
        procs = [subprocess.Popen([sys.executable, "-c", _LOOPING_WRITER, str(store), f"k{k}w{w}"], stdout=subprocess.PIPE,
                                  text=True) for w in range(2)]
        for p in procs:
            saved.add(p.stdout.readline().strip())  # at least one save done
        time.sleep(rnd.uniform(0.0, 0.3))
        for p in procs:
            p.send_signal(signal.SIGKILL)
            out, _ = p.communicate()
            saved |= {line for line in out.splitlines() if line}
        labels = set(read_store(store).labels)  # readable after every kill
        assert saved <= labels, sorted(saved - labels)[:5]
    assert len(saved) >= 16


def test_a_save_with_new_templates_merges_with_another_writers_save(tmp_path):
    path = tmp_path / "s.npz"
    write_store(path, _clf({"cat": _e(0, 2)}).to_store_data())
    base = read_store(path)
    other = ClassSet.from_store_data(base)
    other.learn("dog", _e(1))
    save_merged(path, base, other.to_store_data())  # another writer saved meanwhile
    ours = ClassSet.from_store_data(base, templates_per_class=3)  # `imprint learn --templates 3`
    ours.learn("cat", _e(2))
    out = save_merged(path, base, ours.to_store_data())
    assert out.templates_per_class == 3 and dict(zip(out.labels, out.counts.tolist())) == {"cat": 3, "dog": 1}
