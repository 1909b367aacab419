"""`imprint`: the one command-line entry point. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import sys

from imprinting.quiet import quiet_third_parties

from imprinting import __version__
from imprinting.runtime.cli import add_runtime_parsers
from imprinting.runtime.doctor import add_doctor_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imprint", description="Few-shot image recognition by weight imprinting, on-device."
    )
    parser.add_argument("--version", action="version", version=f"imprinting {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_runtime_parsers(sub)
    add_doctor_parser(sub)
    from imprinting.demo import add_demo_parser

    add_demo_parser(sub)
    _add_optional(sub, "imprinting.export.cli", "add_export_parser")
    _add_optional(sub, "imprinting.export.train_cli", "add_train_parser")
    _add_optional(sub, "imprinting.export.rknn_cli", "add_rknn_parser")
    return parser


def _add_optional(sub: argparse._SubParsersAction, module: str, func: str) -> None:
    """Commands of the training side appear only where it is installed (it needs torch)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    getattr(mod, func)(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v/--verbose anywhere on the line, not only before the subcommand.
    verbose = any(a in ("-v", "--verbose") for a in argv)
    args, extras = parser.parse_known_args([a for a in argv if a not in ("-v", "--verbose")])
    if extras and getattr(args, "extra_positionals", None) and not any(e.startswith("-") for e in extras):
        # A positional list after options (`learn B --store S --label L a.jpg b.jpg`): argparse cannot
        # split it from the positional before the options, so the command takes it from the extras.
        getattr(args, args.extra_positionals).extend(extras)
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.verbose = verbose
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_third_parties()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`imprint classify ... | head`): stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, ImportError, OSError, RuntimeError) as err:
        if args.verbose:
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"imprint: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("imprint: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
