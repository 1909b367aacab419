"""The model side of export/: EfficientNet-Lite0 with real weights, the extractor, classifier, imprinting,
fingerprints and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from _export_helpers import tiny_extractor  # noqa: E402

from imprinting.export.checkpoint import Checkpoint, build_from_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from imprinting.export.efficientnet_lite import efficientnet_lite0  # noqa: E402
from imprinting.export.model import (  # noqa: E402
    CosineClassifier,
    ExtractorConfig,
    imprint_weights,
    l2_normalize,
    state_fingerprint,
)
from imprinting.runtime.preprocess import PreprocessSpec, preprocess  # noqa: E402

ESPRESSO, TIGER_CAT, TABBY, EGYPTIAN_CAT, MISSILE, PROJECTILE = 967, 282, 281, 285, 657, 744


@pytest.fixture(scope="module")
def lite0():
    return efficientnet_lite0(pretrained=True)


def _probs(model, image: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(preprocess(image, PreprocessSpec()))
    with torch.no_grad():
        return model(x).softmax(1)[0].numpy()


def test_pretrained_weights_load_strictly_with_expected_size(lite0):
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008


def test_pretrained_lite0_recognizes_sample_photos(lite0):
    p = _probs(lite0, skdata.coffee())
    assert int(p.argmax()) == ESPRESSO and p[ESPRESSO] > 0.9
    cat = _probs(lite0, skdata.chelsea())
    assert int(cat.argmax()) in (TIGER_CAT, TABBY, EGYPTIAN_CAT)
    assert cat[[TIGER_CAT, TABBY, EGYPTIAN_CAT]].sum() > 0.8
    rocket = _probs(lite0, skdata.rocket())
    assert int(rocket.argmax()) in (MISSILE, PROJECTILE)


def test_imagenet_statistics_would_be_wrong(lite0):
    # The bundle's mean/std 0.5 matter: ImageNet statistics lower the espresso probability.
    spec = PreprocessSpec(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with torch.no_grad():
        p = lite0(torch.from_numpy(preprocess(skdata.coffee(), spec))).softmax(1)[0].numpy()
    assert p[ESPRESSO] < _probs(lite0, skdata.coffee())[ESPRESSO]


def test_extractor_outputs_unit_embeddings_and_head_matches_forward():
    m = tiny_extractor(dim=16)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        e = m(x)
        assert e.shape == (3, 16)
        np.testing.assert_allclose(e.norm(dim=1).numpy(), 1.0, atol=1e-6)
        torch.testing.assert_close(m.head(m.pooled(x)), e)


def test_pooled_features_without_projection():
    m = tiny_extractor(dim=0)
    assert m.embedding_dim == 32 and m.embed is None


def test_l2_normalize_matches_definition_and_survives_zero_rows():
    f = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(f)
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.8]))
    assert torch.isfinite(out).all() and (out[1] == 0).all()


def test_unknown_backbone_suggests_nearest_name():
    with pytest.raises(ValueError, match="did you mean 'efficientnet_lite0'"):
        ExtractorConfig(backbone="efficientnet-lite0")
    with pytest.raises(ValueError, match="embedding_dim must be >= 0"):
        ExtractorConfig(embedding_dim=-1)


def test_imprint_weights_are_normalized_means_of_normalized_embeddings():
    e = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    w = imprint_weights(e, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(w, torch.tensor([[1.0, 1.0], [0.0, 1.0]]) / torch.tensor([[2**0.5], [1.0]]))
    with pytest.raises(ValueError, match=r"cannot imprint classes \[2\]"):
        imprint_weights(e, torch.tensor([0, 1, 1]), 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        imprint_weights(e, torch.tensor([0, 1, 5]), 2)


def test_cosine_classifier_logits_and_imprinting():
    clf = CosineClassifier(4, 3, scale=5.0)
    e = l2_normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
    clf.imprint_([1, 3], e, torch.tensor([0, 1]))
    logits = clf(e)
    assert logits.shape == (2, 4)
    torch.testing.assert_close(logits[0, 1], torch.tensor(5.0))
    torch.testing.assert_close(logits[1, 3], torch.tensor(5.0))
    assert logits.abs().max() <= 5.0 + 1e-5
    before = clf.weight[0].clone()
    clf.randomize_([1], seed=1)
    assert not torch.allclose(clf.weight[1], clf.unit_weight()[3]) and torch.equal(clf.weight[0], before)


def test_fingerprint_names_the_weights():
    a, b = tiny_extractor(seed=0), tiny_extractor(seed=0)
    assert state_fingerprint(a) == state_fingerprint(b)
    with torch.no_grad():
        b.embed.weight[0, 0] += 1e-3
    assert state_fingerprint(a) != state_fingerprint(b)


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    m = tiny_extractor(dim=16)
    clf = CosineClassifier(3, 16, scale=7.5)
    ckpt = Checkpoint(m.config, m.state_dict(), clf.weight.detach(), 7.5, ("a", "b", "c"), (4, 5, 6))
    path = save_checkpoint(tmp_path / "c.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # must not need pickled classes
    assert raw["format"] == "imprinting-checkpoint"
    back = load_checkpoint(path)
    assert back.labels == ("a", "b", "c") and back.counts == (4, 5, 6) and back.scale == pytest.approx(7.5)
    torch.testing.assert_close(back.weight, clf.weight.detach())


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an imprinting checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_build_from_checkpoint_restores_lite0_extractor(tmp_path):
    from imprinting.export.model import ImprintExtractor

    m = ImprintExtractor(ExtractorConfig(embedding_dim=8), pretrained=False).eval()
    clf = CosineClassifier(2, 8)
    save_checkpoint(tmp_path / "c.pt", Checkpoint(m.config, m.state_dict(), clf.weight.detach(), 10.0, ("x", "y"), (1, 2)))
    model, clf2 = build_from_checkpoint(load_checkpoint(tmp_path / "c.pt"))
    assert state_fingerprint(model) == state_fingerprint(m)
    torch.testing.assert_close(clf2.weight, clf.weight)
