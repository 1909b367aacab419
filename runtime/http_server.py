"""A ThreadingHTTPServer that bounds its handler threads, so a flood of slow clients cannot exhaust a device."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any

# Connections served at once; more wait in the listen backlog. Each gets a socket timeout, so idle or slow
# clients cannot hold threads for ever.
MAX_CONNECTIONS = 16
SOCKET_TIMEOUT_S = 30


class BoundedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS handler threads."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

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
