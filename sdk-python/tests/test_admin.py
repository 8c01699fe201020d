"""Admin at parity with the CLI: describe_topic, plugins, pipelines, views, groups, users and
ACLs — each against a real broker, errors included, blocking and asyncio."""

import asyncio
import pathlib
import time

import pytest

import weir
import weir.aio
from conftest import Broker, plugin_wasm


def test_describe_topic(broker):
    client = broker.client()
    client.create_topic("orders", partitions=3, retention_ms=60_000)
    with client.producer() as p:
        for i in range(10):
            p.send("orders", b"x", partition=i % 2)
    d = client.describe_topic("orders")
    assert d.name == "orders" and d.retention_ms == 60_000 and d.view_of is None
    assert [(q.partition, q.earliest_offset, q.latest_offset) for q in d.partitions] == [
        (0, 0, 5),
        (1, 0, 5),
        (2, 0, 0),
    ]
    assert d.partitions[0].size_bytes > 0 and d.partitions[0].leader is None
    assert "orders" in repr(d)
    with pytest.raises(weir.TopicNotFound, match="nope"):
        client.describe_topic("nope")


def test_plugins_and_a_pipeline_end_to_end(broker):
    client = broker.client()
    client.create_topic("in", partitions=2)
    client.create_topic("out", partitions=2)
    info = client.register_plugin("upper", plugin_wasm("uppercase"))
    assert (info.name, info.kind, info.version) == ("upper", "map", 1)
    wasm = pathlib.Path(plugin_wasm("filter-contains")).read_bytes()
    client.register_plugin("keep", wasm, call_timeout_ms=500)
    assert {p.name: p.call_timeout_ms for p in client.list_plugins()}["keep"] == 500
    with pytest.raises(weir.PluginError):
        client.register_plugin("upper", wasm)
    again = client.register_plugin("upper", plugin_wasm("uppercase"), replace=True)
    assert again.version == 2
    with pytest.raises(weir.InvalidArgument):
        client.register_plugin("junk", b"not wasm")

    with client.producer() as p:
        for i in range(10):
            p.send("in", f"error {i}".encode() if i % 2 else f"ok {i}".encode(), partition=i % 2)
    made = client.create_pipeline(
        "shout", source="in", destination="out",
        plugins=[("keep", {"substring": "error"}), ("upper", None)],
    )
    assert (made.name, made.source, made.destination, made.status) == ("shout", "in", "out", "running")
    assert made.plugins == [("keep", {"substring": "error"}), ("upper", None)]
    assert [p.name for p in client.list_pipelines()] == ["shout"]
    deadline = time.monotonic() + 30
    while client.describe_pipeline("shout").records_in < 10:
        assert time.monotonic() < deadline, "the pipeline did not catch up"
        time.sleep(0.05)
    d = client.describe_pipeline("shout")
    assert d.lag == 0 and d.records_out == 5 and len(d.partitions) == 2
    assert sorted(r.value for r in client.consumer("out", idle_timeout_ms=500)) == sorted(
        f"ERROR {i}".encode() for i in range(1, 10, 2)
    )
    # A running pipeline resumes as a no-op; the plugin cannot go while it is used.
    assert client.resume_pipeline("shout").status == "running"
    with pytest.raises(weir.PluginError):
        client.delete_plugin("upper")
    client.delete_pipeline("shout")
    client.delete_plugin("upper")
    assert [p.name for p in client.list_plugins()] == ["keep"]

    with pytest.raises(weir.PipelineError):
        client.describe_pipeline("shout")
    with pytest.raises(weir.TopicNotFound):
        client.create_pipeline("p2", source="missing", destination="out", plugins=[("keep", {"substring": "x"})])
    with pytest.raises(weir.PluginError):
        client.create_pipeline("p3", source="in", destination="out", plugins=[("upper", None)])
    with pytest.raises(weir.InvalidArgument):
        client.create_pipeline("p4", source="in", destination="out", plugins=[("keep", None)], start="soon")  # type: ignore[arg-type]

    view = client.create_view("errors", "in", [("keep", {"substring": "error"})])
    assert (view.name, view.source) == ("errors", "in")
    assert [v.name for v in client.list_views()] == ["errors"]
    assert client.describe_topic("errors").view_of == "in"
    assert len(list(client.consumer("errors", idle_timeout_ms=500))) == 5
    client.delete_view("errors")
    assert client.list_views() == []


def test_groups_list_describe_reset_delete(broker):
    client = broker.client()
    client.create_topic("t", partitions=2)
    with client.producer() as p:
        for i in range(8):
            p.send("t", b"x", partition=i % 2)
    c = client.consumer("t", group="g", idle_timeout_ms=1000)
    assert len(list(c)) == 8
    c.commit()
    # A live member: a reset is refused.
    with pytest.raises(weir.GroupError):
        client.reset_group("g", "t", to="earliest")
    assert [(g.name, g.members) for g in client.list_groups()] == [("g", 1)]
    d = client.describe_group("g")
    assert d.name == "g" and len(d.members) == 1
    assert d.members[0].assignment == [("t", 0), ("t", 1)]
    assert [(q.partition, q.committed_offset, q.lag) for q in d.partitions] == [(0, 4, 0), (1, 4, 0)]
    c.close()
    assert client.reset_group("g", "t", to="earliest") == {0: 0, 1: 0}
    assert client.reset_group("g", "t", to=3) == {0: 3, 1: 3}
    assert [q.lag for q in client.describe_group("g").partitions] == [1, 1]
    client.delete_group("g")
    assert client.list_groups() == []
    with pytest.raises(weir.GroupError):
        client.describe_group("g")


def test_users_and_acls(tmp_path: pathlib.Path):
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--auth")
    try:
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        root = weir.Client(b.addr, token=token)
        assert root.whoami().superuser and root.whoami().auth_enabled
        root.create_topic("orders")
        assert root.add_user("app", password="app-password") is None
        reader_token = root.add_user("reader")
        assert reader_token
        with pytest.raises(weir.UserError):
            root.add_user("app", password="another-password")
        root.grant_acl("app", "write", "topic", "orders")
        root.grant_acl("reader", "read", "topic", "ord*")
        assert [(a.principal, a.operation, a.resource_type, a.pattern) for a in root.list_acls("reader")] == [
            ("reader", "read", "topic", "ord*")
        ]
        names = {u.name: u.credential for u in root.list_users()}
        assert names["app"] == "password" and names["reader"] == "token"

        app = weir.Client(b.addr, user="app", password="app-password")
        assert app.whoami().name == "app" and not app.whoami().superuser
        with pytest.raises(weir.PermissionDenied):
            app.create_topic("mine")
        with pytest.raises(weir.PermissionDenied):
            app.list_users()
        with pytest.raises(weir.PermissionDenied):
            app.register_plugin("upper", plugin_wasm("uppercase"))
        with app.producer() as p:
            assert p.send("orders", b"hi").result(timeout=10).offset == 0
        reader = weir.Client(b.addr, token=reader_token)
        assert [r.value for r in reader.consumer("orders", idle_timeout_ms=500)] == [b"hi"]

        root.revoke_acl("app", "write", "topic", "orders")
        with pytest.raises(weir.UserError):
            root.revoke_acl("app", "write", "topic", "orders")
        assert root.remove_user("reader") == 1
        with pytest.raises(weir.UserError):
            root.remove_user("reader")
    finally:
        b.stop()


def test_aio_admin_mirrors_the_blocking_calls(broker):
    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("a", partitions=2)
        await client.create_topic("b")
        d = await client.describe_topic("a")
        assert [q.partition for q in d.partitions] == [0, 1]
        info = await client.register_plugin("upper", plugin_wasm("uppercase"))
        assert info.kind == "map"
        assert [p.name for p in await client.list_plugins()] == ["upper"]
        made = await client.create_pipeline("up", source="a", destination="b", plugins=[("upper", {})], start="latest")
        assert made.status == "running"
        assert (await client.describe_pipeline("up")).name == "up"
        with pytest.raises(weir.PipelineError):
            await client.create_pipeline("up", source="a", destination="b", plugins=[("upper", {})])
        await client.delete_pipeline("up")
        await client.delete_plugin("upper")
        assert await client.list_groups() == []
        with pytest.raises(weir.GroupError):
            await client.describe_group("nobody")
        assert (await client.whoami()).superuser

    asyncio.run(main())
