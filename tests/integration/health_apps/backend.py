"""A controllable HTTP backend for health-check tests: `python backend.py PORT`.

GET /health answers with the current code (200 at start). PUT /set?code=503 changes it;
PUT /set?code=alternate makes it alternate 200/503 on every probe. GET /stats returns how many
probes were answered with each code since the last /set. GET /redirect redirects to /health.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

lock = threading.Lock()
state: dict[str, object] = {"code": "200", "counts": {}, "n": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/stats":
            with lock:
                body = json.dumps(state["counts"]).encode()
            self._reply(200, body)
            return
        if path == "/redirect":  # a redirect to /health, which HTTP checks follow
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with lock:
            mode = str(state["code"])
            n = int(state["n"])  # type: ignore[call-overload]
            state["n"] = n + 1
            code = (200 if n % 2 == 0 else 503) if mode == "alternate" else int(mode)
            counts = state["counts"]
            assert isinstance(counts, dict)
            counts[str(code)] = counts.get(str(code), 0) + 1
        self._reply(code, f"backend says {code}".encode())

    def do_PUT(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        with lock:
            state["code"] = query.get("code", ["200"])[0]
            state["counts"] = {}
            state["n"] = 0
        self._reply(200, b"ok")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
