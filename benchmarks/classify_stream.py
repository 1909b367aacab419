"""How `imprint classify` behaves in a pipe: when the first answer arrives, how fast `| head -1` ends it, and
what Ctrl-C after a few seconds leaves.

    python benchmarks/classify_stream.py BUNDLE PHOTO_DIR [--n 1000] [--sigint-after 3]

Teaches one class from 3 photos of PHOTO_DIR into a temporary store, then runs `imprint classify ... --csv`
over the first --n photos (recursively) three times: reading every line (time to the first and the last line),
closing the pipe after the first line as `head -1` does (time until the command exits, its exit status), and
sending SIGINT after --sigint-after seconds (lines printed before it, exit status). The same command on a
folder of one photo gives the start-up cost (Python, imports, model load, self-check) that every first line
includes. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imprinting.runtime.host import host_info, library_versions
from imprinting.runtime.suffixes import IMAGE_SUFFIXES


def _imprint() -> list[str]:
    return [sys.executable, "-m", "imprinting.cli"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("photos")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--sigint-after", type=float, default=3.0)
    args = ap.parse_args(argv)
    files = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[: args.n]
    work = Path(tempfile.mkdtemp())
    try:
        folder = work / "photos"
        folder.mkdir()
        for i, f in enumerate(files):
            os.symlink(f.resolve(), folder / f"{i:05d}{f.suffix.lower()}")
        store = work / "s.npz"
        subprocess.run([*_imprint(), "learn", args.bundle, "--store", str(store), "--label", "thing",
                        *map(str, files[:3])], check=True, capture_output=True)
        one = work / "one"
        one.mkdir()
        os.symlink(files[0].resolve(), one / f"0{files[0].suffix.lower()}")
        startup = _read_all([*_imprint(), "classify", args.bundle, "--store", str(store), str(one), "--csv"])
        cmd = [*_imprint(), "classify", args.bundle, "--store", str(store), str(folder), "--csv"]
        out = {"photos": len(files), "startup_s": startup["first_line_s"], **_read_all(cmd), **_head(cmd), **_interrupt(cmd, args.sigint_after),
               "host": host_info(), "versions": library_versions()}
    finally:
        shutil.rmtree(work)
    print(json.dumps(out))
    return 0


def _read_all(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()  # the CSV header
    p.stdout.readline()
    first = time.perf_counter() - t0
    rest = sum(1 for _ in p.stdout)
    p.wait()
    return {"first_line_s": round(first, 2), "all_lines_s": round(time.perf_counter() - t0, 2), "lines": 1 + rest}


def _head(cmd: list[str]) -> dict:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.readline()
    t0 = time.perf_counter()
    p.stdout.close()  # what `head -1` does once it has its line
    rc = p.wait()
    return {"head_exit_s": round(time.perf_counter() - t0, 2), "head_exit_status": rc,
            "head_stderr": p.stderr.read().strip()[:200]}


def _interrupt(cmd: list[str], after: float) -> dict:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate()
    return {"sigint_lines": max(0, len(out.splitlines()) - 1), "sigint_exit_status": p.returncode,
            "sigint_stderr_last": err.strip().splitlines()[-1] if err.strip() else ""}


if __name__ == "__main__":
    sys.exit(main())
