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


def worker(bundle: Path, inputs: Path, out: Path, formats: str, all_files: bool) -> None:
    """Embed `inputs` with the bundle's files of `formats` (comma list) as unit rows, saved as out.npz
    {file name: (N, D)}: the int8 files, and with all_files (native, aarch64) the fp32 ones too; the fp32
    ONNX file natively always, as the reference. Emulated x86 runs skip fp32: its kernels do not saturate
    and emulating them costs minutes per image."""
    from imprinting.runtime import ExtractorOptions, load_bundle, load_extractor

    b = load_bundle(bundle)
    x = np.load(inputs)
    res = {}
    for e in b.manifest.extractors:
        wanted = e.format in formats.split(",") and (all_files or e.precision == "int8")
        if not (wanted or (all_files and e.file == "extractor_fp32.onnx")):
            continue
        ex = b.open_extractor(e.format, e.precision, ExtractorOptions(threads=1))
        emb = ex.run(x if ex.layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
        res[e.file] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for extra in filter(None, os.environ.get("ISA_PARITY_FILES", "").split(os.pathsep)):
        if not Path(extra).is_file():
            continue  # not staged into the aarch64 root: --file rows are x86 comparisons
        ex = load_extractor(extra, ExtractorOptions(threads=1))
        emb = ex.run(x)
        res[Path(extra).name] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.savez(out, **res)


def _stage_aarch64(root: Path, bundle: Path, inputs: Path) -> list[str]:
    """Copy the bundle and inputs into the arm64 root; the worker's bundle and inputs paths inside it."""
    stage = root / "work" / "isa"
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(bundle, stage / "bundle")
    shutil.copy(inputs, stage / "x.npy")
    return ["/work/isa/bundle", "/work/isa/x.npy"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--cpus", nargs="*", default=["Haswell", "Nehalem"], help="qemu x86-64 CPU models (none: skip)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--formats", nargs="+", default=["onnx"], choices=["onnx", "tflite"],
                    help="file formats to check natively and on aarch64 (emulated x86 CPUs check ONNX only: "
                    "XNNPACK's x86 kernels take hours under emulation, and widen int8 to 16 bits, so cannot saturate)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--aarch64-root", type=Path, help="an arm64 root with the runtime installed in /work/venv (made by "
                    "scripts/check_aarch64.sh): also run there under qemu-aarch64, as a Cortex-A72 (Raspberry Pi 4, "
                    "no dot product) and a Cortex-A76 (Raspberry Pi 5, with dot product)")
    ap.add_argument("--file", type=Path, action="append", default=[],
                    help="also check this ONNX file (same input as the bundle's), e.g. an int8 file of an older recipe")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*map(Path, args.worker[:3]), args.worker[3], args.worker[4] == "native" or args.worker[4].startswith("aarch64"))
        return 0
    if args.bundle is None:
        ap.error("give a bundle directory")
    sys.path.insert(0, str(HERE.parent))
    from imprinting.runtime.host import describe, host_info, int8_kernel_family, library_versions

    qemu = next((q for q in map(shutil.which, QEMU) if q), None)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "x.npy"
        np.save(inputs, _parity_inputs(args.bundle, args.images))
        plan = [("native", [], {})] + [(c, [qemu, "-cpu", c], {}) for c in args.cpus if qemu]
        if args.aarch64_root:
            arm = _stage_aarch64(args.aarch64_root, args.bundle, inputs)
            plan += [(f"aarch64 {cpu}", ["chroot", str(args.aarch64_root), "/work/venv/bin/python",
                                         "/work/src/benchmarks/isa_parity.py", "--worker", *arm], {"QEMU_CPU": cpu})
                     for cpu in ("cortex-a72", "cortex-a76")]
        for i, (name, prefix, extra_env) in enumerate(plan):
            print(f"[{i + 1}/{len(plan)}] {name} ...", file=sys.stderr, flush=True)
            out = Path(tmp) / f"{name}.npz"
            if prefix and prefix[0] == "chroot":
                cmd = [*prefix, f"/work/isa/{name.replace(' ', '-')}.npz", ",".join(args.formats), name]
                out = args.aarch64_root / "work" / "isa" / f"{name.replace(' ', '-')}.npz"
            else:
                formats = ",".join(args.formats) if not prefix else "onnx"
                cmd = [*prefix, sys.executable, __file__, "--worker", str(args.bundle), str(inputs), str(out), formats, name]
            env = {**os.environ, **extra_env, "ISA_PARITY_FILES": os.pathsep.join(str(f.resolve()) for f in args.file)}
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
    flags = {"Haswell": ["avx2", "fma"], "Nehalem": [], "native": host_info()["features"],
             "aarch64 cortex-a72": ["asimd"], "aarch64 cortex-a76": ["asimd", "asimddp"]}
    rows = []
    for cpu, r in runs.items():
        family = int8_kernel_family("aarch64" if cpu.startswith("aarch64") else "x86_64", flags.get(cpu, []))
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
             describe(info["versions"]),
             "Reference: the bundle's fp32 ONNX file run natively. Emulated with qemu-user; correctness only, no timing.", "",
             "Top-1 agreement: the share of images whose nearest reference embedding (among all the held-out images) is "
             "their own.", "",
             "| CPU | int8 kernels | file | mean cosine | min cosine | top-1 agreement |", "|---|---|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['cpu']} | {r['int8_kernels']} | failed: {r['error'][:100]} | | | |")
        else:
            lines.append(f"| {r['cpu']} | {r['int8_kernels']} | {r['file']} | {r['mean_cosine']:.5f} | "
                         f"{r['min_cosine']:.5f} | {r['self_retrieval']:.3f} |")
    lines += ["", f"Regenerate: `python benchmarks/isa_parity.py BUNDLE --cpus {' '.join(args.cpus)} --images {args.images} --formats {' '.join(args.formats)}"
              + "".join(f" --file {f.name}" for f in args.file)
              + (" --aarch64-root cache/aarch64/root` (after scripts/check_aarch64.sh made it)" if args.aarch64_root else "`")]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "isa_parity.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    (args.out / "isa_parity.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'isa_parity.md'} and isa_parity.json", file=sys.stderr)
    # The export's own thresholds, for the bundle's files (extra --file rows are comparisons only).
    own = {p.name for p in args.bundle.iterdir()}
    bad = [r for r in rows if "error" in r or (r["file"] in own and r["mean_cosine"] < (0.999 if "fp32" in r["file"] else 0.99))]
    for r in bad:
        print(f"below threshold or failed: {r}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
