"""Parity of a bundle's extractor files under the int8 kernels of other CPUs, by emulating them.

    python benchmarks/isa_parity.py BUNDLE [--cpus Haswell Nehalem] [--images 16] [--out benchmarks/results]

The parity images of the export (scikit-image photos held out of calibration, with random views) are run
through every file of the bundle by the runtime's own loader: natively, then under `qemu-x86_64 -cpu MODEL`
for each CPU model (Haswell: AVX2 without VNNI, whose u8s8 kernels saturate; Nehalem: SSE4.2 only). The
reference is the bundle's fp32 ONNX file run natively (itself checked against PyTorch at export, mean
cosine >= 0.999). Emulation gives each CPU's results, not its speed: no timing is reported.
Needs qemu-user-static (`apt-get install qemu-user-static`); a CPU model it cannot run is reported and
skipped. Writes isa_parity.json and isa_parity.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QEMU = ("qemu-x86_64-static", "qemu-x86_64")


def _parity_inputs(bundle: Path, count: int) -> np.ndarray:
    """Preprocessed NCHW parity images (count, 3, S, S), the same held-out set the export checks."""
    sys.path.insert(0, str(HERE.parent))
    from imprinting.export.calibration import PARITY_PHOTOS, augmented_views, sample_photos
    from imprinting.runtime import load_bundle
    from imprinting.runtime.preprocess import preprocess

    spec = load_bundle(bundle).manifest.preprocess
    return preprocess(augmented_views(sample_photos(PARITY_PHOTOS), count, seed=1), spec, "NCHW")


def worker(bundle: Path, inputs: Path, out: Path, formats: str, native: bool) -> None:
    """Embed `inputs` with the bundle's files of `formats` (comma list) as unit rows, saved as out.npz
    {file name: (N, D)}: the int8 files, and natively also the fp32 ONNX file, the reference."""
    from imprinting.runtime import ExtractorOptions, load_bundle, load_extractor

    b = load_bundle(bundle)
    x = np.load(inputs)
    res = {}
    for e in b.manifest.extractors:
        if e.file != "extractor_fp32.onnx" and (e.format not in formats.split(",") or e.precision != "int8"):
            continue
        if e.file == "extractor_fp32.onnx" and not native:
            continue  # fp32 kernels do not saturate; emulating them costs minutes per image
        ex = b.open_extractor(e.format, e.precision, ExtractorOptions(threads=1))
        emb = ex.run(x if ex.layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        res[e.file] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for extra in filter(None, os.environ.get("ISA_PARITY_FILES", "").split(os.pathsep)):
        ex = load_extractor(extra, ExtractorOptions(threads=1))
        emb = ex.run(x)
        res[Path(extra).name] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.savez(out, **res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--cpus", nargs="+", default=["Haswell", "Nehalem"], help="qemu x86-64 CPU models")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--formats", nargs="+", default=["onnx"], choices=["onnx", "tflite"],
                    help="file formats to check (TFLite runs very slowly under emulation: hours)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--file", type=Path, action="append", default=[],
                    help="also check this ONNX file (same input as the bundle's), e.g. an int8 file of an older recipe")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*map(Path, args.worker[:3]), args.worker[3], args.worker[4] == "native")
        return 0
    if args.bundle is None:
        ap.error("give a bundle directory")
    sys.path.insert(0, str(HERE.parent))
    from imprinting.runtime.host import host_info, int8_kernel_family, library_versions

    qemu = next((q for q in map(shutil.which, QEMU) if q), None)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "x.npy"
        np.save(inputs, _parity_inputs(args.bundle, args.images))
        plan = [("native", [])] + [(c, [qemu, "-cpu", c]) for c in args.cpus if qemu]
        for i, (name, prefix) in enumerate(plan):
            print(f"[{i + 1}/{len(plan)}] {name} ...", file=sys.stderr, flush=True)
            out = Path(tmp) / f"{name}.npz"
            cmd = [*prefix, sys.executable, __file__, "--worker", str(args.bundle), str(inputs), str(out),
                   ",".join(args.formats), name]
            env = {**os.environ, "ISA_PARITY_FILES": os.pathsep.join(str(f.resolve()) for f in args.file)}
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
            if proc.returncode != 0:
                runs[name] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
                continue
            runs[name] = {"embeddings": dict(np.load(out))}
    if not qemu:
        print("qemu-x86_64 not found: only the native run was made (apt-get install qemu-user-static)", file=sys.stderr)
    ref = runs["native"]["embeddings"]["extractor_fp32.onnx"] if "embeddings" in runs.get("native", {}) else None
    if ref is None:
        print(f"the native run failed: {runs.get('native')}", file=sys.stderr)
        return 1
    # What each emulated model reports as CPU flags (for the kernel family column).
    flags = {"Haswell": ["avx2", "fma"], "Nehalem": [], "native": host_info()["features"]}
    rows = []
    for cpu, r in runs.items():
        family = int8_kernel_family("x86_64", flags.get(cpu, []))
        if "error" in r:
            rows.append({"cpu": cpu, "int8_kernels": family, "error": r["error"]})
            continue
        for file, emb in r["embeddings"].items():
            cos = (emb * ref).sum(1)
            top1 = float(np.mean(np.argmax(emb @ ref.T, 1) == np.arange(len(ref))))
            rows.append({"cpu": cpu, "int8_kernels": family, "file": file, "mean_cosine": float(cos.mean()),
                         "min_cosine": float(cos.min()), "self_retrieval": top1})
    info = {"host": host_info(), "versions": library_versions(), "images": args.images, "bundle": args.bundle.name}
    lines = [f"# Parity under other CPUs' kernels ({args.images} held-out images, bundle `{args.bundle.name}`)", "",
             f"Host: {info['host']['cpu']} ({', '.join(info['host']['features'])}); "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
             "Reference: the bundle's fp32 ONNX file run natively. Emulated with qemu-user; correctness only, no timing.", "",
             "| CPU | int8 kernels | file | mean cosine | min cosine |", "|---|---|---|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['cpu']} | {r['int8_kernels']} | failed: {r['error'][:100]} | | |")
        else:
            lines.append(f"| {r['cpu']} | {r['int8_kernels']} | {r['file']} | {r['mean_cosine']:.5f} | {r['min_cosine']:.5f} |")
    lines += ["", f"Regenerate: `python benchmarks/isa_parity.py BUNDLE --cpus {' '.join(args.cpus)} --images {args.images} --formats {' '.join(args.formats)}"
              + "".join(f" --file {f.name}" for f in args.file) + "`"]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isa_parity.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    (args.out / "isa_parity.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'isa_parity.md'} and isa_parity.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
