"""A Flask service using roost.health.service, under waitress.

Run as `python flask_service.py PORT AGENT_URL ID [--broken-dependency]`.
"""

from __future__ import annotations

import sys
import time

from flask import Flask
from waitress.server import create_server

from roost.health.service import Health, HealthWSGI, Lifecycle, Registration

port, agent, instance = int(sys.argv[1]), sys.argv[2], sys.argv[3]

health = Health("shop")


def database() -> bool:
    return True


def broken_queue() -> None:
    raise ConnectionError("queue unreachable")


health.add_dependency("database", database, timeout=1.0)
if "--broken-dependency" in sys.argv:
    health.add_dependency("queue", broken_queue, timeout=1.0)

app = Flask(__name__)
app.wsgi_app = HealthWSGI(app.wsgi_app, health)  # type: ignore[method-assign]


@app.get("/work")
def work() -> dict[str, str]:
    time.sleep(0.02)
    return {"instance": instance}


if __name__ == "__main__":
    registration = Registration(
        "shop", port, service_id=instance, agent=agent, interval=0.3, timeout=0.25, drain=1.5, grace=5
    )
    server = create_server(app, host="127.0.0.1", port=port, threads=8)
    print(f"serving on {port}", flush=True)
    with Lifecycle(health, registration).running():
        server.run()
    print("stopped", flush=True)
