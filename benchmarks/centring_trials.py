"""Issue 18's centring lever: SimpleShot's CL2N (subtract a mean embedding of base training images, then
L2-normalize) alone and combined with shot-aware calibration and mirrored shots.

    python benchmarks/centring_trials.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/centring_trials.md]

Everything a row learns comes from training images: the centre is the mean unit embedding of the base
*training* images, base rows are imprinted from those images (in the row's space, centred or not), the
calibration offsets are chosen per n on a pseudo-novel split of the base training images in that space,
novel rows from the drawn shots (benchmarks/cub_protocol.py's draws, 5 seeds), top-1 on the test images
through the runtime's classifier. The mirrors of the novel training images are embedded here by the int8
ONNX file (the rest comes from cache/cub).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_protocol import _runtime_classifier, _with_novel  # noqa: E402
from cub_trials import int8_unit_embeddings, trial_parser, write_results  # noqa: E402
from mirror_trials import novel_mirrors  # noqa: E402

from imprinting.export import lowshot  # noqa: E402
from imprinting.export.cub import NUM_BASE, draw_shots, load_cub  # noqa: E402
from imprinting.runtime import load_bundle  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.shot_offsets import ShotOffsets  # noqa: E402

SHOTS = (1, 2, 5, 10, 20)


def centred(emb: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Unit rows float32 (N, D) of `emb - centre` (unchanged unit rows when centre is None)."""
    return emb if centre is None else lowshot.unit_rows(emb - centre).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = trial_parser(__doc__, "benchmarks/results/centring_trials.md").parse_args(argv)
    cub = load_cub(args.root)
    lines = ["# Centring (CL2N) on CUB (issue 18)", "",
             f"`python benchmarks/centring_trials.py {shlex.join(sys.argv[1:])}`", "", describe(), "",
             f"Top-1 %, novel / all classes, mean of {args.seeds} draws; int8 ONNX. Every row imprints its base rows "
             "from the base training images and chooses its calibration offsets on them, in its own space (so the "
             "uncentred rows can differ slightly from cub.md's, which use a bundle's own base rows and offsets).", "",
             "| bundle | row | " + " | ".join(f"n={n}" for n in SHOTS) + " |", "|---|---|" + "---:|" * len(SHOTS)]
    for path in args.bundle:
        bundle = load_bundle(path)
        m = bundle.manifest
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        novel_train = cub.indices(train=True, base=False)
        mirrors = novel_mirrors(bundle, cub)
        mirror_of = {int(i): k for k, i in enumerate(novel_train)}
        base_train = cub.indices(train=True, base=True)
        b_lab = cub.labels[base_train]
        test = cub.indices(train=False)
        t_lab = cub.labels[test]
        novel = t_lab >= NUM_BASE
        centre = emb[base_train].mean(0)
        spaces = {}
        for name, c in (("plain", None), ("centred", centre)):
            e, mir = centred(emb, c), centred(mirrors, c)
            b_emb = e[base_train]
            table = ShotOffsets.from_mapping({n: lowshot.choose_novel_offset(b_emb, b_lab, n) for n in SHOTS})
            spaces[name] = (e, mir, _runtime_classifier(e.shape[1], None, b_emb, b_lab, None),
                            _runtime_classifier(e.shape[1], None, b_emb, b_lab, table), table)
        cells: dict[str, list[str]] = {}
        for n in tqdm(SHOTS, desc=m.name, unit="n"):
            acc: dict[str, list[tuple[float, float]]] = {}
            for seed in range(args.seeds):
                s_idx = draw_shots(cub, n, seed)
                s_lab = cub.labels[s_idx]
                for space, (e, mir, plain, calibrated, _) in spaces.items():
                    by_class = {c: e[s_idx[s_lab == c]] for c in range(NUM_BASE, len(cub.class_names))}
                    mirrored = {c: (e[s_idx[s_lab == c]] + mir[[mirror_of[int(i)] for i in s_idx[s_lab == c]]]) / 2
                                for c in by_class}
                    label = "Imprinting" if space == "plain" else "Centred (CL2N)"
                    for row, clf, rows in ((label, plain, by_class),
                                           (f"{label} + calibration", calibrated, by_class),
                                           (f"{label} + mirror + calibration", calibrated, mirrored)):
                        p = _with_novel(clf, rows).scores(e[test]).argmax(1)
                        acc.setdefault(row, []).append((100 * (p[novel] == t_lab[novel]).mean(),
                                                        100 * (p == t_lab).mean()))
            for row, v in acc.items():
                a = np.mean(v, axis=0)
                cells.setdefault(row, []).append(f"{a[0]:.2f} / {a[1]:.2f}")
        for row, c in cells.items():
            lines.append(f"| {m.name} | {row} | " + " | ".join(c) + " |")
        for space, (*_, table) in spaces.items():
            lines.append(f"| {m.name} | offsets ({space}) | " + " | ".join(
                f"{float(table(np.array([n]))[0]):.2f}" for n in SHOTS) + " |")
    write_results(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
