"""`imprint camera`: the live loop with keys, stdin commands, an HTTP API and JSON-lines events."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from .api import ApiServer
from . import events as ev
from .events import Event
from .bundle import load_bundle
from .loop import CameraLoop, LoopOptions
from .recognizer import Recognizer
from .cli_options import EVIDENCE_HELP, UNKNOWN_HELP, model_args, recognizer_options
from .sources import SourceOptions, open_source

STDIN_HELP = "commands: teach LABEL [N] | add [N] | undo | rename OLD NEW | remove LABEL | list | stats | save | quit"


def _capture_size(text: str, r: Recognizer) -> tuple[int, int] | None:
    """--capture-size as (width, height), or None for the camera's own."""
    if text == "default":
        return None
    if text == "model":
        return r.capture_size()
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise ValueError(f"--capture-size must be 'model', 'default' or WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(w), int(h)


def add_camera_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("camera", help="live recognition with instant teaching (camera, video, stream or folder)")
    model_args(p, store="class store file; loaded at start, saved after every change", templates=False)
    p.add_argument("--source", default="0", help="camera index, video file, rtsp/http URL, image folder or 'picamera2'")
    p.add_argument("--smoothing", type=int, default=None,
                   help="frames voted over (default 5; 1 for a folder of photos, where each frame is its own scene)")
    p.add_argument("--teach-frames", type=int, default=5, help="frames a teach command uses (default 5)")
    p.add_argument("--min-cosine", type=float, default=None, help=UNKNOWN_HELP)
    p.add_argument("--min-evidence", type=float, default=None, help=EVIDENCE_HELP)
    p.add_argument("--min-margin", type=float, default=None, help="'unknown' below this top-1/top-2 margin")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--api-port", type=int, default=8765, help="HTTP API port on --api-host (0: any free port; -1: no API)")
    p.add_argument("--api-host", default="127.0.0.1")
    p.add_argument("--show", action="store_true", help="a window with an overlay; keys: t teach, a add, u undo, s save, "
                   "q quit (needs OpenCV with windows: `make show`)")
    p.add_argument("--realtime", action="store_true", help="play a video file or folder at its frame rate, as a camera "
                   "would (default: as fast as it is recognized)")
    p.add_argument("--fps", type=float, help="the frame rate for --realtime (default: the video's own; 30 for a folder)")
    p.add_argument("--loop", action="store_true", help="start a video file or folder over at its end")
    p.add_argument("--capture-size", default="model", metavar="WxH",
                   help="frame size to ask a camera for: 'model' (default: the smallest that needs no resize, "
                   "352x256 for most bundles), 'default' (the camera's own), or e.g. 640x480")
    p.add_argument("--events", choices=["changes", "all", "none"], default="changes",
                   help="JSON lines on stdout: label changes and teaching (default), every frame, or none")
    p.add_argument("--no-stdin", action="store_true", help="do not read commands from stdin")
    p.set_defaults(func=cmd_camera)


def cmd_camera(args: argparse.Namespace) -> int:
    options = recognizer_options(args)
    smoothing = args.smoothing if args.smoothing is not None else (1 if Path(args.source).is_dir() else 5)
    loop_options = LoopOptions(smoothing=smoothing, teach_frames=args.teach_frames, max_frames=args.max_frames)
    # Checks that can be made before the camera opens: what is taught must be savable.
    folder = Path(args.store).resolve().parent
    if not folder.is_dir():
        raise ValueError(f"--store {args.store}: folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--store {args.store}: folder {folder} is not writable")
    if not -1 <= args.api_port <= 65535:
        raise ValueError(f"--api-port must be in 0-65535 (or -1 for no API), got {args.api_port}")
    if args.show:
        from ._deps import window_problem

        problem = window_problem()
        if problem:
            raise ValueError(f"--show: {problem}")
    with Recognizer(load_bundle(args.bundle), args.store, options) as r:
        source = open_source(args.source, SourceOptions(realtime=args.realtime, loop=args.loop, fps=args.fps,
                                                        capture_size=_capture_size(args.capture_size, r)))
        stop_hook: list[Callable[[], None]] = []
        emit = _printer(sys.stdout, args.events, on_closed=lambda: [f() for f in stop_hook])
        window = _Window() if args.show else None
        loop = CameraLoop(r, source, loop_options, on_event=emit, on_frame=window.draw if window else None)
        stop_hook.append(loop.stop)  # a reader that closed the pipe (`| head`) ends the run quietly
        if window:
            window.loop = loop
        api = ApiServer(loop, args.api_host, args.api_port).start() if args.api_port >= 0 else None
        if api:
            emit(ev.ApiStarted(api.url))
        if not len(r):
            print("imprint: no classes yet: teach one by typing `teach NAME 5` here, with POST /teach, or the t key "
                  "in the --show window", file=sys.stderr)
        if not args.no_stdin and sys.stdin is not None and not sys.stdin.closed:
            threading.Thread(target=read_commands, args=(sys.stdin, loop, emit), daemon=True).start()
        try:
            loop.run()
        except KeyboardInterrupt:
            loop.stop()
            emit(loop.stats())  # Ctrl-C ends like the end of the source: with the final stats
        finally:
            if api:
                api.close()
            if window:
                window.close()
    if loop.unsaved:
        print(f"imprint: error: classes taught in this run could not be saved to {args.store} (see the events)",
              file=sys.stderr)
        return 1
    return 0


def _printer(out: TextIO, mode: str, on_closed: Callable[[], object] = lambda: None) -> Callable[[Event], None]:
    """Events as JSON lines on `out`; when its reader goes away, on_closed() once and silence after."""
    lock = threading.Lock()
    closed = []

    def emit(event: Event) -> None:
        if closed or not _wanted(event, mode):
            return
        with lock:
            try:
                out.write(json.dumps(event.to_dict(), ensure_ascii=False, default=_jsonable) + "\n")
                out.flush()
            except BrokenPipeError:
                closed.append(True)
                # Later writes (and Python's own flush at exit) must not complain about the closed pipe.
                os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
                on_closed()

    return emit


def _wanted(event: Event, mode: str) -> bool:
    """"changes": all but the per-frame predictions (a label change is its own event); "all": every frame's
    prediction too, without the label-change copies of them; "none": nothing."""
    if mode == "none":
        return False
    if mode == "all":
        return not isinstance(event, ev.LabelChanged)
    return isinstance(event, ev.LabelChanged) or not isinstance(event, ev.Prediction)


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def read_commands(stream: TextIO, loop: CameraLoop, emit: Callable[[Event], None]) -> None:
    """Headless teaching: one command per line (see STDIN_HELP). Ends at EOF or `quit`."""
    for line in stream:
        try:
            words = shlex.split(line)  # teach "blue jay" 3
        except ValueError as err:
            emit(ev.Error(f"cannot parse {line.strip()!r}: {err}; {STDIN_HELP}"))
            continue
        if not words:
            continue
        cmd, rest = words[0].lower(), words[1:]
        try:
            if cmd == "teach" and rest:
                n = int(rest[-1]) if len(rest) > 1 and rest[-1].isdigit() else None
                loop.teach(" ".join(rest[:-1] if n is not None else rest), n)
            elif cmd == "add":
                loop.add_shots(int(rest[0]) if rest else None)
            elif cmd == "undo":
                loop.undo()
            elif cmd == "rename" and len(rest) == 2:
                loop.rename(rest[0], rest[1])
            elif cmd == "remove" and len(rest) == 1:
                loop.remove(rest[0])
            elif cmd == "list":
                emit(ev.ClassList([{"label": lab, "shots": n} for lab, n in loop.recognizer.classes()]))
            elif cmd == "stats":
                emit(loop.stats())
            elif cmd == "save":
                loop.save()
            elif cmd in ("quit", "exit", "q"):
                loop.stop()
                return
            else:
                emit(ev.Error(f"unknown command {line.strip()!r}; {STDIN_HELP}"))
        except ValueError as err:
            emit(ev.Error(str(err)))


class _Window:
    """An OpenCV window with the prediction, score, FPS and class list; keys drive teaching."""

    def __init__(self) -> None:
        from ._deps import require_cv2

        self.cv2 = require_cv2()
        self.loop: CameraLoop | None = None
        self.t_last = time.perf_counter()
        self.fps = 0.0

    def draw(self, frame: np.ndarray, event: ev.Prediction) -> None:
        cv2, loop = self.cv2, self.loop
        now = time.perf_counter()
        self.fps = 0.9 * self.fps + 0.1 / max(now - self.t_last, 1e-6)
        self.t_last = now
        img = frame if loop.source.color_order == "BGR" else frame[..., ::-1]
        img = np.ascontiguousarray(img)
        label = event.label or "unknown"
        cv2.putText(img, f"{label} {event.score:.2f}", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 0), 2)
        cv2.putText(img, f"{self.fps:.0f} FPS", (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1)
        for i, lab in enumerate(loop.recognizer.labels[-12:]):
            cv2.putText(img, lab, (10, 90 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        cv2.putText(img, "t teach  a add  u undo  s save  q quit", (10, img.shape[0] - 10),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 200), 1)
        try:
            cv2.imshow("imprint", img)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as err:
            from ._deps import SHOW_HINT

            raise ValueError(SHOW_HINT) from err
        try:
            if key == ord("t"):
                loop.teach(f"object {len(loop.recognizer) + 1}")  # rename later over stdin or the API
            elif key == ord("a"):
                loop.add_shots()
            elif key == ord("u"):
                loop.undo()
            elif key == ord("s"):
                loop.save()
            elif key in (ord("q"), 27):
                loop.stop()
        except ValueError:
            pass  # e.g. "add" with nothing recognized: the overlay already says unknown

    def close(self) -> None:
        try:
            self.cv2.destroyAllWindows()
        except self.cv2.error:
            pass
