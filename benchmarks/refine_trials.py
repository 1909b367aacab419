"""Does refinement after imprinting (runtime/refine.py: NumPy, frozen extractor) help on CUB? (issue 15)

    python benchmarks/refine_trials.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/refine_trials.md]

1. Settings (rank of the map, 0 = rows only; learning rate; steps) are chosen once, on a pseudo-novel split
   of the first bundle's *base* training images only: 50 base classes keep all their images as shots, 50
   play novel classes with n shots, 10 held-out images per class score them (all-class top-1, mean of
   n = 10, 20 and 2 splits, refined without the held-out check). The first bundle should be one whose
   extractor never trained on CUB's base classes (lite0-imagenet), or the split says little.
   The held-out check's rule is compared on further pseudo-novel splits.
2. With those settings, the CUB protocol (benchmarks/cub_protocol.py's shot draws, 5 seeds): base rows from
   the bundle or imprinted from the base training images, the bundle's base exemplars (or, for a bundle
   without base classes, 10 base training images per class kept as shots), novel rows from n shots;
   `plan_refinement` declines unless every class has 10 shots, holds out one shot per class and refines
   (on every shot) only if the held-out loss says it helps. Both sides use the shot-aware calibration
   offsets (the bundle's, or chosen on base training images). Top-1 on CUB's test images.
3. The time of refining 200 classes x 20 shots here, and this machine's float32 matrix throughput.
Uses the int8 file's embeddings (cached by benchmarks/cub.py in cache/cub).
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

# As under `imprint` (imprinting/__init__.py), before numpy loads: one BLAS thread; refine.py's training
# spreads over the cores by itself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

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
EXEMPLARS = 10  # base training images per base class that a bundle carries (runtime/exemplars.py)
RUNTIME = RefineOptions()


def top1(cos: np.ndarray, y: np.ndarray, off: np.ndarray, novel: np.ndarray) -> tuple[float, float]:
    """(novel, all-class) top-1 % of cosines (N, K) plus offsets (K,) against labels y (N,)."""
    p = (cos + off).argmax(1)
    return 100 * float((p[novel] == y[novel]).mean()), 100 * float((p == y).mean())


def pseudo_split(e: np.ndarray, lab: np.ndarray, n: int, seed: int, table: ShotOffsets):
    """A split of base training images only: 50 classes keep all their images but 10 as shots, 50 play novel
    classes with n shots, 10 images per class score them. Returns (sums (100, D), shots, their classes,
    offsets (100,), test embeddings, test classes, test-is-pseudo-novel mask)."""
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
    tc = np.array(test_c)
    return sums, x, y, off, np.concatenate(test), tc, tc >= 50


def pseudo_novel(e: np.ndarray, lab: np.ndarray, n: int, opt: RefineOptions, seed: int, scale: float,
                 table: ShotOffsets) -> tuple[float, float]:
    """All-class top-1 (imprinting, refined without the check) on a pseudo-novel split."""
    sums, x, y, off, t, tc, nov = pseudo_split(e, lab, n, seed, table)
    emap, rows = fit(x, y, lowshot.unit_rows(sums), scale, off, opt)
    return top1(t @ lowshot.unit_rows(sums).T, tc, off, nov)[1], top1(emap(t) @ rows.T, tc, off, nov)[1]


def decision_rules(e: np.ndarray, lab: np.ndarray, opt: RefineOptions, scale: float, table: ShotOffsets,
                   splits: int = 10) -> list[str]:
    """How the held-out check decides, on pseudo-novel splits: all-class top-1 gain over imprinting when
    deciding by the held-out loss (what plan_refinement does), by the held-out top-1, and never declining."""
    gains: dict[str, list[float]] = {"held-out loss (the runtime's rule)": [], "held-out top-1": [], "no check": []}
    declined = {name: 0 for name in gains}
    for n in (10, 20):
        for seed in tqdm(range(splits), desc=f"decision rules, n={n}", unit="split"):
            sums, x, y, off, t, tc, nov = pseudo_split(e, lab, n, 100 + seed, table)
            o = RefineOptions(**{**opt.__dict__, "seed": seed})
            plan = plan_refinement(sums, x, y, scale, off, o)
            full = plan_refinement(sums, x, y, scale, off, RefineOptions(**{**o.__dict__, "check": False})).refinement
            imprinted = top1(t @ lowshot.unit_rows(sums).T, tc, off, nov)[1]
            refined = top1(full.cosines(t), tc, off, nov)[1]
            (b1, bl), (a1, al) = plan.before, plan.after
            for name, accept in zip(gains, (al < bl, a1 > b1 or (a1 == b1 and al < bl), True)):
                gains[name].append(refined - imprinted if accept else 0.0)
                declined[name] += not accept
    return [f"| {name} | {np.mean(g):+.2f} | {min(g):+.2f} | {declined[name]} of {len(g)} |" for name, g in gains.items()]


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
             seeds: int, mirrors: np.ndarray | None = None,
             exemplars: tuple[np.ndarray, np.ndarray] | None = None,
             summary: dict | None = None) -> list[str]:
    """Table rows per n; with mirrors (unit embeddings of the novel training images' mirrors, in
    `cub.indices(train=True, base=False)` order) each novel shot is the runtime's --mirror shot: the mean of
    the image's and its mirror's unit embeddings. exemplars: the bundle's base exemplars (unit (M, D), base
    class (M,)), what Recognizer.refine adds; None: int8 embeddings of 10 base training images per class.
    summary, if given, receives {n: (novel, all-class) refined top-1}."""
    summary = {} if summary is None else summary
    if mirrors is not None:
        emb = emb.copy()
        novel_train = cub.indices(train=True, base=False)
        emb[novel_train] = lowshot.unit_rows((emb[novel_train] + mirrors) / 2)
    test = cub.indices(train=False)
    t_emb, t_lab = emb[test], cub.labels[test]
    nov = t_lab >= NUM_BASE
    if exemplars is None:  # a bundle without base classes: the base classes are taught, 10 shots kept each
        bt = cub.indices(train=True, base=True)
        rng = np.random.default_rng(7)
        ex_idx = np.concatenate([rng.permutation(bt[cub.labels[bt] == c])[:EXEMPLARS] for c in range(NUM_BASE)])
        exemplars = (emb[ex_idx], cub.labels[ex_idx])
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
            x = np.concatenate([exemplars[0], emb[s_idx]])
            y = np.concatenate([exemplars[1], s_lab])
            plan = plan_refinement(sums, x, y, scale, off, RefineOptions(**{**opt.__dict__, "seed": seed}))
            used += plan.refined
            secs.append(plan.seconds)
            imprinted = t_emb @ lowshot.unit_rows(sums).T
            acc["imprint"].append(top1(imprinted, t_lab, off, nov))
            # As the runtime answers: the refinement's calibrated cosines plus the offsets.
            acc["refine"].append(top1(plan.refinement.cosines(t_emb) if plan.refinement else imprinted, t_lab, off, nov))
        a, r = np.array(acc["imprint"]), np.array(acc["refine"])
        summary[n] = (r[:, 0].mean(), r[:, 1].mean())
        lines.append(f"| {n} | {a[:, 0].mean():.2f} | {r[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | {r[:, 1].mean():.2f} | "
                     f"{used} of {seeds} | {np.mean(secs):.2f} |")
    return lines


def fine_tuning_rows(cub, checkpoint: str) -> dict[str, dict[int, tuple[float, float]]]:
    """The paper's Imprinting+FT and PyTorch head-only fine-tuning of a checkpoint (its embedding layer and
    rows, backbone frozen, 10 epochs on cached pooled features of all base training images with 4 augmented
    views and the novel shots; 3 draws): {row: {n: (novel, all-class)}}."""
    from cub_finetune import evaluate_finetuning
    from cub_report import PAPER

    ft = evaluate_finetuning(cub, checkpoint, list(SHOTS), seeds=3, epochs=10, views=4, cache="cache/features")
    rows = {"Paper: Imprinting+FT (InceptionV1, whole network)": {
        n: (PAPER["novel"]["Paper: Imprinting+FT"][i], PAPER["all"]["Paper: Imprinting+FT"][i]) for i, n in enumerate(SHOTS)}}
    for name, key in (("PyTorch head-only FT", "Imprinting+FT"), ("Imprinting, PyTorch head", "Imprinting (torch head)")):
        rows[f"{name}, {Path(checkpoint).stem} (fp32, 3 draws)"] = {
            n: tuple(float(v) for v in np.mean(ft["rows"][key][str(n)], axis=0)) for n in SHOTS}
    return rows


def comparison(checkpoint: str, rows: dict[str, dict[int, tuple[float, float]]]) -> list[str]:
    return ["## Next to fine-tuning", "",
            f"Novel / all-class top-1 %. PyTorch head-only fine-tuning: `benchmarks/cub_finetune.py` on `{checkpoint}` "
            "(the embedding layer and all rows trained 10 epochs on cached pooled features of every base training "
            "image with 4 augmented views plus the novel shots, backbone frozen; no calibration). Refined: the "
            "tables above (5 draws, int8, with calibration; equal to imprinting below 10 shots):", "",
            "| row | " + " | ".join(f"n={n}" for n in SHOTS) + " |", "|---|" + "---:|" * len(SHOTS),
            *(f"| {name} | " + " | ".join(f"{per[n][0]:.2f} / {per[n][1]:.2f}" for n in SHOTS) + " |"
              for name, per in rows.items()), ""]


def timing(opt: RefineOptions) -> str:
    """The time of deciding and refining 200 classes x 20 shots; run with one BLAS thread, as under `imprint`."""
    rng = np.random.default_rng(0)
    k, n, d = 200, 20, 1280
    rows = lowshot.unit_rows(rng.standard_normal((k, d), dtype=np.float32))
    x = lowshot.unit_rows(np.repeat(rows, n, 0) + 0.5 * rng.standard_normal((k * n, d), dtype=np.float32))
    y = np.repeat(np.arange(k), n)
    sums = np.zeros((k, d), np.float32)
    np.add.at(sums, y, x)
    plan_refinement(sums, x, y, 10.0, None, opt)  # warm-up (threads, allocations)
    t0 = time.perf_counter()
    plan = plan_refinement(sums, x, y, 10.0, None, opt)
    dt = time.perf_counter() - t0
    if not plan.refined:  # the worst case decides and then trains again on every shot: add that training
        t0 = time.perf_counter()
        plan_refinement(sums, x, y, 10.0, None, RefineOptions(**{**opt.__dict__, "check": False}))
        dt += time.perf_counter() - t0
    a = rng.standard_normal((k * n, d), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        a @ rows.T
    gflops = 5 * 2 * (k * n) * d * k / (time.perf_counter() - t0) / 1e9  # (k n x d) @ (d x k), five times
    cores = os.cpu_count() or 1
    return (f"Deciding and refining {k} classes x {n} shots (rank {opt.rank}, {opt.steps} steps, D = {d}: one training "
            f"on all shots but the held-out ones, then one on all shots; {cores} cores, one BLAS thread as under "
            f"`imprint`): {dt:.2f} s on this machine. Its float32 matrix product runs at {gflops:.0f} GFLOP/s per "
            f"core, and the refinement is such products, so on C cores of G GFLOP/s it takes about "
            f"{dt:.2f} x {cores} x {gflops:.0f} / (C x G) s. A Raspberry Pi 4 (4 Cortex-A72 cores at 1.5 GHz: 12 "
            f"GFLOP/s per core at its float32 peak by the spec sheet, 8 per cycle) would take at least "
            f"{dt * cores * gflops / (4 * 12):.1f} s; a 2 s budget there needs fewer shots or steps.")


def main(argv: list[str] | None = None) -> int:
    ap = trial_parser(__doc__, "benchmarks/results/refine_trials.md")
    ap.add_argument("--mirror", action="store_true", help="also the rows with mirrored shots (imprint --mirror)")
    ap.add_argument("--finetune", metavar="CKPT", help="also PyTorch head-only fine-tuning (benchmarks/cub_finetune.py) "
                    "of this `imprint train` checkpoint, next to the refined rows")
    if argv is None and sys.argv[1:2] == ["--timing"]:  # the timing's own process (see the end of main)
        print(timing(RefineOptions(**json.loads(sys.argv[2]))))
        return 0
    args = ap.parse_args(argv)
    cub = load_cub(args.root)
    out = ["# Refinement after imprinting, in NumPy, on CUB (issue 15)", "",
           f"`python benchmarks/refine_trials.py {shlex.join(sys.argv[1:])}`", "", describe(), ""]
    bt = cub.indices(train=True, base=True)
    opt = None
    compared: dict[str, dict[int, tuple[float, float]]] = {}
    ft_rows = fine_tuning_rows(cub, args.finetune) if args.finetune else {}
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
                    f"Chosen for every bundle: rank {opt.rank}, lr {opt.lr:g}, {opt.steps} steps; the runtime's "
                    "defaults (`RefineOptions()`, what `imprint refine` runs): "
                    + ("the same." if (opt.rank, opt.lr, opt.steps) == (RUNTIME.rank, RUNTIME.lr, RUNTIME.steps) else
                       f"**different** (rank {RUNTIME.rank}, lr {RUNTIME.lr:g}, {RUNTIME.steps} steps): update "
                       "runtime/refine.py."), "",
                    "The held-out check's rule, with those settings, on 10 more pseudo-novel splits at n = 10 and at "
                    "n = 20 (all-class top-1 gain over imprinting in points; a declined split gains 0):", "",
                    "| rule | mean gain | worst split | declined |", "|---|---:|---:|---:|",
                    *decision_rules(b_emb, b_lab, opt, scale, table), ""]
        base = bundle.base_classes()
        base_sums = (base.sums if base is not None else
                     np.stack([b_emb[b_lab == c].sum(0) for c in range(NUM_BASE)])).astype(np.float32)
        carried = bundle.base_exemplars()
        if base is not None and carried is None:
            raise SystemExit(f"{path} has base classes but no base exemplars: re-export it from a checkpoint of "
                             "`imprint train` (refinement declines without them)")
        exemplars = None if carried is None else (
            carried[1], np.array([base.labels.index(lab) for lab in carried[0]], np.int64))
        where = ("the bundle's base exemplars (float16, by the trained PyTorch model)" if carried else
                 f"int8 embeddings of {EXEMPLARS} training images per base class, kept as their shots")
        out += [f"## {bundle.manifest.name}, extractor_int8.{int8_format(bundle)} (scale {scale:g})", "",
                f"CUB test images, {args.seeds} draws, top-1 %, both sides with calibration; base classes take part "
                f"through {where}; 'refined' uses the held-out check, so it equals imprinting where the check "
                "declined:", "",
                "| n | novel, imprinting | novel, refined | all, imprinting | all, refined | draws refined | seconds |",
                "|---:|---:|---:|---:|---:|---:|---:|",
                *protocol(emb, cub, base_sums, scale, table, opt, args.seeds, exemplars=exemplars,
                          summary=compared.setdefault(f"Refined, {bundle.manifest.name} (int8)", {})), ""]
        if args.mirror:
            mirrors = novel_mirrors(bundle, cub)
            out += ["With mirrored shots (`--mirror`: each novel shot is the mean of the image's and its mirror's "
                    "embeddings; base exemplars as above):", "",
                    "| n | novel, imprinting | novel, refined | all, imprinting | all, refined | draws refined | seconds |",
                    "|---:|---:|---:|---:|---:|---:|---:|",
                    *protocol(emb, cub, base_sums, scale, table, opt, args.seeds, mirrors, exemplars,
                              compared.setdefault(f"Refined, {bundle.manifest.name} (int8), mirrored shots", {})), ""]
    if args.finetune:
        out += comparison(args.finetune, {**ft_rows, **compared})
    # In a fresh process with one BLAS thread, as `imprint refine` runs (imprinting/__init__.py).
    o = opt or RefineOptions()
    p = subprocess.run([sys.executable, __file__, "--timing", json.dumps({"rank": o.rank, "lr": o.lr, "steps": o.steps})],
                       capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=600)
    out += [p.stdout.strip() if p.returncode == 0 else f"timing failed: {p.stderr.strip()[-300:]}", ""]
    write_results(args.out, "\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
