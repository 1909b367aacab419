"""Pieces of the HTTP API that are not routes: typed errors and bodies, JSON safety, waiting on outcomes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .commands import Outcome, TeachConflict

COMMAND_TIMEOUT_S = 15.0  # changes wait at most a stall (5 s) and more for the loop to take them


@dataclass(frozen=True)
class Binary:
    """A response body that is not JSON."""

    data: bytes
    content_type: str


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def finite(x: Any) -> Any:
    """x with every NaN or infinity replaced by None: JSON has no such numbers, and a client's parser would
    reject the whole answer."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def wait_for(outcome: Outcome, timeout: float = COMMAND_TIMEOUT_S) -> int:
    """The outcome's result; a teach conflict is 409. One that did not finish in time is cancelled (504: nothing
    changed, now or later) unless the loop is carrying it out already, then its result is awaited."""
    try:
        try:
            return outcome.wait(timeout)
        except TimeoutError as err:
            if outcome.cancel():
                raise TimeoutError(f"{err}; it was cancelled: nothing changed, now or later") from None
            return outcome.wait(timeout)
    except TeachConflict as err:
        raise ApiError(HTTPStatus.CONFLICT, str(err)) from None
    except TimeoutError as err:
        raise ApiError(HTTPStatus.GATEWAY_TIMEOUT, str(err)) from None
