"""The imprinting rows of the CUB benchmark on precomputed embeddings: predictions for every test image.

Everything a row learns (class rows, the CL2N centre, the calibration table) comes from *training* images
only, named `train` below: base rows from the base classes' training images (or the bundle's own base
classes, themselves made from training images), novel rows from the drawn shots, the centre from base
training images, the calibration table from the bundle or from a pseudo-novel split of base training
images. Test images are only ever scored. tests/test_cub_protocol.py checks this: changing some test
images' embeddings changes no other test image's prediction in any row.

The Imprinting rows run the runtime's own classifier (`ImprintedClassifier`: imprint, shot offsets,
scores), so the benchmark measures the code a device runs. `export/lowshot.py` serves the rows the
runtime does not have (random rows, nearest shot, k-means templates with fixed base rows, centring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imprinting.export import lowshot
from imprinting.export.cub import NUM_BASE, Cub, draw_shots
from imprinting.runtime import ClassSet, ImprintedClassifier
from imprinting.runtime.shot_offsets import ShotOffsets
from imprinting.runtime.store import StoreData


@dataclass(frozen=True)
class ProtocolOutput:
    """preds: {row: {n: [int64 (T,) per seed]}} over the test images `test` (indices into the dataset);
    offsets {n: novel offset} and where they came from; base_rows unit float32 (100, D) (for figures)."""

    test: np.ndarray
    preds: dict[str, dict[int, list[np.ndarray]]]
    offsets: dict[int, float]
    offsets_from: str
    base_rows: np.ndarray


def _learn(classes: ClassSet, c: int, e: np.ndarray) -> None:
    # Ids by position, not content: CUB holds a few duplicate photos, and each image counts as the paper counts it.
    classes.learn(f"class {c}", e, ids=[f"{c}/{j}" for j in range(len(e))])


def _runtime_classifier(dim: int, base: StoreData | None, train_emb: np.ndarray, train_lab: np.ndarray,
                        offsets: ShotOffsets | None) -> ImprintedClassifier:
    """A device's classifier with the 100 base classes: the bundle's, or imprinted from training images."""
    if base is not None:
        classes = ClassSet(dim, base.scale, base.extractor_fingerprint)
        classes.merge(base)
    else:
        classes = ClassSet(dim, 10.0, "benchmark")
        for c in range(NUM_BASE):
            _learn(classes, c, train_emb[train_lab == c])
    return ImprintedClassifier(classes, shot_offsets=offsets)


def _with_novel(clf_base: ImprintedClassifier, rows_by_class: dict[int, np.ndarray]) -> ImprintedClassifier:
    classes = ClassSet.from_store_data(clf_base.classes.to_store_data())
    for c, e in rows_by_class.items():
        _learn(classes, c, e)
    return ImprintedClassifier(classes, shot_offsets=clf_base.shot_offsets)


def protocol_predictions(
    emb: np.ndarray,
    cub: Cub,
    shots: tuple[int, ...],
    seeds: int,
    base: StoreData | None = None,
    table: ShotOffsets | None = None,
    aug: np.ndarray | None = None,
) -> ProtocolOutput:
    """Predictions of every imprinting row on CUB's test images.

    emb unit float32 (N, D) for every image of `cub`; base: the bundle's base classes (None: imprint them
    from the base training images); table: the bundle's shot-aware calibration (None: choose one per n on
    base training images); aug float32 (M, V, D): V augmented views of each novel training image, in
    `cub.indices(train=True, base=False)` order, for the +Aug rows (None: no such rows).
    """
    num_classes = len(cub.class_names)
    train = cub.indices(train=True)
    test = cub.indices(train=False)
    base_train = cub.indices(train=True, base=True)
    t_emb, t_lab = emb[test], cub.labels[test]
    novel_mask = t_lab >= NUM_BASE
    b_emb, b_lab = emb[base_train], cub.labels[base_train]
    assert not np.intersect1d(train, test).size

    if table is not None:
        offsets = {n: float(table(np.array([n]))[0]) for n in shots}
        source = "bundle"
    else:
        offsets = {n: lowshot.choose_novel_offset(b_emb, b_lab, n) for n in shots}
        source = "chosen here on base training images"
        table = ShotOffsets.from_mapping(offsets)
    plain = _runtime_classifier(emb.shape[1], base, b_emb, b_lab, None)
    calibrated = _runtime_classifier(emb.shape[1], base, b_emb, b_lab, table)
    base_rows = plain.weights[:NUM_BASE]
    # Centring (SimpleShot's CL2N) on the mean of the base training images.
    centre = b_emb.mean(0)
    c_emb = lowshot.unit_rows(emb - centre)
    c_base_rows = lowshot.class_means(c_emb[base_train], b_lab, np.arange(NUM_BASE))
    aug_of = {int(i): k for k, i in enumerate(cub.indices(train=True, base=False))}
    preds: dict[str, dict[int, list[np.ndarray]]] = {}

    def add(row: str, n: int, p: np.ndarray) -> None:
        preds.setdefault(row, {}).setdefault(n, []).append(np.asarray(p, np.int64))

    for seed in range(seeds):
        rand = lowshot.xavier_rows(num_classes - NUM_BASE, emb.shape[1], seed)
        p = lowshot.predict(t_emb, np.concatenate([base_rows, rand]))
        for n in shots:
            add("Rand-noFT", n, p)
    for n in shots:
        for seed in range(seeds):
            s_idx = draw_shots(cub, n, seed)
            s_lab = cub.labels[s_idx]
            by_class = {c: emb[s_idx[s_lab == c]] for c in range(NUM_BASE, num_classes)}
            add("Imprinting", n, _with_novel(plain, by_class).scores(t_emb).argmax(1))
            add("Imprinting + calibration", n, _with_novel(calibrated, by_class).scores(t_emb).argmax(1))
            if aug is not None:
                # One embedding per shot: the mean of its views, so a class still counts n shots.
                by_class_aug = {c: aug[[aug_of[int(i)] for i in s_idx[s_lab == c]]].mean(1) for c in by_class}
                add("Imprinting + Aug", n, _with_novel(plain, by_class_aug).scores(t_emb).argmax(1))
                add("Imprinting + Aug + calibration", n, _with_novel(calibrated, by_class_aug).scores(t_emb).argmax(1))
            add("Nearest shot (Fig. 6)", n, lowshot.predict_nearest_shot(t_emb, base_rows, emb[s_idx], s_lab, num_classes))
            if n > 1:
                add("Imprinting, 3 templates/class", n,
                    lowshot.predict_templates(t_emb, base_rows, emb[s_idx], s_lab, num_classes, 3))
            c_novel = lowshot.class_means(c_emb[s_idx], s_lab, np.arange(NUM_BASE, num_classes))
            add("Imprinting, centred (CL2N)", n, lowshot.predict(c_emb[test], np.concatenate([c_base_rows, c_novel])))
            # Table 3's transfer setting: novel classes only, 100-way.
            novel_rows = lowshot.class_means(emb[s_idx], s_lab, np.arange(NUM_BASE, num_classes))
            p = np.full(len(test), -1, np.int64)
            p[novel_mask] = lowshot.predict(t_emb[novel_mask], novel_rows) + NUM_BASE
            add("Transfer, novel only (Table 3)", n, p)
    return ProtocolOutput(test, preds, offsets, source, base_rows)


def protocol_scores(out: ProtocolOutput, cub: Cub) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """{row: {n: [(novel top-1 %, all-class top-1 %) per seed]}}; the transfer row scores novel images only."""
    t_lab = cub.labels[out.test]
    novel = t_lab >= NUM_BASE
    rows: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for row, by_n in out.preds.items():
        for n, ps in by_n.items():
            for p in ps:
                s = lowshot.score(p, t_lab, novel)
                pair = (s.novel, s.novel) if row.startswith("Transfer") else (s.novel, s.all)
                rows.setdefault(row, {}).setdefault(n, []).append(pair)
    return rows
