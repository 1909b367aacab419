"""The fast base-training path: pooled features, a trained head, a checkpoint `imprint export` can read."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from imprinting.export.checkpoint import build_from_checkpoint, load_checkpoint  # noqa: E402
from imprinting.export.datasets import image_folder  # noqa: E402
from imprinting.export.train import HeadOptions, train_head  # noqa: E402

from tiny import pattern_image  # noqa: E402


def test_head_learns_separable_classes_and_reports_its_search():
    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(10, 48)))
    labels = np.repeat(np.arange(10), 15)
    feats = np.abs(centres[labels][:, None, :] + 0.3 * rng.normal(size=(len(labels), 3, 48))).astype(np.float16)
    head, report = train_head(feats, labels, 10, HeadOptions(dim=16, max_epochs=4, batch=32))
    assert set(report["pseudo_novel_history"]) == {0, 1, 2, 3, 4}
    if head is not None:
        assert report["train_top1"] > 0.9
        emb = head.embedding(torch.from_numpy(feats[:, 0].astype(np.float32)))
        np.testing.assert_allclose(emb.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        image_folder(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        image_folder(tmp_path)


def test_train_cli_writes_a_checkpoint_that_builds(tmp_path, monkeypatch):
    from imprinting.cli import main

    root = tmp_path / "data"
    for k, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True)
        for s in range(5):
            img = cv2.resize(pattern_image(k, s), (96, 96))
            cv2.imwrite(str(root / name / f"{s}.png"), img[..., ::-1])
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg")  # skipped with a count, not fatal
    ckpt = tmp_path / "base.pt"
    assert main(["train", "--folder", str(root), "--out", str(ckpt), "--dim", "8", "--views", "1",
                 "--epochs", "2", "--cache", ""]) == 0
    c = load_checkpoint(ckpt)
    assert c.labels == ("blue", "green", "red") and c.counts == (5, 5, 5)
    assert c.training["epochs"] == 2 and c.config.embedding_dim == 8
    model, clf = build_from_checkpoint(c)
    x = torch.zeros(1, 3, 224, 224)
    assert model(x).shape == (1, 8) and clf.weight.shape == (3, 8)


def test_imprinted_rows_start_fine_tuning_ahead_of_random_rows():
    from imprinting.export.finetune import FinetuneOptions, extend_head, finetune

    rng = np.random.default_rng(0)
    centres = np.abs(rng.normal(size=(20, 64)))
    labels = np.repeat(np.arange(20), 20)
    feats = np.abs(centres[labels][:, None, :] + 0.5 * rng.normal(size=(len(labels), 3, 64))).astype(np.float16)
    base = labels < 10
    head, _ = train_head(feats[base], labels[base], 10, HeadOptions(dim=32, epochs=5, batch=64))
    shots = np.flatnonzero(~base)[::10]  # 2 shots per novel class
    test = torch.from_numpy(feats[:, 1].astype(np.float32))
    acc = {}
    for init in ("imprint", "random"):
        h = extend_head(head, feats[shots], labels[shots], 10, init)
        assert h.classifier.weight.shape == (20, 32)
        torch.testing.assert_close(h.classifier.weight[:10], head.classifier.weight)
        with torch.no_grad():
            acc[init] = (h(test).argmax(1).numpy() == labels).mean()
        h = finetune(h, np.concatenate([feats[base], feats[shots]]), np.concatenate([labels[base], labels[shots]]),
                     20, FinetuneOptions(epochs=2), 200)
    assert acc["imprint"] > acc["random"] + 0.1
