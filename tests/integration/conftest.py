from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.procs import AgentProcess


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start real `roost agent` processes; each is stopped at the end of the test."""
    started: list[AgentProcess] = []

    def start(*extra: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(data_dir or tmp_path / f"agent{len(started)}", *extra, env=env)
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agent(start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    """One real agent on the embedded SQLite store."""
    return start_agent()
