"""The command-line options shared by every command that runs a bundle, and how they become RecognizerOptions."""

from __future__ import annotations

import argparse

from .bundle import FORMATS, PRECISIONS
from .extractor import ONNX_ENGINES, ExtractorOptions
from .manifest import NPU_FORMATS
from .ranking import UnknownPolicy
from .recognizer_options import RecognizerOptions
from .shot_offsets import ShotOffsets

UNKNOWN_HELP = "report 'unknown' below this top-1 cosine (default: the bundle's threshold; -1: never)"
EVIDENCE_HELP = ("report 'unknown' when the top class's evidence (cosine x |shot sum| / shots: the mean cosine to its "
                 "shots) is below this, at every shot count (default: the bundle's table by shot count; "
                 "`imprint info BUNDLE --store S` states the level that keeps 95%% of right answers on your shots)")


def model_args(p: argparse.ArgumentParser, store: str | None = "class store file (.npz); created on the first learn",
               templates: bool = True, mirror: bool = True) -> None:
    """The options every command that runs a bundle takes: BUNDLE, --store (with this help; None: no store),
    --format, --precision, --threads and (optionally) --templates."""
    p.add_argument("bundle", help="model bundle directory (written by `imprint export`)")
    if store:
        p.add_argument("--store", required=True, help=store)
    p.add_argument("--format", choices=FORMATS + NPU_FORMATS,
                   help="extractor file format (default: the bundle's fastest here; rknn: its Rockchip NPU file)")
    p.add_argument("--precision", choices=PRECISIONS, help="extractor precision (default: the bundle's fastest here)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
    p.add_argument("--engine", choices=ONNX_ENGINES, help="what runs the ONNX files: onnxruntime (default) or openvino "
                   "(pip install 'imprinting[openvino]'); implies --format onnx")
    p.add_argument("--openvino-device", default="CPU", metavar="DEVICE",
                   help="OpenVINO device with --engine openvino: CPU (default), GPU, NPU or AUTO")
    p.add_argument("--providers", metavar="LIST", help="onnxruntime execution providers in order of preference, "
                   "comma-separated (e.g. XNNPACKExecutionProvider,CPUExecutionProvider); implies --format onnx")
    p.add_argument("--delegate", metavar="PATH", help="a TFLite delegate library (an NPU or Edge TPU delegate such as "
                   "libedgetpu.so.1); implies --format tflite")
    p.add_argument("--strict-check", action="store_true",
                   help="fail when the chosen file misses its self-check on this device (default: log one line and "
                   "run the next file of the bundle)")
    if mirror:  # only where something is taught
        p.add_argument("--mirror", action="store_true",
                       help="teach each image together with its horizontal mirror (a little more accurate; one more "
                       "extractor run per taught image)")
    if templates:
        p.add_argument("--templates", type=int, default=None, metavar="T",
                       help="templates per class (k-means over shots; 1 = the paper's averaged template); saved in "
                       "the store, so later commands need not repeat it (default: the store's, 1 for a new store)")


def recognizer_options(args: argparse.Namespace) -> RecognizerOptions:
    unknown = unknown_option(getattr(args, "min_cosine", None), getattr(args, "min_margin", None),
                             getattr(args, "min_evidence", None))
    return RecognizerOptions(
        format=_engine_format(args), precision=args.precision,
        extractor=ExtractorOptions(threads=args.threads,
                                   self_check="strict" if getattr(args, "strict_check", False) else "on",
                                   engine=args.engine, openvino_device=args.openvino_device,
                                   providers=tuple(p.strip() for p in args.providers.split(",") if p.strip())
                                   if args.providers else None, delegate=args.delegate),
        templates_per_class=getattr(args, "templates", None), unknown=unknown,
        mirror_shots=getattr(args, "mirror", False),
    )


def _engine_format(args: argparse.Namespace) -> str | None:
    """--format, or the one an engine option implies (an engine runs one format); ValueError on a conflict."""
    implied = {"--engine openvino": "onnx" if args.engine == "openvino" else None,
               "--providers": "onnx" if args.providers else None, "--delegate": "tflite" if args.delegate else None}
    wanted = {(flag, fmt) for flag, fmt in implied.items() if fmt}
    formats = {fmt for _, fmt in wanted} | ({args.format} if args.format else set())
    if len(formats) > 1:
        flags = ", ".join(sorted(f for f, _ in wanted)) + (f", --format {args.format}" if args.format else "")
        raise ValueError(f"{flags} ask for different file formats ({', '.join(sorted(formats))}); choose one")
    return next(iter(formats), None)


def unknown_option(min_cosine: float | None, min_margin: float | None,
                   min_evidence: float | None = None) -> UnknownPolicy | None:
    """--min-cosine/--min-margin/--min-evidence as an UnknownPolicy; None (none given) means the bundle's policy.
    --min-evidence is the shot-aware rule at one level for every shot count (the evidence's level does not move
    with the shot count: benchmarks/results/open_set.md)."""
    if min_evidence is not None:
        if min_cosine is not None:
            raise ValueError("give --min-cosine or --min-evidence, not both (each sets when an answer is unknown)")
        if not -1.0 <= min_evidence <= 1.0:
            raise ValueError(f"--min-evidence must be in [-1, 1] (a mean cosine), got {min_evidence}")
        return UnknownPolicy(None, min_margin, ShotOffsets((1,), (float(min_evidence),)))
    if min_cosine is None and min_margin is None:
        return None
    return UnknownPolicy(min_cosine, min_margin)

