"""--auth: the Python clients (blocking and asyncio) authenticate with a password or a token,
and get Unauthenticated / PermissionDenied for missing, wrong or insufficient credentials."""

import asyncio
import pathlib

import pytest

import weir
import weir.aio
from conftest import Broker


def test_python_clients_authenticate_and_are_held_to_their_acls(tmp_path: pathlib.Path) -> None:
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--auth")
    try:
        root_token = (tmp_path / "data" / "admin.token").read_text().strip()
        root = ("--token", root_token)
        b.cli(*root, "topic", "create", "orders", "--partitions", "2")
        b.cli(*root, "topic", "create", "audit")
        b.cli(*root, "user", "add", "app", "--password-stdin", stdin="app-password\n")
        reader_token = b.cli(*root, "user", "add", "reader").strip()
        b.cli(*root, "acl", "grant", "app", "write", "--topic", "orders")
        b.cli(*root, "acl", "grant", "reader", "read", "--topic", "orders")
        b.cli(*root, "acl", "grant", "reader", "read", "--group", "billing")

        with pytest.raises(weir.Unauthenticated):
            weir.Client(b.addr).list_topics()
        with pytest.raises(weir.Unauthenticated):
            weir.Client(b.addr, user="app", password="wrong-password").list_topics()
        with pytest.raises(weir.InvalidArgument):
            weir.Client(b.addr, user="app")
        with pytest.raises(weir.InvalidArgument):
            weir.Client(b.addr, user="app", password="x", token="y")

        app = weir.Client(b.addr, user="app", password="app-password")
        assert app.list_topics() == ["orders"]
        with app.producer() as p:
            for i in range(20):
                p.send("orders", f"o{i}".encode(), key=f"k{i}".encode())
        with pytest.raises(weir.PermissionDenied) as denied:
            with app.producer() as p:
                p.send("audit", b"x")
        assert "app" in str(denied.value) and "audit" in str(denied.value)
        with pytest.raises(weir.PermissionDenied):
            list(app.consumer("orders", start="earliest", idle_timeout_ms=500))
        with pytest.raises(weir.PermissionDenied):
            app.create_topic("mine")

        reader = weir.Client(b.addr, token=reader_token)
        got = [r.value for r in reader.consumer("orders", group="billing", start="earliest",
                                                 idle_timeout_ms=1500)]
        assert len(got) == 20
        with pytest.raises(weir.PermissionDenied):
            list(reader.consumer("orders", group="other", start="earliest", idle_timeout_ms=500))
        with pytest.raises(weir.PermissionDenied):
            with reader.producer() as p:
                p.send("orders", b"x")

        async def over_asyncio() -> list[str]:
            ac = await weir.aio.Client.connect(b.addr, token=reader_token)
            with pytest.raises(weir.PermissionDenied):
                await ac.create_topic("nope")
            return await ac.list_topics()
        assert asyncio.run(over_asyncio()) == ["orders"]
    finally:
        b.stop()
