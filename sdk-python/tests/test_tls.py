"""TLS: the Python clients (blocking and asyncio) reach a broker served with --tls-cert when
given its CA, and present a client certificate to one started with --tls-client-ca."""

import asyncio
import pathlib
import subprocess

import pytest

import weir
import weir.aio
from conftest import Broker


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: pathlib.Path) -> dict[str, str]:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate, made by openssl."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-subj", "/CN=weir test CA", "-days", "2",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, ext in [("broker", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("app", "extendedKeyUsage=clientAuth")]:
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"),
                "-out", str(d / f"{name}.csr"))
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return {n: str(d / n) for n in ["ca.pem", "broker.pem", "broker.key", "app.pem", "app.key"]}


def test_blocking_and_asyncio_clients_speak_tls(tmp_path: pathlib.Path) -> None:
    c = make_certs(tmp_path)
    b = Broker(tmp_path / "data", "127.0.0.1:0",
               "--tls-cert", c["broker.pem"], "--tls-key", c["broker.key"])
    try:
        client = weir.Client(b.addr, tls_ca=c["ca.pem"])
        client.create_topic("secure", partitions=1)
        with client.producer() as p:
            p.send("secure", b"hello")
        got = [r.value for r in client.consumer("secure", start="earliest", idle_timeout_ms=1000)]
        assert got == [b"hello"]
        with pytest.raises(weir.WeirError):
            weir.Client(b.addr).list_topics()

        async def over_asyncio() -> list[str]:
            ac = await weir.aio.Client.connect(b.addr, tls_ca=c["ca.pem"])
            return await ac.list_topics()
        assert asyncio.run(over_asyncio()) == ["secure"]
    finally:
        b.stop()


def test_a_client_certificate_is_presented_when_the_broker_asks(tmp_path: pathlib.Path) -> None:
    c = make_certs(tmp_path)
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--tls-cert", c["broker.pem"],
               "--tls-key", c["broker.key"], "--tls-client-ca", c["ca.pem"])
    try:
        with pytest.raises(weir.WeirError):
            weir.Client(b.addr, tls_ca=c["ca.pem"]).list_topics()
        client = weir.Client(b.addr, tls_ca=c["ca.pem"], tls_cert=c["app.pem"], tls_key=c["app.key"])
        assert client.list_topics() == []
        with pytest.raises(weir.InvalidArgument):
            weir.Client(b.addr, tls_cert=c["app.pem"], tls_key=c["app.key"])
    finally:
        b.stop()
