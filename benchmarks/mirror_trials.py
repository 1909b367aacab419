"""Issue 18's first lever: imprint each shot together with its horizontal mirror (teach time only).

    python benchmarks/mirror_trials.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/mirror_trials.md]

The CUB protocol of benchmarks/cub_protocol.py (base rows from the bundle or from base training images, n
shots per novel class drawn from training images, 5 seeds, top-1 on the test images), through the runtime's
classifier, with and without the bundle's shot-aware calibration: once with each shot's embedding, once with
the mean of the shot's and its mirror's unit embeddings (so a class still counts n shots). The mirrors of
the novel training images are embedded here by the int8 ONNX file (the rest comes from cache/cub). Cost:
twice the extractor work at teach time, nothing at recognition.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_protocol import _runtime_classifier, _with_novel  # noqa: E402
from cub_trials import int8_format, int8_unit_embeddings, trial_parser, write_results  # noqa: E402

from imprinting.export import lowshot  # noqa: E402
from imprinting.export.cub import NUM_BASE, draw_shots, load_cub  # noqa: E402
from imprinting.runtime import load_bundle  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.images import load_image  # noqa: E402
from imprinting.runtime.preprocess import preprocess  # noqa: E402
from imprinting.runtime.shot_offsets import ShotOffsets  # noqa: E402

SHOTS = (1, 2, 5, 10, 20)


def mirror_embeddings(ex, spec, paths: list[Path]) -> np.ndarray:
    """Unit embeddings float32 (N, D) of the horizontally mirrored images."""
    out = []
    for i in tqdm(range(0, len(paths), 32), desc="mirrors", unit="batch"):
        images = [np.ascontiguousarray(load_image(p)[:, ::-1]) for p in paths[i:i + 32]]
        e = ex.run(preprocess(images, spec, ex.layout))
        out.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return np.concatenate(out).astype(np.float32)


def novel_mirrors(bundle, cub) -> np.ndarray:
    """Unit embeddings float32 (M, D) of the mirrored novel training images, by the bundle's int8 file, in
    `cub.indices(train=True, base=False)` order."""
    ex = bundle.open_extractor(int8_format(bundle), "int8")
    try:
        return mirror_embeddings(ex, bundle.manifest.preprocess, [cub.paths[i] for i in cub.indices(train=True, base=False)])
    finally:
        ex.close()


def main(argv: list[str] | None = None) -> int:
    args = trial_parser(__doc__, "benchmarks/results/mirror_trials.md").parse_args(argv)
    cub = load_cub(args.root)
    lines = ["# Imprinting with mirrored shots on CUB (issue 18)", "",
             f"`python benchmarks/mirror_trials.py {shlex.join(sys.argv[1:])}`", "", describe(), "",
             f"Top-1 %, novel / all classes, mean of {args.seeds} draws; int8 ONNX; '+ calibration' uses the bundle's "
             "shot offsets or ones chosen on base training images, as in cub.md.", "",
             "| bundle | row | " + " | ".join(f"n={n}" for n in SHOTS) + " |", "|---|---|" + "---:|" * len(SHOTS)]
    for path in args.bundle:
        bundle = load_bundle(path)
        m = bundle.manifest
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        novel_train = cub.indices(train=True, base=False)
        t0 = time.perf_counter()
        mirrors = novel_mirrors(bundle, cub)
        mirror_s = time.perf_counter() - t0
        mirror_of = {int(i): k for k, i in enumerate(novel_train)}
        base_train = cub.indices(train=True, base=True)
        b_emb, b_lab = emb[base_train], cub.labels[base_train]
        table = m.shot_offsets or ShotOffsets.from_mapping(
            {n: lowshot.choose_novel_offset(b_emb, b_lab, n) for n in SHOTS})
        base = bundle.base_classes()
        plain = _runtime_classifier(emb.shape[1], base, b_emb, b_lab, None)
        calibrated = _runtime_classifier(emb.shape[1], base, b_emb, b_lab, table)
        test = cub.indices(train=False)
        t_emb, t_lab = emb[test], cub.labels[test]
        novel = t_lab >= NUM_BASE
        cells: dict[str, list[str]] = {}
        for n in tqdm(SHOTS, desc=m.name, unit="n"):
            acc: dict[str, list[tuple[float, float]]] = {}
            for seed in range(args.seeds):
                s_idx = draw_shots(cub, n, seed)
                s_lab = cub.labels[s_idx]
                by_class = {c: emb[s_idx[s_lab == c]] for c in range(NUM_BASE, len(cub.class_names))}
                mirrored = {c: (emb[s_idx[s_lab == c]] + mirrors[[mirror_of[int(i)] for i in s_idx[s_lab == c]]]) / 2
                            for c in by_class}
                for row, clf, rows in (("Imprinting", plain, by_class), ("Imprinting + mirror", plain, mirrored),
                                       ("Imprinting + calibration", calibrated, by_class),
                                       ("Imprinting + mirror + calibration", calibrated, mirrored)):
                    p = _with_novel(clf, rows).scores(t_emb).argmax(1)
                    acc.setdefault(row, []).append((100 * (p[novel] == t_lab[novel]).mean(), 100 * (p == t_lab).mean()))
            for row, v in acc.items():
                a = np.mean(v, axis=0)
                cells.setdefault(row, []).append(f"{a[0]:.2f} / {a[1]:.2f}")
        for row, c in cells.items():
            lines.append(f"| {m.name} | {row} | " + " | ".join(c) + " |")
        lines.append(f"| {m.name} | cost: mirrors of {len(novel_train)} images | {mirror_s:.0f} s "
                     f"({1000 * mirror_s / len(novel_train):.1f} ms per image incl. decoding) |" + " |" * (len(SHOTS) - 1))
    write_results(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
