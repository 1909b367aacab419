"""Running the `imprint` command line as a user does: a new process, output captured."""

from __future__ import annotations

import subprocess
import sys


def imprint(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
    """`imprint ARGS...` with this interpreter; never raises on a non-zero exit (tests read returncode)."""
    return subprocess.run([sys.executable, "-m", "imprinting.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
