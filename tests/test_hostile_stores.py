"""Issue 25's cases: stores that would poison the class set are refused at every door with one line, nothing
the user taught is lost by an edit or a merge, and merges are idempotent by shot identity."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from hostile import _npz, good_store, hostile_stores
from imprinting.cli import main
from imprinting.runtime import ClassSet, Recognizer, RecognizerOptions, UnknownPolicy
from imprinting.runtime.store import read_store, write_store
from imprinting.runtime.store_sync import store_lock

D = 8
FP = "sha256:" + "ab" * 32
CASES = hostile_stores(D, FP)


@pytest.mark.parametrize("name", sorted(CASES))
def test_read_store_refuses_each_hostile_store_with_one_line(name):
    data, why = CASES[name]
    with pytest.raises(ValueError, match=why) as err:
        read_store(data)
    assert "\n" not in str(err.value)


def _write_good(path, labels=("jay", "wren"), seed=0, **meta_changes):
    meta, arrays = good_store(D, FP, labels, seed=seed)
    meta.update(meta_changes)
    path.write_bytes(_npz(meta, **arrays))
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_classes_import_refuses_each_hostile_store_and_leaves_the_store_as_it_was(name, tmp_path, capsys):
    store = _write_good(tmp_path / "s.npz")
    before = store.read_bytes()
    (tmp_path / "bad.npz").write_bytes(CASES[name][0])
    assert main(["classes", "import", "--store", str(store), str(tmp_path / "bad.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imprint: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["classes", "merge", str(store), str(tmp_path / "bad.npz"), "--out", str(tmp_path / "m.npz")]) == 1
    assert store.read_bytes() == before and not (tmp_path / "m.npz").exists()


def test_a_merge_whose_counts_would_pass_2_40_is_refused_and_later_saves_still_work(tmp_path):
    e = np.eye(D, dtype=np.float32)
    one = ClassSet(D, 10.0, FP)
    one.learn("jay", e[:1])
    big = one.to_store_data()
    big = type(big)(big.labels, big.sums, np.array([2**40], np.int64), 10.0, FP, 1, big.shots, big.shot_class,
                    big.shot_ids)
    other = ClassSet(D, 10.0, FP)
    other.learn("jay", e[1:2])
    o = other.to_store_data()
    o = type(o)(o.labels, o.sums, np.array([2**40], np.int64), 10.0, FP, 1, o.shots, o.shot_class, o.shot_ids)
    dest = ClassSet.from_store_data(big)
    with pytest.raises(ValueError, match=r"outside \[1, 2\^40\]"):
        dest.merge(o)
    assert dest.count("jay") == 2**40  # unchanged
    dest.learn("wren", e[2:3])
    write_store(tmp_path / "s.npz", dest.to_store_data())
    assert read_store(tmp_path / "s.npz").labels == ("jay", "wren")


def test_a_merge_never_changes_the_destinations_settings(tmp_path, capsys):
    a = _write_good(tmp_path / "a.npz")
    for name, change in (("scale", {"scale": 20.0}), ("templates_per_class", {"templates_per_class": 3})):
        b = _write_good(tmp_path / f"b-{name}.npz", **change)
        assert main(["classes", "import", "--store", str(a), str(b)]) == 1
        assert f"different settings: {name}" in capsys.readouterr().err
    assert read_store(a).scale == 10.0 and read_store(a).templates_per_class == 1


def _members(path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return sorted(z.namelist())


def test_rename_and_remove_keep_every_shot_of_every_class(tmp_path):
    store = _write_good(tmp_path / "s.npz", labels=("jay", "wren", "tit"))
    n_shots = read_store(store).shots.shape[0]
    assert main(["classes", "rename", "--store", str(store), "jay", "blue jay"]) == 0
    after = read_store(store)
    assert _members(store) == ["counts.npy", "meta.npy", "shot_class.npy", "shots.npy", "sums.npy"]
    assert after.labels == ("blue jay", "wren", "tit") and after.shots.shape[0] == n_shots
    assert main(["classes", "remove", "--store", str(store), "wren"]) == 0
    after = read_store(store)
    assert after.labels == ("blue jay", "tit") and after.shots.shape[0] == n_shots - 2
    assert np.bincount(after.shot_class).tolist() == [2, 2]


def test_exporting_onto_the_store_itself_is_refused(tmp_path, capsys):
    store = _write_good(tmp_path / "s.npz")
    before = store.read_bytes()
    assert main(["classes", "export", "--store", str(store), "--label", "jay", "--out", str(store)]) == 1
    assert "is the store itself" in capsys.readouterr().err
    os.symlink(store, tmp_path / "link.npz")
    assert main(["classes", "export", "--store", str(store), "--label", "jay", "--out", str(tmp_path / "link.npz")]) == 1
    assert store.read_bytes() == before


def test_merge_of_a_store_with_itself_is_the_store_and_import_twice_is_import_once(tmp_path):
    a = _write_good(tmp_path / "a.npz")
    assert main(["classes", "merge", str(a), str(a), "--out", str(tmp_path / "aa.npz")]) == 0
    x, y = read_store(a), read_store(tmp_path / "aa.npz")
    assert x.labels == y.labels and x.sums.tobytes() == y.sums.tobytes() and x.counts.tobytes() == y.counts.tobytes()
    assert x.shot_ids == y.shot_ids
    b = _write_good(tmp_path / "b.npz", labels=("jay", "tit"), seed=1)
    assert main(["classes", "import", "--store", str(a), str(b)]) == 0
    once = read_store(a)
    assert main(["classes", "import", "--store", str(a), str(b)]) == 0
    twice = read_store(a)
    assert once.sums.tobytes() == twice.sums.tobytes() and once.counts.tolist() == twice.counts.tolist() == [4, 2, 2]
    # export -> import is the identity
    assert main(["classes", "export", "--store", str(a), "--label", "jay", "--out", str(tmp_path / "j.npz")]) == 0
    assert main(["classes", "import", "--store", str(a), str(tmp_path / "j.npz")]) == 0
    assert read_store(a).sums.tobytes() == twice.sums.tobytes()


def test_the_same_photo_taught_on_two_devices_counts_once_when_merged(tiny_bundle, image_files, tmp_path):
    photos = image_files["red"][:3]
    with Recognizer.open(tiny_bundle, tmp_path / "phone.npz") as p:
        p.learn("red", photos[:2])
        p.save()
    with Recognizer.open(tiny_bundle, tmp_path / "robot.npz") as r:
        r.learn("red", photos[1:])  # photo 1 on both devices
        assert r.merge(tmp_path / "phone.npz") == ["red"]
        assert r.shots("red") == 3
        assert r.merge(tmp_path / "phone.npz") == []  # nothing new the second time
        report = r.learn("red", photos)
        assert report.added == () and len(report.repeats) == 3 and r.shots("red") == 3


def test_a_symlinked_store_is_updated_where_it_points(tmp_path):
    real = _write_good(tmp_path / "real.npz")
    link = tmp_path / "link.npz"
    os.symlink(real, link)
    assert main(["classes", "rename", "--store", str(link), "jay", "blue jay"]) == 0
    assert link.is_symlink() and read_store(real).labels == ("blue jay", "wren")


def test_the_store_lock_survives_deletion_of_its_lock_file(tmp_path):
    store = _write_good(tmp_path / "s.npz")
    with store_lock(store):
        (tmp_path / ".s.npz.lock").unlink()
        with pytest.raises(ValueError, match="being saved by another writer"):
            with store_lock(store, blocking=False):
                pass
    with store_lock(store, blocking=False):  # free again once released
        pass


def _call(url, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_camera_survives_every_hostile_merge_and_keeps_recognizing(tiny_bundle, tmp_path):
    import cv2

    from imprinting.runtime.api import ApiServer
    from imprinting.runtime.loop import CameraLoop, LoopOptions
    from imprinting.runtime.sources import open_source
    from tiny import pattern_image

    stop = threading.Event()

    def frames():
        i = 0
        while not stop.is_set():
            i += 1
            yield cv2.resize(pattern_image(i % 2, i % 7), (320, 240))

    opts = RecognizerOptions(unknown=UnknownPolicy(min_cosine=0.95))
    with Recognizer.open(tiny_bundle, tmp_path / "robot.npz", opts) as r:
        hostile = hostile_stores(r.embedding_dim, r.manifest.fingerprint)
        loop = CameraLoop(r, open_source(frames()), LoopOptions(smoothing=1, teach_frames=1))
        api = ApiServer(loop, port=0).start()
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            assert _call(f"{api.url}/teach", "POST", json.dumps({"label": "red", "frames": 1}).encode())[0] == 200
            for name, (data, why) in hostile.items():
                status, body = _call(f"{api.url}/store/merge", "POST", data)
                assert status == 400, (name, status, body)
                error = json.loads(body)["error"]
                assert error and "\n" not in error and "Traceback" not in error, (name, error)
            seen = loop.frames
            deadline = time.monotonic() + 60
            while loop.frames <= seen + 3 and time.monotonic() < deadline:  # it goes on recognizing
                time.sleep(0.01)
            assert thread.is_alive() and loop.frames > seen + 3
            status, body = _call(f"{api.url}/prediction")
            assert status == 200 and "NaN" not in body.decode() and json.loads(body)["frame"] >= seen
            assert dict(r.classes()) == {"red": 1} and read_store(tmp_path / "robot.npz").labels == ("red",)
        finally:
            stop.set()
            loop.stop()
            api.close()
            thread.join(30)


def test_api_answers_are_valid_json_even_for_a_non_finite_number():
    from imprinting.runtime.api_util import finite as _finite

    assert json.dumps(_finite({"a": [float("nan"), 1.0, {"b": float("inf")}]}), allow_nan=False) == \
        '{"a": [null, 1.0, {"b": null}]}'


def test_a_refinement_whose_held_out_loss_is_nan_declines(monkeypatch):
    from imprinting.runtime import refine

    rng = np.random.default_rng(0)
    e = rng.standard_normal((40, D)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    cls = np.repeat(np.arange(2), 20)
    sums = np.stack([e[cls == k].sum(0) for k in range(2)])
    calls = iter([(0.5, 0.7), (float("nan"), float("nan"))])
    monkeypatch.setattr(refine, "held_out_score", lambda *a, **k: next(calls))
    plan = refine.plan_refinement(sums, e, cls, 10.0, None, refine.RefineOptions(steps=2))
    assert not plan.refined and plan.why.startswith("declined")


def test_a_long_label_that_cannot_be_kept_apart_is_one_clear_refusal():
    e = np.eye(D, dtype=np.float32)
    long = "x" * 99
    a, b = ClassSet(D, 10.0, FP), ClassSet(D, 10.0, FP)
    a.learn(long, e[:1])
    b.learn(long, e[1:2])
    with pytest.raises(ValueError, match=f'cannot keep "{long}" apart as "{long} \\(2\\)": a label must be at most'):
        a.merge(b.to_store_data(), rename_conflicts=True)
    assert a.labels == (long,) and a.count(long) == 1
