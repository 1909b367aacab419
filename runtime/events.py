"""What the camera loop reports, as typed events; `to_dict()` is the JSON-lines form the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of every loop event; `kind` is the "event" field of its JSON form."""

    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("omit_none"):
                continue
            d[f.name] = v
        return d


def _optional() -> Any:
    return field(default=None, metadata={"omit_none": True})


@dataclass(frozen=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    source: str
    classes: list[str]


@dataclass(frozen=True)
class Prediction(Event):
    """One frame's answer: label/score after smoothing over frames, raw_label the frame's own top-1 (None
    when unknown), cosine its top-1 cosine (also when unknown), top its top-k categories as dicts, error why
    the frame gave no answer."""

    kind: ClassVar[str] = "prediction"
    frame: int
    label: str | None = None
    score: float = 0.0
    raw_label: str | None = _optional()
    cosine: float | None = _optional()
    top: list[dict[str, Any]] | None = _optional()
    error: str | None = _optional()


@dataclass(frozen=True)
class LabelChanged(Prediction):
    """A prediction whose smoothed label differs from the previous frame's."""

    kind: ClassVar[str] = "label"


@dataclass(frozen=True)
class Teaching(Event):
    kind: ClassVar[str] = "teaching"
    label: str
    frames: int


@dataclass(frozen=True)
class Taught(Event):
    kind: ClassVar[str] = "taught"
    label: str
    shots: int
    frames: int
    classes: int


@dataclass(frozen=True)
class Undone(Event):
    kind: ClassVar[str] = "undone"
    label: str
    frames: int
    classes: int


@dataclass(frozen=True)
class Renamed(Event):
    kind: ClassVar[str] = "renamed"
    old: str
    new: str
    classes: int


@dataclass(frozen=True)
class Removed(Event):
    kind: ClassVar[str] = "removed"
    label: str
    classes: int


@dataclass(frozen=True)
class Merged(Event):
    kind: ClassVar[str] = "merged"
    labels: list[str]
    classes: int


@dataclass(frozen=True)
class Saved(Event):
    kind: ClassVar[str] = "saved"
    path: str
    classes: int


@dataclass(frozen=True)
class Error(Event):
    kind: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Stalled(Event):
    kind: ClassVar[str] = "stalled"
    message: str


@dataclass(frozen=True)
class Ended(Event):
    kind: ClassVar[str] = "ended"
    reason: str


@dataclass(frozen=True)
class ClassList(Event):
    kind: ClassVar[str] = "classes"
    classes: list[dict[str, Any]]


@dataclass(frozen=True)
class ApiStarted(Event):
    kind: ClassVar[str] = "api"
    url: str


@dataclass(frozen=True)
class Stats(Event):
    """Frames, FPS and mean milliseconds per stage; capture figures only when a grabber ran."""

    kind: ClassVar[str] = "stats"
    frames: int
    fps: float
    preprocess_ms: float
    extract_ms: float
    classify_ms: float
    unsaved_changes: bool
    capture_ms: float | None = _optional()
    dropped: int | None = _optional()

    @classmethod
    def of(cls, frames: int, seconds: float, stage_seconds: dict[str, float], unsaved: bool,
           grabber: Any = None) -> "Stats":
        """From a loop's totals: frames over `seconds`, each stage's seconds in total, a FrameGrabber or None."""
        n = max(frames, 1)
        return cls(frames=frames, fps=frames / seconds if seconds > 0 else 0.0,
                   **{f"{k}_ms": 1000 * v / n for k, v in stage_seconds.items()}, unsaved_changes=unsaved,
                   capture_ms=1000 * grabber.capture_seconds / max(grabber.frames_read, 1) if grabber else None,
                   dropped=grabber.frames_dropped if grabber is not None else None)

