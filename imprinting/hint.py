"""How to name the `imprint` command in a hint, so that the hint works when pasted into this shell."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def imprint_command() -> str:
    """'imprint' when that is on PATH and is this environment's command; otherwise the path of this
    environment's command (`.venv/bin/imprint` after `make demo` without `. .venv/bin/activate`), relative to
    the working directory when it lies under it; `python -m imprinting.cli` when there is no script."""
    bindir = Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")
    script = next((p for p in (bindir / "imprint", bindir / "imprint.exe") if p.is_file()), None)
    found = shutil.which("imprint")
    if script is None:
        return "imprint" if found else f"{sys.executable} -m imprinting.cli"
    if found and Path(found).resolve() == script.resolve():
        return "imprint"
    rel = os.path.relpath(script, Path.cwd())
    return rel if not rel.startswith("..") else str(script)
