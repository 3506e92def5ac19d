"""A loopback HTTP proxy in front of the moto S3 server that answers 503 SlowDown for a while: S3 blinking.

The failure window opens at the first request that `trigger(method, path)` accepts and closes by itself after
`seconds`, or with `count`, after that many failed requests, however long they take (a loaded machine's retries
come later); every request inside it gets a 503 (counted in `failed`), every other one is forwarded to moto
(counted in `forwarded`). It serves from a thread of the test process and stops with `close()`.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

# request headers not passed on (the body is read whole before it is forwarded, so no 100-continue either)
DROPPED = {"connection", "keep-alive", "proxy-connection", "expect", "upgrade"}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FlakyS3Proxy:
    def __init__(self, target: str, trigger: Callable[[str, str], bool], seconds: float,
                 count: int | None = None) -> None:
        self.target = urlparse(target)
        self.trigger, self.seconds, self.count = trigger, seconds, count
        self.window: tuple[float, float] | None = None
        self.failed = self.forwarded = 0
        self.failed_paths: list[str] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fails(self, method: str, path: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if self.window is None and self.trigger(method, path):
                self.window = (now, now + self.seconds)
            failing = self.window is not None and (self.failed < self.count if self.count is not None
                                                   else self.window[0] <= now < self.window[1])
            if failing:
                self.failed += 1
                self.failed_paths.append(f"{method} {path}")
            else:
                self.forwarded += 1
            return failing

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                pass

            def _body(self) -> bytes:
                """The request body as it came, chunk framing and trailers included (S3 clients send
                aws-chunked uploads with a checksum trailer): forwarded byte for byte."""
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raw = b""
                while True:
                    line = self.rfile.readline()
                    raw += line
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:
                            trailer = self.rfile.readline()
                            raw += trailer
                            if trailer in (b"\r\n", b"\n", b""):
                                return raw
                    raw += self.rfile.read(size + 2)

            def _serve(self) -> None:
                body = self._body()
                if proxy._fails(self.command, self.path):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for key, value in self.headers.items():
                        if key.lower() not in DROPPED:
                            conn.putheader(key, value)
                    conn.endheaders()
                    if body:
                        conn.send(body)
                    answer = conn.getresponse()
                    payload = answer.read()
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(payload))
                    self.send_header("Content-Length", length or "0")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        return Handler
