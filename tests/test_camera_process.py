"""`imprint camera` as a process in a pipe: a reader that goes away ends it quietly, Ctrl-C ends it with stats.

No sleeps: each test waits for the first event line, so it holds however slow or busy the machine is.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

cv2 = pytest.importorskip("cv2")

from tiny import pattern_image  # noqa: E402


def _camera(tiny_bundle, tmp_path) -> subprocess.Popen:
    folder = tmp_path / "photos"
    folder.mkdir()
    for kind in range(3):
        rgb = pattern_image(kind, 9)
        cv2.imwrite(str(folder / f"{kind}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    # --loop: the source never ends by itself, so only the pipe or the signal can end the run.
    return subprocess.Popen([sys.executable, "-m", "imprinting.cli", "camera", str(tiny_bundle),
                             "--store", str(tmp_path / "s.npz"), "--source", str(folder), "--loop",
                             "--events", "all", "--api-port", "-1", "--no-stdin"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _first_prediction(proc: subprocess.Popen) -> dict:
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "prediction":
            return event
    raise AssertionError(f"no prediction before the end: {proc.stderr.read()}")


def test_a_closed_event_pipe_ends_the_camera_with_status_0_and_nothing_on_stderr(tiny_bundle, tmp_path):
    proc = _camera(tiny_bundle, tmp_path)
    _first_prediction(proc)
    proc.stdout.close()  # what `| head -1` does once it has its line
    try:
        status = proc.wait(120)  # a camera that ignores the closed pipe runs on forever: fail, do not hang
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert status == 0, err
    # The empty store's one-line hint is the only thing the camera itself may say.
    assert [line for line in err.splitlines() if not line.startswith("imprint: no classes yet")] == [], err


def test_ctrl_c_ends_the_camera_with_its_final_stats_event(tiny_bundle, tmp_path):
    proc = _camera(tiny_bundle, tmp_path)
    _first_prediction(proc)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "stats" and last["frames"] >= 1, out[-500:]
    assert "Traceback" not in err, err
