"""The README's folder workflow, run as a new user would, on Caltech-101-style folders made from scikit-image's
sample photos (issue 13); prints the transcript.

    python benchmarks/folder_workflow.py BUNDLE [--work DIR]

Makes my_photos/<class>/ with 8 camera-like views (random crop, flip, colour) of one photo per class, and
other_photos/ with views of photos that are never taught. Then, through the `imprint` command:
learn --folders, eval --folders --shots 3 --plot, classify a folder (with a corrupt file in it) with the
bundle's default unknown threshold, and the share of never-taught photos called unknown.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from imprinting.export.calibration import augment, sample_photos

TAUGHT = {"astronaut": "astronaut", "cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "coins": "coins"}
NEVER = ("camera", "hubble_deep_field", "moon", "brick", "clock", "page")


def write_views(folder: Path, photo: np.ndarray, n: int, rng: np.random.Generator) -> None:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        view = augment(photo, rng, min_area=0.4)
        cv2.imwrite(str(folder / f"{folder.name}_{i}.jpg"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR))


def imprint(*args: str) -> str:
    cmd = [sys.executable, "-m", "imprinting.cli", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    shown = "imprint " + shlex.join(map(str, args))
    out = (res.stdout + res.stderr).strip()
    print(f"$ {shown}\n{out}\n")
    if res.returncode != 0:
        raise SystemExit(f"{shown} failed with exit status {res.returncode}")
    return res.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--work", help="folder for the photos and the store (default: a temporary one)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="imprint-folders-"))
    rng = np.random.default_rng(0)
    names = list(TAUGHT.values()) + list(NEVER)
    photos = dict(zip(names, sample_photos(tuple(names))))
    for label, name in TAUGHT.items():
        write_views(work / "my_photos" / label, photos[name], 8, rng)
    for name in NEVER:
        write_views(work / "other_photos" / name, photos[name], 4, rng)
    (work / "my_photos" / "cat" / "broken.jpg").write_bytes(b"not really a jpeg")
    store = work / "classes.npz"
    imprint("learn", args.bundle, "--store", store, "--folders", work / "my_photos")
    imprint("eval", args.bundle, "--folders", work / "my_photos", "--shots", "3", "--plot", work / "confusion.png")
    imprint("classify", args.bundle, "--store", store, work / "my_photos" / "cat", "--top-k", "2")
    rows = list(csv.DictReader(imprint("classify", args.bundle, "--store", store, "--csv",
                                       work / "other_photos").splitlines()))
    unknown = sum(r["label"] == "unknown" for r in rows)
    print(f"never-taught photos called unknown: {unknown} of {len(rows)} "
          f"(the rest: {sorted({r['label'] for r in rows if r['label'] != 'unknown'})}); photos and store in {work}. "
          "These photos are among the ones the export chose the threshold on: see benchmarks/results/open_set.md for photos "
          "it never saw.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
