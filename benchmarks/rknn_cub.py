"""The Rockchip `.rknn` int8 file against the int8 ONNX file on a CUB subset, through rknn-toolkit2's simulator.

    python benchmarks/rknn_cub.py BUNDLE --root ../shared/data/CUB_200_2011 [--out benchmarks/results]

Subset: the 100 novel classes (CUB classes 101-200); per class the first 10 training photos (by image id) are
the shot pool and the first 10 test photos are scored. For n = 1 and 5 and 5 draws, each class is imprinted
from n photos drawn from its pool (the same draws for both files) and the 1,000 test photos are classified
among the 100 novel classes (top-1, plain imprinting: unit mean of the unit shot embeddings, cosine). Test
photos are only ever scored. The `.rknn` file is built here from the bundle's fp32 ONNX file exactly as
`imprint export-rknn` builds it (same calibration images), and each photo runs through the simulator.
Also reports each file's cosine to the fp32 ONNX file on all 2,000 photos. Writes rknn_cub.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imprinting.export.cub import NUM_BASE, load_cub
from imprinting.export.rknn_export import RknnOptions, simulate
from imprinting.runtime.bundle import load_bundle
from imprinting.runtime.extractor import ExtractorOptions
from imprinting.runtime.host import host_info, library_versions
from imprinting.runtime.images import load_image
from imprinting.runtime.preprocess import preprocess

PER_CLASS = 10
SHOTS = (1, 5)
DRAWS = 5


def subset(cub) -> tuple[np.ndarray, np.ndarray]:
    """(pool int64 (100, 10), test int64 (100, 10)): dataset indices of each novel class's first 10 training
    and first 10 test photos."""
    pool, test = [], []
    for c in range(NUM_BASE, len(cub.class_names)):
        members = np.flatnonzero(cub.labels == c)
        pool.append(members[cub.is_train[members]][:PER_CLASS])
        test.append(members[~cub.is_train[members]][:PER_CLASS])
    return np.stack(pool), np.stack(test)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def accuracy(emb: dict[int, np.ndarray], pool: np.ndarray, test: np.ndarray, n: int, seed: int) -> float:
    """Top-1 % over the test photos with each class imprinted from n photos of its pool (draw `seed`)."""
    rng = np.random.default_rng(seed)
    rows = unit(np.stack([unit(np.stack([emb[i] for i in rng.choice(p, n, replace=False)])).sum(0) for p in pool]))
    t = unit(np.stack([emb[i] for i in test.reshape(-1)]))
    truth = np.repeat(np.arange(len(pool)), test.shape[1])
    return float(100 * ((t @ rows.T).argmax(1) == truth).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--root", required=True)
    ap.add_argument("--target", default="rk3588")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    cub, bundle = load_cub(args.root), load_bundle(args.bundle)
    pool, test = subset(cub)
    ids = np.concatenate([pool.reshape(-1), test.reshape(-1)])
    x = preprocess([load_image(cub.paths[i]) for i in ids], bundle.manifest.preprocess, "NCHW")
    emb, seconds = {}, {}
    for fmt, precision in (("onnx", "fp32"), ("onnx", "int8")):
        ex = bundle.open_extractor(fmt, precision, ExtractorOptions(self_check="off"))
        t0 = time.perf_counter()
        out = np.concatenate([ex.run(b) for b in np.array_split(x, len(x) // 16)])
        seconds[f"{fmt}/{precision}"] = time.perf_counter() - t0
        emb[f"{fmt}/{precision}"] = dict(zip(ids.tolist(), out))
        ex.close()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out, report = simulate(bundle.path, x, RknnOptions(target=args.target), Path(tmp) / "x.rknn", print)
        seconds["rknn/int8 (build + simulator)"] = time.perf_counter() - t0
    emb["rknn/int8"] = dict(zip(ids.tolist(), out))
    ref = unit(np.stack([emb["onnx/fp32"][i] for i in ids]))
    result = {"subset": {"classes": len(pool), "pool_per_class": PER_CLASS, "test_per_class": PER_CLASS,
                         "draws": DRAWS}, "target": args.target, "toolkit": report, "files": {}}
    for name in ("onnx/fp32", "onnx/int8", "rknn/int8"):
        cos = (unit(np.stack([emb[name][i] for i in ids])) * ref).sum(1)
        result["files"][name] = {
            "cosine_to_fp32_onnx": {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)},
            "top1": {str(n): [round(accuracy(emb[name], pool, test, n, s), 2) for s in range(DRAWS)] for n in SHOTS}}
    result.update(seconds={k: round(v, 1) for k, v in seconds.items()}, host=host_info(), versions=library_versions())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rknn_cub.json").write_text(json.dumps(result, indent=1) + "\n")
    (out_dir / "rknn_cub.md").write_text(report_md(result, args))
    print(report_md(result, args))
    return 0


def report_md(r: dict, args: argparse.Namespace) -> str:
    h = r["host"]
    lines = [f"# `.rknn` int8 ({r['target']}, rknn-toolkit2 simulator) against int8 ONNX on a CUB subset", "",
             f"`python benchmarks/rknn_cub.py {args.bundle} --root {args.root}` on {h['cpu']} "
             f"({', '.join(h['features'])}; int8 kernels {h['int8_kernels']}); "
             + ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v) + ".", "",
             "100 novel classes, 10 test photos each, shots drawn from each class's first 10 training photos; "
             "top-1 % among the 100 novel classes, mean (and each) of 5 draws.", "",
             "| file | cosine to fp32 ONNX, mean (min) | n = 1 | n = 5 | n = 1 draws | n = 5 draws |",
             "|---|---:|---:|---:|---|---|"]
    for name, f in r["files"].items():
        c, t = f["cosine_to_fp32_onnx"], f["top1"]
        lines.append(f"| {name} | {c['mean']:.4f} ({c['min']:.4f}) | {np.mean(t['1']):.2f} | {np.mean(t['5']):.2f} | "
                     f"{', '.join(map(str, t['1']))} | {', '.join(map(str, t['5']))} |")
    a, b = r["files"]["rknn/int8"]["top1"], r["files"]["onnx/int8"]["top1"]
    lines += ["", "Difference (rknn - onnx int8), points: " + ", ".join(
        f"n = {n}: {np.mean(a[n]) - np.mean(b[n]):+.2f}" for n in a) + f". Build: {r['toolkit']['build_s']} s, "
        f"{r['toolkit']['bytes'] / 1e6:.1f} MB; seconds per stage: {r['seconds']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
