from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from imprinting.runtime import ExtractorOptions, Recognizer, load_bundle, load_extractor
from imprinting.runtime.preprocess import preprocess

from tiny import DIM, SIZE, pattern_image


def test_onnx_extractor_reports_its_shape(tiny_bundle):
    ex = load_extractor(tiny_bundle / "extractor_fp32.onnx", ExtractorOptions(threads=1))
    assert (ex.layout, ex.input_size, ex.embedding_dim, ex.backend) == ("NCHW", SIZE, DIM, "onnxruntime")
    out = ex.run(np.zeros((3, 3, SIZE, SIZE), np.float32))
    assert out.shape == (3, DIM) and out.dtype == np.float32
    with pytest.raises(ValueError, match=r"takes \(N, 3, 32, 32\) input, got \(1, 32, 32, 3\)"):
        ex.run(np.zeros((1, SIZE, SIZE, 3), np.float32))


def test_load_extractor_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_extractor(tmp_path / "x.onnx")
    (tmp_path / "x.pb").write_bytes(b"x")
    with pytest.raises(ValueError, match="expected .onnx, .tflite or .rknn"):
        load_extractor(tmp_path / "x.pb")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ExtractorOptions(threads=0)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load ONNX extractor"):
        load_extractor(tmp_path / "bad.onnx")
    (tmp_path / "bad.tflite").write_bytes(b"not a model")
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(ValueError, match="cannot load TFLite extractor"):
        load_extractor(tmp_path / "bad.tflite")


def test_bundle_refuses_a_replaced_extractor_file(tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "b")
    from tiny import write_tiny_onnx

    write_tiny_onnx(copy / "extractor_fp32.onnx", seed=5)
    with pytest.raises(ValueError, match="damaged or was replaced"):
        load_bundle(copy).open_extractor()


def test_bundle_manifest_errors(tiny_bundle, tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load_bundle(tmp_path / "missing")
    copy = shutil.copytree(tiny_bundle, tmp_path / "b")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 7}))
    with pytest.raises(ValueError, match="bundle format version 7 is not supported"):
        load_bundle(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        load_bundle(copy)
    (copy / "manifest.json").write_text(json.dumps({**manifest, "embedding_dim": 99}))
    with pytest.raises(ValueError, match="outputs 16-d embeddings but the manifest says 99"):
        load_bundle(copy).open_extractor()
    with pytest.raises(ValueError, match="has no tflite/any extractor"):
        load_bundle(tiny_bundle).open_extractor(format="tflite")


def test_recognizer_learns_and_recognizes(tiny_bundle, tmp_path):
    store = tmp_path / "classes.npz"
    with Recognizer.open(tiny_bundle, store) as r:
        for kind, name in enumerate(["red", "green", "blue", "yellow"]):
            r.learn(name, [pattern_image(kind, s) for s in range(2)])
        r.save()
        emb = r.embed(pattern_image(0, 9))
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
    with Recognizer.open(tiny_bundle, store) as r:
        assert r.labels == ("red", "green", "blue", "yellow")
        preds = r.recognize_batch([pattern_image(k, s) for k in range(4) for s in (5, 6, 7)], top_k=2)
        assert [p.label for p in preds] == [n for n in ("red", "green", "blue", "yellow") for _ in range(3)]
        # BGR frames from OpenCV give the same answer when the order is stated.
        bgr = pattern_image(2, 5)[..., ::-1].copy()
        assert r.recognize(bgr, color_order="BGR").label == "blue"
    r.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        r.embed(pattern_image(0, 0))


def test_recognizer_refuses_a_store_of_another_extractor(tiny_bundle, tmp_path):
    from tiny import write_tiny_bundle

    other = write_tiny_bundle(tmp_path / "other", seed=3)
    store = tmp_path / "s.npz"
    with Recognizer.open(other, store) as r:
        r.learn("red", pattern_image(0, 0))
        r.save()
    before = store.read_bytes()
    with pytest.raises(ValueError, match=r"was made with extractor sha256:.* but this model is sha256:"):
        Recognizer.open(tiny_bundle, store)
    assert store.read_bytes() == before


def test_preprocess_matches_the_extractor_layout(tiny_bundle):
    b = load_bundle(tiny_bundle)
    x = preprocess(pattern_image(1, 1), b.manifest.preprocess, "NCHW")
    assert x.shape == (1, 3, SIZE, SIZE)


@pytest.mark.parametrize("change, message", [
    ({"scale": 1e308}, "scale must be in"),
    ({"scale": float("nan")}, "scale must be in"),
    ({"preprocess": {"mean": [-1, 0.5, 0.5]}}, "mean must be in"),
    ({"preprocess": {"std": [float("nan"), 0.5, 0.5]}}, "std must be in"),
    ({"preprocess": {"resize_size": 10**9}}, "resize_size"),
    ({"shot_offsets": [0.1, 0.2]}, "shot_offsets must map"),
    ({"shot_offsets": {"1": "lots"}}, "shot_offsets must map"),
    ({"extractors": "extractor_fp32.onnx"}, "field .extractors. must be list"),
    ({"base_exemplars": "base_exemplars.npz"}, "base_exemplars must be a plain file name inside the bundle, beside"),
    ({"base_classes": "b.npz", "base_exemplars": "../e.npz"}, "base_exemplars must be a plain file name"),
])
def test_absurd_manifest_fields_are_refused_with_the_field_named(tiny_bundle, tmp_path, change, message):
    import shutil

    from imprinting.runtime import load_bundle

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key, value in change.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) and key == "preprocess" else value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        load_bundle(copy)


def test_a_deeply_nested_manifest_is_one_clear_error(tiny_bundle, tmp_path):
    from imprinting.runtime import load_bundle

    (tmp_path / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_bundle(tmp_path)
