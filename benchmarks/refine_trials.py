"""Does refinement after imprinting (runtime/refine.py: NumPy, frozen extractor) help on CUB? (issue 15)

    python benchmarks/refine_trials.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/refine_trials.md]

1. Settings (rank of the map, 0 = rows only; learning rate; steps) are chosen once, on a pseudo-novel split
   of the first bundle's *base* training images only: 50 base classes keep all their images as shots, 50
   play novel classes with n shots, 10 held-out images per class score them (all-class top-1, mean of
   n = 10, 20 and 2 splits, refined without the held-out check). The first bundle should be one whose
   extractor never trained on CUB's base classes (lite0-imagenet), or the split says little.
2. With those settings, the CUB protocol (benchmarks/cub_protocol.py's shot draws, 5 seeds): base rows from
   the bundle or imprinted from the base training images, 10 base training images per class as the
   exemplars a bundle would carry, novel rows from n shots; `plan_refinement` declines unless every class
   has 10 shots, holds out one shot per class and refines only if that says it helps. Both sides use the shot-aware calibration
   offsets (the bundle's, or chosen on base training images). Top-1 on CUB's test images.
3. The time of refining 200 classes x 20 shots here, and this machine's float32 matrix throughput.
Uses the int8 file's embeddings (cached by benchmarks/cub.py in cache/cub).
"""

from __future__ import annotations

import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_trials import int8_format, int8_unit_embeddings, trial_parser, write_results  # noqa: E402
from mirror_trials import novel_mirrors  # noqa: E402

from imprinting.export import lowshot  # noqa: E402
from imprinting.export.cub import NUM_BASE, draw_shots, load_cub  # noqa: E402
from imprinting.runtime import load_bundle  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.refine import RefineOptions, fit, plan_refinement  # noqa: E402
from imprinting.runtime.shot_offsets import ShotOffsets  # noqa: E402

SHOTS = (1, 2, 5, 10, 20)
GRID = [dict(rank=r, lr=lr, steps=s) for r, lr, s in itertools.product((0, 32), (3e-4, 1e-3, 3e-3), (25, 50, 100))]
EXEMPLARS = 10  # base training images per base class that a bundle would carry


def top1(cos: np.ndarray, y: np.ndarray, off: np.ndarray, novel: np.ndarray) -> tuple[float, float]:
    """(novel, all-class) top-1 % of cosines (N, K) plus offsets (K,) against labels y (N,)."""
    p = (cos + off).argmax(1)
    return 100 * float((p[novel] == y[novel]).mean()), 100 * float((p == y).mean())


def pseudo_novel(e: np.ndarray, lab: np.ndarray, n: int, opt: RefineOptions, seed: int, scale: float,
                 table: ShotOffsets) -> tuple[float, float]:
    """All-class top-1 (imprinting, refined) on a split of base training images only."""
    rng = np.random.default_rng(500 + seed)
    perm = rng.permutation(NUM_BASE)
    shots, shot_c, test, test_c = [], [], [], []
    for j, c in enumerate(perm):
        idx = rng.permutation(np.flatnonzero(lab == c))
        use = idx[10:] if j < 50 else idx[10:10 + n]
        shots.append(e[use])
        shot_c += [j] * len(use)
        test.append(e[idx[:10]])
        test_c += [j] * 10
    x, y = np.concatenate(shots), np.array(shot_c)
    sums = np.zeros((NUM_BASE, e.shape[1]), np.float32)
    np.add.at(sums, y, x)
    off = table(np.bincount(y, minlength=NUM_BASE)).astype(np.float32)
    emap, rows = fit(x, y, lowshot.unit_rows(sums), scale, off, opt)
    t, tc = np.concatenate(test), np.array(test_c)
    nov = tc >= 50
    return top1(t @ lowshot.unit_rows(sums).T, tc, off, nov)[1], top1(emap(t) @ rows.T, tc, off, nov)[1]


def choose_settings(e: np.ndarray, lab: np.ndarray, scale: float, table: ShotOffsets) -> tuple[dict, list[str]]:
    lines, best, best_gain = [], GRID[0], -np.inf
    for g in tqdm(GRID, desc="settings on base classes", unit="setting"):
        opt = RefineOptions(check=False, **g)
        res = [pseudo_novel(e, lab, n, opt, seed, scale, table) for n in (10, 20) for seed in range(2)]
        gain = float(np.mean([b - a for a, b in res]))
        lines.append(f"| rank {g['rank']}, lr {g['lr']:g}, {g['steps']} steps | {np.mean([a for a, _ in res]):.2f} | "
                     f"{np.mean([b for _, b in res]):.2f} | {gain:+.2f} |")
        if gain > best_gain:
            best, best_gain = g, gain
    return best, lines


def protocol(emb: np.ndarray, cub, base_sums: np.ndarray, scale: float, table: ShotOffsets, opt: RefineOptions,
             seeds: int, mirrors: np.ndarray | None = None) -> list[str]:
    """Table rows per n; with mirrors (unit embeddings of the novel training images' mirrors, in
    `cub.indices(train=True, base=False)` order) each novel shot is the runtime's --mirror shot: the mean of
    the image's and its mirror's unit embeddings."""
    if mirrors is not None:
        emb = emb.copy()
        novel_train = cub.indices(train=True, base=False)
        emb[novel_train] = lowshot.unit_rows((emb[novel_train] + mirrors) / 2)
    test = cub.indices(train=False)
    t_emb, t_lab = emb[test], cub.labels[test]
    nov = t_lab >= NUM_BASE
    bt = cub.indices(train=True, base=True)
    rng = np.random.default_rng(7)
    ex_idx = np.concatenate([rng.permutation(bt[cub.labels[bt] == c])[:EXEMPLARS] for c in range(NUM_BASE)])
    lines = []
    for n in tqdm(SHOTS, desc="CUB protocol", unit="n"):
        acc: dict[str, list[tuple[float, float]]] = {"imprint": [], "refine": []}
        used, secs = 0, []
        for seed in range(seeds):
            s_idx = draw_shots(cub, n, seed)
            s_lab = cub.labels[s_idx]
            novel_sums = np.stack([emb[s_idx[s_lab == c]].sum(0) for c in range(NUM_BASE, 200)])
            sums = np.concatenate([base_sums, novel_sums]).astype(np.float32)
            # The runtime's offsets: by each class's shot count (base classes: their bundle or image count).
            counts = np.concatenate([np.full(NUM_BASE, 1000), np.full(200 - NUM_BASE, n)])
            off = table(counts).astype(np.float32)
            x = np.concatenate([emb[ex_idx], emb[s_idx]])
            y = np.concatenate([cub.labels[ex_idx], s_lab])
            plan = plan_refinement(sums, x, y, scale, off, RefineOptions(**{**opt.__dict__, "seed": seed}))
            used += plan.refined
            secs.append(plan.seconds)
            imprinted = t_emb @ lowshot.unit_rows(sums).T
            acc["imprint"].append(top1(imprinted, t_lab, off, nov))
            # As the runtime answers: the refinement's calibrated cosines plus the offsets.
            acc["refine"].append(top1(plan.refinement.cosines(t_emb) if plan.refinement else imprinted, t_lab, off, nov))
        a, r = np.array(acc["imprint"]), np.array(acc["refine"])
        lines.append(f"| {n} | {a[:, 0].mean():.2f} | {r[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | {r[:, 1].mean():.2f} | "
                     f"{used} of {seeds} | {np.mean(secs):.2f} |")
    return lines


def timing(opt: RefineOptions) -> str:
    rng = np.random.default_rng(0)
    k, n, d = 200, 20, 1280
    rows = lowshot.unit_rows(rng.standard_normal((k, d), dtype=np.float32))
    x = lowshot.unit_rows(np.repeat(rows, n, 0) + 0.5 * rng.standard_normal((k * n, d), dtype=np.float32))
    y = np.repeat(np.arange(k), n)
    sums = np.zeros((k, d), np.float32)
    np.add.at(sums, y, x)
    t0 = time.perf_counter()
    plan = plan_refinement(sums, x, y, 10.0, None, opt)
    dt = time.perf_counter() - t0
    a = rng.standard_normal((k * n, d), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        a @ rows.T
    gflops = 5 * 2 * (k * n) * d * k / (time.perf_counter() - t0) / 1e9  # (k n x d) @ (d x k), five times
    return (f"Deciding and refining {k} classes x {n} shots (rank {opt.rank}, {opt.steps} steps, D = {d}, one "
            f"training on all shots but the held-out ones; {'refined' if plan.refined else 'declined'}): {dt:.2f} s "
            f"on this machine; its float32 matrix product runs at {gflops:.0f} GFLOP/s, and the refinement is such "
            f"products, so on a CPU with G GFLOP/s it takes about {dt:.2f} x {gflops:.0f} / G s.")


def main(argv: list[str] | None = None) -> int:
    ap = trial_parser(__doc__, "benchmarks/results/refine_trials.md")
    ap.add_argument("--mirror", action="store_true", help="also the rows with mirrored shots (imprint --mirror)")
    args = ap.parse_args(argv)
    cub = load_cub(args.root)
    out = ["# Refinement after imprinting, in NumPy, on CUB (issue 15)", "",
           f"`python benchmarks/refine_trials.py {shlex.join(sys.argv[1:])}`", "", describe(), ""]
    bt = cub.indices(train=True, base=True)
    opt = None
    for path in args.bundle:
        bundle = load_bundle(path)
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        scale = bundle.manifest.scale
        b_emb, b_lab = emb[bt], cub.labels[bt]
        table = bundle.manifest.shot_offsets or ShotOffsets.from_mapping(
            {n: lowshot.choose_novel_offset(b_emb, b_lab, n) for n in SHOTS})
        if opt is None:
            best, grid_lines = choose_settings(b_emb, b_lab, scale, table)
            opt = RefineOptions(**best)
            out += [f"Settings, on a pseudo-novel split of {bundle.manifest.name}'s base training images (all-class "
                    "top-1 %, mean of n = 10, 20 (refining declines below 10 shots) and 2 splits, with calibration, refined without the check):", "",
                    "| setting | imprinting | refined | gain |", "|---|---:|---:|---:|", *grid_lines, "",
                    f"Chosen for every bundle: rank {opt.rank}, lr {opt.lr:g}, {opt.steps} steps.", ""]
        base = bundle.base_classes()
        base_sums = (base.sums if base is not None else
                     np.stack([b_emb[b_lab == c].sum(0) for c in range(NUM_BASE)])).astype(np.float32)
        out += [f"## {bundle.manifest.name}, extractor_int8.{int8_format(bundle)} (scale {scale:g})", "",
                f"CUB test images, {args.seeds} draws, top-1 %, both sides with calibration; 'refined' uses the held-out "
                "check, so it equals imprinting where the check declined:", "",
                "| n | novel, imprinting | novel, refined | all, imprinting | all, refined | draws refined | seconds |",
                "|---:|---:|---:|---:|---:|---:|---:|", *protocol(emb, cub, base_sums, scale, table, opt, args.seeds), ""]
        if args.mirror:
            mirrors = novel_mirrors(bundle, cub)
            out += ["With mirrored shots (`--mirror`: each novel shot is the mean of the image's and its mirror's "
                    "embeddings; base exemplars as above):", "",
                    "| n | novel, imprinting | novel, refined | all, imprinting | all, refined | draws refined | seconds |",
                    "|---:|---:|---:|---:|---:|---:|---:|",
                    *protocol(emb, cub, base_sums, scale, table, opt, args.seeds, mirrors), ""]
    out += [timing(opt or RefineOptions()), ""]
    write_results(args.out, "\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
