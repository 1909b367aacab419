"""End-to-end speed and endurance of the camera loop, headless, from a 640x480 video file.

    python benchmarks/camera_loop.py BUNDLE [--frames 3000] [--soak 100000] [--threads N] [--source memory]
        [--format F --precision P] [--out FILE.md]

Reports the loop's own per-stage timings (capture, preprocess, extract, classify), the end-to-end FPS,
the share of preprocessing in the frame time, and, with --soak, the growth of the resident memory over
that many frames (the video is looped). Targets (issue 5, int8 bundle on this 2-core machine): >= 100 FPS,
preprocessing <= 25% of the frame time, resident memory growth <= 5 MB over 100,000 frames.
A benchmark, not a test: nothing else should be timing on the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

# As under `imprint camera` (imprinting/__init__.py), before numpy loads: one BLAS thread, so that idle
# OpenBLAS threads do not take the cores from the extractor's own threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from imprinting import simcam
from imprinting.runtime import Recognizer, RecognizerOptions, UnknownPolicy
from imprinting.runtime import events as ev
from imprinting.runtime.extractor import ExtractorOptions
from imprinting.runtime.host import describe
from imprinting.runtime.loop import CameraLoop, LoopOptions
from imprinting.runtime.sources import Source, open_source


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_video(path: Path, frames: int = 300, seed: int = 0) -> Path:
    """A 640x480 MJPG video panning over the demo photos."""
    import cv2

    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    photos = [simcam.sample_photo(n) for n in simcam.OBJECTS]
    per = frames // len(photos)
    for photo in photos:
        a, b = simcam.random_view(rng), simcam.random_view(rng)
        for j in range(per):
            writer.write(cv2.cvtColor(simcam.render(photo, simcam.pan(a, b, j / per), rng), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def looped(path: Path, total: int) -> Source:
    """A video file played over and over until `total` frames (for the soak)."""
    def frames():
        n = 0
        while n < total:
            src = open_source(path)
            for f in src.frames:
                yield f
                n += 1
                if n >= total:
                    break
            src.close()
    return Source(f"{path} (looped)", frames(), "BGR", live=False)


def in_memory(path: Path, total: int, keep: int = 60) -> Source:
    """The video's first `keep` frames decoded once up front (55 MB) and replayed from memory until `total`:
    the grabber thread then only hands frames over, so nothing but the loop competes for the cores (like the
    latency suite)."""
    src = open_source(path)
    decoded = list(itertools.islice(src.frames, keep))
    src.close()
    return Source(f"{path} (decoded, from memory)", (decoded[i % len(decoded)] for i in range(total)), src.color_order,
                  live=False)


def run(bundle: str, video: Path, frames: int, threads: int | None, teach_thread: bool, desc: str,
        fmt: str | None = None, precision: str | None = None, memory: bool = False) -> dict:
    from tqdm import tqdm

    opts = RecognizerOptions(extractor=ExtractorOptions(threads=threads), unknown=UnknownPolicy(0.4), format=fmt,
                             precision=precision)
    bar = tqdm(total=frames, desc=desc, unit="frame", mininterval=1.0)

    def count(event: ev.Event) -> None:
        if type(event) is ev.Prediction:
            bar.update(1)

    with Recognizer.open(bundle, None, opts) as r:
        source = in_memory(video, frames) if memory else looped(video, frames)
        loop = CameraLoop(r, source, LoopOptions(max_frames=frames), on_event=count)
        loop.teach("first", 3)
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append((loop.frames, rss_mb()))

        def teacher() -> None:
            # Teach and remove classes from another thread while the loop classifies.
            for i in itertools.count():
                if stop.wait(0.05):
                    return
                loop.teach(f"t{i % 50}", 1)
                if i % 7 == 6:
                    loop.undo()

        threads_ = [threading.Thread(target=sample, daemon=True)]
        if teach_thread:
            threads_.append(threading.Thread(target=teacher, daemon=True))
        for t in threads_:
            t.start()
        t0 = time.perf_counter()
        stats = loop.run()
        wall = time.perf_counter() - t0
        stop.set()
        stats = {**stats.to_dict(), "wall_s": wall, "classes": len(r), "extractor": r.extractor_file.file}
    bar.close()
    stats["rss_samples"] = samples
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--soak", type=int, default=0, help="also run this many frames and report memory growth")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--format", choices=["onnx", "tflite"], help="extractor format (default: the bundle's fastest here)")
    ap.add_argument("--precision", choices=["fp32", "int8"])
    ap.add_argument("--source", choices=["video", "memory"], default="video",
                    help="video: MJPG decoded on the grabber thread while the loop runs (a camera's load); memory: "
                         "frames decoded up front, so the loop has the cores to itself (compare with the suite)")
    ap.add_argument("--out")
    ap.add_argument("--json", action="store_true", help="print the loop's stats as one JSON line (for latency.py)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "video.avi")
        s = run(args.bundle, video, args.frames, args.threads, teach_thread=False, desc="speed", fmt=args.format,
                precision=args.precision, memory=args.source == "memory")
        if args.json:
            print(json.dumps({k: v for k, v in s.items() if k != "rss_samples"}))
            return
        frame_ms = sum(s[k] for k in ("preprocess_ms", "extract_ms", "classify_ms"))
        lines = [
            f"Camera loop, `python benchmarks/camera_loop.py {args.bundle} --frames {args.frames}"
            f"{f' --soak {args.soak}' if args.soak else ''}{f' --threads {args.threads}' if args.threads else ''}"
            f"{f' --format {args.format}' if args.format else ''}{f' --precision {args.precision}' if args.precision else ''}"
            f"{' --source memory' if args.source == 'memory' else ''}`, {s['extractor']}, 640x480 MJPG video"
            f"{' decoded up front' if args.source == 'memory' else ''}",
                    describe(),
        "",
            "| frames | FPS end to end | capture ms (own thread) | preprocess ms | extract ms | classify ms | preprocess share |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {s['frames']} | {s['fps']:.1f} | {s['capture_ms']:.2f} | {s['preprocess_ms']:.2f} | {s['extract_ms']:.2f} | "
            f"{s['classify_ms']:.3f} | {s['preprocess_ms'] / frame_ms:.0%} |",
        ]
        if args.soak:
            k = run(args.bundle, video, args.soak, args.threads, teach_thread=True, desc="soak", fmt=args.format,
                    precision=args.precision)
            rss = k["rss_samples"]
            warm = [m for f, m in rss if f >= min(1000, args.soak // 10)]
            growth = (warm[-1] - warm[0]) if len(warm) > 1 else float("nan")
            lines += ["", f"Soak: {k['frames']} frames in {k['wall_s']:.0f} s ({k['fps']:.1f} FPS) while another thread "
                      f"taught and undid classes ({k['classes']} classes at the end); resident memory "
                      f"{warm[0]:.1f} -> {warm[-1]:.1f} MiB after warm-up (growth {growth:+.1f} MiB)."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
