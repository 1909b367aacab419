"""Open-set reports (issue 29): `imprint eval --never-taught K` and `imprint info`'s unknown policy table."""

from __future__ import annotations

import json
import shutil

import pytest

from _cli import imprint


@pytest.fixture
def photos(image_files, tmp_path):
    root = tmp_path / "photos"
    for label, files in image_files.items():
        (root / label).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / label / f.name)
    return root


def test_eval_reports_unknown_rates_with_never_taught_classes(tiny_bundle, photos):
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--never-taught", 1, "--json",
                  "--min-cosine", "0.99")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    o = report["open_set"]
    assert len(report["classes"]) == 3 and o["never_taught_classes"] == 1 and o["never_taught_tested"] == 4
    assert o["never_taught"][0] not in report["classes"]
    assert o["right"] + o["wrong"] + o["unknown"] == pytest.approx(1.0)
    assert 0 <= o["never_taught_unknown"] <= 1 and 0 <= o["right_kept"] <= 1
    text = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--never-taught", 2,
                   "--min-cosine", "-1").stdout
    assert "never-taught photos (8 of 2 classes:" in text and "0.0% called unknown" in text
    assert "100.0% of right answers kept" in text
    plain = json.loads(imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--json").stdout)
    assert plain["open_set"]["never_taught_unknown"] is None and plain["open_set"]["never_taught"] == []


def test_never_taught_must_leave_a_class_to_teach(tiny_bundle, photos):
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--never-taught", 4)
    assert res.returncode == 1 and "--never-taught must be in [0, 3]" in res.stderr


def test_info_shows_the_policy_table_and_both_rates(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    m["calibration"] = {"unknown_min_cosine": 0.41, "unknown_false_accept": 0.05, "unknown_accept": 0.97,
                        "unknown_min_evidence_by_shots": {"1": 0.41, "2": 0.43, "10": 0.45},
                        "unknown_rates_by_shots": {"1": {"false_accept": 0.05, "accept": 0.97},
                                                   "2": {"false_accept": 0.06, "accept": 0.95},
                                                   "10": {"false_accept": 0.04, "accept": 0.99}}}
    (bundle / "manifest.json").write_text(json.dumps(m))
    res = imprint("info", bundle)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "unknown policy by shot count" in out
    assert "2 shot(s): evidence below 0.430" in out and "6% of never-taught photos accepted" in out
    assert "95% of right answers kept" in out
    res = imprint("info", tiny_bundle)
    assert "the runtime's default" in res.stdout


def test_eval_checks_the_policy_on_its_taught_shots_alone(tiny_bundle, photos):
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--never-taught", 1, "--json",
                  "--min-evidence", "-1")
    assert res.returncode == 0, res.stderr
    c = json.loads(res.stdout)["store_check"]
    # 3 taught classes of 2 shots, each shot asked with its class left out; the tiny model sees a class's synthetic
    # photos as near-duplicates (one photo), so none is held out.
    assert (c["classes"], c["held_out"], c["strangers"], c["kept"]) == (3, 0, 6, None)
    assert c["let_through"] == 1.0  # -1: never unknown
    strict = json.loads(imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, "--never-taught", 1,
                                "--json", "--min-evidence", "1").stdout)
    # Evidence 1 would need a photo identical to every shot: nothing passes, on the test photos as on the shots.
    assert strict["store_check"]["let_through"] == 0.0
    assert strict["open_set"]["right_kept"] == 0.0 and strict["open_set"]["never_taught_unknown"] == 1.0
    text = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2).stdout
    assert "the same policy checked on the taught photos alone" in text and "no shot held out is answered" in text


@pytest.mark.parametrize("args, message", [
    (("--min-evidence", "0.4", "--min-cosine", "0.4"), "give --min-cosine or --min-evidence, not both"),
    (("--min-evidence", "1.5"), "--min-evidence must be in [-1, 1]"),
])
def test_min_evidence_is_checked(tiny_bundle, photos, args, message):
    res = imprint("eval", tiny_bundle, "--folders", photos, "--shots", 2, *args)
    assert res.returncode == 1 and message in res.stderr


def test_info_checks_the_policy_on_a_store(tiny_bundle, tmp_path):
    import numpy as np

    from imprinting.runtime import ClassSet, load_bundle, write_store
    from imprinting.runtime.recognizer_options import bundle_unknown_policy
    from imprinting.runtime.unknown_check import check_unknown

    m = load_bundle(tiny_bundle).manifest
    rng = np.random.default_rng(0)
    classes = ClassSet(m.embedding_dim, m.scale, m.fingerprint)
    for k in range(6):  # 6 classes of 6 different photos each
        classes.learn(f"c{k}", rng.standard_normal(m.embedding_dim) + rng.standard_normal((6, m.embedding_dim)))
    store = tmp_path / "classes.npz"
    write_store(store, classes.to_store_data())
    expected = check_unknown(classes, bundle_unknown_policy(m), m.shot_offsets)
    assert expected.right >= 20 and expected.keep95 is not None
    res = imprint("info", tiny_bundle, "--store", store)
    assert res.returncode == 0, res.stderr
    assert f"on the shots of {store}:" in res.stdout
    assert f"held out one at a time, {expected.right} of 36 shots are answered by their own class" in res.stdout
    assert f"is {np.floor(expected.keep95 * 1000) / 1000:.3f}" in res.stdout
    c = json.loads(imprint("info", tiny_bundle, "--store", store, "--json").stdout)["store_check"]
    assert c == {"store": str(store), **expected.to_dict()}
    missing = imprint("info", tiny_bundle, "--store", tmp_path / "none.npz")
    assert missing.returncode == 1 and "none.npz" in missing.stderr
    other = ClassSet(m.embedding_dim, m.scale, "another model")
    other.learn("x", rng.standard_normal(m.embedding_dim))
    write_store(tmp_path / "other.npz", other.to_store_data())
    res = imprint("info", tiny_bundle, "--store", tmp_path / "other.npz")
    assert res.returncode == 1 and "re-teach the classes with this model" in res.stderr
    assert "fingerprint" in res.stdout  # the bundle was described before the store was read
