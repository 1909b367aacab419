"""Figures 5 and 7 of the CUB benchmark.

Figure 5 (exemplar sheet): 1-shot imprinting with the users' extractor; novel classes sorted by their recall,
the best and the worst shown with their one exemplar, sampled test images it got right and sampled
failures labelled with the class they went to.

Figure 7 (embedding dimension): heads of D = 64 ... 1280 trained by `imprint train`'s fast path on the
cached pooled features, and the unprojected pooled features, each scored with imprinting (+ shot-aware
calibration) on the same draws. PyTorch fp32 features: the exported files match them to cosine >= 0.999.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from imprinting.export import lowshot
from imprinting.export.cub import NUM_BASE, Cub, draw_shots

log = logging.getLogger("cub")


def _pretty(name: str) -> str:
    return name.split(".", 1)[-1].replace("_", " ")


def exemplar_sheet(cub: Cub, emb: np.ndarray, base_rows: np.ndarray, offset: float, out: Path, title: str,
                   rows_each: int = 4, samples: int = 4, seed: int = 0) -> dict:
    """Draw the Figure 5 sheet to `out` (a JPEG keeps 72 photos under 1 MB). emb unit (N, D) for every CUB image; base_rows (100, D).
    Returns {class name: recall} for the classes shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from imprinting.runtime.images import load_image

    shots = draw_shots(cub, 1, seed)
    novel_rows = lowshot.unit_rows(emb[shots])
    test = cub.indices(train=False)
    t_lab = cub.labels[test]
    pred = lowshot.predict(emb[test], np.concatenate([base_rows, novel_rows]), offset)
    novel_classes = np.arange(NUM_BASE, len(cub.class_names))
    recall = np.array([(pred[t_lab == c] == c).mean() for c in novel_classes])
    order = np.argsort(-recall, kind="stable")
    chosen = list(order[:rows_each]) + list(order[-rows_each:])
    rng = np.random.default_rng(seed)
    cols = 1 + 2 * samples
    fig, axes = plt.subplots(len(chosen), cols, figsize=(1.9 * cols, 2.1 * len(chosen)))
    shown = {}
    for r, k in enumerate(chosen):
        c = int(novel_classes[k])
        mine = test[t_lab == c]
        ok = mine[pred[t_lab == c] == c]
        bad = mine[pred[t_lab == c] != c]
        bad_pred = pred[t_lab == c][pred[t_lab == c] != c]
        pick_ok = rng.choice(len(ok), min(samples, len(ok)), replace=False) if len(ok) else []
        pick_bad = rng.choice(len(bad), min(samples, len(bad)), replace=False) if len(bad) else []
        cells = [(shots[c - NUM_BASE], f"{_pretty(cub.class_names[c])}\nrecall {recall[k]:.0%}", "black")]
        cells += [(ok[i], "right", "green") for i in pick_ok] + [None] * (samples - len(pick_ok))
        cells += [(bad[i], f"→ {_pretty(cub.class_names[bad_pred[i]])}", "red") for i in pick_bad]
        cells += [None] * (samples - len(pick_bad))
        for j, cell in enumerate(cells):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if cell is None:
                continue
            idx, text, colour = cell
            ax.imshow(load_image(cub.paths[idx]))
            ax.set_title(text, fontsize=7, color=colour)
            if j == 0:
                for s in ax.spines.values():
                    s.set_visible(True)
                    s.set_linewidth(2.5)
        shown[cub.class_names[c]] = float(recall[k])
    fig.suptitle(f"{title}: 1-shot exemplar (left), sampled successes (green) and failures (red, labelled with "
                 f"the predicted class); best {rows_each} and worst {rows_each} novel classes by recall", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90, pil_kwargs={"quality": 85})
    plt.close(fig)
    return shown


def dimension_sweep(cub: Cub, dims: tuple[int, ...], shots: list[int], seeds: int, views: int,
                    cache: str | None) -> dict:
    """Figure 7 rows: {"D=64": {n: [(novel, all) per seed]}, ...} with imprinting + shot-aware calibration,
    imprinted base rows, PyTorch fp32 pooled features through each trained head."""
    from imprinting.export.features import pooled_features
    from imprinting.export.model import ExtractorConfig, ImprintExtractor
    from imprinting.export.train import HeadOptions, embed_features, train_head
    from imprinting.runtime.preprocess import PreprocessSpec

    spec = PreprocessSpec()
    backbone = ImprintExtractor(ExtractorConfig(embedding_dim=0)).eval()
    base_idx, novel_idx, test_idx = (cub.indices(train=True, base=True), cub.indices(train=True, base=False),
                                     cub.indices(train=False))
    # The cache keys of `imprint train` and the fine-tuning rows, so nothing is extracted twice.
    fb, _ = pooled_features(backbone, [cub.paths[i] for i in base_idx], spec, views=views, cache_dir=cache)
    fn, _ = pooled_features(backbone, [cub.paths[i] for i in novel_idx], spec, views=1, cache_dir=cache)
    ft, _ = pooled_features(backbone, [cub.paths[i] for i in test_idx], spec, views=0, cache_dir=cache)
    pos = np.empty(len(cub.paths), np.int64)
    pos[base_idx], pos[novel_idx], pos[test_idx] = np.arange(len(base_idx)), np.arange(len(novel_idx)), np.arange(len(test_idx))
    b_lab, t_lab = cub.labels[base_idx], cub.labels[test_idx]
    novel_mask = t_lab >= NUM_BASE
    out: dict = {"rows": {}, "epochs": {}, "seconds": {}}
    for dim in dims:
        t0 = time.perf_counter()
        if dim == 0:
            head = None
            out["epochs"]["pooled"] = 0
        else:
            head, report = train_head(fb, b_lab, NUM_BASE, HeadOptions(dim=dim))
            out["epochs"][f"D={dim}"] = report["epochs"]
        name = "pooled 1280 (no projection)" if dim == 0 else f"D={dim}"
        eb, en, et = (embed_features(head, f[:, 0]) for f in (fb, fn, ft))
        base_rows = lowshot.class_means(eb, b_lab, np.arange(NUM_BASE))
        rows = out["rows"].setdefault(name, {})
        for n in shots:
            off = lowshot.choose_novel_offset(eb, b_lab, n)
            for seed in range(seeds):
                s_idx = draw_shots(cub, n, seed)
                novel_rows = lowshot.class_means(en[pos[s_idx]], cub.labels[s_idx], np.arange(NUM_BASE, len(cub.class_names)))
                sc = lowshot.score(lowshot.predict(et, np.concatenate([base_rows, novel_rows]), off), t_lab, novel_mask)
                rows.setdefault(str(n), []).append((sc.novel, sc.all))
        out["seconds"][name] = round(time.perf_counter() - t0, 1)
        log.info("dimension %s done in %.0f s", name, time.perf_counter() - t0)
    return out


def plot_dimensions(sweep: dict, shots: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for metric, (ax, key) in enumerate(zip(axes, ("novel", "all"))):
        for name, per_n in sweep["rows"].items():
            ns = [n for n in shots if per_n.get(str(n))]
            m = [np.mean([x[metric] for x in per_n[str(n)]]) for n in ns]
            s = [np.std([x[metric] for x in per_n[str(n)]]) for n in ns]
            ax.errorbar(ns, m, yerr=s, marker="o", capsize=3, label=name)
        ax.set_xscale("log")
        ax.set_xticks(list(shots), [str(n) for n in shots])
        ax.set_xlabel("shots per novel class (n)")
        ax.set_ylabel(f"top-1 % ({key} test images, 200-way)")
        ax.set_title(f"Embedding dimension (Fig. 7), {key} classes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
