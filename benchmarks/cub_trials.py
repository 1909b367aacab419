"""What the CUB trial scripts share (open_set, refine_trials, mirror_trials): their arguments, the unit
embeddings of every CUB image by a bundle's int8 ONNX file (cached by benchmarks/cub.py), and the results file."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from imprinting.export.embeddings import cached_embeddings
from imprinting.runtime import Bundle


def trial_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """--root, --bundle (repeatable), --seeds, --cache and --out (default `out`)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--root", required=True, help="CUB_200_2011 directory")
    ap.add_argument("--bundle", action="append", required=True, help="model bundle (repeat for several)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache", default="cache/cub", help="embedding cache directory")
    ap.add_argument("--out", default=out)
    return ap


def int8_format(bundle: Bundle) -> str:
    """The format of the bundle's int8 file the trials use: ONNX, or TFLite when the ONNX file failed parity."""
    files = {(e.format, e.precision) for e in bundle.manifest.extractors}
    return "onnx" if ("onnx", "int8") in files else "tflite"


def int8_unit_embeddings(bundle: Bundle, paths: list[Path], cache: str) -> np.ndarray:
    """Unit embeddings float32 (N, D) of `paths` by the bundle's int8 file (`int8_format`)."""
    ex = bundle.open_extractor(int8_format(bundle), "int8")
    try:
        emb = cached_embeddings(cache, ex, bundle.manifest.preprocess, paths, desc=bundle.manifest.name)
    finally:
        ex.close()
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def write_results(path: str | Path, text: str) -> None:
    """Write a results file, show it, and say where it went."""
    Path(path).write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {path}")
