"""Can a class store's own shots tell the level of "unknown" for its domain? (issue 29)

    python benchmarks/unknown_level.py --bundle bundles/lite0-imagenet --root ../shared/data/CUB_200_2011 \
        [--seeds 5] [--out benchmarks/results/unknown_level.md]

The level that keeps 95% of right answers depends on the domain (the issue's general-object benchmark: about
0.41 in evidence at every shot count; CUB's birds: about 0.50, benchmarks/results/open_set.md), and the photos an
export is calibrated on only guess it. A store taught with 2+ shots per class holds photos of the user's own
domain: `imprint info --store` (runtime/unknown_check.py) holds each shot out and asks it again. This measures how
well that predicts what the test photos then do, on CUB's 100 novel classes: per seed 50 taught from n training
images, 50 never taught, all their test images asked (the protocol of benchmarks/open_set.py). Per n:
- predicted from the taught shots alone: right answers kept and never-taught let through at the bundle's policy,
  the store's keep-95% evidence level, and the let-through at it;
- measured on the test photos: the same two rates at the bundle's policy, at the store's level (what
  `--min-evidence LEVEL` gives), and the test photos' own keep-95% level (an oracle, for comparison only).
Nothing here chooses anything from a test photo: the store's level comes from training images only.

With --views, also why the default bundle cannot find the level from its calibration photos: there each "class"
is one photo and its random views (scikit-image's samples have no two photos of one thing). On CUB's base
classes (training images only), the keep-95% evidence of such view-classes against that of real classes (16
photos of each species), in the export's open-set trials (export/unknown_threshold.py open_set_trials).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imprinting.runtime import ClassSet, ImprintedClassifier, UnknownPolicy, load_bundle  # noqa: E402
from imprinting.runtime.cli_options import unknown_option  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.recognizer_options import bundle_unknown_policy  # noqa: E402
from imprinting.runtime.unknown_check import check_unknown  # noqa: E402

SHOTS = (1, 2, 3, 5, 10)
KEYS = ("pred kept", "pred through", "store level", "pred through at level", "kept", "through", "kept at level",
        "through at level", "any-n level", "kept at any-n level", "test level")
LEVELS = ("store level", "any-n level", "test level")  # evidence values; the other KEYS are rates


def trial(emb: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, novel: np.ndarray, n: int,
          policy: UnknownPolicy, seed: int, scale: float = 10.0) -> dict[str, float]:
    """One split: half of `novel` classes taught from n `train` rows of unit embeddings emb (N, D) (labels (N,)),
    every `test` row of the novel classes asked. The KEYS as fractions (levels as evidence; NaN where undefined)."""
    rng = np.random.default_rng(seed)
    taught = rng.permutation(novel)[: len(novel) // 2]
    classes = ClassSet(emb.shape[1], scale, "unknown-level")
    for c in taught:
        rows = rng.permutation(train[labels[train] == c])[:n]
        classes.learn(str(c), emb[rows], ids=[str(i) for i in rows])
    chk = check_unknown(classes, policy)
    q = test[np.isin(labels[test], novel)]
    known = np.isin(labels[q], taught)
    level = chk.keep95
    out = {"pred kept": chk.kept, "pred through": chk.let_through, "store level": level,
           "pred through at level": chk.let_through_at_keep95}

    def rates(p: UnknownPolicy) -> tuple[float, float]:
        res = ImprintedClassifier(classes, p).classify(emb[q], top_k=1)
        unk = np.array([r.unknown for r in res])
        said = np.array([int(r.top.label) for r in res])
        right = known & (said == labels[q])
        return float((right & ~unk).sum() / max(1, right.sum())), float((~unk)[~known].mean())

    out["kept"], out["through"] = rates(policy)
    if level is not None:
        out["kept at level"], out["through at level"] = rates(unknown_option(None, None, level))
    sums, inv, counts, _ = classes.arrays()
    cos = emb[q] @ (sums * inv[:, None]).T
    top = cos.argmax(1)
    ev = cos.max(1) / (counts[top] * inv[top])
    ok = known & (np.array([int(lab) for lab in classes.labels])[top] == labels[q])
    loose = check_unknown(classes, policy, level_shots=2).keep95
    out["any-n level"] = loose
    if loose is not None:
        out["kept at any-n level"] = rates(unknown_option(None, None, loose))[0]
    out["test level"] = float(np.quantile(ev[ok], 0.05)) if ok.any() else None
    return {k: (np.nan if out.get(k) is None else float(out[k])) for k in KEYS}


def report(per_n: dict[int, list[dict[str, float]]]) -> list[str]:
    """A table: per n, each KEY as mean (min-max over seeds); rates in %, levels as evidence."""
    lines = ["| n | predicted: kept | predicted: let through | store's level | predicted: let through at it | "
             "test: kept | test: let through | test at store's level: kept | let through | store's level from classes of "
             "any shot count | test kept at it | test photos' own level |",
             "|---:|" + "---:|" * len(KEYS)]
    for n, rows in per_n.items():
        cells = []
        for k in KEYS:
            v = np.array([r[k] for r in rows])
            if np.isnan(v).all():
                cells.append("-")
                continue
            v = v[~np.isnan(v)]
            f = (lambda x: f"{x:.3f}") if k in LEVELS else (lambda x: f"{100 * x:.1f}")
            cells.append(f"{f(v.mean())} ({f(v.min())}-{f(v.max())})" if len(v) > 1 else f(v.mean()))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def plot(path: Path, per_n: dict[int, list[dict[str, float]]]) -> None:
    """Left: the store's level (from its shots, classes of any shot count) against the test photos' own level,
    one dot per seed; right: the share of right answers on the test photos that the store's level keeps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    for j, (n, rows) in enumerate(per_n.items()):
        rows = [r for r in rows if not np.isnan(r["any-n level"])]
        if not rows:
            continue
        left.plot([r["test level"] for r in rows], [r["any-n level"] for r in rows], "o", label=f"n = {n}")
        right.plot([j] * len(rows), [100 * r["kept at any-n level"] for r in rows], "o")
    left.plot([0.4, 0.65], [0.4, 0.65], color="grey", lw=0.8, ls=":")
    left.set(xlim=(0.45, 0.62), ylim=(0.45, 0.62), title="keep-95% evidence level",
             xlabel="the test photos' own (oracle)", ylabel="the store's, from its shots held out")
    left.legend(fontsize=8)
    right.axhline(95, color="grey", lw=0.8, ls=":")
    right.set(xticks=range(len(per_n)), xticklabels=[f"n = {n}" for n in per_n], ylim=(60, 100),
              title="test photos: right answers kept at the store's level", ylabel="%")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def views_section(bundle, cub, seed: int = 0, classes: int = 60, views: int = 12) -> list[str]:
    """The keep-95% evidence (5% quantile of right answers' evidence in the export's open-set trials, 1 and 5
    shots) of classes made of one CUB training photo and its random views (crops of at least 20% of the area, the
    export's, and of at least 8%), and of real classes (16 training photos of a species): base classes only."""
    from cub_trials import int8_unit_embeddings

    from imprinting.export.calibration import augment
    from imprinting.export.unknown_threshold import open_set_trials
    from imprinting.runtime import preprocess
    from imprinting.runtime.images import load_image

    train = cub.indices(train=True, base=True)
    rng = np.random.default_rng(seed)
    ids = np.unique(cub.labels[train])[:classes]
    ex = bundle.open_extractor(None, "int8")

    def embed(images: list[np.ndarray]) -> np.ndarray:
        x = preprocess(images, bundle.manifest.preprocess, ex.layout)
        e = np.concatenate([ex.run(x[i: i + 16]) for i in range(0, len(x), 16)])
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def levels(e: np.ndarray, g: np.ndarray) -> list[str]:
        out = []
        for n in (1, 5):
            _, pos, _ = open_set_trials(e, g, n, 20, np.random.default_rng(seed))
            out.append(f"{np.quantile(pos, 0.05):.3f}")
        return out

    photos = [load_image(cub.paths[rng.choice(train[cub.labels[train] == c])]) for c in ids]
    g = np.repeat(np.arange(len(ids)), views)
    lines = ["| classes (CUB base species, training photos) | keep-95% evidence, 1 shot | 5 shots |",
             "|---|---:|---:|"]
    for area in (0.2, 0.08):
        vr = np.random.default_rng(seed + 1)
        imgs = [v for p in photos for v in [p, *(augment(p, vr, min_area=area) for _ in range(views - 1))]]
        lines.append(f"| one photo + {views - 1} random views (crops of {100 * area:.0f}-100% of the area) | "
                     + " | ".join(levels(embed(imgs), g)) + " |")
    ex.close()
    rows = np.concatenate([rng.permutation(train[cub.labels[train] == c])[:16] for c in ids])
    emb = int8_unit_embeddings(bundle, [cub.paths[i] for i in rows], "cache/cub-views")
    lines.append("| 16 photos of the species | " + " | ".join(levels(emb, cub.labels[rows])) + " |")
    return lines + [""]


def near_duplicate_section(bundle, cub, emb: np.ndarray, seed: int = 0, teaches: int = 40,
                           frames: int = 5) -> list[str]:
    """Why NEAR_DUPLICATE: cosines between different photos of one species (all of CUB), and between the frames of
    a simulated teach (`frames` random views of one photo: crops of 70-100% or 90-100% of the area with the
    export's colour jitter), with how many teaches' frames the check takes for one photo."""
    from imprinting.export.calibration import augment
    from imprinting.runtime import preprocess
    from imprinting.runtime.images import load_image
    from imprinting.runtime.unknown_check import NEAR_DUPLICATE, near_duplicate_groups

    pairs = np.concatenate([(lambda e: (e @ e.T)[np.triu_indices(len(e), 1)])(emb[cub.labels == c])
                            for c in np.unique(cub.labels)])
    lines = [f"| pairs | count | median cosine | 10% below | at or above {NEAR_DUPLICATE} | one photo for the check |",
             "|---|---:|---:|---:|---:|---:|",
             f"| different photos of one CUB species | {pairs.size} | {np.median(pairs):.3f} | "
             f"{np.quantile(pairs, 0.1):.3f} | {100 * (pairs >= NEAR_DUPLICATE).mean():.4f}% | - |"]
    ex = bundle.open_extractor(None, "int8")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(cub.paths), teaches, replace=False)
    for area in (0.9, 0.7):
        vals, whole = [], 0
        for i in picks:
            photo = load_image(cub.paths[i])
            x = preprocess([augment(photo, rng, min_area=area) for _ in range(frames)], bundle.manifest.preprocess,
                           ex.layout)
            e = ex.run(x)
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            vals.append((e @ e.T)[np.triu_indices(frames, 1)])
            whole += int(near_duplicate_groups(e.astype(np.float64)).max() == 0)
        v = np.concatenate(vals)
        lines.append(f"| {frames} frames of one teach (crops of {100 * area:.0f}-100%, colour jitter) | {v.size} | "
                     f"{np.median(v):.3f} | {np.quantile(v, 0.1):.3f} | {100 * (v >= NEAR_DUPLICATE).mean():.1f}% | "
                     f"{whole} of {teaches} teaches |")
    ex.close()
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--root", required=True, help="CUB_200_2011 directory")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache", default="cache/cub", help="CUB embedding cache directory")
    ap.add_argument("--out", default="benchmarks/results/unknown_level.md")
    ap.add_argument("--views", action="store_true", help="also compare view-classes with real classes (module doc)")
    args = ap.parse_args(argv)
    from cub_trials import int8_unit_embeddings

    from imprinting.export.cub import NUM_BASE, load_cub

    bundle = load_bundle(args.bundle)
    policy = bundle_unknown_policy(bundle.manifest)
    cub = load_cub(args.root)
    emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
    train, test = cub.indices(train=True, base=False), cub.indices(train=False, base=False)
    novel = np.arange(NUM_BASE, len(cub.class_names))
    per_n = {n: [trial(emb, cub.labels, train, test, novel, n, policy, s, bundle.manifest.scale)
                 for s in range(args.seeds)] for n in SHOTS}
    png = Path(args.out).with_suffix(".png")
    plot(png, per_n)
    t = policy.min_evidence_by_shots
    shipped = ", ".join(f"{o:.4f} at {s}" for s, o in zip(t.shots, t.offsets)) if t else f"cosine {policy.min_cosine}"
    lines = ["# The level of unknown from a store's own shots (issue 29)", "",
             f"`python benchmarks/unknown_level.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "",
             describe(), "",
             f"Bundle {bundle.manifest.name} (int8 embeddings); its policy: evidence {shipped} shot(s). CUB novel "
             f"classes, {args.seeds} seeds: mean (min-max). \"predicted\": `imprint info --store` on the 50 taught "
             "classes' training shots alone; \"test\": all test photos of the 50 taught and 50 never-taught classes; "
             "\"store's level\": the evidence that keeps 95% of the held-out right answers, applied to the test "
             "photos as `--min-evidence`; the last column is the test photos' own keep-95% level (an oracle, "
             "chosen on them, for comparison only). The store states its level from classes with 5+ shots "
             "(runtime/unknown_check.py LEVEL_SHOTS); the \"any shot count\" columns show why: from 2 or 3 shots "
             "per class it runs high. With 1 shot per class nothing can be held out.", "",
             *report(per_n), "", *(["### Views of one photo are not photos of one thing", "",
                                    "The default bundle's calibration classes are single photos and their random "
                                    "views; on CUB's base classes, such classes keep 95% of right answers at a "
                                    "far higher evidence than real classes do, so they cannot tell a domain's "
                                    "level:", "", *views_section(bundle, cub),
                                    "### Frames of one teach are one photo for the check", "",
                                    "The check holds out near-duplicates together (cosine chains of "
                                    "runtime/unknown_check.py NEAR_DUPLICATE or more), so that the frames of a "
                                    "camera teach do not answer each other:", "",
                                    *near_duplicate_section(bundle, cub, emb)] if args.views else []),
             f"![the store's level against the test photos' own]({png.name})", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
