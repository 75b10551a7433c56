"""The etcd store's pure parts: endpoint parsing, the key layout, and turning watch events into changes."""

from __future__ import annotations

import asyncio

import pytest

from roost.errors import ValidationError
from roost.etcd_gateway import Gateway, b64, prefix_end
from roost.store.etcd import EtcdStore, KeyMap, parse_endpoints
from roost.store.protocol import Change


def test_endpoints_parse_with_default_port_and_tls_scheme() -> None:
    """etcd:// lists become http URLs (2379 when no port is given); etcds:// becomes https."""
    assert parse_endpoints("etcd://127.0.0.1:2379,10.0.0.2") == [
        "http://127.0.0.1:2379",
        "http://10.0.0.2:2379",
    ]
    assert parse_endpoints("etcds://[::1]:2380/") == ["https://[::1]:2380"]


@pytest.mark.parametrize("spec", ["etcd://", "etcd://,", "http://x:1", "etcd://:99"])
def test_bad_endpoints_are_refused(spec: str) -> None:
    """A store address without a usable endpoint is a validation error naming the store flag."""
    with pytest.raises(ValidationError) as info:
        parse_endpoints(spec)
    assert info.value.field == "store"


def test_key_layout_puts_instances_under_services_and_checks_under_roost() -> None:
    """Instances map to /services/<name>/<id>, checks to /roost/checks/<id>, and back."""
    keys = KeyMap()
    assert keys.to_etcd("services/web/web-1") == "/services/web/web-1"
    assert keys.to_etcd("checks/service:web-1") == "/roost/checks/service:web-1"
    assert keys.from_etcd("/services/web/web-1") == "services/web/web-1"
    assert keys.from_etcd("/roost/checks/x") == "checks/x"
    assert keys.from_etcd("/rz/other") is None  # inside the watched range, not ours


def test_one_range_covers_both_subtrees_and_nothing_past_services() -> None:
    """The watched range starts at /roost/ and ends just past /services/, with a prefix too."""
    keys = KeyMap("/team/")
    assert keys.start == "/team/roost/" and keys.end == "/team/services0"
    for key in ("/team/roost/checks/a", "/team/services/web/1"):
        assert keys.start <= key < keys.end
    assert not keys.start <= "/team/zzz" < keys.end
    assert not keys.start <= "/registry/pods/x" < keys.end
    assert prefix_end("/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"


def _event(key: str, revision: int, value: bytes | None = None, lease: int = 0) -> dict[str, object]:
    kv: dict[str, object] = {"key": b64(key), "mod_revision": str(revision)}
    if value is None:
        return {"type": "DELETE", "kv": kv}
    return {"kv": {**kv, "value": b64(value), "lease": str(lease)}}


def test_watch_events_become_changes_and_track_ownership() -> None:
    """Events map to roost changes; a foreign put takes a key from us, a delete makes it doubtful."""
    store = EtcdStore(Gateway(["http://127.0.0.1:1"]), node="a")
    store.lease = 7
    store._leases.add(7)
    store._own = {"services/web/1": b"{}", "services/web/2": b"{}", "checks/c": b"{}"}
    changes = store._changes(
        [
            _event("/services/web/1", 10, b'{"port": 1}', lease=7),
            _event("/services/web/2", 10, b'{"port": 2}', lease=99),
            _event("/roost/checks/c", 11),
            _event("/rzz", 11, b"x"),
        ]
    )
    assert changes == [
        Change(10, "services/web/1", b'{"port": 1}'),
        Change(10, "services/web/2", b'{"port": 2}'),
        Change(11, "checks/c", None),
    ]
    assert set(store._own) == {"services/web/1"}
    assert store._doubtful == {"checks/c": (11, b"{}")}


class FakeGateway:
    """Answers txns as etcd would, counting them; no network."""

    where = "fake"

    def __init__(self) -> None:
        self.txns: list[list[dict[str, object]]] = []
        self.revision = 1

    async def call(self, path: str, body: dict[str, object], **_: object) -> dict[str, object]:
        assert path == "/v3/kv/txn"
        await asyncio.sleep(0.01)  # one round trip, during which more writers queue up
        ops = body["success"]
        assert isinstance(ops, list)
        keys = [next(iter(op.values()))["key"] for op in ops]
        assert len(keys) == len(set(keys)), "etcd refuses a txn that names a key twice"
        self.txns.append(ops)
        self.revision += 1
        responses = [
            {"response_put": {}} if "request_put" in op else {"response_delete_range": {"deleted": "0"}}
            for op in ops
        ]
        return {"header": {"revision": str(self.revision)}, "succeeded": True, "responses": responses}


async def test_concurrent_writes_share_transactions_but_never_a_key() -> None:
    """Writers that queue up during a txn share the next one; two writes of one key never share one."""
    fake = FakeGateway()
    store = EtcdStore(fake, node="a")  # type: ignore[arg-type]
    store._seen = 1
    writes = [{f"services/web/{i}": b"{}"} for i in range(20)] + [{"services/web/0": b"{}"}]
    deletes = [{"checks/gone": None}]
    indexes = await asyncio.gather(*(store.apply(w) for w in [*writes, *deletes]))
    assert len(fake.txns) < 10  # batched: 22 writes in a few txns
    assert all(len(t) <= 128 for t in fake.txns)
    assert indexes[0] < indexes[20]  # the second write of web/0 went in a later txn
    assert indexes[-1] == store._seen  # a delete that deleted nothing reports the last seen index
    assert set(store._own) == {f"services/web/{i}" for i in range(20)}
