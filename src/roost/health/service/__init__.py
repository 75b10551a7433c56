"""Health endpoints, self-registration and graceful shutdown for Python services.

What a service gets::

    health = Health("orders")
    health.add_dependency("db", ping_database, timeout=1.0)   # async (or plain) callable

    lifecycle = Lifecycle(health, Registration("orders", port=8000))

    # ASGI (Starlette / FastAPI): endpoints, in-flight tracking, registration in the lifespan,
    # and SIGTERM handled as below.
    app.add_middleware(HealthMiddleware, health=health, lifecycle=lifecycle)

    # WSGI (Flask): endpoints and in-flight tracking; registration and SIGTERM around the server.
    wsgi = HealthWSGI(flask_app, health)
    with lifecycle.running():
        server.run()

Endpoints (under ``/health`` by default; every body is JSON):

* ``GET /health/live``: 200 ``{"status": "passing"}`` while the process answers.
* ``GET /health/ready``: 200 when every dependency check passes and the service is not draining,
  503 otherwise: ``{"status": "passing"|"critical", "draining": false, "checks": {"db":
  {"status": "passing", "latency_ms": 1.2}, "cache": {"status": "critical", "latency_ms": 500.3,
  "error": "timed out after 0.5s"}}}``.
* ``GET /health``: the same, plus ``"service"``, ``"uptime_s"`` and ``"inflight"``; same status code.

Dependency checks run concurrently, each under its own timeout; one fails by raising or by
returning ``False``.

On SIGTERM the lifecycle marks the service not ready, deregisters it from the agent (a TTL check
stops heartbeating with it), keeps serving for ``Registration.drain`` seconds so that callers
with a cached list move away, waits (at most ``Registration.grace`` seconds) for in-flight
requests to finish, and then lets the server stop as it would have on SIGTERM.

Registration talks to the agent's Consul-compatible HTTP API with httpx, so it works against
roost or Consul. It imports nothing from the agent side.
"""

from roost.health.service.asgi import HealthMiddleware
from roost.health.service.core import CRITICAL, PASSING, DependencyCheck, DependencyResult, Health
from roost.health.service.lifecycle import Lifecycle, Registration
from roost.health.service.wsgi import HealthWSGI

__all__ = [
    "CRITICAL",
    "PASSING",
    "DependencyCheck",
    "DependencyResult",
    "Health",
    "HealthMiddleware",
    "HealthWSGI",
    "Lifecycle",
    "Registration",
]
