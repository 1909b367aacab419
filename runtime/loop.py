"""The camera loop: recognize every frame, teach from the next frames on command, save after each change.

Commands (teach, add shots, undo, rename, remove, save, stop) may come from any thread (keys, stdin,
the HTTP API); they are queued and carried out between frames on the loop's thread, so a frame is
never classified against a half-changed class set. Events go to `on_event` as dicts (the CLI prints
them as JSON lines).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .images import ImageInput
from .preprocess import preprocess
from .recognizer import Recognizer
from .sources import FrameGrabber, Source
from .store import validate_label

log = logging.getLogger(__name__)
Event = dict[str, Any]


@dataclass(frozen=True)
class LoopOptions:
    """smoothing: frames voted over for the reported label; teach_frames: default N for teaching;
    stall_timeout: seconds without a frame before a stall is reported; max_frames: stop after this
    many (None: until the source ends); autosave: save the store after every change."""

    smoothing: int = 5
    teach_frames: int = 5
    stall_timeout: float = 5.0
    max_frames: int | None = None
    autosave: bool = True
    top_k: int = 3

    def __post_init__(self) -> None:
        if self.smoothing < 1 or self.teach_frames < 1 or self.top_k < 1:
            raise ValueError("smoothing, teach_frames and top_k must be >= 1")
        if self.stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be positive, got {self.stall_timeout}")


@dataclass
class _Teach:
    label: str
    frames: int
    embeddings: list
    outcome: "TeachOutcome | None" = None


class TeachConflict(ValueError):
    """A teach was asked while another one was still collecting frames."""


class TeachOutcome:
    """What became of one teach request: wait() returns the class's shot count or raises the reason."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._shots: int | None = None
        self._error: Exception | None = None

    def finish(self, shots: int | None = None, error: Exception | None = None) -> None:
        self._shots, self._error = shots, error
        self._done.set()

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the teach did not finish within {timeout:g} s (are frames arriving?)")
        if self._error is not None:
            raise self._error
        return int(self._shots or 0)


class Smoother:
    """Majority vote over the last n top-1 answers (None = unknown); the label needs more than half."""

    def __init__(self, n: int) -> None:
        self.votes: collections.deque = collections.deque(maxlen=n)

    def update(self, label: str | None, score: float) -> tuple[str | None, float]:
        self.votes.append((label, score))
        counts = collections.Counter(v[0] for v in self.votes)
        best, c = counts.most_common(1)[0]
        if best is None or c * 2 <= len(self.votes):
            return None, 0.0
        return best, float(np.mean([s for lab, s in self.votes if lab == best]))

    def reset(self) -> None:
        self.votes.clear()


class CameraLoop:
    """Runs a Recognizer over a frame source. Thread-safe command methods; run() blocks until the end."""

    def __init__(self, recognizer: Recognizer, source: Source, options: LoopOptions = LoopOptions(),
                 on_event: Callable[[Event], None] | None = None,
                 on_frame: Callable[[np.ndarray, Event], None] | None = None) -> None:
        self.r = recognizer
        self.on_frame = on_frame
        self.source = source
        self.options = options
        self.on_event = on_event or (lambda e: None)
        self._commands: queue.Queue = queue.Queue()
        self._teach: _Teach | None = None
        self._history: list[tuple[str, np.ndarray]] = []
        self._smoother = Smoother(options.smoothing)
        self._latest: Event = {"event": "prediction", "frame": -1, "label": None, "score": 0.0}
        self._latest_lock = threading.Lock()
        self._stats = {k: 0.0 for k in ("preprocess", "extract", "classify")}
        self.frames = 0
        self._started = 0.0
        self._stop = threading.Event()
        self.grabber: FrameGrabber | None = None
        # True while a change could not be saved: the classes stay in memory and every later change (and the
        # end of the run) tries again; the camera command exits non-zero if it is still true at the end.
        self.unsaved = False

    # ----- commands (any thread) ----------------------------------------------------------------
    def teach(self, label: str, frames: int | None = None) -> TeachOutcome:
        """Teach `label` from the next `frames` frames (a new class, or more shots of an existing one).

        Returns a TeachOutcome: its wait() gives the class's shot count once the frames were taken, or raises
        TeachConflict if another teach was still collecting frames (it is not cancelled), or the reason the
        frames never came (the source ended)."""
        label = validate_label(label)
        n = self.options.teach_frames if frames is None else frames
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
            raise ValueError(f"frames must be an integer in [1, 1000], got {n!r}")
        outcome = TeachOutcome()
        self._commands.put(("teach", label, n, outcome))
        return outcome

    def teach_image(self, label: str, image: ImageInput, color_order: str = "RGB") -> int:
        """Teach `label` from one image now (e.g. an upload); returns the class's shot count."""
        label = validate_label(label)
        e = self.r.embed(image, color_order)
        if not self.running:
            self._learn(label, e)
        else:
            done = threading.Event()
            self._commands.put(("learn", label, e, done))
            if not done.wait(30.0):
                raise TimeoutError("the camera loop did not take the image within 30 s")
        return self.r.classifier.count(label) if label in self.r.classifier else 0

    def add_shots(self, frames: int | None = None) -> None:
        """Teach the currently recognized class from the next frames."""
        label = self.latest().get("label")
        if label is None:
            raise ValueError("nothing is recognized right now: teach a label by name instead")
        self.teach(label, frames)

    def undo(self) -> None:
        self._commands.put(("undo",))

    def rename(self, old: str, new: str) -> None:
        self._commands.put(("rename", old, validate_label(new)))

    def remove(self, label: str) -> None:
        self._commands.put(("remove", label))

    def save(self) -> None:
        self._commands.put(("save",))

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._started > 0 and not self._stop.is_set()

    def latest(self) -> Event:
        with self._latest_lock:
            return dict(self._latest)

    def stats(self) -> Event:
        """Frames, FPS and mean milliseconds per stage (capture, preprocess, extract, classify)."""
        n = max(self.frames, 1)
        elapsed = max(time.perf_counter() - self._started, 1e-9) if self._started else 0.0
        g = self.grabber
        out: Event = {"event": "stats", "frames": self.frames, "fps": self.frames / elapsed if elapsed else 0.0}
        if g is not None:
            out["capture_ms"] = 1000 * g.capture_seconds / max(g.frames_read, 1)
            out["dropped"] = g.frames_dropped
        out.update({f"{k}_ms": 1000 * v / n for k, v in self._stats.items()})
        out["unsaved_changes"] = self.unsaved
        return out

    # ----- the loop ---------------------------------------------------------------------------
    def run(self) -> Event:
        """Process frames until the source ends, max_frames, or stop(). Returns the final stats."""
        self.grabber = FrameGrabber(self.source)
        self._started = time.perf_counter()
        self._emit({"event": "started", "source": self.source.name, "classes": list(self.r.classifier.labels)})
        try:
            while not self._stop.is_set():
                self._drain_commands()
                try:
                    frame = self.grabber.get(self.options.stall_timeout)
                except TimeoutError as err:
                    self._emit({"event": "stalled", "message": str(err)})
                    continue
                if frame is None:
                    reason = self.grabber.error or "end of stream"
                    self._emit({"event": "ended", "reason": reason})
                    break
                event = self.process(frame)
                if self.on_frame is not None:
                    self.on_frame(frame, event)
                if self.options.max_frames is not None and self.frames >= self.options.max_frames:
                    break
            self._drain_commands()
        finally:
            self.grabber.close()
            self._stop.set()
        if self._teach is not None and self._teach.outcome is not None:
            self._teach.outcome.finish(error=ValueError(
                f"the source ended after {len(self._teach.embeddings)} of {self._teach.frames} frames for "
                f"{self._teach.label!r}; nothing was taught"))
            self._teach = None
        if self.unsaved and self.options.autosave:
            self._save()  # one last try before the process ends
        final = self.stats()
        self._emit(final)
        return final

    def process(self, frame: np.ndarray) -> Event:
        """Recognize one frame (and feed a pending teach). Returns the prediction event."""
        t0 = time.perf_counter()
        x = preprocess(frame, self.r.bundle.manifest.preprocess, self.r.extractor.layout, self.source.color_order)
        t1 = time.perf_counter()
        raw = self.r.extractor.run(x)
        t2 = time.perf_counter()
        event: Event = {"event": "prediction", "frame": self.frames}
        norm = float(np.linalg.norm(raw))
        if not np.isfinite(norm) or norm < 1e-6:
            event.update(label=None, score=0.0, error="zero or NaN embedding")
        else:
            e = raw[0] / norm
            if self._teach is not None:
                self._feed_teach(e)
            if len(self.r.classifier):
                res = self.r.classifier.classify(e, self.options.top_k)[0]
                label, score = self._smoother.update(res.label, res.score)
                event.update(label=label, score=score, raw_label=res.label, top=list(zip(res.labels, res.cosines)))
            else:
                event.update(label=None, score=0.0)
        t3 = time.perf_counter()
        for k, v in (("preprocess", t1 - t0), ("extract", t2 - t1), ("classify", t3 - t2)):
            self._stats[k] += v
        self.frames += 1
        with self._latest_lock:
            changed = event.get("label") != self._latest.get("label")
            self._latest = event
        if changed:
            self._emit({**event, "event": "label"})
        return event

    # ----- internals ----------------------------------------------------------------------------
    def _feed_teach(self, e: np.ndarray) -> None:
        t = self._teach
        t.embeddings.append(e)
        if len(t.embeddings) < t.frames:
            return
        self._teach = None
        self._learn(t.label, np.stack(t.embeddings), t.outcome)

    def _learn(self, label: str, e: np.ndarray, outcome: TeachOutcome | None = None) -> None:
        self.r.classifier.learn(label, e)
        if outcome is not None:
            outcome.finish(self.r.classifier.count(label))
        self._history.append((label, e))
        del self._history[:-50]  # undo depth
        self._smoother.reset()
        self._changed({"event": "taught", "label": label, "shots": self.r.classifier.count(label), "frames": len(e)})

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            self._apply(cmd)

    def _apply(self, cmd: tuple) -> None:
        kind = cmd[0]
        try:
            if kind == "teach":
                if self._teach is not None:
                    busy = TeachConflict(f"still teaching {self._teach.label!r} ({len(self._teach.embeddings)} of "
                                         f"{self._teach.frames} frames); try again when it is done")
                    cmd[3].finish(error=busy)
                    raise busy
                self._teach = _Teach(cmd[1], cmd[2], [], cmd[3])
                self._emit({"event": "teaching", "label": cmd[1], "frames": cmd[2]})
            elif kind == "learn":
                try:
                    self._learn(cmd[1], cmd[2])
                finally:
                    cmd[3].set()
            elif kind == "undo":
                if not self._history:
                    self._emit({"event": "error", "message": "nothing to undo"})
                    return
                label, e = self._history.pop()
                self.r.classifier.forget_shots(label, e)
                self._smoother.reset()
                self._changed({"event": "undone", "label": label, "frames": len(e)})
            elif kind == "rename":
                self.r.classifier.rename(cmd[1], cmd[2])
                self._history = [(cmd[2] if lab == cmd[1] else lab, e) for lab, e in self._history]
                self._changed({"event": "renamed", "old": cmd[1], "new": cmd[2]})
            elif kind == "remove":
                self.r.classifier.remove(cmd[1])
                self._history = [(lab, e) for lab, e in self._history if lab != cmd[1]]
                self._smoother.reset()
                self._changed({"event": "removed", "label": cmd[1]})
            elif kind == "save":
                self._save(force=True)
        except ValueError as err:
            self._emit({"event": "error", "message": str(err)})

    def _changed(self, event: Event) -> None:
        event["classes"] = len(self.r.classifier)
        self._emit(event)
        if self.options.autosave:
            self._save()

    def _save(self, force: bool = False) -> None:
        if self.r.store_path is None:
            if force:
                self._emit({"event": "error", "message": "no store file to save to (start with --store FILE)"})
            return
        try:
            path: Path = self.r.save()
            self.unsaved = False
            self._emit({"event": "saved", "path": str(path), "classes": len(self.r.classifier)})
        except (OSError, ValueError) as err:
            # Keep running: the classes are still in memory and the old file is intact (atomic save).
            self.unsaved = True
            self._emit({"event": "error", "message": f"save failed ({err}); the classes are kept in memory and the "
                        "save is retried after the next change and at the end"})

    def _emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception as err:  # a broken consumer (a closed pipe) must not stop recognition
            log.warning("event consumer failed: %s", err)
