"""HTTP teach semantics a robot can rely on (issue 26): a teach is done or cancelled when its request answers,
a retried request id teaches once, slow clients are cut off while others are served, `GET /` lists routes."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

cv2 = pytest.importorskip("cv2")

from imprinting.runtime import Recognizer, RecognizerOptions, UnknownPolicy  # noqa: E402
from imprinting.runtime import api as api_mod  # noqa: E402
from imprinting.runtime import http_server  # noqa: E402
from imprinting.runtime.api import ApiServer  # noqa: E402
from imprinting.runtime.loop import CameraLoop, LoopOptions  # noqa: E402
from imprinting.runtime.sources import open_source  # noqa: E402
from tiny import pattern_image  # noqa: E402


def _call(url, method="GET", body=None):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Gate:
    """Frames only when the test lets them through: the loop waits on the source, never on the clock."""

    def __init__(self):
        self.allowed = threading.Semaphore(0)
        self.stop = threading.Event()

    def frames(self):
        i = 0
        while not self.stop.is_set():
            if self.allowed.acquire(timeout=0.05):
                i += 1
                yield cv2.resize(pattern_image(0, i % 7), (320, 240))


@pytest.fixture
def served(tiny_bundle, tmp_path):
    gate = Gate()
    r = Recognizer.open(tiny_bundle, tmp_path / "s.npz", RecognizerOptions(unknown=UnknownPolicy(min_cosine=0.95)))
    loop = CameraLoop(r, open_source(gate.frames()), LoopOptions(smoothing=1, stall_timeout=0.2))
    api = ApiServer(loop, port=0).start()
    thread = threading.Thread(target=loop.run)
    thread.start()
    yield r, loop, api, gate
    gate.stop.set()
    loop.stop()
    api.close()
    thread.join(30)
    r.close()


def _frames_through(loop, gate, n):
    target = loop.frames + n
    for _ in range(n):
        gate.allowed.release()
    deadline = time.monotonic() + 60
    while loop.frames < target and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loop.frames >= target


def test_a_teach_that_times_out_is_cancelled_and_never_taught_later(served, monkeypatch):
    r, loop, api, gate = served
    monkeypatch.setattr(api_mod, "TEACH_TIMEOUT_S", 0.3)
    status, body = _call(f"{api.url}/teach", "POST", json.dumps({"label": "mug", "frames": 2}).encode())
    assert status == 504 and "cancelled" in body["error"] and "nothing changed" in body["error"]
    _frames_through(loop, gate, 4)  # the frames the teach waited for arrive now
    assert "mug" not in r and r.class_set.labels == ()


def test_a_retried_request_id_teaches_once(served):
    r, loop, api, gate = served
    req = json.dumps({"label": "mug", "frames": 1, "request_id": "robot-7"}).encode()
    result = {}
    first = threading.Thread(target=lambda: result.update(first=_call(f"{api.url}/teach", "POST", req)))
    first.start()
    deadline = time.monotonic() + 60
    while loop._teach is None and time.monotonic() < deadline:  # the loop took the teach (between stalls)
        time.sleep(0.005)
    _frames_through(loop, gate, 1)
    first.join(30)
    assert result["first"] == (200, {"label": "mug", "shots": 1})
    assert _call(f"{api.url}/teach", "POST", req) == (200, {"label": "mug", "shots": 1})  # the retry
    assert r.shots("mug") == 1
    status, body = _call(f"{api.url}/teach", "POST", json.dumps({"label": "mug", "request_id": 5}).encode())
    assert status == 400 and "request_id" in body["error"]


def test_index_lists_every_route_and_an_unlabelled_image_gets_a_hint(served):
    r, loop, api, gate = served
    status, body = _call(f"{api.url}/")
    assert status == 200
    for route in ("GET /prediction", "POST /teach", "GET /store", "POST /store/merge", "POST /refine",
                  "POST /rename", "DELETE /classes/<label>"):
        assert route in body["routes"]
    ok, png = cv2.imencode(".png", pattern_image(1, 1))
    status, body = _call(f"{api.url}/teach", "POST", png.tobytes())
    assert status == 400 and "/teach?label=NAME" in body["error"]


def test_slow_clients_are_cut_off_and_others_answered_meanwhile(served, monkeypatch):
    r, loop, api, gate = served
    monkeypatch.setattr(http_server, "HEADER_DEADLINE_S", 0.5)
    slow = []
    for _ in range(20):  # each sends half a request and then nothing
        s = socket.create_connection((api.host, api.port), timeout=30)
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    assert _call(f"{api.url}/stats")[0] == 200  # answered while they hang
    for s in slow:  # the server shuts each down at its deadline: recv returns b"" instead of waiting 30 s
        assert s.recv(1024) == b""
        s.close()


def test_many_large_uploads_at_once_hold_at_most_two_bodies_in_memory(tiny_bundle):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "api_load.py"
    # Bodies over glibc's largest mmap threshold (32 MB): smaller ones are served from per-thread heap arenas
    # that keep freed memory, so RSS would measure the allocator, not how many bodies were held at once.
    res = subprocess.run([sys.executable, str(script), str(tiny_bundle), "--slow", "8", "--bodies", "6",
                          "--body-mb", "40", "--seconds", "2"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["body_statuses"] == ["400"] * 6  # each was read and refused (not a store), none dropped
    # Two body slots of 40 MB, plus slack; 6 bodies at once would be 240 MB.
    assert out["peak_rss_mb_after"] - out["peak_rss_mb_before"] < 2 * 40 + 40, out
