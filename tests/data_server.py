"""A small threaded HTTP server for the data tests: serves bytes from memory on 127.0.0.1,
honours Range requests, counts the bytes it sends and can break a connection on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ServerState:
    files: dict[str, bytes]
    bytes_sent: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    # path -> number of bytes after which the *next* response to it is cut off
    break_after: dict[str, int] = field(default_factory=dict)
    # paths sent with no Content-Length, ended by closing (a misconfigured mirror)
    no_length: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            if self.path in state.no_length:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with state.lock:
                cut = state.break_after.pop(self.path, None)
            if cut is not None:
                body = body[:cut]
            # Count before writing: once the client holds the bytes, the test
            # may read the counter, and this thread may not have run on yet.
            with state.lock:
                state.bytes_sent += len(body)
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                self.close_connection = True  # the client hung up (it refused the body)
                return
            if cut is not None:
                self.close_connection = True

    return Handler


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, ServerState]]:
    """Serve ``files`` (URL path -> bytes); yields (base URL, state)."""
    state = ServerState(files=dict(files))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
