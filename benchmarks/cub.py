"""The paper's low-shot benchmark on CUB-200-2011 with our exported extractors (Tables 1-3, Figures 5-7).

    python benchmarks/cub.py --root ../shared/data/CUB_200_2011 --bundle bundles/cub-d1280 \
        [--bundle bundles/lite0-imagenet ...] [--seeds 5] [--out benchmarks/results]

Every extractor file in each bundle (ONNX and TFLite, fp32 and int8) is run through the runtime on
every CUB image once; embeddings are cached (--cache), so re-runs take seconds. For n = 1, 2, 5, 10, 20
shots and several seeded draws it reports top-1 on novel-class test images and on all test images
(200-way), mean and standard deviation, beside the paper's numbers, and writes plots.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_report import write_report  # noqa: E402

from imprinting.export import lowshot  # noqa: E402
from imprinting.export.cub import NUM_BASE, draw_shots, load_cub  # noqa: E402
from imprinting.export.embeddings import cached_embeddings  # noqa: E402
from imprinting.runtime import ExtractorOptions, load_bundle  # noqa: E402

log = logging.getLogger("cub")
SHOTS = (1, 2, 5, 10, 20)


def evaluate_extractor(cub, bundle, entry, args) -> dict:
    """All imprinting rows for one extractor file: {row: {n: [(novel, all) per seed]}}."""
    ex = bundle.open_extractor(entry.format, entry.precision, ExtractorOptions(threads=args.threads))
    spec = bundle.manifest.preprocess
    name = f"{bundle.manifest.name}/{entry.file}"
    t0 = time.perf_counter()
    emb = cached_embeddings(args.cache, ex, spec, cub.paths, desc=name)
    novel_train = cub.indices(train=True, base=False)
    aug = cached_embeddings(args.cache, ex, spec, [cub.paths[i] for i in novel_train], views=5, seed=0,
                            desc=f"{name} +aug") if args.aug and f"{entry.format}/{entry.precision}" in args.aug else None
    log.info("%s: embeddings in %.0f s", name, time.perf_counter() - t0)
    aug_of = {int(i): k for k, i in enumerate(novel_train)}
    test = cub.indices(train=False)
    t_emb, t_lab = emb[test], cub.labels[test]
    novel_mask = t_lab >= NUM_BASE
    base_train = cub.indices(train=True, base=True)
    # Imprinted base rows (the mean of all base training embeddings); a trained bundle's own rows are used
    # for the plain rows, but its trained rows and imprinted novel rows have different cosine statistics,
    # which skews the base/novel balance, so the calibrated rows use imprinted base rows.
    imp_base_rows = lowshot.class_means(emb, cub.labels, np.arange(NUM_BASE))
    base = bundle.base_classes()
    if base is not None:
        if len(base.labels) != NUM_BASE:
            raise ValueError(f"{bundle.path} has {len(base.labels)} base classes; the CUB protocol needs the first 100")
        base_rows = lowshot.unit_rows(base.sums.astype(np.float32))
    else:
        base_rows = imp_base_rows
    # Centring (SimpleShot's CL2N) on the base-class training mean: for extractors without base training.
    centre = emb[base_train].mean(0)
    c_emb = lowshot.unit_rows(emb - centre)
    c_base_rows = lowshot.class_means(c_emb, cub.labels, np.arange(NUM_BASE))
    rows: dict[str, dict[int, list]] = {}

    def add(row: str, n: int, s: lowshot.Scores) -> None:
        rows.setdefault(row, {}).setdefault(n, []).append((s.novel, s.all))

    num_classes = len(cub.class_names)
    for seed in range(args.seeds):
        rand = lowshot.xavier_rows(num_classes - NUM_BASE, emb.shape[1], seed)
        s = lowshot.score(lowshot.predict(t_emb, np.concatenate([base_rows, rand])), t_lab, novel_mask)
        for n in args.shots:
            add("Rand-noFT", n, s)
    # Shot-aware calibration: the bundle's own table (chosen at training time, what users get) with the
    # bundle's base rows, else a table chosen here on the base training images with imprinted base rows.
    table = bundle.manifest.shot_offsets
    if table is not None:
        offsets = {n: float(table(np.array([n]))[0]) for n in args.shots}
        cal_base_rows = base_rows
    else:
        offsets = {n: lowshot.choose_novel_offset(emb[base_train], cub.labels[base_train], n) for n in args.shots}
        cal_base_rows = imp_base_rows
    for n in args.shots:
        for seed in range(args.seeds):
            shots = draw_shots(cub, n, seed)
            s_lab = cub.labels[shots]
            novel_rows = lowshot.class_means(emb[shots], s_lab, np.arange(NUM_BASE, num_classes))
            w = np.concatenate([base_rows, novel_rows])
            add("Imprinting", n, lowshot.score(lowshot.predict(t_emb, w), t_lab, novel_mask))
            add("Imprinting + calibration", n, lowshot.score(
                lowshot.predict(t_emb, np.concatenate([cal_base_rows, novel_rows]), offsets[n]), t_lab, novel_mask))
            if aug is not None:
                a = aug[[aug_of[int(i)] for i in shots]].mean(1)
                aug_rows = lowshot.class_means(a, s_lab, np.arange(NUM_BASE, num_classes))
                add("Imprinting + Aug", n, lowshot.score(lowshot.predict(t_emb, np.concatenate([base_rows, aug_rows])),
                                                         t_lab, novel_mask))
                add("Imprinting + Aug + calibration", n, lowshot.score(
                    lowshot.predict(t_emb, np.concatenate([cal_base_rows, aug_rows]), offsets[n]), t_lab, novel_mask))
            add("Nearest shot (Fig. 6)", n, lowshot.score(
                lowshot.predict_nearest_shot(t_emb, base_rows, emb[shots], s_lab, num_classes), t_lab, novel_mask))
            if n > 1:
                add("Imprinting, 3 templates/class", n, lowshot.score(
                    lowshot.predict_templates(t_emb, base_rows, emb[shots], s_lab, num_classes, 3), t_lab, novel_mask))
            c_novel = lowshot.class_means(c_emb[shots], s_lab, np.arange(NUM_BASE, num_classes))
            add("Imprinting, centred (CL2N)", n, lowshot.score(
                lowshot.predict(c_emb[test], np.concatenate([c_base_rows, c_novel])), t_lab, novel_mask))
            # Table 3's transfer setting: novel classes only, 100-way.
            pred = lowshot.predict(t_emb[novel_mask], novel_rows, 0.0) + NUM_BASE
            acc = 100.0 * (pred == t_lab[novel_mask]).mean()
            add("Transfer, novel only (Table 3)", n, lowshot.Scores(acc, acc))
    ex.close()
    sheet = None
    if args.sheet and not args.sheet_done and f"{entry.format}/{entry.precision}" == args.sheet and 1 in offsets:
        from cub_figures import exemplar_sheet

        args.sheet_done = True
        shown = exemplar_sheet(cub, emb, cal_base_rows, offsets[1], Path(args.out) / "cub_fig5.jpg",
                               f"{name}, imprinting + calibration")
        sheet = {"file": "cub_fig5.jpg", "extractor": name, "recall": shown}
    return {"name": name, "sheet": sheet, "file": entry.file, "format": entry.format, "precision": entry.precision,
            "trained_base": base is not None, "dim": int(emb.shape[1]), "offsets": offsets,
            "offsets_from": "bundle" if table is not None else "chosen here on base training images",
            "rows": {r: {str(n): v for n, v in d.items()} for r, d in rows.items()},
            "bundle": str(bundle.path), "bundle_name": bundle.manifest.name, "source": bundle.manifest.source}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", help="CUB_200_2011 directory (default: $IMPRINT_CUB_ROOT)")
    ap.add_argument("--bundle", action="append", required=True, help="model bundle (repeat for several)")
    ap.add_argument("--formats", default="onnx,tflite", help="extractor formats to run (default onnx,tflite)")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    ap.add_argument("--aug", default="onnx/int8,onnx/fp32,tflite/fp32,tflite/int8",
                    help="extractors (format/precision, comma list) that also get the Imprinting+Aug row "
                         "(5 random crops and flips per shot); '' for none")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--cache", default="cache/cub", help="embedding cache directory ('' for none)")
    ap.add_argument("--out", default="benchmarks/results", help="where cub.md, cub.json and the plots go")
    ap.add_argument("--finetune", metavar="CKPT", help="also the fine-tuning rows from this `imprint train` checkpoint")
    ap.add_argument("--ft-epochs", type=int, default=10)
    ap.add_argument("--ft-seeds", type=int, default=3)
    ap.add_argument("--finetune-blocks", metavar="CKPT", help="also Imprinting+FT rows fine-tuning the last blocks "
                    "of this `imprint train --blocks K` checkpoint")
    ap.add_argument("--ftb-epochs", type=int, default=8)
    ap.add_argument("--ftb-lr", type=float, default=3e-5)
    ap.add_argument("--ftb-seeds", type=int, default=1)
    ap.add_argument("--views", type=int, default=4, help="augmented views cached per training image (as `imprint train`)")
    ap.add_argument("--feature-cache", default="cache/features")
    ap.add_argument("--sheet", default="onnx/int8", help="extractor (format/precision) of the first bundle that "
                    "draws the Figure 5 exemplar sheet; '' for none")
    ap.add_argument("--dims", default="64,128,256,512,1280,0",
                    help="embedding dimensions for Figure 7 (0: unprojected pooled features); '' for none")
    args = ap.parse_args(argv)
    args.cache = args.cache or None
    args.aug = set(filter(None, args.aug.split(",")))
    args.sheet_done = False
    Path(args.out).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cub = load_cub(args.root)
    results = []
    formats, precisions = args.formats.split(","), args.precisions.split(",")
    for path in args.bundle:
        bundle = load_bundle(path)
        for entry in bundle.manifest.extractors:
            if entry.format in formats and entry.precision in precisions:
                results.append(evaluate_extractor(cub, bundle, entry, args))
    if args.finetune:
        from cub_finetune import evaluate_finetuning

        results.append(evaluate_finetuning(cub, args.finetune, args.shots, args.ft_seeds, args.ft_epochs, args.views,
                                           args.feature_cache or None))
    if args.finetune_blocks:
        from cub_finetune_blocks import evaluate_block_finetuning

        results.append(evaluate_block_finetuning(cub, args.finetune_blocks, args.shots, args.ftb_seeds, args.ftb_epochs,
                                                 args.ftb_lr, args.views, args.feature_cache or None))
    sweep = None
    if args.dims:
        from cub_figures import dimension_sweep

        dims = tuple(int(d) for d in args.dims.split(","))
        sweep = dimension_sweep(cub, dims, args.shots, args.seeds, args.views, args.feature_cache or None)
    out = Path(args.out)
    command = "python benchmarks/cub.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command, "seeds": list(range(args.seeds)), "shots": args.shots,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d")}
    (out / "cub.json").write_text(json.dumps({"meta": meta, "results": results, "dimensions": sweep}, indent=1))
    write_report(out, meta, results, sweep)
    print(f"wrote {out / 'cub.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
