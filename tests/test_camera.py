"""The camera loop on a generated video file, the HTTP API on 127.0.0.1, and stdin commands."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from imprinting.runtime import Recognizer, RecognizerOptions, UnknownPolicy, read_store  # noqa: E402
from imprinting.runtime.api import ApiServer  # noqa: E402
from imprinting.runtime.camera_cli import read_commands  # noqa: E402
from imprinting.runtime.loop import CameraLoop, LoopOptions  # noqa: E402
from imprinting.runtime.sources import open_source  # noqa: E402

from tiny import pattern_image, write_tiny_bundle  # noqa: E402

SEG = 15  # frames per object
NAMES = ["red", "green", "blue", "yellow"]


def frame(kind: int, i: int) -> np.ndarray:
    return cv2.resize(pattern_image(kind, i), (640, 480), interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("video") / "objects.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    assert writer.isOpened()
    for kind in range(4):
        for i in range(SEG):
            writer.write(cv2.cvtColor(frame(kind, i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def recognizer(bundle, store) -> Recognizer:
    return Recognizer.open(bundle, store, RecognizerOptions(unknown=UnknownPolicy(min_cosine=0.95)))


def test_teach_recognize_unknown_undo_save_and_reload(tiny_bundle, video, tmp_path):
    store = tmp_path / "classes.npz"
    events: list[dict] = []
    predictions: dict[int, str | None] = {}
    with recognizer(tiny_bundle, store) as r:
        loop = CameraLoop(r, open_source(video), LoopOptions(smoothing=3, teach_frames=2), on_event=lambda e: events.append(e.to_dict()))

        def on_frame(_frame, event):
            predictions[event.frame] = event.label
            i = event.frame + 1  # teach each of the first three objects at the start of its segment
            if i % SEG == 0 and i // SEG < 3:
                loop.teach(NAMES[i // SEG], 2)
            if i == 4 * SEG - 3:
                loop.undo()  # the last teach (blue) goes

        loop.on_frame = on_frame
        loop.teach("red", 2)
        stats = loop.run()
    assert stats.frames == 4 * SEG
    for kind in range(3):  # after a teach (2 frames) and smoothing (3 frames) every frame is right
        seg = [predictions[kind * SEG + i] for i in range(6, SEG)]
        assert seg == [NAMES[kind]] * len(seg), (kind, seg)
    # An object never taught is "unknown", not the nearest class.
    assert [predictions[3 * SEG + i] for i in range(4, SEG - 4)] == [None] * (SEG - 8)
    taught = [e["label"] for e in events if e["event"] == "taught"]
    assert taught == ["red", "green", "blue"]
    assert [e["label"] for e in events if e["event"] == "undone"] == ["blue"]
    assert events[-1]["event"] == "stats" and {"preprocess_ms", "extract_ms", "classify_ms", "capture_ms", "fps"} <= set(events[-1])
    # Saved after every change: the file holds what the loop ended with, and a restart loads it.
    assert read_store(store).labels == ("red", "green")
    with recognizer(tiny_bundle, store) as r:
        assert r.recognize(frame(1, 3)).label == "green"


def test_a_teach_takes_the_next_frame_however_far_the_grabber_has_read_ahead(tiny_bundle, tmp_path):
    # Every frame a different view; the grabber's queue is made full (4 frames read ahead) before each teach,
    # and the teach still takes exactly the frame that follows the one it was asked on.
    views = [frame(i % 4, i) for i in range(16)]
    produced = threading.Condition()
    count = [0]

    def frames():
        for v in views:
            with produced:
                count[0] += 1
                produced.notify_all()
            yield v

    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(frames()), LoopOptions(smoothing=1, autosave=False))

        def on_frame(_frame, event):
            if event.frame in (2, 7):
                with produced:  # the frames after this one are already read: one being processed + a full queue
                    assert produced.wait_for(lambda: count[0] >= min(event.frame + 6, len(views)), 120)
                loop.teach(f"after{event.frame}", 1)

        loop.on_frame = on_frame
        assert loop.run().frames == len(views)
        for i in (2, 7):
            top = r.recognize(views[i + 1]).top
            assert top.label == f"after{i}" and top.cosine > 0.9999, (i, top)


def test_stdin_commands(tiny_bundle, tmp_path):
    frames = [frame(k, i) for k in (0, 1) for i in range(6)]
    events: list[dict] = []
    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(frames), LoopOptions(smoothing=1), on_event=lambda e: events.append(e.to_dict()))
        read_commands(io.StringIO("teach red 2\nbogus\nteach  \nlist\n"), loop, lambda e: events.append(e.to_dict()))
        loop.run()
        read_commands(io.StringIO("rename red crimson\nremove nope\n"), loop, lambda e: events.append(e.to_dict()))
        loop._drain_commands()
        assert r.labels == ("crimson",)
    messages = [e["message"] for e in events if e["event"] == "error"]
    assert any("unknown command 'bogus'" in m for m in messages)
    assert any("no class named 'nope'" in m for m in messages)


def _call(url: str, method: str = "GET", body: bytes | None = None, ctype: str = "application/json"):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_http_api_good_and_malformed_requests(tiny_bundle, tmp_path):
    store = tmp_path / "s.npz"
    teach_queued, green_taught = threading.Event(), threading.Event()

    def frames():
        for i in range(400):
            if i == 5:
                teach_queued.wait(120)  # hold the stream until the robot's teach is queued
            if i == 200:
                green_taught.wait(120)  # the green frames come once green was taught from its photo
            yield frame(0 if i < 200 else 1, i)

    with recognizer(tiny_bundle, store) as r:
        loop = CameraLoop(r, open_source(frames()), LoopOptions(smoothing=1, teach_frames=2))
        queue_teach = loop.teach

        def teach(*args, **kwargs):
            outcome = queue_teach(*args, **kwargs)
            teach_queued.set()
            return outcome

        loop.teach = teach  # what the API calls: frames flow only after the teach was asked, however slow
        api = ApiServer(loop, port=0).start()
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            base = api.url
            assert api.host == "127.0.0.1"
            status, body = _call(base + "/teach", "POST", json.dumps({"label": "red", "frames": 2}).encode())
            assert (status, body) == (200, {"label": "red", "shots": 2})
            ok, png = cv2.imencode(".png", cv2.cvtColor(frame(1, 50), cv2.COLOR_RGB2BGR))
            status, body = _call(base + "/teach?label=green", "POST", png.tobytes(), "image/png")
            assert (status, body) == (200, {"label": "green", "shots": 1})
            green_taught.set()
            thread.join(300)
            assert not thread.is_alive()
            status, classes = _call(base + "/classes")
            assert status == 200 and {c["label"] for c in classes} == {"red", "green"}
            status, body = _call(base + "/refine", "POST", b"")  # 2 and 1 shots: it says why it declines
            assert status == 200 and body["refined"] is False and "fewer than 10 stored shots" in body["why"]
            status, pred = _call(base + "/prediction")
            assert status == 200 and pred["label"] == "green"
            assert _call(base + "/stats")[1]["frames"] == 400
            bad = [
                (_call(base + "/teach", "POST", b"{not json"), 400, "malformed JSON"),
                (_call(base + "/teach", "POST", b"[1]"), 400, "name the class"),
                (_call(base + "/teach", "POST", json.dumps({"label": ""}).encode()), 400, "must not be empty"),
                (_call(base + "/teach", "POST", json.dumps({"label": "x" * 500}).encode()), 400, "at most 100"),
                (_call(base + "/teach", "POST", json.dumps({"label": "a", "frames": "many"}).encode()), 400, "frames"),
                (_call(base + "/teach?label=z", "POST", b"not an image", "image/png"), 400, "cannot decode"),
                (_call(base + "/teach?label=z", "POST", b"", "image/png"), 400, "request body"),
                (_call(base + "/classes/nope", "DELETE"), 404, "no class named"),
                (_call(base + "/rename", "POST", json.dumps({"old": "red", "new": "green"}).encode()), 409, "exists"),
                (_call(base + "/nowhere"), 404, "no endpoint"),
                (_call(base + "/classes", "DELETE"), 405, "use GET"),
                (_call(base + "/prediction", "POST", b"{}"), 405, "use GET"),
                (_call(base + "/teach", "POST", b'{"a":' * 100000 + b"1" + b"}" * 100000), 400, "nested too deeply"),
                (_call(base + "/classes", "PUT", b"{}"), 405, "not supported"),
                (_call(base + "/classes", "FETCH", b"{}"), 501, "Unsupported method"),
            ]
            for (status, body), want_status, want_text in bad:
                assert status == want_status and want_text in body["error"], (status, body)
            assert _call(base + "/classes/red", "DELETE")[0] == 200
            loop._drain_commands()  # the loop has ended: carry out what is queued
            assert read_store(store).labels == ("green",)
        finally:
            loop.stop()
            api.close()
            thread.join(10)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        open_source(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot open video source"):
        open_source(tmp_path / "bad.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        open_source(tmp_path / "empty")


def test_a_folder_source_plays_its_subfolders_too_as_classify_reads_them(tmp_path):
    for sub, n in (("jay", 2), ("wren", 3)):
        (tmp_path / "photos" / sub).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "photos" / sub / f"{i}.png"), frame(i, i)[..., ::-1])
    assert len(list(open_source(tmp_path / "photos").frames)) == 5


def test_api_port_out_of_range_is_one_clear_error(tiny_bundle, tmp_path):
    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(iter([frame(0, 0)])), LoopOptions())
        for port in (99999, -5):
            with pytest.raises(ValueError, match="port must be in 0-65535"):
                ApiServer(loop, port=port)


def test_idle_connections_do_not_pile_up_threads(tiny_bundle, tmp_path, monkeypatch):
    import socket

    import imprinting.runtime.http_server as server_mod

    monkeypatch.setattr(server_mod, "MAX_CONNECTIONS", 4)
    serving, most, lock = set(), [0], threading.Lock()
    serve = server_mod.BoundedServer.process_request_thread

    def counted(self, request, address):  # the handler threads of this server, however slowly they start
        with lock:
            serving.add(threading.get_ident())
            most[0] = max(most[0], len(serving))
        try:
            serve(self, request, address)
        finally:
            with lock:
                serving.discard(threading.get_ident())

    def handlers() -> int:
        with lock:
            return len(serving)

    monkeypatch.setattr(server_mod.BoundedServer, "process_request_thread", counted)
    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(iter([frame(0, 0)])), LoopOptions())
        api = ApiServer(loop, port=0).start()
        try:
            idle = [socket.create_connection((api.host, api.port), timeout=5) for _ in range(20)]
            # However slowly the server gets to them: it serves 4 (every slot taken), and with no free slot it
            # cannot start a fifth handler, so the other 16 wait in the listen backlog.
            deadline = time.monotonic() + 120
            while not (handlers() == 4 and api.httpd._slots._value == 0) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert most[0] == 4  # every slot was taken at once, and never a fifth handler
            for s in idle:
                s.close()
        finally:
            api.close()


def test_a_failing_save_keeps_the_class_retries_and_is_reported(tiny_bundle, tmp_path, monkeypatch):
    events: list[dict] = []
    store = tmp_path / "s.npz"
    with recognizer(tiny_bundle, store) as r:
        real_save, calls = r.save, []

        def flaky_save(*a, **k):
            calls.append(1)
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            return real_save(*a, **k)

        monkeypatch.setattr(r, "save", flaky_save)
        loop = CameraLoop(r, open_source(frame(0, i) for i in range(20)), LoopOptions(smoothing=1, teach_frames=2),
                          on_event=lambda e: events.append(e.to_dict()))
        loop.teach("red", 2)
        final = loop.run()
        assert "red" in r.labels
    errors = [e["message"] for e in events if e["event"] == "error"]
    assert errors and "kept in memory" in errors[0]
    assert len(calls) == 2 and not loop.unsaved and final.unsaved_changes is False  # retried at the end
    assert read_store(store).labels == ("red",)


def test_camera_refuses_a_store_in_a_missing_folder_before_opening_the_camera(tiny_bundle, tmp_path, capsys):
    from imprinting.cli import main

    code = main(["camera", str(tiny_bundle), "--store", str(tmp_path / "nope" / "s.npz"), "--source", "/dev/video99",
                 "--no-stdin", "--api-port", "-1"])
    err = capsys.readouterr().err
    assert code != 0 and "does not exist; create it" in err and "video99" not in err
    code = main(["camera", str(tiny_bundle), "--store", str(tmp_path / "s.npz"), "--source", str(tmp_path),
                 "--no-stdin", "--api-port", "99999"])
    assert code != 0 and "--api-port must be in 0-65535" in capsys.readouterr().err


def test_a_second_teach_does_not_cancel_the_first_and_an_unfinished_teach_says_why(tiny_bundle, tmp_path):
    from imprinting.runtime.loop import TeachConflict

    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(frame(0, i) for i in range(6)), LoopOptions(smoothing=1))
        first = loop.teach("red", 3)
        second = loop.teach("blue", 2)
        late = loop.teach("green", 3)  # queued with the others: refused too, since red is still collecting
        loop.run()
        assert first.wait(5) == 3 and "blue" not in r.labels
        with pytest.raises(TeachConflict, match="still teaching 'red'"):
            second.wait(5)
        with pytest.raises(TeachConflict):
            late.wait(5)
        loop2 = CameraLoop(r, open_source(frame(1, i) for i in range(2)), LoopOptions(smoothing=1))
        short = loop2.teach("blue", 5)
        loop2.run()
        with pytest.raises(ValueError, match="source ended after 2 of 5 frames"):
            short.wait(5)


@pytest.fixture(scope="module", params=["onnx", "tflite"])
def backend_bundle(request, tiny_bundle, tmp_path_factory):
    """The tiny ONNX bundle, or a tiny TFLite one exported here (TFLite interpreters are not thread-safe)."""
    if request.param == "onnx":
        return tiny_bundle
    pytest.importorskip("litert_torch")
    pytest.importorskip("skimage")
    from _export_helpers import tiny_extractor

    from imprinting.export.exporters import ExportOptions, export_bundle
    from imprinting.runtime.preprocess import PreprocessSpec

    out = tmp_path_factory.mktemp("tflite-bundle")
    export_bundle(tiny_extractor(dim=16), out, ExportOptions(formats=("tflite",), precisions=("fp32",), parity_count=4, probe_count=4,
                                                            preprocess=PreprocessSpec(input_size=64, resize_size=72)))
    return out


def test_concurrent_image_teaches_while_the_loop_runs_all_land(backend_bundle, tmp_path):
    tiny_bundle = backend_bundle
    import struct
    import zlib

    store = tmp_path / "s.npz"
    stop = threading.Event()

    def frames():  # until the test stops it: the loop runs however slowly the uploads arrive
        i = 0
        while not stop.is_set():
            i += 1
            yield frame(2, i)

    with recognizer(tiny_bundle, store) as r:
        loop = CameraLoop(r, open_source(frames()), LoopOptions(smoothing=1))
        api = ApiServer(loop, port=0).start()
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            def png(k: int, n: int) -> bytes:
                img = frame(k, 7)
                img[0, 0] = (n, 0, 0)  # a different photo of the same view
                return cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()

            results: list[tuple[int, dict]] = []

            def upload(worker: int, same: bool = False) -> None:
                for i in range(3):
                    k = worker % 2
                    body = png(k, 200) if same else png(k, 10 * worker + i)
                    results.append(_call(f"{api.url}/teach?label=kind{k}", "POST", body, "image/png"))

            for same in (False, True):  # 24 different photos, then 24 uploads of one photo per class
                workers = [threading.Thread(target=upload, args=(w, same)) for w in range(8)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join(300)
                assert len(results) == 24 and all(status == 200 for status, _ in results), results
                results.clear()
                # Every different photo lands; the one photo taught 12 times at once lands once.
                assert r.shots("kind0") == 12 + same and r.shots("kind1") == 12 + same
            # Each class was taught from its own view only: its row is that view's embedding.
            for k in (0, 1):
                e = r.embed(frame(k, 7))[0]
                top = r.classify(e, top_k=1)[0].top
                assert top.label == f"kind{k}" and top.cosine > 0.999
            ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
            bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
            status, body = _call(f"{api.url}/teach?label=bomb", "POST", bomb, "image/png")
            assert status == 400 and "megapixels" in body["error"]
        finally:
            stop.set()
            loop.stop()
            api.close()
            thread.join(10)


def test_file_sources_play_in_real_time_and_loop(tmp_path):
    from imprinting.runtime.sources import FrameGrabber, SourceOptions

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), frame(i, i))
    looped = open_source(folder, SourceOptions(loop=True))
    assert not looped.live and len([f for _, f in zip(range(7), looped.frames)]) == 7  # 3 images, started over
    paced = open_source(folder, SourceOptions(realtime=True, fps=20))
    assert paced.live  # a camera-like source: the newest frame wins
    t0 = time.monotonic()
    assert len(list(paced.frames)) == 3
    assert time.monotonic() - t0 >= 2 / 20 - 0.01  # three frames at 20 FPS span at least two intervals
    g = FrameGrabber(open_source(folder, SourceOptions(realtime=True, fps=50)))
    stamps = []
    while g.get(120.0) is not None:
        stamps.append(g.captured_at)
    g.close()
    assert stamps == sorted(stamps) and len(stamps) >= 1
    with pytest.raises(ValueError, match="fps"):
        SourceOptions(fps=0)


def test_a_teach_takes_only_frames_captured_after_it_was_asked(tiny_bundle, tmp_path):
    class Clock:  # stands in for the grabber: the capture time of the frame being processed
        captured_at = 0.0

    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        loop = CameraLoop(r, open_source(iter([])), LoopOptions(teach_frames=2, autosave=False))
        loop.grabber = Clock()
        Clock.captured_at = time.monotonic() - 1.0  # frames already in the queue when the teach comes
        outcome = loop.teach("blue")
        loop._drain_commands()
        for i in range(3):
            loop.process(frame(0, i))  # red frames from before the command: not taught
        assert not outcome.done and "blue" not in r
        Clock.captured_at = time.monotonic() + 1.0
        for i in range(2):
            loop.process(frame(2, i))
        assert outcome.wait(1) == 2
        assert r.recognize(frame(2, 5)).top.label == "blue"


def test_events_all_prints_every_frame_and_changes_only_label_changes():
    from imprinting.runtime import events as ev
    from imprinting.runtime.camera_cli import _printer

    stream = [ev.Prediction(0, "a", 0.9), ev.LabelChanged(0, "a", 0.9), ev.Prediction(1, "a", 0.9),
              ev.Taught("a", 2, 2, 1)]
    printed = {}
    for mode in ("all", "changes", "none"):
        out = io.StringIO()
        emit = _printer(out, mode)
        for e in stream:
            emit(e)
        printed[mode] = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert printed == {"all": ["prediction", "prediction", "taught"], "changes": ["label", "taught"], "none": []}


def test_show_explains_how_to_get_a_window(monkeypatch):
    import imprinting.runtime._deps as deps

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    assert deps.window_problem() == deps.SHOW_HINT and "make show" in deps.SHOW_HINT
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           GTK3\n")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "DISPLAY" in deps.window_problem()
    monkeypatch.setenv("DISPLAY", ":0")
    assert deps.window_problem() is None


def test_a_running_loop_sends_its_store_and_merges_another_devices_without_losing_anything(tiny_bundle, tmp_path):
    stop = threading.Event()

    def frames():  # until the test stops it: the loop runs however slowly the requests arrive
        i = 0
        while not stop.is_set():
            i += 1
            yield frame(0, i % 50)

    # Another device taught "green" (3 shots) and "red" (2 shots) with the same model.
    other = tmp_path / "other.npz"
    with recognizer(tiny_bundle, other) as o:
        o.learn("green", [frame(1, i) for i in range(3)])
        o.learn("red", [frame(0, 100 + i) for i in range(2)])
        o.save()
    # A third one taught both labels from photos of its own.
    third = tmp_path / "third.npz"
    with recognizer(tiny_bundle, third) as t:
        t.learn("green", frame(1, 20))
        t.learn("red", frame(0, 120))
        t.save()
    with recognizer(tiny_bundle, tmp_path / "robot.npz") as r:
        loop = CameraLoop(r, open_source(frames()), LoopOptions(smoothing=1, teach_frames=2))
        api = ApiServer(loop, port=0).start()
        thread = threading.Thread(target=loop.run)
        thread.start()
        try:
            assert _call(f"{api.url}/teach", "POST", json.dumps({"label": "red", "frames": 2}).encode())[0] == 200
            status, body = _call(f"{api.url}/store/merge", "POST", other.read_bytes(), "application/octet-stream")
            assert status == 200 and body["classes"] == 2
            # Taught here while the merge ran: kept. Same label: one class with both devices' shots.
            assert dict(r.classes()) == {"red": 4, "green": 3}
            with urllib.request.urlopen(f"{api.url}/store", timeout=120) as resp:
                sent = read_store(resp.read())
            assert dict(zip(sent.labels, sent.counts.tolist())) == {"red": 4, "green": 3}
            assert read_store(tmp_path / "robot.npz").labels == sent.labels  # saved after the merge
            foreign = write_tiny_bundle(tmp_path / "foreign", fingerprint="another-model")
            with recognizer(foreign, tmp_path / "foreign.npz") as f:
                f.learn("x", frame(3, 1))
                foreign_store = f.store_bytes()
            status, body = _call(f"{api.url}/store/merge", "POST", foreign_store, "application/octet-stream")
            assert status == 400 and "made with extractor another-model" in body["error"], body
            status, body = _call(f"{api.url}/store/merge", "POST", b"not a store", "application/octet-stream")
            assert status == 400 and "truncated or corrupt" in body["error"]
            # The same store again adds nothing (its shots are held already), even with rename_conflicts.
            for query in ("", "?rename_conflicts=1"):
                status, body = _call(f"{api.url}/store/merge{query}", "POST", other.read_bytes(),
                                     "application/octet-stream")
                assert status == 200 and dict(r.classes()) == {"red": 4, "green": 3}
            status, body = _call(f"{api.url}/store/merge?rename_conflicts=1", "POST", third.read_bytes(),
                                 "application/octet-stream")
            assert status == 200 and dict(r.classes()) == {"red": 4, "green": 3, "green (2)": 1, "red (2)": 1}
        finally:
            stop.set()
            loop.stop()
            api.close()
            thread.join(10)


def test_a_folder_of_photos_is_recognized_photo_by_photo_with_its_cosine(tiny_bundle, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "photos"
    folder.mkdir()
    for kind in range(3):
        cv2.imwrite(str(folder / f"{kind}.png"), cv2.cvtColor(frame(kind, 9), cv2.COLOR_RGB2BGR))
    store = tmp_path / "s.npz"
    with recognizer(tiny_bundle, store) as r:
        for kind in range(3):
            r.learn(NAMES[kind], frame(kind, 1))
        r.save()
    res = subprocess.run([sys.executable, "-m", "imprinting.cli", "camera", str(tiny_bundle), "--store", str(store),
                          "--source", str(folder), "--events", "all", "--api-port", "-1", "--no-stdin",
                          "--min-cosine", "0.5"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    preds = [json.loads(line) for line in res.stdout.splitlines() if '"prediction"' in line]
    # No vote across different photos (smoothing 1 for a folder): each photo gets its own label at once.
    assert [p["label"] for p in preds] == NAMES[:3]
    assert all(p["cosine"] > 0.5 and p["top"][0]["label"] == p["label"] for p in preds)


def test_add_shots_while_unknown_teaches_the_nearest_class(tiny_bundle, tmp_path):
    opts = RecognizerOptions(unknown=UnknownPolicy(min_cosine=0.9999))
    with Recognizer.open(tiny_bundle, tmp_path / "s.npz", opts) as r:
        r.learn("red", frame(0, 1))
        loop = CameraLoop(r, open_source(iter([])), LoopOptions(smoothing=1, teach_frames=1, autosave=False))
        event = loop.process(frame(0, 30))  # a red view, below the (very strict) threshold
        assert event.label is None and event.cosine > 0.5 and event.top[0]["label"] == "red"
        outcome = loop.add_shots(1)
        loop._drain_commands()
        loop.process(frame(0, 31))
        assert outcome.wait(1) == 2 and r.shots("red") == 2


def test_the_camera_teaches_frames_with_their_mirrors_when_asked(tiny_bundle, tmp_path):
    opts = RecognizerOptions(mirror_shots=True, unknown=UnknownPolicy())
    with Recognizer.open(tiny_bundle, tmp_path / "m.npz", opts) as r:
        loop = CameraLoop(r, open_source(iter([])), LoopOptions(smoothing=1, teach_frames=1, autosave=False))
        outcome = loop.teach("red")
        loop._drain_commands()
        loop.process(frame(0, 3))
        assert outcome.wait(1) == 1
        # The same frame taught through the Recognizer (its mirror too): the same class row, the same cosines.
        with Recognizer.open(tiny_bundle, None, opts) as direct:
            direct.learn("red", frame(0, 3))
            probes = r.embed([frame(k, 3) for k in range(4)])
            got = [c.top.cosine for c in r.classify(probes, top_k=1)]
            want = [c.top.cosine for c in direct.classify(probes, top_k=1)]
        assert np.allclose(got, want, atol=1e-6) and got[0] < 0.99999  # the mirror is in the row


class _FakeCapture:
    """A V4L2 camera that only has the modes it is given (it snaps a request to the nearest one)."""

    def __init__(self, modes: list[tuple[int, int]], current: tuple[int, int]) -> None:
        self.modes, self.size, self.asked = modes, current, [current[0], current[1]]

    def get(self, prop: int) -> float:
        import cv2

        return float(self.size[0] if prop == cv2.CAP_PROP_FRAME_WIDTH else self.size[1])

    def set(self, prop: int, value: float) -> bool:
        import cv2

        self.asked[0 if prop == cv2.CAP_PROP_FRAME_WIDTH else 1] = int(value)
        w, h = self.asked
        self.size = min(self.modes, key=lambda m: abs(m[0] - w) + abs(m[1] - h))
        return True


def test_cameras_are_asked_for_frames_that_need_no_resize_and_never_smaller():
    from imprinting.runtime.preprocess import PreprocessSpec, capture_size, center_box
    from imprinting.runtime.sources import SourceOptions, ask_frame_size

    spec = PreprocessSpec()
    w, h = capture_size(spec)
    assert (w, h) == (352, 256) and w % 32 == 0
    assert center_box(h, w, spec)[2:] == (224, 224)  # the crop is the model input: no resize at all
    for r in (224, 288, 320, 384):
        s = PreprocessSpec(resize_size=r)
        cw, ch = capture_size(s)
        assert cw % 32 == 0 and cw >= ch * 4 / 3 and center_box(ch, cw, s)[2:] == (224, 224)
    # A driver with a close mode gives it; one whose nearest mode is smaller keeps its own size.
    cam = _FakeCapture([(640, 480), (352, 288), (320, 240)], (640, 480))
    assert ask_frame_size(cam, (352, 256)) == (352, 288) and cam.size == (352, 288)
    cam = _FakeCapture([(640, 480), (320, 240)], (640, 480))
    assert ask_frame_size(cam, (352, 256)) == (640, 480) and cam.size == (640, 480)
    with pytest.raises(ValueError, match="capture_size"):
        SourceOptions(capture_size=(0, 480))


def test_camera_capture_size_option(tiny_bundle, tmp_path):
    from imprinting.runtime.camera_cli import _capture_size

    with recognizer(tiny_bundle, tmp_path / "s.npz") as r:
        assert _capture_size("default", r) is None
        assert _capture_size("640x480", r) == (640, 480)
        w, h = _capture_size("model", r)
        assert w >= h > 0
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            _capture_size("big", r)
