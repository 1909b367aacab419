"""Reduced-scale JPEG decoding for large photos: time and embedding agreement with the full decode (issue 19).

    python benchmarks/jpeg_decode.py BUNDLE [--out benchmarks/results/jpeg_decode.md]

Four 4000x3000 JPEGs (quality 92) made from the demo's sample photos; each decoded in full and at the
reduced scale the runtime picks for the bundle's resize size; the fp32 ONNX file embeds both. A benchmark,
not a test: nothing else should be timing on the machine.
"""

from __future__ import annotations

import argparse
import time
import sys
from pathlib import Path

import imprinting  # noqa: F401  (before numpy: the imprint command's BLAS setting)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from imprinting import simcam  # noqa: E402
from imprinting.runtime import Recognizer, RecognizerOptions  # noqa: E402
from imprinting.runtime.host import describe  # noqa: E402
from imprinting.runtime.images import decode_image  # noqa: E402

from cub_trials import write_results  # noqa: E402


def ms(fn, n: int = 5) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--out", default="benchmarks/results/jpeg_decode.md")
    args = ap.parse_args(argv)
    big = [cv2.resize(simcam.sample_photo(n), (4000, 3000), interpolation=cv2.INTER_CUBIC) for n in simcam.OBJECTS]
    jpgs = [cv2.imencode(".jpg", b[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes() for b in big]
    with Recognizer.open(args.bundle, None, RecognizerOptions(format="onnx", precision="fp32")) as r:
        side = r.manifest.preprocess.resize_size
        full_ms = np.mean([ms(lambda: decode_image(j)) for j in jpgs])
        reduced_ms = np.mean([ms(lambda: decode_image(j, min_side=side)) for j in jpgs])
        shape = decode_image(jpgs[0], min_side=side).shape
        full = np.concatenate([r.embed(decode_image(j)) for j in jpgs])
        reduced = r.embed(jpgs)  # what `imprint learn/classify` and the API do with a file or an upload
    cos = (full * reduced).sum(1)
    text = "\n".join([
        "# Reduced-scale JPEG decoding", "", f"`python benchmarks/jpeg_decode.py {args.bundle}`", "", describe(), "",
        f"4000x3000 JPEG, resize size {side}: full decode {full_ms:.1f} ms, reduced {reduced_ms:.1f} ms "
        f"({full_ms / reduced_ms:.1f}x faster, decoded at {shape[1]}x{shape[0]}); embedding cosine to the full "
        f"decode's (fp32 ONNX): {', '.join(f'{c:.4f}' for c in cos)}.", ""])
    write_results(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
