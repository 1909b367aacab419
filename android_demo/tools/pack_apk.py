#!/usr/bin/env python3
"""Packs an unsigned, aligned APK: aapt2's linked resources plus a staged tree (classes.dex, lib/, assets/).

    pack_apk.py OUT.apk BASE.apk STAGE_DIR

- BASE.apk (from `aapt2 link`: AndroidManifest.xml, resources.arsc, res/) is copied first, each entry keeping
  its compression;
- every file under STAGE_DIR goes in at its relative path: native libraries (`lib/ABI/*.so`) and model files
  (`*.onnx`, `*.tflite`) stored uncompressed, everything else deflated;
- stored entries are aligned as zipalign does (4 bytes; shared libraries to 16 KiB, which is also 4 KiB
  page-aligned), so the package manager can map the libraries straight from the APK
  (`android:extractNativeLibs="false"`) on 4 KiB and 16 KiB page devices alike. The alignment goes into the
  0xd935 extra field that apksigner reads, so signing keeps it.

Only the standard library; entries get a fixed timestamp so the same inputs give the same bytes.
"""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

STORED_SUFFIXES = (".so", ".onnx", ".tflite")
LIB_ALIGN = 16384
ALIGN = 4
ALIGNMENT_EXTRA_ID = 0xD935  # Android's zip alignment extra field (apksig's ZIP_EXTRA_ALIGNMENT_ID)
DATE = (1981, 1, 1, 1, 1, 2)


def _add(zf: zipfile.ZipFile, name: str, data: bytes, stored: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=DATE)
    info.create_system = 0
    info.external_attr = 0
    if stored:
        info.compress_type = zipfile.ZIP_STORED
        align = LIB_ALIGN if name.endswith(".so") else ALIGN
        # Local header: 30 bytes + name + extra; the extra is the 0xd935 field (id, size, alignment, padding).
        start = zf.fp.tell() + 30 + len(name.encode("utf-8")) + 6
        pad = (-start) % align
        info.extra = struct.pack("<HHH", ALIGNMENT_EXTRA_ID, 2 + pad, align) + b"\0" * pad
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data, compresslevel=9 if not stored else None)


def pack(out: Path, base: Path, stage: Path) -> None:
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as zf:
        names = set()
        for e in src.infolist():
            if e.is_dir():
                continue
            _add(zf, e.filename, src.read(e), e.compress_type == zipfile.ZIP_STORED)
            names.add(e.filename)
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        # classes.dex, then assets, then the libraries (the large aligned entries last).
        files.sort(key=lambda p: (p.suffix == ".so", p.relative_to(stage).as_posix()))
        for p in files:
            name = p.relative_to(stage).as_posix()
            if name in names:
                raise SystemExit(f"pack_apk: {name} is both in {base} and under {stage}")
            _add(zf, name, p.read_bytes(), name.endswith(STORED_SUFFIXES))
    # Check what was promised: every stored entry's data starts at its alignment.
    with zipfile.ZipFile(out) as zf, out.open("rb") as f:
        for e in zf.infolist():
            if e.compress_type != zipfile.ZIP_STORED:
                continue
            f.seek(e.header_offset)
            head = f.read(30)
            n, m = struct.unpack("<HH", head[26:30])
            offset = e.header_offset + 30 + n + m
            align = LIB_ALIGN if e.filename.endswith(".so") else ALIGN
            if offset % align:
                raise SystemExit(f"pack_apk: {e.filename} starts at {offset}, not a multiple of {align}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    pack(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
