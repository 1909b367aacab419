"""The command-line options shared by every command that runs a bundle, and how they become RecognizerOptions."""

from __future__ import annotations

import argparse

from .bundle import FORMATS, PRECISIONS
from .extractor import ExtractorOptions
from .ranking import UnknownPolicy
from .recognizer_options import RecognizerOptions

UNKNOWN_HELP = "report 'unknown' below this top-1 cosine (default: the bundle's threshold; -1: never)"


def model_args(p: argparse.ArgumentParser, store: str | None = "class store file (.npz); created on the first learn",
               templates: bool = True, mirror: bool = True) -> None:
    """The options every command that runs a bundle takes: BUNDLE, --store (with this help; None: no store),
    --format, --precision, --threads and (optionally) --templates."""
    p.add_argument("bundle", help="model bundle directory (written by `imprint export`)")
    if store:
        p.add_argument("--store", required=True, help=store)
    p.add_argument("--format", choices=FORMATS, help="extractor file format (default: the bundle's fastest here)")
    p.add_argument("--precision", choices=PRECISIONS, help="extractor precision (default: the bundle's fastest here)")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's)")
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
    unknown = unknown_option(getattr(args, "min_cosine", None), getattr(args, "min_margin", None))
    return RecognizerOptions(
        format=args.format, precision=args.precision,
        extractor=ExtractorOptions(threads=args.threads,
                                   self_check="strict" if getattr(args, "strict_check", False) else "on"),
        templates_per_class=getattr(args, "templates", None), unknown=unknown,
        mirror_shots=getattr(args, "mirror", False),
    )


def unknown_option(min_cosine: float | None, min_margin: float | None) -> UnknownPolicy | None:
    """--min-cosine/--min-margin as an UnknownPolicy; None (neither given) means the bundle's threshold."""
    if min_cosine is None and min_margin is None:
        return None
    return UnknownPolicy(min_cosine, min_margin)

