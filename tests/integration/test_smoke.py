import httpx

from tests.integration.procs import AgentProcess


def test_agent_answers_leader(agent: AgentProcess) -> None:
    """A started agent answers /v1/status/leader with a JSON string."""
    r = httpx.get(agent.url + "/v1/status/leader")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json().endswith(":8300")
