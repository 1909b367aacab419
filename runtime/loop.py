"""The camera loop: recognize every frame, teach from the next frames on command, save after each change.

Commands (teach, add shots, undo, rename, remove, save, stop) may come from any thread (keys, stdin,
the HTTP API); they are queued as typed commands and carried out between frames on the loop's thread, so
a frame is never classified against a half-changed class set. Events go to `on_event` as typed events
(events.py; the CLI prints their `to_dict()` as JSON lines). All inference goes through the Recognizer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import fields
from typing import Callable

import numpy as np

from . import events as ev
from .commands import Collecting, Learn, Merge, Outcome, Remove, Rename, Save, Teach, TeachConflict, Undo
from .events import Event
from .loop_options import LoopOptions, Smoother
from .recognizer import Recognizer
from .sources import FrameGrabber, Source
from .labels import validate_label

log = logging.getLogger(__name__)


class CameraLoop:
    """Runs a Recognizer over a frame source. Thread-safe command methods; run() blocks until the end."""

    def __init__(self, recognizer: Recognizer, source: Source, options: LoopOptions = LoopOptions(),
                 on_event: Callable[[Event], None] | None = None,
                 on_frame: Callable[[np.ndarray, ev.Prediction], None] | None = None) -> None:
        self.recognizer, self.source, self.options, self.on_frame = recognizer, source, options, on_frame
        self.on_event = on_event or (lambda e: None)
        self._commands: queue.Queue = queue.Queue()
        self._teach: Collecting | None = None
        self._history: list[tuple[str, tuple[str, ...]]] = []  # (label, ids of the shots a teach added)
        self._smoother = Smoother(options.smoothing)
        self._latest = ev.Prediction(frame=-1)
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
    def teach(self, label: str, frames: int | None = None) -> Outcome:
        """Teach `label` from the next `frames` frames (a new class, or more shots of an existing one).

        Returns a Outcome: its wait() gives the class's shot count once the frames were taken, or raises
        TeachConflict if another teach was still collecting frames (it is not cancelled), or the reason the
        frames never came (the source ended)."""
        label = validate_label(label)
        n = self.options.teach_frames if frames is None else frames
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 1000:
            raise ValueError(f"frames must be an integer in [1, 1000], got {n!r}")
        return self._queue(Teach(label, n, Outcome("the teach")))

    def teach_image(self, label: str, image: object, color_order: str = "RGB") -> Outcome:
        """Queue teaching `label` from one image (an upload: a path, bytes or a uint8 array); the outcome gives
        the class's shot count. A photo the class holds already is not added twice; an unreadable one fails
        the outcome with ValueError."""
        outcome = self._queue(Learn(validate_label(label), image, color_order, Outcome("the image teach")))
        if not self.running:
            self._drain_commands()  # no loop thread (yet): carry it out here
        return outcome

    def add_shots(self, frames: int | None = None) -> Outcome:
        """Teach the class in view from the next frames: the recognized one, or while the answer is unknown
        the nearest class (teaching it that this view belongs to it too)."""
        latest = self.latest()
        label = latest.label or (latest.top[0]["label"] if latest.top else None)
        if label is None:
            raise ValueError("no class to add shots to yet: teach a label by name first")
        return self.teach(label, frames)

    def undo(self) -> Outcome:
        """Queue an undo of the latest teach (exactly the shots it added)."""
        return self._queue(Undo())

    def rename(self, old: str, new: str) -> Outcome:
        return self._queue(Rename(old, validate_label(new)))

    def remove(self, label: str) -> Outcome:
        return self._queue(Remove(label))

    def save(self) -> Outcome:
        return self._queue(Save())

    def merge(self, data: bytes, rename_conflicts: bool = False) -> Outcome:
        """Queue adding the classes of a class-store file's bytes (from another device); see Recognizer.merge."""
        return self._queue(Merge(bytes(data), rename_conflicts))

    def _queue(self, cmd: Teach | Learn | Merge | Undo | Rename | Remove | Save) -> Outcome:
        self._commands.put(cmd)
        if self._started and self._stop.is_set():
            # The loop has ended (an API or stdin may outlive it): carry the command out here.
            self._drain_commands()
        return cmd.outcome

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._started > 0 and not self._stop.is_set()

    def latest(self) -> ev.Prediction:
        with self._latest_lock:
            return self._latest

    def stats(self) -> ev.Stats:
        """Frames, FPS and mean milliseconds per stage (capture, preprocess, extract, classify)."""
        elapsed = max(time.perf_counter() - self._started, 1e-9) if self._started else 0.0
        return ev.Stats.of(self.frames, elapsed, self._stats, self.unsaved, self.grabber)

    # ----- the loop ---------------------------------------------------------------------------
    def run(self) -> ev.Stats:
        """Process frames until the source ends, max_frames, or stop(). Returns the final stats."""
        self.grabber = FrameGrabber(self.source)
        self._started = time.perf_counter()
        self._emit(ev.Started(self.source.name, list(self.recognizer.labels)))
        try:
            while not self._stop.is_set():
                self._drain_commands()
                try:
                    frame = self.grabber.get(self.options.stall_timeout)
                except TimeoutError as err:
                    self._emit(ev.Stalled(str(err)))
                    continue
                if frame is None:
                    self._emit(ev.Ended(self.grabber.error or "end of stream"))
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
        if self._teach is not None:
            t, self._teach = self._teach, None
            t.outcome.finish(error=ValueError(
                f"the source ended after {len(t.images)} of {t.frames} frames for {t.label!r}; nothing was taught"))
        if self.unsaved and self.options.autosave:
            self._save()  # one last try before the process ends
        final = self.stats()
        self._emit(final)
        return final

    def process(self, frame: np.ndarray) -> ev.Prediction:
        """Recognize one frame (and feed a pending teach). Returns the prediction event."""
        try:
            answer = self.recognizer.recognize_frame(frame, self.source.color_order, self.options.top_k)
        except ValueError as err:
            event = ev.Prediction(self.frames, error=str(err))
        else:
            if self._teach is not None and (self.grabber is None or self.grabber.captured_at >= self._teach.after):
                self._feed_teach(frame)
            res = answer.result
            if res is not None:
                label, score = self._smoother.update(res.label, res.score)
                event = ev.Prediction(self.frames, label, score, raw_label=res.label, cosine=res.cosine,
                                      top=[c.to_dict() for c in res.categories])
            else:
                event = ev.Prediction(self.frames)
            for k, v in (("preprocess", answer.preprocess_s), ("extract", answer.extract_s),
                         ("classify", answer.classify_s)):
                self._stats[k] += v
        self.frames += 1
        with self._latest_lock:
            changed = event.label != self._latest.label
            self._latest = event
        self._emit(event)
        if changed:
            self._emit(ev.LabelChanged(**{f.name: getattr(event, f.name) for f in fields(event)}))
        return event

    # ----- internals ----------------------------------------------------------------------------
    def _feed_teach(self, frame: np.ndarray) -> None:
        t = self._teach
        if t.outcome.cancelled:  # its requester gave up: nothing is taught, now or later
            self._teach = None
            return
        t.images.append(np.array(frame, copy=True))  # a grabber may reuse its buffer
        if len(t.images) < t.frames:
            return
        self._teach = None
        if not t.outcome.claim():
            return
        try:
            self._learn(t.label, t.images, self.source.color_order, t.outcome)
        except Exception as err:  # noqa: BLE001 - the teach fails, the loop goes on
            t.outcome.finish(error=err)
            self._emit(ev.Error(f"teaching {t.label!r} failed: {err}"))

    def _learn(self, label: str, images: list, color_order: str, outcome: Outcome) -> None:
        """Teach through Recognizer.learn (the one teaching path); remember what it added for undo."""
        report = self.recognizer.learn(label, images, color_order)
        if not report.added and report.failed:
            raise ValueError(report.failed[0][1])
        outcome.finish(report.shots)
        if not report.added:
            return  # a photo the class holds already: nothing changed
        self._history.append((report.label, report.added))
        del self._history[:-50]  # undo depth
        self._smoother.reset()
        self._changed(ev.Taught(report.label, report.shots, len(report.added), len(self.recognizer)))

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if not isinstance(cmd, Teach) and not cmd.outcome.claim():
                continue  # its requester gave up waiting and cancelled it: nothing changes
            try:
                self._apply(cmd)
            except Exception as err:  # noqa: BLE001 - a bad command (a hostile store, say) never ends the loop
                cmd.outcome.finish(error=err if isinstance(err, ValueError) else ValueError(f"{type(err).__name__}: {err}"))
                self._emit(ev.Error(str(err).splitlines()[0] if str(err) else type(err).__name__))
            else:
                if not cmd.outcome.done and not isinstance(cmd, Teach):
                    cmd.outcome.finish(len(self.recognizer))

    def _apply(self, cmd: object) -> None:
        r = self.recognizer
        match cmd:
            case Teach(label, frames, outcome, asked_at):
                if self._started and self._stop.is_set():
                    raise ValueError("the camera loop has ended: there are no frames to teach from")
                if self._teach is not None:
                    raise TeachConflict(f"still teaching {self._teach.label!r} ({len(self._teach.images)} of "
                                        f"{self._teach.frames} frames); try again when it is done")
                self._teach = Collecting(label, frames, [], outcome, asked_at)
                self._emit(ev.Teaching(label, frames))
            case Learn(label, image, color_order, outcome):
                self._learn(label, [image], color_order, outcome)
            case Undo():
                if not self._history:
                    raise ValueError("nothing to undo")
                label, ids = self._history.pop()
                removed = r.forget(label, ids) if label in r else 0
                self._smoother.reset()
                self._changed(ev.Undone(label, removed, len(r)))
            case Rename(old, new, _):
                r.class_set.rename(old, new)
                self._history = [(new if lab == old else lab, ids) for lab, ids in self._history]
                self._changed(ev.Renamed(old, new, len(r)))
            case Remove(label, _):
                r.class_set.remove(label)
                self._history = [h for h in self._history if h[0] != label]
                self._smoother.reset()
                self._changed(ev.Removed(label, len(r)))
            case Merge(data, rename_conflicts, _):
                labels = r.merge(data, rename_conflicts)
                self._smoother.reset()
                self._changed(ev.Merged(list(labels), len(r)))
            case Save():
                self._save(force=True)

    def _changed(self, event: Event) -> None:
        self._emit(event)
        if self.options.autosave:
            self._save()

    def _save(self, force: bool = False) -> None:
        if self.recognizer.store_path is None:
            if force:
                self._emit(ev.Error("no store file to save to (start with --store FILE)"))
            return
        try:
            path = self.recognizer.save()
            self.unsaved = False
            self._emit(ev.Saved(str(path), len(self.recognizer)))
        except (OSError, ValueError) as err:
            # Keep running: the classes are still in memory and the old file is intact (atomic save).
            self.unsaved = True
            self._emit(ev.Error(f"save failed ({err}); the classes are kept in memory and the save is retried "
                                "after the next change and at the end"))

    def _emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception as err:  # a broken consumer (a closed pipe) must not stop recognition
            log.warning("event consumer failed: %s", err)
