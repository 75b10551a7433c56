"""A tiny upstream for gateway tests, run as a real process.

    python -m tests.integration.gateway_backend NAME PORT


Endpoints (every answer carries ``x-backend: NAME``):

* ``/id``                 the backend's name
* ``/echo``               method, path, query and request headers as JSON
* ``/status/<code>``      that status
* ``/delay/<seconds>``    answer after a pause
* ``/bytes/<n>``          n bytes, streamed in 1 MiB chunks (no content-length: chunked)
* ``/upload``             POST/PUT: reads the body as a stream and answers its length
                          (``?slow=N``: pauses 5 ms before each of the first N pieces)
* ``/ws``                 WebSocket echo
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
CHUNK = b"x" * (1024 * 1024)


def make_app(name: str) -> Any:
    tag = name.encode()

    async def send_json(send: Any, status: int, body: Any) -> None:
        data = orjson.dumps(body)
        headers = [(b"content-type", b"application/json"), (b"x-backend", tag)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    return
                if msg.get("text") is not None:
                    await send({"type": "websocket.send", "text": f"{name}:{msg['text']}"})
                else:
                    await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
        path: str = scope["path"]
        if path == "/id":
            await send_json(send, 200, {"backend": name})
        elif path == "/echo":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            body = {
                "backend": name,
                "method": scope["method"],
                "path": path,
                "query": scope["query_string"].decode(),
                "headers": headers,
            }
            await send_json(send, 200, body)
        elif path.startswith("/status/"):
            await send_json(send, int(path.rsplit("/", 1)[1]), {"backend": name})
        elif path.startswith("/delay/"):
            await asyncio.sleep(float(path.rsplit("/", 1)[1]))
            await send_json(send, 200, {"backend": name})
        elif path.startswith("/bytes/"):
            n = int(path.rsplit("/", 1)[1])
            start = {"type": "http.response.start", "status": 200, "headers": [(b"x-backend", tag)]}
            await send(start)
            while n > 0:
                piece = CHUNK if n >= len(CHUNK) else CHUNK[:n]
                n -= len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": n > 0})
        elif path == "/upload":
            total = 0
            more = True
            slow = int(scope["query_string"].decode().partition("slow=")[2] or 0)
            while more:
                if slow > 0:  # a slow reader for the first `slow` pieces: the sender must be held back
                    slow -= 1
                    await asyncio.sleep(0.005)
                msg = await receive()
                total += len(msg.get("body", b""))
                more = msg.get("more_body", False)
            await send_json(send, 200, {"backend": name, "received": total})
        else:
            await send_json(send, 404, {"backend": name, "error": "not found"})

    return app


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    print(f"backend {name} on 127.0.0.1:{port}", flush=True)
    uvicorn.run(
        make_app(name),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="httptools",
        ws="websockets",
        lifespan="off",
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
