"""`imprint export-rknn BUNDLE`: the command-line face of rknn_export.export_rknn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .rknn_export import TARGETS, RknnOptions, export_rknn


def add_rknn_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-rknn", help="add an int8 .rknn file for a Rockchip NPU (RK3588, RK3566, ...) to a bundle",
                       description="Convert the bundle's fp32 ONNX file with rknn-toolkit2 (in a tool environment of "
                       "its own, made on first use), check it on the bundle's probes in the toolkit's simulator and "
                       "add it to the manifest when it reaches the int8 bar. On the board: docs/npu.md.")
    p.add_argument("bundle", help="bundle directory (written by `imprint export`, with its fp32 ONNX file)")
    p.add_argument("--target", default="rk3588", choices=TARGETS, help="the board's SoC (default rk3588)")
    p.add_argument("--calib-dir", help="folder of photos like the ones you will recognize, for int8 calibration "
                   "(default: scikit-image's sample photos and random views)")
    p.add_argument("--calib-count", type=int, default=100, help="calibration images (default 100)")
    p.add_argument("--tool-env", help="where the rknn-toolkit2 environment lives (default: $IMPRINT_RKNN_ENV or "
                   "~/.cache/imprinting/rknn-toolkit2-2.5.0)")
    p.set_defaults(func=cmd_export_rknn)


def cmd_export_rknn(args: argparse.Namespace) -> int:
    if args.calib_dir is not None and not Path(args.calib_dir).is_dir():
        raise ValueError(f"--calib-dir {args.calib_dir} is not a directory")
    options = RknnOptions(target=args.target, calib_count=args.calib_count, calib_dir=args.calib_dir,
                          tool_env=args.tool_env)
    r = export_rknn(args.bundle, options, say=lambda msg: print(msg, flush=True))
    figures = (f"mean cosine {r.mean_cosine:.4f} (min {r.min_cosine:.4f}) to PyTorch fp32 on the bundle's probes "
               f"in the simulator")
    if r.file is None:
        print(f"imprint: error: the .rknn file missed the bar: {figures} < {r.threshold}; nothing was added "
              "(try --calib-dir with your own photos)", file=sys.stderr)
        return 1
    print(f"added {r.file} for {args.target} to {args.bundle}: {r.report['bytes'] / 1e6:.1f} MB, {figures}")
    print(f"on the board: pip install rknn-toolkit-lite2, then `imprint doctor {args.bundle}` (docs/npu.md)")
    return 0
