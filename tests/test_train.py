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
    # Every base class keeps up to 10 exemplar embeddings (all 5 here) for refinement on a device.
    emb, cls = c.exemplars
    assert emb.shape == (15, 8) and emb.dtype == torch.float16 and sorted(cls.tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    np.testing.assert_allclose(emb.float().norm(dim=1).numpy(), 1.0, atol=1e-2)
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


def _folder(root, classes=("red", "green", "blue"), per_class=5):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for s in range(per_class):
            cv2.imwrite(str(root / name / f"{s}.png"), cv2.resize(pattern_image(k, s), (96, 96))[..., ::-1])
    return root


def _changed_blocks(ckpt) -> list[int]:
    """Indices of backbone blocks whose weights differ from the pretrained ones."""
    from imprinting.export.model import ExtractorConfig, ImprintExtractor

    ref = ImprintExtractor(ExtractorConfig(embedding_dim=0)).state_dict()
    changed = set()
    for name, t in ckpt.extractor_state.items():
        if name.startswith("backbone._blocks.") and not torch.equal(t, ref[name]):
            changed.add(int(name.split(".")[2]))
    return sorted(changed)


def test_middle_path_fine_tunes_only_the_last_blocks(tmp_path):
    from imprinting.cli import main

    root = _folder(tmp_path / "data")
    ckpt = tmp_path / "blocks.pt"
    assert main(["train", "--folder", str(root), "--out", str(ckpt), "--dim", "8", "--views", "1",
                 "--blocks", "2", "--epochs", "1", "--cache", str(tmp_path / "cache")]) == 0
    c = load_checkpoint(ckpt)
    assert c.training["blocks"] == 2 and c.training["epochs"] == 1 and c.training["base_rows"] == "imprinted"
    assert _changed_blocks(c) == [14, 15]
    model, clf = build_from_checkpoint(c)
    with torch.no_grad():
        e = model(torch.zeros(2, 3, 224, 224))
    assert e.shape == (2, 8) and clf.weight.shape == (3, 8)
    # The activation cache makes a second run skip the frozen blocks entirely.
    assert any(p.name.startswith("blocks14-") for p in (tmp_path / "cache").iterdir())


def test_middle_path_rejects_more_blocks_than_the_backbone_has(tmp_path, capsys):
    from imprinting.cli import main

    root = _folder(tmp_path / "data", per_class=2)
    assert main(["train", "--folder", str(root), "--out", str(tmp_path / "x.pt"), "--blocks", "17", "--epochs", "1",
                 "--cache", ""]) == 1
    assert "only 16 blocks" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_middle_path_runs_data_parallel_under_torchrun(tmp_path):
    """Two CPU processes (gloo) train one model: the checkpoint is written once, by rank 0."""
    import os
    import subprocess
    import sys

    root = _folder(tmp_path / "data", per_class=8)
    ckpt = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "imprinting.cli",
           "train", "--folder", str(root), "--out", str(ckpt), "--dim", "8", "--views", "1", "--blocks", "1",
           "--epochs", "2", "--cache", str(tmp_path / "cache")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    c = load_checkpoint(ckpt)
    assert c.training["blocks"] == 1 and _changed_blocks(c) == [15]
    assert done.stdout.count("wrote ") == 1


def test_full_network_path_trains_every_layer_on_fresh_views(tmp_path):
    from imprinting.cli import main
    from imprinting.export.model import ExtractorConfig, ImprintExtractor

    root = _folder(tmp_path / "data", per_class=3)
    (root / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    ckpt = tmp_path / "full.pt"
    assert main(["train", "--folder", str(root), "--out", str(ckpt), "--views", "1", "--blocks", "16",
                 "--epochs", "1", "--cache", ""]) == 0
    c = load_checkpoint(ckpt)
    assert _changed_blocks(c) == list(range(16)) and c.counts == (3, 3, 3)
    ref = ImprintExtractor(ExtractorConfig(embedding_dim=0)).state_dict()
    assert not torch.equal(c.extractor_state["backbone._conv_stem.weight"], ref["backbone._conv_stem.weight"])


def test_image_views_draw_fresh_crops_and_a_fixed_centre(tmp_path):
    from imprinting.export.views import ImageViews
    from imprinting.runtime.preprocess import PreprocessSpec

    root = _folder(tmp_path / "data", classes=("a",), per_class=2)
    views = ImageViews(sorted((root / "a").iterdir()), PreprocessSpec(), views=2, workers=2)
    assert views.num_views == 3 and views.item_shape == (3, 224, 224)
    assert len(views.subset(np.array([True, False]))) == 1
    centre = [x for x in views.loader(views.centre_batches(2))][0]
    np.testing.assert_array_equal(centre[1], views.subset(np.array([1]))[(0, 0)])
    # A random view is a new crop at every access: within a batch and from pass to pass.
    a, b = (next(iter(views.loader([[(0, 1), (0, 1)]]))) for _ in range(2))
    assert a.shape == (2, 3, 224, 224) and not np.array_equal(a[0], b[0]) and not np.array_equal(a[0], a[1])


def test_block_fine_tuning_moves_the_blocks_and_fits_its_classes():
    from imprinting.export.blocks import Tail, embed_activations, finetune_tail
    from imprinting.export.model import ExtractorConfig, ImprintExtractor, imprint_weights

    from imprinting.export.blocks import frozen_prefix
    from imprinting.runtime.preprocess import PreprocessSpec, normalize

    labels = np.repeat(np.arange(4), 6)
    images = np.stack([cv2.resize(pattern_image(k, s), (224, 224)) for k, s in zip(labels, np.tile(np.arange(6), 4))])
    x = torch.from_numpy(normalize(np.concatenate([images, images[:, :, ::-1]]), PreprocessSpec(), "NCHW"))
    frozen = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    with torch.no_grad():
        a = frozen_prefix(frozen, 2)(x).numpy()
    acts = np.stack([a[: len(labels)], a[len(labels):]], axis=1).astype(np.float16)  # (24, 2 views, 192, 7, 7)
    tail = Tail(ImprintExtractor(ExtractorConfig(embedding_dim=0)), 2, 4, 10.0)
    before = {k: v.clone() for k, v in tail.blocks.state_dict().items()}
    with torch.no_grad():
        tail.classifier.weight.copy_(imprint_weights(torch.from_numpy(embed_activations(tail, acts[:, 0])),
                                                     torch.from_numpy(labels), 4))
    finetune_tail(tail, acts, labels, 4, epochs=3, lr=1e-4, samples_per_epoch=48, batch=16)
    assert not tail.training
    assert any(not torch.equal(v, before[k]) for k, v in tail.blocks.state_dict().items() if k.endswith("weight"))
    e = embed_activations(tail, acts[:, 0])
    pred = (e @ tail.classifier.unit_weight().detach().numpy().T).argmax(1)
    assert (pred == labels).mean() >= 0.9


def test_block_training_resumes_where_a_killed_run_stopped(tmp_path):
    """A run stopped after epoch 1 of 2 and resumed ends with the weights of an uninterrupted run."""
    from imprinting.export.blocks import BlockOptions, fit_tail

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    acts = rng.normal(size=(len(labels), 2, 192, 7, 7)).astype(np.float16)
    opt = BlockOptions(trainable_blocks=1, batch=4, lr=1e-4)
    whole = fit_tail(acts, labels, 3, opt, 2)
    state = tmp_path / "run.state"
    fit_tail(acts, labels, 3, opt, 1, state_path=state)  # "killed" after its first epoch
    assert state.is_file()
    resumed = fit_tail(acts, labels, 3, opt, 2, state_path=state)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ValueError, match="other options"):
        fit_tail(acts, labels, 3, BlockOptions(trainable_blocks=1, batch=4, lr=1e-3), 2, state_path=state)
    state.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot resume"):
        fit_tail(acts, labels, 3, opt, 2, state_path=state)


def test_zero_epochs_is_explained_with_the_scores_and_what_to_do():
    from imprinting.export.train_cli import _why_no_epochs

    report = {"pseudo_novel_history": {0: 0.61, 1: 0.55, 2: 0.58}}
    line = _why_no_epochs(report, 1280, 0, 1280)
    assert "0 epochs" in line and "61.0%" in line and "best 58.0% at epoch 2" in line and "--epochs N" in line
    assert "pretrained 1280-d pooled features (no --dim 1280 embedding layer" in line
