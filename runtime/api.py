"""A small HTTP API for robots, on the standard library's threading HTTP server (no extra dependency).

Bound to 127.0.0.1 by default. JSON in, JSON out; errors are 4xx with {"error": "..."}.

    GET    /                            every route
    GET    /prediction                  latest smoothed prediction
    GET    /classes                     [{"label": ..., "shots": ...}]
    GET    /stats                       frames, FPS, per-stage milliseconds
    POST   /teach   {"label": L, "frames": N, "request_id": ID}   teach L from the next N frames; answers when
                                                        they were taken (200, shots), 409 while another teach
                                                        runs, 504 when cancelled (frames did not come in 60 s:
                                                        nothing is taught, now or later); a retry with the same
                                                        request_id waits on the first instead of teaching twice
    POST   /teach?label=L[&request_id=ID]  (body: an encoded image)   teach L from the uploaded image (200)
    GET    /store                                       the class store file (.npz), to merge on another device
    POST   /store/merge[?rename_conflicts=1]  (body: a class store file)   add its classes (200 when done)
    POST   /undo, /save                                 (200 when done)
    POST   /refine                                      refine on the stored shots if a held-out check says
                                                        it helps (refine.py; recognition goes on meanwhile),
                                                        then save: {"refined": bool, "why": ..., "seconds": s}
    POST   /rename  {"old": A, "new": B}                (200 when done; 409 if B exists)
    DELETE /classes/<label>                             (200 when done)

Changes are carried out by the loop's thread between frames; each answers once it was done, so a GET that
follows sees it, or, when the loop did not take it in time, is cancelled (504) and never carried out. Slow
clients are cut off at deadlines and large bodies are read two at a time (http_server.py).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .api_util import ApiError, Binary, finite, wait_for
from .commands import Outcome
from .http_server import BODY_DEADLINE_S, BODY_WAIT_S, SOCKET_TIMEOUT_S, BoundedServer, DeadlineHandler
from .loop import CameraLoop
from .refine import RefineOptions

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024 * 1024  # an image upload or a class store with its shots
TEACH_TIMEOUT_S = 60.0  # a frames teach answers when its frames were taken, or is cancelled





class ApiServer:
    """Serves a CameraLoop over HTTP on a background thread. port=0 picks a free port."""

    def __init__(self, loop: CameraLoop, host: str = "127.0.0.1", port: int = 8765) -> None:
        handler = type("Handler", (_Handler,), {"loop": loop, "requests": {}, "requests_lock": threading.Lock()})
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"API port must be in 0-65535, got {port}")
        try:
            self.httpd = BoundedServer((host, port), handler)
        except (OSError, OverflowError) as err:
            raise ValueError(f"cannot listen on {host}:{port}: {getattr(err, 'strerror', None) or err}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ApiServer":
        self._thread.start()
        log.info("HTTP API on %s", self.url)
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(DeadlineHandler):
    loop: CameraLoop
    _body_slot = False  # whether this request holds one of the server's large-body slots
    server_version = "imprinting"
    timeout = SOCKET_TIMEOUT_S

    def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"method {self.command} is not supported; use GET, POST or DELETE"})

    do_HEAD = do_PUT = do_PATCH = do_OPTIONS = _not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (a malformed request line, an unknown method) as JSON too."""
        self.close_connection = True
        self._send(code, {"error": message or HTTPStatus(code).phrase})

    def _handle(self, method: str) -> None:
        self.disarm()  # the request line and headers are in
        try:
            status, body = self._route(method, urlsplit(self.path))
        except ApiError as err:
            status, body = err.status, {"error": str(err)}
        except ValueError as err:
            status, body = HTTPStatus.BAD_REQUEST, {"error": str(err)}
        except TimeoutError as err:
            status, body = HTTPStatus.GATEWAY_TIMEOUT, {"error": str(err)}
        except Exception as err:  # noqa: BLE001 - a bug must answer 500, not drop the connection
            log.exception("API %s %s failed", method, self.path)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(err).__name__}: {err}"}
        finally:
            if self._body_slot:
                self._body_slot = False
                self.server.body_slots.release()
        self._send(status, body)

    def _send(self, status: int, body: Any) -> None:
        if isinstance(body, Binary):
            data, kind = body.data, body.content_type
        else:
            data, kind = json.dumps(finite(body), ensure_ascii=False, allow_nan=False).encode("utf-8"), \
                "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, url: Any) -> tuple[int, Any]:
        path = url.path.rstrip("/") or "/"
        routes = _ROUTES.get(path)
        if routes is None and path.startswith("/classes/"):
            routes, path = {"DELETE": _Handler._delete_class}, unquote(path[len("/classes/"):])
        if routes is None:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no endpoint {path}; see GET /prediction, /classes, /stats")
        handler = routes.get(method)
        if handler is None:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"use {' or '.join(routes)} for {self.path}")
        return HTTPStatus.OK, handler(self, url, path)

    # ----- routes (see _ROUTES) -----------------------------------------------------------------
    def _prediction(self, url: Any, path: str) -> Any:
        return self.loop.latest().to_dict()

    def _stats(self, url: Any, path: str) -> Any:
        return self.loop.stats().to_dict()

    def _classes(self, url: Any, path: str) -> Any:
        return [{"label": lab, "shots": n} for lab, n in self.loop.recognizer.classes()]

    def _teach(self, url: Any, path: str) -> Any:
        query = parse_qs(url.query)
        if "label" in query:
            image = self._body(json_body=False)
            if not image:
                raise ApiError(HTTPStatus.BAD_REQUEST, "send the image as the request body")
            if self.headers.get_content_type().startswith("multipart/"):
                raise ApiError(HTTPStatus.BAD_REQUEST, "send the image's bytes as the body (curl --data-binary "
                                "@photo.jpg), not as a form upload (curl -F)")
            outcome = self._once(query.get("request_id", [None])[0], lambda: self.loop.teach_image(query["label"][0], image))
            return {"label": query["label"][0].strip(), "shots": wait_for(outcome)}
        data = self._body(json_body=False)
        if data[:1] not in (b"{", b" ", b"\n", b"\r", b"\t", b""):
            raise ApiError(HTTPStatus.BAD_REQUEST, "to teach from an image, name the class: POST "
                            "/teach?label=NAME with the image as the body; to teach from the camera, send "
                            'JSON {"label": NAME, "frames": N}')
        req = self._json(data)
        label = self._field(req, "label")
        outcome = self._once(req.get("request_id"), lambda: self.loop.teach(label, req.get("frames")))
        return {"label": label.strip(), "shots": wait_for(outcome, TEACH_TIMEOUT_S)}

    def _once(self, request_id: Any, start: Any) -> Outcome:
        """The outcome of the request with this id: a retry waits on the first one's instead of teaching again."""
        if request_id is None:
            return start()
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 100:
            raise ApiError(HTTPStatus.BAD_REQUEST, "request_id must be a string of 1-100 characters")
        with self.requests_lock:
            outcome = self.requests.get(request_id)
            if outcome is None or outcome.cancelled:
                outcome = self.requests[request_id] = start()
                while len(self.requests) > 1000:  # the oldest ids are forgotten
                    self.requests.pop(next(iter(self.requests)))
        return outcome

    def _index(self, url: Any, path: str) -> Any:
        routes = [f"{m} {p}" for p, methods in _ROUTES.items() for m in methods if p != "/"]
        return {"routes": routes + ["DELETE /classes/<label>"], "docs": "see runtime/api.py or the README"}

    def _store(self, url: Any, path: str) -> Any:
        return Binary(self.loop.recognizer.store_bytes(), "application/octet-stream")

    def _merge(self, url: Any, path: str) -> Any:
        data = self._body(json_body=False)
        if not data:
            raise ApiError(HTTPStatus.BAD_REQUEST, "send a class store file (.npz) as the request body")
        flag = parse_qs(url.query).get("rename_conflicts", ["0"])[0].lower() in ("1", "true", "yes")
        classes = wait_for(self.loop.merge(data, flag))
        return {"status": "done", "classes": classes}

    def _undo(self, url: Any, path: str) -> Any:
        return {"status": "done", "classes": wait_for(self.loop.undo())}

    def _refine(self, url: Any, path: str) -> Any:
        # Trains on this request's thread (one core: the loop keeps the others), outside the classifier's lock:
        # frames keep being recognized.
        plan = self.loop.recognizer.refine(RefineOptions(threads=1))
        if plan.refined:
            wait_for(self.loop.save())
        return {"refined": plan.refined, "why": plan.why, "seconds": round(plan.seconds, 3)}

    def _save(self, url: Any, path: str) -> Any:
        return {"status": "done", "classes": wait_for(self.loop.save())}

    def _rename(self, url: Any, path: str) -> Any:
        req = self._body()
        old, new = self._field(req, "old"), self._field(req, "new")
        self._known(old)
        if new.strip() in self.loop.recognizer and new.strip() != old:
            raise ApiError(HTTPStatus.CONFLICT, f"class {new.strip()!r} exists already")
        return {"status": "done", "classes": wait_for(self.loop.rename(old, new))}

    def _delete_class(self, url: Any, label: str) -> Any:
        self._known(label)
        return {"status": "done", "classes": wait_for(self.loop.remove(label))}

    def _known(self, label: str) -> None:
        if label not in self.loop.recognizer:
            raise ApiError(HTTPStatus.NOT_FOUND, f"no class named {label!r}")

    def _body(self, json_body: bool = True) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY // 2**20} MB")
        data = self._read(length)
        return self._json(data) if json_body else data

    def _read(self, length: int) -> bytes:
        """The body, under a deadline (a client sending a byte a minute is cut off). A large body holds one of
        BODY_SLOTS until its request is answered (_handle releases it), so peak memory stays bounded."""
        if length <= 0:
            return b""
        if length > 1 << 20:
            if not self.server.body_slots.acquire(timeout=BODY_WAIT_S):
                raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "other large uploads are in progress; retry shortly")
            self._body_slot = True
        self.arm(BODY_DEADLINE_S)
        try:
            return self.rfile.read(length)
        finally:
            self.disarm()

    def _json(self, data: bytes) -> Any:
        try:
            req = json.loads(data.decode("utf-8") or "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"malformed JSON: {err}") from None
        except RecursionError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "malformed JSON: nested too deeply") from None
        if not isinstance(req, dict):
            raise ApiError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
        return req

    @staticmethod
    def _field(req: dict, name: str) -> str:
        value = req.get(name)
        if not isinstance(value, str):
            raise ApiError(HTTPStatus.BAD_REQUEST, f"field {name!r} must be a string")
        return value


# path -> method -> handler; DELETE /classes/<label> is matched by prefix in _route.
_ROUTES: dict[str, dict[str, Any]] = {
    "/": {"GET": _Handler._index},
    "/prediction": {"GET": _Handler._prediction},
    "/stats": {"GET": _Handler._stats},
    "/classes": {"GET": _Handler._classes},
    "/teach": {"POST": _Handler._teach},
    "/undo": {"POST": _Handler._undo},
    "/save": {"POST": _Handler._save},
    "/refine": {"POST": _Handler._refine},
    "/rename": {"POST": _Handler._rename},
    "/store": {"GET": _Handler._store},
    "/store/merge": {"POST": _Handler._merge},
}
