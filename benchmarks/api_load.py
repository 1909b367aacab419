"""The camera's HTTP API under slow and heavy clients: does it stay answerable, bounded and fast?

    python benchmarks/api_load.py BUNDLE [--slow 64] [--bodies 16] [--body-mb 60] [--seconds 10]

Runs the camera loop on decoded frames from memory with the API on a free local port, then, for --seconds:
--slow connections that send one header line every 2 s (never finishing their request) and --bodies clients
that each POST a --body-mb body to /store/merge at once (not a store: refused with 400 after it was read).
Meanwhile it asks GET /stats every 0.1 s. Reports the slowest /stats answer, the loop's FPS for --seconds before
and during the load (the clients run at nice 19, as if on another machine), and the process's peak resident memory before and after. Prints JSON; loopback only.
A benchmark, not a test: run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as under `imprint camera`

import numpy as np  # noqa: E402

from imprinting.runtime import Recognizer, RecognizerOptions  # noqa: E402
from imprinting.runtime.api import ApiServer  # noqa: E402
from imprinting.runtime.host import host_info, library_versions  # noqa: E402
from imprinting.runtime.loop import CameraLoop, LoopOptions  # noqa: E402
from imprinting.runtime.sources import Source  # noqa: E402


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fps(loop: CameraLoop, seconds: float) -> float:
    f0, t0 = loop.frames, time.perf_counter()
    time.sleep(seconds)
    return (loop.frames - f0) / (time.perf_counter() - t0)


def _slow_client(host: str, port: int, stop: threading.Event) -> None:
    try:
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(b"GET /stats HTTP/1.1\r\n")
        while not stop.is_set():
            s.sendall(b"X-Slow: 1\r\n")
            stop.wait(2.0)
        s.close()
    except OSError:
        pass  # cut off by the server: what should happen


def _big_body(url: str, body: bytes, out: list) -> None:
    req = urllib.request.Request(f"{url}/store/merge", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            out.append(resp.status)
    except urllib.error.HTTPError as err:
        out.append(err.code)
    except OSError as err:
        out.append(str(err))


def _attack(host: str, port: int, slow: int, bodies: int, body_mb: int, seconds: float, results) -> None:
    """In a child process: slow clients for `seconds` and big bodies at once; puts the bodies' statuses."""
    # Real clients run on other machines; here they share the loop's cores, so they yield to it (nice 19): the
    # FPS measured during the attack is then what serving them costs the loop, not what sending costs the client.
    os.nice(19)
    stop = threading.Event()
    body = b"\0" * (body_mb << 20)  # one buffer, shared by the uploading threads
    statuses: list = []
    threads = [threading.Thread(target=_slow_client, args=(host, port, stop), daemon=True) for _ in range(slow)]
    threads += [threading.Thread(target=_big_body, args=(f"http://{host}:{port}", body, statuses), daemon=True)
                for _ in range(bodies)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(150)
    results.put(statuses)


def run(bundle: str, slow: int, bodies: int, body_mb: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)  # capture-size frames; what they show does not matter here
    frames = [rng.integers(0, 255, (256, 352, 3), np.uint8) for _ in range(30)]
    stop = threading.Event()

    def forever():
        i = 0
        while not stop.is_set():
            i += 1
            yield frames[i % len(frames)]

    with Recognizer.open(bundle, None, RecognizerOptions()) as r:
        r.learn("thing", frames[:3], color_order="BGR")
        loop = CameraLoop(r, Source("memory", forever(), "BGR", live=False), LoopOptions(smoothing=1))
        api = ApiServer(loop, port=0).start()
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        time.sleep(1.0)  # warm up
        fps_before, peak_before = _fps(loop, seconds), _peak_mb()
        # The clients run in a process of their own: their bodies and threads must not count as the server's.
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        attacker = ctx.Process(target=_attack, args=(api.host, api.port, slow, bodies, body_mb, seconds, results))
        attacker.start()
        worst, t_end, f0, t0 = 0.0, time.perf_counter() + seconds, loop.frames, time.perf_counter()
        while time.perf_counter() < t_end:
            t = time.perf_counter()
            with urllib.request.urlopen(f"{api.url}/stats", timeout=30) as resp:
                resp.read()
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.1)
        fps_during = (loop.frames - f0) / (time.perf_counter() - t0)
        statuses = results.get(timeout=300)
        attacker.join(30)
        stop.set()
        loop.stop()
        api.close()
        thread.join(30)
    return {"slow_clients": slow, "bodies": bodies, "body_mb": body_mb, "seconds": seconds,
            "stats_worst_ms": round(1000 * worst, 1), "fps_before": round(fps_before, 1),
            "fps_during": round(fps_during, 1), "fps_ratio": round(fps_during / fps_before, 3),
            "peak_rss_mb_before": round(peak_before, 1), "peak_rss_mb_after": round(_peak_mb(), 1),
            "body_statuses": sorted(map(str, statuses)), "host": host_info(), "versions": library_versions()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--slow", type=int, default=64)
    ap.add_argument("--bodies", type=int, default=16)
    ap.add_argument("--body-mb", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.bundle, args.slow, args.bodies, args.body_mb, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
