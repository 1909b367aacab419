"""`imprint export` from the command line: arguments, errors, and a checkpoint exported end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from imprinting.cli import main  # noqa: E402
from imprinting.export.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from imprinting.export.model import CosineClassifier, ExtractorConfig, ImprintExtractor  # noqa: E402
from imprinting.runtime import Recognizer  # noqa: E402
from imprinting.runtime.bundle import load_bundle  # noqa: E402
from imprinting.runtime.refine import RefineOptions  # noqa: E402


def _lite0_checkpoint(path, dim=8, labels=("a", "b", "c"), exemplars=None):
    torch.manual_seed(0)
    m = ImprintExtractor(ExtractorConfig(embedding_dim=dim), pretrained=True).eval()
    clf = CosineClassifier(len(labels), dim, scale=12.0)
    return save_checkpoint(path, Checkpoint(m.config, m.state_dict(), clf.weight.detach(), 12.0, labels, (2, 3, 4),
                                            exemplars=exemplars))


def test_dim_without_checkpoint_is_refused(tmp_path, capsys):
    assert main(["export", "--dim", "64", "--out", str(tmp_path / "b")]) == 1
    assert "--dim 64 needs a trained embedding layer" in capsys.readouterr().err


def test_missing_checkpoint_and_typos_are_reported(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "--formats", "onnx,tflte", "--out", str(tmp_path / "b")]) == 1
    assert "did you mean 'tflite'" in capsys.readouterr().err
    assert main(["export", "--calib-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 1
    assert "--calib-dir" in capsys.readouterr().err


def test_dim_must_match_the_checkpoint(tmp_path, capsys):
    ckpt = _lite0_checkpoint(tmp_path / "c.pt", dim=8)
    assert main(["export", "--checkpoint", str(ckpt), "--dim", "16", "--out", str(tmp_path / "b")]) == 1
    assert "does not match the checkpoint's embedding dimension 8" in capsys.readouterr().err


def test_checkpoint_exports_a_bundle_with_base_classes_and_exemplars_that_refinement_uses(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 8)).astype(np.float32)
    cls = np.repeat(np.arange(3), 10)
    emb = centres[cls] + 0.3 * rng.standard_normal((30, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ckpt = _lite0_checkpoint(tmp_path / "c.pt", dim=8,
                             exemplars=(torch.from_numpy(emb).half(), torch.from_numpy(cls)))
    out = tmp_path / "bundle"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--formats", "onnx", "--precisions", "fp32"]) == 0
    printed = capsys.readouterr().out
    assert "extractor_fp32.onnx" in printed and "3 base classes" in printed
    bundle = load_bundle(out)
    assert bundle.manifest.embedding_dim == 8 and bundle.manifest.scale == pytest.approx(12.0)
    assert bundle.base_classes().labels == ("a", "b", "c")
    assert bundle.manifest.source["checkpoint"].endswith("c.pt")
    labels, carried = bundle.base_exemplars()
    assert labels == tuple("abc"[c] for c in cls)
    np.testing.assert_allclose(carried, emb, atol=2e-3)

    # The base classes keep no shots; their exemplars let a refinement with a taught class go ahead.
    with Recognizer.open(out) as r:
        r.class_set.learn("new", centres[0] + centres[1] + 0.3 * rng.standard_normal((12, 8)).astype(np.float32))
        plan = r.refine(RefineOptions(rank=2, check=False))
        assert plan.refined and "refined 4 classes" in plan.why
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["base_exemplars"] = None
    (out / "manifest.json").write_text(json.dumps(manifest))
    with Recognizer.open(out) as r:
        r.class_set.learn("new", centres[0] + 0.3 * rng.standard_normal((12, 8)).astype(np.float32))
        plan = r.refine(RefineOptions(rank=2, check=False))
        assert not plan.refined and "3 of 4 classes have fewer than 10" in plan.why and "no exemplars" in plan.why
        assert "'a' (0), 'b' (0), 'c' (0)" in plan.why  # which classes, with their shots
    # A damaged exemplar file is refused with the reason, not trained on.
    manifest["base_exemplars"] = "base_exemplars.npz"
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "base_exemplars.npz").write_bytes(b"PK\x03\x04 not a zip")
    with Recognizer.open(out) as r, pytest.raises(ValueError, match="base exemplars .* are corrupt"):
        r.refine()


@pytest.mark.slow
def test_pretrained_lite0_exports_all_formats_within_targets(tmp_path, capsys):
    """The real thing: ImageNet Lite0, four files, each passing parity; int8 files under 4.5 MB."""
    out = tmp_path / "lite0"
    assert main(["export", "--out", str(out)]) == 0
    m = load_bundle(out).manifest
    assert len(m.extractors) == 4 and m.embedding_dim == 1280 and m.base_classes is None
    for e in m.extractors:
        assert e.parity_cosine >= (0.999 if e.precision == "fp32" else 0.99)
        if e.precision == "int8":
            assert (out / e.file).stat().st_size <= 4.5e6
