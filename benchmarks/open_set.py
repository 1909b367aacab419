"""Open-set recognition per shot count (issue 29): how well taught and never-taught things are told apart, and
what the bundle's unknown policy does with them, before and after the shot-aware policy.

    python benchmarks/open_set.py --bundle bundles/lite0-imagenet --before-min-cosine 0.465 \
        [--root ../shared/data/CUB_200_2011] [--calib-dir DIR] [--seeds 5] [--out benchmarks/results/open_set.md]

Two protocols, each at n = 1, 2, 5, 10 shots per taught class:
- calibration photos (the export's own kind: scikit-image's sample photos, or --calib-dir): each photo is a class,
  half of them taught from n random views, the rest never taught; asked about other views of all of them. The
  views are drawn with other seeds than the export's, the splits are the trials' own.
- CUB (--root): the 100 novel classes, per seed 50 taught from n *training* images, 50 never taught; all their test
  images asked. "CUB-calibrated" is the policy `imprint export --calib-dir` would choose from class folders of
  CUB's 100 *base* classes (training images only): never a novel class, never a test photo.

Reported per n: AUROC of taught vs never-taught photos by the top-1 cosine and by the top-1 evidence
(cosine x |S| / n, what the shot-aware policy compares); and at each policy: taught photos answered right /
wrong / unknown, the share of right answers kept (not called unknown), and never-taught photos called unknown.
"before" is the single threshold (every class, every shot count); "after" the bundle's policy as the runtime
reads it (runtime/recognizer_options.py bundle_unknown_policy). Uses the bundle's int8 file, as the runtime does.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imprinting.export.unknown_threshold import ThresholdOptions, choose_threshold, threshold_images  # noqa: E402
from imprinting.runtime import ClassSet, ImprintedClassifier, UnknownPolicy, load_bundle, preprocess  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.recognizer_options import bundle_unknown_policy  # noqa: E402

SHOTS = (1, 2, 5, 10)
COLUMNS = ("AUROC cos", "AUROC evidence", "taught: right", "taught: wrong", "taught: unknown", "right kept",
           "never-taught: unknown")


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a taught photo's score > a never-taught one's), ties counting half (Mann-Whitney U / (|pos| |neg|))."""
    s = np.concatenate([pos, neg])
    order = s.argsort(kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s[order][np.r_[False, np.diff(s[order]) == 0]]):  # average ranks of ties
        ranks[s == v] = ranks[s == v].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def measure(emb: np.ndarray, shots: dict[int, np.ndarray], queries: np.ndarray, truth: np.ndarray,
            policies: dict[str, UnknownPolicy], scale: float) -> dict[str, np.ndarray]:
    """One split: classes taught from emb[shots[c]]; queries (q,) indices into emb with truth (q,) (the class,
    or -1 never taught). Per policy the COLUMNS as fractions (the two AUROCs are policy-free)."""
    classes = ClassSet(emb.shape[1], scale, "open-set")
    for c, rows in shots.items():
        classes.learn(str(c), emb[rows], ids=[f"{c}-{i}" for i in rows])
    _, inv, counts, _ = classes.arrays()
    cos = ImprintedClassifier(classes).cosines(emb[queries])
    top = cos.argmax(1)
    c0 = cos.max(1)
    ev = c0 / (counts[top] * inv[top])
    known = truth >= 0
    said = np.array([int(lab) for lab in classes.labels])[top]
    right = known & (said == truth)
    out = {"_curve": (ev[right], ev[~known])}
    for name, policy in policies.items():
        res = ImprintedClassifier(classes, policy).classify(emb[queries], top_k=1)
        unk = np.array([r.unknown for r in res])
        out[name] = np.array([auroc(c0[known], c0[~known]), auroc(ev[known], ev[~known]),
                              (right & ~unk)[known].mean(), (~right & ~unk)[known].mean(), unk[known].mean(),
                              (right & ~unk).sum() / max(1, right.sum()), unk[~known].mean()])
    return out


def calib_protocol(bundle, ex, calib_dir, seeds: int, policies) -> dict[int, dict[str, np.ndarray]]:
    """The calibration-photo protocol: per seed s, 18 views of each photo drawn with seed 1000 + s (the export
    draws with its --seed, 0); half the photos taught from n of their views, asked about the rest."""
    per_seed = []
    for s in range(seeds):
        images, groups = threshold_images(calib_dir, views=max(SHOTS) + 8, seed=1000 + s)
        per_seed.append((embed(ex, bundle, images), groups))
    out = {}
    for n in SHOTS:
        rows = []
        for s, (emb, groups) in enumerate(per_seed):
            rng = np.random.default_rng(s)
            ids = rng.permutation(np.unique(groups))
            taught = ids[: len(ids) // 2]
            shots, queries = {}, []
            for c in taught:
                m = rng.permutation(np.flatnonzero(groups == c))
                shots[int(c)], queries = m[:n], queries + m[n:].tolist()
            queries += np.flatnonzero(~np.isin(groups, taught)).tolist()
            q = np.asarray(queries)
            truth = np.where(np.isin(groups[q], taught), groups[q], -1)
            rows.append(measure(emb, shots, q, truth, policies, bundle.manifest.scale))
        out[n] = {k: np.mean([r[k] for r in rows], axis=0) for k in policies}
        out[n]["_curve"] = tuple(np.concatenate([r["_curve"][i] for r in rows]) for i in (0, 1))
    return out


def embed(ex, bundle, images: list[np.ndarray]) -> np.ndarray:
    x = preprocess(images, bundle.manifest.preprocess, ex.layout)
    e = np.concatenate([ex.run(x[i: i + 16]) for i in range(0, len(x), 16)])
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def cub_protocol(emb: np.ndarray, cub, seeds: int, policies, scale: float) -> dict[int, dict[str, np.ndarray]]:
    from imprinting.export.cub import NUM_BASE

    train, test = cub.indices(train=True, base=False), cub.indices(train=False, base=False)
    out = {}
    for n in SHOTS:
        rows = []
        for s in range(seeds):
            rng = np.random.default_rng(s)
            taught = rng.permutation(np.arange(NUM_BASE, len(cub.class_names)))[:50]
            shots = {int(c): rng.permutation(train[cub.labels[train] == c])[:n] for c in taught}
            truth = np.where(np.isin(cub.labels[test], taught), cub.labels[test], -1)
            rows.append(measure(emb, shots, test, truth, policies, scale))
        out[n] = {k: np.mean([r[k] for r in rows], axis=0) for k in policies}
        out[n]["_curve"] = tuple(np.concatenate([r["_curve"][i] for r in rows]) for i in (0, 1))
    return out


def cub_oracle(emb: np.ndarray, cub, seeds: int) -> list[str]:
    """Why the table is on evidence: per n, the cosine and the evidence that keep 95% of right answers, chosen on
    the CUB test photos themselves (analysis only, never a policy), and the never-taught photos they catch."""
    from imprinting.export.cub import NUM_BASE

    train, test = cub.indices(train=True, base=False), cub.indices(train=False, base=False)
    lines = ["| n | cosine keeping 95% | never-taught caught | evidence keeping 95% | never-taught caught | "
             "mean n / abs(S) |", "|---:|---:|---:|---:|---:|---:|"]
    for n in SHOTS:
        right = {"cos": [], "ev": []}
        never = {"cos": [], "ev": []}
        g_all = []
        for s in range(seeds):
            rng = np.random.default_rng(s)
            taught = rng.permutation(np.arange(NUM_BASE, len(cub.class_names)))[:50]
            sums = np.stack([emb[rng.permutation(train[cub.labels[train] == c])[:n]].sum(0) for c in taught])
            g = n / np.linalg.norm(sums, axis=1)
            cos = emb[test] @ (sums / np.linalg.norm(sums, axis=1, keepdims=True)).T
            top, c0 = cos.argmax(1), cos.max(1)
            known = np.isin(cub.labels[test], taught)
            ok = known & (taught[top] == cub.labels[test])
            for key, v in (("cos", c0), ("ev", c0 / g[top])):
                right[key].append(v[ok])
                never[key].append(v[~known])
            g_all.append(g.mean())
        row = [f"{n}"]
        for key in ("cos", "ev"):
            t = float(np.quantile(np.concatenate(right[key]), 0.05))
            row += [f"{t:.3f}", f"{100 * (np.concatenate(never[key]) < t).mean():.1f}"]
        lines.append("| " + " | ".join(row + [f"{np.mean(g_all):.3f}"]) + " |")
    return lines + [""]


def cub_smoothing(bundle, ex, cub, policies: dict[str, UnknownPolicy], seeds: int, frames: int,
                  per_side: int = 150) -> list[str]:
    """The camera loop's vote (runtime/loop_options.py Smoother: a label needs more than half of the last
    `frames` answers, else unknown) on CUB: each asked photo becomes `frames` random views (crops of 50-100% of
    the area, flips, colour jitter: a hand-held camera), per seed `per_side` photos of taught and of never-taught
    classes; rates per frame and after the vote."""
    from imprinting.export.calibration import augment
    from imprinting.export.cub import NUM_BASE
    from imprinting.runtime.images import load_image
    from imprinting.runtime.loop_options import Smoother

    train, test = cub.indices(train=True, base=False), cub.indices(train=False, base=False)
    acc: dict[tuple[int, str], list[np.ndarray]] = {}
    for s in range(seeds):
        rng = np.random.default_rng(s)
        taught = rng.permutation(np.arange(NUM_BASE, len(cub.class_names)))[:50]
        known = np.isin(cub.labels[test], taught)
        asked = np.concatenate([rng.choice(test[known], per_side, replace=False),
                                rng.choice(test[~known], per_side, replace=False)])
        views = [augment(load_image(cub.paths[i]), rng, min_area=0.5) for i in asked for _ in range(frames)]
        v = embed(ex, bundle, views).reshape(len(asked), frames, -1)
        truth = np.where(np.isin(cub.labels[asked], taught), cub.labels[asked], -1)
        for n in (1, 5):
            classes = ClassSet(v.shape[2], bundle.manifest.scale, "smoothing")
            for c in np.random.default_rng(100 + s).permutation(taught):
                pool = np.random.default_rng(int(c) + 1000 * s).permutation(train[cub.labels[train] == c])[:n]
                classes.learn(str(c), cub_emb_rows(bundle, cub, pool))
            for name, policy in policies.items():
                res = ImprintedClassifier(classes, policy).classify(v.reshape(-1, v.shape[2]), top_k=1)
                said = np.array([-1 if r.label is None else int(r.label) for r in res]).reshape(len(asked), frames)
                voted = []
                for row in said:
                    sm = Smoother(frames)
                    for lab in row:
                        out, _ = sm.update(None if lab < 0 else lab, 0.0)
                    voted.append(-1 if out is None else out)
                acc.setdefault((n, name), []).append(np.array(
                    [rates_of(said[:, 0], truth), rates_of(np.asarray(voted), truth)]))
    lines = [f"| policy | n | frame: right | frame: wrong | frame: unknown | frame: never-taught unknown | "
             f"vote of {frames}: right | wrong | unknown | never-taught unknown |", "|---|---:|" + "---:|" * 8]
    for (n, name), rows in sorted(acc.items()):
        r = 100 * np.mean(rows, axis=0)
        lines.append(f"| {name} | {n} | " + " | ".join(f"{x:.1f}" for x in r.ravel()) + " |")
    return lines + [""]


_CUB_EMB: dict[str, np.ndarray] = {}


def cub_emb_rows(bundle, cub, rows: np.ndarray) -> np.ndarray:
    """Rows of the cached CUB embeddings (set by main)."""
    return _CUB_EMB["emb"][rows]


def rates_of(said: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(taught right, taught wrong, taught unknown, never-taught unknown) for answers (m,) (-1: unknown)."""
    k = truth >= 0
    return np.array([(said[k] == truth[k]).mean(), ((said[k] != truth[k]) & (said[k] >= 0)).mean(),
                     (said[k] < 0).mean(), (said[~k] < 0).mean()])


def cub_calibrated(emb: np.ndarray, cub, false_accept: float) -> UnknownPolicy:
    """The policy --calib-dir would choose from CUB's base classes as class folders (16 training images each)."""
    train = cub.indices(train=True, base=True)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.permutation(train[cub.labels[train] == c])[:16] for c in np.unique(cub.labels[train])[:60]])
    t = choose_threshold(emb[rows], cub.labels[rows], ThresholdOptions(false_accept=false_accept))
    return UnknownPolicy(min_cosine=t.min_cosine, min_evidence_by_shots=t.table)


def table(title: str, results: dict[int, dict[str, np.ndarray]], names: dict[str, str]) -> list[str]:
    lines = [f"### {title}", "", "| policy | n | " + " | ".join(COLUMNS) + " |", "|---|---:|" + "---:|" * len(COLUMNS)]
    for key, label in names.items():
        for n, r in results.items():
            v = r[key]
            lines.append(f"| {label} | {n} | {v[0]:.3f} | {v[1]:.3f} | " + " | ".join(f"{100 * x:.1f}" for x in v[2:]) + " |")
    return lines + [""]


def policy_line(name: str, p: UnknownPolicy) -> str:
    if p.min_evidence_by_shots is None:
        return f"- {name}: unknown below cosine {p.min_cosine:.4f} for every class"
    t = p.min_evidence_by_shots
    return f"- {name}: unknown below evidence " + ", ".join(f"{o:.4f} at {s} shot(s)" for s, o in zip(t.shots, t.offsets))


def plot(path: Path, panels: list[tuple[str, dict, dict[str, str]]]) -> None:
    """Per panel and shot count, the trade-off of a bar on the top-1 evidence (never-taught photos called unknown
    against right answers kept, as the bar rises), and each policy's operating point on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    markers = ["o", "s", "^", "D"]
    for ax, (title, res, names) in zip(axes[0], panels):
        for j, n in enumerate(SHOTS):
            right, never = res[n]["_curve"]
            bars = np.quantile(np.concatenate([right, never]), np.linspace(0, 1, 200))
            line, = ax.plot([100 * (never < b).mean() for b in bars], [100 * (right >= b).mean() for b in bars],
                            lw=1, label=f"n = {n}: any evidence bar")
            for (key, label), mk in zip(names.items(), markers):
                v = res[n][key]
                ax.plot(100 * v[6], 100 * v[5], mk, color=line.get_color(), mfc="none" if key == "before" else None,
                        label=label if j == 0 else None)
        ax.axhline(95, color="grey", lw=0.8, ls=":")
        ax.set(title=title, xlabel="never-taught photos called unknown (%)", ylabel="right answers kept (%)",
               ylim=(50, 101))
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--before-min-cosine", type=float, default=None,
                    help="the single threshold to compare with (default: the bundle's unknown_min_cosine)")
    ap.add_argument("--root", help="CUB_200_2011 directory (omit: the calibration-photo protocol only)")
    ap.add_argument("--calib-dir", help="calibration photos (default: scikit-image's sample photos)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--smoothing-frames", type=int, default=5,
                    help="CUB: also measure the camera loop's vote over this many views of each photo (0: skip)")
    ap.add_argument("--cache", default="cache/cub", help="CUB embedding cache directory")
    ap.add_argument("--out", default="benchmarks/results/open_set.md")
    args = ap.parse_args(argv)
    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    after = bundle_unknown_policy(m)
    before = UnknownPolicy(min_cosine=args.before_min_cosine if args.before_min_cosine is not None else after.min_cosine)
    policies = {"before": before, "after": after}
    names = {"before": "before (one threshold)", "after": "after (shot-aware, shipped)"}
    ex = bundle.open_extractor(None, "int8")
    cub = emb = None
    if args.root:
        from cub_trials import int8_unit_embeddings

        from imprinting.export.cub import load_cub

        cub = load_cub(args.root)
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        policies["cub"] = cub_calibrated(emb, cub, m.calibration.get("unknown_false_accept", 0.05))
    lines = ["# Open-set recognition per shot count (issue 29)", "",
             f"`python benchmarks/open_set.py {shlex.join(sys.argv[1:] if argv is None else argv)}`", "", describe(), "",
             f"Bundle {m.name} ({ex.entry.file}); {args.seeds} seeds, mean; rates in % of the photos asked (\"right "
             "kept\": of the taught photos whose top-1 is right, the share not called unknown).", "",
             policy_line("before", before), policy_line("after", after)]
    if cub is not None:
        lines.append(policy_line("CUB-calibrated", policies["cub"]))
    calib = calib_protocol(bundle, ex, args.calib_dir, args.seeds, {k: policies[k] for k in names})
    panels = [("calibration photos", calib, names)]
    lines += ["", *table(f"Calibration photos ({args.calib_dir or 'scikit-image samples'}, other views and splits "
                         "than the export's)", calib, names)]
    if cub is not None:
        cub_names = {**names, "cub": "CUB-calibrated (base classes)"}
        res = cub_protocol(emb, cub, args.seeds, policies, m.scale)
        panels.append(("CUB novel classes", res, cub_names))
        lines += table("CUB: 50 novel classes taught from n training images, 50 never taught, all their test images",
                       res, cub_names)
        if args.smoothing_frames:
            _CUB_EMB["emb"] = emb
            lines += [f"### The camera loop's vote over {args.smoothing_frames} frames (CUB, hand-held views)", "",
                      "Each asked photo becomes a burst of random views (crops of 50-100% of the area, flips, colour "
                      "jitter); the classes are taught from n training photos as above. \"frame\": the first view "
                      "alone; \"vote\": the loop's majority vote over the burst (a label needs more than half).", "",
                      *cub_smoothing(bundle, ex, cub, {k: policies[k] for k in ("after", "cub")},
                                     min(args.seeds, 2), args.smoothing_frames)]
        lines += ["### Why evidence: the bar that keeps 95% of right answers on CUB, by shot count", "",
                  "Chosen on the CUB test photos themselves, for analysis only (no policy uses it). The cosine bar "
                  "climbs with n, the evidence bar (cosine x abs(S) / n) stays put, at the same catch rate: one "
                  "number per shot count chosen on other photos carries over.", "", *cub_oracle(emb, cub, args.seeds)]
    png = Path(args.out).with_suffix(".png")
    plot(png, panels)
    lines += [f"![operating points]({png.name})", ""]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
