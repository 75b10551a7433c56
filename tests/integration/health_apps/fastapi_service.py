"""A FastAPI service using roost.health.service, under uvicorn.

Run as `python fastapi_service.py PORT AGENT_URL ID [--slow-dependency]`.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from fastapi import FastAPI

from roost.health.service import Health, HealthMiddleware, Lifecycle, Registration

port, agent, instance = int(sys.argv[1]), sys.argv[2], sys.argv[3]

health = Health("shop")


async def database() -> bool:
    await asyncio.sleep(0.001)
    return True


async def slow_cache() -> None:
    await asyncio.sleep(5)


health.add_dependency("database", database, timeout=1.0)
if "--slow-dependency" in sys.argv:
    health.add_dependency("cache", slow_cache, timeout=0.2)

registration = Registration(
    "shop", port, service_id=instance, agent=agent, interval=0.3, timeout=0.25, drain=1.5, grace=5
)
app = FastAPI()
app.add_middleware(HealthMiddleware, health=health, lifecycle=Lifecycle(health, registration))


@app.get("/work")
async def work() -> dict[str, str]:
    await asyncio.sleep(0.02)
    return {"instance": instance}


if __name__ == "__main__":
    print(f"serving on {port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
