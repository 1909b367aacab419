"""Latency of every backend and precision side by side, per stage, with memory, cold start and the
distance to the hardware limit.

    python benchmarks/latency.py BUNDLE [--threads 1 2] [--runs 200] [--name this-machine]
    python benchmarks/latency.py BUNDLE --compare benchmarks/reference/x86-2core.json

Each configuration (PyTorch eager when installed; every extractor file of the bundle through
onnxruntime, OpenVINO (when installed) or ai-edge-litert; threads 1..N; batch 1) runs in a fresh process, so cold start (process
start to first result) and peak resident memory are its own. A configuration that fails is reported as
failed with its error and the rest still run. Writes JSON, a markdown table and plots to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from device import device_info, onnx_macs, peak_gmacs  # noqa: E402

K_CLASSES = 1000


# ----- the worker: one configuration in its own process ---------------------------------------------
def _frames(n: int = 8) -> list[np.ndarray]:
    """Camera-sized test frames (640x480 RGB) from real photos, deterministic."""
    from imprinting import simcam

    rng = np.random.default_rng(0)
    photos = [simcam.sample_photo(p) for p in simcam.OBJECTS]
    return [simcam.render(photos[i % len(photos)], simcam.random_view(rng), rng) for i in range(n)]


def _percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "runs": len(a)}


def _peak_rss_kb() -> float:
    """Peak resident memory of this process: VmHWM, which starts afresh at exec (ru_maxrss can carry the
    parent's peak across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def worker(cfg: dict) -> dict:
    """Run one configuration; the first timestamp is taken right after the first embedding exists."""
    import cv2

    from imprinting.runtime import ClassSet, ImprintedClassifier
    from imprinting.runtime.preprocess import PreprocessSpec, capture_size, preprocess

    spec = PreprocessSpec(**cfg["preprocess"])
    frame = np.zeros((480, 640, 3), np.uint8)
    if cfg["backend"] == "torch":
        import torch

        from imprinting.export.model import ExtractorConfig, ImprintExtractor

        torch.set_num_threads(cfg["threads"])
        model = ImprintExtractor(ExtractorConfig(embedding_dim=cfg["dim"]), pretrained=False).eval()
        layout = "NCHW"

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
    else:
        from imprinting.runtime import ExtractorOptions, load_extractor

        engine = "openvino" if cfg["backend"] == "openvino" else None
        ex = load_extractor(cfg["file"], ExtractorOptions(threads=cfg["threads"], engine=engine))
        layout, run = ex.layout, ex.run
    first = run(preprocess(frame, spec, layout))
    t_first = time.time()
    frames = list(np.load(cfg["frames"]))
    ok, jpeg = cv2.imencode(".jpg", frames[0][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    xs = [preprocess(f, spec, layout) for f in frames]
    # The same scenes as a camera delivers them when asked for capture_size (what `imprint camera` asks for).
    small = [cv2.resize(f, capture_size(spec), interpolation=cv2.INTER_AREA) for f in frames]
    for _ in range(cfg["warmup"]):
        run(xs[0])
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "extract", "classify", "imprint",
                                                       "preprocess_capture")}
    rng = np.random.default_rng(0)
    classes = ClassSet(first.shape[1], 10.0, "bench")
    clf = ImprintedClassifier(classes)
    protos = rng.standard_normal((K_CLASSES, first.shape[1]), dtype=np.float32)
    for i in range(K_CLASSES):
        classes.learn(f"c{i}", protos[i])
    emb = []
    for i in range(cfg["runs"]):
        f = frames[i % len(frames)]
        t0 = time.perf_counter()
        cv2.imdecode(np.frombuffer(jpeg.tobytes(), np.uint8), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        x = preprocess(f, spec, layout)
        t2 = time.perf_counter()
        e = run(x)
        t3 = time.perf_counter()
        clf.classify(e[0], top_k=5)
        t4 = time.perf_counter()
        classes.learn(f"c{i % K_CLASSES}", e[0], ids=[str(i)])
        t5 = time.perf_counter()
        preprocess(small[i % len(small)], spec, layout)
        t6 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("preprocess", t1, t2), ("extract", t2, t3), ("classify", t3, t4),
                        ("imprint", t4, t5), ("preprocess_capture", t5, t6)):
            stages[k].append(1000 * (b - a))
        if i < len(frames):
            emb.append(e[0] / np.linalg.norm(e[0]))
    peak_kb = _peak_rss_kb()
    return {"first_result_time": t_first, "stages": {k: _percentiles(v) for k, v in stages.items()},
            "e2e": _percentiles([sum(v[i] for k, v in stages.items() if k in ("preprocess", "extract", "classify"))
                                 for i in range(cfg["runs"])]),
            "e2e_capture": _percentiles([sum(v[i] for k, v in stages.items() if k in ("preprocess_capture", "extract", "classify"))
                                         for i in range(cfg["runs"])]),
            "peak_rss_mb": peak_kb / 1024, "embeddings": np.stack(emb).tolist()}


# ----- what users run: the peak memory of the real commands --------------------------------------------
_PEAK_OF = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def command_memory(bundle: Path, frames: list[np.ndarray], tmp: Path) -> list[dict]:
    """Peak resident memory (MB) of `imprint learn`, `imprint classify` and `imprint camera` on this bundle's
    default file, each measured in a fresh process (what a user's process holds, not a benchmark's)."""
    import cv2

    photos = tmp / "photos"
    photos.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(photos / f"frame{i}.jpg"), f[..., ::-1])
    store = tmp / "classes.npz"
    imprint = [sys.executable, "-m", "imprinting.cli"]
    jobs = [("imprint learn (8 photos)", [*imprint, "learn", str(bundle), "--store", str(store), "--label", "a", str(photos)])]
    from imprinting.runtime import load_bundle

    files = {(e.format, e.precision) for e in load_bundle(bundle).manifest.extractors}
    # The default file, and the int8 TFLite file (the one a Pi or a phone runs) when the bundle has it.
    for which, opts in (("default file", []), ("int8 TFLite", ["--format", "tflite", "--precision", "int8"])):
        if opts and ("tflite", "int8") not in files:
            continue
        jobs += [
            (f"imprint classify (8 photos), {which}", [*imprint, "classify", str(bundle), "--store", str(store), *opts,
                                                       str(photos)]),
            (f"imprint camera (folder, 200 frames), {which}", [*imprint, "camera", str(bundle), "--store", str(store),
                                                               *opts, "--source", str(photos), "--loop", "--max-frames",
                                                               "200", "--api-port", "-1", "--no-stdin", "--events", "none"]),
        ]
    out = []
    for name, cmd in jobs:
        res = subprocess.run([sys.executable, "-c", _PEAK_OF, *cmd], capture_output=True, text=True, timeout=600)
        code, kb = res.stdout.split()
        out.append({"command": name, "exit": int(code), "peak_rss_mb": int(kb) / 1024})
    return out


# ----- the parent: configurations, report, comparison ----------------------------------------------
def configurations(bundle: Path, threads: list[int], torch_too: bool) -> list[dict]:
    from imprinting.runtime import load_bundle

    m = load_bundle(bundle).manifest
    base = {"preprocess": m.preprocess.to_dict()}
    cfgs = []
    for t in threads:
        if torch_too:
            dim = 0 if m.embedding_dim == 1280 else m.embedding_dim  # same backbone cost either way
            cfgs.append({**base, "name": f"pytorch-eager-fp32-t{t}", "backend": "torch", "precision": "fp32",
                         "format": "pytorch", "threads": t, "dim": dim, "file": None})
        for e in m.extractors:
            # ONNX files also through OpenVINO where it is installed (`pip install 'imprinting[openvino]'`);
            # NPU files (.rknn) need their board: docs/npu.md.
            backends = {"onnx": ["onnxruntime"] + (["openvino"] if find_spec("openvino") else []),
                        "tflite": ["litert"]}.get(e.format, [])
            for backend in backends:
                cfgs.append({**base, "name": f"{backend}-{e.precision}-t{t}", "backend": backend,
                             "precision": e.precision, "format": e.format, "threads": t, "file": str(bundle / e.file)})
    return cfgs


def run_config(cfg: dict, runs: int, warmup: int, frames: Path) -> dict:
    cfg = {**cfg, "runs": runs, "warmup": warmup, "frames": str(frames)}
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                          timeout=1800,
                          # What `imprint` sets before numpy loads (see imprinting/__init__.py), unless the user did.
                          env={"OPENBLAS_NUM_THREADS": "1", **os.environ, "PYTHONPATH": str(HERE.parent)})
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        return {**cfg, "status": "failed", "error": err}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["cold_start_s"] = res.pop("first_result_time") - t0
    size = Path(cfg["file"]).stat().st_size / 2**20 if cfg["file"] else None
    return {**cfg, **res, "status": "ok", "file_mb": size}


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None else format(x, spec)


def report(results: list[dict], info: dict, macs: int | None, out: Path, name: str) -> str:
    # Each row's parity: against the fp32 file of its format on the format's default engine (onnxruntime,
    # LiteRT) at the same threads; an OpenVINO fp32 row is compared with onnxruntime's.
    fp = {(r["format"], r["threads"]): np.asarray(r["embeddings"]) for r in results
          if r["status"] == "ok" and r["precision"] == "fp32" and r["backend"] != "openvino"}
    lines = [f"# Latency on {info['cpu']} ({info['cores']} cores, {', '.join(info['features']) or 'no SIMD flags read'}, "
             f"{info['ghz'] or '?'} GHz, governor {info['governor'] or 'unreadable'})", "",
             f"int8 kernels: {info.get('int8_kernels', '?')}; " + ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()) + ".", "",
             f"Batch 1, 640x480 frames, classify among {K_CLASSES} classes; medians of {results[0].get('runs', '?')} runs "
             f"(p90 in brackets), milliseconds. Extractor: {macs / 1e6:.0f}M MACs." if macs else "", "",
             "| configuration | extract | p90 | p99 | preprocess | classify | imprint | decode JPEG | pre+extract+classify | "
             "cold start s | peak RSS MB | file MB | cos vs fp32 | GMAC/s | of peak |",
             "|---|" + "---:|" * 14]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | failed: {r['error'][:120]} |" + " |" * 13)
            continue
        s = r["stages"]
        cos = ""
        ref = fp.get((r["format"], r["threads"])) if r["precision"] != "fp32" or r["backend"] == "openvino" else None
        if ref is not None:
            e = np.asarray(r["embeddings"])
            cos = f"{float((e * ref).sum(1).mean()):.4f}"
            r["cosine_vs_fp32"] = float((e * ref).sum(1).mean())
        gmacs = macs / (s["extract"]["median"] * 1e6) if macs else None
        peak = peak_gmacs(info, r["threads"], r["precision"] == "int8")
        r["gmacs"], r["peak_gmacs"] = gmacs, peak
        lines.append(
            f"| {r['name']} | {s['extract']['median']:.2f} | {s['extract']['p90']:.2f} | {s['extract']['p99']:.2f} | "
            f"{s['preprocess']['median']:.2f} | {s['classify']['median']:.3f} | {s['imprint']['median']:.3f} | "
            f"{s['decode']['median']:.2f} | {r['e2e']['median']:.2f} | {r['cold_start_s']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{_fmt(r['file_mb'], '.2f')} | {cos} | "
            f"{_fmt(gmacs, '.0f')} | {_fmt(gmacs / peak if gmacs and peak else None, '.0%')} |")
    if info.get("governor") not in (None, "performance"):
        lines += ["", f"Warning: the CPU frequency governor is {info['governor']!r}, not 'performance'."]
    return "\n".join(lines)


def frame_ratios(results: list[dict]) -> str:
    """The frame path against the extractor alone, per configuration: a 640x480 frame, and the frame a camera
    gives when `imprint camera` asks it for the model's size (no resize: crop and normalize only)."""
    lines = ["The whole frame (preprocess + extract + classify among 1000 classes, summed per run, median) against "
             "the extractor alone:", "",
             "| configuration | extract ms | 640x480 frame ms | ratio | preprocess | capture-size frame ms | ratio | preprocess |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r["status"] != "ok" or "e2e_capture" not in r:
            continue
        s, x = r["stages"], r["stages"]["extract"]["median"]
        lines.append(f"| {r['name']} | {x:.2f} | {r['e2e']['median']:.2f} | {r['e2e']['median'] / x:.2f}x | "
                     f"{s['preprocess']['median']:.2f} | {r['e2e_capture']['median']:.2f} | "
                     f"{r['e2e_capture']['median'] / x:.2f}x | {s['preprocess_capture']['median']:.2f} |")
    ok = [r for r in results if r["status"] == "ok" and "e2e_capture" in r]
    if ok:
        resize = np.median([r["stages"]["preprocess"]["median"] - r["stages"]["preprocess_capture"]["median"] for r in ok])
        crop = np.median([r["stages"]["preprocess_capture"]["median"] for r in ok])
        classify = np.median([r["stages"]["classify"]["median"] for r in ok])
        lines += ["", f"What the frame adds, medians over the configurations: the resize of a 640x480 frame's centre "
                      f"box to the input (INTER_AREA) {resize:.2f} ms, crop and normalize {crop:.2f} ms, classifying "
                      f"among {K_CLASSES} classes {classify:.2f} ms (a float32 matrix-vector product over "
                      f"{K_CLASSES} x D floats read from memory each frame, see classifier_speed.md). A camera asked "
                      "for the capture size (`imprint camera` does) needs no resize."]
    return "\n".join(lines)


LOOP_NOTE = (
    "Which to trust for what: the suite times each stage alone, after 20 warm-up runs, on 8 fixed frames: use "
    "it to compare files, formats and thread counts. The camera loop (`imprint camera`) times what a deployment "
    "gets: capture on the grabber thread, events and smoothing around the same Recognizer calls: use it for a "
    "device's frame rate. With frames from memory both measure the same work and should agree within 10%; the "
    "MJPG column is what decoding on the grabber thread costs the extractor when both share 2 cores.")


def loop_runs(bundle: Path, results: list[dict], frames: int = 1500) -> list[dict]:
    """The camera loop (benchmarks/camera_loop.py, a fresh process each) on the configurations the suite ran
    with 2 threads in int8: its mean extract time with frames from memory (nothing else on the cores, as in
    the suite) and with the MJPG video decoded on its grabber thread (a camera's load)."""
    out = []
    script = Path(__file__).with_name("camera_loop.py")
    for r in results:
        if r["status"] != "ok" or r["threads"] != 2 or r["precision"] != "int8" or r["format"] not in ("onnx", "tflite"):
            continue
        for source in ("memory", "video"):
            cmd = [sys.executable, str(script), str(bundle), "--frames", str(frames), "--threads", "2", "--format",
                   r["format"], "--precision", "int8", "--source", source, "--json"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            stats = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 and p.stdout.strip() else None
            out.append({"name": r["name"], "source": source, "stats": stats,
                        "error": None if stats else (p.stderr.strip().splitlines() or ["failed"])[-1]})
    return out


def loop_agreement(results: list[dict], loops: list[dict]) -> str:
    """The suite's extract time against the camera loop's, per 2-thread int8 configuration (means: the loop
    keeps means)."""
    by_name = {r["name"]: r for r in results}
    lines = ["The suite against the camera loop (`benchmarks/camera_loop.py --threads 2 --format F --precision int8 "
             "--source memory|video`, 1500 frames, fresh processes), extract ms, means:", "",
             "| configuration | suite median | suite mean | loop, frames from memory | difference | loop, MJPG decoded "
             "on its grabber thread | difference |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(x["name"] for x in loops):
        ext = by_name[name]["stages"]["extract"]
        cells = []
        for source in ("memory", "video"):
            run = next(x for x in loops if x["name"] == name and x["source"] == source)
            if run["stats"] is None:
                cells += [f"failed: {run['error']}", ""]
                continue
            ms = run["stats"]["extract_ms"]
            cells += [f"{ms:.2f}", f"{ms / ext['mean'] - 1:+.0%}"]
        lines.append(f"| {name} | {ext['median']:.2f} | {ext['mean']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], out: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r["status"] == "ok"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    med = [r["stages"]["extract"]["median"] for r in ok]
    p90 = [r["stages"]["extract"]["p90"] - m for r, m in zip(ok, med)]
    a.barh([r["name"] for r in ok], med, xerr=[[0] * len(ok), p90], capsize=3, color="tab:blue")
    a.set_xlabel("extract latency, ms (median, whisker to p90)")
    a.invert_yaxis()
    groups: dict[str, list] = {}
    for r in ok:
        groups.setdefault(r["name"].rsplit("-t", 1)[0], []).append((r["threads"], r["stages"]["extract"]["median"]))
    for g, pts in groups.items():
        pts.sort()
        b.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=g)
    b.set_xlabel("threads")
    b.set_ylabel("extract latency, ms (median)")
    b.legend(fontsize=7)
    b.grid(alpha=0.3)
    fig.suptitle(f"Latency, batch 1 ({name})")
    fig.tight_layout()
    fig.savefig(out / f"latency-{name}.png", dpi=110)
    plt.close(fig)


def compare(results: list[dict], ref_path: Path) -> str:
    ref = {r["name"]: r for r in json.loads(ref_path.read_text())["results"] if r["status"] == "ok"}
    lines = [f"Against {ref_path} (ratio > 1: this device is slower):", "",
             "| configuration | extract here ms | reference ms | ratio |", "|---|---:|---:|---:|"]
    for r in results:
        if r["status"] == "ok" and r["name"] in ref:
            here, there = r["stages"]["extract"]["median"], ref[r["name"]]["stages"]["extract"]["median"]
            lines.append(f"| {r['name']} | {here:.2f} | {there:.2f} | {here / there:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1..cores)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--no-torch", dest="torch", action="store_false", help="skip PyTorch eager")
    ap.add_argument("--name", default="this-machine", help="results name (files latency-NAME.*)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--compare", type=Path, help="a reference JSON: print ratios against it")
    ap.add_argument("--no-loop", dest="loop", action="store_false", help="skip the camera-loop comparison")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(json.loads(args.worker))
        print(json.dumps(res))
        return 0
    if not args.bundle:
        ap.error("give a bundle directory")
    if args.compare and not args.compare.is_file():
        ap.error(f"--compare {args.compare}: no such results file (see benchmarks/reference/)")
    try:
        import torch  # noqa: F401

        torch_ok = args.torch
    except ImportError:
        torch_ok = False
    info = device_info()
    threads = args.threads or list(range(1, (info["cores"] or 1) + 1))
    bundle = Path(args.bundle)
    cfgs = configurations(bundle, threads, torch_ok)
    fp32_onnx = next((c["file"] for c in cfgs if c["format"] == "onnx" and c["precision"] == "fp32"), None)
    macs = onnx_macs(fp32_onnx) if fp32_onnx else None
    results = []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames.npy"
        np.save(frames, np.stack(_frames()))
        for i, cfg in enumerate(cfgs):
            print(f"[{i + 1}/{len(cfgs)}] {cfg['name']} ...", file=sys.stderr, flush=True)
            results.append(run_config(cfg, args.runs, args.warmup, frames))
        print("peak memory of the imprint commands ...", file=sys.stderr, flush=True)
        commands = command_memory(bundle, _frames(), Path(tmp))
    if args.loop:
        print("the camera loop on the 2-thread int8 configurations ...", file=sys.stderr, flush=True)
    loops = loop_runs(bundle, results) if args.loop else []
    from imprinting.runtime import RecognizerOptions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = report(results, info, macs, out, args.name) + "\n\n" + frame_ratios(results)
    text += "\n\nPeak resident memory of the commands a user runs (fresh processes, the bundle's default file). The " \
            "configurations above run batch 1 with 8 test frames and 1000 classes; `learn` and `classify` run their " \
            f"photos in batches of up to {RecognizerOptions().batch_size}, so the runtime's memory arena is larger; the " \
            "camera runs batch 1:\n\n" \
            "| command | exit | peak RSS MB |\n|---|---:|---:|\n" + \
            "\n".join(f"| {c['command']} | {c['exit']} | {c['peak_rss_mb']:.0f} |" for c in commands)
    if loops:
        text += "\n\n" + loop_agreement(results, loops) + "\n\n" + LOOP_NOTE
    text += f"\n\nRegenerate: `python benchmarks/latency.py {args.bundle} --name {args.name}" \
            f"{' --threads ' + ' '.join(map(str, args.threads)) if args.threads else ''} --runs {args.runs}" \
            f"{'' if args.torch else ' --no-torch'}{'' if args.loop else ' --no-loop'}" \
            f"{'' if args.out == 'benchmarks/results' else ' --out ' + args.out}`\n"
    for r in results:
        r.pop("embeddings", None)
    (out / f"latency-{args.name}.json").write_text(json.dumps({"device": info, "macs": macs, "results": results,
                                                               "commands": commands}, indent=1))
    (out / f"latency-{args.name}.md").write_text(text)
    plot(results, out, args.name)
    print(text)
    if args.compare:
        print()
        print(compare(results, args.compare))
    print(f"wrote {out / f'latency-{args.name}.md'}, .json and .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
