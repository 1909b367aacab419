"""Frame sources for the camera loop, and a capture thread that keeps only what inference needs.

`open_source(spec, options)` accepts a device index ("0"), a video file, an RTSP/HTTP URL, a folder of
images, "picamera2", or any Python iterable of uint8 (H, W, 3) frames. `FrameGrabber` reads a source on its
own thread: for live sources it keeps only the newest frame (stale frames are dropped), for files, folders
and iterators it hands over every frame through a small bounded queue. `SourceOptions(realtime=True)` plays a
video file or folder at its frame rate as a camera would deliver it (so it becomes live), `loop=True` starts
it over at the end. Every frame carries a monotonic time (`FrameGrabber.captured_at`), so a teach can take
only frames captured after it was asked: for a live source the time it was captured, for the others (played
as fast as they are recognized, every frame in order) the time it was handed over, so which frames a teach
takes never depends on how far the capture thread has read ahead.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ._deps import require_cv2
from .images import IMAGE_SUFFIXES, load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceOptions:
    """For video files and folders: realtime plays them at `fps` (None: the file's own rate, 30 for a folder)
    dropping frames inference cannot keep up with, as a camera would; loop starts over at the end.

    capture_size (width, height): what to ask a camera (a device index or picamera2) for, e.g.
    `preprocess.capture_size(spec)`, so frames arrive near the model's input and need no resize; a camera
    that can only give a smaller frame keeps its own size. None: the camera's default (640 x 480 for
    picamera2)."""

    realtime: bool = False
    loop: bool = False
    fps: float | None = None
    capture_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
        if self.capture_size is not None and not (
                len(self.capture_size) == 2 and all(16 <= int(v) <= 8192 for v in self.capture_size)):
            raise ValueError(f"capture_size must be (width, height) in [16, 8192], got {self.capture_size!r}")


@dataclass
class Source:
    """An opened frame source: `frames` yields uint8 (H, W, 3) in `color_order`; `live` means frames
    arrive in real time and may be dropped when inference is slower."""

    name: str
    frames: Iterator[np.ndarray]
    color_order: str
    live: bool
    close: Callable[[], None] = lambda: None
    fps: float | None = None


def open_source(spec: Any, options: SourceOptions = SourceOptions()) -> Source:
    """Open a frame source; ValueError with the reason when it cannot be opened."""
    if not isinstance(spec, (str, int, os.PathLike)):
        if isinstance(spec, Iterable):
            return Source("iterator", iter(spec), "RGB", live=False)
        raise ValueError(f"cannot use {type(spec).__name__} as a frame source")
    text = str(spec)
    if text == "picamera2":
        return _picamera2(options.capture_size or (640, 480))
    if isinstance(spec, int) or text.isdigit():
        return _capture(int(text), text, live=True, size=options.capture_size)
    if "://" in text:
        return _capture(text, text, live=True)
    path = Path(text)
    if path.is_dir():
        return _played(_folder(path, options.loop), options, 30.0)
    if path.is_file():
        src = _capture(str(path), text, live=False, loop=options.loop)
        return _played(src, options, src.fps)
    raise ValueError(f"frame source {text} does not exist (give a device index, a video file, a URL or a folder)")


def _capture(arg: int | str, name: str, live: bool, loop: bool = False, size: tuple[int, int] | None = None) -> Source:
    cv2 = require_cv2()
    cap = cv2.VideoCapture(arg)
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"cannot open video source {name}: no such camera, an unreadable file or an unreachable stream")
    if live:
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # ask the driver not to queue stale frames
    if size is not None:
        ask_frame_size(cap, size)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames() -> Iterator[np.ndarray]:
        while True:
            ok, frame = cap.read()
            if (not ok or frame is None) and loop and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame

    return Source(name, frames(), "BGR", live, cap.release, fps=fps if 0 < fps <= 1000 else None)


def ask_frame_size(cap: Any, size: tuple[int, int]) -> tuple[int, int]:
    """Ask an opened cv2.VideoCapture for frames of `size` (width, height); returns the size it delivers.

    V4L2 drivers snap a request to the nearest mode they have, which can be smaller than asked: a frame
    whose shorter side falls below the one asked for would have to be enlarged (blurrier than the model
    was made for), so then the camera goes back to the size it had."""
    cv2 = require_cv2()
    before = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    got = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if min(got) < min(size) and min(before) > 0:
        log.info("camera offers %dx%d for %dx%d; keeping %dx%d", *got, *size, *before)
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, before[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, before[1])
        return before
    log.info("camera frames: %dx%d (asked %dx%d)", *got, *size)
    return got


def _folder(path: Path, loop: bool = False) -> Source:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())  # as classify
    if not files:
        raise ValueError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), subfolders included")

    def frames() -> Iterator[np.ndarray]:
        while True:
            good = 0
            for f in files:
                try:
                    yield load_image(f)
                    good += 1
                except ValueError as err:
                    log.warning("skipping %s", err)
            if not loop or not good:
                return

    return Source(str(path), frames(), "RGB", live=False)


def _played(src: Source, options: SourceOptions, default_fps: float | None) -> Source:
    """A file source paced to a frame rate (and then live: the newest frame wins), when asked."""
    if not options.realtime:
        return src
    fps = options.fps or default_fps or 30.0
    inner = src.frames

    def paced() -> Iterator[np.ndarray]:
        start = time.monotonic()
        for i, frame in enumerate(inner):
            wait = start + i / fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield frame

    return Source(src.name, paced(), src.color_order, True, src.close, fps=fps)


def _picamera2(size: tuple[int, int]) -> Source:
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise ValueError("picamera2 is not installed (on a Raspberry Pi: sudo apt install python3-picamera2)") from None
    cam = Picamera2()
    # The ISP scales to the size asked for at no CPU cost; RGB888 is BGR byte order in memory.
    cam.configure(cam.create_video_configuration(main={"size": tuple(int(v) for v in size), "format": "RGB888"}))
    cam.start()

    def frames() -> Iterator[np.ndarray]:
        while True:
            yield cam.capture_array("main")

    return Source("picamera2", frames(), "BGR", live=True, close=cam.stop)


class FrameGrabber:
    """Reads a Source on a background thread. get() returns the next frame to process, or None at the end.

    Live sources keep one slot (the newest frame wins); others a queue of `depth` frames, so capture
    runs apart from inference without dropping frames of a file. Memory is bounded either way.
    `captured_at`: a live frame's capture time; a queued frame's hand-over time (what was read ahead is not
    yet in the stream's timeline), so for files, folders and iterators it depends only on the frame order.
    """

    def __init__(self, source: Source, depth: int = 4) -> None:
        self.source = source
        self._buf: collections.deque = collections.deque(maxlen=1 if source.live else depth)
        self._cond = threading.Condition()
        self._done = False
        self._stop = False
        self.error: str | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.capture_seconds = 0.0
        self.captured_at = 0.0  # monotonic time of the frame get() returned last (see above)
        self._thread = threading.Thread(target=self._run, name="frame-grabber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        it = self.source.frames
        try:
            while not self._stop:
                t0 = time.perf_counter()
                frame = next(it, None)
                dt = time.perf_counter() - t0
                if frame is None:
                    break
                with self._cond:
                    self.capture_seconds += dt
                    self.frames_read += 1
                    if self.source.live:
                        self.frames_dropped += len(self._buf)
                    else:
                        while len(self._buf) == self._buf.maxlen and not self._stop:
                            self._cond.wait(0.1)
                    self._buf.append((time.monotonic(), frame))
                    self._cond.notify_all()
        except Exception as err:  # a camera driver may raise anything; report it, do not kill the loop
            self.error = f"{type(err).__name__}: {err}"
            log.error("frame source %s failed: %s", self.source.name, self.error)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def get(self, timeout: float) -> np.ndarray | None:
        """The next frame; None when the source has ended. TimeoutError when none came within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._buf:
                if self._done:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no frame from {self.source.name} for {timeout:.1f} s")
                self._cond.wait(left)
            stamp, frame = self._buf.popleft()
            self.captured_at = stamp if self.source.live else time.monotonic()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        self._stop = True
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        try:
            self.source.close()
        except Exception as err:  # closing a broken device must not hide the real result
            log.warning("closing %s: %s", self.source.name, err)
