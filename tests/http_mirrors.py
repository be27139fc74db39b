"""A local HTTP mirror that misbehaves on demand (tests of the download layer).

``Mirror(routes)`` serves ``{"/path": bytes}`` on 127.0.0.1 and counts requests. Per path it can
instead: ``truncate`` (announce the real length, send half, close), ``trickle`` (announce the real
length, then one byte every ``interval`` seconds), ``endless`` (no Content-Length, junk until the
client hangs up or ``limit`` bytes), ``announce`` (a Content-Length larger than the body).
"""
from __future__ import annotations

import http.server
import threading
import time
from typing import Any


class Mirror:
    def __init__(self, routes: dict[str, bytes] | None = None) -> None:
        self.routes: dict[str, bytes] = dict(routes or {})
        self.truncate: set[str] = set()
        self.trickle: dict[str, float] = {}
        self.endless: dict[str, int] = {}
        self.announce: dict[str, int] = {}
        self.requests: list[str] = []
        self.sent: dict[str, int] = {}
        self._stop = threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a body without Content-Length ends when the connection closes

            def _write(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                mirror.sent[self.path] = mirror.sent.get(self.path, 0) + len(data)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path
                mirror.requests.append(path)
                try:
                    if path in mirror.endless:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream")
                        self.end_headers()
                        block = b"\0" * 65_536
                        while not mirror._stop.is_set() and mirror.sent.get(path, 0) < mirror.endless[path]:
                            self._write(block)
                        return
                    body = mirror.routes.get(path)
                    if body is None:
                        self.send_error(404, "not found")
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(mirror.announce.get(path, len(body))))
                    self.end_headers()
                    if path in mirror.truncate:
                        self._write(body[: len(body) // 2])
                    elif path in mirror.trickle:
                        for i in range(len(body)):
                            if mirror._stop.wait(mirror.trickle[path]):
                                return
                            self._write(body[i : i + 1])
                    else:
                        self._write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: what the size cap and the deadline do

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "Mirror":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        time.sleep(0.01)
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
