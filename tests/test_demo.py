"""The README's main job on a machine without a camera: export the default bundle, teach each object of the
simulated camera from one frame, recognize the frames that follow."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("skimage")


def test_imprint_demo_teaches_from_one_frame_and_recognizes(tmp_path):
    bundle = tmp_path / "bundles" / "lite0"
    res = subprocess.run([sys.executable, "-m", "imprinting.cli", "demo", "--simulate", "--bundle", str(bundle),
                          "--threads", "1"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (bundle / "manifest.json").is_file()
    out = res.stdout
    assert out.count("taught '") == 4
    acc = float(out.split("recognition accuracy ")[1].split("%")[0])
    rejected = float(out.split("empty scene reported unknown in ")[1].split("%")[0])
    assert acc >= 90.0 and rejected >= 90.0, out
    assert " FPS end to end" in out
    # `make demo` runs .venv/bin/imprint without activating .venv: the export's hint names a command that runs
    # from where it was printed, and the export says how long it took rather than promising a figure.
    hint = next(line for line in out.splitlines() if line.startswith("next: "))
    program = shlex.split(hint[len("next: "):])[0]
    assert shutil.which(program) or (tmp_path / program).is_file(), hint
    assert "exported " in res.stderr and "about a minute" not in res.stderr
