"""How many photos `imprint learn` and `imprint classify` should run through the extractor at once.

    python benchmarks/batch_size.py BUNDLE [--sizes 1 2 4 8 16] [--photos 16] [--out FILE.md]

For each int8 file of the bundle and each batch size, a fresh process recognizes the same 640x480 JPEG
photos (after one warm-up call) and reports the best of 5 times and its peak resident memory (VmHWM). On a
CPU a large batch buys little speed but the runtime's memory arena grows with it; RecognizerOptions.batch_size
is chosen from this table. A benchmark, not a test: nothing else should be timing on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

_WORKER = """
import glob, json, sys, time
from imprinting.runtime import Recognizer, RecognizerOptions
bundle, store, photos, fmt, bs = sys.argv[1:6]
files = sorted(glob.glob(photos + "/*.jpg"))
with Recognizer.open(bundle, store, RecognizerOptions(format=fmt, precision="int8", batch_size=int(bs))) as r:
    r.recognize(files[:2])
    times = []
    for _ in range(5):
        t = time.perf_counter()
        r.recognize(files)
        times.append(time.perf_counter() - t)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"ms": 1000 * min(times), "peak_mb": hwm / 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/batch_size.md")
    args = ap.parse_args(argv)
    import cv2

    from imprinting import simcam
    from imprinting.runtime import Recognizer, load_bundle
    from imprinting.runtime.host import describe

    m = load_bundle(args.bundle).manifest
    formats = [e.format for e in m.extractors if e.precision == "int8"]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        sources = [simcam.sample_photo(n) for n in simcam.OBJECTS]
        for i in range(args.photos):
            frame = simcam.render(sources[i % len(sources)], simcam.random_view(rng), rng)
            cv2.imwrite(str(photos / f"{i:02d}.jpg"), frame[..., ::-1])
        store = Path(tmp) / "classes.npz"
        with Recognizer.open(args.bundle, store) as r:
            r.learn("one", sorted(photos.glob("*.jpg"))[:2])
            r.save()
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
        for fmt in formats:
            for bs in args.sizes:
                p = subprocess.run([sys.executable, "-c", _WORKER, args.bundle, str(store), str(photos), fmt, str(bs)],
                                   capture_output=True, text=True, env=env, timeout=600)
                res = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else None
                rows.append((fmt, bs, res))
                print(f"{fmt} batch {bs}: {res}", file=sys.stderr)
    lines = [f"# Batch size of learn and classify, `python benchmarks/batch_size.py {args.bundle}`", "", describe(), "",
             f"{args.photos} photos (640x480 JPEG) recognized in one call, int8 files, best of 5 (ms) and the process's "
             "peak resident memory (MB):", "", "| file | batch | ms for all | peak RSS MB |", "|---|---:|---:|---:|"]
    for fmt, bs, res in rows:
        lines.append(f"| int8 {fmt} | {bs} | " + (f"{res['ms']:.1f} | {res['peak_mb']:.0f} |" if res else "failed | |"))
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
