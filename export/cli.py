"""`imprint export`: the command-line face of `export_bundle`. Wired into `imprinting.cli` by
`add_export_parser(subparsers)`; `run_export(args)` returns the exit status."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from imprinting.hint import imprint_command
from imprinting.runtime.bundle import FORMATS, PRECISIONS

if TYPE_CHECKING:
    from .export_options import ExportResult

log = logging.getLogger(__name__)

EXAMPLES = """examples:
  imprint export --out bundles/lite0                       # ImageNet-pretrained, ONNX+TFLite, fp32+int8
  imprint export --checkpoint runs/cub/last.pt --out bundles/cub --calib-dir data/my_photos
  imprint export --out bundles/lite0-onnx --formats onnx --precisions int8 --strict
"""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in value.split(",") if v.strip())


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `export` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "export",
        help="export a model bundle (ONNX/TFLite, fp32/int8) that verifies itself against PyTorch",
        description="Export the extractor (and a checkpoint's base classes) as a model bundle for the runtime. "
        "Every file is checked against PyTorch fp32 before the manifest is written.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", help="base-trained checkpoint (.pt from `imprint train`); omit for the plain "
                   "ImageNet-pretrained extractor without base classes")
    p.add_argument("--dim", type=int, default=None, help="embedding dimension; must match the checkpoint "
                   "(0 = pooled 1280-d features, the only choice without a checkpoint)")
    p.add_argument("--out", required=True, help="bundle directory to write (new, empty, or an older bundle)")
    p.add_argument("--formats", type=_csv, default=FORMATS, help=f"comma list of {','.join(FORMATS)} (default: all)")
    p.add_argument("--precisions", type=_csv, default=PRECISIONS, help=f"comma list of {','.join(PRECISIONS)} (default: all)")
    p.add_argument("--calib-dir", help="folder of 100-300 photos like the ones you will recognize, for int8 "
                   "calibration and parity (default: scikit-image's sample photos and random views of them)")
    p.add_argument("--calib-count", type=int, default=200, help="int8 calibration images (default 200)")
    p.add_argument("--name", default=None, help="bundle name shown by `imprint info`")
    p.add_argument("--no-latency", dest="latency", action="store_false",
                   help="skip timing each file (1 thread, batch 1, median of 30 runs); the runtime picks the fastest "
                   "timed file on CPUs like this one")
    p.add_argument("--strict", action="store_true", help="fail the export if any file fails its parity check "
                   "(default: leave that file out, record it in the manifest, exit 0 if another file passed)")
    p.add_argument("--float-embedding", action="store_true",
                   help="keep the embedding layer fp32 in int8 files (default: int8 like the backbone)")
    p.add_argument("--unknown-false-accept", type=float, default=0.05, metavar="RATE",
                   help="the bundle's 'unknown' threshold lets this share of photos of never-taught classes through "
                   "(default 0.05; chosen on --calib-dir or the sample photos)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    """Run `imprint export`; ValueError for caller mistakes, ParityError if a file fails its check."""
    from tqdm import tqdm

    from imprinting.runtime.shot_offsets import ShotOffsets

    from .checkpoint import build_from_checkpoint, load_checkpoint
    from .exporters import BaseClasses, ExportOptions, export_bundle, export_steps
    from .model import ExtractorConfig, ImprintExtractor

    if args.calib_dir is not None and not Path(args.calib_dir).is_dir():
        raise ValueError(f"--calib-dir {args.calib_dir} is not a directory")
    base, source = None, {}
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        if args.dim is not None and args.dim != ckpt.config.embedding_dim:
            raise ValueError(
                f"--dim {args.dim} does not match the checkpoint's embedding dimension {ckpt.config.embedding_dim}; "
                "omit --dim when exporting a checkpoint"
            )
        model, clf = build_from_checkpoint(ckpt)
        offsets = ckpt.training.get("shot_offsets")
        exemplars = (None if ckpt.exemplars is None else
                     (ckpt.exemplars[0].float().numpy(), ckpt.exemplars[1].numpy()))
        if exemplars is None:
            log.warning("%s carries no base exemplars (trained before they were kept): `imprint refine` will decline "
                        "with this bundle's base classes; train again to get them", args.checkpoint)
        base = BaseClasses(ckpt.labels, clf, ckpt.counts, ShotOffsets.from_mapping(offsets) if offsets else None,
                           exemplars)
        spec = ckpt.preprocess
        source = {"checkpoint": str(Path(args.checkpoint).resolve()), "base_classes": len(ckpt.labels),
                  "base_rows": ckpt.training.get("base_rows", "trained"),
                  "training_path": ckpt.training.get("path", "")}
    else:
        if args.dim:
            raise ValueError(
                f"--dim {args.dim} needs a trained embedding layer: pass --checkpoint from `imprint train --dim "
                f"{args.dim}`, or omit --dim to export the pooled 1280-d pretrained features"
            )
        model = ImprintExtractor(ExtractorConfig(embedding_dim=0))
        from imprinting.runtime.preprocess import PreprocessSpec

        spec = PreprocessSpec()
        source = {"checkpoint": None, "weights": "efficientnet-lite0-57934424.pth (ImageNet)"}
    options = ExportOptions(
        formats=args.formats, precisions=args.precisions, calib_count=args.calib_count, calib_dir=args.calib_dir,
        preprocess=spec, seed=args.seed, latency_runs=30 if args.latency else 0, strict=args.strict,
        quantize_embedding=not args.float_embedding, unknown_false_accept=args.unknown_false_accept,
        **({"name": args.name} if args.name else {}),
    )
    # export_bundle reports each step of this list once as it starts it (a rejected file skips its timing).
    with tqdm(total=len(export_steps(options)), desc="export", unit="step") as bar:
        def progress(msg: str) -> None:
            bar.set_description(msg)
            bar.update(1)

        result = export_bundle(model, args.out, options, base=base, source=source, progress=progress)
        bar.n = bar.total
        bar.refresh()
    _print_result(result, len(base.labels) if base else 0)
    return 0


def _print_result(result: "ExportResult", base_classes: int) -> None:
    """The bundle's files as a table: size, parity and latency, then the rejected ones and the next step."""
    print(f"\nbundle {result.bundle_dir} ({result.manifest.embedding_dim}-d, "
          f"{base_classes} base classes, fingerprint {result.manifest.fingerprint[:12]})")
    cal = result.manifest.calibration
    if "unknown_min_cosine" in cal:
        rates = cal.get("unknown_rates_by_shots") or {"1": {"false_accept": cal["unknown_false_accept"],
                                                            "accept": cal["unknown_accept"]}}
        table = cal.get("unknown_min_evidence_by_shots") or {"1": cal["unknown_min_cosine"]}
        print("unknown policy (on the calibration photos): " + "; ".join(
            f"{n} shot(s): evidence below {table[n]:.3f}, lets {100 * r['false_accept']:.0f}% of never-taught photos through, "
            f"keeps {100 * r['accept']:.0f}% of right answers" for n, r in rates.items()))
    print(f"{'file':24s} {'size MB':>8s} {'cosine':>8s} {'min cos':>8s} {'top-1':>6s} {'ms/img':>7s}")
    for f in result.files:
        top1 = f"{f.parity.top1_agreement:.3f}" if f.parity.top1_agreement is not None else "-"
        lat = f"{f.latency_ms:.2f}" if f.latency_ms is not None else "-"
        print(f"{f.file:24s} {f.size_bytes / 1e6:8.2f} {f.parity.mean_cosine:8.5f} {f.parity.min_cosine:8.5f} {top1:>6s} {lat:>7s}")
    for f in result.rejected:
        print(f"{f.file:24s} {f.size_bytes / 1e6:8.2f} {f.parity.mean_cosine:8.5f} {f.parity.min_cosine:8.5f}  "
              f"REJECTED ({f.parity.message}); left out of the bundle")
    print(f"\nnext: {imprint_command()} learn {result.bundle_dir} --store classes.npz --label NAME IMAGE...")
