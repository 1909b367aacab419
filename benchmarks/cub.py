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
import shlex
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from cub_report import write_report  # noqa: E402

from cub_protocol import protocol_predictions, protocol_scores  # noqa: E402

from imprinting.export.cub import NUM_BASE, load_cub  # noqa: E402
from imprinting.export.embeddings import cached_embeddings  # noqa: E402
from imprinting.runtime import ExtractorOptions, load_bundle  # noqa: E402
from imprinting.runtime.host import host_info, library_versions  # noqa: E402

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
    ex.close()
    log.info("%s: embeddings in %.0f s", name, time.perf_counter() - t0)
    base = bundle.base_classes()
    if base is not None and len(base.labels) != NUM_BASE:
        raise ValueError(f"{bundle.path} has {len(base.labels)} base classes; the CUB protocol needs the first 100")
    out = protocol_predictions(emb, cub, tuple(args.shots), args.seeds, base, bundle.manifest.shot_offsets, aug)
    rows = protocol_scores(out, cub)
    sheet = None
    if args.sheet and not args.sheet_done and f"{entry.format}/{entry.precision}" == args.sheet and 1 in out.offsets:
        from cub_figures import exemplar_sheet

        args.sheet_done = True
        shown = exemplar_sheet(cub, emb, out.base_rows, out.offsets[1], Path(args.out) / "cub_fig5.jpg",
                               f"{name}, imprinting + calibration")
        sheet = {"file": "cub_fig5.jpg", "extractor": name, "recall": shown}
    source = {k: (Path(v).name if k == "checkpoint" and v else v) for k, v in bundle.manifest.source.items()}
    return {"name": name, "sheet": sheet, "file": entry.file, "format": entry.format, "precision": entry.precision,
            "trained_base": base is not None, "dim": int(emb.shape[1]), "offsets": out.offsets,
            "offsets_from": out.offsets_from,
            "rows": {r: {str(n): v for n, v in d.items()} for r, d in rows.items()},
            "bundle": bundle.path.name, "bundle_name": bundle.manifest.name, "source": source,
            "parity_cosine": entry.parity_cosine, "bundle_host": bundle.manifest.host}


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
    command = "python benchmarks/cub.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command, "seeds": list(range(args.seeds)), "shots": args.shots,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d"), "host": host_info(),
            "versions": library_versions()}
    (out / "cub.json").write_text(json.dumps({"meta": meta, "results": results, "dimensions": sweep}, indent=1))
    write_report(out, meta, results, sweep)
    print(f"wrote {out / 'cub.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
