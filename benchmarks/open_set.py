"""What the bundle's default "unknown" threshold does on photos it never chose it from (issue 13).

    python benchmarks/open_set.py --root ../shared/data/CUB_200_2011 --bundle bundles/lite0-imagenet \
        [--bundle bundles/cub-d1280] [--seeds 5] [--out benchmarks/results/open_set.md]

CUB's 100 novel classes, split per seed: 50 are taught from n training images each, 50 are never taught.
Every test image of both halves is classified by the runtime's classifier (the taught classes only, as in a
user's own store) with the threshold the bundle carries (chosen at export on other photos). Reported:
for never-taught birds, how many are called unknown (higher is better; a wrong label otherwise); for taught
birds, how many get their right label, a wrong one, or unknown. Birds against birds is a hard open set: the
never-taught classes look like the taught ones. Uses the int8 ONNX file's cached CUB embeddings.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_trials import int8_unit_embeddings, trial_parser, write_results  # noqa: E402

from imprinting.export.cub import NUM_BASE, load_cub  # noqa: E402
from imprinting.runtime import ClassSet, ImprintedClassifier, load_bundle  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.recognizer_options import bundle_unknown_policy  # noqa: E402


def trial(emb: np.ndarray, cub, n: int, seed: int, policy, scale: float) -> tuple[float, float, float, float]:
    """(never-taught called unknown, taught right, taught wrong, taught unknown) as fractions."""
    rng = np.random.default_rng(seed)
    novel = rng.permutation(np.arange(NUM_BASE, len(cub.class_names)))
    taught = novel[:50]  # the other 50 are never taught
    train, test = cub.indices(train=True, base=False), cub.indices(train=False, base=False)
    classes = ClassSet(emb.shape[1], scale, "open-set")
    for c in taught:
        pool = rng.permutation(train[cub.labels[train] == c])
        classes.learn(str(c), emb[pool[:n]], ids=[str(i) for i in pool[:n]])
    clf = ImprintedClassifier(classes, unknown=policy)
    t_lab = cub.labels[test]
    res = clf.classify(emb[test], top_k=1)
    said = np.array([-1 if r.label is None else int(r.label) for r in res])
    known = np.isin(t_lab, taught)
    return (float((said[~known] == -1).mean()), float((said[known] == t_lab[known]).mean()),
            float(((said[known] != t_lab[known]) & (said[known] != -1)).mean()), float((said[known] == -1).mean()))


def main(argv: list[str] | None = None) -> int:
    ap = trial_parser(__doc__, "benchmarks/results/open_set.md")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    args = ap.parse_args(argv)
    cub = load_cub(args.root)
    lines = ["# The default unknown threshold on never-taught classes (CUB)", "",
             f"`python benchmarks/open_set.py {shlex.join(sys.argv[1:])}`", "", describe(), "",
             "50 novel CUB classes taught from n training images, 50 never taught; all their test images "
             f"classified ({args.seeds} seeds, mean %).", "",
             "| bundle | threshold (false accept at export) | n | never-taught: unknown | taught: right | taught: wrong "
             "| taught: unknown |", "|---|---|---:|---:|---:|---:|---:|"]
    for path in args.bundle:
        bundle = load_bundle(path)
        m = bundle.manifest
        emb = int8_unit_embeddings(bundle, cub.paths, args.cache)
        policy = bundle_unknown_policy(m)
        far = m.calibration.get("unknown_false_accept")
        for n in tqdm(args.shots, desc=m.name, unit="n"):
            r = 100 * np.mean([trial(emb, cub, n, s, policy, m.scale) for s in range(args.seeds)], axis=0)
            lines.append(f"| {m.name} | {policy.min_cosine:.3f} ({'%.0f%%' % (100 * far) if far else 'default'}) | {n} | "
                         f"{r[0]:.1f} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} |")
    write_results(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
