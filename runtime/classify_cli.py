"""`imprint classify`: answers stream out as they are known, one line per image, flushed per batch.

A reader of the pipe sees the first line after the first batch, `| head` ends the command at its next write
(imprinting/cli.py exits quietly on a closed pipe), and Ctrl-C leaves every line printed so far. A progress
bar goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .cli_options import recognizer_options
from .folders import image_files
from .recognizer import Recognizer
from .results import Classification


def cmd_classify(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    files = image_files(args.images)
    if not files:
        raise ValueError(f"no image files in {' '.join(args.images)} (looked for .jpg, .jpeg, .png, .bmp, .webp, "
                         ".tif, .tiff, in subfolders too)")
    counts: dict[str, int] = {}
    failed: list[tuple[Path, str]] = []
    out = csv.writer(sys.stdout) if args.csv else None
    if out:
        extra = [f"{c}_{k}" for k in range(2, args.top_k + 1) for c in ("label", "cosine")]
        out.writerow(["image", "label", "cosine", *extra])
    with Recognizer.open(args.bundle, args.store, recognizer_options(args)) as r:
        if len(r) == 0:
            raise ValueError(f"no classes yet: teach one with `imprint learn {args.bundle} --store {args.store} "
                             "--label NAME IMAGE...`")
        bar = _bar(len(files))
        step = r.options.batch_size
        try:
            for start in range(0, len(files), step):
                chunk = files[start : start + step]
                emb = r.embed_each(chunk)
                failed += [(chunk[i], why) for i, why in emb.failed]
                results = r.classify(emb.embeddings, top_k=args.top_k) if emb.ok else []
                for i, e, res in zip(emb.ok, emb.embeddings, results):
                    near = _nearest(r, e, res) if args.explain else {}
                    counts[res.label or "unknown"] = counts.get(res.label or "unknown", 0) + 1
                    _print(args, out, chunk[i], res, near)
                sys.stdout.flush()
                if bar is not None:
                    bar.update(len(chunk))
        except KeyboardInterrupt:
            _summary(files, counts, failed, interrupted=True)  # the lines printed so far stand
            raise
        finally:
            if bar is not None:
                bar.close()
    _summary(files, counts, failed)
    return 1 if failed and not counts else 0


def _nearest(r: Recognizer, e: np.ndarray, res: Classification) -> dict[str, list[tuple[int, float, str]]]:
    """For each class of `res`, its taught shots nearest to the embedding e (D,): (shot number from 1, cosine,
    the shot's id: the first 32 hex digits of its photo's SHA-256, which `sha256sum` finds among files)."""
    out = {}
    for c in res.categories:
        ids = r.class_set.shots(c.label)[1]
        out[c.label] = [(i, cos, ids[i - 1]) for i, cos in r.nearest_shots(e, c.label)]
    return out


def _print(args: argparse.Namespace, out: Any, image: Path, res: Classification, near: dict) -> None:
    if args.json:
        extra = {"nearest_shots": {lab: [{"shot": i, "cosine": c, "photo": d} for i, c, d in v]
                                   for lab, v in near.items()}} if near else {}
        print(json.dumps({"image": str(image), **res.to_dict(), **extra}, ensure_ascii=False))
    elif out is not None:
        rest = [x for c in res.categories[1 : args.top_k] for x in (c.label, f"{c.score:.4f}")]
        out.writerow([str(image), res.label or "unknown", f"{res.score:.4f}", *rest])
    else:
        top = ", ".join(f"{c.label} {c.score:.3f}" for c in res.categories)
        print(f"{image}: {res.label if res.label is not None else 'unknown'}  ({top})")
        for c in res.categories if near else ():
            shots = ", ".join(f"shot {i} {cos:.3f} (photo {d[:12]})" for i, cos, d in near[c.label]) or "no stored shots"
            print(f"    {c.label}: {c.shots} shots; nearest {shots}")


def _bar(total: int) -> Any:
    """A tqdm bar on stderr when stderr is a terminal and tqdm is installed (the runtime does not need it)."""
    if total < 2 or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="classifying", unit="image", leave=False, file=sys.stderr)


def _summary(files: list[Path], counts: dict[str, int], failed: list[tuple[Path, str]],
             interrupted: bool = False) -> None:
    """What was skipped and, for several images, a one-line summary on stderr (also after Ctrl-C)."""
    for f, reason in failed:
        print(f"skipped {f}: {reason}", file=sys.stderr)
    if len(files) > 1 or interrupted:
        done = sum(counts.values())
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        stop = f" before the interrupt, of {len(files)}" if interrupted else ""
        print(f"{done} classified{stop} ({summary or 'none'}); {len(failed)} unreadable", file=sys.stderr)
