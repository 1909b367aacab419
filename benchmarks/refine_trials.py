"""Does fine-tuning the classifier rows after imprinting (NumPy, frozen extractor) help on CUB? (issue 15)

    python benchmarks/refine_trials.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/refine_trials.md]

1. The optimizer's settings are chosen on a pseudo-novel split of the *base* classes' training images only
   (50 base classes stay base, 50 play novel; 10 held-out images per class score them).
2. With those settings, the CUB protocol: novel rows imprinted from n shots of the novel classes' training
   images (5 seeded draws), then refined (refine_rows.plan_refinement: one held-out shot per class decides
   whether refining is used at all; classes with fewer than 3 shots never refine). Base rows: the bundle's,
   or imprinted from base training images; 5 base training images per class serve as base exemplars. Top-1
   on CUB's test images, novel and all classes, beside plain imprinting.
3. The time of refining 200 classes x 20 shots, and this machine's float32 matrix throughput.
Uses the int8 ONNX file's embeddings (cached by benchmarks/cub.py in cache/cub).
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

from cub_trials import int8_unit_embeddings, trial_parser, write_results  # noqa: E402
from refine_rows import RefineOptions, plan_refinement  # noqa: E402

from imprinting.export.cub import NUM_BASE, draw_shots, load_cub  # noqa: E402
from imprinting.runtime import load_bundle  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402

SHOTS = (1, 2, 5, 10, 20)
GRID = [dict(lr=lr, decay=d) for lr, d in itertools.product((1e-5, 3e-5, 1e-4), (0.0, 0.5))]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def pseudo_novel(e: np.ndarray, lab: np.ndarray, n: int, opt: RefineOptions, seed: int, scale: float) -> tuple[float, float]:
    """Novel top-1 (imprinting, refined) on a split of base training images only."""
    rng = np.random.default_rng(500 + seed)
    perm = rng.permutation(NUM_BASE)
    sums, shots, shot_c, ex, ex_c, test, test_c = [], [], [], [], [], [], []
    for j, c in enumerate(perm):
        idx = rng.permutation(np.flatnonzero(lab == c))
        held, pool = idx[:10], idx[10:]
        use = pool if j < 50 else pool[:n]
        sums.append(e[use].sum(0))
        if j < 50:
            ex.append(e[pool[:5]])
            ex_c += [j] * len(pool[:5])
        else:
            shots.append(e[use])
            shot_c += [j] * len(use)
        test.append(e[held])
        test_c += [j] * len(held)
    s = np.stack(sums).astype(np.float32)
    plan = plan_refinement(s, np.arange(NUM_BASE) < 50, np.concatenate(shots), np.array(shot_c), scale,
                           np.concatenate(ex), np.array(ex_c), opt, seed)
    t, tc = np.concatenate(test), np.array(test_c)
    nov = tc >= 50
    return (float(((t[nov] @ unit(s).T).argmax(1) == tc[nov]).mean()),
            float(((t[nov] @ plan.rows.T).argmax(1) == tc[nov]).mean()))


def choose_settings(e: np.ndarray, lab: np.ndarray, scale: float) -> tuple[dict, list[str]]:
    lines, best, best_gain = [], GRID[0], -1.0
    for g in tqdm(GRID, desc="settings on base classes", unit="setting"):
        opt = RefineOptions(check=False, **g)
        res = [pseudo_novel(e, lab, n, opt, seed, scale) for n in (5, 10, 20) for seed in range(2)]
        gain = float(np.mean([b - a for a, b in res]))
        lines.append(f"| lr {g['lr']:g}, decay {g['decay']:g} | {100 * np.mean([a for a, _ in res]):.1f} | "
                     f"{100 * np.mean([b for _, b in res]):.1f} | {100 * gain:+.2f} |")
        if gain > best_gain:
            best, best_gain = g, gain
    return best, lines


def protocol(emb: np.ndarray, cub, base_rows: np.ndarray, scale: float, opt: RefineOptions, seeds: int) -> list[str]:
    test = cub.indices(train=False)
    t_emb, t_lab = emb[test], cub.labels[test]
    nov = t_lab >= NUM_BASE
    bt = cub.indices(train=True, base=True)
    rng = np.random.default_rng(7)
    ex_idx = np.concatenate([rng.permutation(bt[cub.labels[bt] == c])[:5] for c in range(NUM_BASE)])
    lines = []
    for n in tqdm(SHOTS, desc="CUB protocol", unit="n"):
        acc = {"imprint": [], "refine": []}
        used = 0
        for seed in range(seeds):
            s_idx = draw_shots(cub, n, seed)
            s_lab = cub.labels[s_idx]
            novel_sums = np.stack([emb[s_idx[s_lab == c]].sum(0) for c in range(NUM_BASE, 200)])
            sums = np.concatenate([base_rows, novel_sums]).astype(np.float32)
            plan = plan_refinement(sums, np.arange(200) < NUM_BASE, emb[s_idx], s_lab, scale, emb[ex_idx],
                                   cub.labels[ex_idx], opt, seed)
            used += bool(plan.refined.any())
            for key, rows in (("imprint", unit(sums)), ("refine", plan.rows)):
                p = (t_emb @ rows.T).argmax(1)
                acc[key].append((100 * (p[nov] == t_lab[nov]).mean(), 100 * (p == t_lab).mean()))
        a, r = np.array(acc["imprint"]), np.array(acc["refine"])
        lines.append(f"| {n} | {a[:, 0].mean():.2f} | {r[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | {r[:, 1].mean():.2f} | "
                     f"{used} of {seeds} |")
    return lines


def timing(opt: RefineOptions) -> str:
    from refine_rows import refine_rows

    rng = np.random.default_rng(0)
    k, n, d = 200, 20, 1280
    rows = unit(rng.standard_normal((k, d), dtype=np.float32))
    x = unit(np.repeat(rows, n, 0) + 0.5 * rng.standard_normal((k * n, d), dtype=np.float32))
    y = np.repeat(np.arange(k), n)
    t0 = time.perf_counter()
    refine_rows(rows, np.ones(k, bool), x, y, 10.0, opt)
    dt = time.perf_counter() - t0
    a = rng.standard_normal((k * n, d), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        a @ rows.T
    gflops = 5 * 2 * (k * n) * d * k / (time.perf_counter() - t0) / 1e9  # (k n x d) @ (d x k), five times
    return (f"Refining {k} classes x {n} shots ({opt.steps} steps, D = {d}): {dt:.2f} s on this machine; its float32 "
            f"matrix product runs at {gflops:.0f} GFLOP/s, and the refinement is two such products per step, so "
            f"on a CPU with G GFLOP/s it takes about {dt:.2f} x {gflops:.0f} / G s.")


def main(argv: list[str] | None = None) -> int:
    args = trial_parser(__doc__, "benchmarks/results/refine_trials.md").parse_args(argv)
    cub = load_cub(args.root)
    out = ["# Refining imprinted rows in NumPy on CUB (issue 15)", "",
           f"`python benchmarks/refine_trials.py {shlex.join(sys.argv[1:])}`", "", describe(), ""]
    for path in args.bundle:
        bundle = load_bundle(path)
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        scale = bundle.manifest.scale
        bt = cub.indices(train=True, base=True)
        best, grid_lines = choose_settings(emb[bt], cub.labels[bt], scale)
        base = bundle.base_classes()
        base_rows = (base.sums if base is not None else
                     np.stack([emb[bt][cub.labels[bt] == c].sum(0) for c in range(NUM_BASE)])).astype(np.float32)
        opt = RefineOptions(**best)
        out += [f"## {bundle.manifest.name}, extractor_int8.onnx (scale {scale:g})", "",
                "Settings on a pseudo-novel split of base training images (novel top-1 %, mean of n = 5, 10, 20 and 2 "
                "splits; refined without the held-out check):", "",
                "| setting | imprinting | refined | gain |", "|---|---:|---:|---:|", *grid_lines, "",
                f"Chosen: lr {best['lr']:g}, decay {best['decay']:g}, {opt.steps} steps. CUB test images, "
                f"{args.seeds} draws (top-1 %; 'refined' uses the held-out check, so it equals imprinting where the "
                "check declined):", "",
                "| n | novel, imprinting | novel, refined | all, imprinting | all, refined | draws where refining was used |",
                "|---:|---:|---:|---:|---:|---:|", *protocol(emb, cub, base_rows, scale, opt, args.seeds), ""]
    out += [timing(RefineOptions()), ""]
    write_results(args.out, "\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
