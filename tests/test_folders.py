"""Folder workflows: teach one class per subfolder, classify folders (bad files skipped and reported, a
summary, CSV or JSON lines), and score a labelled folder with a per-class report and a confusion plot."""

from __future__ import annotations

import json
import shutil

import pytest

from _cli import imprint


@pytest.fixture
def photos(image_files, tmp_path):
    root = tmp_path / "photos"
    for label, files in image_files.items():
        (root / label / "more").mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(f, root / label / ("more" if i == 3 else ".") / f.name)
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "empty_folder").mkdir()
    return root


def test_learn_folders_classify_a_folder_and_eval(tiny_bundle, photos, tmp_path):
    store = tmp_path / "s.npz"
    res = imprint("learn", tiny_bundle, "--store", store, "--folders", photos)
    assert res.returncode == 0, res.stderr
    assert "learned 'red' from 4 image(s)" in res.stdout and "4 classes in" in res.stdout
    assert "skipped" in res.stderr and "broken.jpg" in res.stderr
    res = imprint("classify", tiny_bundle, "--store", store, photos, "--csv")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "image,label,cosine,label_2,cosine_2,label_3,cosine_3" and len(lines) == 1 + 16
    right = sum(1 for line in lines[1:] if f'/{line.split(",")[1].strip(chr(34))}/' in line.split(",")[0])
    assert right >= 14, lines  # classes were taught from these very images
    assert "16 classified" in res.stderr and "1 unreadable" in res.stderr and "broken.jpg" in res.stderr
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert set(report["classes"]) == {"red", "green", "blue", "yellow"} and report["shots"] == 2
    assert all(c["tested"] == 2 for c in report["classes"].values()) and 0 <= report["accuracy"] <= 1
    text = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 3).stdout
    assert "top-1 over 4 test images, 3 shots per class" in text


def test_eval_plots_the_confusion_matrix(tiny_bundle, photos, tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib, which no runtime extra installs")
    plot = tmp_path / "confusion.png"
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--plot", plot, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["shots"] == 2 and plot.stat().st_size > 1000


def test_folder_mistakes_are_one_clear_line(tiny_bundle, photos, tmp_path):
    store = tmp_path / "s.npz"
    res = imprint("learn", tiny_bundle, "--store", store, "--folders", photos / "red" / "more")
    assert res.returncode == 1 and "no subfolders with images" in res.stderr
    res = imprint("learn", tiny_bundle, "--store", store, "--folders", photos, "--label", "x")
    assert res.returncode == 1 and "not both" in res.stderr
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 9)
    assert res.returncode == 1 and "readable images" in res.stderr
    assert not store.exists()
