"""A tiny HTTP proxy in front of the real FHIR test server: the one seam where faults are faked.

Everything is forwarded to the real server unchanged, except what a test asks for: answer the
next N matching requests with 503 (without forwarding), or forward a transaction, let it land,
then hold the answer back (so a test can kill the worker between "written" and "acknowledged").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx

from tests.fhir_server import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


@dataclass
class _Fault:
    method: str
    remaining: int
    status: int
    retry_after: str | None


@dataclass
class _Hold:
    landed: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FhirProxy:
    """Forwards ``http://127.0.0.1:<port>/<path>`` to the upstream server's same path."""

    def __init__(self, upstream_base: str) -> None:
        upstream = urlsplit(upstream_base)
        self.upstream_origin = f"{upstream.scheme}://{upstream.netloc}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}{upstream.path}"
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._hold: _Hold | None = None
        self.transactions = 0  # POSTs to the base that reached the real server
        self.refused = 0  # requests answered with a faked error
        self._client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_PUT(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- what tests ask for ---------------------------------------------------------------------

    def fail_next(
        self, count: int, *, method: str = "POST", status: int = 503, retry_after: str | None = "0"
    ) -> None:
        with self._lock:
            self._faults.append(_Fault(method, count, status, retry_after))

    def hold_next_transaction(self) -> _Hold:
        hold = _Hold()
        with self._lock:
            self._hold = hold
        return hold

    # --- plumbing -------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        is_transaction = handler.command == "POST" and urlsplit(handler.path).path.rstrip("/") == urlsplit(
            self.base_url
        ).path.rstrip("/")
        with self._lock:
            fault = next((f for f in self._faults if f.method == handler.command and f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
                self.refused += 1
            hold = self._hold if is_transaction and fault is None else None
            if hold is not None:
                self._hold = None
        if fault is not None:
            handler.send_response(fault.status)
            if fault.retry_after is not None:
                handler.send_header("Retry-After", fault.retry_after)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        upstream = self._client.request(
            handler.command, self.upstream_origin + handler.path, content=body, headers=headers
        )
        if is_transaction and upstream.status_code < 300:
            with self._lock:
                self.transactions += 1
        if hold is not None:
            # The write has landed on the real server; the worker never hears back.
            hold.landed.set()
            hold.release.wait(120)
            handler.close_connection = True
            return
        handler.send_response(upstream.status_code)
        for key, value in upstream.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(upstream.content)))
        handler.end_headers()
        handler.wfile.write(upstream.content)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            if self._hold is not None:
                self._hold.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


@contextmanager
def running_proxy(upstream_base: str) -> Iterator[FhirProxy]:
    proxy = FhirProxy(upstream_base)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
