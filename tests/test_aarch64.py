"""The runtime on aarch64 under qemu-user (scripts/check_aarch64.sh): slow (10-20 minutes), run by
`make test-all` and `make check-aarch64`; the script skips, and so does this test, without root, qemu or the
registries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_runtime_and_bundle_pass_on_aarch64():
    res = subprocess.run(["bash", "scripts/check_aarch64.sh"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if "skipped" in last and res.returncode == 0:
        pytest.skip(res.stdout.strip().splitlines()[0])
    assert res.returncode == 0 and last.endswith("0 failed"), res.stdout[-4000:]
