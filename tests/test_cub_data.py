"""A reduced CUB-200-2011 protocol with the exported extractor (skips without the dataset)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from imprinting.export import lowshot  # noqa: E402
from imprinting.export.cub import ENV, load_cub  # noqa: E402
from imprinting.export.embeddings import embed_paths  # noqa: E402
from imprinting.runtime import load_bundle  # noqa: E402

pytestmark = pytest.mark.data
ROOT = os.environ.get(ENV) or str(Path(__file__).resolve().parents[2] / "shared" / "data" / "CUB_200_2011")


@pytest.fixture(scope="module")
def cub():
    if not (Path(ROOT) / "images.txt").is_file():
        pytest.skip(f"CUB-200-2011 not found at {ROOT} (set {ENV})")
    return load_cub(ROOT)


def test_reduced_protocol_imprinting_is_far_above_chance(cub, tmp_path):
    from imprinting.cli import main

    assert main(["export", "--out", str(tmp_path / "b"), "--formats", "onnx", "--precisions", "int8"]) == 0
    bundle = load_bundle(tmp_path / "b")
    ex = bundle.open_extractor()
    base, novel = np.arange(0, 10), np.arange(100, 110)  # 10 base and 10 novel classes
    keep = np.flatnonzero(np.isin(cub.labels, np.concatenate([base, novel])))
    emb = embed_paths(ex, bundle.manifest.preprocess, [cub.paths[i] for i in keep], desc="cub subset")
    labels, train = cub.labels[keep], cub.is_train[keep]
    remap = {c: k for k, c in enumerate(np.concatenate([base, novel]))}
    y = np.array([remap[c] for c in labels])
    rows_base = lowshot.class_means(emb[train], y[train], np.arange(10))
    rng = np.random.default_rng(0)
    shots = np.concatenate([rng.choice(np.flatnonzero(train & (y == c)), 5, replace=False) for c in range(10, 20)])
    rows_novel = lowshot.class_means(emb[shots], y[shots], np.arange(10, 20))
    test = ~train
    pred = lowshot.predict(emb[test], np.concatenate([rows_base, rows_novel]), num_base=10)
    s = lowshot.score(pred, y[test], y[test] >= 10)
    print(f"reduced protocol, n=5: novel {s.novel:.1f}%, all {s.all:.1f}%")
    # 20-way chance is 5%; measured here (int8 ONNX, seed 0): 69.5% novel, 74.5% all.
    assert s.novel > 35 and s.all > 45, s
