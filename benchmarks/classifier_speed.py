"""Speed and memory of the NumPy classifier: imprint and classify for K classes of D-dim embeddings.

    python benchmarks/classifier_speed.py [--classes 100 1000 10000 100000] [--dims 128 1280] [--out FILE.md]

Targets: imprinting a class <= 10 us; classifying one embedding among K = 1,000 (D = 1280) <= 1.3x the bare
NumPy matrix-vector product over the same matrix, measured in the same run (the product is memory-bound:
K x D x 4 bytes read per call); memory about K x D x 4 bytes. Run with the BLAS threads the `imprint` command
uses (imprinting sets OPENBLAS_NUM_THREADS=1 unless you set it; the header says which).
A benchmark, not a test: run it on a quiet machine, nothing else timing at the same time.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import imprinting  # noqa: F401  (before numpy: its BLAS thread setting, as in the `imprint` command)

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from imprinting.runtime import ClassSet, ImprintedClassifier  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def per_call_us(fn, repeat: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time per call, in microseconds."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - t0) / repeat * 1e6)
    return float(np.median(times))


def measure(k: int, d: int, rng: np.random.Generator) -> dict:
    protos = unit(rng, k, d)
    classes = ClassSet(d, 10.0, "bench")
    clf = ImprintedClassifier(classes)
    t0 = time.perf_counter()
    for i in range(k):
        classes.learn(f"c{i}", protos[i])  # grows from 64 rows by doubling
    imprint_new_us = (time.perf_counter() - t0) / k * 1e6
    shots = unit(rng, 256, d)
    it = iter(range(10**9))
    # Each call a new shot (a repeat would be skipped): a perturbed copy of one of 256.
    add_us = per_call_us(lambda: classes.learn(f"c{next(it) % k}", shots[next(it) % 256] + 1e-3 * (next(it) % 997)), 2000)
    q = unit(rng, 1, d)[0]
    reps = max(20, min(2000, 2_000_000 // k))
    rows = classes.arrays()[0]  # the classifier's own matrix, for the bare product
    bare_us = per_call_us(lambda: rows @ q, reps)
    classify_us = per_call_us(lambda: clf.classify(q, top_k=5), reps)
    q64 = unit(rng, 64, d)
    batch_us = per_call_us(lambda: clf.classify(q64, top_k=5), max(3, reps // 64)) / 64
    sums, inv_norms, counts, kept = classes.arrays()
    matrix_mb = sums.nbytes / 2**20
    # What the class set holds: the preallocated rows (amortized doubling) and every kept shot.
    held_mb = (classes._sums.nbytes + classes._inv_norms.nbytes + classes._counts.nbytes
               + sum(s.nbytes for per in kept for s in per)) / 2**20
    return dict(K=k, D=d, imprint_new_us=imprint_new_us, add_shot_us=add_us, bare_us=bare_us, classify_us=classify_us,
                classify_batch64_us=batch_us, matrix_mb=matrix_mb, held_mb=held_mb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 1280])
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    jobs = [(k, d) for d in args.dims for k in args.classes]
    rows = [measure(k, d, rng) for k, d in tqdm(jobs, desc="classifier sizes", unit="size")]
    lines = [
        f"Classifier speed on {platform.processor() or platform.machine()}, numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, `python benchmarks/classifier_speed.py`",
        describe(),
        "",
        "| K | D | imprint new class (us) | add one shot (us) | bare rows @ q (us) | classify 1 (us) | classify / bare | "
        "classify, per item of 64 (us) | K x D x 4 (MB) | held incl. spare capacity (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['K']:,} | {r['D']} | {r['imprint_new_us']:.1f} | {r['add_shot_us']:.1f} | {r['bare_us']:.1f} | "
                     f"{r['classify_us']:.1f} | {r['classify_us'] / r['bare_us']:.2f} | "
                     f"{r['classify_batch64_us']:.1f} | {r['matrix_mb']:.1f} | {r['held_mb']:.1f} |")
    lines += ["", "Lower-precision rows, bare products over the same K x D matrix (float16 rows @ float16 q; int8 rows @ int8 "
              "q summed in int32): NumPy has no BLAS for them, so they save memory but cost time; the classifier keeps "
              "float32.", "", "| K | D | float32 (us) | float16 (us) | int8 (us) | float16 MB | int8 MB |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for k, d in [(k, d) for d in args.dims for k in args.classes if k * d <= 13_000_000]:
        w, q = unit(rng, k, d), unit(rng, 1, d)[0]
        w16, q16 = w.astype(np.float16), q.astype(np.float16)
        w8, q8 = np.round(w * 127 / np.abs(w).max()).astype(np.int8), np.round(q * 127 / np.abs(q).max()).astype(np.int8)
        reps = max(5, min(500, 500_000 // k))
        f32, f16 = per_call_us(lambda: w @ q, reps), per_call_us(lambda: w16 @ q16, reps)
        i8 = per_call_us(lambda: np.einsum("kd,d->k", w8, q8, dtype=np.int32), reps)
        lines.append(f"| {k:,} | {d} | {f32:.1f} | {f16:.1f} | {i8:.1f} | {w16.nbytes / 2**20:.1f} | {w8.nbytes / 2**20:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
