"""The HTTP API's server: bounded handler threads and deadlines, so slow or many clients cannot take it down.

A slow client (one header line every 10 s) is cut off when its request line and headers have not arrived
within HEADER_DEADLINE_S, and a slow body within BODY_DEADLINE_S, whatever the per-read socket timeout; so
MAX_CONNECTIONS threads are never all held by idle clients for long and `GET /stats` keeps answering. Bodies
over 1 MB are read BODY_SLOTS at a time (the others wait up to BODY_WAIT_S, then get 503), so peak memory
stays near BODY_SLOTS x the 64 MB body limit however many clients upload at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

# Connections served at once; more wait in the listen backlog. Each gets a socket timeout, so idle or slow
# clients cannot hold threads for ever.
MAX_CONNECTIONS = 128
SOCKET_TIMEOUT_S = 30
HEADER_DEADLINE_S = 10.0
BODY_DEADLINE_S = 60.0
BODY_SLOTS = 2
BODY_WAIT_S = 30.0


class DeadlineHandler(BaseHTTPRequestHandler):
    """A request handler whose connection is shut down when a deadline armed with arm() passes first."""

    _timer: threading.Timer | None = None

    def arm(self, seconds: float) -> None:
        self.disarm()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed meanwhile

    def handle_one_request(self) -> None:
        self.arm(HEADER_DEADLINE_S)  # the route handler disarms it once the headers are in
        try:
            super().handle_one_request()
        finally:
            self.disarm()


class BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS handler threads."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.body_slots = threading.BoundedSemaphore(BODY_SLOTS)
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or was cut off at a deadline is no error worth a traceback on stderr."""
        log.debug("connection from %s ended with an error", client_address, exc_info=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=SOCKET_TIMEOUT_S):
            self.shutdown_request(request)  # every slot busy for a whole timeout: drop this one
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
