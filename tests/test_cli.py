"""The CLI round trip a new user does, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _cli import imprint


def ok(*args: str) -> str:
    res = imprint(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_learn_classify_rename_remove_restart(tiny_bundle, image_files, tmp_path):
    store = tmp_path / "classes.npz"
    for name in ("red", "green", "blue"):
        out = ok("learn", tiny_bundle, "--store", store, "--label", name, *image_files[name][:2])
        assert f"learned '{name}' from 2 image(s)" in out
    ok("learn", tiny_bundle, "--store", store, "--label", "blue", image_files["blue"][2])
    listing = json.loads(ok("classes", "list", "--store", store, "--json"))
    assert listing == [{"label": "red", "shots": 2}, {"label": "green", "shots": 2}, {"label": "blue", "shots": 3}]

    queries = [image_files["red"][3], image_files["green"][3], image_files["blue"][3]]
    rows = [json.loads(line) for line in ok("classify", tiny_bundle, "--store", store, "--json", *queries).splitlines()]
    assert [r["label"] for r in rows] == ["red", "green", "blue"]
    assert rows[0]["image"] == str(queries[0]) and len(rows[0]["categories"]) == 3
    assert rows[0]["categories"][0]["score"] > rows[0]["categories"][1]["score"] and rows[0]["cosine"] > 0

    ok("classes", "rename", "--store", store, "green", "leaf")
    ok("classes", "remove", "--store", store, "red")
    from imprinting.runtime import read_store

    data = read_store(store)  # rename and remove keep every other class's shots
    assert data.labels == ("leaf", "blue") and data.counts.tolist() == [2, 3]
    assert data.shot_class.tolist() == [0, 0, 1, 1, 1] and len(set(data.shot_ids)) == 5
    # A new process (a restart) sees exactly what was saved.
    rows = [json.loads(line) for line in ok("classify", tiny_bundle, "--store", store, "--json", "--top-k", "1", *queries[1:]).splitlines()]
    assert [[c["label"] for c in r["categories"]] for r in rows] == [["leaf"], ["blue"]]
    text = ok("classify", tiny_bundle, "--store", store, queries[2])
    assert text.startswith(f"{queries[2]}: blue")
    assert "tiny-test" in ok("info", tiny_bundle)


@pytest.mark.parametrize(
    "args, message",
    [
        (["classes", "list", "--store", "{missing}"], "does not exist"),
        (["learn", "{bundle}", "--store", "{store}", "--label", "", "{image}"], "must not be empty"),
        (["learn", "{bundle}", "--store", "{store}", "--label", "x" * 200, "{image}"], "at most 100"),
        (["learn", "{bundle}", "--store", "{store}", "--label", "a", "{corrupt}"], "cannot decode"),
        (["learn", "{bundle}", "--store", "{store}", "--label", "a", "{empty}"], "is empty"),
        (["learn", "{tmp}", "--store", "{store}", "--label", "a", "{image}"], "has no manifest.json"),
        (["classify", "{bundle}", "--store", "{corrupt}", "{image}"], "truncated or corrupt"),
        (["classify", "{bundle}", "--store", "{store}", "{image}"], "no classes yet"),
        (["classes", "rename", "--store", "{good}", "nope", "x"], "no class named 'nope'"),
    ],
)
def test_errors_are_one_line_without_traceback(tiny_bundle, image_files, tmp_path, args, message):
    (tmp_path / "corrupt.jpg").write_bytes(b"garbage" * 50)
    (tmp_path / "empty.jpg").write_bytes(b"")
    good = tmp_path / "good.npz"
    ok("learn", tiny_bundle, "--store", good, "--label", "red", image_files["red"][0])
    fill = dict(missing=tmp_path / "missing.npz", bundle=tiny_bundle, store=tmp_path / "s.npz", image=image_files["red"][0],
                corrupt=tmp_path / "corrupt.jpg", empty=tmp_path / "empty.jpg", tmp=tmp_path, good=good)
    res = imprint(*[a.format(**fill) for a in args])
    assert res.returncode == 1
    assert res.stderr.startswith("imprint: error: ") and message in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "s.npz").exists(), "a failed command must not write a store"


def test_verbose_anywhere_and_a_closed_pipe_ends_quietly(tiny_bundle, image_files, tmp_path):
    store = tmp_path / "s.npz"
    assert imprint("learn", tiny_bundle, "--store", store, "--label", "red", image_files["red"][0]).returncode == 0
    res = imprint("learn", tiny_bundle, "--store", store, "--label", "red", image_files["red"][1], "-v")
    assert res.returncode == 0 and "INFO" in res.stderr and "loaded 1 classes" in res.stderr
    many = [str(p) for ps in image_files.values() for p in ps] * 200
    proc = subprocess.Popen([sys.executable, "-m", "imprinting.cli", "classify", str(tiny_bundle), "--store", str(store),
                             *many], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # like `| head -1`: read one line, then go away
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(60)
    assert "Traceback" not in err and "Broken pipe" not in err, err
    res = imprint("info", tiny_bundle, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["manifest"]["name"] == "tiny-test"


def test_templates_setting_is_kept_in_the_store(tiny_bundle, image_files, tmp_path):
    from imprinting.runtime import Recognizer

    store = tmp_path / "t.npz"
    ok("learn", tiny_bundle, "--store", store, "--templates", "2", "--label", "red", *image_files["red"][:3])
    ok("learn", tiny_bundle, "--store", store, "--label", "green", *image_files["green"][:3])  # no --templates again
    with Recognizer.open(tiny_bundle, store) as r:
        assert r.class_set.templates_per_class == 2
    from imprinting.runtime import read_store

    data = read_store(store)
    assert data.templates_per_class == 2 and data.shots is not None and len(data.shots) == 6


def test_the_same_photo_taught_twice_is_one_shot(tiny_bundle, image_files, tmp_path):
    from imprinting.runtime import Recognizer, read_store

    store = tmp_path / "d.npz"
    red = image_files["red"]
    ok("learn", tiny_bundle, "--store", store, "--label", "red", red[0], red[1], red[0])  # given twice in one go
    res = imprint("learn", tiny_bundle, "--store", store, "--label", "red", red[1], red[2])  # one repeat, one new
    assert res.returncode == 0 and "taught to 'red' already" in res.stderr and "(3 shots)" in res.stdout
    res = imprint("learn", tiny_bundle, "--store", store, "--label", "red", red[2])
    assert res.returncode == 0 and "nothing new for 'red'" in res.stdout
    assert read_store(store).counts.tolist() == [3] and len(set(read_store(store).shot_ids)) == 3
    with Recognizer.open(tiny_bundle, store) as r:
        report = r.learn("red", [red[0], red[3]])  # the Python API skips repeats too
        assert report.shots == 4 and len(report.added) == 1 and report.repeats == (str(red[0]),)
        assert r.learn("blue", red[0]).shots == 1  # the same photo may teach another class
        missing = tmp_path / "missing.png"
        failed = r.learn("blue", [missing, red[1]])  # an unreadable file is reported, not raised
        assert failed.shots == 2 and len(failed.added) == 1 and [f for f, _ in failed.failed] == [str(missing)]
        assert r.forget("blue", failed.added) == 1 and r.shots("blue") == 1  # an undo of exactly that learn
        r.save()
    again = read_store(store)
    assert dict(zip(again.labels, again.counts.tolist())) == {"red": 4, "blue": 1}


def test_classify_explain_shows_the_nearest_taught_shots(tiny_bundle, image_files, tmp_path):
    store = tmp_path / "e.npz"
    ok("learn", tiny_bundle, "--store", store, "--label", "red", *image_files["red"][:3])
    ok("learn", tiny_bundle, "--store", store, "--label", "blue", *image_files["blue"][:2])
    query = image_files["red"][1]  # a taught photo: its own shot is nearest, at cosine 1
    row = json.loads(ok("classify", tiny_bundle, "--store", store, "--json", "--explain", "--min-cosine", "-1", query))
    near = row["nearest_shots"]
    assert set(near) == {"red", "blue"} and len(near["red"]) == 3 and len(near["blue"]) == 2
    import hashlib

    digest = hashlib.sha256(Path(query).read_bytes()).hexdigest()  # what `sha256sum` prints for the photo
    assert near["red"][0] == {"shot": 2, "cosine": pytest.approx(1.0, abs=1e-4), "photo": digest[:32]}
    assert near["red"][0]["cosine"] >= near["red"][1]["cosine"] >= near["red"][2]["cosine"]
    text = ok("classify", tiny_bundle, "--store", store, "--explain", query)
    assert f"red: 3 shots; nearest shot 2 1.000 (photo {digest[:12]})" in text


def test_unknown_is_on_by_default_and_can_be_turned_off(tiny_bundle, image_files, tmp_path):
    from imprinting.runtime import Recognizer
    from imprinting.runtime.recognizer_options import FALLBACK_MIN_COSINE

    with Recognizer.open(tiny_bundle) as r:  # the tiny bundle carries no threshold: the runtime's fallback
        assert r.unknown.min_cosine == FALLBACK_MIN_COSINE
    store = tmp_path / "u.npz"
    ok("learn", tiny_bundle, "--store", store, "--label", "red", image_files["red"][0])
    blue = image_files["blue"][0]
    strict = json.loads(ok("classify", tiny_bundle, "--store", store, "--json", "--min-cosine", "0.9999", blue))
    never = json.loads(ok("classify", tiny_bundle, "--store", store, "--json", "--min-cosine", "-1", blue))
    assert strict["label"] is None and strict["unknown"] and strict["cosine"] == never["cosine"]
    assert never["label"] == "red" and not never["unknown"]
    # the one class is not certain against "unknown" at the threshold
    assert strict["categories"][0]["probability"] < 0.5 < 0.999 < never["categories"][0]["probability"]


def test_mirror_teaches_an_image_and_its_mirror_as_one_shot(tiny_bundle, image_files, tmp_path):
    import cv2

    from imprinting.runtime import Recognizer, RecognizerOptions, read_store

    photo = image_files["red"][0]
    flipped = tmp_path / "flipped.png"
    cv2.imwrite(str(flipped), cv2.imread(str(photo))[:, ::-1])
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    ok("learn", tiny_bundle, "--store", a, "--label", "red", "--mirror", photo)
    ok("learn", tiny_bundle, "--store", b, "--label", "red", "--mirror", flipped)
    sa, sb = read_store(a), read_store(b)
    assert sa.counts.tolist() == [1]
    np.testing.assert_allclose(sa.sums, sb.sums, atol=1e-5)  # a photo and its mirror teach the same row
    with Recognizer.open(tiny_bundle, options=RecognizerOptions(mirror_shots=True)) as r:
        e = r.embed(photo)[0] + r.embed(flipped)[0]
        np.testing.assert_allclose(sa.sums[0], e / np.linalg.norm(e), atol=1e-5)
    plain = tmp_path / "p.npz"
    ok("learn", tiny_bundle, "--store", plain, "--label", "red", photo)
    assert not np.allclose(read_store(plain).sums, sa.sums, atol=1e-4)
