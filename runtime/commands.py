"""Commands to the camera loop, typed: queued by any thread (keys, stdin, the HTTP API) and matched by the
loop's thread between frames; and the outcome a teach request waits on."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class TeachConflict(ValueError):
    """A teach was asked while another one was still collecting frames."""


class Outcome:
    """What became of one command: wait() returns its result (a teach: the class's shot count) once the loop
    carried it out, or raises the reason it failed."""

    def __init__(self, what: str = "the command") -> None:
        self._what = what
        self._done = threading.Event()
        self._result: int | None = None
        self._error: Exception | None = None
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "claimed" (the loop is carrying it out) or "cancelled"

    def claim(self) -> bool:
        """The loop's thread, before carrying it out: False if it was cancelled (then it is dropped)."""
        with self._lock:
            if self._state == "cancelled":
                return False
            self._state = "claimed"
            return True

    def cancel(self) -> bool:
        """A waiter that gives up: True if it was cancelled before the loop claimed it (nothing happens then);
        False if the loop has it already (wait for its result)."""
        with self._lock:
            if self._state != "waiting":
                return self._state == "cancelled"
            self._state = "cancelled"
        self.finish(error=TimeoutError(f"{self._what} was cancelled before it was carried out: nothing changed"))
        return True

    @property
    def cancelled(self) -> bool:
        return self._state == "cancelled"

    def finish(self, result: int | None = None, error: Exception | None = None) -> None:
        self._result, self._error = result, _bare(error) if error is not None else None
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self._what} did not finish within {timeout:g} s (are frames arriving?)")
        if self._error is not None:
            raise _bare(self._error)  # a fresh one per waiter: nothing links it back to the frames it was raised in
        return int(self._result or 0)



def _bare(error: Exception) -> Exception:
    """The same error without traceback, cause or context. A stored exception keeps the frames it passed
    through alive (a 60 MB upload among their locals), in reference cycles that only the garbage collector
    breaks, whenever it happens to run: under a flood of uploads that held 9 bodies at once instead of 2."""
    try:
        bare = type(error)(*error.args)
    except Exception:  # noqa: BLE001 - an exception type with another constructor
        bare = ValueError(str(error))
    return bare


def _outcome() -> Outcome:
    return field(default_factory=Outcome, compare=False)


@dataclass
class Collecting:
    """A teach in progress: the frames gathered so far (uint8 (H, W, 3) in the source's colour order)."""

    label: str
    frames: int
    images: list
    outcome: Outcome
    after: float = 0.0  # only frames captured after this monotonic time show what the teach was asked for


# Commands, queued by any thread and carried out by the loop's thread between frames; each one's outcome
# tells the caller when (and whether) it was carried out.
@dataclass(frozen=True)
class Teach:
    label: str
    frames: int
    outcome: Outcome = _outcome()
    asked_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class Learn:
    """Teach `label` from one image (a path, encoded bytes, or a uint8 array in color_order)."""

    label: str
    image: object
    color_order: str = "RGB"
    outcome: Outcome = _outcome()


@dataclass(frozen=True)
class Merge:
    """Add the classes of a class-store file (its bytes) taught on another device."""

    data: bytes
    rename_conflicts: bool = False
    outcome: Outcome = _outcome()


@dataclass(frozen=True)
class Undo:
    outcome: Outcome = _outcome()


@dataclass(frozen=True)
class Rename:
    old: str
    new: str
    outcome: Outcome = _outcome()


@dataclass(frozen=True)
class Remove:
    label: str
    outcome: Outcome = _outcome()


@dataclass(frozen=True)
class Save:
    outcome: Outcome = _outcome()
